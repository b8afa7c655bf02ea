"""CSRF refusal and role enforcement of the web UI, through httpx (no browser): the server checks
every POST whatever the page showed. The emulator and the app run in process."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from polysync.api.keys import create_api_key, revoke_api_key
from polysync.api.throttle import MAX_FAILURES
from polysync.config import Settings
from polysync.domain.models import RunStatus
from polysync.domain.records import NewPlatform, RunFilter
from polysync.services import Services
from polysync.web.context import TEMPLATES_DIR
from polysync.web.security import COOKIE_NAME, CSRF_HEADER
from tests.conftest import TEST_TOKEN, EmulatorHarness
from tests.web.conftest import build_app

SALES = "914275016372845"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class App:
    services: Services
    client: httpx.AsyncClient
    keys: dict[str, str]
    job_id: int

    async def sign_in(self, role: str) -> str:
        """Sign in as `role`; the session's CSRF token."""
        page = await self.client.get("/sign-in")
        token = CSRF_INPUT.search(page.text)
        assert token is not None
        answer = await self.client.post(
            "/sign-in", data={"api_key": self.keys[role], "csrf_token": token.group(1)}
        )
        assert answer.status_code == 303, answer.text
        return await self.csrf()

    async def csrf(self) -> str:
        page = await self.client.get("/runs")
        token = CSRF_INPUT.search(page.text)
        assert token is not None
        return token.group(1)


@pytest.fixture
async def app(
    demo_emulator: EmulatorHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[App]:
    monkeypatch.setenv("POLYSYNC_WEB_UNIT_TOKEN", TEST_TOKEN)
    services = await Services.open(
        Settings(home=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'web.db'}"),
        transport_factory=lambda _platform: demo_emulator.transport(),
    )
    try:
        await services.add_platform(
            NewPlatform(
                name="demo",
                workspace_url=demo_emulator.base_url,
                auth={"method": "pat", "token": "env:POLYSYNC_WEB_UNIT_TOKEN"},
            )
        )
        _, results = await services.import_jobs("demo", [SALES])
        job = results[0].job
        assert job is not None
        keys = {}
        for role in ("viewer", "operator", "admin"):
            _, keys[role] = await create_api_key(services.store, role, role)
        web = build_app(services)
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as client:
            yield App(services, client, keys, job.id)
    finally:
        await services.aclose()


async def runs_of(app: App) -> int:
    return len(await app.services.list_runs(RunFilter(job_id=app.job_id)))


async def test_a_post_without_the_csrf_token_is_refused_and_does_nothing(app: App) -> None:
    csrf = await app.sign_in("operator")
    refused = await app.client.post(f"/jobs/{app.job_id}/execute", data={"p:env": "dev"})
    assert refused.status_code == 403
    assert "security token" in refused.text
    wrong = await app.client.post(
        f"/jobs/{app.job_id}/execute", data={"csrf_token": csrf + "x", "p:env": "dev"}
    )
    assert wrong.status_code == 403
    assert await runs_of(app) == 0
    accepted = await app.client.post(
        f"/jobs/{app.job_id}/execute", data={"csrf_token": csrf, "p:env": "dev"}
    )
    assert accepted.status_code == 303
    assert await runs_of(app) == 1


async def test_the_csrf_token_is_accepted_in_the_htmx_header(app: App) -> None:
    csrf = await app.sign_in("operator")
    answer = await app.client.post(
        f"/jobs/{app.job_id}/execute",
        data={"p:env": "dev"},
        headers={CSRF_HEADER: csrf, "HX-Request": "true"},
    )
    assert answer.status_code == 204
    assert answer.headers["HX-Redirect"].startswith("/runs/")


async def test_another_sessions_token_is_refused(app: App) -> None:
    other = await app.sign_in("operator")
    app.client.cookies.clear()
    await app.sign_in("operator")  # a new session: the old token no longer matches
    refused = await app.client.post(
        f"/jobs/{app.job_id}/sync", headers={CSRF_HEADER: other, "HX-Request": "true"}
    )
    assert refused.status_code == 403


async def test_sign_in_itself_needs_the_token(app: App) -> None:
    await app.client.get("/sign-in")
    answer = await app.client.post("/sign-in", data={"api_key": app.keys["admin"]})
    assert answer.status_code == 403
    assert COOKIE_NAME in app.client.cookies  # but no session behind it
    assert (await app.client.get("/jobs")).status_code == 303


@pytest.mark.parametrize(
    ("role", "path", "allowed"),
    [
        ("viewer", "/jobs/{job}/execute", False),
        ("viewer", "/jobs/{job}/sync", False),
        ("viewer", "/jobs/{job}/parameters", False),
        ("viewer", "/platforms/1/test", False),
        ("operator", "/platforms/1/test", True),
        ("operator", "/jobs/{job}/sync", True),
        ("operator", "/platforms/1/import", False),
        ("operator", "/platforms/1", False),
        ("operator", "/platforms", False),
        ("admin", "/platforms/1/import", True),
    ],
)
async def test_roles_are_enforced_on_every_post(
    app: App, role: str, path: str, allowed: bool
) -> None:
    csrf = await app.sign_in(role)
    answer = await app.client.post(
        path.format(job=app.job_id),
        data={"csrf_token": csrf, "scope": "all"},
        headers={"HX-Request": "true"},
    )
    if allowed:
        assert answer.status_code == 200, answer.text
    else:
        assert answer.status_code == 403
        assert f"your API key has the {role} role" in answer.text


async def test_a_viewer_cannot_cancel_and_sees_no_action(app: App) -> None:
    job = await app.services.store.get_job(app.job_id)
    run = await app.services.engine.submit(job, {})
    csrf = await app.sign_in("viewer")
    page = await app.client.get(f"/jobs/{app.job_id}")
    assert page.status_code == 200
    for action in ("Execute Now", "Sync Parameters", "Save parameters"):
        assert action not in page.text
    run_page = await app.client.get(f"/runs/{run.id}")
    assert "Cancel run" not in run_page.text
    refused = await app.client.post(f"/runs/{run.id}/cancel", data={"csrf_token": csrf})
    assert refused.status_code == 403
    assert (await app.services.store.get_run(run.id)).cancel_requested_at is None
    assert (await app.services.store.get_run(run.id)).status is RunStatus.STARTING


async def test_a_revoked_key_ends_its_session_at_once(app: App) -> None:
    await app.sign_in("admin")
    assert (await app.client.get("/platforms")).status_code == 200
    await revoke_api_key(app.services.store, app.keys["admin"])
    answer = await app.client.get("/platforms")
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/sign-in")


async def test_a_secret_value_is_refused_inline_and_not_echoed(app: App) -> None:
    csrf = await app.sign_in("admin")
    answer = await app.client.post(
        "/platforms",
        data={
            "csrf_token": csrf,
            "name": "prod",
            "workspace_url": "https://adb-1.1.azuredatabricks.net",
            "auth_method": "pat",
            "pat_token": "dapiSECRETVALUE0123456789",
        },
    )
    assert answer.status_code == 422
    assert "secret reference, not the secret" in answer.text
    assert "dapiSECRETVALUE" not in answer.text
    assert [p.name for p in await app.services.store.list_platforms()] == ["demo"]


async def test_sign_in_does_not_redirect_off_site(app: App) -> None:
    page = await app.client.get("/sign-in")
    token = CSRF_INPUT.search(page.text)
    assert token is not None
    answer = await app.client.post(
        "/sign-in",
        data={"api_key": app.keys["viewer"], "csrf_token": token.group(1), "next": "//evil.test"},
    )
    assert answer.headers["Location"] == "/runs"


async def test_an_htmx_poll_without_a_session_is_sent_to_sign_in(app: App) -> None:
    answer = await app.client.get("/runs/1/live", headers={"HX-Request": "true"})
    assert answer.status_code == 401
    assert answer.headers["HX-Redirect"] == "/sign-in"


# --- Issue 9 ------------------------------------------------------------------------------------


async def test_failed_sign_ins_are_logged_and_slowed_down(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    page = await app.client.get("/sign-in")
    token = CSRF_INPUT.search(page.text)
    assert token is not None
    form = {"api_key": "psk_guess0000000000000000000000", "csrf_token": token.group(1)}
    with caplog.at_level(logging.WARNING, logger="polysync.api.throttle"):
        for _ in range(MAX_FAILURES):
            assert (await app.client.post("/sign-in", data=form)).status_code == 401
        blocked = await app.client.post("/sign-in", data=form)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in blocked.text
    assert "sign-in refused from 127.0.0.1" in caplog.text
    assert "psk_guess" not in caplog.text
    assert (await app.client.get("/runs")).status_code == 303  # still signed out
    # M1: someone else's failures from the same address never lock out a valid key.
    valid = await app.client.post("/sign-in", data={**form, "api_key": app.keys["viewer"]})
    assert valid.status_code == 303
    assert (await app.client.get("/runs")).status_code == 200


async def test_a_run_started_on_the_web_records_its_user(app: App) -> None:
    csrf = await app.sign_in("operator")
    answer = await app.client.post(
        f"/jobs/{app.job_id}/execute", data={"csrf_token": csrf, "p:env": "dev"}
    )
    assert answer.status_code == 303
    (run,) = await app.services.list_runs(RunFilter(job_id=app.job_id))
    key = await app.services.store.find_api_key(app.keys["operator"][:12])
    assert key is not None
    assert run.executed_by == f"web:operator ({key.prefix})"


async def test_pages_carry_the_security_headers(app: App) -> None:
    for path in ("/sign-in", "/static/app.js", "/nowhere"):
        answer = await app.client.get(path)
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"


async def test_no_page_has_inline_script_or_style(app: App) -> None:
    await app.sign_in("admin")
    for path in ("/runs", "/jobs", f"/jobs/{app.job_id}", "/platforms", "/platforms/1"):
        html = (await app.client.get(path)).text
        assert re.search(r"<script(?![^>]*\ssrc=)", html) is None, path
        assert re.search(r"\son[a-z]+=", html) is None, path
        assert re.search(r"\sstyle=", html) is None, path


def test_no_template_has_inline_script_style_or_handler() -> None:
    """Under `script-src 'self'; style-src 'self'` they would not run: none may exist."""
    for template in TEMPLATES_DIR.glob("*.html"):
        html = template.read_text()
        assert re.search(r"<script(?![^>]*\ssrc=)", html) is None, template.name
        assert re.search(r"\son[a-z]+=", html) is None, template.name
        assert re.search(r"\sstyle=", html) is None, template.name
        assert "hx-on" not in html, template.name  # evaluated code: refused by allowEval=false
