"""GET /health, GET /metrics, the schema migration, and the served app (API + web + engine)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from polysync.api.server import create_server_app
from polysync.store.migrate import head_revision
from tests.api.conftest import BACKFILL, SALES, Api
from tests.api.test_platforms import is_problem


async def test_health_needs_no_key_and_reports_the_database(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = await api.client.get("/health")
    assert response.json() == {"status": "ok", "database": "ok"}

    async def unreachable() -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(api.store, "ping", unreachable)
    problem = is_problem(await api.client.get("/health"), 503)
    assert problem["detail"] == "The database cannot be reached."


async def test_metrics_count_calls_runs_and_poll_lag(api: Api) -> None:
    job = await api.store.get_job(api.job_ids[BACKFILL])
    await api.services.execute(job, {})
    await api.services.execute(await api.store.get_job(api.job_ids[SALES]), {})
    api.harness.advance(30)  # both runs' first polls are now overdue: the engine did not step
    response = await api.client.get("/metrics", headers=api.auth("viewer"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'polysync_databricks_api_calls_total{endpoint="run_now",status="200"} 2.0' in text
    assert 'polysync_databricks_api_calls_total{endpoint="jobs_get",status="200"}' in text
    assert "polysync_databricks_rate_limited_total" in text
    assert "polysync_databricks_retries_total" in text
    assert 'polysync_runs{status="Starting"} 2.0' in text
    assert 'polysync_runs{status="Success"} 0.0' in text
    assert 'polysync_poll_lag_seconds_bucket{le="15.0"} 0.0' in text
    assert 'polysync_poll_lag_seconds_bucket{le="30.0"} 2.0' in text
    assert "polysync_poll_lag_seconds_gcount 2.0" in text
    assert "polysync_poll_lag_max_seconds" in text
    await api.services.engine.step()
    after = (await api.client.get("/metrics", headers=api.auth("viewer"))).text
    assert "polysync_poll_lag_seconds_gcount 0.0" in after
    assert 'polysync_runs{status="Running"}' in after


async def test_the_api_keys_migration_is_the_head(api: Api) -> None:
    assert head_revision() == "0004"
    assert await api.store.list_api_keys()  # the fixture's keys live in the new table


async def test_served_app_runs_the_engine_in_its_lifespan_and_mounts_the_web_ui(
    api: Api,
) -> None:
    app = create_server_app(api.services)
    assert "/api/v1/runs/{run_id}" in app.openapi()["paths"]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://polysync.test") as client:
        sign_in = await client.get("/sign-in")  # the web UI's page, on the same app
    assert sign_in.status_code == 200
    assert "text/html" in sign_in.headers["content-type"]
    run = await api.services.engine.submit(await api.store.get_job(api.job_ids[SALES]), {})
    async with app.router.lifespan_context(app):
        for _ in range(200):  # the engine task starts the committed run on its own
            if (await api.store.get_run(run.id)).run_id is not None:
                break
            await asyncio.sleep(0)
    started = await api.store.get_run(run.id)
    assert started.run_id is not None
    assert started.lease_owner is None  # released when the lifespan ended
