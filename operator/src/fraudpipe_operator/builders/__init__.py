"""Pure builders: `build_<component>_<kind>(pipeline) -> dict`, and the plan that groups them.

Nothing here talks to Kubernetes; the reconciler applies what these functions return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fraudpipe_operator.builders import apps, monitoring, object_store, stores
from fraudpipe_operator.builders.common import OperatorPods, child_name
from fraudpipe_operator.models import FraudPipeline


@dataclass(frozen=True)
class Images:
    """Default images of fraudpipe's own services (the chart passes its appVersion)."""

    scorer: str
    api: str
    producer: str


def with_default_images(pipeline: FraudPipeline, images: Images) -> FraudPipeline:
    """The pipeline with every empty `image` filled from the operator's defaults."""
    resolved = pipeline.model_copy(deep=True)
    spec = resolved.spec
    spec.scorer.image = spec.scorer.image or images.scorer
    spec.api.image = spec.api.image or images.api
    spec.producer.image = spec.producer.image or images.producer
    return resolved


@dataclass
class Plan:
    """What one pipeline needs, in the order it must come up."""

    foundation: list[dict[str, Any]] = field(default_factory=list)
    migrations: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[dict[str, Any]] = field(default_factory=list)
    monitoring: list[dict[str, Any]] = field(default_factory=list)
    # (kind, name) of optional children that are turned off: deleted when found, so that a
    # CronJob or worker turned off stops running (a retention job left behind would go on
    # deleting, a demo producer on producing).
    turned_off: list[tuple[str, str]] = field(default_factory=list)

    def all(self) -> list[dict[str, Any]]:
        return [*self.foundation, *self.migrations, *self.workloads, *self.monitoring]


def plan(pipeline: FraudPipeline, operator: OperatorPods | None = None) -> Plan:
    """`operator`: the operator's own pods, the only peers of the control ports it uses."""
    spec = pipeline.spec
    result = Plan()
    result.foundation.append(apps.build_pipeline_serviceaccount(pipeline))
    if spec.kafka.mode == "managed":
        result.foundation += [
            stores.build_kafka_service(pipeline),
            stores.build_kafka_statefulset(pipeline),
            stores.build_kafka_pdb(pipeline),
            stores.build_kafka_networkpolicy(pipeline, operator),
        ]
    if spec.redis.mode == "managed":
        result.foundation += [
            stores.build_redis_service(pipeline),
            stores.build_redis_statefulset(pipeline),
            stores.build_redis_pdb(pipeline),
            stores.build_redis_networkpolicy(pipeline),
        ]
    if spec.postgres.mode == "managed":
        result.foundation += [
            stores.build_postgres_service(pipeline),
            stores.build_postgres_statefulset(pipeline),
            stores.build_postgres_pdb(pipeline),
            stores.build_postgres_networkpolicy(pipeline),
        ]
    result.migrations.append(apps.build_migrations_job(pipeline))
    result.workloads += [
        apps.build_scorer_service(pipeline),
        apps.build_scorer_networkpolicy(pipeline, operator),
        apps.build_scorer_deployment(pipeline),
        apps.build_api_service(pipeline),
        apps.build_api_deployment(pipeline),
    ]
    optional: list[tuple[str, str, bool, Callable[[FraudPipeline], dict[str, Any]]]] = [
        ("CronJob", "report", spec.report.enabled, apps.build_report_cronjob),
        ("CronJob", "retention", spec.retention.enabled, apps.build_retention_cronjob),
        ("CronJob", "backup", spec.backup.enabled, object_store.build_backup_cronjob),
        ("Deployment", "archive", spec.archive.enabled, object_store.build_archive_deployment),
        ("Deployment", "notify", spec.notify.enabled, apps.build_notify_deployment),
        ("Deployment", "producer", spec.producer.enabled, apps.build_producer_deployment),
    ]
    for kind, component, enabled, build in optional:
        if enabled:
            result.workloads.append(build(pipeline))
        else:
            result.turned_off.append((kind, child_name(pipeline, component)))
    if spec.monitoring.service_monitors:
        result.monitoring += [
            monitoring.build_scorer_servicemonitor(pipeline),
            monitoring.build_api_servicemonitor(pipeline),
        ]
        # Redpanda serves Prometheus metrics itself; Apache Kafka only through JMX.
        if spec.kafka.mode == "managed" and spec.kafka.managed.flavor == "redpanda":
            result.monitoring.append(monitoring.build_kafka_servicemonitor(pipeline))
    if spec.monitoring.prometheus_rules:
        result.monitoring.append(monitoring.build_pipeline_prometheusrule(pipeline))
    return result


def credential_secrets(
    pipeline: FraudPipeline, new_password: Callable[[], str]
) -> list[dict[str, Any]]:
    """Secrets to create when absent (never overwritten, so the passwords are only used once)."""
    secrets = []
    if pipeline.spec.redis.mode == "managed":
        secrets.append(stores.build_redis_secret(pipeline, new_password()))
    if pipeline.spec.postgres.mode == "managed":
        secrets.append(stores.build_postgres_secret(pipeline, new_password()))
    return secrets
