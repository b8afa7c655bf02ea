"""Error bodies in the other shapes workspaces send (§7): Jetty HTML, text, numeric, empty."""

from __future__ import annotations

import html
import json

from starlette.responses import Response


def jetty_html_response(
    status: int, message: str, path: str, headers: dict[str, str] | None = None
) -> Response:
    """The Jetty error page a workspace front end answers with, e.g. 403 "Invalid access token."."""
    # Jetty 9's default error page, as quoted in reference §7 ("Error 403 Invalid access token." /
    # "HTTP ERROR 403 Problem accessing /api/2.0/dbfs/put. Reason: Invalid access token.").
    # sdk-py's _HtmlErrorDeserializer reads <pre> first, so the reason sits there unpadded.
    reason = html.escape(message)
    page = (
        "<html>\n<head>\n"
        '<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n'
        f"<title>Error {status} {reason}</title>\n"
        "</head>\n"
        f"<body><h2>HTTP ERROR {status}</h2>\n"
        f"<p>Problem accessing {html.escape(path)}. Reason:\n"
        f"<pre>{reason}</pre></p>\n"
        "</body>\n</html>\n"
    )
    return Response(page, status_code=status, media_type="text/html", headers=headers)


def text_error_response(
    status: int, error_code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """Plain text `ERROR_CODE: message` (sdk-py `_StringErrorDeserializer`)."""
    return Response(
        f"{error_code}: {message}", status_code=status, media_type="text/plain", headers=headers
    )


def numeric_error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """`{"error_code": 403, "message": ...}` + `X-Databricks-Reason-Phrase` (sdk-go issue #1061)."""
    body = json.dumps({"error_code": status, "message": message})
    # Header values must be latin-1; a reason phrase is for humans, so unencodable characters go.
    phrase = message.encode("latin-1", "replace").decode("latin-1").replace("\n", " ")
    all_headers = {"X-Databricks-Reason-Phrase": phrase, **(headers or {})}
    return Response(body, status_code=status, media_type="application/json", headers=all_headers)


def empty_error_response(status: int, headers: dict[str, str] | None = None) -> Response:
    """No body at all: the client has only the status line's reason phrase."""
    return Response(b"", status_code=status, headers=headers)
