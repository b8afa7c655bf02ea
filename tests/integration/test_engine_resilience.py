"""Issue 8: one bad run, a slow answer, a database fault or a deleted run never stops the engine.

The engine runs against the demo workspace (ASGI transport) and a real SQLite file, on manual
clocks. Faults are injected where they happen in production: a poisoned row, a job type that
raises or hangs for one run, a store that cannot be reached, an engine that lost its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from polysync.domain.models import RunSnapshot, RunStatus
from polysync.domain.records import EngineState, NewRun, Run, RunFilter
from polysync.emulator.faults import Fault
from polysync.emulator.spec import TaskScript
from polysync.engine.engine import Engine, EngineSettings
from polysync.engine.polling import PollPolicy
from polysync.errors import SecretReferenceError, StoreUnavailableError
from polysync.jobtypes.base import idempotency_token
from polysync.jobtypes.databricks.workflow import DatabricksWorkflowJobType
from polysync.services import Services
from tests.conftest import EmulatorHarness, open_services
from tests.integration.conftest import (
    BACKFILL,
    SALES,
    add_demo,
    databricks_runs,
)

BUDGET_S = 30.0


@pytest.fixture(autouse=True)
def roomy(harness: EmulatorHarness) -> None:
    """Several backfill runs at once (the demo job allows one; the others would be SKIPPED)."""
    harness.state.jobs[int(BACKFILL)].settings["max_concurrent_runs"] = 100


async def started(services: Services, job_ref: str = BACKFILL) -> Run:
    """A run the engine has submitted (Starting, with its Databricks RunId)."""
    job = await services.get_job(job_ref, platform="demo")
    run = await services.execute(job, {})
    await services.engine.step()
    submitted = await services.store.get_run(run.id)
    assert submitted.run_id is not None
    return submitted


def no_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every runs/list sweep fails, so the engine falls back to one runs/get per run."""

    async def no_sweep(self: DatabricksWorkflowJobType) -> dict[str, RunSnapshot]:
        raise KeyError("runs")

    monkeypatch.setattr(DatabricksWorkflowJobType, "active_runs", no_sweep)


async def until(check: Callable[[], Awaitable[bool]], what: str, limit: int = 2000) -> None:
    """Bounded wait for another task (the engine loop, on aiosqlite's thread) to get there."""
    for _ in range(limit):
        if await check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


# ------------------------------------------------------------------ one bad run


async def test_a_run_with_unsendable_text_fails_alone_and_the_others_start(
    harness: EmulatorHarness, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 8 §1: a lone surrogate committed by an older version made every cycle raise
    # UnicodeEncodeError; no run was started or polled again.
    job = await services.get_job(SALES, platform="demo")
    poisoned = await services.store.create_run(
        NewRun(job.id, job.platform_id, "poison", idempotency_token("poison"), {"env": "x"}, {}),
        services.now(),
    )
    # Written as an older version did (the store now cleans what it writes): JSON text whose
    # escape decodes to a lone surrogate.
    async with services.store.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.exec_driver_sql(
            """UPDATE runs SET overrides = '{"env": "\\ud800"}' WHERE id = ?""", (poisoned.id,)
        )
    good = await services.execute(job, {"env": "dev"})
    report = await services.engine.step()
    assert report.submitted == 1
    assert (await services.store.get_run(good.id)).run_id is not None
    failed = await services.store.get_run(poisoned.id)
    assert failed.status is RunStatus.FAILED
    assert "Parameter 'env' has a value that holds a lone surrogate" in failed.message
    assert len(databricks_runs(harness)) == 1
    assert f"run {poisoned.id}: not started" in caplog.text


async def test_an_unexpected_error_starting_one_run_defers_it_then_fails_it(
    harness: EmulatorHarness,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = await services.get_job(SALES, platform="demo")
    bad = await services.execute(job, {"env": "bad"})
    good = await services.execute(job, {"env": "good"})
    original = DatabricksWorkflowJobType.start

    async def start(self: DatabricksWorkflowJobType, *args: Any, **kwargs: Any) -> Any:
        if kwargs["idempotency_token"] == bad.idempotency_token:
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(DatabricksWorkflowJobType, "start", start)
    await services.engine.step()
    assert (await services.store.get_run(good.id)).run_id is not None
    deferred = await services.store.get_run(bad.id)
    assert deferred.status is RunStatus.STARTING
    assert "unexpected error (UnicodeEncodeError" in deferred.message
    assert "unexpected error" in (await services.store.run_events(bad.id))[-1].message
    assert f"run {bad.id}: unexpected error while starting it" in caplog.text
    for _ in range(services.engine.settings.max_submit_errors - 1):
        harness.advance(services.engine.settings.policy.max_interval_s)
        await services.engine.step()
    final = await services.store.get_run(bad.id)
    assert final.status is RunStatus.FAILED
    assert final.message.startswith("Not started: Polysync hit an unexpected error each time")
    assert len(databricks_runs(harness)) == 1


async def test_an_unexpected_error_polling_one_run_defers_only_that_run(
    harness: EmulatorHarness, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = await started(services)
    good = await started(services)
    original = DatabricksWorkflowJobType.poll

    async def poll(self: DatabricksWorkflowJobType, run_id: str) -> RunSnapshot:
        if run_id == bad.run_id:
            raise KeyError("state")
        return await original(self, run_id)

    # A sweep that fails falls back to one runs/get per run: the bad run is isolated there.
    monkeypatch.setattr(DatabricksWorkflowJobType, "poll", poll)
    no_sweeps(monkeypatch)
    harness.advance(60)
    report = await services.engine.step()
    assert report.deferred == 1
    assert (await services.store.get_run(good.id)).status is RunStatus.RUNNING
    deferred = await services.store.get_run(bad.id)
    assert deferred.status is RunStatus.STARTING
    assert deferred.poll_failures == 1
    assert (
        deferred.message == "Could not check the run in Databricks (KeyError: 'state'); retrying."
    )
    monkeypatch.setattr(DatabricksWorkflowJobType, "poll", original)
    harness.advance(60)
    await services.engine.step()
    recovered = await services.store.get_run(bad.id)
    assert (recovered.status, recovered.poll_failures) == (RunStatus.RUNNING, 0)


async def test_repeated_errors_on_one_run_back_off(
    harness: EmulatorHarness, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await started(services)
    harness.app.emulator.faults.add(
        Fault(
            method="GET",
            path="jobs/runs/get$",
            kind="status",
            status=400,
            error_code="INVALID_STATE",
            message="The run cannot be read right now.",
        )
    )
    harness.app.emulator.faults.add(  # the sweep fails too: the run is polled on its own
        Fault(
            method="GET",
            path="jobs/runs/list$",
            kind="status",
            status=400,
            error_code="INVALID_STATE",
            message="Runs cannot be listed right now.",
        )
    )
    polled_at: list[float] = []
    original = DatabricksWorkflowJobType.poll

    async def poll(self: DatabricksWorkflowJobType, run_id: str) -> RunSnapshot:
        polled_at.append(harness.clock.now())
        return await original(self, run_id)

    monkeypatch.setattr(DatabricksWorkflowJobType, "poll", poll)
    for _ in range(420):  # one engine step per second of the clock
        harness.advance(1)
        await services.engine.step()
    delays = [later - earlier for earlier, later in itertools.pairwise(polled_at)]
    assert delays[:7] == [5.0, 10.0, 20.0, 40.0, 80.0, 120.0, 120.0]
    assert "INVALID_STATE" in (await services.store.get_run(run.id)).message


async def test_a_call_past_its_budget_defers_that_run_only(
    harness: EmulatorHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = await open_services(
        harness,
        tmp_path / "budget.db",
        engine_settings=EngineSettings(policy=PollPolicy(), call_budget_s=BUDGET_S),
    )
    try:
        await add_demo(services, harness)
        slow = await started(services)
        quick = await started(services)
        original = DatabricksWorkflowJobType.poll
        hanging = asyncio.Event()

        async def poll(self: DatabricksWorkflowJobType, run_id: str) -> RunSnapshot:
            if run_id == slow.run_id:
                hanging.set()
                await asyncio.Event().wait()  # a call that never answers
            return await original(self, run_id)

        monkeypatch.setattr(DatabricksWorkflowJobType, "poll", poll)
        no_sweeps(monkeypatch)
        harness.advance(60)
        cycle = asyncio.ensure_future(services.engine.step())
        await asyncio.wait_for(hanging.wait(), 30)
        harness.advance(BUDGET_S)  # the engine clock: the slow call's budget runs out
        report = await asyncio.wait_for(cycle, 30)
        assert report.deferred == 1
        assert (await services.store.get_run(quick.id)).status is RunStatus.RUNNING
        assert (await services.store.get_run(slow.id)).poll_failures == 1
    finally:
        await services.aclose()


# ------------------------------------------------------------------ deleted runs


async def test_a_run_deleted_in_databricks_ends_failed_and_is_not_polled_again(
    harness: EmulatorHarness, services: Services
) -> None:
    run = await started(services)
    assert run.run_id is not None
    harness.state.delete_run(int(run.run_id), active_too=True)  # its history expired
    harness.advance(60)
    await services.engine.step()
    final = await services.store.get_run(run.id)
    assert final.status is RunStatus.FAILED
    assert final.message == "The Databricks run was deleted or its history expired."
    assert final.next_poll_at is None
    gets = harness.app.emulator.stats.count("jobs/runs/get")
    harness.advance(3600)
    assert (await services.engine.step()).claimed == 0
    assert harness.app.emulator.stats.count("jobs/runs/get") == gets


async def test_cancelling_a_deleted_run_says_there_is_nothing_to_cancel(
    harness: EmulatorHarness, services: Services
) -> None:
    run = await started(services)
    await services.cancel(run.id)
    assert run.run_id is not None
    harness.state.delete_run(int(run.run_id), active_too=True)
    await services.engine.step()
    final = await services.store.get_run(run.id)
    assert final.status is RunStatus.FAILED
    assert final.message.endswith("There is nothing left to cancel.")


# ------------------------------------------------------------------ one worker per run


@contextlib.asynccontextmanager
async def patient_engines(
    harness: EmulatorHarness, db: Path
) -> AsyncIterator[tuple[Services, Services]]:
    """Two engines on one database (the demo imported), whose calls may outlast their lease."""
    patient = EngineSettings(policy=PollPolicy(), call_budget_s=600)
    one = await open_services(harness, db, engine_settings=patient)
    two = await open_services(harness, db, engine_settings=patient)
    try:
        await add_demo(one, harness)
        yield one, two
    finally:
        await two.aclose()
        await one.aclose()


def hold_sweeps(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """Sweeps get their answer, then wait for `release`; `answered` is set once one has it."""
    release, answered = asyncio.Event(), asyncio.Event()
    original = DatabricksWorkflowJobType.active_runs

    async def slow_sweep(self: DatabricksWorkflowJobType) -> Mapping[str, RunSnapshot]:
        active = await original(self)
        answered.set()
        await release.wait()
        return active

    monkeypatch.setattr(DatabricksWorkflowJobType, "active_runs", slow_sweep)
    return release, answered


async def test_a_slow_engine_that_lost_its_lease_cannot_write_back_a_stale_copy(
    harness: EmulatorHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 8 §3: a poll waiting out a long Retry-After outlived its lease; the engine then wrote
    # its stale Starting over the Running that another engine had recorded. (A budget longer
    # than the lease, so the slow answer does come back: its write must be dropped.)
    async with patient_engines(harness, tmp_path / "fenced.db") as (services, other):
        harness.state.script_task(int(BACKFILL), "plan", TaskScript(duration_s=5, pending_s=30))
        run = await started(services)
        sweep = DatabricksWorkflowJobType.active_runs
        release, answered = hold_sweeps(monkeypatch)

        async def cannot_renew(*_: Any) -> int:
            raise StoreUnavailableError("The database cannot be reached: test")

        monkeypatch.setattr(services.store, "renew_held_leases", cannot_renew)
        harness.advance(services.engine.settings.policy.sweep_interval_s)
        slow = asyncio.ensure_future(services.engine.step())  # its first sweep: still PENDING
        await asyncio.wait_for(answered.wait(), 30)
        monkeypatch.setattr(DatabricksWorkflowJobType, "active_runs", sweep)
        harness.advance(services.engine.settings.lease_s + 5)  # the slow engine's lease ends
        assert (await other.engine.step()).claimed == 1
        taken = await other.store.get_run(run.id)
        assert taken.status is RunStatus.RUNNING
        assert taken.lease_owner == other.engine.owner
        release.set()
        report = await asyncio.wait_for(slow, 30)
        assert report.polled == 1  # it did come back with its stale Starting ...
        after = await services.store.get_run(run.id)  # ... and its write was dropped
        assert after.status is RunStatus.RUNNING
        assert after.life_cycle_state == "RUNNING"
        statuses = [e.status for e in await services.store.run_events(run.id)]
        assert statuses == [RunStatus.STARTING, RunStatus.STARTING, RunStatus.RUNNING]


async def test_leases_are_renewed_while_a_slow_call_lasts(
    harness: EmulatorHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with patient_engines(harness, tmp_path / "renew.db") as (services, other):
        run = await started(services)
        release, answered = hold_sweeps(monkeypatch)
        harness.advance(services.engine.settings.policy.sweep_interval_s)
        slow = asyncio.ensure_future(services.engine.step())
        await asyncio.wait_for(answered.wait(), 30)
        lease_s = services.engine.settings.lease_s
        expiry = (await services.store.get_run(run.id)).lease_expires_at
        for _ in range(4):  # well past the first lease, renewed every third of it
            harness.advance(lease_s / 3)
            await until(_lease_after(services, run.id, expiry), "the renewal")
            expiry = (await services.store.get_run(run.id)).lease_expires_at
        assert (await other.engine.step()).claimed == 0
        release.set()
        await asyncio.wait_for(slow, 30)
        assert (await services.store.get_run(run.id)).status is RunStatus.RUNNING


def _lease_after(
    services: Services, run_id: int, previous: datetime | None
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        expiry = (await services.store.get_run(run_id)).lease_expires_at
        return expiry is not None and previous is not None and expiry > previous

    return check


# ------------------------------------------------------------------ database faults


class FlakyStore:
    """The real store, except that every call fails as an unreachable database while `down`."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.down = False
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                self.refused += 1
                raise StoreUnavailableError("The database cannot be reached: connection refused")
            return await attribute(*args, **kwargs)

        return call


async def test_the_engine_loop_survives_a_database_outage_and_resumes(
    harness: EmulatorHarness, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 8 §1: with the database cut for a few seconds `polysync engine` exited with a
    # traceback and the engine inside `polysync serve` died silently.
    flaky = FlakyStore(services.store)
    engine = Engine(flaky, services.connections, harness.clock, services.engine.settings)  # type: ignore[arg-type]
    job = await services.get_job(SALES, platform="demo")
    stop = asyncio.Event()
    loop = asyncio.ensure_future(engine.run_forever(stop))
    try:
        await until(_cycled(engine, 1), "a first cycle")
        flaky.down = True
        await until(_advanced(harness, engine, EngineState.BACKING_OFF, 3), "three failed cycles")
        assert engine.health.last_error == "The database cannot be reached: connection refused"
        assert not loop.done()
        run = await services.engine.submit(job, {})  # accepted meanwhile by another process
        flaky.down = False
        await until(_advanced(harness, engine, EngineState.RUNNING, 0), "cycling again")

        async def submitted() -> bool:
            harness.advance(1)
            return (await services.store.get_run(run.id)).run_id is not None

        await until(submitted, "the run to start")
        assert "cycling again after" in caplog.text

        async def beat_running() -> bool:
            # The change of state is written right after the cycle that started the run (the
            # cycle may also run the Task scheduler's step first): wait for that write.
            beats = {beat.owner: beat for beat in await services.store.list_engines()}
            return beats[engine.owner].state is EngineState.RUNNING

        await until(beat_running, "the heartbeat to say running")
    finally:
        stop.set()
        await asyncio.wait_for(loop, 30)
    assert engine.health.state is EngineState.STOPPED
    assert (await services.store.list_engines())[0].state is EngineState.STOPPED


def _cycled(engine: Engine, cycles: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return engine.health.cycles >= cycles

    return check


def _advanced(
    harness: EmulatorHarness, engine: Engine, state: EngineState, failures: int
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        harness.advance(1)  # the back-off and idle sleeps are on the engine's clock
        health = engine.health
        return health.state is state and (health.failures >= failures if failures else True)

    return check


async def test_a_crashed_engine_task_is_restarted_and_the_reason_logged(
    harness: EmulatorHarness,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = services.engine
    original = Engine.run_forever
    calls: list[int] = []

    async def crash_once(self: Engine, stop: asyncio.Event) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the engine task died")
        await original(self, stop)

    monkeypatch.setattr(Engine, "run_forever", crash_once)
    stop = asyncio.Event()
    task = asyncio.ensure_future(engine.run_supervised(stop))
    try:
        await until(_advanced(harness, engine, EngineState.RUNNING, 0), "a restarted engine")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert len(calls) == 2
    assert engine.health.restarts == 1
    assert "crashed; restarting" in caplog.text
    assert "the engine task died" in caplog.text


# ------------------------------------------------------------------ what is sent, what is recorded


async def test_databricks_receives_overrides_as_typed_and_its_own_defaults(
    harness: EmulatorHarness, services: Services
) -> None:
    # Issue 8 §5: a default `True` reached Databricks as `true`; `007` was sent as `7`.
    harness.state.jobs[int(SALES)].settings["parameters"].append(
        {"name": "flag", "default": "True"}
    )
    await services.import_jobs("demo", [SALES])
    job = await services.get_job(SALES, platform="demo")
    run = await services.execute(job, {"batch_size": "007", "quality_threshold": "0.950"})
    await services.engine.step()
    ((databricks_run),) = harness.state.runs.values()
    used = {p["name"]: p["value"] for p in databricks_run.job_parameters}
    assert used["batch_size"] == "007"
    assert used["quality_threshold"] == "0.950"
    assert used["flag"] == "True"
    assert used["full_refresh"] == "false"
    assert dict((await services.store.get_run(run.id)).parameters_sent) == {
        "batch_size": "007",
        "quality_threshold": "0.950",
    }


async def test_an_unset_secret_reference_refuses_the_run_before_it_is_recorded(
    harness: EmulatorHarness, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 8 §2: the run was committed, and a later command or an engine started it.
    monkeypatch.delenv("POLYSYNC_TEST_DATABRICKS_TOKEN")
    job = await services.get_job(SALES, platform="demo")
    with pytest.raises(SecretReferenceError, match="POLYSYNC_TEST_DATABRICKS_TOKEN is not set"):
        await services.execute(job, {})
    assert await services.list_runs(RunFilter()) == []
    assert (await services.engine.step()).claimed == 0
    assert databricks_runs(harness) == []
