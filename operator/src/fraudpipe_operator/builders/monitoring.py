"""Prometheus Operator objects: ServiceMonitors (scorer, API, broker) and one PrometheusRule.

Metric names are the ones the scorer exports (`fraudpipe_scorer_*`, scorer/…/metrics.py); the
broker's come from Redpanda's `/public_metrics`.
"""

from __future__ import annotations

from typing import Any

from fraudpipe_operator.builders.common import child_name, metadata, selector_labels
from fraudpipe_operator.models import FraudPipeline

MONITORING_API = "monitoring.coreos.com/v1"


def _meta(pipeline: FraudPipeline, name: str, component: str) -> dict[str, Any]:
    meta = metadata(pipeline, name, component)
    meta["labels"].update(pipeline.spec.monitoring.labels)
    return meta


def service_monitor(
    pipeline: FraudPipeline, component: str, port: str, path: str = "/metrics"
) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API,
        "kind": "ServiceMonitor",
        "metadata": _meta(pipeline, child_name(pipeline, component), component),
        "spec": {
            "selector": {"matchLabels": selector_labels(pipeline, component)},
            "namespaceSelector": {"matchNames": [pipeline.namespace]},
            "endpoints": [{"port": port, "path": path, "interval": "15s"}],
        },
    }


def build_scorer_servicemonitor(pipeline: FraudPipeline) -> dict[str, Any]:
    return service_monitor(pipeline, "scorer", "metrics")


def build_api_servicemonitor(pipeline: FraudPipeline) -> dict[str, Any]:
    return service_monitor(pipeline, "api", "metrics")


def build_kafka_servicemonitor(pipeline: FraudPipeline) -> dict[str, Any]:
    return service_monitor(pipeline, "kafka", "admin", "/public_metrics")


def build_pipeline_prometheusrule(pipeline: FraudPipeline) -> dict[str, Any]:
    ns, name = pipeline.namespace, pipeline.name
    scorer = f'namespace="{ns}", service="{child_name(pipeline, "scorer")}"'
    decisions = f'fraudpipe_scorer_decisions_total{{{scorer}, decision!="APPROVE"}}'
    decided = f"fraudpipe_scorer_decisions_total{{{scorer}}}"
    failed = (
        f"fraudpipe_scorer_dependency_errors_total{{{scorer}}}"
        f" or fraudpipe_scorer_dlq_messages_total{{{scorer}}}"
    )
    labels = {"pipeline": name, "namespace": ns}

    def alert(alert_name: str, expr: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
        return {
            "alert": alert_name,
            "expr": expr,
            "for": for_,
            "labels": {**labels, "severity": severity},
            "annotations": {"summary": summary},
        }

    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": _meta(pipeline, child_name(pipeline, "alerts"), "monitoring"),
        "spec": {
            "groups": [
                {
                    "name": f"fraudpipe.{ns}.{name}",
                    "rules": [
                        alert(
                            "FraudPipeConsumerLagHigh",
                            f"sum(fraudpipe_scorer_consumer_lag_messages{{{scorer}}})"
                            f" > {10 * pipeline.spec.scorer.autoscaling.lag_per_replica}",
                            "5m",
                            "warning",
                            f"Scorer of {ns}/{name} is falling behind the transactions topic.",
                        ),
                        alert(
                            "FraudPipeScorerErrorRate",
                            f"sum(rate({failed}[5m])) / clamp_min(sum(rate({decided}[5m])), 1)"
                            " > 0.01",
                            "5m",
                            "critical",
                            f"Errors (dependencies, rejected input) above 1% of {ns}/{name}'s "
                            "decisions.",
                        ),
                        alert(
                            "FraudPipeAlertRateSpike",
                            f"sum(rate({decisions}[10m]))"
                            f" > 3 * sum(rate({decisions}[1d] offset 1d))",
                            "10m",
                            "warning",
                            f"{ns}/{name} flags or blocks three times more than yesterday.",
                        ),
                        alert(
                            "FraudPipeScorerDown",
                            f"absent(up{{{scorer}}} == 1)",
                            "2m",
                            "critical",
                            f"No scorer replica of {ns}/{name} is up.",
                        ),
                    ],
                }
            ]
        },
    }
