"""The MAG viewer: static pages whose vanilla JS draws a debate from the JSON API (no CDN, no build).

The pages hold no data, so they are served without auth; their scripts call `/v1/...` with the
token the user typed into the page (kept in sessionStorage), like any other API client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# The pages load only their own scripts and styles and talk only to this origin.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}
router = APIRouter(tags=["viewer"], include_in_schema=False)
DebateId = Annotated[str, PathParam(min_length=1, max_length=200)]


@router.get("/viewer/")
def list_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "list.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/viewer")
def list_redirect() -> RedirectResponse:
    return RedirectResponse("/viewer/", status_code=308)


@router.get("/viewer/debates/{debate_id}")
def debate_page(debate_id: DebateId) -> FileResponse:  # noqa: ARG001 - the page reads the id from its URL
    return FileResponse(STATIC_DIR / "debate.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/debates/{debate_id}/view")
def debate_view(debate_id: DebateId) -> RedirectResponse:
    return RedirectResponse(f"/viewer/debates/{quote(debate_id, safe='')}", status_code=307)
