"""GET /health, GET /metrics, the schema migration, and the served app (API + web + engine)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from polysync.api.server import create_server_app
from polysync.domain.records import EngineState, utc
from polysync.emulator.faults import Fault
from polysync.store.migrate import head_revision, known_head
from tests.api.conftest import BACKFILL, SALES, Api
from tests.api.test_platforms import is_problem


async def test_health_needs_no_key_and_reports_the_database(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = await api.client.get("/health")
    # No engine runs in this process (an API-only app): the engine is not reported.
    assert response.json() == {"status": "ok", "database": "ok", "engine": None, "poll_lag_s": 0.0}

    async def unreachable() -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(api.store, "ping", unreachable)
    problem = is_problem(await api.client.get("/health"), 503)
    assert problem["detail"] == "The database cannot be reached."


async def test_metrics_count_calls_runs_and_poll_lag(api: Api) -> None:
    job = await api.store.get_job(api.job_ids[BACKFILL])
    await api.services.execute(job, {})
    await api.services.execute(await api.store.get_job(api.job_ids[SALES]), {})
    await api.services.engine.step()  # starts both
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


async def test_the_audit_migration_is_the_head(api: Api) -> None:
    assert head_revision() == known_head() is not None
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
    engine = api.services.engine
    run = await engine.submit(await api.store.get_job(api.job_ids[SALES]), {})
    cycles = engine.health.cycles
    async with app.router.lifespan_context(app):
        # The engine task's first cycle starts the committed run on its own. Wait for that cycle
        # to end (its database work runs in threads, so a fixed number of yields is not enough on
        # a busy machine); the bound only keeps a broken engine from hanging the suite.
        for _ in range(6_000):
            if engine.health.cycles > cycles:
                break
            await asyncio.sleep(0.01)
    started = await api.store.get_run(run.id)
    assert started.run_id is not None
    assert started.lease_owner is None  # released when the lifespan ended


async def test_a_stopping_engine_releases_a_lease_its_cancelled_claim_took(api: Api) -> None:
    """A stop cancels the cycle, but the claim's transaction runs to its end (store_call): the
    lease it took is one the engine never saw, and must still be released at the stop."""
    engine = api.services.engine
    run = await engine.submit(await api.store.get_job(api.job_ids[SALES]), {})
    now = utc(api.services.clock.now())
    claimed = await api.store.claim_due_runs(engine.owner, now, 300, 10)  # the unseen answer
    assert [r.id for r in claimed] == [run.id]
    await engine.release()
    assert (await api.store.get_run(run.id)).lease_owner is None


async def test_health_reports_this_process_engine_and_503_when_stalled_or_dead(api: Api) -> None:
    engine = api.services.engine
    now_s = api.services.clock.now()
    engine.health.state = EngineState.RUNNING
    engine.health.started_at_s = now_s - 600
    engine.health.last_cycle_at_s = now_s - 2
    engine.health.cycles = 42
    body = (await api.client.get("/health")).json()
    assert body["status"] == "ok"
    assert body["engine"]["owner"] == engine.owner
    assert body["engine"]["state"] == "running"
    assert body["engine"]["last_cycle_age_s"] == 2.0
    assert body["engine"]["cycles"] == 42

    engine.health.state = EngineState.BACKING_OFF
    engine.health.failures = 3
    engine.health.last_error = "The database cannot be reached: connection refused"
    engine.health.last_cycle_at_s = now_s - engine.settings.stall_after_s - 1
    stalled = is_problem(await api.client.get("/health"), 503)
    assert stalled["detail"] == (
        f"The engine {engine.owner} is stalled: its last cycle ended 121 s ago; last error: "
        "The database cannot be reached: connection refused."
    )
    engine.health.state = EngineState.CRASHED
    engine.health.last_cycle_at_s = now_s
    crashed = is_problem(await api.client.get("/health"), 503)
    assert crashed["detail"].startswith(f"The engine {engine.owner} is crashed")


async def test_served_app_sends_one_run_now_per_run_even_when_databricks_refuses_it(
    api: Api,
) -> None:
    # Issue 8 §2: the request's own engine step and the background engine both submitted; with a
    # one-off 400 the run was recorded refused while the other call started an untracked run.
    api.harness.app.emulator.faults.add(
        Fault(
            method="POST",
            path="jobs/run-now$",
            kind="status",
            status=400,
            error_code="INVALID_PARAMETER_VALUE",
            message="Refused once.",
            times=1,
        )
    )
    app = create_server_app(api.services)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://polysync.test") as client,
    ):
        refused = await client.post(
            f"/api/v1/jobs/{api.job_ids[SALES]}/runs", headers=api.auth("operator"), json={}
        )
        accepted = await client.post(
            f"/api/v1/jobs/{api.job_ids[SALES]}/runs", headers=api.auth("operator"), json={}
        )
        assert refused.status_code == accepted.status_code == 201
        for _ in range(2000):  # the engine task works on its own; bounded wait for it
            runs = [await api.store.get_run(r.json()["id"]) for r in (refused, accepted)]
            if all(run.is_terminal or run.run_id is not None for run in runs):
                break
            await asyncio.sleep(0.005)
    # Whichever run-now met the one-off 400: that run is Failed and nothing started for it.
    failed = [run for run in runs if run.status.value == "Failed"]
    started = [run for run in runs if run.run_id is not None]
    assert len(failed) == len(started) == 1
    assert "Refused once." in failed[0].message
    assert failed[0].run_id is None
    assert api.harness.app.emulator.stats.count("jobs/run-now") == 2  # one per run
    assert [str(run_id) for run_id in api.harness.state.runs] == [started[0].run_id]
