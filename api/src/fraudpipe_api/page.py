"""The analyst page at `/`: server-rendered HTML (Jinja2), no build step.

The alert table is rendered on the server and refreshed every few seconds from `/ui/alerts`
(the same rows, rendered the same way). Feedback buttons call the JSON API with the analyst's
key (kept in the browser's localStorage, sent as a bearer token, never as a cookie, so a forged
cross-site form cannot write). When reads need a key, the page takes the key from a
same-site cookie the page itself sets, for GETs only.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from fraudpipe_api import queries
from fraudpipe_api.auth import Scope
from fraudpipe_api.errors import ApiError, dependency
from fraudpipe_api.security import authenticate
from fraudpipe_api.state import AppState

KEY_COOKIE = "fraudpipe_key"
STYLE = (Path(__file__).parent / "templates" / "style.css").read_text()
PAGE_SIZE = 100

router = APIRouter(include_in_schema=False)
templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def _can_read(request: Request, state: AppState) -> bool:
    if state.settings.api_open_reads:
        return True
    token = request.cookies.get(KEY_COOKIE)
    if not token:
        return False
    key = state.throttle.find(request.scope, token)
    return key is not None and key.allows(Scope.READ)


async def _rows(
    state: AppState, user_id: str | None, decision: str | None, min_score: float | None
) -> list[dict[str, Any]]:
    where = queries.AlertFilter(user_id=user_id or None, decision=decision, min_score=min_score)
    async with dependency("postgres", state.settings.retry_after_s):
        pool = await state.clients.pool()
        items, _ = await queries.list_alerts(pool, where, PAGE_SIZE, None)
    for item in items:
        item["reasons_text"] = "; ".join(r.get("detail", "") for r in item["reasons"])
    return items


def _render(name: str, **context: Any) -> str:
    return templates.get_template(name).render(**context)


def _filters(
    user_id: str | None, decision: str | None, min_score: str | None
) -> tuple[str | None, str | None, float | None, str]:
    """The form sends empty fields as empty strings: they mean "any". A bad value is shown on
    the page rather than answered with JSON."""
    problem = ""
    user = user_id.strip() if user_id and user_id.strip() else None
    if user is not None and (len(user) > 128 or "\x00" in user):
        user, problem = None, "user: at most 128 characters"
    verdict = decision if decision in ("FLAG", "BLOCK") else None
    if decision and verdict is None:
        problem = "decision: FLAG or BLOCK"
    score = None
    if min_score and min_score.strip():
        try:
            score = float(min_score)
        except ValueError:
            score = None
        if score is None or not 0 <= score <= 1:
            score, problem = None, "min score: a number from 0 to 1"
    return user, verdict, score, problem


RawFilter = Annotated[str | None, Query(max_length=256)]


@router.get("/", response_class=HTMLResponse)
async def index(
    request: Request,
    user_id: RawFilter = None,
    decision: RawFilter = None,
    min_score: RawFilter = None,
) -> HTMLResponse:
    state: AppState = request.app.state.fraudpipe
    if request.headers.get("authorization"):
        authenticate(request, state, Scope.READ)
    elif not _can_read(request, state):
        return HTMLResponse(_render("login.html"), status_code=401)
    user, verdict, score, problem = _filters(user_id, decision, min_score)
    rows = await _rows(state, user, verdict, score)
    return HTMLResponse(
        _render(
            "index.html",
            rows=rows,
            user_id=user or "",
            decision=verdict or "",
            min_score="" if score is None else score,
            problem=problem,
            rendered_at=dt.datetime.now(dt.UTC).strftime("%H:%M:%S UTC"),
        )
    )


@router.get("/ui/style.css")
async def stylesheet() -> Response:
    return Response(STYLE, media_type="text/css", headers={"Cache-Control": "max-age=300"})


@router.get("/ui/alerts", response_class=HTMLResponse)
async def rows_fragment(
    request: Request,
    user_id: RawFilter = None,
    decision: RawFilter = None,
    min_score: RawFilter = None,
) -> HTMLResponse:
    state: AppState = request.app.state.fraudpipe
    if not _can_read(request, state):
        raise ApiError(401, "unauthorized", "sign in on the page first")
    user, verdict, score, _ = _filters(user_id, decision, min_score)
    rows = await _rows(state, user, verdict, score)
    return HTMLResponse(_render("rows.html", rows=rows))
