"""skaffold.yaml: valid in every profile, wires each built image into the chart, and on the node
of hack/cluster builds with buildah, imports into containerd, installs the chart (the operator
pod runs) and deletes it again, without a registry or a Docker daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from fraudpipe_testing.plugin import NodeCluster
from fraudpipe_testing.stack.cluster_cli import default_root

REPO = Path(__file__).resolve().parents[1]
HACK_SKAFFOLD = REPO / "hack" / "skaffold"
CACHE_BIN = Path(os.environ.get("FRAUDPIPE_CACHE", Path.home() / ".cache" / "fraudpipe")) / "bin"
SERVICES = ["operator", "scorer", "api", "producer"]
STATEFUL = ["kafka", "postgres", "redis", "registry"]
RELEASE_NAMESPACE = "fraudpipe-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=fraudpipe,app.kubernetes.io/component=operator"

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(
        not (CACHE_BIN / "skaffold").exists(), reason="run: hack/provision skaffold"
    ),
]


def skaffold(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """The provisioned skaffold, offline: no prompt, no update check, helm from the cache."""
    run_env = {
        **os.environ,
        "PATH": f"{CACHE_BIN}:{os.environ['PATH']}",
        "SKAFFOLD_INTERACTIVE": "false",
        "SKAFFOLD_UPDATE_CHECK": "false",
        **(env or {}),
    }
    result = subprocess.run(
        [str(CACHE_BIN / "skaffold"), *args],
        cwd=REPO,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"skaffold {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def rendered(profile: str, tmp_path: Path) -> list[dict[str, Any]]:
    empty_kubeconfig = tmp_path / "kubeconfig"
    empty_kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    out = skaffold(
        "render",
        "-p",
        profile,
        "--offline=true",
        "--digest-source=tag",
        "--profile-auto-activation=false",
        env={"KUBECONFIG": str(empty_kubeconfig)},
    )
    return [doc for doc in yaml.safe_load_all(out) if doc]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
    container: dict[str, Any] = deployments[0]["spec"]["template"]["spec"]["containers"][0]
    return container


@pytest.mark.parametrize("profile", ["local-node", "kind"])
def test_every_profile_parses_with_one_artifact_per_image(profile: str) -> None:
    config_yaml = yaml.safe_load(
        skaffold("diagnose", "--yaml-only", "--profile-auto-activation=false", "-p", profile)
    )
    images = [a["image"] for a in config_yaml["build"]["artifacts"]]
    expected = SERVICES + (STATEFUL if profile == "local-node" else [])
    assert sorted(images) == sorted(f"localhost/fraudpipe/{n}" for n in expected)
    assert config_yaml["build"]["local"]["push"] is False
    if profile == "kind":
        assert config_yaml["build"]["local"]["useBuildkit"] is True, "cache mounts need BuildKit"
    builder = "custom" if profile == "local-node" else "docker"
    assert all(builder in a for a in config_yaml["build"]["artifacts"])


@pytest.mark.parametrize("profile", ["local-node", "kind"])
def test_render_wires_each_built_image_into_the_chart(profile: str, tmp_path: Path) -> None:
    docs = rendered(profile, tmp_path)
    container = operator_container(docs)
    assert container["image"].startswith("localhost/fraudpipe/operator:")
    assert container["imagePullPolicy"] == "IfNotPresent"
    env = {e["name"]: e["value"] for e in container["env"]}
    for name in ["scorer", "api", "producer"]:
        repo, _, tag = env[f"FRAUDPIPE_{name.upper()}_IMAGE"].rpartition(":")
        assert repo == f"localhost/fraudpipe/{name}"
        assert tag, "an empty tag"
        assert tag != "0.1.0", "the per-image tag skaffold computed, not the chart's default"
    assert any(d["kind"] == "CustomResourceDefinition" for d in docs)


# -- the real node ------------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], what: str, within_s: float = 180) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(1)
    raise AssertionError(f"{what}: not reached within {within_s}s")


def hack_skaffold(node_cluster: NodeCluster, *args: str, timeout: float) -> None:
    env = {**os.environ, "KUBECONFIG": node_cluster.kubeconfig}
    if node_cluster.stack is not None:
        env["FRAUDPIPE_CLUSTER_DIR"] = str(node_cluster.stack.root)
    print(f"$ hack/skaffold {' '.join(args)}", file=sys.stderr)
    subprocess.run([str(HACK_SKAFFOLD), *args], cwd=REPO, env=env, check=True, timeout=timeout)


def node_images(node_cluster: NodeCluster) -> set[str]:
    root = node_cluster.stack.root if node_cluster.stack is not None else default_root()
    sock = root / "containerd" / "containerd.sock"
    out = subprocess.run(
        ["ctr", "--address", str(sock), "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


@pytest.mark.images
@pytest.mark.skipif(os.geteuid() != 0, reason="buildah, podman and the node need root here")
@pytest.mark.timeout(3600)  # the first build of every image takes minutes when cold
def test_local_node_profile_builds_imports_deploys_and_deletes(
    node_cluster: NodeCluster, tmp_path: Path
) -> None:
    api_client = config.new_client_from_config(config_file=node_cluster.kubeconfig)  # type: ignore[no-untyped-call]
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    running = apps.list_deployment_for_all_namespaces(label_selector=OPERATOR_SELECTOR).items
    if running:
        api_client.close()
        pytest.skip(
            f"an operator already runs on this cluster ({running[0].metadata.namespace}, e.g. "
            "`make demo`): skaffold's release would replace it; `hack/cluster down` first"
        )
    artifacts_file = tmp_path / "build.json"
    hack_skaffold(
        node_cluster,
        "build",
        "-p",
        "local-node",
        f"--file-output={artifacts_file}",
        timeout=3000,
    )
    builds = {b["imageName"]: b["tag"] for b in json.loads(artifacts_file.read_text())["builds"]}
    assert sorted(builds) == sorted(f"localhost/fraudpipe/{n}" for n in SERVICES + STATEFUL)
    in_node = node_images(node_cluster)
    missing = [tag for tag in builds.values() if tag not in in_node]
    assert not missing, f"built but not in the node's containerd: {missing}"
    assert "localhost/fraudpipe/kafka:4.1.1" in in_node or any(
        i.startswith("localhost/fraudpipe/kafka:") for i in in_node
    )

    try:
        hack_skaffold(
            node_cluster,
            "deploy",
            "-p",
            "local-node",
            f"--build-artifacts={artifacts_file}",
            "--status-check=true",
            timeout=600,
        )
        operator = apps.read_namespaced_deployment("fraudpipe", RELEASE_NAMESPACE)
        container = operator.spec.template.spec.containers[0]
        assert container.image == builds["localhost/fraudpipe/operator"]
        env = {e.name: e.value for e in container.env}
        assert env["FRAUDPIPE_SCORER_IMAGE"] == builds["localhost/fraudpipe/scorer"]

        def operator_pod_running() -> bool:
            pods = core.list_namespaced_pod(
                RELEASE_NAMESPACE, label_selector=OPERATOR_SELECTOR
            ).items
            return any(
                p.status.phase == "Running"
                and all(c.ready for c in (p.status.container_statuses or []))
                for p in pods
            )

        wait_for(operator_pod_running, "the operator pod Running and Ready")
    finally:
        hack_skaffold(node_cluster, "delete", "-p", "local-node", timeout=300)
    wait_for(
        lambda: not apps.list_namespaced_deployment(RELEASE_NAMESPACE).items,
        "the operator's Deployment gone after skaffold delete",
        within_s=120,
    )
    core.delete_namespace(RELEASE_NAMESPACE)

    def namespace_gone() -> bool:
        try:
            core.read_namespace(RELEASE_NAMESPACE)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    # The end-to-end suite installs its release into the same namespace next.
    wait_for(namespace_gone, f"namespace {RELEASE_NAMESPACE} deleted", within_s=120)
    api_client.close()
