"""DatabricksClient against the emulator: paging per version, run-now idempotency, errors, faults, auth.

The client shares the emulator's real-time ManualClock (rate limits and token lifetimes), so
`autojump` can jump time to whatever the client waits for: retries and rate limits cost no time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from polysync.clock import ManualClock
from polysync.databricks.client import DatabricksClient
from polysync.databricks.endpoints import Endpoint
from polysync.databricks.metrics import ClientMetrics
from polysync.databricks.ratelimit import RateLimiterRegistry
from polysync.databricks.settings import WorkspaceSettings
from polysync.emulator.app import create_app
from polysync.emulator.auth import EntraServicePrincipal, ManagedIdentity, OAuthClient
from polysync.emulator.ratelimit import RateLimitConfig
from polysync.emulator.serving import InProcessTransport, running_server
from polysync.emulator.spec import WorkspaceSpec
from polysync.emulator.tls import TlsFiles, make_self_signed_cert
from polysync.errors import (
    DatabricksAuthError,
    DatabricksBadRequestError,
    DatabricksNotFoundError,
    DatabricksServerError,
    DatabricksTransportError,
    DatabricksUnavailableError,
    TokenExpiredError,
)
from tests.conftest import EmulatorHarness, autojump, make_harness, make_spec

PAT_VAR = "POLYSYNC_TEST_DATABRICKS_PAT"
SECRET_VAR = "POLYSYNC_TEST_DATABRICKS_CLIENT_SECRET"
OAUTH_CLIENT = OAuthClient(client_id="sp-oauth-1", client_secret="oauth-secret-value-1")
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ENTRA_SP = EntraServicePrincipal(
    tenant_id=TENANT_ID, client_id="5b2f1a1e-entra-app", client_secret="entra-secret-value-1"
)
MI_HEADER = "identity-header-value-1"

ClientFactory = Callable[..., DatabricksClient]


def settings_for(url: str, **overrides: Any) -> WorkspaceSettings:
    data: dict[str, Any] = {"url": url, "auth": {"method": "pat", "token": f"env:{PAT_VAR}"}}
    data.update(overrides)
    return WorkspaceSettings.model_validate(data)


@pytest.fixture
async def make_client(
    emulator: EmulatorHarness, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ClientFactory]:
    """Clients of the in-process emulator, on its real-time ManualClock."""
    monkeypatch.setenv(PAT_VAR, emulator.token)
    made: list[DatabricksClient] = []

    def factory(harness: EmulatorHarness = emulator, **overrides: Any) -> DatabricksClient:
        client = DatabricksClient(
            settings_for(harness.base_url, **overrides),
            transport=InProcessTransport(app=harness.app),
            clock=harness.real_clock,
            rng=random.Random(0),
        )
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.aclose()


async def add_fault(harness: EmulatorHarness, **fault: Any) -> None:
    """Install a fault through the emulator's control plane (`POST /emulator/faults`)."""
    async with harness.client() as control:
        response = await control.post("/emulator/faults", json=fault)
        assert response.status_code == 200, response.text


def stats(harness: EmulatorHarness) -> Any:
    return harness.app.emulator.stats


def task(key: str, **extra: Any) -> dict[str, Any]:
    return {"task_key": key, "notebook_task": {"notebook_path": f"/Repos/x/{key}"}, **extra}


def workflow(harness: EmulatorHarness, name: str = "wf", tasks: int = 2, **settings: Any) -> int:
    job = harness.state.create_job(
        {"name": name, "tasks": [task(f"t{i:03d}") for i in range(tasks)], **settings}
    )
    return job.job_id


# ------------------------------------------------------------------ connectivity and PAT


async def test_connectivity_with_a_personal_access_token(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    workflow(emulator)
    client = make_client()
    report = await client.test_connectivity()
    assert report.workspace_url == emulator.base_url
    assert report.auth_method == "personal access token"
    assert report.principal is None
    assert report.api_version == "2.2"
    assert report.jobs_visible
    assert client.metrics.calls[("jobs_list", "200")] == 1


async def test_a_refused_token_is_an_auth_error_without_the_token(
    emulator: EmulatorHarness, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "dapi0000000000000000000000000000dead"
    monkeypatch.setenv(PAT_VAR, wrong)
    client = make_client()
    with pytest.raises(DatabricksAuthError) as caught:
        await client.test_connectivity()
    assert not isinstance(caught.value, TokenExpiredError)
    assert caught.value.http_status == 403
    assert "Invalid access token." in str(caught.value)
    assert wrong not in str(caught.value)
    assert client.metrics.retries == {}


# ------------------------------------------------------------------ paging


@pytest.mark.parametrize("version", ["2.0", "2.1", "2.2"])
async def test_list_jobs_pages_to_the_end(
    version: str, emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    ids = {emulator.state.create_job({"name": f"job-{i:03d}"}).job_id for i in range(230)}
    client = make_client(api_versions={"jobs_list": version})
    listed = [job.job_id async for job in client.list_jobs(page_size=50)]
    assert len(listed) == 230
    assert set(listed) == ids
    assert client.metrics.calls[("jobs_list", "200")] == 5


async def test_offset_paging_stops_at_its_cap_where_tokens_do_not(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    for i in range(1150):
        emulator.state.create_job({"name": f"job-{i:04d}"})
    tokens = make_client(api_versions={"jobs_list": "2.1"})
    assert len([job async for job in tokens.list_jobs()]) == 1150
    emulator.advance(2)  # the workspace's own jobs/list bucket refills
    # 2.0 pages by offset only, and the server caps the offset at 1000 (reference §1).
    offsets = make_client(api_versions={"jobs_list": "2.0"})
    seen: list[int] = []

    async def list_all() -> None:
        async for job in offsets.list_jobs():
            seen.append(job.job_id)

    with pytest.raises(DatabricksBadRequestError, match="has exceeded the value of 1000"):
        await list_all()
    assert len(seen) == 1100


@pytest.mark.parametrize("version", ["2.0", "2.1", "2.2"])
async def test_list_jobs_by_name(
    version: str, emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    for name in ("Nightly", "nightly", "nightly-2", "other"):
        emulator.state.create_job({"name": name})
    client = make_client(api_versions={"jobs_list": version})
    names = sorted([job.settings.name or "" async for job in client.list_jobs(name="NIGHTLY")])
    assert names == ["Nightly", "nightly"]


async def test_expand_tasks_truncation_per_version(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator, "big", tasks=150)
    workflow(emulator, "small", tasks=3)
    v22 = make_client(api_versions={"jobs_list": "2.2", "jobs_get": "2.2"})
    listed = {job.settings.name: job async for job in v22.list_jobs(expand_tasks=True)}
    assert listed["big"].has_more is True
    assert len(listed["big"].settings.tasks or []) == 100
    assert len(listed["small"].settings.tasks or []) == 3
    # 2.1 drops the tasks of a job over 100 tasks (reference §1): unknown, not zero.
    v21 = make_client(api_versions={"jobs_list": "2.1"})
    listed = {job.settings.name: job async for job in v21.list_jobs(expand_tasks=True)}
    assert listed["big"].settings.tasks is None
    # Without expand_tasks the list does not say how many tasks there are.
    plain = {job.settings.name: job async for job in v21.list_jobs()}
    assert plain["small"].settings.tasks is None
    # jobs/get decides (D5).
    full = await v22.get_job(job_id)
    assert len(full.settings.tasks or []) == 150


@pytest.mark.parametrize("version", ["2.1", "2.2"])
async def test_get_job_merges_every_page(
    version: str, emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(
        emulator,
        "huge",
        tasks=250,
        job_clusters=[{"job_cluster_key": "main", "new_cluster": {"num_workers": 2}}],
        parameters=[{"name": "run_date", "default": ""}, {"name": "env", "default": "prod"}],
    )
    client = make_client(api_versions={"jobs_get": version})
    job = await client.get_job(job_id)
    keys = [t.task_key for t in job.settings.tasks or []]
    assert sorted(keys) == [f"t{i:03d}" for i in range(250)]
    assert job.settings.job_clusters == [
        {"job_cluster_key": "main", "new_cluster": {"num_workers": 2}}
    ]
    assert [p.name for p in job.settings.parameters or []] == ["run_date", "env"]
    assert not job.has_more
    assert "next_page_token" not in job.raw()
    assert client.metrics.calls[("jobs_get", "200")] == (3 if version == "2.2" else 1)


async def test_get_run_merges_every_page(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(
        emulator,
        "wide",
        tasks=130,
        parameters=[{"name": "env", "default": "prod"}],
        max_concurrent_runs=5,
    )
    client = make_client(api_versions={"runs_get": "2.2"})
    started = await client.run_now(job_id, {"env": "test"}, idempotency_token="wide-1")
    emulator.advance(5)  # past pending: every task has its task run
    run = await client.get_run(started.run_id)
    assert run.run_id == started.run_id
    tasks = run.tasks or []
    assert len(tasks) == 130
    assert len({t.run_id for t in tasks}) == 130
    assert [(p.name, p.value) for p in run.job_parameters or []] == [("env", "test")]
    assert client.metrics.calls[("runs_get", "200")] == 2


async def test_list_runs_pages_and_filters(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator, max_concurrent_runs=100)
    other = workflow(emulator, "other", max_concurrent_runs=100)
    mine = {emulator.state.run_now({"job_id": job_id}).run_id for _ in range(30)}
    emulator.state.run_now({"job_id": other})
    client = make_client()
    listed = [run async for run in client.list_runs(job_id=job_id, page_size=7)]
    assert {run.run_id for run in listed} == mine
    assert client.metrics.calls[("runs_list", "200")] == 5
    everything = [run async for run in client.list_runs(active_only=True)]
    assert len(everything) == 31
    with pytest.raises(ValueError, match="1 to 25"):
        [run async for run in client.list_runs(page_size=26)]


# ------------------------------------------------------------------ run-now idempotency


async def test_run_now_with_the_same_token_starts_one_run(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator, max_concurrent_runs=5)
    client = make_client()
    first = await client.run_now(job_id, idempotency_token="polysync-run-42")
    again = await client.run_now(job_id, idempotency_token="polysync-run-42")
    assert first.run_id == again.run_id
    assert first.run_page_url is None  # real Databricks sends none (reference §3)
    assert len(emulator.state.runs) == 1


async def test_a_lost_run_now_answer_is_retried_with_its_token(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator, max_concurrent_runs=5)
    await add_fault(emulator, method="POST", path="jobs/run-now", kind="lose_response", times=1)
    client = make_client()
    started = await autojump(
        emulator.real_clock, client.run_now(job_id, idempotency_token="polysync-run-7")
    )
    assert list(emulator.state.runs) == [started.run_id]  # the run the lost answer announced
    assert client.metrics.calls[("run_now", "transport_error")] == 1
    assert client.metrics.retries["run_now"] == 1


async def test_run_now_without_a_token_is_never_retried_blindly(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator, max_concurrent_runs=5)
    await add_fault(emulator, method="POST", path="jobs/run-now", kind="lose_response", times=1)
    await add_fault(
        emulator, method="POST", path="jobs/run-now", kind="status", status=503, times=1
    )
    client = make_client()
    with pytest.raises(DatabricksTransportError):
        await autojump(emulator.real_clock, client.run_now(job_id))
    assert len(emulator.state.runs) == 1  # it did start: a retry would have started a second
    with pytest.raises(DatabricksUnavailableError):
        await autojump(emulator.real_clock, client.run_now(job_id))
    assert client.metrics.retries == {}
    assert len(emulator.state.runs) == 1


async def test_run_now_with_a_token_rides_out_5xx_and_429(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator, max_concurrent_runs=5)
    await add_fault(
        emulator, method="POST", path="jobs/run-now", kind="status", status=500, times=1
    )
    await add_fault(
        emulator,
        method="POST",
        path="jobs/run-now",
        kind="status",
        status=429,
        error_code="REQUEST_LIMIT_EXCEEDED",
        retry_after_s=2,
        times=1,
    )
    client = make_client()
    started = await autojump(
        emulator.real_clock, client.run_now(job_id, {}, idempotency_token="tok")
    )
    assert list(emulator.state.runs) == [started.run_id]
    assert client.metrics.retries["run_now"] == 2


async def test_an_over_long_token_is_refused_before_any_call(make_client: ClientFactory) -> None:
    client = make_client()
    with pytest.raises(ValueError, match="1 to 64 characters"):
        await client.run_now(1, idempotency_token="x" * 65)
    with pytest.raises(ValueError, match="1 to 64 characters"):
        await client.run_now(1, idempotency_token="")
    assert client.metrics.calls == {}


# ------------------------------------------------------------------ errors


async def test_missing_job_and_run_are_not_found(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    client = make_client()
    with pytest.raises(DatabricksNotFoundError) as caught:
        await client.get_job(998654886170278)
    assert caught.value.http_status == 400
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Job 998654886170278 does not exist." in str(caught.value)
    with pytest.raises(DatabricksNotFoundError, match="Job 5 does not exist"):
        await client.run_now(5, idempotency_token="t")
    with pytest.raises(DatabricksNotFoundError, match="Run 77 does not exist"):
        await client.get_run(77)
    with pytest.raises(DatabricksNotFoundError, match="Run 77 does not exist"):
        await client.cancel_run(77)
    assert client.metrics.retries == {}


async def test_bad_requests_keep_the_databricks_message(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator, parameters=[{"name": "env", "default": "prod"}])
    client = make_client()
    with pytest.raises(DatabricksBadRequestError) as caught:
        await client.run_now(job_id, {"nope": "1"})
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    started = await client.run_now(job_id, {"env": "dev"})
    emulator.advance(5)
    with pytest.raises(
        DatabricksBadRequestError, match="runs with multiple tasks is not supported"
    ):
        await client.get_run_output(started.run_id)
    run = await client.get_run(started.run_id)
    first_task = (run.tasks or [])[0]
    assert first_task.run_id is not None
    output = await client.get_run_output(first_task.run_id)
    assert output.metadata is not None
    assert output.metadata.run_id == first_task.run_id


async def test_create_cancel_and_delete(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    client = make_client()
    job_id = await client.create_job(
        {
            "name": "made",
            "max_concurrent_runs": 3,
            "tasks": [task("a"), task("b", depends_on=[{"task_key": "a"}])],
        }
    )
    assert (await client.get_job(job_id)).settings.name == "made"
    one = await client.run_now(job_id, idempotency_token="c1")
    await client.run_now(job_id, idempotency_token="c2")
    await client.cancel_run(one.run_id)
    await client.cancel_run(one.run_id)  # idempotent by nature
    await client.cancel_all_runs(job_id)
    emulator.advance(30)
    states = {
        (run.state.result_state if run.state else None)
        async for run in client.list_runs(job_id=job_id)
    }
    assert states == {"CANCELED"}
    await client.delete_job(job_id)
    with pytest.raises(DatabricksNotFoundError):
        await client.get_job(job_id)


# ------------------------------------------------------------------ retries and rate limits


async def test_503_and_500_on_gets_are_retried(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator)
    await add_fault(
        emulator, method="GET", path="jobs/get", kind="status", status=503, retry_after_s=4, times=2
    )
    await add_fault(
        emulator,
        method="GET",
        path="jobs/runs/get",
        kind="status",
        status=500,
        error_code="INTERNAL_ERROR",
        message="boom",
        body="text",
        times=2,
    )
    await add_fault(emulator, method="GET", path="jobs/runs/list", kind="drop", times=1)
    client = make_client()
    start_s = emulator.real_clock.now()
    job = await autojump(emulator.real_clock, client.get_job(job_id))
    assert job.job_id == job_id
    assert emulator.real_clock.now() - start_s >= 8.0  # Retry-After 4 s, twice
    started = await client.run_now(job_id, idempotency_token="r")
    run = await autojump(emulator.real_clock, client.get_run(started.run_id))
    assert run.run_id == started.run_id

    async def list_ids() -> list[int]:
        return [r.run_id async for r in client.list_runs(job_id=job_id)]

    assert await autojump(emulator.real_clock, list_ids()) == [started.run_id]
    assert client.metrics.retries == {"jobs_get": 2, "runs_get": 2, "runs_list": 1}
    assert client.metrics.calls[("jobs_get", "503")] == 2
    assert client.metrics.calls[("runs_list", "transport_error")] == 1


async def test_retrying_stops_at_the_deadline(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator)
    await add_fault(
        emulator,
        method="GET",
        path="jobs/get",
        kind="status",
        status=502,
        body="html",
        message="Bad Gateway",
    )
    client = make_client(retry={"deadline_s": 20, "max_attempts": 100})
    start_s = emulator.real_clock.now()
    with pytest.raises(DatabricksServerError, match="Bad Gateway"):
        await autojump(emulator.real_clock, client.get_job(job_id))
    assert emulator.real_clock.now() - start_s <= 20.0
    assert client.metrics.retries["jobs_get"] >= 3


async def test_a_429_pauses_every_caller_of_that_endpoint(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator)
    client = make_client()
    started = await client.run_now(job_id, idempotency_token="watched")
    await add_fault(
        emulator,
        method="GET",
        path="jobs/runs/get",
        kind="status",
        status=429,
        error_code="REQUEST_LIMIT_EXCEEDED",
        message="Too many requests",
        retry_after_s=3,
        times=1,
    )
    stats(emulator).reset()
    runs = await autojump(
        emulator.real_clock, asyncio.gather(*(client.get_run(started.run_id) for _ in range(30)))
    )
    assert {run.run_id for run in runs} == {started.run_id}
    records = [r for r in stats(emulator).recent() if r.path.endswith("/jobs/runs/get")]
    (limited,) = [r for r in records if r.status == 429]
    answered = [r for r in records if r.status == 200]
    assert len(answered) == 30
    # Nobody asked again until Retry-After had passed.
    assert all(r.time_s >= limited.time_s + 3.0 for r in answered)
    assert client.metrics.rate_limited["runs_get"] == 1


async def test_many_watchers_under_a_tight_server_limit_do_not_storm(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator)
    client = make_client()
    started = await client.run_now(job_id, idempotency_token="watched")
    # The workspace allows 5 runs/get per second; the client assumes 100 (its default).
    emulator.app.emulator.limiter.configure(
        RateLimitConfig(per_endpoint_rps={"jobs/runs/get": 5.0})
    )
    stats(emulator).reset()
    runs = await autojump(
        emulator.real_clock, asyncio.gather(*(client.get_run(started.run_id) for _ in range(100)))
    )
    assert len(runs) == 100
    limited = stats(emulator).count("jobs/runs/get", status=429)
    # One 429 per Retry-After window at most, not one per watcher: ~100/5 windows.
    assert 1 <= limited <= 25
    assert client.metrics.rate_limited["runs_get"] == limited


async def test_a_thousand_polls_at_the_published_limits_get_no_429(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator)
    client = make_client()
    started = await client.run_now(job_id, idempotency_token="watched")
    stats(emulator).reset()
    runs = await autojump(
        emulator.real_clock, asyncio.gather(*(client.get_run(started.run_id) for _ in range(1000)))
    )
    assert len(runs) == 1000
    assert stats(emulator).count(status=429) == 0
    assert client.metrics.rate_limited == {}


async def test_clients_of_one_workspace_share_their_limits(
    emulator: EmulatorHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PAT_VAR, emulator.token)
    registry = RateLimiterRegistry(emulator.real_clock)
    settings = settings_for(emulator.base_url)
    async with (
        DatabricksClient(
            settings, transport=InProcessTransport(app=emulator.app), rate_limiters=registry
        ) as first,
        DatabricksClient(
            settings,
            transport=InProcessTransport(app=emulator.app),
            rate_limiters=registry,
            metrics=ClientMetrics(),
        ) as second,
    ):
        assert first.rate_limiter is second.rate_limiter
        first.rate_limiter.pause_until(Endpoint.JOBS_LIST, emulator.real_clock.now() + 5)
        listing = asyncio.ensure_future(second.test_connectivity())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not listing.done()
        await autojump(emulator.real_clock, listing)
        assert second.metrics.calls[("jobs_list", "200")] == 1


# ------------------------------------------------------------------ token expiry


def oauth_harness() -> EmulatorHarness:
    return make_harness(make_spec(auth={"tokens": [], "oauth_clients": [OAUTH_CLIENT]}))


@pytest.fixture
def oauth_settings(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv(SECRET_VAR, OAUTH_CLIENT.client_secret.get_secret_value())
    return {
        "auth": {
            "method": "databricks_oauth_m2m",
            "client_id": OAUTH_CLIENT.client_id,
            "client_secret": f"env:{SECRET_VAR}",
        }
    }


async def test_oauth_m2m_end_to_end(
    make_client: ClientFactory, oauth_settings: dict[str, Any]
) -> None:
    harness = oauth_harness()
    client = make_client(harness, **oauth_settings)
    report = await client.test_connectivity()
    assert report.auth_method == "Databricks OAuth service principal sp-oauth-1"
    assert client.metrics.token_fetches == 1


async def test_an_expired_token_is_refreshed_once_and_the_call_retried(
    make_client: ClientFactory, oauth_settings: dict[str, Any]
) -> None:
    harness = oauth_harness()
    job_id = workflow(harness)
    client = make_client(harness, **oauth_settings)
    await client.get_job(job_id)
    async with harness.client() as control:
        assert (await control.post("/emulator/tokens/expire")).status_code == 200
    job = await client.get_job(job_id)  # 401 "Token is expired" -> refresh -> same call again
    assert job.job_id == job_id
    metrics = client.metrics
    assert (metrics.token_rejections, metrics.token_fetches, metrics.token_refreshes) == (1, 2, 1)
    assert metrics.calls[("jobs_get", "401")] == 1
    assert metrics.retries == {}


async def test_tokens_are_renewed_five_minutes_before_expiry(
    make_client: ClientFactory, oauth_settings: dict[str, Any]
) -> None:
    harness = oauth_harness()
    job_id = workflow(harness)
    client = make_client(harness, **oauth_settings)
    await client.get_job(job_id)
    harness.advance(3600 - 301)
    await client.get_job(job_id)
    assert client.metrics.token_fetches == 1
    harness.advance(1)
    await client.get_job(job_id)
    assert client.metrics.token_fetches == 2
    assert client.metrics.token_rejections == 0  # renewed before Databricks had to refuse it


@pytest.mark.parametrize(
    "fault",
    [
        {
            "status": 403,
            "body": "html",
            "message": "Token is expiring within 30 seconds. (token expired)",
        },
        {
            "status": 400,
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": "io.jsonwebtoken.ExpiredJwtException: JWT expired at 2026-11-25T09:00:00Z",
        },
        {"status": 403, "body": "numeric", "message": "JWT has expired"},
    ],
    ids=["403 expiring", "400 ExpiredJwtException", "403 numeric"],
)
async def test_every_expired_token_shape_triggers_a_refresh(
    fault: dict[str, Any], emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator)
    await add_fault(emulator, method="GET", path="jobs/get", kind="status", times=1, **fault)
    client = make_client()
    assert (await client.get_job(job_id)).job_id == job_id
    assert client.metrics.token_rejections == 1


async def test_a_token_refused_twice_is_not_refreshed_again(
    emulator: EmulatorHarness, make_client: ClientFactory
) -> None:
    job_id = workflow(emulator)
    await add_fault(
        emulator,
        method="GET",
        path="jobs/get",
        kind="status",
        status=401,
        error_code="UNAUTHENTICATED",
        message="Token is expired",
        times=5,
    )
    client = make_client()
    with pytest.raises(TokenExpiredError):
        await client.get_job(job_id)
    assert client.metrics.token_rejections == 1
    assert client.metrics.calls[("jobs_get", "401")] == 2


# ------------------------------------------------------------------ Azure identities over TLS


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def azure_workspace(tls: TlsFiles) -> AsyncIterator[tuple[EmulatorHarness, str]]:
    """The emulator over HTTPS (azure-identity insists), its token clock on real wall time."""
    spec: WorkspaceSpec = make_spec(
        auth={
            "tokens": [],
            "service_principals": [ENTRA_SP],
            "managed_identity": ManagedIdentity(identity_header=MI_HEADER),
        }
    )
    # azure-identity judges expiry with time.time(), so issued tokens must live on wall time.
    clock, real = ManualClock(), ManualClock(start_s=time.time())
    app = create_app(spec, clock=clock, real_clock=real)
    harness = EmulatorHarness(app=app, clock=clock, real_clock=real, base_url="", token="")
    async with running_server(app, tls=tls) as base_url:
        harness.base_url = base_url
        yield harness, base_url


def azure_client(harness: EmulatorHarness, tls: TlsFiles, auth: dict[str, Any]) -> DatabricksClient:
    settings = settings_for(harness.base_url, auth=auth, tls_ca_bundle=str(tls.ca_path))
    return DatabricksClient(settings, clock=harness.real_clock)


async def test_entra_service_principal_end_to_end(
    azure_workspace: tuple[EmulatorHarness, str], tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, base_url = azure_workspace
    job_id = workflow(harness)
    monkeypatch.setenv(SECRET_VAR, ENTRA_SP.client_secret.get_secret_value())
    auth = {
        "method": "entra_service_principal",
        "tenant_id": TENANT_ID,
        "client_id": ENTRA_SP.client_id,
        "client_secret": f"env:{SECRET_VAR}",
        "authority_host": base_url,
        "disable_instance_discovery": True,
    }
    async with azure_client(harness, tls, auth) as client:
        report = await client.test_connectivity()
        assert report.auth_method == f"Entra ID service principal {ENTRA_SP.client_id}"
        harness.app.emulator.issuer.expire_all()
        assert (await client.get_job(job_id)).job_id == job_id  # refreshed with a new credential
        assert (client.metrics.token_fetches, client.metrics.token_rejections) == (2, 1)


async def test_entra_refusal_names_the_problem_not_the_secret(
    azure_workspace: tuple[EmulatorHarness, str], tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, base_url = azure_workspace
    wrong = "entra-wrong-secret-value"
    monkeypatch.setenv(SECRET_VAR, wrong)
    auth = {
        "method": "entra_service_principal",
        "tenant_id": TENANT_ID,
        "client_id": ENTRA_SP.client_id,
        "client_secret": f"env:{SECRET_VAR}",
        "authority_host": base_url,
        "disable_instance_discovery": True,
    }
    async with azure_client(harness, tls, auth) as client:
        with pytest.raises(DatabricksAuthError, match="AADSTS7000215") as caught:
            await client.test_connectivity()
    assert wrong not in str(caught.value)
    assert client.metrics.calls == {}  # no API call was made without a token


@pytest.mark.parametrize("method", ["managed_identity", "azure_default"])
async def test_credential_free_methods_end_to_end(
    method: str,
    azure_workspace: tuple[EmulatorHarness, str],
    tls: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness, base_url = azure_workspace
    for name in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_USERNAME",
        "MSI_ENDPOINT",
        "MSI_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    # App Service's managed identity protocol, served by the emulator (reference §9.3).
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", MI_HEADER)
    async with azure_client(harness, tls, {"method": method}) as client:
        report = await client.test_connectivity()
        assert report.jobs_visible is False
        assert client.metrics.token_fetches == 1


async def test_the_ca_bundle_is_required_for_a_private_ca(
    azure_workspace: tuple[EmulatorHarness, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, base_url = azure_workspace
    monkeypatch.setenv(PAT_VAR, "dapi-not-used")
    async with DatabricksClient(settings_for(base_url), clock=harness.real_clock) as client:
        with pytest.raises(DatabricksTransportError, match="tls_ca_bundle") as caught:
            await client.test_connectivity()
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert client.metrics.retries == {}  # an untrusted certificate stays untrusted
