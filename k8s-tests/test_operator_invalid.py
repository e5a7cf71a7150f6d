"""The API server itself rejects invalid FraudPipelines (schema, enums, bounds, CEL rules), with
a message that names the offending field: no operator needed to catch a typo."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

sys.path.insert(0, str(Path(__file__).parent))
from operator_harness import (
    EXAMPLES,
    GROUP,
    MODEL_REF,
    PLURAL,
    VERSION,
    merge,
    operator_release,
)

pytestmark = pytest.mark.k8s
__all__ = ["operator_release"]  # fixture

EXTERNAL = {"kafka": {"mode": "external", "external": {"bootstrapServers": ["kafka:9092"]}}}

# (case, spec overrides merged into a valid spec, field path the message must name)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("replicas of the wrong type", {"scorer": {"replicas": "two"}}, "spec.scorer.replicas"),
    (
        "autoscaling min above max",
        {"scorer": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
        "spec.scorer.autoscaling.minReplicas",
    ),
    (
        "autoscaling window above an hour",
        {"scorer": {"autoscaling": {"scaleDown": {"stabilizationWindowSeconds": 7200}}}},
        "spec.scorer.autoscaling.scaleDown.stabilizationWindowSeconds",
    ),
    (
        "unknown autoscaling engine",
        {"scorer": {"autoscaling": {"engine": "hpa"}}},
        "spec.scorer.autoscaling.engine",
    ),
    (
        "lag per replica of zero",
        {"scorer": {"autoscaling": {"lagPerReplica": 0}}},
        "spec.scorer.autoscaling.lagPerReplica",
    ),
    ("model without a digest", {"model": {"ref": "registry/m:latest"}}, "spec.model.ref"),
    (
        "model digest too short",
        {"model": {"ref": "registry/m@sha256:abc"}},
        "spec.model.ref",
    ),
    (
        "canary without a digest",
        {"model": {"canary": {"ref": "registry/m:v2"}}},
        "spec.model.canary.ref",
    ),
    (
        "avro on Apache Kafka without a schema registry",
        {"kafka": {"managed": {"flavor": "kafka"}, "topics": {"transactions": {"format": "avro"}}}},
        "spec.kafka.schemaRegistry",
    ),
    (
        "unknown transactions format",
        {"kafka": {"topics": {"transactions": {"format": "protobuf"}}}},
        "spec.kafka.topics.transactions.format",
    ),
    (
        "external Kafka without servers",
        {"kafka": {"mode": "external"}},
        "spec.kafka.external.bootstrapServers",
    ),
    (
        "external Kafka with an empty server list",
        {"kafka": {"mode": "external", "external": {"bootstrapServers": []}}},
        "spec.kafka.external.bootstrapServers",
    ),
    (
        "bootstrap server without a port",
        {"kafka": {"mode": "external", "external": {"bootstrapServers": ["kafka.example.com"]}}},
        "spec.kafka.external.bootstrapServers[0]",
    ),
    (
        "negative partitions",
        {"kafka": {"topics": {"transactions": {"partitions": -3}}}},
        "spec.kafka.topics.transactions.partitions",
    ),
    (
        "replication factor above the broker count",
        {"kafka": {"topics": {"decisions": {"replicationFactor": 3}}}},
        "spec.kafka.topics",
    ),
    ("zero brokers", {"kafka": {"managed": {"replicas": 0}}}, "spec.kafka.managed.replicas"),
    ("unknown Kafka mode", {"kafka": {"mode": "cloud"}}, "spec.kafka.mode"),
    (
        "unknown broker flavor",
        {"kafka": {"managed": {"flavor": "zookeeper"}}},
        "spec.kafka.managed.flavor",
    ),
    (
        "storage size that is not a quantity",
        {"kafka": {"managed": {"storage": {"size": "lots"}}}},
        "spec.kafka.managed.storage.size",
    ),
    (
        "unsupported SASL mechanism",
        merge(
            EXTERNAL, {"kafka": {"external": {"sasl": {"mechanism": "GSSAPI", "secretName": "s"}}}}
        ),
        "spec.kafka.external.sasl.mechanism",
    ),
    (
        "flag threshold above block",
        {"scorer": {"rules": {"thresholds": {"flag": 0.95, "block": 0.9}}}},
        "spec.scorer.rules.thresholds.flag",
    ),
    (
        "threshold above 1",
        {"scorer": {"rules": {"thresholds": {"block": 1.5}}}},
        "spec.scorer.rules.thresholds.block",
    ),
    ("empty batch", {"scorer": {"batch": {"maxSize": 0}}}, "spec.scorer.batch.maxSize"),
    (
        "external Redis without its URL Secret",
        {"redis": {"mode": "external"}},
        "spec.redis.urlSecretRef",
    ),
    (
        "external PostgreSQL without its DSN Secret",
        {"postgres": {"mode": "external"}},
        "spec.postgres.dsnSecretRef",
    ),
    ("unknown Service type", {"api": {"serviceType": "Ingress"}}, "spec.api.serviceType"),
    (
        "Secret name that is not a Kubernetes name",
        {"api": {"authSecretRef": {"name": "Bad_Name", "key": "keys"}}},
        "spec.api.authSecretRef.name",
    ),
    ("negative producer rate", {"producer": {"rps": -5}}, "spec.producer.rps"),
    (
        "notifications without the webhook Secret",
        {"notify": {"enabled": True}},
        "spec.notify.webhookUrlSecretRef",
    ),
    (
        "report schedule that is not cron",
        {"report": {"enabled": True, "schedule": "nightly"}},
        "spec.report.schedule",
    ),
    (
        "retention without any days",
        {"retention": {"enabled": True}},
        "spec.retention.alertsDays",
    ),
    (
        "feedback kept for less time than alerts",
        {"retention": {"enabled": True, "alertsDays": 90, "feedbackDays": 30}},
        "spec.retention.feedbackDays",
    ),
    ("archive without an object store", {"archive": {"enabled": True}}, "spec.objectStore"),
    ("backups without an object store", {"backup": {"enabled": True}}, "spec.objectStore"),
    (
        "object store without credentials",
        {"objectStore": {"bucket": "fraud-archive"}},
        "spec.objectStore.credentialsSecretRef",
    ),
    (
        "bucket that is not an S3 bucket name",
        {"objectStore": {"bucket": "Fraud_Archive", "credentialsSecretRef": {"name": "s3"}}},
        "spec.objectStore.bucket",
    ),
    (
        "object store endpoint without a scheme",
        {
            "objectStore": {
                "endpoint": "minio:9000",
                "bucket": "fraud-archive",
                "credentialsSecretRef": {"name": "s3"},
            }
        },
        "spec.objectStore.endpoint",
    ),
    ("keeping no backup", {"backup": {"keep": 0}}, "spec.backup.keep"),
    ("unknown log level", {"logLevel": "TRACE"}, "spec.logLevel"),
    (
        "metrics scraper that would match every pod",
        {"monitoring": {"scrapers": [{"namespaceLabels": {"team": "obs"}, "podLabels": {}}]}},
        "spec.monitoring.scrapers[0].podLabels",
    ),
    (
        "trusted proxy that is not an address",
        {"api": {"trustedProxies": ["ingress.example.com"]}},
        "spec.api.trustedProxies[0]",
    ),
    (
        "KEDA namespace that is not a Kubernetes name",
        {"scorer": {"autoscaling": {"keda": {"namespace": "KEDA_ns"}}}},
        "spec.scorer.autoscaling.keda.namespace",
    ),
]


def body(spec: dict[str, Any], *, with_model: bool = True) -> dict[str, Any]:
    base: dict[str, Any] = {"model": {"ref": MODEL_REF}} if with_model else {}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FraudPipeline",
        "metadata": {"name": f"invalid-{uuid.uuid4().hex[:8]}"},
        "spec": merge(base, spec),
    }


def create(kube_client: Any, namespace: str, obj: dict[str, Any]) -> Any:
    return client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, obj
    )


def test_a_minimal_pipeline_is_accepted_and_defaulted(
    operator_release: Any, kube_client: Any, k8s_namespace: str
) -> None:
    created = create(
        kube_client, k8s_namespace, body({"kafka": {"topics": {"dlq": {"partitions": 2}}}})
    )
    spec = created["spec"]
    assert spec["kafka"]["topics"]["dlq"] == {
        "name": "transactions.v1.dlq",
        "partitions": 2,
        "replicationFactor": 1,
        "retentionMs": 604800000,
    }
    assert spec["kafka"]["mode"] == "managed"
    assert spec["kafka"]["topics"]["transactions"]["name"] == "transactions.v1"
    assert spec["scorer"]["batch"] == {"maxSize": 500, "maxWaitMs": 50}
    assert spec["redis"]["managed"]["image"].startswith("redis:7")
    assert spec["postgres"]["managed"]["image"].startswith("postgres:16")
    assert spec["report"] == {"enabled": False, "schedule": "15 0 * * *", "output": "json"}
    assert spec["notify"]["enabled"] is False
    assert spec["retention"] == {"enabled": False, "schedule": "30 1 * * *", "batchSize": 1000}
    assert spec["archive"]["enabled"] is False
    assert spec["backup"] == {"enabled": False, "schedule": "0 2 * * *", "keep": 7, "image": ""}
    assert "objectStore" not in spec


def test_the_lifecycle_example_is_accepted(
    operator_release: Any, kube_client: Any, k8s_namespace: str
) -> None:
    example = yaml.safe_load((EXAMPLES / "lifecycle.yaml").read_text())
    example["metadata"]["name"] = f"lifecycle-{uuid.uuid4().hex[:8]}"
    created = create(kube_client, k8s_namespace, example)
    assert created["spec"]["kafka"]["topics"]["transactions"]["format"] == "avro"
    assert created["spec"]["retention"]["feedbackDays"] == 730


def test_notifications_report_retention_archive_and_backup_are_accepted_when_complete(
    operator_release: Any, kube_client: Any, k8s_namespace: str
) -> None:
    created = create(
        kube_client,
        k8s_namespace,
        body(
            {
                "notify": {
                    "enabled": True,
                    "webhookUrlSecretRef": {"name": "slack-webhook", "key": "url"},
                },
                "report": {"enabled": True, "schedule": "30 1 * * 1-5"},
                # As long as alerts is long enough for feedback.
                "retention": {"enabled": True, "alertsDays": 90, "feedbackDays": 90},
                "objectStore": {
                    "endpoint": "http://minio.storage:9000",
                    "bucket": "fraud-archive",
                    "prefix": "payments/eu",
                    "credentialsSecretRef": {"name": "s3-credentials"},
                },
                "archive": {"enabled": True},
                "backup": {"enabled": True, "keep": 30},
            }
        ),
    )
    assert created["spec"]["objectStore"]["region"] == "us-east-1"
    assert created["spec"]["objectStore"]["credentialsSecretRef"]["accessKeyIdKey"] == (
        "AWS_ACCESS_KEY_ID"
    )
    assert created["spec"]["archive"]["maxWaitSeconds"] == 300
    assert created["spec"]["notify"]["ratePerMinute"] == 30
    assert created["spec"]["report"]["schedule"] == "30 1 * * 1-5"
    assert created["spec"]["retention"]["batchSize"] == 1000


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_pipeline_is_rejected_naming_the_field(
    operator_release: Any,
    kube_client: Any,
    k8s_namespace: str,
    case: str,
    spec: dict[str, Any],
    field: str,
) -> None:
    with pytest.raises(ApiException) as rejected:
        create(kube_client, k8s_namespace, body(spec))
    assert rejected.value.status == 422, rejected.value.body
    message = json.loads(rejected.value.body)["message"]
    assert f"{field}:" in message, f"{case}: {message}"


def test_a_pipeline_without_a_model_is_rejected(
    operator_release: Any, kube_client: Any, k8s_namespace: str
) -> None:
    with pytest.raises(ApiException) as rejected:
        create(kube_client, k8s_namespace, body({}, with_model=False))
    assert rejected.value.status == 422
    assert "spec.model: Required value" in json.loads(rejected.value.body)["message"]


# -- updates: what cannot change on a running pipeline -----------------------------------------
TRANSITIONS = [
    (
        "fewer partitions",
        {"kafka": {"topics": {"transactions": {"partitions": 6}}}},
        {"kafka": {"topics": {"transactions": {"partitions": 3}}}},
        "spec.kafka.topics.transactions.partitions",
    ),
    (
        "another replication factor",
        {"kafka": {"topics": {"decisions": {"replicationFactor": 1}}}},
        {"kafka": {"topics": {"decisions": {"replicationFactor": 3}}}},
        "spec.kafka.topics.decisions.replicationFactor",
    ),
    (
        "another broker flavor",
        {"kafka": {"managed": {"flavor": "redpanda"}}},
        {"kafka": {"managed": {"flavor": "kafka"}}},
        "spec.kafka.managed.flavor",
    ),
]


@pytest.mark.parametrize(
    ("case", "before", "after", "field"), TRANSITIONS, ids=[c[0] for c in TRANSITIONS]
)
def test_an_impossible_change_is_rejected_naming_the_field(
    operator_release: Any,
    kube_client: Any,
    k8s_namespace: str,
    case: str,
    before: dict[str, Any],
    after: dict[str, Any],
    field: str,
) -> None:
    api = client.CustomObjectsApi(kube_client)
    name = create(kube_client, k8s_namespace, body(before))["metadata"]["name"]
    with pytest.raises(ApiException) as rejected:
        api.patch_namespaced_custom_object(
            GROUP, VERSION, k8s_namespace, PLURAL, name, {"spec": after}
        )
    assert rejected.value.status == 422, rejected.value.body
    message = json.loads(rejected.value.body)["message"]
    assert f"{field}:" in message, f"{case}: {message}"


def test_switching_to_external_kafka_keeps_the_flavor(
    operator_release: Any, kube_client: Any, k8s_namespace: str
) -> None:
    """Leaving for an external Kafka keeps the managed brokers' volumes: the flavor stays as
    written. Dropping the managed block (its flavor would default back to redpanda) is refused,
    naming the field; keeping it is accepted."""
    api = client.CustomObjectsApi(kube_client)
    created = create(kube_client, k8s_namespace, body({"kafka": {"managed": {"flavor": "kafka"}}}))
    name = created["metadata"]["name"]
    external = {"mode": "external", "external": {"bootstrapServers": ["kafka.example:9092"]}}
    dropped = created | {"spec": created["spec"] | {"kafka": external}}
    with pytest.raises(ApiException) as refused:
        api.replace_namespaced_custom_object(GROUP, VERSION, k8s_namespace, PLURAL, name, dropped)
    assert refused.value.status == 422, refused.value.body
    assert "spec.kafka.managed.flavor:" in json.loads(refused.value.body)["message"]
    kept = {**external, "managed": {"flavor": "kafka"}}
    replaced = api.patch_namespaced_custom_object(
        GROUP, VERSION, k8s_namespace, PLURAL, name, {"spec": {"kafka": kept}}
    )
    assert replaced["spec"]["kafka"]["mode"] == "external"
    assert replaced["spec"]["kafka"]["managed"]["flavor"] == "kafka"


def test_growing_partitions_and_renaming_a_topic_are_accepted(
    operator_release: Any, kube_client: Any, k8s_namespace: str
) -> None:
    api = client.CustomObjectsApi(kube_client)
    name = create(kube_client, k8s_namespace, body({}))["metadata"]["name"]
    # A renamed topic is a new topic: its partitions start over.
    change = {"transactions": {"partitions": 12}, "dlq": {"name": "rejects.v2", "partitions": 1}}
    patched = api.patch_namespaced_custom_object(
        GROUP, VERSION, k8s_namespace, PLURAL, name, {"spec": {"kafka": {"topics": change}}}
    )
    assert patched["spec"]["kafka"]["topics"]["transactions"]["partitions"] == 12
    assert patched["spec"]["kafka"]["topics"]["dlq"]["partitions"] == 1


def test_unknown_and_huge_fields_are_rejected_under_strict_validation(
    operator_release: Any, kube_client: Any, k8s_namespace: str
) -> None:
    """kubectl validates strictly by default: a misspelt field is an error, not silently
    dropped; a value beyond a bound names the bound."""
    api = client.CustomObjectsApi(kube_client)
    with pytest.raises(ApiException) as rejected:
        api.create_namespaced_custom_object(
            GROUP,
            VERSION,
            k8s_namespace,
            PLURAL,
            body({"scorer": {"replica": 3}}),
            field_validation="Strict",
        )
    assert rejected.value.status == 400, rejected.value.body
    message = json.loads(rejected.value.body)["message"]
    assert 'strict decoding error: unknown field "spec.scorer.replica"' in message
    with pytest.raises(ApiException) as huge:
        create(kube_client, k8s_namespace, body({"scorer": {"replicas": 10**12}}))
    assert huge.value.status == 422, huge.value.body
    assert "spec.scorer.replicas:" in json.loads(huge.value.body)["message"]
    long_image = "r/" + "a" * 600
    with pytest.raises(ApiException) as long:
        create(kube_client, k8s_namespace, body({"scorer": {"image": long_image}}))
    assert "spec.scorer.image: Too long" in json.loads(long.value.body)["message"]
