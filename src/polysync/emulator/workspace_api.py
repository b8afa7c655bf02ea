"""The Workspace API (`/api/2.0/workspace/...`): list, get-status, export, import, mkdirs, delete.

Parameters and shapes follow sdk-py `service/workspace.py` (`WorkspaceAPI`) and its mixin
`mixins/workspace.py` (`upload` sends a multipart form, `download` asks `direct_download=true`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from polysync.emulator.engine import Workspace
from polysync.emulator.errors import INVALID_PARAMETER_VALUE, ApiError
from polysync.emulator.routing import Params, json_body, json_response, request_params
from polysync.emulator.workspace_tree import FILE_TYPE

EXPORT_FORMATS = ("SOURCE", "AUTO", "RAW")


class HasWorkspace(Protocol):
    workspace: Workspace


Handler = Callable[[Request, Params, Workspace], Awaitable[dict[str, Any] | Response]]


def workspace_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An `/api/2.0` endpoint of the workspace: advance it, parse parameters (query or GET
    body), answer the handler's dict as JSON (or its Response as is), or its ApiError."""

    async def endpoint(request: Request) -> Response:
        emulator: HasWorkspace = request.app.state.emulator
        workspace = emulator.workspace
        try:
            workspace.advance()
            result = await handler(request, await request_params(request), workspace)
        except ApiError as exc:
            return exc.to_response()
        if isinstance(result, Response):
            return result
        return json_response(result, workspace.settings.workspace_id)

    return endpoint


async def list_objects(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    """`GET workspace/list?path=` -> `{"objects": [ObjectInfo]}` (no `objects` when empty)."""
    children = ws.objects.children(params.get("path"))
    after = params.get_int("notebooks_modified_after")
    if after is not None:
        children = [o for o in children if o.object_type != "NOTEBOOK" or o.modified_at_ms > after]
    return {"objects": [o.info() for o in children]} if children else {}


async def get_status(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    """`GET workspace/get-status?path=` -> `ObjectInfo`; 404 `RESOURCE_DOES_NOT_EXIST`."""
    return ws.objects.get(params.get("path")).info()


async def export(request: Request, params: Params, ws: Workspace) -> dict[str, Any] | Response:
    """`GET workspace/export?path=&format=SOURCE` -> `{"content": base64, "file_type": "py"}`;
    `direct_download=true` answers the bytes themselves."""
    obj = ws.objects.get(params.get("path"))
    fmt = (params.get("format") or "SOURCE").upper()
    if fmt not in EXPORT_FORMATS:
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"Export format {fmt} is not supported by this emulator; use SOURCE, AUTO or RAW.",
        )
    if obj.object_type == "DIRECTORY":
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"Path ({obj.path}) is a directory: a directory exports only in DBC format.",
        )
    data = obj.source()
    if params.get_bool("direct_download"):
        return Response(data, media_type="application/octet-stream")
    body: dict[str, Any] = {"content": base64.b64encode(data).decode("ascii")}
    if obj.language is not None:
        body["file_type"] = FILE_TYPE[obj.language]
    return body


async def import_object(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    """`POST workspace/import` (JSON with base64 `content`, or the SDK's multipart upload)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        upload = form.get("content")
        raw = await upload.read() if isinstance(upload, UploadFile) else str(upload or "").encode()
        overwrite = fields.get("overwrite", "false").lower() == "true"
        path: object = fields.get("path")
        fmt, language = fields.get("format"), fields.get("language")
    else:
        body = await json_body(request)
        path, fmt, language = body.get("path"), body.get("format"), body.get("language")
        overwrite = body.get("overwrite", False) in (True, "true")
        encoded = body.get("content", "")
        if not isinstance(encoded, str):
            raise ApiError(400, INVALID_PARAMETER_VALUE, "content must be a base64 string.")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(
                400, INVALID_PARAMETER_VALUE, "The content is not valid base64."
            ) from exc
    ws.objects.import_object(
        path,
        raw,
        fmt=str(fmt or "SOURCE").upper(),
        language=str(language).upper() if language else None,
        overwrite=overwrite,
    )
    return {}


async def mkdirs(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    ws.objects.mkdirs((await json_body(request)).get("path"))
    return {}


async def delete(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    body = await json_body(request)
    ws.objects.delete(body.get("path"), recursive=body.get("recursive") in (True, "true"))
    return {}


def workspace_routes() -> list[Route]:
    """The routes under `/api/2.0/workspace/` (the only version the API has)."""
    return [
        Route("/api/2.0/workspace/list", workspace_endpoint(list_objects), methods=["GET"]),
        Route("/api/2.0/workspace/get-status", workspace_endpoint(get_status), methods=["GET"]),
        Route("/api/2.0/workspace/export", workspace_endpoint(export), methods=["GET"]),
        Route("/api/2.0/workspace/import", workspace_endpoint(import_object), methods=["POST"]),
        Route("/api/2.0/workspace/mkdirs", workspace_endpoint(mkdirs), methods=["POST"]),
        Route("/api/2.0/workspace/delete", workspace_endpoint(delete), methods=["POST"]),
    ]
