"""fraudpipe end to end on real pods: the chart installed with helm, one FraudPipeline with the
demo producer on, every pod running, decisions flowing, alerts served by the API Service, no
transaction lost or decided twice when a scorer is killed or the scorer image rolls, and
nothing left once the FraudPipeline is deleted.

The tests share one pipeline and run in file order (the last one deletes it). The same module
runs on this machine's node cluster and on kind (docs/development.md, "End-to-end").
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from canary_e2e import (
    canary_status,
    events,
    follow,
    pod_routing,
    rollout_spec,
    scorer_env,
    scorers,
    wait_degraded,
    wait_phase,
)
from e2e_checks import (
    PIPELINE,
    check_alerts_served,
    check_exactly_once,
    check_pods_run,
    component,
    get_json,
    pipeline_pods,
    ready,
)
from e2e_harness import (
    RELEASE,
    RELEASE_NAMESPACE,
    Target,
    kafka_verdict,
    kill_operator,
    local_url,
    port_forward,
    report_recovery,
    wait_gone,
)
from lifecycle_e2e import (
    PREFIX,
    S3,
    S3_BUCKET,
    S3_PORT,
    S3_SECRET,
    S3Credentials,
    run_cronjob_now,
)
from node_faults import partition, restart_containerd
from operator_harness import Pipelines, helm, kubectl, wait_for

from fraudpipe_api.backup import BackupStore, check_dump
from fraudpipe_common.archive.layout import ArchiveLocation, DatasetName, offsets_of
from fraudpipe_common.archive.store import ArchiveStore
from fraudpipe_testing import toolchain
from fraudpipe_testing.schemathesis import run_schemathesis

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(900)]

SELECTOR = f"fraudpipe.io/pipeline={PIPELINE}"
# Recovery limits of the fault scenarios (their measured times: build/e2e-recovery.json).
STORES_BACK_S = 180  # killed StatefulSet pods replaced and Ready
SCORERS_BACK_S = 180  # killed scorer pods replaced and Ready
BROKER_RECOVERY_S = 300  # the killed broker Ready again → every transaction decided
PARTITION_S = 60  # scorers cut off from PostgreSQL this long
PARTITION_RECOVERY_S = 120  # the partition healed → every scorer Ready again
CONTAINERD_RECOVERY_S = 120  # containerd restarted → node and every pod Ready, a new pod runs
# A kill: SIGTERM, SIGKILL one second later. Not a grace of 0: that deletes the pod object at
# once, and the kubelet, no longer seeing the deletion's grace, stops the container with the
# pod's own terminationGracePeriodSeconds (30 s; the archiver's 120 s), a graceful stop.
KILL_GRACE_S = 1


def scorer_rolled_out(apps: client.AppsV1Api, namespace: str, image: str | None = None) -> bool:
    deployment = apps.read_namespaced_deployment(f"{PIPELINE}-scorer", namespace)
    spec, status = deployment.spec, deployment.status
    return (
        (image is None or spec.template.spec.containers[0].image == image)
        and (status.observed_generation or 0) >= deployment.metadata.generation
        and (status.updated_replicas or 0) == spec.replicas
        and (status.available_replicas or 0) == spec.replicas
        and (status.replicas or 0) == spec.replicas
    )


def test_every_pod_of_the_pipeline_runs(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], target: Target
) -> None:
    core = client.CoreV1Api(api_client)
    pods = pipeline_pods(core, namespace)
    try:
        check_pods_run(pods)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{not_ready_report(core, namespace, pods)}") from None
    (broker,) = [p for p in pods if component(p) == "kafka"]
    assert broker.spec.containers[0].name == ("kafka" if target.flavor == "kafka" else "redpanda")
    # The services run the images the chart was given, under the restricted profile.
    (scorer, *_) = [p for p in pods if component(p) == "scorer"]
    assert scorer.spec.containers[0].image == target.image("scorer")
    assert scorer.spec.containers[0].security_context.read_only_root_filesystem is True


def test_the_namespaces_admit_only_pods_under_the_restricted_standard(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], target: Target
) -> None:
    """Every pod above was admitted by a namespace enforcing `restricted`; this proves the
    enforcement is real: the same API server refuses a pod that asks for nothing."""
    core = client.CoreV1Api(api_client)
    for name in (namespace, RELEASE_NAMESPACE):
        labels = core.read_namespace(name).metadata.labels or {}
        assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", name
    bare = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "unrestricted"},
        "spec": {"containers": [{"name": "c", "image": target.image("scorer")}]},
    }
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(namespace, bare, dry_run="All")
    assert refused.value.status == 403, refused.value.body
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message, message


def test_decisions_flow_and_alerts_are_served_through_the_api_service(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], target: Target
) -> None:
    core = client.CoreV1Api(api_client)
    verdict = kafka_verdict(core, target, namespace)
    check_exactly_once(verdict, at_least=1)
    assert verdict["decisions"] >= verdict["produced"]

    with port_forward(target, namespace, f"svc/{PIPELINE}-api", 8000) as port:
        check_alerts_served(local_url(port), pipeline["spec"]["model"]["ref"])


def test_a_killed_scorer_loses_and_duplicates_no_transaction(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], target: Target
) -> None:
    core = client.CoreV1Api(api_client)
    before = kafka_verdict(core, target, namespace)
    scorers = [p for p in pipeline_pods(core, namespace) if component(p) == "scorer"]
    victim = scorers[0].metadata.name
    # SIGTERM, then SIGKILL a second later: the process dies mid-batch, its Kafka transaction
    # left open (see KILL_GRACE_S).
    core.delete_namespaced_pod(victim, namespace, grace_period_seconds=KILL_GRACE_S)
    killed = time.monotonic()
    wait_for(
        lambda: victim not in {p.metadata.name for p in pipeline_pods(core, namespace)},
        "killed scorer gone",
        60,
    )
    replicas = len(scorers)
    wait_for(
        lambda: scorers_replaced(core, namespace, {victim}, replicas),
        "scorer replaced",
        SCORERS_BACK_S,
    )
    report_recovery(
        "scorer killed (-9)",
        "replaced and Ready",
        time.monotonic() - killed,
        SCORERS_BACK_S,
    )
    time.sleep(10)  # traffic keeps flowing through the replacement
    after = kafka_verdict(core, target, namespace)
    check_exactly_once(after, at_least=before["produced"] + 1)


def test_all_scorers_killed_at_once_lose_and_duplicate_no_transaction(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], target: Target
) -> None:
    """Every scorer pod at once, SIGKILLed a second after SIGTERM: nothing decides until the
    replacements join; their transactions left open abort and the batches are decided again,
    once."""
    core = client.CoreV1Api(api_client)
    before = kafka_verdict(core, target, namespace)
    victims = [p.metadata.name for p in pipeline_pods(core, namespace) if component(p) == "scorer"]
    assert len(victims) >= 2, victims
    for name in victims:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=KILL_GRACE_S)
    killed = time.monotonic()
    wait_for(
        lambda: not set(victims) & {p.metadata.name for p in pipeline_pods(core, namespace)},
        "killed scorers gone",
        60,
    )
    # New pods Ready, as many as before (the Deployment's status may still count the killed).
    wait_for(
        lambda: scorers_replaced(core, namespace, set(victims), len(victims)),
        "scorers replaced",
        SCORERS_BACK_S,
    )
    report_recovery(
        "all scorers killed (-9)",
        "replaced and Ready",
        time.monotonic() - killed,
        SCORERS_BACK_S,
    )
    time.sleep(10)
    after = kafka_verdict(core, target, namespace)
    check_exactly_once(after, at_least=before["produced"] + 1)


def test_an_evicted_scorer_hands_over_and_loses_no_transaction(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], target: Target
) -> None:
    """An eviction (a node drain) ends the pod gracefully: SIGTERM, the batch in flight
    committed or left to the next owner, the group left; its partitions move on."""
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    before = kafka_verdict(core, target, namespace)
    victim = next(p for p in pipeline_pods(core, namespace) if component(p) == "scorer")
    name = victim.metadata.name
    core.create_namespaced_pod_eviction(
        name,
        namespace,
        client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace)),
    )
    wait_gone(core, namespace, name)  # stopped, its batch handed over
    wait_for(lambda: scorer_rolled_out(apps, namespace), "scorer replaced", 180)
    time.sleep(10)
    after = kafka_verdict(core, target, namespace)
    check_exactly_once(after, at_least=before["produced"] + 1)


def test_a_rolling_update_of_the_scorer_image_loses_no_transaction(
    api_client: client.ApiClient,
    namespace: str,
    pipeline: dict[str, Any],
    pipelines: Pipelines,
    target: Target,
) -> None:
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    before = kafka_verdict(core, target, namespace)
    pipelines.patch(PIPELINE, {"scorer": {"image": target.scorer_image_next}})
    wait_for(
        lambda: scorer_rolled_out(apps, namespace, target.scorer_image_next),
        "scorer rolled to the next image",
        300,
    )
    scorers = [p for p in pipeline_pods(core, namespace) if component(p) == "scorer"]
    assert {p.spec.containers[0].image for p in scorers} == {target.scorer_image_next}
    time.sleep(10)
    after = kafka_verdict(core, target, namespace)
    check_exactly_once(after, at_least=before["produced"] + 1)


def test_killed_redis_and_postgres_lose_nothing_and_keep_their_data(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], target: Target
) -> None:
    """Both stores killed at once, traffic flowing: the scorer pauses and retries (nothing is
    committed unsaved), the features survive in Redis's append-only file and the alerts in
    PostgreSQL, both on their volumes, and the accounting is exact afterwards."""
    core = client.CoreV1Api(api_client)
    before = kafka_verdict(core, target, namespace)
    keys_before = redis_keys(target, namespace)
    assert keys_before > 0
    stores = [f"{PIPELINE}-redis-0", f"{PIPELINE}-postgres-0"]
    stores_back_s = kill_and_wait(core, namespace, stores)
    report_recovery(
        "Redis and PostgreSQL killed", "replaced and Ready", stores_back_s, STORES_BACK_S
    )
    # AOF `everysec`: at most the last second of writes may be lost, a few keys.
    keys_after = redis_keys(target, namespace)
    assert keys_after >= 0.95 * keys_before, (keys_before, keys_after)
    time.sleep(10)  # traffic flows again through the recovered stores
    after = kafka_verdict(core, target, namespace)
    check_exactly_once(after, at_least=before["produced"] + 1)
    # Every alert of before's transactions is still there: they are among after's, reconciled.
    assert after["alerts"] > before["alerts"], (before, after)


@pytest.mark.timeout(900)
def test_a_killed_broker_loses_and_duplicates_no_transaction(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], target: Target
) -> None:
    """The only broker killed mid-transaction (1 s grace): open transactions abort, a scorer
    whose producer hangs on the vanished coordinator replaces it (decision 85), the producer
    resends; every transaction decided once within BROKER_RECOVERY_S of the broker's return."""
    core = client.CoreV1Api(api_client)
    before = kafka_verdict(core, target, namespace)
    broker_back_s = kill_and_wait(core, namespace, [f"{PIPELINE}-kafka-0"])
    report_recovery("broker killed", "replaced and Ready", broker_back_s, STORES_BACK_S)
    back = time.monotonic()
    time.sleep(15)  # traffic flows again through the restarted broker
    after = kafka_verdict(core, target, namespace, within_s=BROKER_RECOVERY_S)
    check_exactly_once(after, at_least=before["produced"] + 1)
    # The checker returns once every transaction sent so far is decided.
    report_recovery(
        "broker killed, decisions",
        "every transaction decided (from broker Ready)",
        time.monotonic() - back,
        BROKER_RECOVERY_S,
    )


def test_a_partition_between_scorers_and_postgres_commits_nothing_unsaved(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], target: Target
) -> None:
    """Every scorer cut off from PostgreSQL for PARTITION_S (packets dropped both ways inside
    the scorers' network namespaces, as a partition looks; no connection is refused): the
    scorers report not ready and keep retrying without restarting, commit no batch whose
    alerts are unsaved, and catch up once the network heals."""
    core = client.CoreV1Api(api_client)
    before = kafka_verdict(core, target, namespace)
    scorers_before = {
        p.metadata.name: restarts(p)
        for p in pipeline_pods(core, namespace)
        if component(p) == "scorer"
    }
    postgres_pod = core.read_namespaced_pod(f"{PIPELINE}-postgres-0", namespace)
    postgres_service = core.read_namespaced_service(f"{PIPELINE}-postgres", namespace)
    scorer_ips = [
        p.status.pod_ip for p in pipeline_pods(core, namespace) if p.metadata.name in scorers_before
    ]

    def scorers(want_ready: bool) -> bool:
        pods = [p for p in pipeline_pods(core, namespace) if p.metadata.name in scorers_before]
        return len(pods) == len(scorers_before) and all(ready(p) is want_ready for p in pods)

    with partition(scorer_ips, [postgres_pod.status.pod_ip, postgres_service.spec.cluster_ip]):
        cut = time.monotonic()
        # Their readiness asks PostgreSQL (1 s timeout) and the probe fails three times.
        wait_for(lambda: scorers(False), "scorers not ready while PostgreSQL is cut off", 60)
        time.sleep(max(0.0, PARTITION_S - (time.monotonic() - cut)))
    healed = time.monotonic()
    wait_for(lambda: scorers(True), "scorers Ready again", PARTITION_RECOVERY_S)
    report_recovery(
        "scorers cut off from PostgreSQL 60 s",
        "every scorer Ready (from the network healed)",
        time.monotonic() - healed,
        PARTITION_RECOVERY_S,
    )
    # The same pods throughout: the outage is waited out, not crashed through.
    after_pods = {
        p.metadata.name: restarts(p)
        for p in pipeline_pods(core, namespace)
        if component(p) == "scorer"
    }
    assert after_pods == scorers_before
    after = kafka_verdict(core, target, namespace)
    check_exactly_once(after, at_least=before["produced"] + 1)
    assert after["alerts"] > before["alerts"], (before, after)


def test_a_restarted_containerd_stops_no_pod_and_loses_no_transaction(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], target: Target
) -> None:
    """The node's container runtime restarted under the running pipeline: the containers run
    on (their shims outlive containerd), the kubelet reconnects, no pod restarts, exec and a
    new pod work again, and every transaction is still decided exactly once."""
    core = client.CoreV1Api(api_client)
    before = kafka_verdict(core, target, namespace)
    pods_before = {
        p.metadata.name: (p.metadata.uid, restarts(p)) for p in running_pods(core, namespace)
    }
    restart_containerd()
    restarted = time.monotonic()

    def node_and_pods_ready() -> bool:
        nodes = core.list_node().items
        node_ready = all(
            any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            for n in nodes
        )
        return node_ready and all(ready(p) for p in running_pods(core, namespace))

    time.sleep(5)  # the kubelet notices the runtime's restart before it can report it healthy
    wait_for(node_and_pods_ready, "node and pipeline pods Ready", CONTAINERD_RECOVERY_S)
    # Exec goes through the restarted runtime.
    assert redis_keys(target, namespace) > 0
    after_pods = {
        p.metadata.name: (p.metadata.uid, restarts(p)) for p in running_pods(core, namespace)
    }
    assert after_pods == pods_before
    # The checker is a new pod: sandboxes are created through the restarted runtime too.
    after = kafka_verdict(core, target, namespace)
    report_recovery(
        "node's containerd restarted",
        "node Ready, every pod running, a new pod ran",
        time.monotonic() - restarted,
        CONTAINERD_RECOVERY_S,
    )
    check_exactly_once(after, at_least=before["produced"] + 1)


def scorers_replaced(
    core: client.CoreV1Api, namespace: str, victims: set[str], replicas: int
) -> bool:
    pods = [p for p in pipeline_pods(core, namespace) if component(p) == "scorer"]
    return len(pods) == replicas and all(p.metadata.name not in victims and ready(p) for p in pods)


def restarts(pod: Any) -> int:
    return sum(s.restart_count for s in pod.status.container_statuses or [])


def running_pods(core: client.CoreV1Api, namespace: str) -> list[Any]:
    """The pipeline's long-running pods (not its finished migration Job's)."""
    return [p for p in pipeline_pods(core, namespace) if p.status.phase != "Succeeded"]


def kill_and_wait(core: client.CoreV1Api, namespace: str, victims: list[str]) -> float:
    """Delete `victims` with a 1 s grace (SIGTERM, SIGKILL a second later) and wait until their
    StatefulSets' new pods are Ready; returns the seconds that took. Not 0: a force delete
    frees the pod's name at once, and its successor would open the same volume while the old
    process still runs."""
    uids = {name: core.read_namespaced_pod(name, namespace).metadata.uid for name in victims}
    killed = time.monotonic()
    for name in victims:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=1)

    def back() -> bool:
        pods = {p.metadata.name: p for p in pipeline_pods(core, namespace)}
        return all(
            name in pods and pods[name].metadata.uid != uids[name] and ready(pods[name])
            for name in victims
        )

    wait_for(back, f"{', '.join(victims)} replaced and Ready", 180)
    return time.monotonic() - killed


def redis_keys(target: Target, namespace: str) -> int:
    out = kubectl(
        target.kubeconfig,
        *("exec", "-n", namespace, f"{PIPELINE}-redis-0", "-c", "redis", "--"),
        *("sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli DBSIZE'),
    ).stdout
    return int(out.strip())


# -- canary rollouts (docs/canary.md): one pipeline, one candidate after the other -----------
def test_an_incompatible_candidate_never_gets_traffic(
    api_client: client.ApiClient,
    namespace: str,
    pipeline: dict[str, Any],
    pipelines: Pipelines,
    candidates: dict[str, str],
) -> None:
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    pipelines.patch(PIPELINE, {"model": {"canary": rollout_spec(candidates["incompatible"], 0)}})
    canary = wait_phase(pipelines, candidates["incompatible"], {"Invalid"}, 60)
    assert "device_risk_score" in canary["message"], canary
    wait_degraded(pipelines, "CandidateInvalid", candidates["incompatible"])
    assert any(
        kind == "Warning" and reason == "CandidateInvalid" and "device_risk_score" in message
        for kind, reason, message in events(core, namespace)
    )
    # Never loaded, never routed to.
    assert "CANARY_MODEL_REF" not in scorer_env(apps, namespace)
    for pod in scorers(core, namespace):
        assert pod_routing(core, namespace, pod.metadata.name) == (0, False)


@pytest.mark.parametrize(
    ("candidate", "failing_check"),
    [("flags_all", "alertRateRatio"), ("slow", "p99LatencyMs")],
    ids=["flags-everything-on-alert-rate-ratio", "slow-on-latency"],
)
def test_a_bad_candidate_gets_traffic_then_is_rolled_back_on_its_failing_check(
    api_client: client.ApiClient,
    namespace: str,
    pipeline: dict[str, Any],
    pipelines: Pipelines,
    candidates: dict[str, str],
    candidate: str,
    failing_check: str,
) -> None:
    core = client.CoreV1Api(api_client)
    ref = candidates[candidate]
    # No shadow phase: straight to 50% of the users, then judged.
    pipelines.patch(PIPELINE, {"model": {"canary": rollout_spec(ref, 0)}})
    canary, seen = follow(core, pipelines, namespace, ref, {"Failed"}, within_s=300)
    assert ("Progressing", 50) in seen, seen
    assert canary["ref"] == ref, canary
    assert canary["weight"] == 0, canary
    failed = canary["lastAnalysis"]["failed"]
    assert any(f.startswith(failing_check + "=") for f in failed), canary
    wait_degraded(pipelines, "CanaryFailed", ref)
    assert any(
        kind == "Warning" and reason == "CanaryFailed" and f"{failing_check}=" in message
        for kind, reason, message in events(core, namespace)
        if ref in message
    )


def test_a_good_candidate_is_promoted_through_every_step_losing_no_transaction(
    api_client: client.ApiClient,
    namespace: str,
    pipeline: dict[str, Any],
    pipelines: Pipelines,
    candidates: dict[str, str],
    target: Target,
) -> None:
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    ref = candidates["good"]
    stable = pipeline["spec"]["model"]["ref"]
    # Two failed checks to roll back, the default's tolerance: a single unlucky window on
    # samples this small costs one more window, not the promotion.
    pipelines.patch(PIPELINE, {"model": {"canary": rollout_spec(ref, 15, failure_threshold=2)}})
    killed: list[str] = []

    def kill_the_operator_mid_rollout(state: tuple[str, int]) -> None:
        # The rollout's state lives in the pipeline's status: a new operator resumes it.
        if state == ("Progressing", 50) and not killed:
            killed.append(kill_operator(core))

    canary, seen = follow(
        core,
        pipelines,
        namespace,
        ref,
        {"Promoted", "Failed"},
        within_s=480,
        on_change=kill_the_operator_mid_rollout,
    )
    assert killed, seen
    assert canary["phase"] == "Promoted", canary
    assert [s for s in seen if s[0] in ("Shadow", "Progressing", "Promoted")] == [
        ("Shadow", 0),
        ("Progressing", 50),
        ("Progressing", 100),
        ("Promoted", 100),
    ], seen
    assert canary["checksPassed"] == 3, canary
    assert canary["checksFailed"] <= 1, canary
    reasons = [reason for _, reason, message in events(core, namespace) if ref in message]
    for expected in ("CandidateValid", "CanaryShadow", "CanaryStep", "CanaryPromoted"):
        assert expected in reasons, reasons
    status = pipelines.get(PIPELINE)["status"]
    assert status["promoted"] == {"ref": ref, "replaces": stable}, status
    # The candidate becomes the scorers' stable model; the spec stays as written.
    wait_for(
        lambda: (
            scorer_env(apps, namespace).get("MODEL_REF") == ref
            and "CANARY_MODEL_REF" not in scorer_env(apps, namespace)
            and scorer_rolled_out(apps, namespace)
        ),
        "scorers restarted with the promoted model as stable",
        240,
    )
    assert pipelines.get(PIPELINE)["spec"]["model"]["ref"] == stable
    # Removing the finished canary changes nothing the scorers run.
    generation = apps.read_namespaced_deployment(
        f"{PIPELINE}-scorer", namespace
    ).metadata.generation
    pipelines.patch(PIPELINE, {"model": {"canary": None}})
    wait_for(lambda: canary_status(pipelines) is None, "status.canary cleared", 30)
    time.sleep(3)
    after = apps.read_namespaced_deployment(f"{PIPELINE}-scorer", namespace)
    assert after.metadata.generation == generation
    assert scorer_env(apps, namespace)["MODEL_REF"] == ref

    # All four rollouts, the restarts they caused and the promotion: every transaction since
    # the pipeline started decided exactly once (shadow decisions are recorded beside them).
    verdict = kafka_verdict(core, target, namespace)
    check_exactly_once(verdict, at_least=1)
    assert verdict["by_track"].get("canary", 0) > 0, verdict
    assert verdict["by_track"].get("shadow", 0) > 0, verdict
    # Thousands of transactions by now: the alerts reconciliation had FLAG/BLOCK to check.
    assert verdict["alerts_expected"] > 0, verdict


@pytest.mark.timeout(900)
def test_generated_requests_to_the_api_in_the_cluster_never_get_a_server_error(
    api_client: client.ApiClient,
    namespace: str,
    pipeline: dict[str, Any],
    pipelines: Pipelines,
    target: Target,
    tmp_path: Path,
) -> None:
    """Schemathesis against the pipeline's API Service (through a port-forward), with a write
    key the pipeline got from a Secret of the user's (`spec.api.authSecretRef`): requests
    generated from the OpenAPI schema, valid and invalid, for every operation, and not one
    answer is a 5xx."""
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    token = secrets.token_urlsafe(32)
    line = f"{hashlib.sha256(token.encode()).hexdigest()}:write:schemathesis\n"
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="e2e-api-keys"), string_data={"keys": line}
        ),
    )
    pipelines.patch(PIPELINE, {"api": {"authSecretRef": {"name": "e2e-api-keys", "key": "keys"}}})

    def api_rolled() -> bool:
        deployment = apps.read_namespaced_deployment(f"{PIPELINE}-api", namespace)
        env = {e.name for e in deployment.spec.template.spec.containers[0].env or []}
        status = deployment.status
        return (
            "API_KEYS_FILE" in env
            and (status.observed_generation or 0) >= deployment.metadata.generation
            and (status.updated_replicas or 0) == deployment.spec.replicas
            and (status.available_replicas or 0) == deployment.spec.replicas
            and (status.replicas or 0) == deployment.spec.replicas
        )

    wait_for(api_rolled, "the API rolled with the key file", 300)
    with port_forward(target, namespace, f"svc/{PIPELINE}-api", 8000) as port:
        url = local_url(port)
        # Ready first (its own /readyz: PostgreSQL, Redis, Kafka and the model reachable).
        last: list[Any] = []

        def api_ready() -> bool:
            last[:] = [get_json(url, "/readyz")]
            return bool(last[0][0] == 200)

        try:
            wait_for(api_ready, "the API's /readyz", 120)
        except AssertionError as exc:
            (api_pod,) = [p for p in running_pods(core, namespace) if component(p) == "api"]
            log = read_log(core, namespace, api_pod.metadata.name, "api")
            raise AssertionError(f"{exc}: {last}\n{log[-4000:]}") from None
        result = run_schemathesis(url, token, tmp_path, max_examples=25, timeout_s=780)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested: 13" in result.stdout, result.stdout[-3000:]  # every operation ran
    (api_pod,) = [p for p in running_pods(core, namespace) if component(p) == "api"]
    assert "Traceback" not in read_log(core, namespace, api_pod.metadata.name, "api")


def test_decisions_are_archived_once_and_postgres_is_backed_up_and_expired_by_its_jobs(
    api_client: client.ApiClient,
    namespace: str,
    pipeline: dict[str, Any],
    object_store: S3Credentials,
    pipelines: Pipelines,
    target: Target,
    tmp_path: Path,
) -> None:
    """What the pipeline archived, backed up and expired, read back from its S3 server: the
    archiver's hourly Parquet holds each record of decisions.v1 once, even across its pod
    killed (SIGKILL a second after SIGTERM) with windows in memory; a backup run (its three
    containers under the restricted standard) uploads a pg_dump that pg_restore reads; a
    retention run succeeds; the operator reports the archiver ready and no failed run."""
    core = client.CoreV1Api(api_client)
    batch = client.BatchV1Api(api_client)
    with port_forward(target, namespace, f"svc/{S3}", S3_PORT) as port:
        filesystem = object_store.settings(port).filesystem()
        archive = ArchiveStore(ArchiveLocation.parse(f"s3://{S3_BUCKET}/{PREFIX}"), filesystem)

        def archived() -> int:
            """The offsets the decisions' objects span, by their names: a listing, not hundreds
            of reads through the port-forward. More than the records (a transaction's commit
            marker takes an offset too), but it grows as they do."""
            root = archive.location.dataset_path(DatasetName.DECISIONS)
            listing = filesystem.get_file_info(
                pafs.FileSelector(root, recursive=True, allow_not_found=True)
            )
            runs = [offsets_of(info.base_name) for info in listing]
            return sum(last - first + 1 for _, first, last in filter(None, runs))

        def rows() -> Any:
            columns = ["kafka_partition", "kafka_offset", "decision", "score"]
            return archive.read(DatasetName.DECISIONS, columns, once_per_record=False)

        before = wait_for(archived, "decisions in the archive", 180)
        rows_before = rows().num_rows
        (archiver,) = [p for p in running_pods(core, namespace) if component(p) == "archive"]
        core.delete_namespaced_pod(
            archiver.metadata.name, namespace, grace_period_seconds=KILL_GRACE_S
        )
        wait_gone(core, namespace, archiver.metadata.name)
        # At 20 tx/s, 200 more offsets archived: the successor started where it should.
        wait_for(lambda: archived() >= before + 200, "the archive growing after the kill", 240)
        after = rows()
        # Each record once (a tx_id may repeat: shadow decisions share their transaction's).
        records = list(
            zip(*(after[c].to_pylist() for c in ("kafka_partition", "kafka_offset")), strict=True)
        )
        assert len(records) == len(set(records)), f"{len(records) - len(set(records))} twice"
        assert len(records) > rows_before
        assert set(after["decision"].to_pylist()) <= {"APPROVE", "FLAG", "BLOCK"}
        assert after["score"].null_count == 0

        run_cronjob_now(target, batch, namespace, f"{PIPELINE}-backup", 240)
        location = ArchiveLocation.parse(f"s3://{S3_BUCKET}/{PREFIX}/backups/postgres")
        backups = BackupStore(location, PIPELINE, filesystem)
        (backup,) = backups.backups()
        dump = tmp_path / "fraudpipe.dump"
        backups.download(backup, dump)
    check_dump(dump)
    listing = subprocess.run(
        [str(toolchain.postgres_bin_dir() / "pg_restore"), "--list", str(dump)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "TABLE public alerts" in listing, listing[-2000:]
    assert "TABLE DATA public alerts" in listing, listing[-2000:]

    job = run_cronjob_now(target, batch, namespace, f"{PIPELINE}-retention", 180)
    (run,) = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    log = read_log(core, namespace, run.metadata.name, "retention")
    printed = re.search(r"^\{$", log, re.MULTILINE)  # the summary, indented JSON
    assert printed, log[-2000:]
    summary = json.loads(log[printed.start() :])
    assert (summary["alerts"]["days"], summary["feedback"]["days"]) == (30, 365), summary
    # The operator watches both: the archiver's Deployment, the CronJobs' last runs.
    pipelines.wait_condition(PIPELINE, "ArchiveReady", within_s=120)
    healthy = pipelines.wait_condition(PIPELINE, "ScheduledJobsSucceeding", within_s=30)
    assert healthy["message"] == "retention, backup: no failed run", healthy


def test_generated_passwords_never_leave_their_secrets(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], target: Target
) -> None:
    """After everything above ran (restarts, rollouts, canaries), no generated password shows
    in a pod's log, an Event, the pipeline's spec or status, a workload's spec or the Helm
    release: a user who may read those but not Secrets learns nothing."""
    core = client.CoreV1Api(api_client)
    passwords = {
        f"{secret.metadata.name}/password": base64.b64decode(secret.data["password"]).decode()
        for secret in core.list_namespaced_secret(namespace, label_selector=SELECTOR).items
        if "password" in (secret.data or {})
    }
    assert {name.split("/")[0] for name in passwords} == {
        f"{PIPELINE}-redis-credentials",
        f"{PIPELINE}-postgres-credentials",
    }
    assert all(len(value) >= 32 for value in passwords.values())
    # The object store's secret key too, which the archiver and the backups hold.
    s3_keys = core.read_namespaced_secret(S3_SECRET, namespace).data
    passwords[f"{S3_SECRET}/AWS_SECRET_ACCESS_KEY"] = base64.b64decode(
        s3_keys["AWS_SECRET_ACCESS_KEY"]
    ).decode()

    readable: dict[str, str] = {}
    for ns in (namespace, RELEASE_NAMESPACE):
        for pod in core.list_namespaced_pod(ns).items:
            # Init containers too: the backup's first step writes PostgreSQL's password to a
            # file for pg_dump, and must print it nowhere.
            statuses = [
                *(pod.status.init_container_statuses or []),
                *(pod.status.container_statuses or []),
            ]
            for status in statuses:
                where = f"{ns}/{pod.metadata.name}/{status.name}"
                readable[f"log {where}"] = read_log(core, ns, pod.metadata.name, status.name)
                if status.restart_count:
                    readable[f"previous log {where}"] = read_log(
                        core, ns, pod.metadata.name, status.name, previous=True
                    )
        kinds = "events,fraudpipelines,deployments,statefulsets,jobs,cronjobs,configmaps,services"
        readable[f"objects in {ns}"] = kubectl(
            target.kubeconfig, "get", kinds, "-n", ns, "-o", "json"
        ).stdout
    for what in ("values --all", "manifest", "hooks", "notes"):
        readable[f"helm {what}"] = helm(
            target.kubeconfig, "get", *what.split(), RELEASE, "-n", RELEASE_NAMESPACE
        ).stdout
    assert any("scorer" in text for name, text in readable.items() if name.startswith("log"))

    leaks = [
        f"{secret} in {where}"
        for where, text in readable.items()
        for secret, value in passwords.items()
        if value in text
    ]
    assert not leaks, leaks


def not_ready_report(core: client.CoreV1Api, namespace: str, pods: list[Any]) -> str:
    """What each pod that is not ready says: its containers' states and their logs."""
    lines = []
    for pod in pods:
        if ready(pod) or pod.status.phase == "Succeeded":
            continue
        for status in pod.status.container_statuses or []:
            lines.append(
                f"{pod.metadata.name}/{status.name}: {status.state} last {status.last_state}"
            )
            for previous in (True, False):
                log = read_log(core, namespace, pod.metadata.name, status.name, previous)
                lines.append(f"--- {'previous ' if previous else ''}log:\n{log[-3000:]}")
    return "\n".join(lines)


def read_log(
    core: client.CoreV1Api, namespace: str, pod: str, container: str, previous: bool = False
) -> str:
    try:
        text: str = core.read_namespaced_pod_log(
            pod, namespace, container=container, previous=previous
        )
    except client.ApiException as error:
        # A previous container's log may be gone (garbage-collected); nothing to leak there.
        if previous and error.status in (400, 404):
            return ""
        raise
    return text


def test_deleting_the_pipeline_removes_every_child(
    api_client: client.ApiClient, namespace: str, pipeline: dict[str, Any], pipelines: Pipelines
) -> None:
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    batch = client.BatchV1Api(api_client)
    pipelines.delete(PIPELINE)

    def leftovers() -> list[str]:
        found = [
            *(f"pod/{p.metadata.name}" for p in pipeline_pods(core, namespace)),
            *(
                f"statefulset/{o.metadata.name}"
                for o in apps.list_namespaced_stateful_set(namespace, label_selector=SELECTOR).items
            ),
            *(
                f"deployment/{o.metadata.name}"
                for o in apps.list_namespaced_deployment(namespace, label_selector=SELECTOR).items
            ),
            *(
                f"service/{o.metadata.name}"
                for o in core.list_namespaced_service(namespace, label_selector=SELECTOR).items
            ),
            *(
                f"job/{o.metadata.name}"
                for o in batch.list_namespaced_job(namespace, label_selector=SELECTOR).items
            ),
            *(
                f"cronjob/{o.metadata.name}"
                for o in batch.list_namespaced_cron_job(namespace, label_selector=SELECTOR).items
            ),
        ]
        return found

    wait_for(lambda: not leftovers(), "every child of the pipeline gone", 180)
    assert leftovers() == []
    # By design the data outlives the pipeline (docs/operator.md): claims and credentials.
    claims = core.list_namespaced_persistent_volume_claim(namespace).items
    assert any(c.metadata.name.startswith(f"data-{PIPELINE}-kafka-") for c in claims)
