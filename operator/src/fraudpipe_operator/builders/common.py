"""Names, labels, ownership and the restricted security context every child shares."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from fraudpipe_operator.models import API_VERSION, KIND, FraudPipeline
from fraudpipe_operator.models.v1alpha1 import Resources

FIELD_MANAGER = "fraudpipe-operator"
PIPELINE_LABEL = "fraudpipe.io/pipeline"
COMPONENT_LABEL = "fraudpipe.io/component"
CHECKSUM_ANNOTATION = "fraudpipe.io/config-checksum"
# Pods of the operator itself (the chart sets these labels): they may reach the managed broker
# to create and grow topics through the Kafka admin API, and the scorers' routing control.
OPERATOR_POD_LABELS = {
    "app.kubernetes.io/name": "fraudpipe",
    "app.kubernetes.io/component": "operator",
}
INSTANCE_LABEL = "app.kubernetes.io/instance"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace


@dataclass(frozen=True)
class OperatorPods:
    """The operator's own pods as the chart runs them: their namespace (downward API) and
    Helm release. A NetworkPolicy admits exactly these; unknown (an operator run outside the
    cluster, which reaches no pod through a NetworkPolicy anyway), pods with the chart's labels
    in any namespace."""

    namespace: str | None = None
    instance: str | None = None

    def peer(self) -> dict[str, Any]:
        labels = dict(OPERATOR_POD_LABELS)
        if self.instance:
            labels[INSTANCE_LABEL] = self.instance
        namespaces = (
            {"matchLabels": {NAMESPACE_NAME_LABEL: self.namespace}} if self.namespace else {}
        )
        return {"namespaceSelector": namespaces, "podSelector": {"matchLabels": labels}}


METRICS_PORT = 9000
# The scorer's PUT /routing (canary weights), open to the operator's pods only.
SCORER_CONTROL_PORT = 9001
API_PORT = 8000
KAFKA_PORT = 9092
KAFKA_RPC_PORT = 33145
KAFKA_CONTROLLER_PORT = 9093
KAFKA_ADMIN_PORT = 9644
SCHEMA_REGISTRY_PORT = 8081  # Redpanda's built-in schema registry
REDIS_PORT = 6379
POSTGRES_PORT = 5432


def child_name(pipeline: FraudPipeline, component: str) -> str:
    return f"{pipeline.name}-{component}"


def selector_labels(pipeline: FraudPipeline, component: str) -> dict[str, str]:
    return {PIPELINE_LABEL: pipeline.name, COMPONENT_LABEL: component}


def labels(pipeline: FraudPipeline, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "fraudpipe",
        "app.kubernetes.io/instance": pipeline.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
        **selector_labels(pipeline, component),
    }


def owner_reference(pipeline: FraudPipeline) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": pipeline.name,
        "uid": pipeline.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    pipeline: FraudPipeline, name: str, component: str, *, owned: bool = True
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": pipeline.namespace,
        "labels": labels(pipeline, component),
    }
    if owned:
        meta["ownerReferences"] = [owner_reference(pipeline)]
    return meta


def checksum(*parts: Any) -> str:
    """Stable digest of configuration: changes exactly when the configuration does."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def resources(spec: Resources) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, values in (("requests", spec.requests), ("limits", spec.limits)):
        present = values.model_dump(exclude_none=True)
        if present:
            out[kind] = present
    return out


def pod_security(uid: int) -> dict[str, Any]:
    """Pod-level part of the restricted Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def tmp_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """A writable /tmp beside a read-only root filesystem."""
    mount_path = "/tmp"  # noqa: S108  (an emptyDir of the pod's own, not the host's /tmp)
    return {"name": "tmp", "emptyDir": {}}, {"name": "tmp", "mountPath": mount_path}


def pvc_template(name: str, size: str, storage_class: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def pdb(pipeline: FraudPipeline, component: str, replicas: int) -> dict[str, Any]:
    """Voluntary evictions never take the last (or, with quorum, the majority of) replicas."""
    spec: dict[str, Any] = {"selector": {"matchLabels": selector_labels(pipeline, component)}}
    if replicas > 1:
        spec["minAvailable"] = replicas // 2 + 1
    else:
        spec["maxUnavailable"] = 0 if replicas == 1 else 1
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(pipeline, child_name(pipeline, component), component),
        "spec": spec,
    }


def network_policy(
    pipeline: FraudPipeline,
    component: str,
    ports: list[int],
    extra_peers: list[dict[str, Any]] | None = None,
    metrics_ports: list[int] | None = None,
) -> dict[str, Any]:
    """Only pods of this pipeline (and `extra_peers`) may open `ports` on `component`;
    `metrics_ports` also admit the scrapers of `spec.monitoring.scrapers`."""
    peers: list[dict[str, Any]] = [
        {"podSelector": {"matchLabels": {PIPELINE_LABEL: pipeline.name}}}
    ]
    peers += extra_peers or []
    scrapers = [
        {
            "namespaceSelector": {"matchLabels": dict(s.namespace_labels)}
            if s.namespace_labels
            else {},
            "podSelector": {"matchLabels": dict(s.pod_labels)},
        }
        for s in pipeline.spec.monitoring.scrapers
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(pipeline, child_name(pipeline, component), component),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(pipeline, component)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": peers, "ports": [{"protocol": "TCP", "port": p} for p in ports]},
                *(
                    [
                        {
                            "from": peers + scrapers,
                            "ports": [{"protocol": "TCP", "port": p} for p in metrics_ports],
                        }
                    ]
                    if metrics_ports
                    else []
                ),
            ],
        },
    }


def headless_or_cluster_service(
    pipeline: FraudPipeline,
    component: str,
    ports: dict[str, int],
    *,
    headless: bool = False,
    service_type: str = "ClusterIP",
    name: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": service_type,
        "selector": selector_labels(pipeline, component),
        "ports": [
            {"name": port_name, "port": port, "targetPort": port, "protocol": "TCP"}
            for port_name, port in ports.items()
        ],
    }
    if headless:
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = True
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(pipeline, name or child_name(pipeline, component), component),
        "spec": spec,
    }
