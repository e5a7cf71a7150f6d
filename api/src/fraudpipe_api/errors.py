"""Error bodies: every error is `{"error": <code>, "detail": <sentence>}`, plus `fields` for
bad input. A dependency that is down is a 503 with Retry-After, never a 500; an unexpected
failure is a 500 with no trace (the trace goes to the log)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import redis.exceptions
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from fraudpipe_common.schema_registry import SchemaRegistryError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


class DependencyUnavailable(ApiError):
    def __init__(self, dependency: str, detail: str, retry_after_s: int = 5) -> None:
        super().__init__(
            503,
            "dependency_unavailable",
            f"{dependency} is unavailable ({detail}); retry later",
            {"Retry-After": str(retry_after_s)},
        )
        self.dependency = dependency


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", what)


def invalid(field: str, message: str, location: str = "query") -> RequestValidationError:
    return RequestValidationError([{"loc": (location, field), "msg": message, "type": "value"}])


# Failures that mean "the dependency is down or unreachable", not "this request is wrong".
_DOWN: tuple[type[BaseException], ...] = (
    OSError,
    SchemaRegistryError,  # unreachable, or refusing the schema: either way nothing is sent
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    KafkaError,
)


@contextlib.asynccontextmanager
async def dependency(name: str, retry_after_s: int = 5) -> AsyncIterator[None]:
    """Turns a dependency's connection failures into a 503 naming it."""
    try:
        yield
    except DependencyUnavailable:
        raise
    except _DOWN as exc:
        log.warning("%s unavailable: %r", name, exc)
        raise DependencyUnavailable(name, type(exc).__name__, retry_after_s) from exc


def error_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _count_dependency_error(request: Request, dependency: str) -> None:
    state = getattr(request.app.state, "fraudpipe", None)
    if state is not None:
        state.metrics.dependency_errors.labels(dependency).inc()


def install(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        if isinstance(exc, DependencyUnavailable):
            _count_dependency_error(request, exc.dependency)
        return error_response(
            exc.status, {"error": exc.code, "detail": exc.detail}, exc.headers or None
        )

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = []
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc", ())]
            location = loc[0] if loc else "request"
            fields.append(
                {
                    "location": location,
                    "field": ".".join(loc[1:]) or location,
                    "message": str(err.get("msg", "invalid")),
                }
            )
        named = ", ".join(f["field"] for f in fields) or "the request"
        return error_response(
            422, {"error": "invalid_input", "detail": f"invalid: {named}", "fields": fields}
        )

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(
            exc.status_code,
            {"error": code, "detail": str(exc.detail)},
            dict(exc.headers) if exc.headers else None,
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        if isinstance(exc, _DOWN):
            log.warning("dependency unavailable: %r", exc)
            _count_dependency_error(request, "unknown")
            return error_response(
                503,
                {"error": "dependency_unavailable", "detail": "a dependency is unavailable"},
                {"Retry-After": "5"},
            )
        log.exception("unexpected error")
        return error_response(
            500, {"error": "internal", "detail": "unexpected error; it has been logged"}
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
