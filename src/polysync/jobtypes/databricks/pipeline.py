"""The Databricks Pipeline job type: an update of a Lakeflow Declarative Pipeline (DLT), D11.

External Id = the pipeline id. Discovery pages `pipelines`, import reads `pipelines/{id}`: its
`spec.configuration` keys are imported reference-only and one Input parameter, `full_refresh`
(Bool, default false), is sent. Start `POST pipelines/{id}/updates`; RunId
"{pipeline_id}:{update_id}"; poll `GET pipelines/{id}/updates/{update_id}` decoded by
`UPDATE_STATES`; a FAILED update's message comes from the pipeline's ERROR events. Cancel is
`POST pipelines/{id}/stop`, which stops the pipeline's active update.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from polysync.domain.models import (
    DataType,
    Direction,
    ImportedJob,
    Parameter,
    ParameterDiff,
    RunSnapshot,
    RunStatus,
    cancel_noop_message,
)
from polysync.domain.parameters import (
    default_text,
    infer_data_type,
    resolve_run_parameters,
    sync_job,
)
from polysync.domain.text import shown
from polysync.errors import (
    DatabricksConflictError,
    DatabricksError,
    DatabricksNotFoundError,
    InvalidExternalIdError,
    JobDeletedError,
    PolysyncError,
    UsageError,
)
from polysync.jobtypes.base import (
    CancelOutcome,
    DiscoveredJob,
    StartedRun,
    StartRequest,
    bounded_gather,
    import_each,
)
from polysync.jobtypes.databricks.status import trusted_run_url
from polysync.jobtypes.databricks.workspace import WorkspaceJobType

log = logging.getLogger(__name__)

PIPELINE = "Databricks Pipeline"
FULL_REFRESH = "full_refresh"
CONFIGURATION_SOURCE = "spec.configuration"
UPDATE_SOURCE = "updates.full_refresh"

UPDATE_STATES: Mapping[str, RunStatus] = {
    "QUEUED": RunStatus.STARTING,
    "CREATED": RunStatus.STARTING,
    "WAITING_FOR_RESOURCES": RunStatus.STARTING,
    "INITIALIZING": RunStatus.STARTING,
    "RESETTING": RunStatus.STARTING,
    "SETTING_UP_TABLES": RunStatus.STARTING,
    "RUNNING": RunStatus.RUNNING,
    "STOPPING": RunStatus.RUNNING,
    "COMPLETED": RunStatus.SUCCESS,
    "FAILED": RunStatus.FAILED,
    "CANCELED": RunStatus.CANCELLED,
}
"""An update's `state` -> our status (D11); any other value is Unknown (not terminal)."""

MAX_ERROR_EVENTS = 25
_PIPELINE_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_UPDATE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


def check_pipeline_id(value: object) -> str:
    """A pipeline id (a UUID, lower-cased, whitespace around it ignored), else
    InvalidExternalIdError before any API call."""
    text = value.strip() if isinstance(value, str) else None
    if text is None or _PIPELINE_ID.fullmatch(text) is None:
        raise InvalidExternalIdError(
            f"INVALID_PARAMETER_VALUE: pipeline_id: the External Id {shown(value)} is not a "
            f"pipeline id (expected a UUID such as 6f1c2b7e-3a4d-4e5f-8a9b-0c1d2e3f4a5b). "
            f"Re-import the pipeline from the Platform editor."
        )
    return text.lower()


def split_run_id(run_id: str) -> tuple[str, str]:
    """(pipeline id, update id) of a RunId "{pipeline_id}:{update_id}"; UsageError otherwise."""
    pipeline_id, _, update_id = run_id.partition(":")
    if _PIPELINE_ID.fullmatch(pipeline_id) is None or _UPDATE_ID.fullmatch(update_id) is None:
        raise UsageError(
            f"RunId {shown(run_id)} is not a pipeline update ('<pipeline_id>:<update_id>' "
            f"expected)."
        )
    return pipeline_id, update_id


def decode_update(answer: Mapping[str, Any], run_id: str, workspace_url: str) -> RunSnapshot:
    """`pipelines/{id}/updates/{update_id}` decoded by `UPDATE_STATES`. Never raises: what
    cannot be read is Unknown (keep polling) with a warning."""
    update = answer.get("update")
    update = update if isinstance(update, Mapping) else {}
    raw_state = update.get("state")
    state = raw_state if isinstance(raw_state, str) and raw_state else None
    status = UPDATE_STATES.get(state or "", RunStatus.UNKNOWN)
    warnings: tuple[str, ...] = ()
    if status is RunStatus.UNKNOWN:
        warnings = (
            f"Pipeline update {run_id}: unknown update state {shown(raw_state)}; Polysync treats "
            f"it as not finished and keeps polling.",
        )
    created = update.get("creation_time")
    start_ms = created if isinstance(created, int) and not isinstance(created, bool) else None
    message = {
        RunStatus.CANCELLED: (
            "The pipeline update was canceled: the pipeline was stopped, which stops its active "
            "update (what a Polysync cancel of a pipeline run does)."
        ),
        RunStatus.FAILED: "The pipeline update failed.",
    }.get(status, "")
    return RunSnapshot(
        status=status,
        message=message,
        run_id=run_id,
        life_cycle_state=state,
        run_page_url=update_url(workspace_url, run_id),
        start_time_ms=start_ms if start_ms and start_ms > 0 else None,
        warnings=warnings,
    )


def decode_updates_page(
    answer: Mapping[str, Any], pipeline_id: str, wanted: Collection[str], workspace_url: str
) -> dict[str, RunSnapshot]:
    """The updates among `wanted` (RunIds) on one page of `pipelines/{id}/updates`, decoded by
    `UPDATE_STATES`. Never raises: an entry that is not an update of ours is passed over."""
    updates = answer.get("updates")
    found: dict[str, RunSnapshot] = {}
    for update in updates if isinstance(updates, list) else []:
        update_id = update.get("update_id") if isinstance(update, Mapping) else None
        run_id = f"{pipeline_id}:{update_id}"
        if isinstance(update_id, str) and run_id in wanted:
            found[run_id] = decode_update({"update": update}, run_id, workspace_url)
    return found


def update_url(workspace_url: str, run_id: str) -> str:
    """The update's page in the Databricks UI."""
    pipeline_id, update_id = split_run_id(run_id)
    return f"{workspace_url.rstrip('/')}/#joblist/pipelines/{pipeline_id}/updates/{update_id}"


def error_message(events: Iterable[Mapping[str, Any]], update_id: str) -> str:
    """The ERROR events of one update, oldest first, each with its exceptions (class: message)."""
    lines: list[str] = []
    for event in reversed(list(events)):  # the API answers newest first
        origin = event.get("origin")
        if isinstance(origin, Mapping) and origin.get("update_id") not in (None, update_id):
            continue
        if event.get("level") not in (None, "ERROR"):
            continue
        text = event.get("message") if isinstance(event.get("message"), str) else ""
        error = event.get("error")
        exceptions = error.get("exceptions") if isinstance(error, Mapping) else None
        for exception in exceptions if isinstance(exceptions, list) else []:
            if not isinstance(exception, Mapping):
                continue
            class_name = exception.get("class_name")
            detail = exception.get("message")
            part = ": ".join(
                value for value in (class_name, detail) if isinstance(value, str) and value
            )
            if part and part not in text:
                text = f"{text} {part}".strip() if text else part
        if text and text not in lines:
            lines.append(text)
    return "\n".join(lines)


class DatabricksPipelineJobType(WorkspaceJobType):
    """Databricks Pipeline on one workspace (one client, one rate limiter)."""

    name = PIPELINE

    # ------------------------------------------------------------------ discovery
    async def discover(self) -> Sequence[DiscoveredJob]:
        """Every pipeline (`pipelines`, paged to the end). A workspace that answers 404 has no
        Pipelines API (none enabled, or not a Databricks workspace of that kind): no pipelines."""
        found: list[DiscoveredJob] = []
        try:
            return await self._discover(found)
        except DatabricksNotFoundError:
            log.info("%s: no Pipelines API (404): no pipelines to discover", self.workspace_url)
            return found

    async def _discover(self, found: list[DiscoveredJob]) -> list[DiscoveredJob]:
        async for entry in self.client.list_pipelines():
            pipeline_id = entry.get("pipeline_id")
            if not isinstance(pipeline_id, str) or _PIPELINE_ID.fullmatch(pipeline_id) is None:
                continue
            name = entry.get("name")
            creator = entry.get("creator_user_name")
            found.append(
                DiscoveredJob(
                    external_id=pipeline_id.lower(),
                    name=name if isinstance(name, str) and name else f"pipeline {pipeline_id}",
                    kind=PIPELINE,
                    task_count=0,
                    tags={},
                    creator=creator if isinstance(creator, str) else None,
                    created_time_ms=None,
                )
            )
        return found

    # ------------------------------------------------------------------ import and sync
    def validate_external_id(self, external_id: str) -> str:
        return check_pipeline_id(external_id)

    async def import_job(self, external_id: str) -> ImportedJob:
        """`pipelines/{id}`: `full_refresh` (Input, Bool, default false) and, reference-only,
        each `spec.configuration` key with its value as default."""
        pipeline_id = check_pipeline_id(external_id)
        try:
            answer = await self.client.get_pipeline(pipeline_id)
        except DatabricksNotFoundError as exc:
            raise _deleted(pipeline_id) from exc
        spec = answer.get("spec")
        spec = spec if isinstance(spec, Mapping) else {}
        name = answer.get("name") if isinstance(answer.get("name"), str) else spec.get("name")
        configuration = spec.get("configuration")
        parameters = [
            Parameter(
                name=FULL_REFRESH,
                data_type=DataType.BOOL,
                default="false",
                direction=Direction.INPUT,
                source=UPDATE_SOURCE,
            )
        ]
        for key, value in configuration.items() if isinstance(configuration, Mapping) else []:
            if isinstance(key, str) and key and key != FULL_REFRESH:
                parameters.append(
                    Parameter(
                        name=key,
                        data_type=infer_data_type(value),
                        default=default_text(value),
                        source=CONFIGURATION_SOURCE,
                        reference_only=True,
                    )
                )
        target = spec.get("target") or spec.get("schema")
        catalog = spec.get("catalog")
        where = ".".join(str(part) for part in (catalog, target) if isinstance(part, str) and part)
        return ImportedJob(
            external_id=pipeline_id,
            name=name if isinstance(name, str) and name else f"pipeline {pipeline_id}",
            kind=PIPELINE,
            task_count=0,
            description=f"Pipeline publishing to {where}" if where else "",
            tags={},
            parameters=tuple(parameters),
        )

    async def import_jobs(self, external_ids: Iterable[str]) -> list[ImportedJob | PolysyncError]:
        return await import_each(self.import_job, external_ids)

    async def sync_parameters(self, job: ImportedJob) -> tuple[ImportedJob, ParameterDiff]:
        return sync_job(job, await self.import_job(job.external_id))

    # ------------------------------------------------------------------ start
    def build_start_request(self, job: ImportedJob, overrides: Mapping[str, str]) -> StartRequest:
        """`{"full_refresh": bool}`: the override, else the stored value, else false. Overriding
        a configuration key is refused (reference-only)."""
        check_pipeline_id(job.external_id)
        resolved = resolve_run_parameters(job.parameters, overrides)
        full_refresh = resolved.get(FULL_REFRESH, "false").strip().lower() == "true"
        return StartRequest(
            parameters_sent={FULL_REFRESH: "true" if full_refresh else "false"},
            body={FULL_REFRESH: full_refresh},
        )

    async def start(
        self, job: ImportedJob, overrides: Mapping[str, str], *, idempotency_token: str
    ) -> StartedRun:
        """Start an update. The Pipelines API has no idempotency token: the request is sent
        once and never retried blindly (docs/decisions.md D11). While an update is active,
        Databricks refuses (409) and its message is shown."""
        request = self.build_start_request(job, overrides)
        pipeline_id = check_pipeline_id(job.external_id)
        try:
            answer = await self.client.start_pipeline_update(
                pipeline_id, full_refresh=bool(request.body[FULL_REFRESH])
            )
        except DatabricksNotFoundError as exc:
            raise _deleted(pipeline_id) from exc
        except DatabricksConflictError as exc:
            exc.retryable = False  # a conflict does not clear by starting again at once
            raise
        update_id = answer.get("update_id")
        if not isinstance(update_id, str) or _UPDATE_ID.fullmatch(update_id) is None:
            raise UsageError(
                f"pipelines/{pipeline_id}/updates answered no update id ({shown(update_id)})."
            )
        run_id = f"{pipeline_id}:{update_id}"
        return StartedRun(
            run_id=run_id,
            run_page_url=update_url(self.workspace_url, run_id),
            parameters_sent=request.parameters_sent,
            idempotency_token=idempotency_token,
        )

    # ------------------------------------------------------------------ poll, cancel, URL
    async def poll(self, run_id: str) -> RunSnapshot:
        """The update's state (D11); a FAILED one's message from the pipeline's ERROR events."""
        pipeline_id, update_id = split_run_id(run_id)
        answer = await self.client.get_pipeline_update(pipeline_id, update_id)
        snapshot = decode_update(answer, run_id, self.workspace_url)
        if snapshot.status is RunStatus.FAILED:
            try:
                events = await self.client.list_pipeline_events(
                    pipeline_id, filter="level='ERROR'", max_results=MAX_ERROR_EVENTS
                )
            except DatabricksError:
                return snapshot  # the status is known; the error text is a bonus
            detail = error_message(events, update_id)
            if detail:
                snapshot = RunSnapshot(
                    status=snapshot.status,
                    message=f"The pipeline update failed:\n{detail}",
                    run_id=snapshot.run_id,
                    life_cycle_state=snapshot.life_cycle_state,
                    state_message=detail,
                    run_page_url=snapshot.run_page_url,
                    start_time_ms=snapshot.start_time_ms,
                    warnings=snapshot.warnings,
                )
        return snapshot

    async def cancel(self, run_id: str) -> CancelOutcome:
        """`pipelines/{id}/stop`: it stops the pipeline's active update - ours while it is not
        terminal, since a pipeline runs one update at a time."""
        snapshot = await self.poll(run_id)
        if snapshot.is_terminal:
            return CancelOutcome(False, cancel_noop_message(run_id, snapshot.status), snapshot)
        pipeline_id, update_id = split_run_id(run_id)
        await self.client.stop_pipeline(pipeline_id)
        return CancelOutcome(
            True,
            f"Stop of pipeline {pipeline_id} requested: Databricks stops its active update "
            f"({update_id}) asynchronously.",
            snapshot,
        )

    # ------------------------------------------------------------------ sweep
    sweep_group = "databricks-pipeline-updates"
    """Pipeline updates are not in runs/list: they are swept per pipeline."""

    def sweep_pays(self, listed_last: int | None, ours: int) -> bool:
        """A sweep makes at most one call per run of ours (one per pipeline; a listing stops
        once it has cost as many pages as the pipeline's runs): it always pays."""
        return True

    async def sweep(self, run_ids: Collection[str]) -> Mapping[str, RunSnapshot]:
        """Our updates by pipeline: a pipeline with one of them gets its
        `pipelines/{id}/updates/{update_id}`, one with several a `pipelines/{id}/updates`
        listing (newest first, 100 a page) until it has shown them all or has cost as many
        pages as their number. A pipeline whose call fails, or an update not shown, is absent
        (the engine polls it); a FAILED update's error events are left to that poll."""
        by_pipeline: dict[str, list[str]] = {}
        for run_id in run_ids:
            try:
                pipeline_id, _ = split_run_id(run_id)
            except UsageError:
                continue  # its poll says what is wrong with it
            by_pipeline.setdefault(pipeline_id, []).append(run_id)
        found: dict[str, RunSnapshot] = {}
        for seen in await bounded_gather(
            partial(self._sweep_pipeline, pipeline_id, ours)
            for pipeline_id, ours in by_pipeline.items()
        ):
            found.update(seen)
        return found

    async def _sweep_pipeline(
        self, pipeline_id: str, ours: Sequence[str]
    ) -> dict[str, RunSnapshot]:
        try:
            if len(ours) == 1:
                _, update_id = split_run_id(ours[0])
                answer = await self.client.get_pipeline_update(pipeline_id, update_id)
                return {ours[0]: decode_update(answer, ours[0], self.workspace_url)}
            return await self._listed_updates(pipeline_id, ours)
        except DatabricksError as exc:
            log.info("sweep of pipeline %s failed, its updates are polled: %s", pipeline_id, exc)
            return {}

    async def _listed_updates(
        self, pipeline_id: str, ours: Sequence[str]
    ) -> dict[str, RunSnapshot]:
        wanted = set(ours)
        found: dict[str, RunSnapshot] = {}
        token: str | None = None
        for _ in range(len(ours)):
            answer = await self.client.list_pipeline_updates(pipeline_id, page_token=token)
            found.update(decode_updates_page(answer, pipeline_id, wanted, self.workspace_url))
            token = answer.get("next_page_token")
            if len(found) == len(wanted) or not isinstance(token, str) or not token:
                break
        return found

    def run_url(self, run_id: str, *, reported_url: str | None = None) -> str:
        trusted = trusted_run_url(reported_url, self.workspace_url)
        return trusted or update_url(self.workspace_url, run_id)


def _deleted(pipeline_id: str) -> JobDeletedError:
    return JobDeletedError(
        f"RESOURCE_DOES_NOT_EXIST: pipeline {pipeline_id} does not exist (it was deleted in "
        f"Databricks). Re-import it from the Platform editor."
    )
