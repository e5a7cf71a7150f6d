"""Prometheus Operator objects: ServiceMonitors (scorer, API, broker) and one PrometheusRule.

The rules are prometheus_rules.yaml beside this module, filled in per pipeline; metric names
are those of docs/metrics.md. The broker's metrics come from Redpanda's `/public_metrics`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

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


# The rules' one copy; the tests load it through the same functions.
RULES_FILE = Path(__file__).with_name("prometheus_rules.yaml")
_PLACEHOLDER = re.compile(r"\$\(([a-z_]+)\)")


def rule_values(pipeline: FraudPipeline) -> dict[str, str]:
    """What the placeholders of prometheus_rules.yaml stand for in one pipeline."""
    ns, name = pipeline.namespace, pipeline.name
    return {
        "namespace": ns,
        "pipeline": name,
        "scorer": f'namespace="{ns}", service="{child_name(pipeline, "scorer")}"',
        "api": f'namespace="{ns}", service="{child_name(pipeline, "api")}"',
        "recorded": f'namespace="{ns}", pipeline="{name}"',
        "lag_high": str(10 * pipeline.spec.scorer.autoscaling.lag_per_replica),
    }


def render_rule_groups(
    values: Mapping[str, str], source: str | None = None, *, for_override: str | None = None
) -> list[dict[str, Any]]:
    """The rule groups with every placeholder filled and `namespace`/`pipeline` labels on
    every rule. `for_override` replaces each alert's `for:` (the live test's shortcut; the
    promtool tests keep the real durations)."""

    def fill(text: str) -> str:
        def value(match: re.Match[str]) -> str:
            if match.group(1) not in values:
                raise KeyError(f"prometheus_rules.yaml: no value for $({match.group(1)})")
            return values[match.group(1)]

        return _PLACEHOLDER.sub(value, text)

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return fill(node)
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            return {key: walk(item) for key, item in node.items()}
        return node

    loaded = yaml.safe_load(RULES_FILE.read_text() if source is None else source)
    groups: list[dict[str, Any]] = walk(loaded)["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule["labels"] = {
                **rule.get("labels", {}),
                "namespace": values["namespace"],
                "pipeline": values["pipeline"],
            }
            if for_override is not None and "alert" in rule:
                rule["for"] = for_override
    return groups


def build_pipeline_prometheusrule(pipeline: FraudPipeline) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": _meta(pipeline, child_name(pipeline, "alerts"), "monitoring"),
        "spec": {"groups": render_rule_groups(rule_values(pipeline))},
    }
