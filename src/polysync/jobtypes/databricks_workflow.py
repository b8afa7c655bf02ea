"""The Databricks Workflow job type: discover, import, sync, start, poll, cancel and link, per the spec."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import TypeVar

from polysync.databricks.client import DatabricksClient
from polysync.databricks.models import DatabricksJob
from polysync.domain.external_id import job_deleted_error, parse_external_id
from polysync.domain.models import ImportedJob, JobKind, ParameterDiff, RunSnapshot, RunStatus
from polysync.domain.parameters import classify, imported_job, resolve_run_parameters, sync_job
from polysync.domain.status import (
    best_run_url,
    cancel_noop_message,
    decode_run,
    task_runs_to_fetch_errors,
    with_task_errors,
)
from polysync.errors import DatabricksError, DatabricksNotFoundError, PolysyncError
from polysync.jobtypes.base import CancelOutcome, DiscoveredJob, StartedRun
from polysync.secrets import reveal_parameters

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_IDEMPOTENCY_TOKEN = 64  # reference §3
# Import fans out jobs/get calls; the workspace rate limiter, not this, sets the pace.
IMPORT_CONCURRENCY = 32


def idempotency_token(run_key: str) -> str:
    """A stable token (≤ 64 chars) for one of our runs, so a retried start finds the same run (D8)."""
    digest = hashlib.sha256(run_key.encode()).hexdigest()[:40]
    return f"polysync-{digest}"


class DatabricksWorkflowJobType:
    """Databricks Workflow on one Azure Databricks workspace (one client, one rate limiter)."""

    name = JobKind.WORKFLOW.value

    def __init__(self, client: DatabricksClient) -> None:
        self.client = client

    @property
    def workspace_url(self) -> str:
        return self.client.settings.url

    # ------------------------------------------------------------------ discovery (D5)
    async def discover(self) -> Sequence[DiscoveredJob]:
        """Every job, classified by task count. Tasks come with the list (expand_tasks); a job whose
        list entry carries no tasks (2.0/2.1 over 100 tasks, or a list without them), or only the
        first 100 (2.2, `has_more`), is counted by jobs/get, fetched concurrently under the rate
        limiter; a truncated job whose jobs/get fails keeps "at least 100" (`tasks_truncated`)."""
        found: list[DiscoveredJob | None] = []
        undecided: list[tuple[int, DatabricksJob]] = []
        async for job in self.client.list_jobs(expand_tasks=True):
            tasks = job.settings.tasks
            if tasks is None or job.has_more:
                undecided.append((len(found), job))
                found.append(None)
            else:
                found.append(_discovered(job, len(tasks)))
        if undecided:
            fetched = await _bounded_gather(partial(self._counted, job) for _, job in undecided)
            for (index, _), discovered in zip(undecided, fetched, strict=True):
                found[index] = discovered
        return [job for job in found if job is not None]

    async def _counted(self, job: DatabricksJob) -> DiscoveredJob:
        """The job with its true task count, from jobs/get."""
        listed = job.settings.tasks
        try:
            full = await self.client.get_job(job.job_id)
        except DatabricksError:
            if listed is None:  # nothing to classify it by: the error is the answer
                raise
            return _discovered(job, len(listed), truncated=True)
        return _discovered(full, len(full.settings.tasks or []))

    # ------------------------------------------------------------------ import and sync (D1, D2, D9)
    async def import_job(self, external_id: str) -> ImportedJob:
        job_id = parse_external_id(external_id)
        try:
            job = await self.client.get_job(job_id)
        except DatabricksNotFoundError as exc:
            raise job_deleted_error(job_id) from exc
        return imported_job(job.raw())

    async def import_jobs(self, external_ids: Iterable[str]) -> list[ImportedJob | PolysyncError]:
        """Import many jobs concurrently; each entry is the job or the error for that id."""

        async def one(external_id: str) -> ImportedJob | PolysyncError:
            try:
                return await self.import_job(external_id)
            except PolysyncError as exc:
                return exc

        return await _bounded_gather(partial(one, external_id) for external_id in external_ids)

    async def sync_parameters(self, job: ImportedJob) -> tuple[ImportedJob, ParameterDiff]:
        return sync_job(job, await self.import_job(job.external_id))

    # ------------------------------------------------------------------ start (D3, D4, D8)
    async def start(
        self, job: ImportedJob, overrides: Mapping[str, str], *, idempotency_token: str
    ) -> StartedRun:
        """Validate the External Id and every value first; then one run-now carrying the token.
        `parameters_sent` holds Secret parameters as their references, never the secrets."""
        job_id = parse_external_id(job.external_id)
        parameters = resolve_run_parameters(job.parameters, overrides)
        if not 0 < len(idempotency_token) <= MAX_IDEMPOTENCY_TOKEN:
            raise ValueError(f"idempotency token must be 1..{MAX_IDEMPOTENCY_TOKEN} characters")
        # Secret parameters travel as references and are read only for this request (D2).
        sent = await reveal_parameters(job.parameters, parameters, self.client.secret_scope)
        try:
            answer = await self.client.run_now(
                job_id, sent or None, idempotency_token=idempotency_token
            )
        except DatabricksNotFoundError as exc:
            raise job_deleted_error(job_id) from exc
        run_id = str(answer.run_id)
        return StartedRun(
            run_id=run_id,
            run_page_url=self.run_url(run_id, reported_url=answer.run_page_url, job_id=job_id),
            parameters_sent=parameters,
            idempotency_token=idempotency_token,
        )

    # ------------------------------------------------------------------ poll (D6)
    async def poll(self, run_id: str) -> RunSnapshot:
        """runs/get decoded; for a failed run, each failed task's get-output error joins the message."""
        run = await self.client.get_run(_run_id(run_id))
        snapshot = decode_run(run.raw(), workspace_url=self.workspace_url)
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
                output = await self.client.get_run_output(task_run_id)
            except DatabricksError as exc:
                # The run's own message still says what failed; the error text is a bonus.
                log.warning("could not read the output of task run %s: %s", task_run_id, exc)
                return task_run_id, None
            return task_run_id, output.error

        results = await asyncio.gather(*(one(task_run_id) for task_run_id in task_run_ids))
        return {task_run_id: error for task_run_id, error in results if error}

    async def active_runs(self) -> Mapping[str, RunSnapshot]:
        """runs/list?active_only=true&expand_tasks=true to the last page (25 runs a page),
        decoded (D6) with each run's task states, so a change needs no runs/get (reference §6).
        In 2.2 a run with more than 100 tasks lists its first 100."""
        return {
            str(run.run_id): decode_run(run.raw(), workspace_url=self.workspace_url)
            async for run in self.client.list_runs(active_only=True, expand_tasks=True)
        }

    # ------------------------------------------------------------------ cancel (D10) and URL (D7)
    async def cancel(self, run_id: str) -> CancelOutcome:
        snapshot = await self.poll(run_id)
        if snapshot.is_terminal:
            return CancelOutcome(
                requested=False,
                message=cancel_noop_message(int(run_id), snapshot.status),
                snapshot=snapshot,
            )
        await self.client.cancel_run(_run_id(run_id))
        return CancelOutcome(
            requested=True,
            message=f"Cancellation of run {run_id} requested; Databricks stops it asynchronously.",
            snapshot=snapshot,
        )

    def run_url(
        self, run_id: str, *, reported_url: str | None = None, job_id: int | None = None
    ) -> str:
        """D7: the URL Databricks reported, else `{workspace}/#job/{job_id}/run/{run_id}`."""
        return best_run_url(None, reported_url, self.workspace_url, int(run_id), job_id)


async def _bounded_gather(calls: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Every call's result in order, at most IMPORT_CONCURRENCY at a time. Each call is started
    only once it may run, so cancelling the whole (a client that went away) leaves no call
    created and never awaited."""
    semaphore = asyncio.Semaphore(IMPORT_CONCURRENCY)

    async def bounded(call: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await call()

    return list(await asyncio.gather(*(bounded(call) for call in calls)))


def _discovered(job: DatabricksJob, task_count: int, *, truncated: bool = False) -> DiscoveredJob:
    settings = job.settings
    return DiscoveredJob(
        external_id=str(job.job_id),
        name=settings.name or f"job {job.job_id}",
        kind=classify(task_count),
        task_count=task_count,
        tags=dict(settings.tags or {}),
        creator=job.creator_user_name,
        created_time_ms=job.created_time,
        tasks_truncated=truncated,
    )


def _run_id(run_id: str) -> int:
    try:
        value = int(run_id)
    except ValueError as exc:
        raise ValueError(f"RunId {run_id!r} is not a Databricks run id (digits expected)") from exc
    if value <= 0:
        raise ValueError(f"RunId {run_id!r} is not a Databricks run id (positive expected)")
    return value
