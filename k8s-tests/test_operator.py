"""The operator on a real control plane, with the chart's RBAC: examples reach Ready, children
follow the spec, drift is undone, deletion cascades, a killed operator converges, topics are
created and grown (never shrunk) on a real broker, and monitoring follows the CRDs."""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))
from operator_harness import (
    REPO,
    OperatorProcess,
    Pipelines,
    example,
    kubectl,
    operator_kubeconfig,
    operator_release,
    run,
    start_operator,
    unique_topics,
    volumes,
    wait_for,
)

pytestmark = pytest.mark.k8s
__all__ = ["operator_kubeconfig", "operator_release", "start_operator", "volumes"]  # fixtures

CHECKSUM = "fraudpipe.io/config-checksum"
MEASURED: dict[str, float] = {}


def report(name: str, seconds: float) -> None:
    MEASURED[name] = seconds
    print(f"measured {name}: {seconds:.1f}s")


def deployment(kube_client: Any, namespace: str, name: str) -> Any:
    return client.AppsV1Api(kube_client).read_namespaced_deployment(name, namespace)


def env_of(workload: Any) -> dict[str, Any]:
    container = workload.spec.template.spec.containers[0]
    return {e.name: e.value if e.value is not None else e.value_from for e in container.env}


def topic_config(bootstrap: str, name: str, key: str) -> str:
    from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource("topic", name)
    (future,) = admin.describe_configs([resource]).values()
    value: str = future.result(timeout=30)[key].value
    return value


def topic_partitions(bootstrap: str, names: list[str]) -> dict[str, int]:
    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            topics = await admin.describe_topics(names)
        finally:
            await admin.close()
        return {t["topic"]: len(t["partitions"]) for t in topics if not t["error_code"]}

    return asyncio.run(describe())


def grow_topic(bootstrap: str, name: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewPartitions  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    (future,) = admin.create_partitions([NewPartitions(name, partitions)]).values()
    future.result(timeout=30)


@pytest.fixture
def managed_pipeline(
    kube_client: Any,
    k8s_namespace: str,
    kafka_bootstrap: str,
    start_operator: Any,
    volumes: Any,
) -> tuple[Pipelines, dict[str, Any], OperatorProcess]:
    """The managed example, topics renamed for this test, with its operator running."""
    operator = start_operator([k8s_namespace], kafka_bootstrap=kafka_bootstrap)
    volumes(k8s_namespace, "payments")
    body = example("managed.yaml", spec={"kafka": {"topics": unique_topics()}})
    pipelines = Pipelines(kube_client, k8s_namespace)
    pipelines.create(body)
    return pipelines, body, operator


def test_managed_example_reaches_ready_with_every_child(
    managed_pipeline: tuple[Pipelines, dict[str, Any], OperatorProcess],
    kube_client: Any,
    kubeconfig: str,
    k8s_namespace: str,
) -> None:
    pipelines, body, operator = managed_pipeline
    started = time.monotonic()
    kubectl(
        kubeconfig,
        "wait",
        "-n",
        k8s_namespace,
        "--for=condition=Ready",
        "fp/payments",
        "--timeout=180s",
    )
    report("managed example: apply to Ready", time.monotonic() - started)

    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    ns = k8s_namespace
    live = pipelines.get("payments")
    status = live["status"]
    assert status["phase"] == "Ready"
    # kopf's bookkeeping is in annotations under our prefix, never in the user's status.
    assert set(status) <= {
        "observedGeneration",
        "phase",
        "conditions",
        "consumerLag",
        "model",
        "scorerReplicas",
        "scorerSelector",
    }
    kopf_keys = [k for k in live["metadata"]["annotations"] if "kopf" in k or "last-handled" in k]
    assert kopf_keys
    assert all(k.startswith("fraudpipe.io/") for k in kopf_keys)
    assert live["metadata"]["finalizers"] == ["fraudpipe.io/finalizer"]
    assert status["observedGeneration"] == pipelines.get("payments")["metadata"]["generation"]
    assert status["model"] == "gbt@sha256:abababababab"

    scorer = apps.read_namespaced_deployment("payments-scorer", ns)
    env = env_of(scorer)
    assert scorer.spec.replicas == 2
    assert scorer.spec.template.spec.containers[0].image == "fraudpipe/scorer:test"
    assert env["MODEL_REF"] == body["spec"]["model"]["ref"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"payments-kafka.{ns}.svc:9092"
    assert env["TRANSACTIONS_TOPIC"] == body["spec"]["kafka"]["topics"]["transactions"]["name"]
    assert env["BATCH_MAX_SIZE"] == "500"
    assert scorer.status.ready_replicas == 2
    assert any(m.manager == "fraudpipe-operator" for m in scorer.metadata.managed_fields)
    assert scorer.metadata.owner_references[0].kind == "FraudPipeline"

    api = apps.read_namespaced_deployment("payments-api", ns)
    assert env_of(api)["API_KEYS_FILE"] == "/etc/fraudpipe/api-keys/keys"
    assert apps.read_namespaced_deployment("payments-producer", ns).status.ready_replicas == 1
    for component, size in (("kafka", "20Gi"), ("redis", "10Gi"), ("postgres", "10Gi")):
        sts = apps.read_namespaced_stateful_set(f"payments-{component}", ns)
        assert sts.status.ready_replicas == 1
        claim = sts.spec.volume_claim_templates[0]
        assert claim.spec.resources.requests["storage"] == size
        pod = sts.spec.template.spec
        assert pod.security_context.run_as_non_root is True
        assert pod.containers[0].security_context.read_only_root_filesystem is True
        assert client.PolicyV1Api(kube_client).read_namespaced_pod_disruption_budget(
            f"payments-{component}", ns
        )
        policy = client.NetworkingV1Api(kube_client).read_namespaced_network_policy(
            f"payments-{component}", ns
        )
        assert policy.spec.ingress[0]._from[0].pod_selector.match_labels == {
            "fraudpipe.io/pipeline": "payments"
        }
    batch = client.BatchV1Api(kube_client)
    jobs = batch.list_namespaced_job(ns, label_selector="fraudpipe.io/component=migrations")
    assert [j.status.succeeded for j in jobs.items] == [1]
    nightly = batch.read_namespaced_cron_job("payments-report", ns)
    assert nightly.spec.schedule == "15 0 * * *"
    assert nightly.spec.time_zone == "Etc/UTC"
    container = nightly.spec.job_template.spec.template.spec.containers[0]
    assert container.command[:4] == ["fraudpipe-api", "report", "--date", "yesterday"]
    assert "DATABASE_URL" in {e.name for e in container.env}
    secrets = {s.metadata.name for s in core.list_namespaced_secret(ns).items}
    assert {"payments-redis-credentials", "payments-postgres-credentials"} <= secrets
    pods = core.list_namespaced_pod(ns, label_selector="fraudpipe.io/pipeline=payments").items
    running = [p for p in pods if p.status.phase == "Running"]
    assert len(running) == 2 + 2 + 1 + 3  # scorer, api, producer, three stores
    assert all(p.spec.node_name.startswith("kwok-node-") for p in running)

    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port()}/metrics") as page:
        samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(page.read().decode())
            for sample in family.samples
        ]
    assert any(
        name == "fraudpipe_operator_reconciles_total"
        and labels == {"trigger": "daemon", "result": "Ready"}
        and value >= 1
        for name, labels, value in samples
    )
    assert any(
        name == "fraudpipe_operator_reconcile_duration_seconds_count" for name, _, _ in samples
    )
    assert (
        "fraudpipe_operator_pipeline_ready",
        {"pipeline_namespace": ns, "pipeline": "payments"},
        1.0,
    ) in samples

    table = kubectl(kubeconfig, "get", "fp", "-n", ns).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "READY", "LAG", "MODEL", "CANARY", "AGE"]
    assert row.split()[:5] == ["payments", "Ready", "True", "0", "gbt@sha256:abababababab"]


def test_spec_change_rolls_only_the_affected_deployment(
    managed_pipeline: tuple[Pipelines, dict[str, Any], OperatorProcess],
    kube_client: Any,
    kubeconfig: str,
    k8s_namespace: str,
) -> None:
    pipelines, _, _ = managed_pipeline
    pipelines.wait_condition("payments", "Ready", within_s=180)
    scorer_before = deployment(kube_client, k8s_namespace, "payments-scorer")
    api_before = deployment(kube_client, k8s_namespace, "payments-api")

    pipelines.patch("payments", {"scorer": {"batch": {"maxSize": 64}}})
    scorer = wait_for(
        lambda: (
            d
            if env_of(d := deployment(kube_client, k8s_namespace, "payments-scorer"))[
                "BATCH_MAX_SIZE"
            ]
            == "64"
            else None
        ),
        "scorer picks up the new batch size",
        within_s=30,
    )
    annotations = scorer.spec.template.metadata.annotations
    assert annotations[CHECKSUM] != scorer_before.spec.template.metadata.annotations[CHECKSUM]
    api = deployment(kube_client, k8s_namespace, "payments-api")
    assert api.metadata.generation == api_before.metadata.generation
    generation = pipelines.get("payments")["metadata"]["generation"]
    wait_for(
        lambda: pipelines.get("payments")["status"].get("observedGeneration") == generation,
        "status observes the new generation",
        within_s=30,
    )
    pipelines.wait_condition("payments", "Ready", within_s=60)

    # The scale subresource drives the scorer: `kubectl scale fp/payments --replicas=3`.
    kubectl(kubeconfig, "scale", "-n", k8s_namespace, "fp/payments", "--replicas=3")
    wait_for(
        lambda: deployment(kube_client, k8s_namespace, "payments-scorer").spec.replicas == 3,
        "scorer scaled through the FraudPipeline's scale subresource",
        within_s=30,
    )
    wait_for(
        lambda: pipelines.get("payments")["status"].get("scorerReplicas") == 3,
        "status reports the scorer's replicas",
        within_s=30,
    )
    assert pipelines.get("payments")["status"]["scorerSelector"] == (
        "fraudpipe.io/pipeline=payments,fraudpipe.io/component=scorer"
    )


def test_deleted_or_edited_children_are_restored_within_30s(
    managed_pipeline: tuple[Pipelines, dict[str, Any], OperatorProcess],
    kube_client: Any,
    k8s_namespace: str,
) -> None:
    pipelines, _, _ = managed_pipeline
    pipelines.wait_condition("payments", "Ready", within_s=180)
    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    networking = client.NetworkingV1Api(kube_client)
    ns = k8s_namespace

    old_uid = deployment(kube_client, ns, "payments-scorer").metadata.uid
    apps.delete_namespaced_deployment("payments-scorer", ns)
    networking.delete_namespaced_network_policy("payments-postgres", ns)
    started = time.monotonic()
    wait_for(
        lambda: deployment(kube_client, ns, "payments-scorer").metadata.uid != old_uid,
        "scorer Deployment re-created",
        within_s=30,
    )
    wait_for(
        lambda: networking.read_namespaced_network_policy("payments-postgres", ns),
        "NetworkPolicy re-created",
        within_s=30,
    )
    report("deleted Deployment restored", time.monotonic() - started)

    # A hand edit by another field manager is taken back (server-side apply with force).
    core.patch_namespaced_service(
        "payments-api", ns, {"spec": {"type": "NodePort"}}, field_manager="someone-else"
    )
    apps.patch_namespaced_stateful_set(
        "payments-redis", ns, {"spec": {"replicas": 3}}, field_manager="someone-else"
    )
    started = time.monotonic()
    wait_for(
        lambda: core.read_namespaced_service("payments-api", ns).spec.type == "ClusterIP",
        "Service type restored",
        within_s=30,
    )
    wait_for(
        lambda: apps.read_namespaced_stateful_set("payments-redis", ns).spec.replicas == 1,
        "StatefulSet replicas restored",
        within_s=30,
    )
    report("hand-edited children restored", time.monotonic() - started)
    pipelines.wait_condition("payments", "Ready", within_s=60)


def test_deleting_the_pipeline_garbage_collects_its_children(
    managed_pipeline: tuple[Pipelines, dict[str, Any], OperatorProcess],
    kube_client: Any,
    k8s_namespace: str,
) -> None:
    pipelines, _, _ = managed_pipeline
    pipelines.wait_condition("payments", "Ready", within_s=180)
    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    ns = k8s_namespace
    pipelines.delete("payments")
    started = time.monotonic()

    def gone() -> bool:
        selector = "fraudpipe.io/pipeline=payments"
        return not (
            apps.list_namespaced_deployment(ns, label_selector=selector).items
            or apps.list_namespaced_stateful_set(ns, label_selector=selector).items
            or core.list_namespaced_service(ns, label_selector=selector).items
            or client.BatchV1Api(kube_client).list_namespaced_job(ns).items
            or core.list_namespaced_config_map(ns, label_selector=selector).items
        )

    wait_for(gone, "children garbage-collected", within_s=90)
    report("pipeline deleted to children gone", time.monotonic() - started)
    assert not client.CustomObjectsApi(kube_client).list_namespaced_custom_object(
        "fraudpipe.io", "v1alpha1", ns, "fraudpipelines"
    )["items"]
    # Credentials outlive the pipeline, like its volumes (docs/decisions.md).
    secrets = {s.metadata.name for s in core.list_namespaced_secret(ns).items}
    assert "payments-postgres-credentials" in secrets


def test_operator_killed_mid_reconcile_converges_without_duplicates(
    kube_client: Any,
    k8s_namespace: str,
    kafka_bootstrap: str,
    start_operator: Any,
    volumes: Any,
) -> None:
    ns = k8s_namespace
    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    volumes(ns, "payments")
    first = start_operator([ns], kafka_bootstrap=kafka_bootstrap)
    pipelines = Pipelines(kube_client, ns)
    pipelines.create(example("managed.yaml", spec={"kafka": {"topics": unique_topics()}}))
    # Kill it while it is half-way: the stores exist, the services do not yet.
    wait_for(lambda: apps.list_namespaced_stateful_set(ns).items, "first children applied", 60)
    assert not apps.list_namespaced_deployment(ns).items
    first.kill()
    secrets_before = {
        s.metadata.name: s.metadata.uid
        for s in core.list_namespaced_secret(ns, label_selector="fraudpipe.io/pipeline").items
    }

    start_operator([ns], kafka_bootstrap=kafka_bootstrap)
    pipelines.wait_condition("payments", "Ready", within_s=180)
    deployments = sorted(d.metadata.name for d in apps.list_namespaced_deployment(ns).items)
    assert deployments == ["payments-api", "payments-producer", "payments-scorer"]
    statefulsets = sorted(s.metadata.name for s in apps.list_namespaced_stateful_set(ns).items)
    assert statefulsets == ["payments-kafka", "payments-postgres", "payments-redis"]
    assert len(client.BatchV1Api(kube_client).list_namespaced_job(ns).items) == 1
    replicasets = apps.list_namespaced_replica_set(ns).items
    assert sorted(r.metadata.owner_references[0].name for r in replicasets) == deployments
    secrets_after = {
        s.metadata.name: s.metadata.uid
        for s in core.list_namespaced_secret(ns, label_selector="fraudpipe.io/pipeline").items
    }
    assert secrets_after == secrets_before, "credentials must never be regenerated"


def test_external_kafka_topics_are_created_and_grown_never_shrunk(
    kube_client: Any,
    k8s_namespace: str,
    kafka_bootstrap: str,
    start_operator: Any,
    volumes: Any,
) -> None:
    ns = k8s_namespace
    start_operator([ns])  # no override: the operator dials the spec's bootstrapServers
    volumes(ns, "cards", ("redis", "postgres"))
    topics = unique_topics()
    topics["transactions"]["partitions"] = 3
    body = example(
        "external-kafka.yaml",
        spec={"kafka": {"external": {"bootstrapServers": [kafka_bootstrap]}, "topics": topics}},
    )
    pipelines = Pipelines(kube_client, ns)
    pipelines.create(body)
    pipelines.wait_condition("cards", "Ready", within_s=180)
    names = [t["name"] for t in topics.values()]
    transactions = topics["transactions"]["name"]
    assert topic_partitions(kafka_bootstrap, names) == {
        transactions: 3,
        topics["decisions"]["name"]: 3,
        topics["dlq"]["name"]: 1,
        topics["labels"]["name"]: 1,
    }
    # Room in the DLQ for a whole rejected message and its reason headers.
    assert topic_config(kafka_bootstrap, topics["dlq"]["name"], "max.message.bytes") == str(
        2 * 1_048_576
    )
    env = env_of(deployment(kube_client, ns, "cards-scorer"))
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == kafka_bootstrap
    assert (
        not client.AppsV1Api(kube_client)
        .list_namespaced_stateful_set(ns, label_selector="fraudpipe.io/component=kafka")
        .items
    )

    pipelines.patch("cards", {"kafka": {"topics": {"transactions": {"partitions": 5}}}})
    wait_for(
        lambda: topic_partitions(kafka_bootstrap, [transactions]) == {transactions: 5},
        "transactions topic grown to 5 partitions",
        within_s=30,
    )

    # The API server refuses a shrink (a CEL transition rule, test_operator_invalid.py)...
    with pytest.raises(client.ApiException) as refused:
        pipelines.patch("cards", {"kafka": {"topics": {"transactions": {"partitions": 2}}}})
    assert refused.value.status == 422
    assert "spec.kafka.topics.transactions.partitions" in refused.value.body
    # ...and a topic grown behind the spec's back (an admin, another tool) is reported, not
    # shrunk: Kafka cannot.
    grow_topic(kafka_bootstrap, transactions, 7)
    degraded = pipelines.wait_condition("cards", "Degraded", within_s=30)
    assert degraded["reason"] == "PartitionsCannotShrink"
    assert f"topic {transactions} has 7 partitions" in degraded["message"]
    assert pipelines.get("cards")["status"]["phase"] == "Degraded"
    assert topic_partitions(kafka_bootstrap, [transactions]) == {transactions: 7}
    events = client.CoreV1Api(kube_client).list_namespaced_event(
        ns, field_selector="involvedObject.name=cards"
    )
    assert any(e.type == "Warning" and e.reason == "Degraded" for e in events.items)


def test_monitoring_objects_follow_the_prometheus_operator_crds(
    managed_pipeline: tuple[Pipelines, dict[str, Any], OperatorProcess],
    kube_client: Any,
    kubeconfig: str,
    k8s_namespace: str,
) -> None:
    pipelines, _, _ = managed_pipeline
    extensions = client.ApiextensionsV1Api(kube_client)
    installed = {c.metadata.name for c in extensions.list_custom_resource_definition().items}
    monitoring_crds = {
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    }
    if not monitoring_crds & installed:
        pipelines.wait_condition("payments", "Ready", within_s=180)
        missing = pipelines.wait_condition("payments", "MonitoringReady", "False", within_s=30)
        assert missing["reason"] == "PrometheusOperatorCRDsMissing"
        events = client.CoreV1Api(kube_client).list_namespaced_event(
            k8s_namespace, field_selector="involvedObject.name=payments"
        )
        assert any(e.reason == "NotMonitoringReady" for e in events.items)

    crd_dir = run([str(REPO / "hack" / "fetch-monitoring-crds")]).stdout.strip()
    kubectl(kubeconfig, "apply", "--server-side", "-f", crd_dir)
    pipelines.wait_condition("payments", "MonitoringReady", "True", within_s=60)
    custom = client.CustomObjectsApi(kube_client)
    monitors = custom.list_namespaced_custom_object(
        "monitoring.coreos.com", "v1", k8s_namespace, "servicemonitors"
    )["items"]
    assert sorted(m["metadata"]["name"] for m in monitors) == [
        "payments-api",
        "payments-kafka",
        "payments-scorer",
    ]
    (rule,) = custom.list_namespaced_custom_object(
        "monitoring.coreos.com", "v1", k8s_namespace, "prometheusrules"
    )["items"]
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    alerts = {r["alert"] for r in rules if "alert" in r}
    assert {
        "FraudPipeConsumerLagHigh",
        "FraudPipeScorerDown",
        "FraudPipeDLQRateHigh",
        "FraudPipeAlertRateSpike",
        "FraudPipeCanaryFailing",
        "FraudPipeModelNotReady",
    } <= alerts
    assert "fraudpipe:transactions:rate5m" in {r.get("record") for r in rules}
    pipelines.wait_condition("payments", "Ready", within_s=60)
