"""The single-node cluster of `hack/cluster` runs real pods: containers whose logs are read
through the kubelet, a Service reached from another pod through kube-proxy's rules, cluster
DNS, volumes that outlive their pod, and a `down` that leaves nothing on the host.

The last test stops the cluster, so it stays last in this file."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config

from fraudpipe_testing.plugin import NodeCluster
from fraudpipe_testing.stack.node_images import busybox_ref
from fraudpipe_testing.stack.services.node import (
    BRIDGE,
    NODE_NAME,
    STORAGE_CLASS,
    egress_rule,
    leftovers,
)

pytestmark = pytest.mark.k8s


def wait_for(check: Callable[[], Any], what: str, within_s: float = 120) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what}: not reached within {within_s}s")


@pytest.fixture(scope="module")
def api(node_cluster: NodeCluster) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=node_cluster.kubeconfig)  # type: ignore[no-untyped-call]
    yield api_client
    api_client.close()


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = f"node-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(lambda: core.list_namespaced_service_account(name).items, "default service account")
    yield name
    core.delete_namespace(name, grace_period_seconds=0)


def busybox_pod(name: str, script: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": busybox_ref(),
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                }
            ],
        },
    }


def http_get_retried(host: str, port: int = 80) -> str:
    """Shell for a pod: GET / from host:port, retried for 30 s while kube-proxy writes the
    Service's rules. (busybox-static's wget crashes in glibc's lookup code; nc does not.)"""
    request = r"printf 'GET / HTTP/1.0\r\nHost: x\r\n\r\n'"
    return (
        f"for i in $(seq 30); do {request} | nc -w 2 {host} {port} | grep -q 200"
        f" && {request} | nc -w 2 {host} {port} && exit 0; sleep 1; done; exit 1"
    )


def run_to_completion(core: client.CoreV1Api, namespace: str, name: str, script: str) -> str:
    """Run a busybox pod until it exits; its log, after asserting that it succeeded."""
    core.create_namespaced_pod(namespace, busybox_pod(name, script))
    phase = wait_for(
        lambda: (
            core.read_namespaced_pod(name, namespace).status.phase in ("Succeeded", "Failed")
            and core.read_namespaced_pod(name, namespace).status.phase
        ),
        f"pod {name} finished",
    )
    log: str = core.read_namespaced_pod_log(name, namespace)
    assert phase == "Succeeded", f"pod {name} failed; its log:\n{log}"
    return log


def test_node_is_ready_and_runs_containerd(api: client.ApiClient) -> None:
    node = client.CoreV1Api(api).read_node(NODE_NAME)
    ready = {c.type: c.status for c in node.status.conditions}
    assert ready["Ready"] == "True"
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    assert node.status.node_info.kubelet_version.startswith("v1.")


def test_pod_runs_a_real_container_whose_logs_are_readable(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    token = uuid.uuid4().hex
    # The pod's hostname and its own network namespace prove a real sandbox, not a fake.
    log = run_to_completion(
        core, namespace, "hello", f"echo {token} $(hostname); ip -o -4 addr show dev eth0"
    )
    assert f"{token} hello" in log
    pod_ip = core.read_namespaced_pod("hello", namespace).status.pod_ip
    assert pod_ip.startswith("10.244.0.")
    assert f"inet {pod_ip}/24" in log


def test_pod_under_the_restricted_security_profile_runs(
    api: client.ApiClient, namespace: str
) -> None:
    """What the chart's pods ask for: non-root, read-only root, no capabilities, no new
    privileges, the runtime's default seccomp profile."""
    core = client.CoreV1Api(api)
    pod = busybox_pod("restricted", "id -u; grep Seccomp: /proc/self/status; touch /x || echo ro")
    pod["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    core.create_namespaced_pod(namespace, pod)
    wait_for(
        lambda: core.read_namespaced_pod("restricted", namespace).status.phase == "Succeeded",
        "restricted pod Succeeded",
    )
    log = core.read_namespaced_pod_log("restricted", namespace)
    # stdout and stderr reach the log through separate pipes: touch's complaint may come
    # first. Compare lines, not their order.
    assert "65534" in log.splitlines()
    assert "Seccomp:\t2" in log  # filter mode
    assert "Read-only file system" in log
    assert "ro" in log.split()


@pytest.fixture
def web_service(api: client.ApiClient, namespace: str) -> tuple[str, str]:
    """A busybox httpd behind a ClusterIP Service; returns (cluster IP, page content)."""
    core = client.CoreV1Api(api)
    page = uuid.uuid4().hex
    core.create_namespaced_pod(
        namespace,
        busybox_pod(
            "web",
            f"mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 8080 -h /www",
            labels={"app": "web"},
        ),
    )
    service = core.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod("web", namespace).status.phase == "Running",
        "web pod Running",
    )
    return service.spec.cluster_ip, page


def test_cluster_ip_service_reaches_its_backend_from_another_pod(
    api: client.ApiClient, namespace: str, web_service: tuple[str, str]
) -> None:
    cluster_ip, page = web_service
    assert cluster_ip.startswith("10.96.")
    log = run_to_completion(
        client.CoreV1Api(api), namespace, "client", http_get_retried(cluster_ip)
    )
    assert page in log


def test_service_name_resolves_and_answers_inside_a_pod(
    api: client.ApiClient, namespace: str, web_service: tuple[str, str]
) -> None:
    cluster_ip, page = web_service
    fqdn = f"web.{namespace}.svc.cluster.local"
    log = run_to_completion(
        client.CoreV1Api(api),
        namespace,
        "resolver",
        f"nslookup {fqdn}; cat /etc/resolv.conf; {http_get_retried('web')}",
    )
    assert cluster_ip in log, log
    assert "nameserver 10.96.0.10" in log
    # The short name goes through the search path to the same Service.
    assert page in log


def test_pods_reach_the_api_server_through_the_kubernetes_service(
    api: client.ApiClient, namespace: str
) -> None:
    # Plain HTTP to the API server's TLS port gets Go's own answer, which no other server
    # gives: the Service leads to the real API server (busybox has no TLS client).
    request = r"printf 'GET / HTTP/1.0\r\n\r\n'"
    log = run_to_completion(
        client.CoreV1Api(api),
        namespace,
        "in-cluster",
        "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; for i in $(seq 30); do"
        f" {request} | nc -w 2 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT"
        " | grep -q 'HTTPS server' && echo reached && exit 0; sleep 1; done; exit 1",
    )
    assert "10.96.0.1:443" in log
    assert "reached" in log


def test_statefulset_pod_keeps_its_volume_across_deletion(
    api: client.ApiClient, namespace: str
) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    token = uuid.uuid4().hex
    script = (
        "if [ -f /data/token ]; then echo found $(cat /data/token);"
        f" else echo {token} > /data/token; echo wrote; fi; exec sleep 3600"
    )
    apps.create_namespaced_stateful_set(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "keeper"},
            "spec": {
                "serviceName": "keeper",
                "replicas": 1,
                "selector": {"matchLabels": {"app": "keeper"}},
                "template": {
                    "metadata": {"labels": {"app": "keeper"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "main",
                                "image": busybox_ref(),
                                "imagePullPolicy": "Never",
                                "command": ["sh", "-c", script],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                    },
                },
                # No storageClassName: the cluster's default class must provision it.
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "16Mi"}},
                        },
                    }
                ],
            },
        },
    )

    def ready_pod() -> Any:
        try:
            pod = core.read_namespaced_pod("keeper-0", namespace)
        except client.ApiException:
            return None
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        return pod if ready and pod.metadata.deletion_timestamp is None else None

    first = wait_for(ready_pod, "keeper-0 Ready", within_s=180)
    assert "wrote" in core.read_namespaced_pod_log("keeper-0", namespace)
    claim = core.read_namespaced_persistent_volume_claim("data-keeper-0", namespace)
    assert claim.spec.storage_class_name == STORAGE_CLASS
    assert claim.status.phase == "Bound"

    core.delete_namespaced_pod("keeper-0", namespace, grace_period_seconds=0)
    second = wait_for(
        lambda: (pod := ready_pod()) is not None and pod.metadata.uid != first.metadata.uid and pod,
        "keeper-0 recreated and Ready",
        within_s=180,
    )
    assert second.metadata.uid != first.metadata.uid
    assert f"found {token}" in core.read_namespaced_pod_log("keeper-0", namespace)


def test_nothing_from_the_pod_network_is_forwarded_off_the_machine(
    node_cluster: NodeCluster,
) -> None:
    """Checked on the host's tables, without sending anything anywhere."""
    if os.geteuid() != 0:
        pytest.skip("reading iptables needs root")
    unreachable = subprocess.run(
        ["ip", "route", "show", "type", "unreachable"], capture_output=True, text=True, check=True
    ).stdout
    assert "10.96.0.0/16" in unreachable
    assert "10.244.0.0/16" in unreachable
    rule = subprocess.run(["iptables", *egress_rule("-C")], capture_output=True, check=False)
    assert rule.returncode == 0, rule.stderr
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert not [line for line in nat.splitlines() if "MASQUERADE" in line and BRIDGE in line]


def test_cluster_down_leaves_nothing_on_the_host(node_cluster: NodeCluster) -> None:
    if node_cluster.stack is None:
        pytest.skip("the cluster is the one `hack/cluster` runs; tests never stop it")
    workdir = node_cluster.stack.root / "node"
    assert any(leftovers(workdir).values()), "a running cluster should show up in the probe"
    node_cluster.stack.down()
    assert leftovers(workdir) == {
        "processes": [],
        "mounts": [],
        "links": [],
        "routes": [],
        "claims": [],
        "iptables": [],
    }
