"""The time-slider page of `rewind serve`: ``GET /`` and its two static files.

The page (``state/web/``: index.html, app.js, style.css) is plain HTML and JavaScript with
no build step and no third-party code; it asks the JSON API the same questions any client
does (``/views``, ``/views/{view}/{key}?as_of=``, ``/views/{view}?index=``, ``.../history``).

Only the files named in :data:`ASSETS` are ever served, looked up by exact name: a request
for anything else (``/static/../http_api.py``, ``/static/%2e%2e%2Fhttp_api.py``, a file
that exists next to them) is the API's one-line 404, whatever the path holds. The files are
package data (pyproject.toml), installed next to this module and read from there, so the page
works from a non-editable install too; each is read once, on its first request.
"""

from __future__ import annotations

import functools
from pathlib import Path as FilePath

from fastapi import APIRouter, Path
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from state.http_bodies import ErrorBody

__all__ = ["ASSETS", "PAGE", "web_router"]

#: The page itself, served at ``/``.
PAGE = "index.html"
#: The files served under ``/static/``, with their media types.
ASSETS: dict[str, str] = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}

# The page loads nothing but its own two files and the API of the same origin; no inline script or style.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    # Small files that change with the installed version: revalidate rather than serve a stale page.
    "Cache-Control": "no-cache",
}


#: Where the page's files are: package data beside this module (pyproject.toml ships state/web/*).
_WEB_DIR = FilePath(__file__).resolve().parent / "web"


@functools.cache
def _read(name: str) -> bytes:
    """The bytes of ``state/web/<name>``; ``name`` is always one of PAGE or ASSETS (never a caller's string)."""
    return (_WEB_DIR / name).read_bytes()


def web_router() -> APIRouter:
    """The routes of the page: ``GET /`` (index.html) and ``GET /static/{name}`` (app.js, style.css)."""
    router = APIRouter(tags=["page"])

    @router.get(
        "/", summary="The time-slider page (HTML): pick a view and a key or an index, and drag through its history",
        responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "The page"}},
        response_class=Response,
    )
    async def page() -> Response:
        return Response(_read(PAGE), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @router.get(
        "/static/{name}", summary="The page's script and style sheet (app.js, style.css)",
        responses={
            200: {"content": {"text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}}},
                  "description": "The file"},
            404: {"model": ErrorBody, "description": "No such file: only app.js and style.css are served"},
        },
        response_class=Response,
    )
    async def static(name: str = Path(description="app.js or style.css", json_schema_extra={"enum": list(ASSETS)})) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            # Looked up by exact name, so no path (dots, slashes, encodings) can reach any other file.
            raise HTTPException(404, detail=f"no static file {name[:80]!r}; the page's files are {', '.join(ASSETS)}")
        return Response(_read(name), media_type=media_type, headers=_PAGE_HEADERS)

    return router
