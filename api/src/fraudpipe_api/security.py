"""Bearer API keys on every /v1 route: reads need a key unless API_OPEN_READS, writes and
feedback need a key with write scope. 401 says what is missing, 403 what scope is needed, 429
that the client presented too many unknown keys (`throttle.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope as AsgiScope

from fraudpipe_api.auth import ApiKey, Scope
from fraudpipe_api.errors import ApiError
from fraudpipe_api.state import AppState

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fraudpipe"'}


def authenticate(request: Request, state: AppState, wanted: Scope) -> ApiKey | None:
    return authenticate_header(request.headers.get("authorization"), state, wanted, request.scope)


def authenticate_header(
    header: str | None,
    state: AppState,
    wanted: Scope,
    scope: AsgiScope,
    *,
    count: bool = True,
) -> ApiKey | None:
    """The key an Authorization header of the request `scope` presents, if it may do `wanted`
    (None: an open read); ApiError 401, 403 or 429 otherwise. `count=False`: decide without
    counting an unknown key or a refusal (see `AuthThrottle.find`)."""
    if header is None:
        if wanted is Scope.READ and state.settings.api_open_reads:
            return None
        if not len(state.keys):
            raise ApiError(
                401,
                "unauthorized",
                "this API has no keys configured (API_KEYS_FILE or API_KEYS); ask its operator",
                _CHALLENGE,
            )
        raise ApiError(
            401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'", _CHALLENGE
        )
    kind, _, token = header.strip().partition(" ")
    token = token.strip()
    if kind.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "unauthorized",
            "malformed Authorization header: expected 'Bearer <key>'",
            _CHALLENGE,
        )
    key = state.throttle.find(scope, token, count=count)
    if key is None:
        raise ApiError(401, "unauthorized", "unknown API key", _CHALLENGE)
    if not key.allows(wanted):
        raise ApiError(
            403,
            "forbidden",
            f"API key '{key.name}' has {key.scope} scope; this request needs {wanted} scope",
        )
    return key


def require(wanted: Scope) -> Callable[..., Awaitable[ApiKey | None]]:
    async def check(
        request: Request,
        _: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008 (FastAPI idiom)
    ) -> ApiKey | None:
        state: AppState = request.app.state.fraudpipe
        return authenticate(request, state, wanted)

    return check


ReadKey = Depends(require(Scope.READ))
WriteKey = Depends(require(Scope.WRITE))
