"""Managed Redpanda, Redis and PostgreSQL: StatefulSets with claims, Services, PDBs,
NetworkPolicies, and the credentials Secrets (created once, never overwritten)."""

from __future__ import annotations

from typing import Any

from fraudpipe_operator.builders.common import (
    KAFKA_ADMIN_PORT,
    KAFKA_PORT,
    KAFKA_RPC_PORT,
    OPERATOR_POD_LABELS,
    POSTGRES_PORT,
    REDIS_PORT,
    checksum,
    child_name,
    container_security,
    headless_or_cluster_service,
    labels,
    metadata,
    network_policy,
    pdb,
    pod_security,
    pvc_template,
    resources,
    selector_labels,
    tmp_volume,
)
from fraudpipe_operator.builders.connections import (
    POSTGRES_DATABASE,
    POSTGRES_USER,
    from_secret,
    postgres_secret_name,
    redis_secret_name,
    value,
)
from fraudpipe_operator.models import FraudPipeline

REDPANDA_UID = 101
REDIS_UID = 999
POSTGRES_UID = 999


def statefulset(
    pipeline: FraudPipeline,
    component: str,
    *,
    replicas: int,
    uid: int,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    claim: dict[str, Any],
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(pipeline, child_name(pipeline, component), component),
        "spec": {
            "serviceName": child_name(pipeline, component),
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(pipeline, component)},
            "template": {
                "metadata": {
                    "labels": labels(pipeline, component),
                    "annotations": {"fraudpipe.io/config-checksum": checksum(container)},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(uid),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [claim],
        },
    }


# -- Redpanda ---------------------------------------------------------------------------------
def build_kafka_statefulset(pipeline: FraudPipeline) -> dict[str, Any]:
    managed = pipeline.spec.kafka.managed
    service = child_name(pipeline, "kafka")
    domain = f"{service}.{pipeline.namespace}.svc"
    seeds = ",".join(f"{service}-{i}.{domain}:{KAFKA_RPC_PORT}" for i in range(managed.replicas))
    tmp, tmp_mount = tmp_volume()
    container = {
        "name": "redpanda",
        "image": managed.image,
        "args": [
            "redpanda",
            "start",
            "--smp=1",
            "--overprovisioned",
            "--default-log-level=info",
            f"--kafka-addr=internal://0.0.0.0:{KAFKA_PORT}",
            f"--advertise-kafka-addr=internal://$(POD_NAME).{domain}:{KAFKA_PORT}",
            f"--rpc-addr=0.0.0.0:{KAFKA_RPC_PORT}",
            f"--advertise-rpc-addr=$(POD_NAME).{domain}:{KAFKA_RPC_PORT}",
            f"--seeds={seeds}",
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [
            {"name": "kafka", "containerPort": KAFKA_PORT},
            {"name": "rpc", "containerPort": KAFKA_RPC_PORT},
            {"name": "admin", "containerPort": KAFKA_ADMIN_PORT},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/v1/status/ready", "port": KAFKA_ADMIN_PORT},
            "periodSeconds": 10,
        },
        "resources": resources(managed.resources),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/redpanda/data"},
            {"name": "config", "mountPath": "/etc/redpanda"},
            tmp_mount,
        ],
    }
    return statefulset(
        pipeline,
        "kafka",
        replicas=managed.replicas,
        uid=REDPANDA_UID,
        container=container,
        volumes=[{"name": "config", "emptyDir": {}}, tmp],
        claim=pvc_template("data", managed.storage.size, managed.storage.storage_class_name),
    )


def build_kafka_service(pipeline: FraudPipeline) -> dict[str, Any]:
    ports = {"kafka": KAFKA_PORT, "rpc": KAFKA_RPC_PORT, "admin": KAFKA_ADMIN_PORT}
    return headless_or_cluster_service(pipeline, "kafka", ports, headless=True)


def build_kafka_pdb(pipeline: FraudPipeline) -> dict[str, Any]:
    return pdb(pipeline, "kafka", pipeline.spec.kafka.managed.replicas)


def build_kafka_networkpolicy(pipeline: FraudPipeline) -> dict[str, Any]:
    operator = {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": dict(OPERATOR_POD_LABELS)},
    }
    return network_policy(
        pipeline, "kafka", [KAFKA_PORT, KAFKA_RPC_PORT], [operator], [KAFKA_ADMIN_PORT]
    )


# -- Redis ------------------------------------------------------------------------------------
def build_redis_statefulset(pipeline: FraudPipeline) -> dict[str, Any]:
    managed = pipeline.spec.redis.managed
    tmp, tmp_mount = tmp_volume()
    container = {
        "name": "redis",
        "image": managed.image,
        "args": [
            "--requirepass",
            "$(REDIS_PASSWORD)",
            "--dir",
            "/data",
            "--appendonly",
            "yes",
            "--protected-mode",
            "no",
        ],
        "env": [from_secret("REDIS_PASSWORD", redis_secret_name(pipeline), "password")],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
        "readinessProbe": {"tcpSocket": {"port": REDIS_PORT}, "periodSeconds": 10},
        "resources": resources(managed.resources),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, tmp_mount],
    }
    return statefulset(
        pipeline,
        "redis",
        replicas=1,
        uid=REDIS_UID,
        container=container,
        volumes=[tmp],
        claim=pvc_template("data", managed.storage.size, managed.storage.storage_class_name),
    )


def build_redis_service(pipeline: FraudPipeline) -> dict[str, Any]:
    return headless_or_cluster_service(pipeline, "redis", {"redis": REDIS_PORT})


def build_redis_pdb(pipeline: FraudPipeline) -> dict[str, Any]:
    return pdb(pipeline, "redis", 1)


def build_redis_networkpolicy(pipeline: FraudPipeline) -> dict[str, Any]:
    return network_policy(pipeline, "redis", [REDIS_PORT])


# -- PostgreSQL -------------------------------------------------------------------------------
def build_postgres_statefulset(pipeline: FraudPipeline) -> dict[str, Any]:
    managed = pipeline.spec.postgres.managed
    secret = postgres_secret_name(pipeline)
    tmp, tmp_mount = tmp_volume()
    container = {
        "name": "postgres",
        "image": managed.image,
        "env": [
            from_secret("POSTGRES_USER", secret, "username"),
            from_secret("POSTGRES_PASSWORD", secret, "password"),
            from_secret("POSTGRES_DB", secret, "database"),
            value("PGDATA", "/var/lib/postgresql/data/pgdata"),
        ],
        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT}],
        "readinessProbe": {
            "exec": {"command": ["pg_isready", "-U", POSTGRES_USER, "-d", POSTGRES_DATABASE]},
            "periodSeconds": 10,
        },
        "resources": resources(managed.resources),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            tmp_mount,
        ],
    }
    return statefulset(
        pipeline,
        "postgres",
        replicas=1,
        uid=POSTGRES_UID,
        container=container,
        volumes=[{"name": "run", "emptyDir": {}}, tmp],
        claim=pvc_template("data", managed.storage.size, managed.storage.storage_class_name),
    )


def build_postgres_service(pipeline: FraudPipeline) -> dict[str, Any]:
    return headless_or_cluster_service(pipeline, "postgres", {"postgres": POSTGRES_PORT})


def build_postgres_pdb(pipeline: FraudPipeline) -> dict[str, Any]:
    return pdb(pipeline, "postgres", 1)


def build_postgres_networkpolicy(pipeline: FraudPipeline) -> dict[str, Any]:
    return network_policy(pipeline, "postgres", [POSTGRES_PORT])


# -- credentials ------------------------------------------------------------------------------
def build_redis_secret(pipeline: FraudPipeline, password: str) -> dict[str, Any]:
    """Created only when absent. Not owned by the pipeline: like the claims, it outlives the
    FraudPipeline, so that a re-created pipeline still opens its old data."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(pipeline, redis_secret_name(pipeline), "redis", owned=False),
        "stringData": {"password": password},
    }


def build_postgres_secret(pipeline: FraudPipeline, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(pipeline, postgres_secret_name(pipeline), "postgres", owned=False),
        "stringData": {
            "username": POSTGRES_USER,
            "password": password,
            "database": POSTGRES_DATABASE,
        },
    }
