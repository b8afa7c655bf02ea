"""A repair (D13) on both stores: recorded as intent under the row's lock (a Failed or Cancelled
run reopens as Running, due now, one event), confirmed once by the engine under its lease."""

from __future__ import annotations

import pytest

from polysync.domain.models import RunStatus
from polysync.domain.records import Run, RunRepair
from polysync.errors import ConflictError
from polysync.store import SqlStore
from tests.contract.test_store import at, platform_and_job, snapshot, start


def repair(number: int = 1, latest: str | None = None) -> RunRepair:
    return RunRepair(
        number=number,
        task_keys=("build", "score"),
        latest_repair_id=latest,
        requested_at=at(20),
        requested_by="cli:alice",
    )


async def ended(store: SqlStore, status: RunStatus) -> Run:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    await store.record_submitted(run.id, "777", "https://x/#job/1/run/777", at(1), at(5))
    written, _ = await store.record_snapshot(run.id, snapshot(status, "it ended"), at(10), None)
    assert written.status is status
    return written


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.CANCELLED])
async def test_a_repair_reopens_a_failed_or_cancelled_run_as_running_due_now(
    store: SqlStore, status: RunStatus
) -> None:
    run = await ended(store, status)
    reopened = await store.request_repair(run.id, repair(), at(20))
    assert (reopened.status, reopened.is_terminal, reopened.ended_at) == (
        RunStatus.RUNNING,
        False,
        None,
    )
    assert reopened.next_poll_at == at(20)
    assert reopened.repair == repair()
    assert reopened.repair_pending
    assert reopened.message == "Repair #1 requested (tasks: build, score)"
    events = await store.run_events(run.id)
    assert [(e.status, e.source) for e in events][-2:] == [
        (status, "poll"),
        (RunStatus.RUNNING, "repair"),
    ]
    # The engine can claim it again, like any run to watch.
    (claimed,) = await store.claim_due_runs("engine-a", at(21), 60, 10)
    assert claimed.id == run.id
    assert claimed.repair_pending


async def test_a_successful_run_cannot_be_repaired(store: SqlStore) -> None:
    run = await ended(store, RunStatus.SUCCESS)
    with pytest.raises(ConflictError, match=f"Run {run.id} is Success: only a Failed or Cancelled"):
        await store.request_repair(run.id, repair(), at(20))
    unchanged = await store.get_run(run.id)
    assert (unchanged.status, unchanged.repair) == (RunStatus.SUCCESS, None)


async def test_two_repairs_of_one_run_at_once_reopen_it_once(store: SqlStore) -> None:
    run = await ended(store, RunStatus.FAILED)
    await store.request_repair(run.id, repair(), at(20))
    with pytest.raises(ConflictError, match="is Running: only a Failed or Cancelled"):
        await store.request_repair(run.id, repair(), at(21))
    events = [e for e in await store.run_events(run.id) if e.source == "repair"]
    assert len(events) == 1


async def test_a_run_that_never_reached_databricks_cannot_be_repaired(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    await store.record_failure(run.id, "refused", at(2))
    with pytest.raises(ConflictError, match="reached Databricks"):
        await store.request_repair(run.id, repair(), at(3))


async def test_a_sent_repair_is_recorded_once_under_the_engines_lease(store: SqlStore) -> None:
    run = await ended(store, RunStatus.FAILED)
    await store.request_repair(run.id, repair(), at(20))
    (claimed,) = await store.claim_due_runs("engine-a", at(21), 60, 10)
    (taken,) = await store.claim_due_runs("engine-b", at(200), 60, 10)  # a's lease expired
    stale = await store.record_repair_sent(run.id, "9001", at(201), lease=claimed.lease)
    assert stale.repair_pending  # the engine that lost the run writes nothing
    sent = await store.record_repair_sent(run.id, "9001", at(202), lease=taken.lease)
    assert sent.repair is not None
    assert (sent.repair.repair_id, sent.repair.sent_at) == ("9001", at(202))
    assert not sent.repair_pending
    assert sent.message == "Repair #1 sent to Databricks (repair id 9001)"
    again = await store.record_repair_sent(run.id, "9002", at(203), sent=False, lease=taken.lease)
    assert again.repair is not None
    assert again.repair.repair_id == "9001"  # confirmed once
    assert len([e for e in await store.run_events(run.id) if e.source == "repair"]) == 2
    # From here the history moves forward to the repaired outcome.
    final, changed = await store.record_snapshot(
        run.id, snapshot(RunStatus.SUCCESS, "ok"), at(300), None, lease=taken.lease
    )
    assert changed
    assert final.status is RunStatus.SUCCESS
    assert final.repair == again.repair
