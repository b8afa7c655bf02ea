"""Breaker review findings on the API: a platform's workspace or sign-in identity cannot change
under active runs (H4)."""

from __future__ import annotations

import pytest

from tests.api.conftest import SALES, TOKEN_VARIABLE, Api
from tests.api.test_platforms import is_problem


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"workspace_url": "http://127.0.0.2:9"}, "its workspace URL"),
        (
            {
                "auth": {
                    "method": "databricks_oauth_m2m",
                    "client_id": "app-1",
                    "client_secret": "env:SP_SECRET",
                }
            },
            "its sign-in identity",
        ),
    ],
)
async def test_the_workspace_or_identity_cannot_change_under_active_runs(
    api: Api, change: dict[str, object], what: str
) -> None:
    platform = f"/api/v1/platforms/{api.platform_id}"
    started = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[SALES]}/runs", json={}, headers=api.auth("operator")
    )
    run_id = started.json()["id"]
    refused = await api.client.patch(platform, json=change, headers=api.auth("admin"))
    problem = is_problem(refused, 409)
    assert what in str(problem["detail"])
    assert f"1 active run(s) (id {run_id})" in str(problem["detail"])
    assert "polysync runs list --active" in str(problem["detail"])
    unchanged = (await api.client.get(platform, headers=api.auth("viewer"))).json()
    assert unchanged["workspace_url"] == api.harness.base_url
    assert unchanged["auth"]["method"] == "pat"
    # A rotated token for the same identity, and other fields, may change at any time.
    rotated = await api.client.patch(
        platform,
        json={
            "auth": {"method": "pat", "token": f"env:{TOKEN_VARIABLE}_NEXT"},
            "description": "rotated",
        },
        headers=api.auth("admin"),
    )
    assert rotated.status_code == 200, rotated.text
    await api.services.store.record_failure(run_id, "ended (test)", api.services.now())
    moved = await api.client.patch(platform, json=change, headers=api.auth("admin"))
    assert moved.status_code == 200, moved.text


async def test_a_workspace_url_change_is_audited_old_to_new(api: Api) -> None:
    platform = f"/api/v1/platforms/{api.platform_id}"
    moved = await api.client.patch(
        platform, json={"workspace_url": "http://127.0.0.2:9"}, headers=api.auth("admin")
    )
    assert moved.status_code == 200, moved.text
    (entry, *_) = await api.services.store.list_audit_events(  # type: ignore[attr-defined]
        subject_type="platform", subject_id=api.platform_id
    )
    assert entry.action == "platform.update"
    assert entry.detail == f"changed workspace_url ({api.harness.base_url} -> http://127.0.0.2:9)"
