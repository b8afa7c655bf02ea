"""Execute Now in the web UI refuses what no run could send, records nothing, and names why."""

from __future__ import annotations

import pytest

from tests.web.test_security import App, app, runs_of  # noqa: F401 - `app` is the fixture


async def test_unsendable_text_is_refused_in_the_form(app: App) -> None:  # noqa: F811
    csrf = await app.sign_in("operator")
    answer = await app.client.post(
        f"/jobs/{app.job_id}/execute", data={"csrf_token": csrf, "p:env": "dev\x07"}
    )
    assert answer.status_code == 422
    assert "Parameter &#39;env&#39; has a value that holds a control character" in answer.text
    assert await runs_of(app) == 0


async def test_a_secret_that_cannot_be_read_is_refused_in_the_form(
    app: App,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    csrf = await app.sign_in("operator")
    monkeypatch.delenv("POLYSYNC_WEB_UNIT_TOKEN")
    answer = await app.client.post(
        f"/jobs/{app.job_id}/execute", data={"csrf_token": csrf, "p:env": "dev"}
    )
    assert answer.status_code == 422
    assert "POLYSYNC_WEB_UNIT_TOKEN is not set" in answer.text
    assert await runs_of(app) == 0
