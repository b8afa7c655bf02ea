"""The Jobs API routes under /api/2.0, /api/2.1 and /api/2.2, with their version differences."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from polysync.emulator.engine import Workspace
from polysync.emulator.errors import INVALID_PARAMETER_VALUE, ApiError
from polysync.emulator.fields import int_field, malformed
from polysync.emulator.records import (
    ACTIVE_LIFE_CYCLE,
    JobRun,
    TaskAttempt,
    job_json,
    job_run_json,
    repair_history_json,
    task_json,
)
from polysync.emulator.routing import (
    Params,
    decode_page_token,
    encode_page_token,
    host_of,
    json_body,
    json_response,
    not_found,
    page_limit,
    request_params,
)
from polysync.emulator.stats import note_detail

VERSIONS = ("2.0", "2.1", "2.2")
PAGE_ARRAY = 100  # 2.2 caps arrays inside a job or run at 100 per response (reference §2, §4)
MAX_OFFSET = 1000  # jobs/list offset cap (reference §1)


class HasWorkspace(Protocol):
    workspace: Workspace
    host: str | None


Handler = Callable[[Request, Params, Workspace, str], Awaitable[dict[str, Any]]]


def _endpoint(method: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        version = request.path_params["version"]
        if version not in VERSIONS or request.method != method:
            return not_found(request)
        emulator: HasWorkspace = request.app.state.emulator
        try:
            workspace = emulator.workspace
            params = await request_params(request)
            return json_response(
                await handler(request, params, workspace, version),
                workspace.settings.workspace_id,
            )
        except ApiError as exc:
            return exc.to_response()

    return endpoint


def _page_offset(params: Params) -> int:
    token = params.get("page_token")
    if token:
        return decode_page_token(token)
    offset = params.get_int("offset") or 0
    if offset < 0:
        raise ApiError(400, INVALID_PARAMETER_VALUE, f"Invalid offset {offset}: it must be >= 0.")
    return offset


def _paging(body: dict[str, Any], version: str, offset: int, limit: int, total: int) -> None:
    more = offset + limit < total
    if version in ("2.0", "2.1"):
        body["has_more"] = more
    if version != "2.0":
        # 2.2 removed the root has_more: clients must loop on next_page_token (reference §1).
        if more:
            body["next_page_token"] = encode_page_token(offset + limit)
        if offset > 0:
            body["prev_page_token"] = encode_page_token(max(0, offset - limit))


# ---------------------------------------------------------------------- jobs
async def list_jobs(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    limit = page_limit(params, "limit", default=20, maximum=100)
    offset = _page_offset(params)
    if offset > MAX_OFFSET and not params.get("page_token"):
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"The supplied offset {offset} has exceeded the value of {MAX_OFFSET} allowed for this "
            "parameter.Please use the page_token parameter to paginate",
        )
    expand = params.get_bool("expand_tasks")
    name = params.get("name")
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


async def get_job(request: Request, params: Params, ws: Workspace, version: str) -> dict[str, Any]:
    job = ws.get_job(params.required_int("job_id"))
    body = job_json(job, include_tasks=True, version=version)
    if version == "2.2":
        token = params.get("page_token")
        offset = decode_page_token(token) if token else 0
        tasks = body["settings"]["tasks"]
        body["settings"]["tasks"] = tasks[offset : offset + PAGE_ARRAY]
        if offset > 0:
            # Later pages blank the arrays that were complete on page one (reference §2).
            for key in ("job_clusters", "environments", "parameters"):
                if key in body["settings"]:
                    body["settings"][key] = []
        if offset + PAGE_ARRAY < len(tasks):
            body["has_more"] = True
            body["next_page_token"] = encode_page_token(offset + PAGE_ARRAY)
    return body


async def create_job(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    body = await json_body(request)
    job = ws.create_job(body, default_queue=version == "2.2")
    return {"job_id": job.job_id}


async def reset_job(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    body = await json_body(request)
    job_id = int_field(body, "job_id", required=True)
    assert job_id is not None
    settings = body.get("new_settings")
    if not isinstance(settings, dict):
        raise malformed("new_settings", "object", settings)
    ws.reset_job(job_id, settings)
    return {}


async def update_job(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    body = await json_body(request)
    job_id = int_field(body, "job_id", required=True)
    assert job_id is not None
    settings = body.get("new_settings") or {}
    remove = body.get("fields_to_remove") or []
    if not isinstance(settings, dict):
        raise malformed("new_settings", "object", settings)
    if not isinstance(remove, list):
        raise malformed("fields_to_remove", "array", remove)
    ws.update_job(job_id, settings, [str(f) for f in remove])
    return {}


async def delete_job(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    body = await json_body(request)
    job_id = int_field(body, "job_id", required=True)
    assert job_id is not None
    ws.delete_job(job_id)
    return {}


# ---------------------------------------------------------------------- runs
async def run_now(request: Request, params: Params, ws: Workspace, version: str) -> dict[str, Any]:
    run = ws.run_now(await json_body(request))
    # Only these two fields: no run_page_url in the real response (reference §3).
    return {"run_id": run.run_id, "number_in_job": run.run_id}


async def submit_run(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    """`jobs/runs/submit` -> `{"run_id"}` (sdk-py `SubmitRunResponse`)."""
    run = ws.submit(await json_body(request))
    return {"run_id": run.run_id}


async def repair_run(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    """`jobs/runs/repair` -> `{"repair_id"}` (sdk-py `RepairRunResponse`); the request log
    notes the task keys it reruns ("rerun: a, b")."""
    body = await json_body(request)
    repair_id = ws.repair_run(body)
    run = ws.get_run(int(body["run_id"]))
    if isinstance(run, JobRun) and run.repairs:
        keys = {a.run_id: a.task.get("task_key") for a in run.attempts}
        rerun = [str(keys.get(i)) for i in run.repairs[-1].task_run_ids]
        note_detail(request.scope, "rerun: " + ", ".join(rerun))
    return {"repair_id": repair_id}


def _task_run_as_run(attempt: TaskAttempt, host: str, workspace_id: int) -> dict[str, Any]:
    body = task_json(attempt, host, workspace_id)
    if not attempt.parent.is_submit_run:
        body["job_id"] = attempt.parent.job_id
        body["number_in_job"] = attempt.run_id
    body["run_name"] = attempt.task_key
    body["run_type"] = attempt.parent.run_type
    return body


def _page_arrays(body: dict[str, Any], keys: tuple[str, ...], params: Params) -> None:
    """2.2 paging of arrays inside a run: 100 per page, root `next_page_token` (reference §4)."""
    token = params.get("page_token")
    offset = decode_page_token(token) if token else 0
    more = False
    for key in keys:
        items = body.get(key)
        if items is None:
            continue
        body[key] = items[offset : offset + PAGE_ARRAY]
        more = more or offset + PAGE_ARRAY < len(items)
    if offset > 0:
        body.pop("job_clusters", None)
    if more:
        body["has_more"] = True
        body["next_page_token"] = encode_page_token(offset + PAGE_ARRAY)


async def get_run(request: Request, params: Params, ws: Workspace, version: str) -> dict[str, Any]:
    """`jobs/runs/get`: a job run, or a task run by its own id; a for_each task run carries its
    `iterations` (sdk-py `Run.iterations`); `include_history=true` adds `repair_history`."""
    found = ws.get_run(params.required_int("run_id"))
    host = host_of(request)
    if isinstance(found, TaskAttempt):
        body = _task_run_as_run(found, host, ws.settings.workspace_id)
        if found.iterations:
            body["iterations"] = [
                task_json(it, host, ws.settings.workspace_id) for it in found.iterations
            ]
            if version == "2.2":
                _page_arrays(body, ("iterations",), params)
        return body
    body = job_run_json(found, host, ws.settings.workspace_id)
    if params.get_bool("include_history"):
        body["repair_history"] = repair_history_json(found)
    if version == "2.2":
        _page_arrays(body, ("tasks", "job_parameters", "repair_history"), params)
    return body


async def get_run_output(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    attempt = ws.output(params.required_int("run_id"))
    body: dict[str, Any] = {
        "metadata": _task_run_as_run(attempt, host_of(request), ws.settings.workspace_id)
    }
    if attempt.output_error:
        body["error"] = attempt.output_error
        if attempt.output_error_trace:
            body["error_trace"] = attempt.output_error_trace
    if attempt.output_result is not None and "notebook_task" in attempt.task:
        body["notebook_output"] = {"result": attempt.output_result, "truncated": False}
    if attempt.child_run_id is not None:
        # sdk-py `RunOutput.run_job_output` / `RunJobOutput.run_id`.
        body["run_job_output"] = {"run_id": attempt.child_run_id}
    return body


async def list_runs(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    active_only = params.get_bool("active_only")
    completed_only = params.get_bool("completed_only")
    if active_only and completed_only:
        raise ApiError(
            400, INVALID_PARAMETER_VALUE, "active_only and completed_only cannot both be true."
        )
    # 2.0 allowed up to 1000; 2.1+ caps at 25 and treats 0 as the maximum (reference §6).
    maximum = 1000 if version == "2.0" else 25
    limit = page_limit(params, "limit", default=20, maximum=maximum, zero_means_max=True)
    offset = _page_offset(params)
    job_id = params.get_int("job_id")
    run_type = params.get("run_type")
    start_from = params.get_int("start_time_from")
    start_to = params.get_int("start_time_to")
    expand = params.get_bool("expand_tasks")
    ws.advance()
    runs: list[JobRun] = []
    for run in ws.runs.values():
        if job_id is not None and (run.job_id != job_id or run.is_submit_run):
            continue
        if active_only and run.st.life_cycle_state not in ACTIVE_LIFE_CYCLE:
            continue
        if completed_only and not run.terminal:
            continue
        if run_type and run_type != run.run_type:
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


async def cancel_run(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    body = await json_body(request)
    run_id = int_field(body, "run_id", required=True)
    assert run_id is not None
    ws.cancel_run(run_id)
    return {}


async def cancel_all(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    body = await json_body(request)
    job_id = int_field(body, "job_id")
    all_queued = body.get("all_queued_runs", False)
    if not isinstance(all_queued, bool):
        raise malformed("all_queued_runs", "boolean", all_queued)
    ws.cancel_all(job_id, all_queued)
    return {}


async def delete_run(
    request: Request, params: Params, ws: Workspace, version: str
) -> dict[str, Any]:
    body = await json_body(request)
    run_id = int_field(body, "run_id", required=True)
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
    ("POST", "jobs/runs/submit", submit_run),
    ("POST", "jobs/runs/repair", repair_run),
    ("GET", "jobs/runs/get", get_run),
    ("GET", "jobs/runs/get-output", get_run_output),
    ("GET", "jobs/runs/list", list_runs),
    ("POST", "jobs/runs/cancel", cancel_run),
    ("POST", "jobs/runs/cancel-all", cancel_all),
    ("POST", "jobs/runs/delete", delete_run),
]


def jobs_routes() -> list[Route]:
    """One route per endpoint and version; a wrong method answers 404 as workspaces do."""
    return [
        Route(
            f"/api/{{version}}/{path}",
            _endpoint(method, handler),
            methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
        )
        for method, path, handler in ENDPOINTS
    ]
