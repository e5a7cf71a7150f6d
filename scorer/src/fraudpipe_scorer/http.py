"""The scorer's small HTTP surface: /metrics, /healthz, /readyz and the routing control.

`PUT /routing {"weight": 25, "shadow": false}` changes the canary weight at run time (the
operator's canary driver sends it during a rollout); `GET /routing` reads it back. With
`CONTROL_PORT` set (the operator sets it) the PUT is served on that port only, which a
NetworkPolicy opens to the operator alone, while the metrics port stays open to any
Prometheus; without it (local runs) everything is on the metrics port.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fraudpipe_scorer.metrics import ScorerMetrics
from fraudpipe_scorer.routing import Router, RoutingError

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
Handler = Callable[[web.Request], Awaitable[web.Response]]


def routing_handlers(metrics: ScorerMetrics, router: Router) -> tuple[Handler, Handler]:
    """(GET, PUT) of /routing."""

    async def get_routing(_: web.Request) -> web.Response:
        state = router.state
        return web.json_response({"weight": state.weight, "shadow": state.shadow})

    async def put_routing(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            weight, shadow = body.get("weight", 0), body.get("shadow", False)
            if type(weight) is not int or type(shadow) is not bool:
                raise RoutingError('expected {"weight": 0..100, "shadow": true|false}')
            state = router.set(weight=weight, shadow=shadow)
        except (RoutingError, ValueError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        metrics.canary_weight.set(state.weight)
        metrics.shadow.set(int(state.shadow))
        return web.json_response({"weight": state.weight, "shadow": state.shadow})

    return get_routing, put_routing


def build_app(
    metrics: ScorerMetrics, router: Router, readiness: ReadinessCheck, *, control: bool = True
) -> web.Application:
    """The metrics port; with `control` it also takes PUT /routing."""

    async def get_metrics(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        checks = await readiness()
        return web.json_response(checks, status=200 if all(checks.values()) else 503)

    get_routing, put_routing = routing_handlers(metrics, router)
    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/routing", get_routing)
    if control:
        app.router.add_put("/routing", put_routing)
    return app


def build_control_app(metrics: ScorerMetrics, router: Router) -> web.Application:
    get_routing, put_routing = routing_handlers(metrics, router)
    app = web.Application()
    app.router.add_get("/routing", get_routing)
    app.router.add_put("/routing", put_routing)
    return app


async def serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 (the pod's metrics port)
    return runner


class HttpServers:
    """The metrics port and, when configured, the control port; cleaned up together."""

    def __init__(self, runners: list[web.AppRunner]) -> None:
        self.runners = runners

    async def cleanup(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


async def serve_http(
    metrics: ScorerMetrics,
    router: Router,
    readiness: ReadinessCheck,
    metrics_port: int,
    control_port: int | None,
) -> HttpServers:
    control = control_port is not None
    runners = [
        await serve(build_app(metrics, router, readiness, control=not control), metrics_port)
    ]
    if control_port is not None:
        runners.append(await serve(build_control_app(metrics, router), control_port))
    return HttpServers(runners)
