"""What the job types that start Jobs API runs share (Workflow, Job, Notebook): poll with
`runs/get` decoded by D6 (failed tasks' `runs/get-output` errors merged), cancel with
`runs/cancel` (D10), sweep with `runs/list`, run page URLs (D7)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Collection, Mapping, Sequence

from polysync.domain.models import RunSnapshot, RunStatus, cancel_noop_message
from polysync.errors import DatabricksError, UsageError
from polysync.jobtypes.base import CancelOutcome
from polysync.jobtypes.databricks.status import (
    best_run_url,
    decode_run,
    task_runs_to_fetch_errors,
    with_task_errors,
)
from polysync.jobtypes.databricks.workspace import WorkspaceJobType

log = logging.getLogger(__name__)

RUNS_PER_PAGE = 25  # runs/list limit on 2.1+ (reference §6)


class JobsApiRuns(WorkspaceJobType):
    """Poll, cancel, sweep and link Jobs API runs on one workspace (one client, one limiter)."""

    # ------------------------------------------------------------------ poll (D6)
    async def poll(self, run_id: str) -> RunSnapshot:
        """runs/get decoded; for a failed run, each failed task's get-output error joins the message."""
        answer = await self.client.get_run_json(run_id_number(run_id))
        snapshot = decode_run(answer, workspace_url=self.workspace_url)
        if snapshot.status is RunStatus.FAILED or (
            snapshot.status is RunStatus.SUCCESS and snapshot.failed_tasks
        ):
            errors = await self._task_errors(task_runs_to_fetch_errors(snapshot))
            if errors:
                snapshot = with_task_errors(snapshot, errors)
        return snapshot

    async def _task_errors(self, task_run_ids: Sequence[int]) -> dict[int, str]:
        async def one(task_run_id: int) -> tuple[int, str | None]:
            try:
                output = await self.client.get_run_output_json(task_run_id)
            except DatabricksError as exc:
                # The run's own message still says what failed; the error text is a bonus.
                log.warning("could not read the output of task run %s: %s", task_run_id, exc)
                return task_run_id, None
            error = output.get("error")
            return task_run_id, error if isinstance(error, str) else None

        results = await asyncio.gather(*(one(task_run_id) for task_run_id in task_run_ids))
        return {task_run_id: error for task_run_id, error in results if error}

    # ------------------------------------------------------------------ sweep (reference §6)
    sweep_group = "databricks-jobs-runs"
    """Workflow, Job and Notebook runs are all in runs/list: one sweep covers the three."""

    def sweep_pays(self, listed_last: int | None, ours: int) -> bool:
        """One runs/list page per 25 active runs of the whole workspace (other users' runs
        too) against a runs/get per run of ours; never swept counts as paying."""
        if listed_last is None:
            return True
        return math.ceil(listed_last / RUNS_PER_PAGE) <= ours

    async def sweep(self, run_ids: Collection[str]) -> Mapping[str, RunSnapshot]:
        """Every active run of the workspace (`active_runs`): ours among them."""
        return await self.active_runs()

    async def active_runs(self) -> Mapping[str, RunSnapshot]:
        """runs/list?active_only=true&expand_tasks=true to the last page (25 runs a page),
        decoded (D6) with each run's task states, so a change needs no runs/get (reference §6).
        In 2.2 a run with more than 100 tasks lists its first 100."""
        return {
            str(run["run_id"]): decode_run(run, workspace_url=self.workspace_url)
            async for run in self.client.list_runs_json(active_only=True, expand_tasks=True)
            if isinstance(run.get("run_id"), int) and not isinstance(run.get("run_id"), bool)
        }

    # ------------------------------------------------------------------ cancel (D10) and URL (D7)
    async def cancel(self, run_id: str) -> CancelOutcome:
        snapshot = await self.poll(run_id)
        if snapshot.is_terminal:
            return CancelOutcome(
                requested=False,
                message=cancel_noop_message(run_id, snapshot.status),
                snapshot=snapshot,
            )
        await self.client.cancel_run(run_id_number(run_id))
        return CancelOutcome(
            requested=True,
            message=f"Cancellation of run {run_id} requested; Databricks stops it asynchronously.",
            snapshot=snapshot,
        )

    def run_url(self, run_id: str, *, reported_url: str | None = None) -> str:
        return best_run_url(None, reported_url, self.workspace_url, run_id_number(run_id))


def run_id_number(run_id: str) -> int:
    """The Databricks run id in a RunId of a Jobs API run: positive decimal digits."""
    try:
        value = int(run_id)
    except ValueError as exc:
        raise UsageError(f"RunId {run_id!r} is not a Databricks run id (digits expected)") from exc
    if value <= 0:
        raise UsageError(f"RunId {run_id!r} is not a Databricks run id (positive expected)")
    return value
