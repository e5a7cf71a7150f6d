"""Every service's metrics follow one naming scheme, and docs/metrics.md lists exactly them.

It lives with the operator because the operator ships what depends on the names (rules,
ServiceMonitors); it only reads the metric definitions, so it needs no service running.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric

import fraudpipe_operator.metrics
from fraudpipe_api.metrics import ApiMetrics, NotifyMetrics
from fraudpipe_producer.metrics import ProducerMetrics
from fraudpipe_scorer.metrics import ScorerMetrics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
# Labels that would make a series per transaction or per person.
UNBOUNDED = {"tx_id", "user_id", "card_id", "merchant_id", "device_id", "ip", "path", "url"}
UNITS = (
    "_seconds",
    "_messages",
    "_transactions",
    "_clients",
    "_bytes",
    "_ratio",
    "_percent",
    "_info",
)
# Gauges and histograms without a unit: flags and the model's 0-1 score.
UNITLESS = {
    "fraudpipe_scorer_shadow_mode",
    "fraudpipe_scorer_model_score",
    "fraudpipe_operator_pipeline_ready",
    "fraudpipe_operator_scheduled_job_failed",  # a 0/1 state, like pipeline_ready
}
LATENCY_TARGET_S = 0.05


def families() -> Iterator[tuple[str, Metric]]:
    registries: list[tuple[str, CollectorRegistry]] = [
        ("scorer", ScorerMetrics().registry),
        ("api", ApiMetrics().registry),
        ("api", NotifyMetrics().registry),
        ("producer", ProducerMetrics().registry),
        ("operator", REGISTRY),
    ]
    for service, registry in registries:
        for family in registry.collect():
            if service != "operator" or family.name.startswith("fraudpipe_"):
                yield service, family


def exposed_name(family: Metric) -> str:
    """The name a query uses: counters with `_total`, info metrics with `_info`."""
    return {"counter": f"{family.name}_total", "info": f"{family.name}_info"}.get(
        family.type, family.name
    )


ALL = list(families())


@pytest.mark.parametrize(("service", "family"), ALL, ids=[exposed_name(f) for _, f in ALL])
def test_name_carries_the_service_prefix_and_a_base_unit(service: str, family: Metric) -> None:
    name = exposed_name(family)
    assert name.startswith(f"fraudpipe_{service}_")
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
    assert not re.search(r"_(ms|milliseconds|millis|kb|mb|minutes|hours)(_|$)", name)
    if family.type == "counter":
        assert name.endswith("_total")
    elif name not in UNITLESS:
        assert name.endswith(UNITS), f"{name}: name its base unit, or list it as unitless"


def test_no_label_can_hold_a_transaction_or_a_person() -> None:
    # A labelled metric with no child yet has no samples to read labels from: the label names
    # are taken from the metric objects themselves.
    metrics = [
        *vars(ScorerMetrics()).values(),
        *vars(ApiMetrics()).values(),
        *vars(NotifyMetrics()).values(),
        *vars(ProducerMetrics()).values(),
        *vars(fraudpipe_operator.metrics).values(),
    ]
    labelled = [m for m in metrics if hasattr(m, "_labelnames")]
    assert len(labelled) >= 18
    for metric in labelled:
        assert not set(metric._labelnames) & UNBOUNDED, metric


def test_latency_histograms_have_a_bucket_at_the_50ms_target() -> None:
    scorer, api = ScorerMetrics(), ApiMetrics()
    scorer.end_to_end.observe(0.01)
    api.latency.labels("/v1/alerts", "GET", "200").observe(0.01)
    for registry, name in [
        (scorer.registry, "fraudpipe_scorer_end_to_end_latency_seconds"),
        (api.registry, "fraudpipe_api_request_duration_seconds"),
    ]:
        bounds = {
            float(s.labels["le"])
            for f in registry.collect()
            if f.name == name
            for s in f.samples
            if s.name.endswith("_bucket")
        }
        assert LATENCY_TARGET_S in bounds
        # At least four buckets below the target, so p50/p99 are readable while it is met.
        assert len([b for b in bounds if b < LATENCY_TARGET_S]) >= 4


def test_an_unknown_http_method_is_not_a_label_value() -> None:
    api = ApiMetrics()
    from fraudpipe_api.metrics import LatencyMiddleware
    from fraudpipe_testing.stack.process import run_async

    async def app(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 405, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async def receive() -> dict[str, object]:
        return {"type": "http.request"}

    async def send(_: object) -> None:
        return None

    middleware = LatencyMiddleware(app, api)  # type: ignore[arg-type]
    for method in ("GET", "BREW", "X" * 500):
        run_async(middleware({"type": "http", "method": method}, receive, send))  # type: ignore[arg-type]
    methods = {
        s.labels["method"]
        for f in api.registry.collect()
        for s in f.samples
        if s.name == "fraudpipe_api_request_duration_seconds_count"
    }
    assert methods == {"GET", "other"}


def test_docs_list_every_exported_metric_and_nothing_else() -> None:
    documented = set(re.findall(r"^\| `(fraudpipe_[a-z0-9_]+)` \|", DOCS.read_text(), re.M))
    exported = {exposed_name(family) for _, family in ALL}
    assert documented == exported, {
        "exported but not in docs/metrics.md": sorted(exported - documented),
        "in docs/metrics.md but not exported": sorted(documented - exported),
    }
