"""Prometheus metrics, prefix fraudpipe_scorer_, base units, bounded labels.

Labels are bounded by construction: verdict (3), track (3), model digest (at most two models
loaded), DLQ code (the decoder's handful of codes), stage (fixed names), partition (the topic's
partition count).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


class ScorerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.end_to_end = Histogram(
            "fraudpipe_scorer_end_to_end_latency_seconds",
            "Event time of the transaction to its decision being committed.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "fraudpipe_scorer_stage_duration_seconds",
            "Duration of one stage for one batch.",
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
            "Decisions committed, by verdict, model digest and track.",
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
        self.dlq = Counter(
            "fraudpipe_scorer_dlq_messages",
            "Messages sent to the DLQ, by error code.",
            ["code"],
            registry=r,
        )
        self.lag = Gauge(
            "fraudpipe_scorer_consumer_lag_messages",
            "High watermark minus the next offset to process, per assigned partition.",
            ["partition"],
            registry=r,
        )
        self.sink_errors = Counter(
            "fraudpipe_scorer_dependency_errors",
            "Failed attempts against a dependency (retried with backoff).",
            ["dependency"],
            registry=r,
        )
        self.model = Info(
            "fraudpipe_scorer_model", "The models loaded, by track.", ["track"], registry=r
        )
        self.canary_weight = Gauge(
            "fraudpipe_scorer_canary_weight_percent",
            "Current canary weight (percent of users).",
            registry=r,
        )
        self.shadow = Gauge(
            "fraudpipe_scorer_shadow_mode", "1 while the candidate runs in shadow.", registry=r
        )
