"""Lag autoscaling of the scorer on the control plane, with the chart's RBAC and a real broker:
a backlog scales the scorer Deployment up (never above the partitions), a drained one scales it
down only after the stabilization window, and the operator's own apply of the Deployment never
undoes the autoscaler's count. With KEDA's CRDs the keda engine is a ScaledObject; without them
a condition says that the builtin engine stands in."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kubernetes import client, watch

sys.path.insert(0, str(Path(__file__).parent))
from operator_harness import (
    REPO,
    Pipelines,
    example,
    free_port,
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

PARTITIONS = 4
LAG_PER_REPLICA = 100
SCALE_DOWN_WINDOW_S = 15
# Short periods so that the test is quick; the daemon's re-apply of the Deployment every 2 s is
# what the autoscaler's count must survive.
SETTINGS = {
    "FRAUDPIPE_AUTOSCALING_INTERVAL_SECONDS": "1",
    "FRAUDPIPE_RECONCILE_INTERVAL_SECONDS": "2",
}


def commit(bootstrap: str, group: str, topic: str, at_end: bool) -> None:
    """Commit the group's offsets at the start or the end of every partition, as a scorer that
    has not begun, or has finished, would."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = []
        for partition in range(PARTITIONS):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            offsets.append(TopicPartition(topic, partition, high if at_end else low))
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        producer.produce(topic, key=f"user-{i}".encode(), value=b"{}", partition=i % PARTITIONS)
    assert producer.flush(30) == 0


def scorer_replicas(kube_client: Any, namespace: str) -> int:
    deployment = client.AppsV1Api(kube_client).read_namespaced_deployment(
        "payments-scorer", namespace
    )
    return int(deployment.spec.replicas)


def events(kube_client: Any, namespace: str) -> list[Any]:
    found = client.CoreV1Api(kube_client).list_namespaced_event(
        namespace, field_selector="involvedObject.name=payments"
    )
    return list(found.items)


def autoscaled_pipeline(engine: str, group: str, **autoscaling: Any) -> dict[str, Any]:
    topics = unique_topics()
    topics["transactions"]["partitions"] = PARTITIONS
    return example(
        "managed.yaml",
        spec={
            "kafka": {"topics": topics},
            "producer": {"enabled": False},
            "scorer": {
                "consumerGroup": group,
                "autoscaling": {
                    "enabled": True,
                    "engine": engine,
                    "minReplicas": 1,
                    "maxReplicas": 8,
                    "lagPerReplica": LAG_PER_REPLICA,
                    "scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW_S},
                    **autoscaling,
                },
            },
        },
    )


class ReplicaWatch:
    """Every spec.replicas the scorer Deployment takes, from a watch (a transient reset between
    two polls would escape polling)."""

    def __init__(self, kube_client: Any, namespace: str) -> None:
        self.seen: list[int] = []
        self.error: Exception | None = None
        self._watch = watch.Watch()
        apps = client.AppsV1Api(kube_client)
        self._thread = threading.Thread(target=self._follow, args=(apps, namespace), daemon=True)
        self._thread.start()

    def _follow(self, apps: Any, namespace: str) -> None:
        try:
            for event in self._watch.stream(
                apps.list_namespaced_deployment,
                namespace,
                field_selector="metadata.name=payments-scorer",
                timeout_seconds=120,
            ):
                self.seen.append(int(event["object"].spec.replicas))
        except Exception as error:  # reported by stop() unless it happened after it
            self.error = error

    def stop(self) -> list[int]:
        """What was seen so far; the thread ends with its next event or the server's timeout
        (a stream blocked on the socket cannot be interrupted)."""
        seen = list(self.seen)
        if self.error is not None:
            raise AssertionError(f"the watch broke: {self.error!r}")
        self._watch.stop()
        return seen


def replicas_owners(kube_client: Any, namespace: str) -> set[str]:
    deployment = client.AppsV1Api(kube_client).read_namespaced_deployment(
        "payments-scorer", namespace
    )
    return {
        entry.manager
        for entry in deployment.metadata.managed_fields
        if "f:replicas" in (entry.fields_v1 or {}).get("f:spec", {})
    }


def autoscaling_status(pipelines: Pipelines) -> dict[str, Any]:
    return dict(pipelines.get("payments")["status"].get("autoscaling") or {})


def test_builtin_engine_scales_on_lag_up_to_the_partitions_and_down_after_the_window(
    kube_client: Any,
    k8s_namespace: str,
    kafka_bootstrap: str,
    start_operator: Any,
    volumes: Any,
) -> None:
    ns = k8s_namespace
    group = f"scorer-{uuid.uuid4().hex[:8]}"
    operator = start_operator([ns], kafka_bootstrap=kafka_bootstrap, settings=SETTINGS)
    volumes(ns, "payments")
    body = autoscaled_pipeline("builtin", group, enabled=False)
    body["spec"]["scorer"]["replicas"] = 3
    topic = body["spec"]["kafka"]["topics"]["transactions"]["name"]
    pipelines = Pipelines(kube_client, ns)
    pipelines.create(body)
    pipelines.wait_condition("payments", "ScorerReady", within_s=180)
    assert scorer_replicas(kube_client, ns) == 3

    # A backlog of 250 behind a group committed at the start: ceil(250 / 100) = 3, the count
    # the scorer already has. Turning autoscaling on hands the count over without a dip (the
    # operator's apply, which leaves `replicas` out from now on, would otherwise reset it to 1).
    commit(kafka_bootstrap, group, topic, at_end=False)
    produce(kafka_bootstrap, topic, 250)
    replicas = ReplicaWatch(kube_client, ns)
    pipelines.patch("payments", {"scorer": {"autoscaling": {"enabled": True}}})
    wait_for(
        lambda: autoscaling_status(pipelines).get("lag") == 250,
        "lag 250 in status.autoscaling",
        within_s=30,
    )
    time.sleep(3)  # a few re-applies of the Deployment by the operator's daemon
    assert set(replicas.stop()) <= {3}
    assert scorer_replicas(kube_client, ns) == 3
    assert replicas_owners(kube_client, ns) == {"fraudpipe-autoscaler"}
    status = autoscaling_status(pipelines)
    assert (status["desiredReplicas"], status["currentReplicas"]) == (3, 3)
    assert status["reason"] == "Steady"

    # The spec's maxReplicas (8) exceeds the partitions (4): a Warning condition, not a block.
    capped = pipelines.wait_condition("payments", "AutoscalingReady", "False", within_s=30)
    assert capped["reason"] == "MaxReplicasAbovePartitions"
    assert f"maxReplicas 8 exceeds the 4 partitions of {topic}" in capped["message"]
    assert any(
        e.type == "Warning" and e.reason == "NotAutoscalingReady" for e in events(kube_client, ns)
    )

    # 1000: the formula asks for 10, maxReplicas 8, the partitions 4.
    produce(kafka_bootstrap, topic, 750)
    started = time.monotonic()
    wait_for(lambda: scorer_replicas(kube_client, ns) == 4, "scaled up to 4", within_s=20)
    print(f"measured backlog to scale-up: {time.monotonic() - started:.1f}s")
    seen = set()
    for _ in range(10):
        seen.add(scorer_replicas(kube_client, ns))
        time.sleep(0.5)
    assert seen == {4}
    status = autoscaling_status(pipelines)
    assert status["lag"] == 1000
    assert status["partitions"] == PARTITIONS
    assert (status["desiredReplicas"], status["currentReplicas"]) == (4, 4)
    assert status["engine"] == "builtin"
    assert status["lastScaleTime"]
    # The new replicas come up; AutoscalingReady=False does not hold the pipeline back.
    pipelines.wait_condition("payments", "Ready", within_s=60)

    # The broker out of the operator's reach (a restarted operator pointed at a closed port):
    # the count stays, the status and a Warning say why.
    operator.stop()
    blind = start_operator([ns], kafka_bootstrap=f"127.0.0.1:{free_port()}", settings=SETTINGS)
    wait_for(
        lambda: autoscaling_status(pipelines).get("reason") == "LagUnknown",
        "LagUnknown in status.autoscaling",
        within_s=60,
    )
    status = autoscaling_status(pipelines)
    assert "lag" not in status
    assert "keeping 4 replicas" in status["message"]
    time.sleep(3)
    assert scorer_replicas(kube_client, ns) == 4
    assert any(e.type == "Warning" and e.reason == "LagUnknown" for e in events(kube_client, ns))
    blind.stop()

    # Back in reach, the group drained: a fresh operator counts the 4 it finds as recommended
    # now, so the scale-down still waits for the whole window.
    start_operator([ns], kafka_bootstrap=kafka_bootstrap, settings=SETTINGS)
    commit(kafka_bootstrap, group, topic, at_end=True)
    drained = time.monotonic()
    wait_for(
        lambda: autoscaling_status(pipelines).get("reason") == "ScaleDownStabilizing",
        "scale-down held back",
        within_s=30,
    )
    assert scorer_replicas(kube_client, ns) == 4
    wait_for(
        lambda: scorer_replicas(kube_client, ns) == 1,
        "scaled down to 1",
        within_s=SCALE_DOWN_WINDOW_S + 30,
    )
    waited = time.monotonic() - drained
    print(f"measured drained to scale-down: {waited:.1f}s (window {SCALE_DOWN_WINDOW_S}s)")
    assert waited >= SCALE_DOWN_WINDOW_S - 1.5

    # The timer applies the count before it writes its report: the status follows shortly.
    status = wait_for(
        lambda: (found := autoscaling_status(pipelines)).get("reason") == "ScaledDown" and found,
        "ScaledDown in status.autoscaling",
        within_s=10,
    )
    assert (status["lag"], status["currentReplicas"], status["reason"]) == (0, 1, "ScaledDown")
    scaled = [e for e in events(kube_client, ns) if e.reason in ("ScaledUp", "ScaledDown")]
    messages = [e.message for e in sorted(scaled, key=lambda e: e.metadata.creation_timestamp)]
    assert [m.split(" replicas")[0] for m in messages] == ["3 → 4", "4 → 1"], messages
    assert all(e.type == "Normal" for e in scaled)

    # Autoscaling off: the spec's count is back, owned by the operator, and the report is gone.
    pipelines.patch("payments", {"scorer": {"autoscaling": {"enabled": False}}})
    wait_for(lambda: scorer_replicas(kube_client, ns) == 3, "spec.scorer.replicas", within_s=20)
    assert replicas_owners(kube_client, ns) == {"fraudpipe-operator"}
    wait_for(
        lambda: "autoscaling" not in pipelines.get("payments")["status"],
        "status.autoscaling removed",
        within_s=20,
    )
    assert pipelines.condition("payments", "AutoscalingReady")["reason"] == "Disabled"


def test_keda_engine_is_a_scaledobject_when_keda_is_installed_and_builtin_until_then(
    kube_client: Any,
    kubeconfig: str,
    k8s_namespace: str,
    kafka_bootstrap: str,
    start_operator: Any,
    volumes: Any,
) -> None:
    ns = k8s_namespace
    crd_dir = Path(run([str(REPO / "hack" / "fetch-keda-crds")]).stdout.strip())
    extensions = client.ApiextensionsV1Api(kube_client)
    # A cluster without KEDA first (the CRDs are installed by this test only).
    for crd in ("scaledobjects.keda.sh", "triggerauthentications.keda.sh"):
        kubectl(kubeconfig, "delete", "crd", crd, "--ignore-not-found", "--wait=true")

    start_operator([ns], kafka_bootstrap=kafka_bootstrap, settings=SETTINGS)
    volumes(ns, "payments")
    group = f"scorer-{uuid.uuid4().hex[:8]}"
    body = autoscaled_pipeline(
        "keda",
        group,
        maxReplicas=PARTITIONS,
        minReplicas=2,
        scaleUp={"stabilizationWindowSeconds": 5},
        keda={"activationLagThreshold": 7, "pollingIntervalSeconds": 10},
    )
    topic = body["spec"]["kafka"]["topics"]["transactions"]["name"]
    pipelines = Pipelines(kube_client, ns)
    pipelines.create(body)

    fallback = pipelines.wait_condition("payments", "AutoscalingReady", "False", within_s=120)
    assert fallback["reason"] == "KedaCRDsMissing"
    assert "does not serve scaledobjects (keda.sh/v1alpha1)" in fallback["message"]
    assert "builtin" in fallback["message"]
    # Meanwhile the builtin engine scales: minReplicas 2.
    wait_for(lambda: scorer_replicas(kube_client, ns) == 2, "builtin engine at min", 120)
    assert pipelines.get("payments")["status"]["autoscaling"]["engine"] == "builtin"

    kubectl(kubeconfig, "apply", "--server-side", "-f", str(crd_dir))
    pipelines.wait_condition("payments", "AutoscalingReady", "True", within_s=60)
    custom = client.CustomObjectsApi(kube_client)
    scaled = custom.get_namespaced_custom_object(
        "keda.sh", "v1alpha1", ns, "scaledobjects", "payments-scorer"
    )
    uid = pipelines.get("payments")["metadata"]["uid"]
    assert [(o["kind"], o["uid"]) for o in scaled["metadata"]["ownerReferences"]] == [
        ("FraudPipeline", uid)
    ]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "payments-scorer",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, PARTITIONS)
    assert spec["pollingInterval"] == 10
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 5},
        "scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW_S},
    }
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"] == {
        "bootstrapServers": f"payments-kafka.{ns}.svc:9092",
        "consumerGroup": group,
        "topic": topic,
        "lagThreshold": str(LAG_PER_REPLICA),
        "activationLagThreshold": "7",
        "offsetResetPolicy": "earliest",
        "allowIdleConsumers": "false",
        "limitToPartitionsWithLag": "false",
    }
    # KEDA's operator reads the lag from the managed broker itself: its pods are let in.
    policy = client.NetworkingV1Api(kube_client).read_namespaced_network_policy(
        "payments-kafka", ns
    )
    keda_rules = [
        rule
        for rule in policy.spec.ingress
        if any(
            peer.pod_selector and peer.pod_selector.match_labels == {"app": "keda-operator"}
            for peer in rule._from or []
        )
    ]
    assert [[port.port for port in rule.ports] for rule in keda_rules] == [[9092]]
    wait_for(
        lambda: pipelines.get("payments")["status"]["autoscaling"]["engine"] == "keda",
        "status.autoscaling under KEDA",
        within_s=20,
    )
    # KEDA's controller does not run here: the count stays what the builtin engine left, the
    # operator's re-applies (which leave `replicas` out) do not reset it.
    time.sleep(3)
    assert scorer_replicas(kube_client, ns) == 2

    # Back to builtin: the ScaledObject goes, or it would keep scaling against the operator.
    pipelines.patch("payments", {"scorer": {"autoscaling": {"engine": "builtin"}}})
    wait_for(
        lambda: (
            not custom.list_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects")[
                "items"
            ]
        ),
        "ScaledObject removed",
        within_s=30,
    )
    assert {c.metadata.name for c in extensions.list_custom_resource_definition().items} >= {
        "scaledobjects.keda.sh"
    }

    # Deleting an autoscaled pipeline is not held up by the autoscaler's timer (kopf would look
    # again only after 60 s at a timer caught mid-round).
    pipelines.delete("payments")
    deleting = time.monotonic()
    wait_for(
        lambda: (
            not custom.list_namespaced_custom_object(
                "fraudpipe.io", "v1alpha1", ns, "fraudpipelines"
            )["items"]
        ),
        "pipeline finalized",
        within_s=20,
    )
    print(f"measured deleted to finalized: {time.monotonic() - deleting:.1f}s")
