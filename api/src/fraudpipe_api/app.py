"""The FastAPI application: routes, error handlers, metrics and the clients' lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from starlette.types import ASGIApp

from fraudpipe_api import errors, page, routes
from fraudpipe_api.auth import KeyRing
from fraudpipe_api.bodylimit import BodySizeLimit
from fraudpipe_api.config import ApiSettings
from fraudpipe_api.deps import Clients
from fraudpipe_api.fastpath import AlertsFastPath
from fraudpipe_api.metrics import ApiMetrics, LatencyMiddleware
from fraudpipe_api.state import AppState
from fraudpipe_api.throttle import AuthThrottle
from fraudpipe_common.kafka import KafkaSettings, TopicSettings
from fraudpipe_common.rules import RuleSettings

DESCRIPTION = """Alerts, decisions, synchronous scoring and analyst feedback of a fraudpipe
pipeline. Authenticate with `Authorization: Bearer <API key>`; writes and feedback need a key
with write scope. A client that presents too many unknown keys gets 429 with `Retry-After` for
every request with a key until the window passes; a body over the size limit gets 413. Errors
are `{"error": code, "detail": sentence}` (422 adds `fields`)."""


def create_app(
    settings: ApiSettings,
    kafka: KafkaSettings,
    topics: TopicSettings,
    rules: RuleSettings,
) -> FastAPI:
    metrics = ApiMetrics()
    clients = Clients(settings, kafka)
    keys = KeyRing.load(settings.api_keys_file, settings.api_keys)
    state = AppState(
        settings=settings,
        topics=topics,
        rules=rules,
        keys=keys,
        throttle=AuthThrottle(keys, settings, metrics),
        clients=clients,
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The shared METRICS_PORT contract (the operator's Service and ServiceMonitor scrape
        # it); one process only: workers would each hold their own registry and port.
        server = None
        if settings.metrics_port and settings.api_workers == 1:
            server, _thread = start_http_server(
                settings.metrics_port, addr=settings.api_host, registry=metrics.registry
            )
        yield
        if server is not None:
            server.shutdown()
            server.server_close()
        await clients.close()

    app = FastAPI(
        title="fraudpipe API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.fraudpipe = state
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(page.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, bool]:
        """The process answers."""
        return {"ok": True}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={503: {"description": "Not ready; the body says which dependency."}},
    )
    async def readyz() -> Response:
        """PostgreSQL and Redis reachable (reads work), Kafka reachable (publishing works),
        and the scoring model loaded when MODEL_REF is set."""
        checks = await _readiness(clients)
        ready = all(checks.values())
        return errors.error_response(
            200 if ready else 503,
            {"ready": ready, "checks": checks},
            None if ready else {"Retry-After": str(settings.retry_after_s)},
        )

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def get_metrics(_: Request) -> Response:
        """Prometheus metrics (request latency by route and status)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Outside the router, so before any body is parsed or any key checked; inside the latency
    # middleware, so that its 413s are in the histogram.
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    return app


async def _readiness(clients: Clients) -> dict[str, bool]:
    async def check(probe: Any) -> bool:
        try:
            await asyncio.wait_for(probe(), clients.settings.dependency_timeout_s)
        except Exception:
            return False
        return True

    async def postgres() -> None:
        pool = await clients.pool()
        await pool.fetchval("SELECT 1")

    async def redis() -> None:
        await clients.redis.ping()

    async def kafka() -> None:
        await clients.producer()

    async def model() -> None:
        await clients.model()

    probes = {"postgres": postgres, "redis": redis, "kafka": kafka}
    if clients.settings.model_ref:
        probes["model"] = model
    results = await asyncio.gather(*(check(p) for p in probes.values()))
    return dict(zip(probes, results, strict=True))


def serving(app: FastAPI) -> ASGIApp:
    """What uvicorn serves: the application behind the fast path of `GET /v1/alerts`."""
    return AlertsFastPath(app)


def from_environment() -> ASGIApp:
    """The application configured from the environment (each uvicorn worker builds its own)."""
    from fraudpipe_api.config import load_settings

    return serving(create_app(*load_settings()))
