"""The analyst page at `/`: server-rendered HTML (Jinja2), no build step.

The alert table is rendered on the server and refreshed every few seconds from `/ui/alerts`
(the same rows, rendered the same way). Feedback buttons call the JSON API with the analyst's
write key (typed into the page, kept in the tab's sessionStorage, sent as a bearer token,
never as a cookie, so a forged cross-site form cannot write). When reads need a key, sign-in
posts it to `/ui/session`, which checks it and keeps its SHA-256 in an HttpOnly,
SameSite=Strict cookie that no script can read and only `/` and `/ui/alerts` accept. Every
response of the page carries a Content-Security-Policy that runs only the page's own script
files (no inline script, nothing from elsewhere), so injected markup cannot run code.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field

from fraudpipe_api import queries
from fraudpipe_api.auth import Scope
from fraudpipe_api.errors import ApiError, dependency
from fraudpipe_api.peers import is_trusted
from fraudpipe_api.security import authenticate
from fraudpipe_api.state import AppState

KEY_COOKIE = "fraudpipe_key"
TEMPLATES = Path(__file__).parent / "templates"
STYLE = (TEMPLATES / "style.css").read_text()
SCRIPTS = {name: (TEMPLATES / name).read_text() for name in ("page.js", "login.js")}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PAGE_SIZE = 100

router = APIRouter(include_in_schema=False)
templates = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
)


# The cookie's attributes, also when it is cleared (a browser matches them to replace it).
COOKIE_ATTRIBUTES = "Path=/; HttpOnly; SameSite=Strict"
SESSION_S = 12 * 3600


def _can_read(request: Request, state: AppState) -> bool:
    if state.settings.api_open_reads:
        return True
    digest = request.cookies.get(KEY_COOKIE)
    if not digest:
        return False
    key = state.throttle.find(request.scope, digest, digest=True)
    return key is not None and key.allows(Scope.READ)


def _signed_out(request: Request) -> dict[str, str]:
    """Headers that clear a cookie whose key is no longer known: left in place, the page's
    refresh would present it every 5 s and get the analyst's address throttled."""
    if request.cookies.get(KEY_COOKIE):
        return {"Set-Cookie": f"{KEY_COOKIE}=; Max-Age=0; {COOKIE_ATTRIBUTES}"}
    return {}


def _over_tls(request: Request, state: AppState) -> bool:
    """HTTPS at this server, or at a trusted proxy in front of it that says so."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else None
    proto = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
    return proto == "https" and is_trusted(peer, state.settings.trusted_proxies)


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


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


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
        response = _html(_render("login.html"), status_code=401)
        response.headers.update(_signed_out(request))
        return response
    user, verdict, score, problem = _filters(user_id, decision, min_score)
    rows = await _rows(state, user, verdict, score)
    return _html(
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
    return Response(
        STYLE, media_type="text/css", headers={"Cache-Control": "max-age=300"} | SECURITY_HEADERS
    )


@router.get("/ui/{name}.js")
async def script(name: str) -> Response:
    source = SCRIPTS.get(f"{name}.js")
    if source is None:
        raise ApiError(404, "not_found", "no such script")
    return Response(
        source,
        media_type="text/javascript",
        headers={"Cache-Control": "max-age=300"} | SECURITY_HEADERS,
    )


class SignIn(BaseModel):
    key: str = Field(min_length=1, max_length=512)


@router.post("/ui/session", status_code=204)
async def sign_in(request: Request, body: SignIn) -> Response:
    """Check a key (every scope reads) and keep its SHA-256, not the key, in the page's
    HttpOnly cookie for SESSION_S: a stolen cookie reads the page, it cannot write or call the
    JSON API. Refused from another origin (a cross-site page cannot sign a browser in with its
    own key); unknown keys count towards the address's limit like any other."""
    state: AppState = request.app.state.fraudpipe
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise ApiError(403, "forbidden", "sign-in from another origin")
    key = state.throttle.find(request.scope, body.key)
    if key is None:
        raise ApiError(401, "unauthorized", "unknown API key")
    secure = "; Secure" if _over_tls(request, state) else ""
    cookie = f"{KEY_COOKIE}={key.digest}; Max-Age={SESSION_S}; {COOKIE_ATTRIBUTES}{secure}"
    return Response(status_code=204, headers=SECURITY_HEADERS | {"Set-Cookie": cookie})


@router.get("/ui/alerts", response_class=HTMLResponse)
async def rows_fragment(
    request: Request,
    user_id: RawFilter = None,
    decision: RawFilter = None,
    min_score: RawFilter = None,
) -> HTMLResponse:
    state: AppState = request.app.state.fraudpipe
    if not _can_read(request, state):
        raise ApiError(401, "unauthorized", "sign in on the page first", _signed_out(request))
    user, verdict, score, _ = _filters(user_id, decision, min_score)
    rows = await _rows(state, user, verdict, score)
    return _html(_render("rows.html", rows=rows))
