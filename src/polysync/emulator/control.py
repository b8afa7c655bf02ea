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
from polysync.emulator.engine import Workspace
from polysync.emulator.errors import INVALID_PARAMETER_VALUE, ApiError
from polysync.emulator.spec import JobEntry, TaskScript, WorkspaceSpec, parse_workspace
from polysync.errors import WorkspaceFileError


class Controllable(Protocol):
    workspace: Workspace
    clock: AdvanceableClock

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
        except ApiError as exc:
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


async def seed_jobs(request: Request, emu: Controllable) -> Response:
    data = await _json_body(request)
    entries = data.get("jobs") if isinstance(data, dict) and "jobs" in data else data
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise ValueError(
            'Send a job, a list of jobs, or {"jobs": [...]} in the workspace-file format.'
        )
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
            "job_id": run.job_id,
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
