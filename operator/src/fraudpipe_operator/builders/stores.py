"""Managed brokers (Redpanda or Apache Kafka), Redis and PostgreSQL: StatefulSets with claims,
Services, PDBs, NetworkPolicies, and the credentials Secrets (created once, never overwritten).

Both broker flavors keep one contract towards the pipeline: StatefulSet and headless Service
`<name>-kafka`, Kafka API on port `kafka` (9092), each broker advertised by its stable pod DNS
name, so that `<name>-kafka.<namespace>.svc:9092` bootstraps any client."""

from __future__ import annotations

from typing import Any

from fraudpipe_operator.builders.common import (
    KAFKA_ADMIN_PORT,
    KAFKA_CONTROLLER_PORT,
    KAFKA_PORT,
    KAFKA_RPC_PORT,
    POSTGRES_PORT,
    REDIS_PORT,
    SCHEMA_REGISTRY_PORT,
    OperatorPods,
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
from fraudpipe_operator.models.v1alpha1 import APACHE_KAFKA_IMAGE, REDPANDA_IMAGE

REDPANDA_UID = 101
APACHE_KAFKA_UID = 1000  # appuser in apache/kafka
APACHE_KAFKA_DATA = "/var/lib/kafka/data"
# apache/kafka 3.7+ labels every StatefulSet pod with its ordinal (Kubernetes 1.28+): the node.id.
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
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


# -- managed brokers -------------------------------------------------------------------------
def kafka_image(pipeline: FraudPipeline) -> str:
    managed = pipeline.spec.kafka.managed
    default = REDPANDA_IMAGE if managed.flavor == "redpanda" else APACHE_KAFKA_IMAGE
    return managed.image or default


def build_kafka_statefulset(pipeline: FraudPipeline) -> dict[str, Any]:
    managed = pipeline.spec.kafka.managed
    if managed.flavor == "kafka":
        container, volumes, uid = apache_kafka_container(pipeline)
    else:
        container, volumes, uid = redpanda_container(pipeline)
    return statefulset(
        pipeline,
        "kafka",
        replicas=managed.replicas,
        uid=uid,
        container=container,
        volumes=volumes,
        claim=pvc_template("data", managed.storage.size, managed.storage.storage_class_name),
    )


def broker_domain(pipeline: FraudPipeline) -> tuple[str, str]:
    """The headless Service's name and the domain under which each broker pod resolves."""
    service = child_name(pipeline, "kafka")
    return service, f"{service}.{pipeline.namespace}.svc"


def redpanda_serves_registry(pipeline: FraudPipeline) -> bool:
    """Managed Redpanda is the registry of an Avro pipeline that names none of its own; a JSON
    pipeline's brokers stay exactly as they were."""
    kafka = pipeline.spec.kafka
    return (
        kafka.mode == "managed"
        and kafka.managed.flavor == "redpanda"
        and kafka.topics.transactions.format == "avro"
        and kafka.schema_registry is None
    )


def redpanda_container(
    pipeline: FraudPipeline,
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    managed = pipeline.spec.kafka.managed
    serves_registry = redpanda_serves_registry(pipeline)
    service, domain = broker_domain(pipeline)
    seeds = ",".join(f"{service}-{i}.{domain}:{KAFKA_RPC_PORT}" for i in range(managed.replicas))
    tmp, tmp_mount = tmp_volume()
    container = {
        "name": "redpanda",
        "image": kafka_image(pipeline),
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
            *(
                [f"--schema-registry-addr=0.0.0.0:{SCHEMA_REGISTRY_PORT}"]
                if serves_registry
                else []
            ),
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [
            {"name": "kafka", "containerPort": KAFKA_PORT},
            {"name": "rpc", "containerPort": KAFKA_RPC_PORT},
            {"name": "admin", "containerPort": KAFKA_ADMIN_PORT},
            *(
                [{"name": "schema-registry", "containerPort": SCHEMA_REGISTRY_PORT}]
                if serves_registry
                else []
            ),
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
    return container, [{"name": "config", "emptyDir": {}}, tmp], REDPANDA_UID


def apache_kafka_container(
    pipeline: FraudPipeline,
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Apache Kafka in KRaft mode, every pod a broker and a voter of the controller quorum,
    configured through the apache/kafka image's KAFKA_* variables (each one a
    server.properties entry)."""
    managed = pipeline.spec.kafka.managed
    service, domain = broker_domain(pipeline)
    voters = ",".join(
        f"{i}@{service}-{i}.{domain}:{KAFKA_CONTROLLER_PORT}" for i in range(managed.replicas)
    )
    # Kafka's internal topics (offsets, transaction state) as replicated as the brokers allow.
    internal_replicas = min(managed.replicas, 3)
    min_isr = 2 if internal_replicas == 3 else 1
    tmp, tmp_mount = tmp_volume()
    settings = {
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://:{KAFKA_PORT},CONTROLLER://:{KAFKA_CONTROLLER_PORT}",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://$(POD_NAME).{domain}:{KAFKA_PORT}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": voters,
        # A subfolder: a fresh volume's lost+found is not a partition.
        "KAFKA_LOG_DIRS": f"{APACHE_KAFKA_DATA}/logs",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": str(internal_replicas),
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": str(internal_replicas),
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": str(min_isr),
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": str(internal_replicas),
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": str(min_isr),
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        # Topics are the operator's (as with Redpanda): a typo must not create one.
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_HEAP_OPTS": "-Xms512m -Xmx512m",
    }
    container = {
        "name": "kafka",
        "image": kafka_image(pipeline),
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "KAFKA_NODE_ID",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}},
            },
            *(value(name, setting) for name, setting in settings.items()),
        ],
        "ports": [
            {"name": "kafka", "containerPort": KAFKA_PORT},
            {"name": "controller", "containerPort": KAFKA_CONTROLLER_PORT},
        ],
        # The JVM's first start (storage format included) is slow on a small node.
        "startupProbe": {
            "tcpSocket": {"port": KAFKA_PORT},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "readinessProbe": {"tcpSocket": {"port": KAFKA_PORT}, "periodSeconds": 10},
        "livenessProbe": {
            "tcpSocket": {"port": KAFKA_CONTROLLER_PORT},
            "periodSeconds": 20,
            "failureThreshold": 3,
        },
        "resources": resources(managed.resources),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "data", "mountPath": APACHE_KAFKA_DATA}, tmp_mount],
    }
    return container, [tmp], APACHE_KAFKA_UID


def build_kafka_service(pipeline: FraudPipeline) -> dict[str, Any]:
    if pipeline.spec.kafka.managed.flavor == "kafka":
        ports = {"kafka": KAFKA_PORT, "controller": KAFKA_CONTROLLER_PORT}
    else:
        ports = {"kafka": KAFKA_PORT, "rpc": KAFKA_RPC_PORT, "admin": KAFKA_ADMIN_PORT}
        if redpanda_serves_registry(pipeline):
            ports["schema-registry"] = SCHEMA_REGISTRY_PORT
    return headless_or_cluster_service(pipeline, "kafka", ports, headless=True)


def build_kafka_pdb(pipeline: FraudPipeline) -> dict[str, Any]:
    return pdb(pipeline, "kafka", pipeline.spec.kafka.managed.replicas)


KEDA_OPERATOR_LABELS = {"app": "keda-operator"}


def build_kafka_networkpolicy(
    pipeline: FraudPipeline, operator_pods: OperatorPods | None = None
) -> dict[str, Any]:
    operator = (operator_pods or OperatorPods()).peer()
    if pipeline.spec.kafka.managed.flavor == "kafka":
        policy = network_policy(pipeline, "kafka", [KAFKA_PORT, KAFKA_CONTROLLER_PORT], [operator])
    else:
        registry = [SCHEMA_REGISTRY_PORT] if redpanda_serves_registry(pipeline) else []
        policy = network_policy(
            pipeline,
            "kafka",
            [KAFKA_PORT, KAFKA_RPC_PORT, *registry],
            [operator],
            [KAFKA_ADMIN_PORT],
        )
    autoscaling = pipeline.spec.scorer.autoscaling
    if autoscaling.enabled and autoscaling.engine == "keda":
        # KEDA's operator reads the group's lag itself (its pods carry app=keda-operator in
        # KEDA's manifests and Helm chart): the Kafka port only, and only from KEDA's own
        # namespace (a label alone is anyone's to set on their pod).
        keda = {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": autoscaling.keda.namespace}
            },
            "podSelector": {"matchLabels": KEDA_OPERATOR_LABELS},
        }
        policy["spec"]["ingress"].append(
            {"from": [keda], "ports": [{"protocol": "TCP", "port": KAFKA_PORT}]}
        )
    return policy


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
            # The scorer's replay records are one hash per minute (hundreds of thousands of
            # fields at full rate): freed in the background when they expire, not in a pause.
            "--lazyfree-lazy-expire",
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
