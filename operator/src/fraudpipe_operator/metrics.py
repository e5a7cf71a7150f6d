"""The operator's Prometheus metrics, prefix fraudpipe_operator_: the scheme of docs/metrics.md.

A pipeline is labelled `pipeline_namespace` and `pipeline`, not `namespace` and `name`: a
ServiceMonitor sets `namespace` to the operator's own namespace (the target's), which would
rename ours to `exported_namespace`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "fraudpipe_operator_reconciles_total",
    "Reconciliations of FraudPipelines, by trigger and result.",
    ["trigger", "result"],
)
RECONCILE_ERRORS = Counter(
    "fraudpipe_operator_reconcile_errors_total",
    "Reconciliations that raised, by trigger and exception class.",
    ["trigger", "error"],
)
RECONCILE_SECONDS = Histogram(
    "fraudpipe_operator_reconcile_duration_seconds",
    "Seconds spent reconciling one FraudPipeline, by trigger.",
    ["trigger"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PIPELINE_READY = Gauge(
    "fraudpipe_operator_pipeline_ready",
    "1 when the FraudPipeline is Ready, 0 otherwise (set after each reconcile).",
    ["pipeline_namespace", "pipeline"],
)
SCHEDULED_JOB_FAILED = Gauge(
    "fraudpipe_operator_scheduled_job_failed",
    "1 when the last scheduled run of one of the pipeline's CronJobs (report, retention, "
    "backup) failed, 0 otherwise (set after each reconcile).",
    ["pipeline_namespace", "pipeline", "scheduled_job"],
)
SCHEDULED_JOB_LAST_SUCCESS = Gauge(
    "fraudpipe_operator_scheduled_job_last_success_timestamp_seconds",
    "Unix time at which the last successful run of one of the pipeline's CronJobs completed "
    "(absent until one has).",
    ["pipeline_namespace", "pipeline", "scheduled_job"],
)
