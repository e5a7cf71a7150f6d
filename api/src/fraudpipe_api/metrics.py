"""Prometheus metrics, prefix fraudpipe_api_: the scheme of docs/metrics.md (base units,
counters exported with `_total`, bounded labels).

Request latency is labelled by route template (never the raw path, which carries ids), by
method (the standard ones; anything else is `other`) and by status code. The buckets are placed
around the 50 ms p99 target, with 0.05 a boundary so that the share of slower requests is exact.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
)  # fmt: skip
# A client may send any token as the method; only these become label values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.latency = Histogram(
            "fraudpipe_api_request_duration_seconds",
            "Seconds to answer an HTTP request, by route template, method and status code.",
            ["route", "method", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.published = Counter(
            "fraudpipe_api_published_transactions",
            "Transactions the API published to transactions.v1 (POST /v1/transactions).",
            registry=self.registry,
        )
        self.dependency_errors = Counter(
            "fraudpipe_api_dependency_errors",
            "Requests answered 503 because a dependency was down, by dependency.",
            ["dependency"],
            registry=self.registry,
        )
        # No client label: addresses are unbounded; the log names a client when it is blocked.
        self.auth_failures = Counter(
            "fraudpipe_api_auth_failures",
            "Requests that presented an unknown API key (bearer header or the page's cookie).",
            registry=self.registry,
        )
        self.auth_throttled = Counter(
            "fraudpipe_api_auth_throttled",
            "Requests with a key refused 429 because their client presented too many unknown "
            "keys within AUTH_FAILURE_WINDOW_S.",
            registry=self.registry,
        )
        self.auth_tracked_clients = Gauge(
            "fraudpipe_api_auth_tracked_clients",
            "Clients whose recent unknown keys this process remembers (at most "
            "AUTH_FAILURE_MAX_CLIENTS; at the cap the oldest are forgotten).",
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
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.latency.labels(template, method, str(status)).observe(
                time.perf_counter() - started
            )


class NotifyMetrics:
    """`fraudpipe-api notify`'s own registry (a separate process from the API)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.notifications = Counter(
            "fraudpipe_api_notifications",
            "Webhook messages, by kind (block, summary, spike) and result (sent, failed).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.held_back = Counter(
            "fraudpipe_api_notifications_held_back",
            "BLOCK decisions the rate limit folded into a summary message instead of their own.",
            registry=self.registry,
        )

    def serve(self, port: int, host: str) -> None:
        start_http_server(port, addr=host, registry=self.registry)
