"""A run cancelled before any run-now was sent ends Cancelled at once, and no engine can send one
afterwards (H5): begin_submit and request_cancel take the same row lock, one wins."""

from __future__ import annotations

from polysync.domain.models import RunStatus
from polysync.store import SqlStore
from tests.contract.test_store import (
    at,
    platform_and_job,
    start,
)


async def test_a_run_never_sent_is_cancelled_at_once_and_its_claim_is_fenced_out(
    store: SqlStore,
) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    (claimed,) = await store.claim_due_runs("engine-a", at(1), 60, 10)
    cancelled = await store.request_cancel(run.id, at(2), cancelled_by="api-key:ops")
    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.message == "Cancelled before it was submitted to Databricks"
    assert (cancelled.cancelled_by, cancelled.ended_at, cancelled.next_poll_at) == (
        "api-key:ops",
        at(2),
        None,
    )
    assert cancelled.lease_owner is None
    events = await store.run_events(run.id)
    assert [(e.status, e.source) for e in events] == [
        (RunStatus.STARTING, "engine"),
        (RunStatus.CANCELLED, "cancel"),
    ]
    # The engine that claimed it just before: its run-now is refused, nothing changes.
    assert await store.begin_submit(run.id, at(3), lease=claimed.lease) is None
    assert (await store.get_run(run.id)).submit_attempts == 0
    assert await store.claim_due_runs("engine-b", at(4), 60, 10) == []


async def test_a_cancel_after_a_run_now_may_have_been_sent_is_only_requested(
    store: SqlStore,
) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    (claimed,) = await store.claim_due_runs("engine-a", at(1), 60, 10)
    begun = await store.begin_submit(run.id, at(2), lease=claimed.lease)
    assert begun is not None
    requested = await store.request_cancel(run.id, at(3))
    assert requested.status is RunStatus.STARTING  # the engine learns the RunId, then cancels
    assert requested.cancel_requested_at == at(3)


async def test_a_stale_claim_cannot_begin_a_submit(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    run = await start(store, job)
    (old,) = await store.claim_due_runs("engine-a", at(1), 60, 10)
    (new,) = await store.claim_due_runs("engine-b", at(100), 60, 10)  # a's lease expired
    assert await store.begin_submit(run.id, at(101), lease=old.lease) is None
    assert await store.begin_submit(run.id, at(101), lease=new.lease) is not None
