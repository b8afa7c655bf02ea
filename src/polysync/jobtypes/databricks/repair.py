"""Repairing an ended Jobs API job run in place: `jobs/runs/repair` (D13; reference §4, §5).

A repair reruns the failed tasks of an ended run (and the tasks they skipped) inside the same
Databricks run, with the job's current task settings. What makes it happen once is the run's
`latest_repair_id`: Databricks requires it once a run was repaired and refuses a stale one, so
a repair planned after repair R can land once. Before sending, `repair_history` is read again:
a repair after R that is already there (sent before a crash, or by someone in the Databricks UI)
is adopted instead of sending a second one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from polysync.domain.models import ImportedJob, RunStatus
from polysync.errors import ConflictError, DatabricksBadRequestError, DatabricksNotFoundError
from polysync.jobtypes.base import RepairOutcome, RepairPlan
from polysync.jobtypes.databricks.runs import JobsApiRuns, run_id_number
from polysync.jobtypes.databricks.status import decode_run
from polysync.secrets import reveal_parameters

log = logging.getLogger(__name__)

RERUN_STATUSES = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})
"""Tasks whose last attempt decoded (D6, for tasks) to one of these are rerun: failed, timed out,
skipped by an upstream failure, cancelled; what `rerun_all_failed_tasks` reruns."""


class JobRunRepairs(JobsApiRuns):
    """`RepairableJobType` for job runs (Databricks Workflow, Databricks Job)."""

    async def plan_repair(self, run_id: str) -> RepairPlan:
        """runs/get with `include_history`: the latest repair and the tasks to rerun.
        ConflictError while the run is active in Databricks, when no task failed, or when
        Databricks no longer has the run."""
        try:
            answer = await self.client.get_run_json(run_id_number(run_id), include_history=True)
        except DatabricksNotFoundError as exc:
            raise ConflictError(
                f"Databricks run {run_id} no longer exists (deleted, or its history expired): "
                "it cannot be repaired. Start a new run instead."
            ) from exc
        snapshot = decode_run(answer, workspace_url=self.workspace_url)
        if not snapshot.is_terminal:
            raise ConflictError(
                f"Databricks run {run_id} is {snapshot.life_cycle_state or 'not ended'}: only a "
                "run that has ended can be repaired. Wait for it to end, then repair it."
            )
        keys = tuple(
            task.task_key
            for task in snapshot.latest_attempts()
            if task.task_key and task.status in RERUN_STATUSES
        )
        if not keys:
            raise ConflictError(
                f"Databricks run {run_id} has no failed, skipped or cancelled task to rerun, so "
                "a repair would do nothing. Start a new run instead."
            )
        repairs = repair_ids(answer.get("repair_history"))
        return RepairPlan(
            run_id=run_id,
            number=len(repairs) + 1,
            latest_repair_id=str(repairs[-1]) if repairs else None,
            task_keys=keys,
        )

    async def repair(
        self, plan: RepairPlan, job: ImportedJob, parameters_sent: Mapping[str, str]
    ) -> RepairOutcome:
        """Adopt a repair after the plan's latest one if `repair_history` has it; else send one
        `jobs/runs/repair` (`rerun_all_failed_tasks`, `latest_repair_id`, the run's own
        `job_parameters`). A refusal while a repair after the plan's latest one exists (it
        landed in between: Databricks says the latest repair ID is stale, or the run is in
        progress again) is answered by adopting that repair."""
        number = run_id_number(plan.run_id)
        landed = await self._repair_after(number, plan.latest_repair_id)
        if landed is not None:
            log.info("run %s: repair %s had landed already; adopted", plan.run_id, landed)
            return RepairOutcome(repair_id=str(landed), sent=False)
        # Secret parameters travel as references and are read only for this request (D2).
        sent = await reveal_parameters(
            job.parameters, dict(parameters_sent), self.client.secret_scope
        )
        try:
            repair_id = await self.client.repair_run(
                number,
                rerun_all_failed_tasks=True,
                latest_repair_id=None
                if plan.latest_repair_id is None
                else int(plan.latest_repair_id),
                job_parameters=sent or None,
            )
        except DatabricksBadRequestError:
            # A repair that landed in between (a stale or missing latest_repair_id, or a run
            # back in progress) is adopted; any other refusal stands.
            landed = await self._repair_after(number, plan.latest_repair_id)
            if landed is None:
                raise
            return RepairOutcome(repair_id=str(landed), sent=False)
        return RepairOutcome(repair_id=str(repair_id), sent=True)

    async def _repair_after(self, run_id: int, latest: str | None) -> int | None:
        """The first repair in the run's `repair_history` after `latest` (None: any), if any."""
        answer = await self.client.get_run_json(run_id, include_history=True)
        repairs = repair_ids(answer.get("repair_history"))
        if latest is None:
            return repairs[0] if repairs else None
        try:
            index = repairs.index(int(latest))
        except ValueError:
            # The planned-on repair is not in the history: never guess, send and let Databricks judge.
            return None
        return repairs[index + 1] if index + 1 < len(repairs) else None


def repair_ids(history: Any) -> list[int]:
    """The ids of the REPAIR entries of a `repair_history` (reference §4), oldest first; odd
    entries are skipped."""
    if not isinstance(history, Sequence) or isinstance(history, str | bytes):
        return []
    ids: list[int] = []
    for entry in history:
        if not isinstance(entry, Mapping) or entry.get("type") != "REPAIR":
            continue
        value = entry.get("id")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            ids.append(value)
    return ids
