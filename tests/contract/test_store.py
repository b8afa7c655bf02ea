"""The Store contract, run against a real SQLite file and a real PostgreSQL database alike."""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import make_url

from polysync.domain.models import (
    DataType,
    Direction,
    ImportedJob,
    Parameter,
    RunSnapshot,
    RunStatus,
    TaskRunState,
    Termination,
)
from polysync.domain.records import (
    EngineHeartbeat,
    EngineState,
    Job,
    NewPlatform,
    NewRun,
    Platform,
    Run,
    RunFilter,
)
from polysync.engine.ports import Observation, PollFailure, Store
from polysync.errors import (
    LIST_JOBS,
    LIST_PLATFORMS,
    LIST_RUNS,
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    UsageError,
)
from polysync.jobtypes.databricks.parameters import JobKind, ParameterSource
from polysync.store import SqlStore, default_database_url, open_store, upgrade
from polysync.store.migrate import head_revision, known_head
from tests.conftest import free_port

PG_URL_VARIABLE = "POLYSYNC_TEST_POSTGRES_URL"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
URL = "https://adb-1234567890123456.7.azuredatabricks.net"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------- backends


@asynccontextmanager
async def fresh_postgres_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server, dropped afterwards: no test sees another's rows."""
    name = f"polysync_test_{secrets.token_hex(6)}"
    admin = make_url(server_url).set(drivername="postgresql", database="postgres")
    conninfo = admin.render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'polysync.db'}"
        return
    server_url = os.environ.get(PG_URL_VARIABLE)
    if not server_url:
        pytest.skip(
            f"{PG_URL_VARIABLE} is not set; set it to a PostgreSQL server URL, e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/test (.ci/run does)"
        )
    async with fresh_postgres_database(server_url) as url:
        yield url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    async with await open_store(database_url) as opened:
        yield opened


# ---------------------------------------------------------------------------------- builders

PARAMETERS = (
    Parameter("env", DataType.STRING, default="prod", direction=Direction.INPUT),
    Parameter("rows", DataType.INT, default="10", stored_value="25"),
    Parameter("out", DataType.JSON, direction=Direction.OUTPUT),
    Parameter(
        "mode",
        default="full",
        task_key="ingest",
        source=ParameterSource.NOTEBOOK_BASE_PARAMETERS,
        direction=Direction.INPUT_OUTPUT,
    ),
)


def new_platform(name: str = "prod", **auth: Any) -> NewPlatform:
    return NewPlatform(
        name=name,
        workspace_url=URL,
        auth={"method": "pat", "token": "env:DATABRICKS_TOKEN", **auth},
        cluster_id="0301-abc",
        description="Production workspace",
        options={"api_versions": {"list": "2.1"}, "rate_limits": {"per_s": 20}},
    )


def imported(external_id: str = "101", name: str = "nightly-etl", **changes: Any) -> ImportedJob:
    values: dict[str, Any] = {
        "external_id": external_id,
        "name": name,
        "kind": JobKind.WORKFLOW,
        "task_count": 2,
        "description": "Nightly ETL",
        "tags": {"team": "data"},
        "task_keys": ("ingest", "transform"),
        "parameters": PARAMETERS,
    }
    return ImportedJob(**(values | changes))


async def platform_and_job(store: Store, name: str = "prod") -> tuple[Platform, Job]:
    platform = await store.add_platform(new_platform(name), T0)
    job, _ = await store.upsert_job(platform.id, imported(), T0)
    return platform, job


async def start(store: Store, job: Job, now: datetime = T0, key: str | None = None) -> Run:
    key = key or secrets.token_hex(16)
    return await store.create_run(
        NewRun(
            job_id=job.id,
            platform_id=job.platform_id,
            key=key,
            idempotency_token=f"polysync-{key}",
            overrides={"env": "dev"},
            parameters_sent={"env": "dev", "rows": "25"},
        ),
        now,
    )


def snapshot(status: RunStatus, message: str = "", **changes: Any) -> RunSnapshot:
    return RunSnapshot(status=status, message=message, **changes)


async def event_count(store: Store, run_id: int) -> int:
    return len(await store.run_events(run_id))


# ---------------------------------------------------------------------------------- schema


async def test_a_fresh_database_is_migrated_to_head(database_url: str) -> None:
    async with await open_store(database_url) as store, store.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        revision = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    expected = {
        "platforms",
        "jobs",
        "runs",
        "run_events",
        "api_keys",
        "engines",
        "audit_events",
        "secret_vaults",
        "contention_profiles",
    }
    assert expected | {"alembic_version"} <= tables
    assert revision == head_revision() == known_head() is not None


async def test_opening_twice_is_idempotent_and_keeps_the_data(database_url: str) -> None:
    async with await open_store(database_url) as first:
        await first.add_platform(new_platform(), T0)
    async with await open_store(database_url) as second:
        assert [p.name for p in await second.list_platforms()] == ["prod"]


async def test_upgrade_brings_a_database_to_head_and_can_run_again(database_url: str) -> None:
    assert await upgrade(database_url) == head_revision()
    assert await upgrade(database_url) == head_revision()
    async with await open_store(database_url) as store:
        assert await store.list_platforms() == []


async def test_urls_without_the_async_driver_are_accepted(database_url: str) -> None:
    plain = make_url(database_url)
    plain = plain.set(drivername=plain.get_backend_name())
    assert "+" not in plain.drivername
    async with await open_store(plain.render_as_string(hide_password=False)) as store:
        assert (await store.add_platform(new_platform(), T0)).name == "prod"


async def test_two_stores_opening_a_fresh_database_at_once_both_succeed(database_url: str) -> None:
    first, second = await asyncio.gather(open_store(database_url), open_store(database_url))
    try:
        await first.add_platform(new_platform(), T0)
        assert [p.name for p in await second.list_platforms()] == ["prod"]
    finally:
        await first.aclose()
        await second.aclose()


# ---------------------------------------------------------------------------------- platforms


async def test_platform_add_get_list(store: SqlStore) -> None:
    added = await store.add_platform(new_platform("prod"), T0)
    await store.add_platform(new_platform("dev"), at(1))
    await store.add_platform(new_platform("Beta"), at(2))
    await store.add_platform(new_platform("alpha"), at(3))
    assert added.provider == "azure-databricks"
    assert added.auth == {"method": "pat", "token": "env:DATABRICKS_TOKEN"}
    assert added.options == {"api_versions": {"list": "2.1"}, "rate_limits": {"per_s": 20}}
    assert (added.cluster_id, added.description) == ("0301-abc", "Production workspace")
    assert added.created_at == added.updated_at == T0
    assert await store.get_platform(added.id) == added
    assert await store.get_platform("prod") == added
    assert [p.name for p in await store.list_platforms()] == ["alpha", "Beta", "dev", "prod"]


async def test_platform_names_are_unique(store: SqlStore) -> None:
    await store.add_platform(new_platform("prod"), T0)
    with pytest.raises(UsageError, match="A platform named 'prod' already exists"):
        await store.add_platform(new_platform("prod"), T0)
    dev = await store.add_platform(new_platform("dev"), T0)
    with pytest.raises(UsageError, match="already exists"):
        await store.update_platform(replace(dev, name="prod"), at(5))
    assert (await store.get_platform(dev.id)).name == "dev"


async def test_platform_update(store: SqlStore) -> None:
    added = await store.add_platform(new_platform(), T0)
    changed = replace(
        added,
        name="production",
        workspace_url=URL + "/",
        auth={"method": "entra_service_principal", "client_secret": "file:/run/sp"},
        cluster_id=None,
        description="",
        options={},
    )
    updated = await store.update_platform(changed, at(60))
    assert updated == replace(changed, updated_at=at(60))
    assert await store.get_platform("production") == updated
    with pytest.raises(NotFoundError, match="No platform with id 999"):
        await store.update_platform(replace(added, id=999), at(60))


async def test_unknown_platform(store: SqlStore) -> None:
    with pytest.raises(NotFoundError) as by_name:
        await store.get_platform("nope")
    # Interface-neutral: each interface renders the hint its own way (no CLI command here).
    assert by_name.value.message == "No platform named 'nope'."
    assert by_name.value.hint is LIST_PLATFORMS
    with pytest.raises(NotFoundError, match="No platform with id 42"):
        await store.get_platform(42)


@pytest.mark.parametrize("field", ["token", "client_secret", "password", "Refresh_Token"])
async def test_secret_values_are_refused_and_never_echoed(store: SqlStore, field: str) -> None:
    secret = "dapi0123456789abcdef0123456789abcdef"
    with pytest.raises(UsageError) as refused:
        await store.add_platform(new_platform(**{field: secret}), T0)
    assert f"'{field}'" in refused.value.message
    assert "env:NAME" in refused.value.message
    assert "file:PATH" in refused.value.message
    assert secret not in str(refused.value)
    assert await store.list_platforms() == []

    added = await store.add_platform(new_platform(**{field: " env:MY_SECRET "}), T0)
    assert added.auth[field] == "env:MY_SECRET"
    with pytest.raises(UsageError) as refused_update:
        await store.update_platform(replace(added, auth={**added.auth, field: secret}), at(1))
    assert secret not in str(refused_update.value)
    assert (await store.get_platform(added.id)).auth[field] == "env:MY_SECRET"


async def test_remove_platform_refuses_while_runs_are_active(store: SqlStore) -> None:
    platform, job = await platform_and_job(store)
    run = await start(store, job)
    with pytest.raises(UsageError, match=rf"'prod' still has 1 active run\(s\) \(id {run.id}\)"):
        await store.remove_platform(platform.id)
    assert await store.get_run(run.id) == run

    await store.record_failure(run.id, "refused", at(1))
    await store.remove_platform(platform.id)
    assert await store.list_platforms() == []
    assert await store.list_jobs() == []
    assert await store.list_runs(RunFilter()) == []
    with pytest.raises(NotFoundError):
        await store.get_job(job.id)
    with pytest.raises(NotFoundError):
        await store.run_events(run.id)
    with pytest.raises(NotFoundError, match=f"No platform with id {platform.id}"):
        await store.remove_platform(platform.id)


async def test_removing_a_platform_while_a_run_starts_on_it(database_url: str) -> None:
    """Either the removal sees the new run and refuses, or the run finds no platform."""
    outcomes: set[tuple[str, str]] = set()
    async with await open_store(database_url) as one, await open_store(database_url) as two:
        for round_no in range(15):
            platform, job = await platform_and_job(one, f"p{round_no}")
            removed, started = await asyncio.gather(
                one.remove_platform(platform.id), start(two, job), return_exceptions=True
            )
            if isinstance(removed, BaseException):
                assert isinstance(removed, ConflictError), removed
                assert "active run" in removed.message
                assert isinstance(started, Run)
                assert (await one.get_run(started.id)).platform_id == platform.id
                await one.record_failure(started.id, "x", T0)
                await one.remove_platform(platform.id)
            else:
                assert isinstance(started, NotFoundError), started
                assert "No platform with id" in started.message
            outcomes.add((type(removed).__name__, type(started).__name__))
    assert outcomes <= {("ConflictError", "Run"), ("NoneType", "NotFoundError")}


# ---------------------------------------------------------------------------------- jobs


async def test_upsert_creates_then_replaces_the_schema(store: SqlStore) -> None:
    platform = await store.add_platform(new_platform(), T0)
    job, created = await store.upsert_job(platform.id, imported(), T0)
    assert created
    assert job.as_imported() == imported()
    assert (job.platform_id, job.imported_at, job.synced_at) == (platform.id, T0, T0)

    synced = imported(
        name="nightly-etl-v2",
        kind=JobKind.JOB,
        task_count=1,
        task_keys=("ingest",),
        tags={},
        parameters=(Parameter("env", default="test"),),
    )
    again, created = await store.upsert_job(platform.id, synced, at(3600))
    assert not created
    assert again.id == job.id
    assert again.as_imported() == synced
    assert (again.imported_at, again.synced_at) == (T0, at(3600))
    assert await store.get_job(job.id) == again


async def test_external_ids_are_per_platform(store: SqlStore) -> None:
    prod, job = await platform_and_job(store, "prod")
    dev = await store.add_platform(new_platform("dev"), T0)
    other, created = await store.upsert_job(dev.id, imported(), T0)
    assert created
    assert other.id != job.id
    assert await store.get_job("101", platform_id=prod.id) == job
    assert await store.get_job(" 101 ", platform_id=dev.id) == other
    assert [j.id for j in await store.list_jobs()] == [job.id, other.id]
    assert await store.list_jobs(dev.id) == [other]
    with pytest.raises(NotFoundError, match="No platform with id 999"):
        await store.upsert_job(999, imported(), T0)


async def test_get_job_by_id_external_id_or_name(store: SqlStore) -> None:
    prod, job = await platform_and_job(store, "prod")
    dev = await store.add_platform(new_platform("dev"), T0)
    twin, _ = await store.upsert_job(dev.id, imported(external_id="202"), T0)
    assert await store.get_job(job.id) == job
    assert await store.get_job(job.id, platform_id=prod.id) == job
    assert await store.get_job("202") == twin
    assert await store.get_job("nightly-etl", platform_id=dev.id) == twin

    with pytest.raises(UsageError) as ambiguous:
        await store.get_job("nightly-etl")
    assert f"id {job.id} (External Id 101, platform 'prod')" in ambiguous.value.message
    assert f"id {twin.id} (External Id 202, platform 'dev')" in ambiguous.value.message
    assert not isinstance(ambiguous.value, NotFoundError)

    with pytest.raises(NotFoundError) as missing:
        await store.get_job("weekly", platform_id=prod.id)
    assert missing.value.message == "No job with External Id or name 'weekly' on platform 'prod'."
    assert missing.value.hint is LIST_JOBS
    with pytest.raises(NotFoundError, match=f"No job with id {twin.id} on platform 'prod'"):
        await store.get_job(twin.id, platform_id=prod.id)
    with pytest.raises(NotFoundError, match="No platform with id 999"):
        await store.get_job("101", platform_id=999)


async def test_save_job_keeps_the_users_edits(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    edited_parameters = (
        Parameter("env", default="prod", direction=Direction.INPUT_OUTPUT, stored_value="qa"),
        *PARAMETERS[1:],
    )
    edited = replace(job, name="Nightly ETL", description="ours", parameters=edited_parameters)
    saved = await store.save_job(edited, at(10))
    assert saved == edited
    assert await store.get_job(job.id) == edited
    with pytest.raises(NotFoundError, match="No job with id 999"):
        await store.save_job(replace(job, id=999), at(10))


# ---------------------------------------------------------------------------------- runs


async def test_create_run(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job, key="a" * 32)
    assert run.status is RunStatus.STARTING
    assert run.message == "Submitting to Databricks"
    assert (run.key, run.idempotency_token) == ("a" * 32, "polysync-" + "a" * 32)
    assert run.overrides == {"env": "dev"}
    assert run.parameters_sent == {"env": "dev", "rows": "25"}
    assert (run.created_at, run.updated_at, run.next_poll_at) == (T0, T0, T0)
    assert (run.run_id, run.submitted_at, run.ended_at, run.run_page_url) == (None,) * 4
    assert (run.tasks, run.submit_attempts, run.lease_owner) == ((), 0, None)
    assert await store.get_run(run.id) == run
    [event] = await store.run_events(run.id)
    assert (event.run_id, event.at, event.status, event.message) == (
        run.id,
        T0,
        RunStatus.STARTING,
        "Submitting to Databricks",
    )

    with pytest.raises(UsageError, match="already exists"):
        await start(store, job, key="a" * 32)
    with pytest.raises(NotFoundError, match="No job with id 999"):
        await store.create_run(NewRun(999, job.platform_id, "k", "t", {}, {}), T0)
    dev = await store.add_platform(new_platform("dev"), T0)
    with pytest.raises(UsageError, match=f"Job {job.id} belongs to platform id {job.platform_id}"):
        await store.create_run(NewRun(job.id, dev.id, "k", "t", {}, {}), T0)
    with pytest.raises(NotFoundError, match="No platform with id 999"):
        await store.create_run(NewRun(job.id, 999, "k", "t", {}, {}), T0)


async def test_record_submitted(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    url = f"{URL}/#job/101/run/1"
    submitted = await store.record_submitted(run.id, "1052232433102036", url, at(1), at(6))
    assert submitted.run_id == "1052232433102036"
    assert (submitted.submitted_at, submitted.next_poll_at, submitted.updated_at) == (
        at(1),
        at(6),
        at(1),
    )
    assert submitted.run_page_url == url
    assert submitted.status is RunStatus.STARTING
    events = await store.run_events(run.id)
    assert [e.source for e in events] == ["engine", "submit"]
    assert "1052232433102036" in events[-1].message

    # A retried run-now with the same token returns the same Databricks run (D8): no new event.
    again = await store.record_submitted(run.id, "1052232433102036", url, at(2), at(7))
    assert (again.submitted_at, again.next_poll_at) == (at(1), at(7))
    assert await event_count(store, run.id) == 2


async def test_record_submit_attempt_counts_and_reschedules(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    begun = await store.begin_submit(run.id, at(4), lease=None)  # counted before it is sent
    assert begun is not None
    assert begun.submit_attempts == 1
    first = await store.record_submit_attempt(run.id, "run-now timed out; retrying", at(5))
    await store.begin_submit(run.id, at(14), lease=None)
    second = await store.record_submit_attempt(run.id, "HTTP 503; retrying", at(15))
    assert (first.submit_attempts, second.submit_attempts) == (1, 2)
    assert (second.next_poll_at, second.message) == (at(15), "HTTP 503; retrying")
    assert second.status is RunStatus.STARTING
    assert await event_count(store, run.id) == 1


async def test_snapshots_write_an_event_only_when_status_or_message_change(
    store: SqlStore,
) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    await store.record_submitted(run.id, "7", f"{URL}/#job/101/run/1", at(1), at(5))
    task = TaskRunState("ingest", RunStatus.RUNNING, run_id=8, life_cycle_state="RUNNING")

    running, wrote = await store.record_snapshot(
        run.id,
        snapshot(RunStatus.RUNNING, life_cycle_state="RUNNING", tasks=(task,)),
        at(5),
        at(10),
    )
    assert wrote
    assert (running.status, running.message, running.life_cycle_state) == (
        RunStatus.RUNNING,
        "",
        "RUNNING",
    )
    assert running.tasks == (task,)
    assert running.next_poll_at == at(10)

    real_url = f"{URL}/?o=1#job/101/run/7"
    same, wrote = await store.record_snapshot(
        run.id, snapshot(RunStatus.RUNNING, run_page_url=real_url), at(10), at(20)
    )
    assert not wrote
    assert (same.run_page_url, same.tasks, same.updated_at) == (real_url, (), at(10))

    _, wrote = await store.record_snapshot(
        run.id, snapshot(RunStatus.RUNNING, "Waiting for a slot"), at(20), at(30)
    )
    assert wrote
    _, wrote = await store.record_snapshot(
        run.id, snapshot(RunStatus.RUNNING, "Waiting for a slot"), at(30), at(40)
    )
    assert not wrote

    events = await store.run_events(run.id)
    assert [(e.status, e.message, e.source) for e in events[2:]] == [
        (RunStatus.RUNNING, "", "poll"),
        (RunStatus.RUNNING, "Waiting for a slot", "poll"),
    ]
    assert [e.at for e in events] == [T0, at(1), at(5), at(20)]


async def test_a_terminal_status_never_changes(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    done, wrote = await store.record_snapshot(
        run.id,
        snapshot(RunStatus.SUCCESS, "ok", life_cycle_state="TERMINATED", result_state="SUCCESS"),
        at(100),
        None,
    )
    assert wrote
    assert (done.status, done.ended_at, done.next_poll_at) == (RunStatus.SUCCESS, at(100), None)
    events_before = await event_count(store, run.id)

    late_task = TaskRunState(
        "ingest",
        RunStatus.FAILED,
        termination=Termination("RUN_EXECUTION_ERROR", "CLIENT_ERROR", "boom"),
    )
    late, wrote = await store.record_snapshot(
        run.id,
        snapshot(RunStatus.RUNNING, "restarted?", tasks=(late_task,), run_page_url="https://x/r"),
        at(200),
        at(210),
    )
    assert not wrote
    assert (late.status, late.message, late.ended_at) == (RunStatus.SUCCESS, "ok", at(100))
    assert (late.life_cycle_state, late.result_state) == ("TERMINATED", "SUCCESS")
    assert late.tasks == (late_task,)
    assert late.run_page_url == "https://x/r"

    assert await store.record_failure(run.id, "too late", at(300)) == late
    unchanged = await store.request_cancel(run.id, at(300))
    assert (unchanged.status, unchanged.cancel_requested_at) == (RunStatus.SUCCESS, None)
    after_attempt = await store.record_submit_attempt(run.id, "retry", at(400))
    assert (after_attempt.status, after_attempt.submit_attempts) == (RunStatus.SUCCESS, 0)
    assert await event_count(store, run.id) == events_before


async def test_record_failure(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    message = "INVALID_PARAMETER_VALUE: job_id: the Job was deleted in Databricks."
    failed = await store.record_failure(run.id, message, at(2))
    assert (failed.status, failed.message, failed.ended_at) == (RunStatus.FAILED, message, at(2))
    assert failed.next_poll_at is None
    last = (await store.run_events(run.id))[-1]
    assert (last.status, last.message, last.at) == (RunStatus.FAILED, message, at(2))


async def test_request_cancel(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    await store.record_submitted(run.id, "7", "https://x/r", at(1), at(60))
    cancelling = await store.request_cancel(run.id, at(10))
    assert cancelling.cancel_requested_at == at(10)
    assert cancelling.next_poll_at == at(10)
    assert cancelling.status is RunStatus.STARTING
    assert (await store.run_events(run.id))[-1].source == "cancel"
    again = await store.request_cancel(run.id, at(20))
    assert again.cancel_requested_at == at(10)
    assert await event_count(store, run.id) == 3

    cancelled, _ = await store.record_snapshot(
        run.id, snapshot(RunStatus.CANCELLED, "Cancelled by user"), at(30), None
    )
    assert cancelled.is_terminal


async def test_unknown_runs(store: SqlStore) -> None:
    with pytest.raises(NotFoundError) as missing:
        await store.get_run(404)
    assert missing.value.message == "No run with id 404."
    assert missing.value.hint is LIST_RUNS
    for call in (
        store.run_events(404),
        store.record_failure(404, "x", T0),
        store.request_cancel(404, T0),
        store.record_snapshot(404, snapshot(RunStatus.RUNNING), T0, None),
        store.record_submitted(404, "1", "u", T0, T0),
        store.record_submit_attempt(404, "x", T0),
    ):
        with pytest.raises(NotFoundError, match="No run with id 404"):
            await call


async def test_list_runs_newest_first_with_filters(store: SqlStore) -> None:
    prod, job = await platform_and_job(store, "prod")
    dev = await store.add_platform(new_platform("dev"), T0)
    other, _ = await store.upsert_job(dev.id, imported(), T0)
    r0 = await start(store, job, at(0))
    r1 = await start(store, other, at(10))
    r2 = await start(store, job, at(20))
    r3 = await start(store, job, at(20))  # same time: the later id comes first
    await store.record_failure(r2.id, "x", at(30))

    async def ids(**where: Any) -> list[int]:
        return [run.id for run in await store.list_runs(RunFilter(**where))]

    assert await ids() == [r3.id, r2.id, r1.id, r0.id]
    assert await ids(job_id=job.id) == [r3.id, r2.id, r0.id]
    assert await ids(platform_id=dev.id) == [r1.id]
    assert await ids(platform_id=prod.id, limit=2) == [r3.id, r2.id]
    assert await ids(statuses=(RunStatus.FAILED,)) == [r2.id]
    assert await ids(statuses=(RunStatus.FAILED, RunStatus.STARTING), job_id=other.id) == [r1.id]
    assert await ids(active_only=True) == [r3.id, r1.id, r0.id]
    assert await ids(created_after=at(10), created_before=at(20)) == [r1.id]
    assert await ids(created_after=at(20)) == [r3.id, r2.id]
    assert await ids(created_before=at(10)) == [r0.id]
    with pytest.raises(UsageError, match="at least 1"):
        await store.list_runs(RunFilter(limit=0))


async def test_job_durations_are_those_of_the_latest_successful_runs(store: SqlStore) -> None:
    _, job = await platform_and_job(store)

    async def finished(start_s: float, took_s: float, status: RunStatus) -> None:
        run = await start(store, job, at(start_s))
        await store.record_submitted(run.id, str(start_s), "u", at(start_s), at(start_s))
        await store.record_snapshot(run.id, snapshot(status), at(start_s + took_s), None)

    await finished(0, 100, RunStatus.SUCCESS)
    await finished(1000, 250.5, RunStatus.SUCCESS)
    await finished(2000, 5, RunStatus.FAILED)
    await finished(3000, 60, RunStatus.SUCCESS)
    await start(store, job, at(4000))  # still running
    assert await store.job_durations_s(job.id) == [60.0, 250.5, 100.0]
    assert await store.job_durations_s(job.id, limit=2) == [60.0, 250.5]
    assert await store.job_durations_s(job.id + 1) == []


async def test_times_are_aware_utc_whatever_zone_they_were_given_in(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    india = timezone(timedelta(hours=5, minutes=30))
    run = await start(store, job, T0.astimezone(india))
    assert run.created_at == T0
    assert run.created_at.tzinfo is UTC
    assert (await store.get_run(run.id)).next_poll_at == T0
    due = await store.claim_due_runs("a", T0.astimezone(india), 30, 10)
    assert [r.id for r in due] == [run.id]
    with pytest.raises(StoreError, match="naive datetime"):
        await store.record_failure(run.id, "x", datetime(2026, 3, 1, 12, 0))


async def test_unicode_and_long_values_round_trip(store: SqlStore) -> None:
    long_text = "Ünïcödé ✓ 東京 עברית 🚀 " * 5_000
    platform = await store.add_platform(
        NewPlatform(
            name="prod-東京-🚀",
            workspace_url=URL,
            auth={"method": "pat", "token": "env:TOKEN_E", "note": long_text},
            description=long_text,
            options={"ключ": "значение"},
        ),
        T0,
    )
    assert await store.get_platform("prod-東京-🚀") == platform
    assert platform.description == long_text
    parameters = (Parameter("파라미터", default=long_text, stored_value="naïve \u202eRTL"),)
    job, _ = await store.upsert_job(
        platform.id,
        imported(name="ETL ☃", tags={"équipe": "données"}, parameters=parameters),
        T0,
    )
    assert await store.get_job("ETL ☃", platform_id=platform.id) == job
    assert job.parameters == parameters
    run = await store.create_run(
        NewRun(job.id, platform.id, "ключ", "tök", {"파라미터": long_text}, {"파라미터": "✓"}), T0
    )
    assert (await store.get_run(run.id)).overrides == {"파라미터": long_text}
    failed = await store.record_failure(run.id, long_text, at(1))
    assert failed.message == long_text
    assert (await store.run_events(run.id))[-1].message == long_text


# ---------------------------------------------------------------------------------- leases


async def test_claim_leases_due_runs_in_due_order(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    late = await start(store, job, at(5))
    early = await start(store, job, at(1))
    future = await start(store, job, at(500))
    ended = await start(store, job, at(0))
    await store.record_failure(ended.id, "x", at(0))

    claimed = await store.claim_due_runs("engine-a", at(10), lease_s=30, limit=10)
    assert [r.id for r in claimed] == [early.id, late.id]
    # The claimant schedules them itself; should it die, they fall due when its lease ends.
    assert {(r.lease_owner, r.lease_expires_at, r.next_poll_at) for r in claimed} == {
        ("engine-a", at(40), at(40))
    }
    assert (await store.get_run(future.id)).lease_owner is None

    # Leased to engine-a: not to engine-b before expiry, nor again to engine-a (it holds
    # them), unless one falls due again (a cancel request).
    assert await store.claim_due_runs("engine-b", at(39), 30, 10) == []
    assert await store.claim_due_runs("engine-a", at(20), 30, 10) == []
    # A run-now was sent for it (else a cancel ends it at once: H5).
    await store.record_submitted(early.id, "77", f"{URL}/#job/101/run/77", at(10), at(40))
    await store.request_cancel(early.id, at(20))
    renewed = await store.claim_due_runs("engine-a", at(20), 30, 10)
    assert [(r.id, r.lease_expires_at) for r in renewed] == [(early.id, at(50))]

    # Expired at 40 (late) and 50 (early): another engine takes them over.
    taken = await store.claim_due_runs("engine-b", at(40), 30, 10)
    assert [(r.id, r.lease_owner) for r in taken] == [(late.id, "engine-b")]
    taken = await store.claim_due_runs("engine-b", at(50), 30, 10)
    assert [r.id for r in taken] == [early.id]
    assert await store.claim_due_runs("engine-b", at(50), 30, 0) == []


async def test_renewing_held_leases_keeps_every_run_of_the_owner_in_one_call(
    store: SqlStore,
) -> None:
    _, job = await platform_and_job(store)
    held, cancelling, ended = [await start(store, job, at(0)) for _ in range(3)]
    others = await start(store, job, at(0))
    await store.claim_due_runs("engine-a", at(1), 30, 10, exclude=[others.id])
    await store.claim_due_runs("engine-b", at(1), 30, 10)
    # A run-now was sent for it (else a cancel ends it at once: H5).
    await store.record_submitted(cancelling.id, "77", f"{URL}/#job/101/run/77", at(2), at(31))
    await store.request_cancel(cancelling.id, at(5))
    await store.record_failure(ended.id, "refused", at(5))

    assert await store.renew_held_leases("engine-a", at(20), at(50)) == 2
    kept = await store.get_run(held.id)
    assert (kept.lease_owner, kept.lease_expires_at, kept.next_poll_at) == (
        "engine-a",
        at(50),
        at(50),
    )
    due = await store.get_run(cancelling.id)
    assert (due.lease_expires_at, due.next_poll_at) == (at(50), at(5))  # still due
    assert (await store.get_run(others.id)).lease_expires_at == at(31)  # engine-b's
    assert [r.id for r in await store.claim_due_runs("engine-b", at(40), 30, 10)] == [others.id]
    taken = await store.claim_due_runs("engine-b", at(50), 30, 10)
    assert [r.id for r in taken] == [cancelling.id, held.id]  # due first


async def test_release_lets_another_engine_claim_at_once(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    first = await start(store, job)
    second = await start(store, job)
    await store.claim_due_runs("engine-a", T0, 300, 10)
    await store.release_runs("engine-b", [first.id, second.id])  # not engine-b's to release
    assert await store.claim_due_runs("engine-b", T0, 300, 10) == []
    await store.release_runs("engine-a", [first.id], now=T0)
    await store.release_runs("engine-a", [])
    released = await store.get_run(first.id)
    assert (released.lease_owner, released.lease_expires_at) == (None, None)
    assert released.next_poll_at == T0  # due at once, though its claimant had scheduled it later
    assert [r.id for r in await store.claim_due_runs("engine-b", T0, 300, 10)] == [first.id]


async def test_release_of_every_lease_of_an_owner_keeps_only_those_asked_for(
    store: SqlStore,
) -> None:
    """An engine stopping releases every lease it holds in the database, also those taken by a
    claim whose answer it never saw (a cycle cancelled mid-claim), but the runs it keeps."""
    _, job = await platform_and_job(store)
    first, second, in_flight = [await start(store, job) for _ in range(3)]
    others = await start(store, job)
    await store.claim_due_runs("engine-a", T0, 300, 10, exclude=[others.id])
    await store.claim_due_runs("engine-b", T0, 300, 10)
    await store.release_runs("engine-a", None, keep=[in_flight.id], now=T0)
    owners = {r.id: (await store.get_run(r.id)).lease_owner for r in (first, second, in_flight)}
    assert owners == {first.id: None, second.id: None, in_flight.id: "engine-a"}
    assert (await store.get_run(others.id)).lease_owner == "engine-b"  # not engine-a's


async def test_reschedule_moves_only_active_runs_in_one_call(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    active = await start(store, job, at(0))
    ended = await start(store, job, at(0))
    await store.record_failure(ended.id, "refused", at(1))
    await store.reschedule_runs([active.id, ended.id], at(90))
    await store.reschedule_runs([], at(999))
    assert (await store.get_run(active.id)).next_poll_at == at(90)
    assert (await store.get_run(ended.id)).next_poll_at != at(90)
    assert await store.claim_due_runs("engine-a", at(89), 30, 10) == []
    assert [r.id for r in await store.claim_due_runs("engine-a", at(90), 30, 10)] == [active.id]


async def test_make_all_due(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    overdue = await start(store, job, at(0))
    waiting = await start(store, job, at(0))
    await store.record_submitted(waiting.id, "9", "u", at(1), at(900))
    ended = await start(store, job, at(0))
    await store.record_failure(ended.id, "x", at(2))
    assert await store.make_all_due(at(100)) == 2
    assert (await store.get_run(overdue.id)).next_poll_at == at(0)
    assert (await store.get_run(waiting.id)).next_poll_at == at(100)
    assert (await store.get_run(ended.id)).next_poll_at is None
    due = await store.claim_due_runs("engine-a", at(100), 30, 10)
    assert [r.id for r in due] == [overdue.id, waiting.id]


async def test_two_engines_never_claim_the_same_run(database_url: str) -> None:
    lease_s = 30.0
    async with await open_store(database_url) as one, await open_store(database_url) as two:
        _, job = await platform_and_job(one)
        run_ids = {(await start(one, job, at(i % 7))).id for i in range(40)}
        claimers = [(one, "one-a"), (one, "one-b"), (two, "two-a"), (two, "two-b")]
        seen: set[int] = set()
        for round_no in range(30):
            # Every lease of the previous round has expired: all four compete for all runs.
            now = at(10 + round_no * lease_s * 2)
            results = await asyncio.gather(
                *(store.claim_due_runs(owner, now, lease_s, 7) for store, owner in claimers)
            )
            claimed = [run.id for result in results for run in result]
            assert len(claimed) == len(set(claimed)), f"round {round_no}: a run claimed twice"
            assert len(claimed) == 28
            for (_, owner), result in zip(claimers, results, strict=True):
                assert {run.lease_owner for run in result} <= {owner}
            seen.update(claimed)
        assert seen <= run_ids


# ---------------------------------------------------------------------------------- fencing (issue 8)


async def claimed_run(store: Store, job: Job, owner: str = "engine-a", now_s: float = 10) -> Run:
    run = await start(store, job, at(0))
    (claimed,) = await store.claim_due_runs(owner, at(now_s), 30, 10, only=[run.id])
    assert claimed.lease is not None
    return claimed


async def test_every_claim_brings_a_new_fencing_token(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await claimed_run(store, job)
    (again,) = await store.claim_due_runs("engine-a", at(40), 30, 10)  # its lease's end
    assert again.lease_owner == run.lease_owner
    assert again.lease_token
    assert again.lease_token != run.lease_token
    await store.release_runs("engine-a", [run.id])
    assert (await store.get_run(run.id)).lease is None


async def test_claim_only_and_exclude(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    runs = [await start(store, job, at(0)) for _ in range(3)]
    only = await store.claim_due_runs("cli", at(1), 30, 10, only=[runs[1].id])
    assert [r.id for r in only] == [runs[1].id]
    assert await store.claim_due_runs("cli", at(1), 30, 10, only=[]) == []
    rest = await store.claim_due_runs("e", at(1), 30, 10, exclude=[runs[0].id])
    assert [r.id for r in rest] == [runs[2].id]  # runs[1] is the CLI's, runs[0] excluded


async def test_writes_from_a_lease_that_was_taken_over_are_dropped(store: SqlStore) -> None:
    # Issue 8, section 3: an engine whose cycle outlived its lease wrote back its stale copy.
    _, job = await platform_and_job(store)
    slow = await claimed_run(store, job, "engine-slow")
    stale = slow.lease
    (taken,) = await store.claim_due_runs("engine-fast", at(100), 30, 10)  # the lease expired
    await store.record_submitted(
        taken.id, "7", f"{URL}/#job/101/run/7", at(101), at(105), lease=taken.lease
    )
    running, _ = await store.record_snapshot(
        taken.id,
        snapshot(RunStatus.RUNNING, "running", life_cycle_state="RUNNING"),
        at(106),
        at(110),
        lease=taken.lease,
    )
    events = await event_count(store, taken.id)

    assert (
        await store.record_submitted(taken.id, "8", "u", at(107), at(108), lease=stale) == running
    )
    late, wrote = await store.record_snapshot(
        taken.id, snapshot(RunStatus.STARTING, "pending"), at(107), at(108), lease=stale
    )
    assert (late, wrote) == (running, False)
    assert await store.record_failure(taken.id, "refused", at(107), lease=stale) == running
    assert await store.record_submit_attempt(taken.id, "x", at(200), lease=stale) == running
    failure = PollFailure(taken.id, at(200), at(107), "boom", stale)
    assert await store.record_poll_failures([failure]) == [running]
    await store.reschedule_runs([taken.id], at(999), lease=stale)
    assert await store.renew_leases(stale, [taken.id], at(999)) == 0  # type: ignore[arg-type]
    assert await store.get_run(taken.id) == running
    assert await event_count(store, taken.id) == events
    assert running.life_cycle_state == "RUNNING"


async def test_the_status_history_never_goes_backwards(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    await store.record_submitted(run.id, "7", "u", at(1), at(5))
    task = TaskRunState(task_key="ingest", status=RunStatus.RUNNING)
    await store.record_snapshot(
        run.id,
        snapshot(RunStatus.RUNNING, "r", life_cycle_state="RUNNING", tasks=(task,)),
        at(5),
        at(10),
    )
    stale, wrote = await store.record_snapshot(
        run.id, snapshot(RunStatus.STARTING, "pending", life_cycle_state="PENDING"), at(6), at(12)
    )
    assert not wrote
    assert (stale.status, stale.message, stale.life_cycle_state) == (
        RunStatus.RUNNING,
        "r",
        "RUNNING",
    )
    assert stale.tasks == (task,)
    assert stale.next_poll_at == at(12)  # only the next poll moved
    unknown, wrote = await store.record_snapshot(
        run.id, snapshot(RunStatus.UNKNOWN, "?"), at(7), at(14)
    )
    assert not wrote
    assert unknown.status is RunStatus.RUNNING  # Unknown ranks with Starting
    statuses = [e.status for e in await store.run_events(run.id)]
    assert statuses == [RunStatus.STARTING, RunStatus.STARTING, RunStatus.RUNNING]
    for previous in RunStatus:
        for status in RunStatus:
            rank = {RunStatus.RUNNING: 1}.get(status, 2 if status.is_terminal else 0)
            before = {RunStatus.RUNNING: 1}.get(previous, 2 if previous.is_terminal else 0)
            expected = status is previous if previous.is_terminal else rank >= before
            assert status.may_follow(previous) is expected


async def test_poll_failures_are_counted_noted_and_reset(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    await store.record_submitted(run.id, "7", "u", at(1), at(5))
    (quiet,) = await store.record_poll_failures([PollFailure(run.id, at(10), at(5))])
    assert (quiet.poll_failures, quiet.next_poll_at) == (1, at(10))
    assert await event_count(store, run.id) == 2  # a transient failure writes no event
    (noted,) = await store.record_poll_failures(
        [PollFailure(run.id, at(30), at(10), "Could not check the run")]
    )
    assert (noted.poll_failures, noted.message, noted.status) == (
        2,
        "Could not check the run",
        RunStatus.STARTING,
    )
    assert (await store.run_events(run.id))[-1].message == "Could not check the run"
    seen, _ = await store.record_snapshot(run.id, snapshot(RunStatus.RUNNING), at(30), at(35))
    assert seen.poll_failures == 0
    await store.record_poll_failures([PollFailure(run.id, at(40), at(35))])
    await store.reschedule_runs([run.id], at(50))  # a sweep saw it: a successful look
    assert (await store.get_run(run.id)).poll_failures == 0


async def test_renewing_leases_keeps_them_from_other_engines(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await claimed_run(store, job, "engine-a", now_s=10)  # expires at 40
    assert run.lease is not None
    assert await store.renew_leases(run.lease, [run.id], at(100)) == 1
    assert await store.claim_due_runs("engine-b", at(50), 30, 10) == []
    assert [r.id for r in await store.claim_due_runs("engine-b", at(100), 30, 10)] == [run.id]


async def test_text_no_column_can_hold_is_replaced_not_fatal(store: SqlStore) -> None:
    # A workspace's message with NUL or a lone surrogate must not make a poll's write fail.
    _, job = await platform_and_job(store)
    run = await start(store, job)
    seen, _ = await store.record_snapshot(
        run.id, snapshot(RunStatus.RUNNING, "bad\x00text \ud800!", result_state="\x00"), at(1), None
    )
    assert seen.message == "bad\ufffdtext \ufffd!"
    assert (await store.run_events(run.id))[-1].message == "bad\ufffdtext \ufffd!"


async def test_heartbeats_are_kept_per_engine_and_forgotten_when_old(store: SqlStore) -> None:
    first = EngineHeartbeat(
        owner="engine-a",
        host="h",
        pid=1,
        state=EngineState.RUNNING,
        started_at=at(0),
        heartbeat_at=at(5),
        last_cycle_at=at(5),
        cycles=3,
        failures=0,
        last_error=None,
    )
    await store.record_heartbeat(first)
    later = replace(first, heartbeat_at=at(20), cycles=9, state=EngineState.BACKING_OFF)
    await store.record_heartbeat(replace(later, failures=2, last_error="database gone"))
    other = replace(first, owner="engine-b", heartbeat_at=at(10))
    await store.record_heartbeat(other)
    engines = await store.list_engines()
    assert [e.owner for e in engines] == ["engine-a", "engine-b"]
    assert engines[0] == replace(later, failures=2, last_error="database gone")
    assert await store.forget_engines(at(15)) == 1
    assert [e.owner for e in await store.list_engines()] == ["engine-a"]


async def test_a_write_cancelled_mid_transaction_still_ends_it(store: SqlStore) -> None:
    # The CI flake behind issue 8's outage test: an engine stopping cancels its cycle, and a
    # transaction cut off between two statements kept its connection, and on SQLite the write
    # lock, so the next write waited out the 30 s busy timeout. A cancelled caller stops
    # waiting; the transaction itself always commits or rolls back and returns its connection.
    beat = EngineHeartbeat(
        owner="engine-a",
        host="h",
        pid=1,
        state=EngineState.RUNNING,
        started_at=at(0),
        heartbeat_at=at(5),
        last_cycle_at=None,
        cycles=0,
        failures=0,
        last_error=None,
    )
    victim: asyncio.Task[None] | None = None

    def cancel_the_caller(*_: Any) -> None:
        if victim is not None and not victim.cancelling():
            victim.cancel()  # in the middle of the transaction: its first statement is running

    event.listen(store.engine.sync_engine, "before_cursor_execute", cancel_the_caller)
    try:
        victim = asyncio.ensure_future(store.record_heartbeat(beat))
        with pytest.raises(asyncio.CancelledError):
            await victim
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", cancel_the_caller)
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert [e.owner for e in await store.list_engines()] == ["engine-a"]  # it committed
    await store.record_heartbeat(replace(beat, owner="engine-b"))  # and the lock is free
    assert [e.owner for e in await store.list_engines()] == ["engine-a", "engine-b"]


@pytest.mark.postgres
async def test_overlapping_batches_of_polls_never_deadlock(database_url: str) -> None:
    # Issue 8, section 2: two engines' record_snapshots locked rows one by one in claim order
    # and deadlocked on PostgreSQL; rows are now locked in id order in one statement.
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time")
    async with await open_store(database_url) as one, await open_store(database_url) as two:
        _, job = await platform_and_job(one)
        runs = [await start(one, job) for _ in range(150)]
        forward = [Observation(r.id, snapshot(RunStatus.RUNNING, "a"), at(1), at(5)) for r in runs]
        backward = [
            Observation(r.id, snapshot(RunStatus.RUNNING, "b"), at(1), at(5))
            for r in reversed(runs)
        ]
        for _ in range(3):
            first, second = await asyncio.gather(
                one.record_snapshots(forward), two.record_snapshots(backward)
            )
            assert len(first) == len(second) == len(runs)


@pytest.mark.postgres
async def test_postgres_sessions_never_wait_for_ever(database_url: str) -> None:
    # A row lock held by a client that is gone made every engine's reconcile wait for minutes.
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL session settings")
    async with await open_store(database_url) as store, store.engine.connect() as conn:
        assert await conn.scalar(text("SHOW lock_timeout")) == "30s"
        assert await conn.scalar(text("SHOW idle_in_transaction_session_timeout")) == "1min"
    chosen = make_url(database_url).update_query_dict({"options": "-c lock_timeout=5000"})
    async with (
        await open_store(chosen.render_as_string(hide_password=False)) as store,
        store.engine.connect() as conn,
    ):
        assert await conn.scalar(text("SHOW lock_timeout")) == "5s"  # the URL wins


async def test_an_unreachable_database_is_reported_as_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="The database cannot be reached"):
        await open_store(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    with pytest.raises(StoreUnavailableError):
        await open_store(
            f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'dir'}/x.db?mode=ro&uri=true"
        )


# ---------------------------------------------------------------------------------- SQLite


async def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(
    tmp_path: Path,
) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'p.db'}")
    async with store, store.engine.connect() as conn:
        assert await conn.scalar(text("PRAGMA journal_mode")) == "wal"
        assert await conn.scalar(text("PRAGMA foreign_keys")) == 1
        assert await conn.scalar(text("PRAGMA busy_timeout")) == 30_000


async def test_default_database_url_is_a_file_under_polysync_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home" / ".polysync"
    monkeypatch.setenv("POLYSYNC_HOME", str(home))
    url = default_database_url()
    assert url == f"sqlite+aiosqlite:///{home / 'polysync.db'}"
    assert default_database_url(tmp_path / "elsewhere").endswith("/elsewhere/polysync.db")
    async with await open_store(url) as store:
        assert await store.list_platforms() == []
    assert (home / "polysync.db").is_file()


async def test_a_new_sqlite_database_is_private_to_its_owner(tmp_path: Path) -> None:
    """Issue 9: it holds key hashes and run history: 0600 in a 0700 directory, whatever the
    umask; its WAL files follow the database file's mode."""
    home = tmp_path / "fresh" / "home"
    previous = os.umask(0o022)  # the usual umask, under which files come out 0644
    try:
        async with await open_store(f"sqlite:///{home / 'polysync.db'}") as store:
            await store.add_platform(new_platform(), T0)
            modes = {
                path.name: stat.S_IMODE(path.stat().st_mode) for path in [home, *home.iterdir()]
            }
    finally:
        os.umask(previous)
    assert modes.pop("home") == 0o700
    assert modes.pop("polysync.db") == 0o600
    assert set(modes.values()) <= {0o600}  # -wal, -shm
