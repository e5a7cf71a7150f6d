"""The operator's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "fraudpipe_operator_reconciles_total",
    "Reconciliations of FraudPipelines, by trigger and result.",
    ["trigger", "result"],
)
RECONCILE_ERRORS = Counter(
    "fraudpipe_operator_reconcile_errors_total",
    "Reconciliations that raised, by trigger and error type.",
    ["trigger", "error"],
)
RECONCILE_SECONDS = Histogram(
    "fraudpipe_operator_reconcile_duration_seconds",
    "Time spent reconciling one FraudPipeline.",
    ["trigger"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PIPELINE_READY = Gauge(
    "fraudpipe_operator_pipeline_ready",
    "1 when the FraudPipeline is Ready.",
    ["namespace", "name"],
)
