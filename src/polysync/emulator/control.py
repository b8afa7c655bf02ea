"""The emulator's control plane (under /emulator/, not /api/): seed, reset, script, clock, inspect."""

from __future__ import annotations

import json
import random
from typing import Any, Protocol

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from polysync.clock import AdvanceableClock
from polysync.emulator.auth import AuthConfig
from polysync.emulator.engine import Workspace
from polysync.emulator.errors import INVALID_PARAMETER_VALUE, ApiError
from polysync.emulator.keyvault import KeyVaultError, Vault
from polysync.emulator.keyvault_api import KeyVaultService
from polysync.emulator.pipelines import PipelineEntry, PipelineScript
from polysync.emulator.spec import (
    JobEntry,
    NotebookEntry,
    TaskScript,
    WorkspaceSpec,
    parse_workspace,
)
from polysync.errors import WorkspaceFileError


class Controllable(Protocol):
    workspace: Workspace
    clock: AdvanceableClock
    keyvault: KeyVaultService
    auth: AuthConfig

    def reset(self, spec: WorkspaceSpec | None = None) -> None: ...


def _ok(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), media_type="application/json")


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "MALFORMED_REQUEST", f"Control request body is not JSON: {exc}"
        ) from exc


def _guard(handler: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            result: Response = await handler(request, request.app.state.emulator)
            return result
        except (ApiError, KeyVaultError) as exc:
            return exc.to_response()
        except (ValidationError, WorkspaceFileError, ValueError) as exc:
            return ApiError(400, INVALID_PARAMETER_VALUE, str(exc)).to_response()

    return endpoint


async def health(request: Request, emu: Controllable) -> Response:
    ws = emu.workspace
    ws.advance()
    return _ok(
        {"status": "ok", "jobs": len(ws.jobs), "active_runs": ws.active_runs, "now_ms": ws.now_ms}
    )


async def reset(request: Request, emu: Controllable) -> Response:
    data = await _json_body(request)
    emu.reset(parse_workspace(data, source="(reset body)") if data is not None else None)
    return _ok({"jobs": len(emu.workspace.jobs)})


def _entries(data: Any, key: str) -> list[Any]:
    """One entry, a list, or `{key: [...]}`: the shapes the seeding routes accept."""
    entries = data.get(key) if isinstance(data, dict) and key in data else data
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise ValueError(
            f'Send one entry, a list, or {{"{key}": [...]}} in the workspace-file format.'
        )
    return entries


async def seed_jobs(request: Request, emu: Controllable) -> Response:
    entries = _entries(await _json_body(request), "jobs")
    ids = []
    for raw in entries:
        entry = JobEntry.model_validate(raw)
        job = emu.workspace.create_job(
            entry.settings(), job_id=entry.job_id, creator=entry.creator_user_name
        )
        ids.append(job.job_id)
    return _ok({"job_ids": ids})


async def generate_jobs(request: Request, emu: Controllable) -> Response:
    data = await _json_body(request) or {}
    count = int(data.get("count", 100))
    multi = float(data.get("multi_task_fraction", 0.3))
    if not 0 < count <= 10_000 or not 0 <= multi <= 1:
        raise ValueError("count must be 1..10000 and multi_task_fraction 0..1")
    duration = data.get("task_duration_s")
    ids = [
        emu.workspace.create_job(settings).job_id
        for settings in synthetic_jobs(
            count,
            multi,
            seed=int(data.get("seed", 7)),
            task_duration_s=None if duration is None else float(duration),
        )
    ]
    return _ok({"job_ids": ids})


async def script_task(request: Request, emu: Controllable) -> Response:
    job_id = int(request.path_params["job_id"])
    task_key = request.path_params["task_key"]
    script = TaskScript.model_validate(await _json_body(request) or {})
    emu.workspace.script_task(job_id, task_key, script)
    return _ok({})


async def seed_notebooks(request: Request, emu: Controllable) -> Response:
    """Notebooks in the workspace-file format (path, language, source, emulator script)."""
    paths = []
    for raw in _entries(await _json_body(request), "notebooks"):
        entry = NotebookEntry.model_validate(raw)
        emu.workspace.objects.put_notebook(
            entry.path, entry.language, entry.source, script=entry.emulator
        )
        paths.append(entry.path)
    return _ok({"paths": paths})


async def script_notebook(request: Request, emu: Controllable) -> Response:
    """`{"path": "/Shared/x", "script": {TaskScript}}`: how runs of that notebook behave."""
    data = await _json_body(request) or {}
    if not isinstance(data, dict) or not isinstance(data.get("path"), str):
        raise ValueError('Send {"path": "<notebook path>", "script": {...}}.')
    obj = emu.workspace.objects.get(data["path"])
    if obj.object_type != "NOTEBOOK":
        raise ValueError(f"{obj.path} is a {obj.object_type.lower()}, not a notebook.")
    obj.script = TaskScript.model_validate(data.get("script") or {})
    return _ok({})


async def seed_pipelines(request: Request, emu: Controllable) -> Response:
    ids = []
    for raw in _entries(await _json_body(request), "pipelines"):
        entry = PipelineEntry.model_validate(raw)
        pipeline = emu.workspace.pipelines.create(
            entry.spec(), pipeline_id=entry.pipeline_id, script=entry.emulator
        )
        ids.append(pipeline.pipeline_id)
    return _ok({"pipeline_ids": ids})


async def script_pipeline(request: Request, emu: Controllable) -> Response:
    script = PipelineScript.model_validate(await _json_body(request) or {})
    emu.workspace.pipelines.script(request.path_params["pipeline_id"], script)
    return _ok({})


def _vault(emu: Controllable) -> Vault:
    if emu.keyvault.vault is None:
        raise ValueError("This workspace has no vault: add `vault:` to the workspace file.")
    return emu.keyvault.vault


async def vault_summary(request: Request, emu: Controllable) -> Response:
    """The vault's name, tenant and secrets with their versions; never a value."""
    vault = _vault(emu)
    return _ok(
        {
            "name": vault.name,
            "tenant_id": vault.tenant_id,
            "secrets": [
                {
                    "name": secret.name,
                    "versions": [v.version for v in secret.versions],
                    "deleted": secret.deleted_s is not None,
                }
                for secret in sorted(vault.secrets.values(), key=lambda s: s.name)
            ],
        }
    )


async def vault_set_secret(request: Request, emu: Controllable) -> Response:
    """Set or rotate a secret: `{"value", "content_type"?, "tags"?}` -> its new version."""
    data = await _json_body(request)
    if not isinstance(data, dict) or not isinstance(data.get("value"), str):
        raise ValueError('Send {"value": "<secret value>"} (and optionally content_type, tags).')
    tags = data.get("tags") or {}
    if not isinstance(tags, dict):
        raise ValueError("tags must be an object of strings.")
    _, version = _vault(emu).set(
        request.path_params["name"],
        data["value"],
        content_type=data.get("content_type"),
        tags={str(k): str(v) for k, v in tags.items()},
    )
    return _ok({"name": request.path_params["name"], "version": version.version})


async def edit_tokens(request: Request, emu: Controllable) -> Response:
    """Accept and revoke personal access tokens: `{"add": [...], "revoke": [...]}` (a token
    rotation: the workspace accepts the new token, then refuses the old one). Answers the
    number of tokens accepted now; never a token."""
    data = await _json_body(request)
    if not isinstance(data, dict) or not set(data) <= {"add", "revoke"}:
        raise ValueError('Send {"add": ["<token>", ...], "revoke": ["<token>", ...]}.')
    add, revoke = data.get("add") or [], data.get("revoke") or []
    if not all(isinstance(t, str) and t for t in [*add, *revoke]):
        raise ValueError("add and revoke are lists of non-empty token strings.")
    tokens = emu.auth.tokens
    for token in add:
        if token not in tokens:
            tokens.append(token)
    tokens[:] = [t for t in tokens if t not in set(revoke)]
    return _ok({"tokens": len(tokens)})


async def clock_get(request: Request, emu: Controllable) -> Response:
    return _ok({"now_ms": round(emu.clock.now() * 1000)})


async def clock_advance(request: Request, emu: Controllable) -> Response:
    data = await _json_body(request) or {}
    seconds = float(data.get("seconds", 0))
    emu.clock.advance(seconds)
    emu.workspace.advance()
    return _ok({"now_ms": emu.workspace.now_ms})


async def runs_summary(request: Request, emu: Controllable) -> Response:
    ws = emu.workspace
    ws.advance()
    job_filter = request.query_params.get("job_id")
    runs = [
        {
            "run_id": run.run_id,
            "job_id": None if run.is_submit_run else run.job_id,
            "run_type": run.run_type,
            "repairs": [r.repair_id for r in run.repairs],
            "life_cycle_state": run.st.life_cycle_state,
            "result_state": run.st.result_state,
            "idempotency_token": run.idempotency_token,
            "job_parameters": {p["name"]: p["value"] for p in run.job_parameters},
        }
        for run in ws.runs.values()
        if job_filter is None or str(run.job_id) == job_filter
    ]
    return _ok({"runs": runs, "active": ws.active_runs})


async def forget_run(request: Request, emu: Controllable) -> Response:
    """Delete a job run whatever its state (its history expired, or an admin purged it)."""
    emu.workspace.delete_run(int(request.path_params["run_id"]), active_too=True)
    return _ok({})


def control_routes() -> list[Route]:
    return [
        Route("/emulator/health", _guard(health), methods=["GET"]),
        Route("/emulator/reset", _guard(reset), methods=["POST"]),
        Route("/emulator/jobs", _guard(seed_jobs), methods=["POST"]),
        Route("/emulator/generate", _guard(generate_jobs), methods=["POST"]),
        Route(
            "/emulator/jobs/{job_id:int}/tasks/{task_key}/script",
            _guard(script_task),
            methods=["POST", "PUT"],
        ),
        Route("/emulator/notebooks", _guard(seed_notebooks), methods=["POST"]),
        Route("/emulator/notebooks/script", _guard(script_notebook), methods=["POST", "PUT"]),
        Route("/emulator/pipelines", _guard(seed_pipelines), methods=["POST"]),
        Route(
            "/emulator/pipelines/{pipeline_id}/script",
            _guard(script_pipeline),
            methods=["POST", "PUT"],
        ),
        Route("/emulator/vault", _guard(vault_summary), methods=["GET"]),
        Route("/emulator/vault/secrets/{name}", _guard(vault_set_secret), methods=["PUT", "POST"]),
        Route("/emulator/tokens", _guard(edit_tokens), methods=["POST"]),
        Route("/emulator/clock", _guard(clock_get), methods=["GET"]),
        Route("/emulator/clock/advance", _guard(clock_advance), methods=["POST"]),
        Route("/emulator/runs", _guard(runs_summary), methods=["GET"]),
        Route("/emulator/runs/{run_id:int}", _guard(forget_run), methods=["DELETE"]),
    ]


def synthetic_jobs(
    count: int,
    multi_task_fraction: float,
    *,
    seed: int = 7,
    task_duration_s: float | None = None,
) -> list[dict[str, Any]]:
    """Realistic-looking jobs for scale tests: a share of multi-task workflows, the rest single-task."""
    rng = random.Random(seed)
    jobs = []
    for index in range(count):
        multi = rng.random() < multi_task_fraction
        n_tasks = rng.randint(2, 8) if multi else 1
        tasks: list[dict[str, Any]] = []
        for t in range(n_tasks):
            task: dict[str, Any] = {
                "task_key": f"step_{t}",
                "notebook_task": {
                    "notebook_path": f"/Repos/data/pipeline_{index}/step_{t}",
                    "base_parameters": {"stage": str(t)},
                },
                "job_cluster_key": "main",
            }
            if task_duration_s is not None:
                task["emulator"] = {"duration_s": task_duration_s}
            if t:
                task["depends_on"] = [{"task_key": f"step_{t - 1}"}]
            tasks.append(task)
        jobs.append(
            {
                "name": f"{'workflow' if multi else 'job'}-{index:05d}",
                "tags": {"team": rng.choice(["finance", "marketing", "platform", "ml"])},
                "max_concurrent_runs": 5,
                "parameters": [
                    {"name": "run_date", "default": ""},
                    {"name": "batch_size", "default": str(rng.choice([100, 500, 1000]))},
                    {"name": "full_refresh", "default": rng.choice(["true", "false"])},
                ],
                "tasks": tasks,
            }
        )
    return jobs
