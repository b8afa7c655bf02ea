"""Workspace files: the jobs, tasks, parameters, scripted outcomes and settings an emulator starts with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from polysync.emulator.auth import AuthConfig
from polysync.emulator.keyvault import VaultEntry
from polysync.emulator.pipelines import PipelineEntry
from polysync.emulator.ratelimit import RateLimitConfig
from polysync.errors import WorkspaceFileError

Outcome = Literal["success", "failure", "timeout", "internal_error"]
OUTCOMES: tuple[str, ...] = ("success", "failure", "timeout", "internal_error")

DEMO_WORKSPACE = Path(__file__).parent / "workspaces" / "demo.yaml"


class TaskScript(BaseModel):
    """How one task behaves when it runs (the `emulator:` block of a task; never shown by the API)."""

    model_config = ConfigDict(extra="forbid")

    outcome: Outcome = "success"
    # Per-attempt outcomes for retries: attempt i uses attempts[min(i, len - 1)].
    attempts: list[Outcome] | None = None
    duration_s: float | None = Field(default=None, ge=0)
    pending_s: float | None = Field(default=None, ge=0)
    error: str | None = None
    error_trace: str | None = None
    output: str | None = None
    # for_each_task iterations: the outcome of the iteration whose input (JSON text, e.g. `"b"` or
    # `3`) is the key; other iterations follow `outcome`/`attempts`.
    iteration_outcomes: dict[str, Outcome] | None = None

    def outcome_for(self, attempt_number: int, iteration_input: str | None = None) -> Outcome:
        if iteration_input is not None and self.iteration_outcomes:
            scripted = self.iteration_outcomes.get(iteration_input)
            if scripted is None and iteration_input.startswith('"'):
                scripted = self.iteration_outcomes.get(iteration_input[1:-1])
            if scripted is not None and attempt_number == 0:
                return scripted
        if self.attempts:
            return self.attempts[min(attempt_number, len(self.attempts) - 1)]
        return self.outcome


Language = Literal["PYTHON", "SQL", "SCALA", "R"]


class NotebookEntry(BaseModel):
    """A notebook of the workspace tree (`workspace/list`, `workspace/export`): its source, and how
    a run of it behaves (`emulator:`, used by runs/submit and by job tasks with no script)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    language: Language
    source: str = ""
    emulator: TaskScript | None = None


class FileEntry(BaseModel):
    """A plain workspace file (object_type FILE)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    content: str = ""


class WorkspaceSettings(BaseModel):
    """Workspace-wide behaviour."""

    model_config = ConfigDict(extra="forbid")

    # Host used in run_page_url; None = the URL the request came in on.
    host: str | None = None
    workspace_id: int = 1234567890123456
    # Active job runs the workspace allows at once (reference §8: a workspace-wide limit).
    max_active_runs: int = Field(default=2000, ge=1)
    # Refuse job_parameters names the job does not define (400 INVALID_PARAMETER_VALUE).
    reject_unknown_job_parameters: bool = True
    default_task_duration_s: float = Field(default=20.0, ge=0)
    default_pending_s: float = Field(default=3.0, ge=0)
    terminating_s: float = Field(default=1.0, ge=0)
    cancel_s: float = Field(default=2.0, ge=0)
    creator_user_name: str = "someone@contoso.com"
    seed: int = 20261125


class JobEntry(BaseModel):
    """A job in a workspace file: JobSettings fields at the top level, plus optional ids."""

    model_config = ConfigDict(extra="allow")

    job_id: int | None = Field(default=None, gt=0)
    creator_user_name: str | None = None
    name: str

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a job needs a non-empty name")
        return value

    def settings(self) -> dict[str, Any]:
        """The JobSettings dict, with the tasks' `emulator` scripts still inside."""
        data = self.model_dump(exclude={"job_id", "creator_user_name"}, exclude_none=False)
        return {key: value for key, value in data.items() if value is not None}


class WorkspaceSpec(BaseModel):
    """A whole workspace file."""

    model_config = ConfigDict(extra="forbid")

    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    jobs: list[JobEntry] = Field(default_factory=list)
    notebooks: list[NotebookEntry] = Field(default_factory=list)
    files: list[FileEntry] = Field(default_factory=list)
    pipelines: list[PipelineEntry] = Field(default_factory=list)
    vault: VaultEntry | None = None


def parse_workspace(data: object, *, source: str = "<workspace>") -> WorkspaceSpec:
    try:
        return WorkspaceSpec.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise WorkspaceFileError(
            f"Workspace file {source} is not valid: {problems}. "
            "Fix the file (see docs/emulator.md for the format) and start again."
        ) from exc


def load_workspace(path: str | Path) -> WorkspaceSpec:
    """Read a JSON or YAML workspace file; the special name `demo` is the shipped demo workspace."""
    file = DEMO_WORKSPACE if str(path) == "demo" else Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkspaceFileError(
            f"Cannot read workspace file {str(file)!r}: {exc.strerror}. "
            "Give the path of a JSON or YAML workspace file, or `demo`."
        ) from exc
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise WorkspaceFileError(
            f"Workspace file {str(file)!r} is not valid {'JSON' if file.suffix == '.json' else 'YAML'}: "
            f"{exc}. Fix the syntax and start again."
        ) from exc
    return parse_workspace(data, source=repr(str(file)))
