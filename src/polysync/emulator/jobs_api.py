"""The Jobs API routes under /api/2.0, /api/2.1 and /api/2.2, with their version differences."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from polysync.emulator.engine import Workspace, _int_field, _malformed
from polysync.emulator.errors import (
    ENDPOINT_NOT_FOUND,
    INVALID_PARAMETER_VALUE,
    MALFORMED_REQUEST,
    ApiError,
    error_response,
)
from polysync.emulator.records import (
    ACTIVE_LIFE_CYCLE,
    JobRun,
    TaskAttempt,
    job_json,
    job_run_json,
    task_json,
)

VERSIONS = ("2.0", "2.1", "2.2")
PAGE_ARRAY = 100  # 2.2 caps arrays inside a job or run at 100 per response (reference §2, §4)
MAX_OFFSET = 1000  # jobs/list offset cap (reference §1)


class HasWorkspace(Protocol):
    workspace: Workspace
    host: str | None


Handler = Callable[[Request, Workspace, str], Awaitable[dict[str, Any]]]


def _json(body: dict[str, Any], workspace_id: int) -> Response:
    # Real workspaces name themselves in this header (the `o=` of run page URLs).
    return Response(
        json.dumps(body, separators=(",", ":")),
        200,
        media_type="application/json",
        headers={"X-Databricks-Org-Id": str(workspace_id)},
    )


def _endpoint(method: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        version = request.path_params["version"]
        if version not in VERSIONS or request.method != method:
            return not_found(request)
        emulator: HasWorkspace = request.app.state.emulator
        try:
            workspace = emulator.workspace
            return _json(
                await handler(request, workspace, version), workspace.settings.workspace_id
            )
        except ApiError as exc:
            return exc.to_response()

    return endpoint


def not_found(request: Request) -> Response:
    return error_response(404, ENDPOINT_NOT_FOUND, f"Bad Target: {request.url.path}")


def host_of(request: Request) -> str:
    emulator: HasWorkspace = request.app.state.emulator
    return emulator.host or f"{request.url.scheme}://{request.url.netloc}"


# ---------------------------------------------------------------------- parsing
async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, MALFORMED_REQUEST, f"Could not parse request object: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(
            400, MALFORMED_REQUEST, "Could not parse request object: Expected an object at the root"
        )
    return data


def _q_int(request: Request, name: str, *, required: bool = False) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if required:
            raise ApiError(400, INVALID_PARAMETER_VALUE, f"Missing required field: {name}")
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"Invalid value {raw!r} for parameter {name}: expected an integer.",
        ) from exc


def _q_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ApiError(
        400,
        INVALID_PARAMETER_VALUE,
        f"Invalid value {raw!r} for parameter {name}: expected true or false.",
    )


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded.encode()))["o"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise ApiError(400, INVALID_PARAMETER_VALUE, f"Invalid page token: {token!r}")


def _page_offset(request: Request) -> int:
    token = request.query_params.get("page_token")
    if token:
        return _decode_token(token)
    offset = _q_int(request, "offset") or 0
    if offset < 0:
        raise ApiError(400, INVALID_PARAMETER_VALUE, f"Invalid offset {offset}: it must be >= 0.")
    return offset


def _limit(request: Request, *, default: int, maximum: int, zero_means_max: bool = False) -> int:
    limit = _q_int(request, "limit")
    if limit is None:
        return default
    if limit == 0 and zero_means_max:
        return maximum
    if limit < 1:
        raise ApiError(
            400, INVALID_PARAMETER_VALUE, f"Invalid limit {limit} - it has to be at least 1."
        )
    if limit > maximum:
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"Invalid limit {limit} - it has to be no more than {maximum}.",
        )
    return limit


def _paging(body: dict[str, Any], version: str, offset: int, limit: int, total: int) -> None:
    more = offset + limit < total
    if version in ("2.0", "2.1"):
        body["has_more"] = more
    if version != "2.0":
        # 2.2 removed the root has_more: clients must loop on next_page_token (reference §1).
        if more:
            body["next_page_token"] = _encode_token(offset + limit)
        if offset > 0:
            body["prev_page_token"] = _encode_token(max(0, offset - limit))


# ---------------------------------------------------------------------- jobs
async def list_jobs(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    limit = _limit(request, default=20, maximum=100)
    offset = _page_offset(request)
    if offset > MAX_OFFSET and not request.query_params.get("page_token"):
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"The supplied offset {offset} has exceeded the value of {MAX_OFFSET} allowed for this "
            "parameter.Please use the page_token parameter to paginate",
        )
    expand = _q_bool(request, "expand_tasks")
    name = request.query_params.get("name")
    jobs = ws.sorted_jobs()
    if name:
        wanted = name.casefold()
        jobs = [j for j in jobs if str(j.settings.get("name", "")).casefold() == wanted]
    page = jobs[offset : offset + limit]
    rendered = []
    for job in page:
        entry = job_json(job, include_tasks=expand, version=version)
        tasks = entry["settings"].get("tasks")
        if expand and tasks is not None and len(tasks) > PAGE_ARRAY:
            if version == "2.2":
                entry["settings"]["tasks"] = tasks[:PAGE_ARRAY]
                entry["has_more"] = True
            elif version == "2.1":
                # Reported: 2.1 drops `tasks` entirely for jobs over 100 tasks (reference §1).
                del entry["settings"]["tasks"]
        rendered.append(entry)
    body: dict[str, Any] = {}
    if rendered:
        body["jobs"] = rendered
    _paging(body, version, offset, limit, len(jobs))
    return body


async def get_job(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    job_id = _q_int(request, "job_id", required=True)
    assert job_id is not None
    job = ws.get_job(job_id)
    body = job_json(job, include_tasks=True, version=version)
    if version == "2.2":
        token = request.query_params.get("page_token")
        offset = _decode_token(token) if token else 0
        tasks = body["settings"]["tasks"]
        body["settings"]["tasks"] = tasks[offset : offset + PAGE_ARRAY]
        if offset > 0:
            # Later pages blank the arrays that were complete on page one (reference §2).
            for key in ("job_clusters", "environments", "parameters"):
                if key in body["settings"]:
                    body["settings"][key] = []
        if offset + PAGE_ARRAY < len(tasks):
            body["has_more"] = True
            body["next_page_token"] = _encode_token(offset + PAGE_ARRAY)
    return body


async def create_job(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    body = await _body(request)
    job = ws.create_job(body, default_queue=version == "2.2")
    return {"job_id": job.job_id}


async def reset_job(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    body = await _body(request)
    job_id = _int_field(body, "job_id", required=True)
    assert job_id is not None
    settings = body.get("new_settings")
    if not isinstance(settings, dict):
        raise _malformed("new_settings", "object", settings)
    ws.reset_job(job_id, settings)
    return {}


async def update_job(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    body = await _body(request)
    job_id = _int_field(body, "job_id", required=True)
    assert job_id is not None
    settings = body.get("new_settings") or {}
    remove = body.get("fields_to_remove") or []
    if not isinstance(settings, dict):
        raise _malformed("new_settings", "object", settings)
    if not isinstance(remove, list):
        raise _malformed("fields_to_remove", "array", remove)
    ws.update_job(job_id, settings, [str(f) for f in remove])
    return {}


async def delete_job(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    body = await _body(request)
    job_id = _int_field(body, "job_id", required=True)
    assert job_id is not None
    ws.delete_job(job_id)
    return {}


# ---------------------------------------------------------------------- runs
async def run_now(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    run = ws.run_now(await _body(request))
    # Only these two fields: no run_page_url in the real response (reference §3).
    return {"run_id": run.run_id, "number_in_job": run.run_id}


def _task_run_as_run(attempt: TaskAttempt, host: str, workspace_id: int) -> dict[str, Any]:
    body = task_json(attempt, host, workspace_id)
    body["job_id"] = attempt.parent.job_id
    body["number_in_job"] = attempt.run_id
    body["run_name"] = attempt.task_key
    body["run_type"] = "JOB_RUN"
    return body


async def get_run(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    run_id = _q_int(request, "run_id", required=True)
    assert run_id is not None
    found = ws.get_run(run_id)
    host = host_of(request)
    if isinstance(found, TaskAttempt):
        return _task_run_as_run(found, host, ws.settings.workspace_id)
    body = job_run_json(found, host, ws.settings.workspace_id)
    if request.query_params.get("include_history") == "true":
        body["repair_history"] = [
            {
                "type": "ORIGINAL",
                "id": found.run_id,
                "start_time": found.start_time_ms,
                "end_time": found.end_time_ms,
                "state": body["state"],
                "status": body["status"],
                "task_run_ids": [a.run_id for a in found.attempts],
            }
        ]
    if version == "2.2":
        token = request.query_params.get("page_token")
        offset = _decode_token(token) if token else 0
        more = False
        for key in ("tasks", "job_parameters"):
            items = body.get(key)
            if items is None:
                continue
            body[key] = items[offset : offset + PAGE_ARRAY]
            more = more or offset + PAGE_ARRAY < len(items)
        if offset > 0:
            body.pop("job_clusters", None)
        if more:
            body["has_more"] = True
            body["next_page_token"] = _encode_token(offset + PAGE_ARRAY)
    return body


async def get_run_output(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    run_id = _q_int(request, "run_id", required=True)
    assert run_id is not None
    attempt = ws.output(run_id)
    body: dict[str, Any] = {
        "metadata": _task_run_as_run(attempt, host_of(request), ws.settings.workspace_id)
    }
    if attempt.output_error:
        body["error"] = attempt.output_error
        if attempt.output_error_trace:
            body["error_trace"] = attempt.output_error_trace
    if attempt.output_result is not None and "notebook_task" in attempt.task:
        body["notebook_output"] = {"result": attempt.output_result, "truncated": False}
    return body


async def list_runs(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    active_only = _q_bool(request, "active_only")
    completed_only = _q_bool(request, "completed_only")
    if active_only and completed_only:
        raise ApiError(
            400, INVALID_PARAMETER_VALUE, "active_only and completed_only cannot both be true."
        )
    # 2.0 allowed up to 1000; 2.1+ caps at 25 and treats 0 as the maximum (reference §6).
    maximum = 1000 if version == "2.0" else 25
    limit = _limit(request, default=20, maximum=maximum, zero_means_max=True)
    offset = _page_offset(request)
    job_id = _q_int(request, "job_id")
    run_type = request.query_params.get("run_type")
    start_from = _q_int(request, "start_time_from")
    start_to = _q_int(request, "start_time_to")
    expand = _q_bool(request, "expand_tasks")
    ws.advance()
    runs: list[JobRun] = []
    for run in ws.runs.values():
        if job_id is not None and run.job_id != job_id:
            continue
        if active_only and run.st.life_cycle_state not in ACTIVE_LIFE_CYCLE:
            continue
        if completed_only and not run.terminal:
            continue
        if run_type and run_type != "JOB_RUN":
            continue
        if start_from is not None and run.start_time_ms < start_from:
            continue
        if start_to is not None and run.start_time_ms > start_to:
            continue
        runs.append(run)
    runs.sort(key=lambda r: (r.start_time_ms, r.run_id), reverse=True)
    host = host_of(request)
    page = runs[offset : offset + limit]
    body: dict[str, Any] = {}
    if page:
        rendered = []
        for run in page:
            entry = job_run_json(run, host, ws.settings.workspace_id, include_tasks=expand)
            if expand and version == "2.2" and len(entry.get("tasks", [])) > PAGE_ARRAY:
                entry["tasks"] = entry["tasks"][:PAGE_ARRAY]
                entry["has_more"] = True
            rendered.append(entry)
        body["runs"] = rendered
    _paging(body, version, offset, limit, len(runs))
    return body


async def cancel_run(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    body = await _body(request)
    run_id = _int_field(body, "run_id", required=True)
    assert run_id is not None
    ws.cancel_run(run_id)
    return {}


async def cancel_all(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    body = await _body(request)
    job_id = _int_field(body, "job_id")
    all_queued = body.get("all_queued_runs", False)
    if not isinstance(all_queued, bool):
        raise _malformed("all_queued_runs", "boolean", all_queued)
    ws.cancel_all(job_id, all_queued)
    return {}


async def delete_run(request: Request, ws: Workspace, version: str) -> dict[str, Any]:
    body = await _body(request)
    run_id = _int_field(body, "run_id", required=True)
    assert run_id is not None
    ws.delete_run(run_id)
    return {}


ENDPOINTS: list[tuple[str, str, Handler]] = [
    ("GET", "jobs/list", list_jobs),
    ("GET", "jobs/get", get_job),
    ("POST", "jobs/create", create_job),
    ("POST", "jobs/reset", reset_job),
    ("POST", "jobs/update", update_job),
    ("POST", "jobs/delete", delete_job),
    ("POST", "jobs/run-now", run_now),
    ("GET", "jobs/runs/get", get_run),
    ("GET", "jobs/runs/get-output", get_run_output),
    ("GET", "jobs/runs/list", list_runs),
    ("POST", "jobs/runs/cancel", cancel_run),
    ("POST", "jobs/runs/cancel-all", cancel_all),
    ("POST", "jobs/runs/delete", delete_run),
]


def jobs_routes() -> list[Route]:
    return [
        Route(
            f"/api/{{version}}/{path}",
            _endpoint(method, handler),
            methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
        )
        for method, path, handler in ENDPOINTS
    ]
