"""Prometheus metrics, prefix fraudpipe_scorer_: the scheme of docs/metrics.md (base units,
counters exported with `_total`, bounded labels). Each is described there.

Labels are bounded by construction: verdict (3), track (3, or stable/candidate for a model's
own inference), model digest (at most two models loaded), DLQ code (the decoder's handful of
codes), stage (fixed names), partition (the topic's partition count). No transaction, user,
card or merchant ever becomes a label.

The latency buckets are placed around the 50 ms p99 target: 0.05 is a bucket boundary, so the
share of transactions slower than the target is exact (the SLO alert reads it) rather than
interpolated, and the buckets below it are dense enough for a p50/p99 panel.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from fraudpipe_common.contracts.dlq import CODES

# End to end: event time to commit; the target is p99 <= 50 ms.
_LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
# One stage of one batch: a share of the 50 ms budget, from sub-millisecond up.
_STAGE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 5,
)  # fmt: skip
_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


class ScorerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.end_to_end = Histogram(
            "fraudpipe_scorer_end_to_end_latency_seconds",
            "Seconds from a transaction's event time to its committed decision (acting track).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "fraudpipe_scorer_stage_duration_seconds",
            "Seconds one stage took for one micro-batch, by stage.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "fraudpipe_scorer_batch_size_messages",
            "Messages per micro-batch.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "fraudpipe_scorer_decisions",
            "Decisions committed to decisions.v1, by verdict, model digest and track.",
            ["decision", "model_digest", "track"],
            registry=r,
        )
        self.scores = Histogram(
            "fraudpipe_scorer_model_score",
            "Model scores, by model digest and track (for drift and canary analysis).",
            ["model_digest", "track"],
            buckets=(0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0),
            registry=r,
        )
        # Canary analysis (DESIGN.md §7, docs/canary.md): each model's own inference time per
        # batch and its failures, by role (stable, candidate) and digest.
        self.inference = Histogram(
            "fraudpipe_scorer_model_inference_seconds",
            "Seconds one model took to score one micro-batch, by track (stable, candidate) "
            "and model digest.",
            ["track", "model_digest"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.model_errors = Counter(
            "fraudpipe_scorer_model_errors",
            "Transactions a model failed to score, by track (stable, candidate) and model "
            "digest; a candidate's failures fall back to the stable model.",
            ["track", "model_digest"],
            registry=r,
        )
        self.dlq = Counter(
            "fraudpipe_scorer_dlq_messages",
            "Input messages committed to the DLQ instead of being scored, by error code.",
            ["code"],
            registry=r,
        )
        for code in CODES:
            self.dlq.labels(code)  # present at 0 from the start
        self.lag = Gauge(
            "fraudpipe_scorer_consumer_lag_messages",
            "Messages behind the high watermark, per input partition this scorer owns.",
            ["partition"],
            registry=r,
        )
        self.sink_errors = Counter(
            "fraudpipe_scorer_dependency_errors",
            "Failed attempts against a dependency (each retried with backoff), by dependency.",
            ["dependency"],
            registry=r,
        )
        self.producers_replaced = Counter(
            "fraudpipe_scorer_kafka_producers_replaced",
            "Transactional producers replaced after one hung past its timeout (decision 85).",
            registry=r,
        )
        self.replayed_decisions = Counter(
            "fraudpipe_scorer_replayed_decisions",
            "Decisions of a replayed batch replaced by the first decision cached for their "
            "transaction (so the cache, the alerts and decisions.v1 agree).",
            registry=r,
        )
        self.model = Info(
            "fraudpipe_scorer_model",
            "The models loaded (name, digest), by track; absent until a model is loaded.",
            ["track"],
            registry=r,
        )
        self.canary_weight = Gauge(
            "fraudpipe_scorer_canary_weight_percent",
            "Current canary weight: percent of users (0-100) routed to the candidate.",
            registry=r,
        )
        self.shadow = Gauge(
            "fraudpipe_scorer_shadow_mode",
            "1 while the candidate runs in shadow, else 0.",
            registry=r,
        )


def observe_many(histogram: Histogram, values: npt.NDArray[np.float64]) -> None:
    """`histogram.observe(v)` for every value, in one step: a batch's thousands of
    observations cost one numpy call and a few increments instead of a Python call each
    (prometheus_client has no bulk API, so this fills the same per-bucket counters and sum
    that `observe` does; a test holds the two equal)."""
    if not len(values):
        return
    bounds = histogram._upper_bounds
    # observe() counts a value in the first bucket whose upper bound is >= it.
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)
    histogram._sum.inc(float(values.sum()))
