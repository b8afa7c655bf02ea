"""Light wire models of Jobs API answers: the fields Polysync reads, the rest kept as extras.

Enum-like fields (life_cycle_state, result_state, status codes...) are plain strings: Databricks
adds values over time (reference §4), and an unknown value must reach the status decoder, not crash
parsing. A list that the answer did not include is None, not [] (jobs/list without expand_tasks).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

MAX_INT64 = 2**63 - 1
DatabricksId = Annotated[int, Field(strict=True, ge=0, le=MAX_INT64)]
"""A job, run or task run id: an int64 JSON number (never a string, a float or a bool)."""


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    def raw(self) -> dict[str, Any]:
        """The answer as Databricks sent it (pages merged): what the domain decoders take."""
        return self.model_dump(mode="json", exclude_unset=True)


class TaskDependency(WireModel):
    task_key: str | None = None
    outcome: str | None = None


class JobTask(WireModel):
    """One task of a job's settings; task-type fields other than notebook_task stay in extras."""

    task_key: str | None = None
    description: str | None = None
    depends_on: list[TaskDependency] = Field(default_factory=list)
    run_if: str | None = None
    disabled: bool | None = None
    notebook_task: dict[str, Any] | None = None

    @property
    def task_type(self) -> str | None:
        """The `*_task` field this task carries (e.g. "notebook_task"), or None."""
        for name, value in self:
            if name.endswith("_task") and value is not None:
                return name
        for name, value in (self.model_extra or {}).items():
            if name.endswith("_task") and value is not None:
                return name
        return None


class JobParameterDefinition(WireModel):
    """`settings.parameters[]`: `default` is a string in the real API; other scalars kept (D2)."""

    name: str
    default: str | bool | int | float | None = None


class JobSettings(WireModel):
    name: str | None = None
    description: str | None = None
    tags: dict[str, str] | None = None
    format: str | None = None
    max_concurrent_runs: int | None = None
    timeout_seconds: int | None = None
    tasks: list[JobTask] | None = None
    parameters: list[JobParameterDefinition] | None = None
    # The specification's shape (`default_value`), read alongside `parameters` (D1).
    job_parameters: list[dict[str, Any]] | None = None
    job_clusters: list[dict[str, Any]] | None = None
    environments: list[dict[str, Any]] | None = None


class DatabricksJob(WireModel):
    """A job from jobs/get (all pages merged) or one entry of jobs/list."""

    job_id: DatabricksId
    creator_user_name: str | None = None
    run_as_user_name: str | None = None
    created_time: int | None = None
    settings: JobSettings = Field(default_factory=JobSettings)
    # In a 2.2 jobs/list entry: more tasks/job_clusters exist than shown; jobs/get has them all.
    has_more: bool | None = None


class RunState(WireModel):
    life_cycle_state: str | None = None
    result_state: str | None = None
    state_message: str | None = None
    user_cancelled_or_timedout: bool | None = None
    queue_reason: str | None = None


class QueueDetails(WireModel):
    code: str | None = None
    message: str | None = None


class TerminationDetails(WireModel):
    code: str | None = None
    type: str | None = None
    message: str | None = None


class RunStatus(WireModel):
    state: str | None = None
    queue_details: QueueDetails | None = None
    termination_details: TerminationDetails | None = None


class RunParameter(WireModel):
    name: str | None = None
    default: str | bool | int | float | None = None
    value: str | bool | int | float | None = None


class RunTask(WireModel):
    task_key: str | None = None
    run_id: DatabricksId | None = None
    attempt_number: int | None = None
    state: RunState | None = None
    status: RunStatus | None = None
    run_page_url: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    depends_on: list[TaskDependency] = Field(default_factory=list)
    resolved_values: dict[str, Any] | None = None


class DatabricksRun(WireModel):
    """A run from runs/get (all pages merged) or one entry of runs/list."""

    run_id: DatabricksId
    job_id: DatabricksId | None = None
    number_in_job: int | None = None
    original_attempt_run_id: int | None = None
    attempt_number: int | None = None
    run_name: str | None = None
    run_type: str | None = None
    trigger: str | None = None
    creator_user_name: str | None = None
    state: RunState | None = None
    status: RunStatus | None = None
    start_time: int | None = None
    end_time: int | None = None
    run_duration: int | None = None
    queue_duration: int | None = None
    run_page_url: str | None = None
    tasks: list[RunTask] | None = None
    job_parameters: list[RunParameter] | None = None
    overriding_parameters: dict[str, Any] | None = None
    has_more: bool | None = None


class RunOutput(WireModel):
    """runs/get-output of one task run: where a failed task's error text lives (reference §4)."""

    error: str | None = None
    error_trace: str | None = None
    logs: str | None = None
    logs_truncated: bool | None = None
    notebook_output: dict[str, Any] | None = None
    metadata: DatabricksRun | None = None
