"""skaffold.yaml: valid in every profile, wires each built image into the charts, and declares
`skaffold verify` as an in-cluster Job with a read-only ServiceAccount. What it does on a real
node (build with buildah, import, deploy, verify, delete) is proven by
k8s-tests/e2e/test_skaffold_verify.py in `make e2e`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CACHE_BIN = Path(os.environ.get("FRAUDPIPE_CACHE", Path.home() / ".cache" / "fraudpipe")) / "bin"
SERVICES = ["operator", "scorer", "api", "producer"]
STATEFUL = ["kafka", "postgres", "redis", "registry"]

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
    (deployment,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "fraudpipe"
    ]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def configs(profile: str) -> dict[str, dict[str, Any]]:
    """Each module of skaffold.yaml with `profile` applied, by name."""
    out = skaffold("diagnose", "--yaml-only", "--profile-auto-activation=false", "-p", profile)
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(out) if doc}


@pytest.mark.parametrize("profile", ["local-node", "kind"])
def test_every_profile_parses_with_one_artifact_per_image(profile: str) -> None:
    modules = configs(profile)
    assert list(modules) == ["fraudpipe", "fraudpipe-e2e"], "the operator deploys first"
    artifacts = [a for m in modules.values() for a in m["build"]["artifacts"]]
    expected = SERVICES + (STATEFUL if profile == "local-node" else []) + ["e2e"]
    assert sorted(a["image"] for a in artifacts) == sorted(
        f"localhost/fraudpipe/{n}" for n in expected
    )
    for module in modules.values():
        assert module["build"]["local"]["push"] is False
        if profile == "kind":
            assert module["build"]["local"]["useBuildkit"] is True, "cache mounts need BuildKit"
    builder = "custom" if profile == "local-node" else "docker"
    assert all(builder in a for a in artifacts)


@pytest.mark.parametrize("profile", ["local-node", "kind"])
def test_verify_runs_the_e2e_image_as_a_job_under_a_read_only_service_account(
    profile: str, tmp_path: Path
) -> None:
    (case,) = configs(profile)["fraudpipe-e2e"]["verify"]
    assert case["container"]["image"] == "localhost/fraudpipe/e2e"
    assert case["container"]["args"] == ["verify"]
    job = yaml.safe_load(
        (REPO / case["executionMode"]["kubernetesCluster"]["jobManifestPath"]).read_text()
    )
    assert job["metadata"]["labels"], "skaffold adds its run-id to the Job's labels"
    pod = job["spec"]["template"]
    assert [c["name"] for c in pod["spec"]["containers"]] == [case["container"]["name"]]
    assert pod["metadata"]["labels"]["fraudpipe.io/pipeline"] == "payments", (
        "the broker's NetworkPolicy admits only the pipeline's pods"
    )
    # The ServiceAccount exists in the fixture's release and may only read.
    docs = rendered(profile, tmp_path)
    namespace = job["metadata"]["namespace"]
    account = pod["spec"]["serviceAccountName"]
    assert any(
        d["kind"] == "ServiceAccount"
        and d["metadata"]["name"] == account
        and d["metadata"].get("namespace", namespace) == namespace
        for d in docs
    )
    (binding,) = [
        d
        for d in docs
        if d["kind"] == "RoleBinding" and any(s["name"] == account for s in d["subjects"])
    ]
    (role,) = [
        d
        for d in docs
        if d["kind"] == "Role" and d["metadata"]["name"] == binding["roleRef"]["name"]
    ]
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert verbs <= {"get", "list", "watch"}, role["rules"]


@pytest.mark.parametrize("profile", ["local-node", "kind"])
def test_render_wires_each_built_image_into_the_chart(profile: str, tmp_path: Path) -> None:
    docs = rendered(profile, tmp_path)
    container = operator_container(docs)
    assert container["image"].startswith("localhost/fraudpipe/operator:")
    assert container["imagePullPolicy"] == "IfNotPresent"
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}  # not valueFrom
    for name in ["scorer", "api", "producer"]:
        repo, _, tag = env[f"FRAUDPIPE_{name.upper()}_IMAGE"].rpartition(":")
        assert repo == f"localhost/fraudpipe/{name}"
        assert tag, "an empty tag"
        assert tag != "0.1.0", "the per-image tag skaffold computed, not the chart's default"
    assert any(d["kind"] == "CustomResourceDefinition" for d in docs)
    # The fixture's hook Jobs run the e2e image skaffold built, for this profile's target.
    seed = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].endswith("-seed"))
    (hook,) = seed["spec"]["template"]["spec"]["containers"]
    assert hook["image"].startswith("localhost/fraudpipe/e2e:")
    flavor = {e["name"]: e["value"] for e in hook["env"]}["KAFKA_FLAVOR"]
    assert flavor == ("kafka" if profile == "local-node" else "redpanda")
