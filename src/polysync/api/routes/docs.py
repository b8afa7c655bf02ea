"""/docs: Swagger UI served from the package (no CDN: it works offline and under the CSP)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
SWAGGER_UI_VERSION = "5.35.0"
"""swagger-ui-dist, vendored with its LICENSE and NOTICE in static/swagger-ui (see NOTICE)."""
_ASSETS = {
    "swagger-ui-bundle.js": (STATIC_DIR / "swagger-ui" / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (STATIC_DIR / "swagger-ui" / "swagger-ui.css", "text/css"),
    "favicon-32x32.png": (STATIC_DIR / "swagger-ui" / "favicon-32x32.png", "image/png"),
    "swagger-init.js": (STATIC_DIR / "swagger-init.js", "text/javascript"),
}
_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} - API docs</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-init.js"></script>
</body>
</html>
"""


def docs_page(title: str, openapi_url: str) -> HTMLResponse:
    """The Swagger UI page: no inline script, every asset from /docs/assets."""
    return HTMLResponse(_PAGE.format(title=_escape(title), openapi_url=_escape(openapi_url)))


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    if name not in _ASSETS:
        raise HTTPException(status_code=404, detail="No such file.")
    path, media_type = _ASSETS[name]
    return FileResponse(
        path, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
    )


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
