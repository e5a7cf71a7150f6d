"""Prometheus metrics, prefix fraudpipe_api_: request latency by route template, method and
status (bounded: route templates, not raw paths)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.latency = Histogram(
            "fraudpipe_api_request_duration_seconds",
            "HTTP request latency, by route template, method and status.",
            ["route", "method", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.published = Counter(
            "fraudpipe_api_published_transactions",
            "Transactions published to the transactions topic.",
            registry=self.registry,
        )
        self.dependency_errors = Counter(
            "fraudpipe_api_dependency_errors",
            "Requests answered 503 because a dependency was down, by dependency.",
            ["dependency"],
            registry=self.registry,
        )


class LatencyMiddleware:
    """Plain ASGI middleware (no per-request task or body buffering)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(template, scope["method"], str(status)).observe(
                time.perf_counter() - started
            )
