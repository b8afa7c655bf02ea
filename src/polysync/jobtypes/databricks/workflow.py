"""The Databricks Workflow job type: discover, import, sync, start, poll, cancel and link, per the spec."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from polysync.domain.models import (
    ImportedJob,
    ParameterDiff,
)
from polysync.domain.parameters import resolve_run_parameters, sync_job
from polysync.domain.text import shown
from polysync.errors import DatabricksError, DatabricksNotFoundError, PolysyncError
from polysync.jobtypes.base import (
    MAX_IDEMPOTENCY_TOKEN,
    DiscoveredJob,
    StartedRun,
    StartRequest,
    bounded_gather,
    import_each,
)
from polysync.jobtypes.databricks.external_id import (
    MAX_JOB_ID,
    format_external_id,
    job_deleted_error,
    parse_external_id,
)
from polysync.jobtypes.databricks.parameters import JobKind, classify, imported_job
from polysync.jobtypes.databricks.repair import JobRunRepairs
from polysync.jobtypes.databricks.status import best_run_url
from polysync.secrets import reveal_parameters

log = logging.getLogger(__name__)


class DatabricksWorkflowJobType(JobRunRepairs):
    """Databricks Workflow on one Azure Databricks workspace (one client, one rate limiter); its
    runs can be repaired (`jobs/runs/repair`, D13)."""

    name = JobKind.WORKFLOW.value

    # ------------------------------------------------------------------ discovery (D5)
    async def discover(self) -> Sequence[DiscoveredJob]:
        """Every job, classified by task count. Tasks come with the list (expand_tasks); a job whose
        list entry carries no tasks (2.0/2.1 over 100 tasks, or a list without them), or only the
        first 100 (2.2, `has_more`), is counted by jobs/get, fetched concurrently under the rate
        limiter; a truncated job whose jobs/get fails keeps "at least 100" (`tasks_truncated`).
        Entries are read tolerantly: one without a valid job_id is skipped with a warning, odd
        fields (tags that are not text, a name that is not a string) are left out."""
        found: list[DiscoveredJob | None] = []
        undecided: list[tuple[int, int, Mapping[str, Any]]] = []
        async for entry in self.client.list_jobs_json(expand_tasks=True):
            job_id = _job_id(entry)
            if job_id is None:
                log.warning("jobs/list entry without a valid job_id skipped: %s", shown(entry))
                continue
            tasks = _settings(entry).get("tasks")
            if not isinstance(tasks, list) or entry.get("has_more") is True:
                undecided.append((len(found), job_id, entry))
                found.append(None)
            else:
                found.append(_discovered(entry, job_id, len(tasks)))
        if undecided:
            fetched = await bounded_gather(
                partial(self._counted, job_id, entry) for _, job_id, entry in undecided
            )
            for (index, _, _), discovered in zip(undecided, fetched, strict=True):
                found[index] = discovered
        return [job for job in found if job is not None]

    async def _counted(self, job_id: int, entry: Mapping[str, Any]) -> DiscoveredJob:
        """The job with its true task count, from jobs/get."""
        listed = _settings(entry).get("tasks")
        try:
            full = await self.client.get_job_json(job_id)
        except DatabricksError:
            if not isinstance(listed, list):  # nothing to classify it by: the error is the answer
                raise
            return _discovered(entry, job_id, len(listed), truncated=True)
        tasks = _settings(full).get("tasks")
        return _discovered(full, job_id, len(tasks) if isinstance(tasks, list) else 0)

    # ------------------------------------------------------------------ import and sync (D1, D2, D9)
    def validate_external_id(self, external_id: str) -> str:
        """The Job Id in canonical decimal (D4)."""
        return format_external_id(parse_external_id(external_id))

    async def import_job(self, external_id: str) -> ImportedJob:
        job_id = parse_external_id(external_id)
        try:
            job = await self.client.get_job_json(job_id)
        except DatabricksNotFoundError as exc:
            raise job_deleted_error(job_id) from exc
        return imported_job(job)

    async def import_jobs(self, external_ids: Iterable[str]) -> list[ImportedJob | PolysyncError]:
        """Import many jobs concurrently; each entry is the job or the error for that id."""
        return await import_each(self.import_job, external_ids)

    async def sync_parameters(self, job: ImportedJob) -> tuple[ImportedJob, ParameterDiff]:
        return sync_job(job, await self.import_job(job.external_id))

    # ------------------------------------------------------------------ start (D3, D4, D8)
    def build_start_request(self, job: ImportedJob, overrides: Mapping[str, str]) -> StartRequest:
        """run-now's body: the Job Id (D4) and the job_parameters (D3), validated."""
        job_id = parse_external_id(job.external_id)
        parameters = resolve_run_parameters(job.parameters, overrides)
        body: dict[str, Any] = {"job_id": job_id}
        if parameters:
            body["job_parameters"] = parameters
        return StartRequest(parameters_sent=parameters, body=body)

    async def start(
        self, job: ImportedJob, overrides: Mapping[str, str], *, idempotency_token: str
    ) -> StartedRun:
        """Validate the External Id and every value first; then one run-now carrying the token.
        `parameters_sent` holds Secret parameters as their references, never the secrets."""
        request = self.build_start_request(job, overrides)
        job_id = parse_external_id(job.external_id)
        parameters = dict(request.parameters_sent)
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
            run_page_url=best_run_url(
                None, answer.run_page_url, self.workspace_url, int(run_id), job_id
            ),
            parameters_sent=parameters,
            idempotency_token=idempotency_token,
        )


def _discovered(
    job: Mapping[str, Any], job_id: int, task_count: int, *, truncated: bool = False
) -> DiscoveredJob:
    settings = _settings(job)
    name = settings.get("name")
    tags = settings.get("tags")
    creator = job.get("creator_user_name")
    created = job.get("created_time")
    return DiscoveredJob(
        external_id=str(job_id),
        name=name if isinstance(name, str) and name else f"job {job_id}",
        kind=classify(task_count),
        task_count=task_count,
        tags={k: v for k, v in tags.items() if isinstance(k, str) and isinstance(v, str)}
        if isinstance(tags, Mapping)
        else {},
        creator=creator if isinstance(creator, str) else None,
        created_time_ms=created
        if isinstance(created, int) and not isinstance(created, bool)
        else None,
        tasks_truncated=truncated,
    )


def _settings(job: Mapping[str, Any]) -> Mapping[str, Any]:
    settings = job.get("settings")
    return settings if isinstance(settings, Mapping) else {}


def _job_id(job: Mapping[str, Any]) -> int | None:
    value = job.get("job_id")
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_JOB_ID:
        return value
    return None
