"""A hostile Databricks workspace (issue 9): every string it answers carries HTML, script and
terminal escape sequences, its links are `javascript:`, one job's answer never ends and another's
trickles in a byte at a time. Real enough for the client: Jobs API paths and shapes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse as _JSONResponse
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

# Each must stay inert: shown as text in the web UI, never executed; made visible in a terminal.
SCRIPT = "<script>window.__pwned='script'</script>"
IMG = "<img src=x onerror=\"window.__pwned='img'\">"
TERMINAL = "\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]8;;https://attacker.example\x1b\\link\x1b]8;;\x1b\\"
C1 = "\x9b31m\r"
JS_URL = "javascript:window.__pwned='href'"
# No encoder can carry these (a lone surrogate has no UTF-8 form, PostgreSQL text refuses NUL):
# they arrive as JSON escapes and must come out as U+FFFD everywhere.
UNENCODABLE = "\ud800\x00\udfff"
HOSTILE = f"{SCRIPT}{IMG}{TERMINAL}{C1}{UNENCODABLE}"

WORKFLOW_ID = 101  # a two-task workflow, hostile everywhere
ENDLESS_ID = 102  # jobs/get answers for ever (a body larger than any cap)
TRICKLE_ID = 103  # jobs/get answers a byte at a time, never finishing
RUN_ID = 5001
TRICKLE_INTERVAL_S = 0.2
MAX_STREAM_S = 120.0  # the fake itself stops at last, whoever is (not) reading


class JSONResponse(_JSONResponse):
    """JSON as a workspace may send it: every non-ASCII character escaped, so a lone surrogate
    travels as `\\ud800` (valid JSON text that decodes to no valid Unicode)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content).encode("ascii")


def _settings(job_id: int) -> dict[str, Any]:
    return {
        "name": f"wf-{job_id}{HOSTILE}",
        "description": f"first line{HOSTILE}\nsecond line{HOSTILE}",
        "tags": {f"team{SCRIPT}": f"data{TERMINAL}"},
        "parameters": [
            {"name": "env", "default": f"prod{HOSTILE}"},
            {"name": f"p{IMG}", "default": JS_URL},
        ],
        "tasks": [
            {
                "task_key": f"ingest{SCRIPT}",
                "notebook_task": {
                    "notebook_path": "/x",
                    "base_parameters": {"mode": f"full{TERMINAL}"},
                },
            },
            {"task_key": "clean", "notebook_task": {"notebook_path": "/y"}},
        ],
    }


def _job(job_id: int) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "creator_user_name": f"mallory{HOSTILE}",
        "created_time": 1_700_000_000_000,
        "settings": _settings(job_id),
    }


def _run() -> dict[str, Any]:
    state = {
        "life_cycle_state": "TERMINATED",
        "result_state": "FAILED",
        "state_message": f"It failed:{HOSTILE}\nsee below{TERMINAL}",
    }
    return {
        "job_id": WORKFLOW_ID,
        "run_id": RUN_ID,
        "run_page_url": JS_URL,
        "state": state,
        "start_time": 1_700_000_000_000,
        "end_time": 1_700_000_060_000,
        "tasks": [
            {
                "task_key": f"ingest{SCRIPT}",
                "run_id": RUN_ID + 1,
                "run_page_url": JS_URL,
                "state": {**state, "state_message": f"task failed{HOSTILE}"},
                "start_time": 1_700_000_000_000,
                "end_time": 1_700_000_030_000,
            },
            {
                "task_key": "clean",
                "run_id": RUN_ID + 2,
                "run_page_url": "https://attacker.example/run",
                "state": {"life_cycle_state": "SKIPPED", "result_state": "UPSTREAM_FAILED"},
            },
        ],
    }


async def _jobs_list(request: Request) -> Response:
    return JSONResponse(
        {"jobs": [_job(j) for j in (WORKFLOW_ID, ENDLESS_ID, TRICKLE_ID)], "has_more": False}
    )


async def _jobs_get(request: Request) -> Response:
    job_id = int(request.query_params.get("job_id", "0"))
    if job_id == ENDLESS_ID:
        return StreamingResponse(_endless(request), media_type="application/json")
    if job_id == TRICKLE_ID:
        return StreamingResponse(_trickle(request), media_type="application/json")
    if job_id != WORKFLOW_ID:
        return JSONResponse(
            {"error_code": "INVALID_PARAMETER_VALUE", "message": f"Job {job_id}{HOSTILE}"},
            status_code=400,
        )
    return JSONResponse(_job(job_id))


async def _endless(request: Request) -> AsyncIterator[bytes]:
    yield b'{"job_id": 102, "settings": {"name": "'
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + MAX_STREAM_S
    while loop.time() < stop_at and not await request.is_disconnected():
        yield SCRIPT.encode() * 4096  # ~160 KB a chunk: past any cap soon
        await asyncio.sleep(0)  # the other requests of this fake go on meanwhile
    yield b'"}}'


async def _trickle(request: Request) -> AsyncIterator[bytes]:
    text = json.dumps(_job(TRICKLE_ID)).encode()
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + MAX_STREAM_S
    for index in range(len(text)):
        if loop.time() >= stop_at or await request.is_disconnected():
            return
        yield text[index : index + 1]
        await asyncio.sleep(TRICKLE_INTERVAL_S)


async def _run_now(request: Request) -> Response:
    return JSONResponse({"run_id": RUN_ID, "number_in_job": RUN_ID, "run_page_url": JS_URL})


async def _runs_get(request: Request) -> Response:
    return JSONResponse(_run())


async def _runs_get_output(request: Request) -> Response:
    return JSONResponse(
        {
            "error": f"Exception{HOSTILE}",
            "error_trace": f"Traceback{HOSTILE}\n  line 1{TERMINAL}",
            "metadata": {"run_id": int(request.query_params.get("run_id", "0"))},
        }
    )


async def _empty(request: Request) -> Response:
    return JSONResponse({})


async def _runs_list(request: Request) -> Response:
    return JSONResponse({"runs": [], "has_more": False})


def hostile_workspace() -> Starlette:
    """The ASGI app: Jobs API 2.0-2.2 paths, any bearer token accepted."""
    routes = []
    for version in ("2.0", "2.1", "2.2"):
        prefix = f"/api/{version}/jobs"
        routes += [
            Route(f"{prefix}/list", _jobs_list),
            Route(f"{prefix}/get", _jobs_get),
            Route(f"{prefix}/run-now", _run_now, methods=["POST"]),
            Route(f"{prefix}/runs/get", _runs_get),
            Route(f"{prefix}/runs/get-output", _runs_get_output),
            Route(f"{prefix}/runs/list", _runs_list),
            Route(f"{prefix}/runs/cancel", _empty, methods=["POST"]),
        ]
    return Starlette(routes=routes)
