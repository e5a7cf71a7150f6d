"""Every condition type and reason the operator writes, and how conditions are merged.

One place for the vocabulary (as CloudNativePG does), so that `kubectl wait`, alerts and docs
can rely on it. `lastTransitionTime` changes only when a condition's status flips.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    KAFKA_READY = "KafkaReady"
    TOPICS_READY = "TopicsReady"
    REDIS_READY = "RedisReady"
    POSTGRES_READY = "PostgresReady"
    MIGRATIONS_COMPLETE = "MigrationsComplete"
    SCORER_READY = "ScorerReady"
    API_READY = "ApiReady"
    PRODUCER_READY = "ProducerReady"
    ARCHIVE_READY = "ArchiveReady"
    NOTIFY_READY = "NotifyReady"
    SCHEDULED_JOBS_SUCCEEDING = "ScheduledJobsSucceeding"
    MONITORING_READY = "MonitoringReady"
    AUTOSCALING_READY = "AutoscalingReady"
    CANARY_HEALTHY = "CanaryHealthy"


class Reason(StrEnum):
    # summary
    ALL_COMPONENTS_READY = "AllComponentsReady"
    COMPONENTS_NOT_READY = "ComponentsNotReady"
    RECONCILED = "Reconciled"
    RECONCILING = "Reconciling"
    NO_PROBLEM = "NoProblem"
    # workloads
    REPLICAS_READY = "ReplicasReady"
    REPLICAS_NOT_READY = "ReplicasNotReady"
    SCALED_TO_ZERO = "ScaledToZero"
    DISABLED = "Disabled"
    EXTERNAL = "External"
    WAITING_FOR_DEPENDENCIES = "WaitingForDependencies"
    # migrations
    MIGRATIONS_APPLIED = "MigrationsApplied"
    MIGRATIONS_RUNNING = "MigrationsRunning"
    MIGRATIONS_FAILED = "MigrationsFailed"
    # topics
    TOPICS_RECONCILED = "TopicsReconciled"
    BROKER_UNREACHABLE = "BrokerUnreachable"
    PARTITIONS_CANNOT_SHRINK = "PartitionsCannotShrink"
    REPLICATION_FACTOR_IMMUTABLE = "ReplicationFactorImmutable"
    TOPIC_ERROR = "TopicError"
    # monitoring
    MONITORING_CONFIGURED = "MonitoringConfigured"
    PROMETHEUS_OPERATOR_MISSING = "PrometheusOperatorCRDsMissing"
    # autoscaling
    BUILTIN_ENGINE = "BuiltinEngine"
    KEDA_ENGINE = "KedaEngine"
    KEDA_MISSING = "KedaCRDsMissing"
    MAX_REPLICAS_ABOVE_PARTITIONS = "MaxReplicasAbovePartitions"
    # scheduled jobs (report, retention, backup)
    LAST_RUNS_SUCCEEDED = "LastRunsSucceeded"
    SCHEDULED_RUN_FAILED = "ScheduledRunFailed"
    # canary (docs/canary.md)
    CANARY_PROGRESSING = "CanaryProgressing"
    CANARY_PROMOTED = "CanaryPromoted"
    CANARY_FAILED = "CanaryFailed"
    CANDIDATE_INVALID = "CandidateInvalid"
    # apply
    APPLY_FAILED = "ApplyFailed"


IMPOSSIBLE_CHANGE_REASONS = {
    Reason.PARTITIONS_CANNOT_SHRINK,
    Reason.REPLICATION_FACTOR_IMMUTABLE,
    Reason.MIGRATIONS_FAILED,
    Reason.APPLY_FAILED,
    # A rolled back or refused candidate: the stable model serves, the spec needs a change.
    Reason.CANARY_FAILED,
    Reason.CANDIDATE_INVALID,
}


# Conditions that inform without holding the pipeline back from Ready: the pipeline runs without
# the Prometheus Operator, with a capped or fallback autoscaler, and decides whether or not its
# archive, notifications and scheduled jobs keep up (Kafka holds what they have not read yet).
INFORMATIVE = {
    ConditionType.MONITORING_READY,
    ConditionType.AUTOSCALING_READY,
    ConditionType.CANARY_HEALTHY,  # the stable model serves whatever the candidate does
    ConditionType.ARCHIVE_READY,
    ConditionType.NOTIFY_READY,
    ConditionType.SCHEDULED_JOBS_SUCCEEDING,
}
# Informative conditions whose False is a Warning from the first time it is seen: the spec asks
# for something the cluster or the topic cannot give.
WARN_WHEN_FIRST_FALSE = {ConditionType.AUTOSCALING_READY}


@dataclass(frozen=True)
class Observation:
    """One condition as computed by a reconcile, before timestamps are merged in."""

    type: ConditionType
    ok: bool
    reason: Reason
    message: str

    @property
    def status(self) -> str:
        return "True" if self.ok else "False"


def merge(
    previous: list[dict[str, Any]], observed: list[Observation], generation: int, now: str
) -> list[dict[str, Any]]:
    """New conditions list: keeps a condition's lastTransitionTime unless its status flipped."""
    before = {c.get("type"): c for c in previous}
    merged = []
    for obs in observed:
        old = before.get(obs.type.value)
        flipped = old is None or old.get("status") != obs.status
        merged.append(
            {
                "type": obs.type.value,
                "status": obs.status,
                "reason": obs.reason.value,
                "message": obs.message,
                "lastTransitionTime": now if flipped else old.get("lastTransitionTime", now),  # type: ignore[union-attr]
                "observedGeneration": generation,
            }
        )
    return merged


def flips(previous: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conditions whose status differs from the previous list (each deserves an Event)."""
    before = {c.get("type"): c.get("status") for c in previous}
    return [c for c in current if before.get(c["type"]) != c["status"]]


def summarize(components: list[Observation]) -> tuple[str, list[Observation]]:
    """Phase and the Ready/Progressing/Degraded conditions derived from component conditions."""
    degraded = [c for c in components if not c.ok and c.reason in IMPOSSIBLE_CHANGE_REASONS]
    blocking = [c for c in components if not c.ok and c.type not in INFORMATIVE]
    ready = not blocking
    if degraded:
        phase = "Degraded"
    elif ready:
        phase = "Ready"
    else:
        phase = "Progressing"

    def names(items: list[Observation]) -> str:
        return ", ".join(f"{c.type.value} ({c.reason.value}: {c.message})" for c in items)

    summary = [
        Observation(
            ConditionType.READY,
            ready,
            Reason.ALL_COMPONENTS_READY if ready else Reason.COMPONENTS_NOT_READY,
            "every component is ready" if ready else "not ready: " + names(blocking),
        ),
        Observation(
            ConditionType.PROGRESSING,
            not ready and not degraded,
            Reason.RECONCILING if not ready and not degraded else Reason.RECONCILED,
            "waiting for components to become ready" if not ready else "reconciled",
        ),
        Observation(
            ConditionType.DEGRADED,
            bool(degraded),
            degraded[0].reason if degraded else Reason.NO_PROBLEM,
            names(degraded) if degraded else "no problem detected",
        ),
    ]
    return phase, summary
