"""Repairing a Failed run by hand (D13): services, the engine and the emulator over HTTP (ASGI
transport), a real SQLite file, manual clocks. One `jobs/runs/repair`, one Databricks run."""

from __future__ import annotations

import pytest

from polysync.domain.models import RunSnapshot, RunStatus
from polysync.emulator.faults import Fault
from polysync.emulator.records import JobRun
from polysync.emulator.spec import TaskScript
from polysync.errors import (
    ConflictError,
    DatabricksBadRequestError,
    NotFoundError,
    RepairNotSupportedError,
)
from polysync.jobtypes.base import RepairOutcome, RepairPlan, repair_capability
from polysync.services import Services
from tests.conftest import EmulatorHarness, autojump
from tests.integration.conftest import BACKFILL, FRAUD, databricks_runs, drive

RERUN = ("build_features", "score", "publish_alerts")
"""fraud-scoring's failed task and the two it skipped: what rerun_all_failed_tasks reruns."""


def repair_requests(harness: EmulatorHarness) -> list[str | None]:
    """The runs/repair requests of the emulator's request log: what each reran."""
    return [
        r.detail
        for r in harness.app.emulator.stats.recent()
        if r.method == "POST" and r.path.endswith("jobs/runs/repair")
    ]


async def failed_fraud_run(harness: EmulatorHarness, services: Services) -> int:
    job = await services.get_job(FRAUD, platform="demo")
    run = await services.execute(job, {"model_version": "13"})
    await drive(harness, services.engine, run.id)
    assert (await services.store.get_run(run.id)).status is RunStatus.FAILED
    # The schema mismatch is fixed in the workspace: a rerun of the failed task succeeds.
    harness.state.script_task(int(FRAUD), "build_features", TaskScript(duration_s=6))
    return run.id


def rerun_keys(harness: EmulatorHarness, databricks_run_id: str) -> list[str]:
    found = harness.state.runs[int(databricks_run_id)]
    assert isinstance(found, JobRun)
    by_id = {a.run_id: a.task["task_key"] for a in found.attempts}
    return sorted(by_id[i] for repair in found.repairs for i in repair.task_run_ids)


async def test_a_repaired_run_goes_back_to_running_and_ends_success_in_one_databricks_run(
    harness: EmulatorHarness, services: Services
) -> None:
    run_id = await failed_fraud_run(harness, services)
    before = databricks_runs(harness)
    requested = await services.repair_run(run_id)
    assert requested.status is RunStatus.RUNNING
    assert requested.repair is not None
    assert requested.repair.number == 1
    assert requested.repair.task_keys == RERUN
    assert requested.repair.pending
    assert repair_requests(harness) == []  # only recorded: the engine sends it
    await services.engine.step()
    assert len(repair_requests(harness)) == 1
    sent = await services.store.get_run(run_id)
    assert sent.status is RunStatus.RUNNING
    assert sent.repair is not None
    assert sent.repair.repair_id is not None
    await drive(harness, services.engine, run_id)
    final = await services.store.get_run(run_id)
    assert final.status is RunStatus.SUCCESS
    # The request log: exactly one runs/repair, rerunning the failed task and the two it skipped.
    assert repair_requests(harness) == ["rerun: build_features, score, publish_alerts"]
    assert databricks_runs(harness) == before  # the same Databricks run, repaired in place
    assert harness.app.emulator.stats.count("jobs/run-now") == 1
    assert final.run_id is not None
    assert rerun_keys(harness, final.run_id) == sorted(RERUN)
    # The same job_parameters as the run sent.
    found = harness.state.runs[int(final.run_id)]
    assert isinstance(found, JobRun)
    assert {p["name"]: p["value"] for p in found.job_parameters}["model_version"] == "13"
    history = [(e.status, e.message, e.source) for e in await services.store.run_events(run_id)]
    statuses = [status for status, _, _ in history]
    failed_at = statuses.index(RunStatus.FAILED)
    assert statuses[failed_at + 1 :].count(RunStatus.FAILED) == 0
    assert history[failed_at + 1] == (
        RunStatus.RUNNING,
        "Repair #1 requested (tasks: build_features, score, publish_alerts)",
        "repair",
    )
    assert history[failed_at + 2][1].startswith("Repair #1 sent to Databricks (repair id ")
    assert statuses[-1] is RunStatus.SUCCESS


async def test_a_second_repair_names_the_first_as_the_latest(
    harness: EmulatorHarness, services: Services
) -> None:
    job = await services.get_job(FRAUD, platform="demo")
    run = await services.execute(job, {})
    await drive(harness, services.engine, run.id)
    await services.repair_run(run.id)  # build_features still fails
    await drive(harness, services.engine, run.id)
    once = await services.store.get_run(run.id)
    assert once.status is RunStatus.FAILED
    assert once.repair is not None
    first_id = once.repair.repair_id
    harness.state.script_task(int(FRAUD), "build_features", TaskScript(duration_s=6))
    again = await services.repair_run(run.id)
    assert again.repair is not None
    assert (again.repair.number, again.repair.latest_repair_id) == (2, first_id)
    await drive(harness, services.engine, run.id)
    assert (await services.store.get_run(run.id)).status is RunStatus.SUCCESS
    assert len(repair_requests(harness)) == 2


async def test_a_resend_after_a_crash_adopts_the_repair_that_landed(
    harness: EmulatorHarness, services: Services
) -> None:
    """kill -9 between sending the repair and recording it: the restarted engine finds the
    repair in repair_history (after the planned latest_repair_id) and never sends a second."""
    run_id = await failed_fraud_run(harness, services)
    requested = await services.repair_run(run_id)
    assert requested.repair is not None
    assert requested.run_id is not None
    job = await services.get_job(FRAUD, platform="demo")
    platform = await services.store.get_platform("demo")
    repairable = repair_capability(services.connections.for_job(platform, job))
    plan = RepairPlan(
        requested.run_id, 1, requested.repair.latest_repair_id, requested.repair.task_keys
    )
    # The first engine sent it, then died before recording anything.
    first = await repairable.repair(plan, job.as_imported(), requested.parameters_sent)
    assert first.sent
    assert (await services.store.get_run(run_id)).repair_pending
    await services.engine.step()  # the engine that takes the run over
    assert len(repair_requests(harness)) == 1
    adopted = await services.store.get_run(run_id)
    assert adopted.repair is not None
    assert adopted.repair.repair_id == first.repair_id
    events = [e.message for e in await services.store.run_events(run_id)]
    assert f"Repair #1 found already made in Databricks (repair id {first.repair_id})" in events
    await drive(harness, services.engine, run_id)
    assert (await services.store.get_run(run_id)).status is RunStatus.SUCCESS
    assert len(repair_requests(harness)) == 1


async def test_a_second_send_with_the_same_plan_is_refused_by_databricks_as_stale(
    harness: EmulatorHarness, services: Services
) -> None:
    """What makes the repair idempotent on Databricks' side: the plan's latest_repair_id."""
    run_id = await failed_fraud_run(harness, services)
    run = await services.store.get_run(run_id)
    assert run.run_id is not None
    job = await services.get_job(FRAUD, platform="demo")
    platform = await services.store.get_platform("demo")
    client = services.connections.client(platform)
    first = await client.repair_run(int(run.run_id), rerun_all_failed_tasks=True)
    with pytest.raises(DatabricksBadRequestError, match="is still in progress"):
        await client.repair_run(int(run.run_id), rerun_all_failed_tasks=True)
    harness.advance(600)
    with pytest.raises(DatabricksBadRequestError, match="latest repair ID needs to be provided"):
        await client.repair_run(int(run.run_id), rerun_all_failed_tasks=True)
    # The job type, given the plan made before the first repair, adopts it instead.
    repairable = repair_capability(services.connections.for_job(platform, job))
    plan = RepairPlan(run.run_id, 1, None, RERUN)
    outcome = await repairable.repair(plan, job.as_imported(), run.parameters_sent)
    assert outcome == RepairOutcome(repair_id=str(first), sent=False)
    assert len(repair_requests(harness)) == 3


@pytest.mark.parametrize("status", [RunStatus.SUCCESS, RunStatus.RUNNING])
async def test_only_a_failed_or_cancelled_run_can_be_repaired(
    harness: EmulatorHarness, services: Services, status: RunStatus
) -> None:
    job = await services.get_job(BACKFILL, platform="demo")
    run = await services.execute(job, {})
    await services.engine.step()
    harness.advance(60)
    await services.engine.step()
    if status is RunStatus.SUCCESS:
        stored = await services.store.get_run(run.id)
        ended = RunSnapshot(status=RunStatus.SUCCESS, message="", tasks=stored.tasks)
        await services.store.record_snapshot(run.id, ended, stored.updated_at, None)
    current = await services.store.get_run(run.id)
    assert current.status is status
    with pytest.raises(ConflictError, match=f"Run {run.id} is {status.value}: only a Failed"):
        await services.repair_run(run.id)
    assert (await services.store.get_run(run.id)).repair is None
    assert repair_requests(harness) == []


async def test_a_notebook_run_cannot_be_repaired(
    harness: EmulatorHarness, services: Services
) -> None:
    job_type = services.connections.registry.create(
        "Databricks Notebook",
        await services.store.get_platform("demo"),
        services.connections.client(await services.store.get_platform("demo")),
    )
    with pytest.raises(RepairNotSupportedError, match="Databricks Notebook run cannot be repaired"):
        repair_capability(job_type)
    assert services.connections.registry.repairable == ("Databricks Workflow", "Databricks Job")
    assert not services.connections.registry.supports_repair("Databricks Pipeline")


async def test_an_unknown_run_is_not_found(services: Services) -> None:
    with pytest.raises(NotFoundError, match="No run with id 999"):
        await services.repair_run(999)


async def test_a_lost_repair_answer_is_found_in_the_history_not_sent_again(
    harness: EmulatorHarness, services: Services
) -> None:
    """The repair lands but its answer is lost: the engine retries the run later, finds the
    repair after the planned latest_repair_id in repair_history and adopts it."""
    run_id = await failed_fraud_run(harness, services)
    harness.app.emulator.faults.add(
        Fault(method="POST", path="jobs/runs/repair$", kind="lose_response", times=1)
    )
    await services.repair_run(run_id)
    await autojump(harness.real_clock, services.engine.step())  # type: ignore[arg-type]
    assert len(repair_requests(harness)) == 1
    assert (await services.store.get_run(run_id)).repair_pending
    await drive(harness, services.engine, run_id)
    final = await services.store.get_run(run_id)
    assert final.status is RunStatus.SUCCESS
    assert len(repair_requests(harness)) == 1
    assert final.repair is not None
    assert final.repair.repair_id is not None
    events = [e.message for e in await services.store.run_events(run_id)]
    assert any(m.startswith("Repair #1 found already made in Databricks") for m in events)


async def test_a_refused_repair_ends_the_run_failed_again_saying_why(
    harness: EmulatorHarness, services: Services
) -> None:
    run_id = await failed_fraud_run(harness, services)
    harness.app.emulator.faults.add(
        Fault(
            method="POST",
            path="jobs/runs/repair$",
            kind="status",
            status=400,
            error_code="INVALID_PARAMETER_VALUE",
            message="Repairs are disabled for this job.",
            times=1,
        )
    )
    await services.repair_run(run_id)
    await services.engine.step()
    refused = await services.store.get_run(run_id)
    assert refused.status is RunStatus.FAILED
    assert refused.message.startswith("Repair #1 was refused: ")
    assert "Repairs are disabled for this job." in refused.message
    assert refused.run_id is not None
    found = harness.state.runs[int(refused.run_id)]
    assert isinstance(found, JobRun)
    assert found.repairs == []
    # It can be asked again once the cause is gone: #1 again, since none was made.
    again = await services.repair_run(run_id)
    assert again.repair is not None
    assert again.repair.number == 1
    await drive(harness, services.engine, run_id)
    assert (await services.store.get_run(run_id)).status is RunStatus.SUCCESS


async def test_a_cancel_before_the_repair_is_sent_withdraws_it(
    harness: EmulatorHarness, services: Services
) -> None:
    run_id = await failed_fraud_run(harness, services)
    await services.repair_run(run_id)
    cancelled = await services.cancel(run_id)
    assert cancelled.cancel_requested_at is not None
    await drive(harness, services.engine, run_id)
    final = await services.store.get_run(run_id)
    assert final.status is RunStatus.FAILED  # as it was: nothing was repaired
    assert not final.repair_pending
    assert repair_requests(harness) == []


async def test_a_run_deleted_in_databricks_before_its_repair_is_sent_ends_failed(
    harness: EmulatorHarness, services: Services
) -> None:
    run_id = await failed_fraud_run(harness, services)
    run = await services.repair_run(run_id)
    assert run.run_id is not None
    del harness.state.runs[int(run.run_id)]
    await services.engine.step()
    final = await services.store.get_run(run_id)
    assert final.status is RunStatus.FAILED
    assert final.message.startswith("The Databricks run was deleted or its history expired")
    assert repair_requests(harness) == []


async def test_a_run_databricks_no_longer_has_cannot_be_repaired(
    harness: EmulatorHarness, services: Services
) -> None:
    run_id = await failed_fraud_run(harness, services)
    run = await services.store.get_run(run_id)
    assert run.run_id is not None
    del harness.state.runs[int(run.run_id)]
    with pytest.raises(ConflictError, match=f"Databricks run {run.run_id} no longer exists"):
        await services.repair_run(run_id)
    unchanged = await services.store.get_run(run_id)
    assert (unchanged.status, unchanged.repair) == (RunStatus.FAILED, None)
