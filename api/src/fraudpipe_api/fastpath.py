"""`GET /v1/alerts` answered before FastAPI, for the requests that succeed.

The alert list is the API's hot read (dashboards and the analyst page poll it). FastAPI's
per-request machinery (routing through every route, dependency solving, one validation per
query parameter, its middleware stack) cost more CPU than the query itself. This ASGI wrapper
serves the route with the same pieces FastAPI's route uses: the `AlertQuery` model, the same
key check, `routes.alert_page` and the same latency histogram. Anything else, and every
request that does not validate or authenticate, is handed to FastAPI unchanged, so error
answers (422, 401, 403, 429; 413 for a GET with a body) have one implementation. A test
proves both paths answer alike.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl

import pydantic
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fraudpipe_api import routes
from fraudpipe_api.auth import Scope as KeyScope
from fraudpipe_api.errors import ApiError, DependencyUnavailable, error_response
from fraudpipe_api.schemas import AlertQuery
from fraudpipe_api.security import authenticate_header
from fraudpipe_api.state import AppState

log = logging.getLogger(__name__)

PATH = "/v1/alerts"


def _has_body(scope: Scope) -> bool:
    """A GET that sends a body is no dashboard poll: FastAPI's stack, with its body limit,
    answers it."""
    return any(
        name == b"transfer-encoding" or (name == b"content-length" and value != b"0")
        for name, value in scope["headers"]
    )


class AlertsFastPath:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state: AppState = app.state.fraudpipe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "GET"
            or scope.get("root_path")
            or _has_body(scope)
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            request = routes.alert_request(self._query(scope))
        except (pydantic.ValidationError, RequestValidationError, ApiError):
            await self.app(scope, receive, send)  # FastAPI's route answers the error
            return
        try:
            body = await routes.alert_page(self.state, *request)
        except ApiError as exc:  # a dependency is down: as FastAPI's handler answers it
            if isinstance(exc, DependencyUnavailable):
                self.state.metrics.dependency_errors.labels(exc.dependency).inc()
            answer = error_response(
                exc.status, {"error": exc.code, "detail": exc.detail}, exc.headers or None
            )
        except Exception:
            log.exception("unexpected error")
            answer = error_response(
                500, {"error": "internal", "detail": "unexpected error; it has been logged"}
            )
        else:
            answer = Response(body, media_type="application/json")
        status = answer.status_code
        await answer(scope, receive, send)
        self.state.metrics.latency.labels(PATH, "GET", str(status)).observe(
            time.perf_counter() - started
        )

    def _query(self, scope: Scope) -> AlertQuery:
        """The request as FastAPI's route would read it (Starlette's query parsing: latin-1,
        blanks kept, the last of repeated names wins; the first Authorization header)."""
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        # Not counted here: a refusal goes on to FastAPI's route, which counts it once.
        authenticate_header(authorization, self.state, KeyScope.READ, scope, count=False)
        params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        return AlertQuery.model_validate(params)
