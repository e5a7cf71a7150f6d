"""The keda engine's objects: a ScaledObject with the kafka trigger on the scorer Deployment,
and the TriggerAuthentication it needs for a SASL or TLS broker. Pure builders.

KEDA computes the same formula as the builtin engine: its HPA asks for ceil(lag / lagThreshold)
replicas; `allowIdleConsumers: false` caps them at the partition count, and the HPA's behavior
carries the stabilization windows.
"""

from __future__ import annotations

from typing import Any

from fraudpipe_operator.autoscaling.decision import Policy, bounds
from fraudpipe_operator.builders.common import child_name, metadata
from fraudpipe_operator.builders.connections import kafka_bootstrap_servers
from fraudpipe_operator.models import FraudPipeline

API_VERSION = "keda.sh/v1alpha1"
SCALEDOBJECTS = "scaledobjects"
SASL_MODES = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
}


def scaledobject_name(pipeline: FraudPipeline) -> str:
    return child_name(pipeline, "scorer")


def triggerauthentication_name(pipeline: FraudPipeline) -> str:
    return child_name(pipeline, "scorer-kafka")


def build_scorer_triggerauthentication(pipeline: FraudPipeline) -> dict[str, Any] | None:
    """Credentials of an external SASL/TLS broker, read by KEDA from the user's Secrets (the
    values never pass through the operator). None when the broker needs none."""
    kafka = pipeline.spec.kafka
    external = kafka.external
    if kafka.mode != "external" or external is None:
        return None
    refs: list[dict[str, str]] = []
    if external.sasl is not None:
        refs += [
            {"parameter": p, "name": external.sasl.secret_name, "key": p}
            for p in ("username", "password")
        ]
    if external.tls.enabled and external.tls.ca_secret_ref is not None:
        ref = external.tls.ca_secret_ref
        refs.append({"parameter": "ca", "name": ref.name, "key": ref.key})
    if not refs:
        return None
    return {
        "apiVersion": API_VERSION,
        "kind": "TriggerAuthentication",
        "metadata": metadata(pipeline, triggerauthentication_name(pipeline), "scorer"),
        "spec": {"secretTargetRef": refs},
    }


def build_scorer_scaledobject(pipeline: FraudPipeline) -> dict[str, Any]:
    spec = pipeline.spec
    autoscaling = spec.scorer.autoscaling
    transactions = spec.kafka.topics.transactions
    trigger_metadata = {
        "bootstrapServers": kafka_bootstrap_servers(pipeline),
        "consumerGroup": spec.scorer.consumer_group,
        "topic": transactions.name,
        "lagThreshold": str(autoscaling.lag_per_replica),
        "activationLagThreshold": str(autoscaling.keda.activation_lag_threshold),
        # The scorer starts a new group at the earliest offset: lag counts from there too.
        "offsetResetPolicy": "earliest",
        # No replica beyond the partition count (it would get no partition)...
        "allowIdleConsumers": "false",
        # ...but every partition counts, as in the builtin engine's formula.
        "limitToPartitionsWithLag": "false",
    }
    external = spec.kafka.external
    if spec.kafka.mode == "external" and external is not None:
        if external.tls.enabled:
            trigger_metadata["tls"] = "enable"
        if external.sasl is not None:
            trigger_metadata["sasl"] = SASL_MODES[external.sasl.mechanism]
    trigger: dict[str, Any] = {"type": "kafka", "metadata": trigger_metadata}
    # The spec's partition count caps both counts here, as the broker's does in builtin.
    fewest, most = bounds(Policy.of(autoscaling), transactions.partitions)
    if build_scorer_triggerauthentication(pipeline) is not None:
        trigger["authenticationRef"] = {"name": triggerauthentication_name(pipeline)}
    return {
        "apiVersion": API_VERSION,
        "kind": "ScaledObject",
        "metadata": metadata(pipeline, scaledobject_name(pipeline), "scorer"),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": child_name(pipeline, "scorer"),
            },
            "pollingInterval": autoscaling.keda.polling_interval_seconds,
            "minReplicaCount": fewest,
            "maxReplicaCount": most,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": (
                                autoscaling.scale_up.stabilization_window_seconds
                            )
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": (
                                autoscaling.scale_down.stabilization_window_seconds
                            )
                        },
                    }
                }
            },
            "triggers": [trigger],
        },
    }
