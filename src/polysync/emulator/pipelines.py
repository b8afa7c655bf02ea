"""Lakeflow Declarative Pipelines (DLT): pipelines, their updates and event logs, event-driven on the
workspace clock.

Shapes follow sdk-py `service/pipelines.py` (`GetPipelineResponse`, `PipelineStateInfo`,
`UpdateInfo`, `UpdateStateInfo`, `PipelineEvent`, `ErrorDetail`, `SerializedException`,
`UpdateInfoState`, `PipelineState`); not-found messages follow Databricks' own fake server
(cli `libs/testserver/pipelines.go`: "The specified pipeline X was not found.").

An update walks CREATED -> WAITING_FOR_RESOURCES -> INITIALIZING -> (RESETTING when
`full_refresh`) -> SETTING_UP_TABLES -> RUNNING -> COMPLETED or FAILED; `stop` moves the active
update through STOPPING to CANCELED. Each step is an `update_progress` event; a failure also logs
a `flow_progress` ERROR event with `error.exceptions[].message`.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from polysync.emulator.errors import INVALID_PARAMETER_VALUE, ApiError

RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_CONFLICT = "RESOURCE_CONFLICT"
ACTIVE_UPDATE_STATES = frozenset(
    {
        "QUEUED",
        "CREATED",
        "WAITING_FOR_RESOURCES",
        "INITIALIZING",
        "RESETTING",
        "SETTING_UP_TABLES",
        "RUNNING",
        "STOPPING",
    }
)
LATEST_UPDATES_SHOWN = 5  # entries of `latest_updates` (UNCONFIRMED how many a workspace shows)


class PipelineScript(BaseModel):
    """How a pipeline's updates behave (its `emulator:` block; never shown by the API). Times in
    seconds of emulated time."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["success", "failure"] = "success"
    # Per-update outcomes: update i uses updates[min(i, len - 1)].
    updates: list[Literal["success", "failure"]] | None = None
    waiting_s: float = Field(default=10.0, ge=0)  # WAITING_FOR_RESOURCES (cluster start)
    initializing_s: float = Field(default=5.0, ge=0)
    resetting_s: float = Field(default=3.0, ge=0)  # only for full_refresh updates
    setting_up_s: float = Field(default=3.0, ge=0)
    duration_s: float = Field(default=30.0, ge=0)  # RUNNING
    stopping_s: float = Field(default=2.0, ge=0)
    error: str = "An error occurred while updating the pipeline."
    error_class: str = "org.apache.spark.sql.AnalysisException"
    failing_flow: str = "main"

    def outcome_for(self, index: int) -> str:
        if self.updates:
            return self.updates[min(index, len(self.updates) - 1)]
        return self.outcome


class PipelineEntry(BaseModel):
    """A pipeline in a workspace file: PipelineSpec fields (`name`, `configuration`, `libraries`,
    `catalog`, `target`, `continuous`, `development`, ...) plus an optional id and script."""

    model_config = ConfigDict(extra="allow")

    pipeline_id: str | None = None
    name: str
    emulator: PipelineScript | None = None

    def spec(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"pipeline_id", "emulator"}, exclude_none=True)
        return {key: value for key, value in data.items()}


class Scheduler(Protocol):
    """The workspace's event loop on emulated time (`eventloop.EventLoop`)."""

    @property
    def now_ms(self) -> int: ...

    def schedule_at(self, when_ms: int, action: Callable[[], None]) -> None: ...


@dataclass(slots=True)
class PipelineEvent:
    event_id: str
    timestamp_ms: int
    sequence: int
    level: str
    event_type: str
    message: str
    update_id: str | None
    details: dict[str, Any]
    error: dict[str, Any] | None = None


@dataclass(slots=True)
class Update:
    update_id: str
    index: int
    creation_time_ms: int
    full_refresh: bool
    validate_only: bool
    cause: str
    config: dict[str, Any]
    cluster_id: str
    state: str = "CREATED"
    outcome: str = "success"

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_UPDATE_STATES


@dataclass(slots=True)
class Pipeline:
    pipeline_id: str
    spec: dict[str, Any]
    creator_user_name: str
    last_modified_ms: int
    script: PipelineScript = field(default_factory=PipelineScript)
    updates: list[Update] = field(default_factory=list)  # oldest first
    events: list[PipelineEvent] = field(default_factory=list)  # oldest first
    stopping: bool = False

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    @property
    def active_update(self) -> Update | None:
        return next((u for u in reversed(self.updates) if u.active), None)

    def state(self) -> str:
        """`PipelineState`: IDLE without an active update; RUNNING while one runs."""
        update = self.active_update
        if update is None:
            return "IDLE"
        if update.state == "STOPPING":
            return "STOPPING"
        if update.state == "RESETTING":
            return "RESETTING"
        return "RUNNING" if update.state == "RUNNING" else "STARTING"

    def latest_updates(self) -> list[dict[str, Any]]:
        """`UpdateStateInfo`s, newest first (`creation_time` is an ISO-8601 string there)."""
        return [
            {
                "update_id": u.update_id,
                "state": u.state,
                "creation_time": iso_time(u.creation_time_ms),
            }
            for u in reversed(self.updates[-LATEST_UPDATES_SHOWN:])
        ]

    def state_info(self) -> dict[str, Any]:
        """`PipelineStateInfo`, an entry of `GET /api/2.0/pipelines`."""
        body: dict[str, Any] = {
            "pipeline_id": self.pipeline_id,
            "name": self.name,
            "state": self.state(),
            "creator_user_name": self.creator_user_name,
            "run_as_user_name": self.creator_user_name,
            "latest_updates": self.latest_updates(),
        }
        if self.active_update is not None:
            body["cluster_id"] = self.active_update.cluster_id
        if not body["latest_updates"]:
            del body["latest_updates"]
        return body

    def get_response(self) -> dict[str, Any]:
        """`GetPipelineResponse` of `GET /api/2.0/pipelines/{id}`."""
        body = self.state_info()
        body["spec"] = {"id": self.pipeline_id, **copy.deepcopy(self.spec)}
        body["last_modified"] = self.last_modified_ms
        body["effective_publishing_mode"] = "DEFAULT_PUBLISHING_MODE"
        failed = self.updates and self.updates[-1].state == "FAILED"
        body["health"] = "UNHEALTHY" if failed else "HEALTHY"
        if failed:
            body["cause"] = self.script.error
        return body


def iso_time(ms: int) -> str:
    """Epoch milliseconds as the event log writes them: `2021-07-22T06:37:33.083Z`."""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def update_info(pipeline: Pipeline, update: Update) -> dict[str, Any]:
    """`UpdateInfo` (the `update` of `GET .../updates/{update_id}`, entries of `.../updates`)."""
    return {
        "pipeline_id": pipeline.pipeline_id,
        "update_id": update.update_id,
        "config": {"id": pipeline.pipeline_id, **copy.deepcopy(update.config)},
        "cause": update.cause,
        "state": update.state,
        "creation_time": update.creation_time_ms,
        "full_refresh": update.full_refresh,
        "validate_only": update.validate_only,
        "cluster_id": update.cluster_id,
    }


class Pipelines:
    """Every pipeline of the workspace, with the lifecycle of their updates."""

    def __init__(self, scheduler: Scheduler, *, seed: int, creator: str, org_id: int) -> None:
        self._scheduler = scheduler
        self._rng = random.Random(seed ^ 0xD17)
        self._creator = creator
        self._org_id = org_id
        self.by_id: dict[str, Pipeline] = {}
        self._sequence = 0

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    @property
    def _now_ms(self) -> int:
        return self._scheduler.now_ms

    # ------------------------------------------------------------------ pipelines
    def create(
        self,
        spec: dict[str, Any],
        *,
        pipeline_id: str | None = None,
        script: PipelineScript | None = None,
    ) -> Pipeline:
        """`POST /api/2.0/pipelines`; a `name` is required (400 otherwise)."""
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, INVALID_PARAMETER_VALUE, "Missing required field: name")
        if pipeline_id is not None and pipeline_id in self.by_id:
            raise ApiError(400, INVALID_PARAMETER_VALUE, f"Pipeline {pipeline_id} already exists.")
        clean = {k: v for k, v in copy.deepcopy(spec).items() if k not in ("id", "emulator")}
        pipeline = Pipeline(
            pipeline_id=pipeline_id or self._uuid(),
            spec=clean,
            creator_user_name=self._creator,
            last_modified_ms=self._now_ms,
            script=script or PipelineScript(),
        )
        self.by_id[pipeline.pipeline_id] = pipeline
        return pipeline

    def get(self, pipeline_id: str) -> Pipeline:
        pipeline = self.by_id.get(pipeline_id)
        if pipeline is None:
            raise ApiError(
                404,
                RESOURCE_DOES_NOT_EXIST,
                f"The specified pipeline {pipeline_id} was not found.",
            )
        return pipeline

    def edit(self, pipeline_id: str, spec: dict[str, Any]) -> None:
        """`PUT /api/2.0/pipelines/{id}`: replace the spec (its `id`, if sent, must match)."""
        pipeline = self.get(pipeline_id)
        sent_id = spec.get("id", spec.get("pipeline_id"))
        if sent_id is not None and sent_id != pipeline_id:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"The pipeline id in the body ({sent_id}) does not match the path ({pipeline_id}).",
            )
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, INVALID_PARAMETER_VALUE, "Missing required field: name")
        pipeline.spec = {
            k: v
            for k, v in copy.deepcopy(spec).items()
            if k not in ("id", "pipeline_id", "emulator")
        }
        pipeline.last_modified_ms = self._now_ms

    def delete(self, pipeline_id: str) -> None:
        """`DELETE /api/2.0/pipelines/{id}`: an active update is cancelled with it."""
        pipeline = self.get(pipeline_id)
        update = pipeline.active_update
        if update is not None:
            update.state = "CANCELED"
        del self.by_id[pipeline_id]

    # ------------------------------------------------------------------ updates
    def start_update(self, pipeline_id: str, body: dict[str, Any]) -> Update:
        """`POST .../updates` -> the new update. While an update is active: 409
        `RESOURCE_CONFLICT` (status and code as clients see them; exact text UNCONFIRMED)."""
        pipeline = self.get(pipeline_id)
        active = pipeline.active_update
        if active is not None:
            raise ApiError(
                409,
                RESOURCE_CONFLICT,
                f"An active update '{active.update_id}' already exists for pipeline "
                f"'{pipeline_id}'.",
            )
        full_refresh = body.get("full_refresh", False)
        validate_only = body.get("validate_only", False)
        for name, value in (("full_refresh", full_refresh), ("validate_only", validate_only)):
            if not isinstance(value, bool):
                raise ApiError(
                    400,
                    "MALFORMED_REQUEST",
                    f"Could not parse request object: Expected boolean for field '{name}'",
                )
        cause = body.get("cause", "API_CALL")
        update = Update(
            update_id=self._uuid(),
            index=len(pipeline.updates),
            creation_time_ms=self._now_ms,
            full_refresh=full_refresh,
            validate_only=validate_only,
            cause=str(cause),
            config=copy.deepcopy(pipeline.spec),
            cluster_id=f"1125-{self._rng.randrange(10**6):06d}-dlt{len(pipeline.updates):03d}",
            outcome=pipeline.script.outcome_for(len(pipeline.updates)),
        )
        pipeline.updates.append(update)
        how = "API call" if update.cause == "API_CALL" else update.cause.lower().replace("_", " ")
        self._event(
            pipeline,
            update,
            "create_update",
            f"Update {update.update_id[:6]} started by {how}.",
            {"create_update": {"cause": update.cause, "full_refresh": full_refresh}},
        )
        self._progress(pipeline, update, "CREATED")
        self._walk(pipeline, update)
        return update

    def _walk(self, pipeline: Pipeline, update: Update) -> None:
        script = pipeline.script
        steps: list[tuple[str, float]] = [
            ("WAITING_FOR_RESOURCES", 0.0),
            ("INITIALIZING", script.waiting_s),
            *([("RESETTING", script.initializing_s)] if update.full_refresh else []),
            (
                "SETTING_UP_TABLES",
                script.resetting_s if update.full_refresh else script.initializing_s,
            ),
            ("RUNNING", script.setting_up_s),
        ]
        at_ms = self._now_ms
        for state, after_s in steps:
            at_ms += round(after_s * 1000)
            self._scheduler.schedule_at(at_ms, self._step(pipeline, update, state))
        at_ms += round(script.duration_s * 1000)
        self._scheduler.schedule_at(at_ms, lambda: self._finish(pipeline, update))

    def _step(self, pipeline: Pipeline, update: Update, state: str) -> Callable[[], None]:
        def go() -> None:
            if update.active and update.state != "STOPPING":
                self._progress(pipeline, update, state)

        return go

    def _finish(self, pipeline: Pipeline, update: Update) -> None:
        if not update.active or update.state == "STOPPING":
            return
        script = pipeline.script
        if update.outcome == "success":
            self._progress(pipeline, update, "COMPLETED")
            return
        exception = {"class_name": script.error_class, "message": script.error}
        self._event(
            pipeline,
            update,
            "flow_progress",
            f"Flow '{script.failing_flow}' has FAILED.",
            {"flow_progress": {"status": "FAILED"}},
            level="ERROR",
            error={"exceptions": [exception], "fatal": False},
        )
        self._progress(
            pipeline,
            update,
            "FAILED",
            level="ERROR",
            error={"exceptions": [exception], "fatal": True},
        )

    def stop(self, pipeline_id: str) -> None:
        """`POST .../stop`: the active update goes STOPPING, then CANCELED; idle is a no-op."""
        pipeline = self.get(pipeline_id)
        update = pipeline.active_update
        if update is None or update.state == "STOPPING":
            return
        self._progress(pipeline, update, "STOPPING")
        when = self._now_ms + round(pipeline.script.stopping_s * 1000)

        def canceled() -> None:
            if update.state == "STOPPING":
                self._progress(pipeline, update, "CANCELED")

        self._scheduler.schedule_at(when, canceled)

    def get_update(self, pipeline_id: str, update_id: str) -> tuple[Pipeline, Update]:
        pipeline = self.get(pipeline_id)
        for update in pipeline.updates:
            if update.update_id == update_id:
                return pipeline, update
        raise ApiError(
            404, RESOURCE_DOES_NOT_EXIST, f"The specified update {update_id} was not found."
        )

    def script(self, pipeline_id: str, script: PipelineScript) -> None:
        self.get(pipeline_id).script = script

    # ------------------------------------------------------------------ events
    def _progress(
        self,
        pipeline: Pipeline,
        update: Update,
        state: str,
        *,
        level: str = "INFO",
        error: dict[str, Any] | None = None,
    ) -> None:
        update.state = state
        self._event(
            pipeline,
            update,
            "update_progress",
            f"Update {update.update_id[:6]} is {state}.",
            {"update_progress": {"state": state}},
            level=level,
            error=error,
        )

    def _event(
        self,
        pipeline: Pipeline,
        update: Update,
        event_type: str,
        message: str,
        details: dict[str, Any],
        *,
        level: str = "INFO",
        error: dict[str, Any] | None = None,
    ) -> None:
        self._sequence += 1
        pipeline.events.append(
            PipelineEvent(
                event_id=self._uuid(),
                timestamp_ms=self._now_ms,
                sequence=self._sequence,
                level=level,
                event_type=event_type,
                message=message,
                update_id=update.update_id,
                details=details,
                error=error,
            )
        )

    def event_json(self, pipeline: Pipeline, event: PipelineEvent) -> dict[str, Any]:
        """A `PipelineEvent` of `GET .../events`."""
        body: dict[str, Any] = {
            "id": event.event_id,
            "sequence": {"control_plane_seq_no": event.sequence},
            "origin": {
                "cloud": "Azure",
                "org_id": self._org_id,
                "pipeline_id": pipeline.pipeline_id,
                "pipeline_name": pipeline.name,
                "update_id": event.update_id,
            },
            "timestamp": iso_time(event.timestamp_ms),
            "message": event.message,
            "level": event.level,
            "maturity_level": "STABLE",
            "event_type": event.event_type,
            "details": event.details,
        }
        if event.error is not None:
            body["error"] = event.error
        return body
