"""skaffold on the node of hack/cluster, the way a developer runs it on kind: `skaffold build`
builds every image (buildah, imported into the node's containerd; no registry, no Docker),
`skaffold deploy` installs the operator and the end-to-end fixture (a FraudPipeline with the
demo producer on);
`skaffold verify` runs the e2e checks as a Job in the cluster and passes; with the pipeline
gone it fails; `skaffold delete` removes both releases.

Runs after test_pipeline.py, whose release (the same name and namespace) is uninstalled when
that module ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from e2e_checks import PIPELINE
from e2e_harness import Target
from operator_harness import REPO, wait_for

HACK_SKAFFOLD = REPO / "hack" / "skaffold"
CACHE = Path(os.environ.get("FRAUDPIPE_CACHE", Path.home() / ".cache" / "fraudpipe"))
IMAGES = ["operator", "scorer", "api", "producer", "kafka", "postgres", "redis", "registry", "e2e"]
RELEASE_NAMESPACE, FIXTURE_NAMESPACE = "fraudpipe-system", "fraudpipe-e2e"
OPERATOR_SELECTOR = "app.kubernetes.io/name=fraudpipe,app.kubernetes.io/component=operator"

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.images,
    pytest.mark.skipif(os.geteuid() != 0, reason="buildah, podman and the node need root here"),
    pytest.mark.skipif(
        not (CACHE / "bin" / "skaffold").exists(), reason="run: hack/provision skaffold"
    ),
    # Cold, the first build of every image takes many minutes (docs/development.md).
    pytest.mark.timeout(3600),
]


def on_the_node_cluster(target: Target) -> bool:
    config = yaml.safe_load(Path(target.kubeconfig).read_text())
    return bool(config.get("current-context") == "fraudpipe-local")


def hack_skaffold(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """hack/skaffold with the suite's cluster; its output is echoed for the log."""
    print(f"$ hack/skaffold {' '.join(args)}", file=sys.stderr)
    started = time.monotonic()
    result = subprocess.run(
        [str(HACK_SKAFFOLD), *args],
        cwd=REPO,
        env={**os.environ, "KUBECONFIG": os.environ["FRAUDPIPE_E2E_KUBECONFIG"]},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(result.stdout[-6000:], result.stderr[-6000:], sep="\n", file=sys.stderr)
    print(f"(exit {result.returncode} after {time.monotonic() - started:.0f}s)", file=sys.stderr)
    return result


def node_images() -> set[str]:
    root = Path(os.environ.get("FRAUDPIPE_CLUSTER_DIR", f"/tmp/fraudpipe-cluster-{os.getuid()}"))
    sock = root / "containerd" / "containerd.sock"
    out = subprocess.run(
        ["ctr", "--address", str(sock), "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def namespace_gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except client.ApiException as exc:
        return bool(exc.status == 404)
    return False


@pytest.fixture
def skaffold_deployed(
    target: Target, api_client: client.ApiClient, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Path]]:
    """`hack/skaffold build` then `deploy -p local-node`: the build's tags by image and its file;
    `skaffold delete` and the two namespaces removed afterwards (the pipeline's claims go with
    the fixture's)."""
    if not on_the_node_cluster(target):
        pytest.skip("the local-node profile runs on hack/cluster's node; on kind see docs")
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    if apps.list_deployment_for_all_namespaces(label_selector=OPERATOR_SELECTOR).items:
        pytest.skip("an operator already runs on this cluster (e.g. `make demo`)")
    build_file = tmp_path / "build.json"
    try:
        built = hack_skaffold(
            "build", "-p", "local-node", f"--file-output={build_file}", timeout=3000
        )
        assert built.returncode == 0, "skaffold build failed (output above)"
        deployed = hack_skaffold(
            "deploy", "-p", "local-node", f"--build-artifacts={build_file}", timeout=900
        )
        assert deployed.returncode == 0, "skaffold deploy failed (output above)"
        builds = json.loads(build_file.read_text())["builds"]
        yield {b["imageName"]: b["tag"] for b in builds}, build_file
    finally:
        hack_skaffold("delete", "-p", "local-node", timeout=600)
        for namespace in (FIXTURE_NAMESPACE, RELEASE_NAMESPACE):
            if not namespace_gone(core, namespace):
                core.delete_namespace(namespace)
        for namespace in (FIXTURE_NAMESPACE, RELEASE_NAMESPACE):
            wait_for(lambda: namespace_gone(core, namespace), f"namespace {namespace} gone", 300)  # noqa: B023


def test_skaffold_verify_passes_on_the_deployed_pipeline_and_fails_without_it(
    skaffold_deployed: tuple[dict[str, str], Path], api_client: client.ApiClient
) -> None:
    builds, build_file = skaffold_deployed
    # Every image built and in the node's containerd under skaffold's tag.
    assert sorted(builds) == sorted(f"localhost/fraudpipe/{n}" for n in IMAGES)
    in_node = node_images()
    missing = [tag for tag in builds.values() if tag not in in_node]
    assert not missing, f"built but not in the node's containerd: {missing}"
    # The operator runs the image skaffold built and hands the built scorer to pipelines.
    apps = client.AppsV1Api(api_client)
    operator = apps.read_namespaced_deployment("fraudpipe", RELEASE_NAMESPACE)
    container = operator.spec.template.spec.containers[0]
    assert container.image == builds["localhost/fraudpipe/operator"]
    env = {e.name: e.value for e in container.env}
    assert env["FRAUDPIPE_SCORER_IMAGE"] == builds["localhost/fraudpipe/scorer"]

    verify = ("verify", "-p", "local-node", f"--build-artifacts={build_file}")
    passed = hack_skaffold(*verify, timeout=1500)
    assert passed.returncode == 0, "skaffold verify failed on a deployed pipeline (output above)"
    output = passed.stdout + passed.stderr
    assert "ok: alerts served through http://payments-api.fraudpipe-e2e.svc" in output
    assert "verify: passed" in output

    # The same check on a namespace whose pipeline is gone must fail, and say why.
    custom = client.CustomObjectsApi(api_client)
    custom.delete_namespaced_custom_object(
        "fraudpipe.io", "v1alpha1", FIXTURE_NAMESPACE, "fraudpipelines", PIPELINE
    )

    def pipeline_gone() -> bool:
        try:
            custom.get_namespaced_custom_object(
                "fraudpipe.io", "v1alpha1", FIXTURE_NAMESPACE, "fraudpipelines", PIPELINE
            )
        except client.ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_for(pipeline_gone, "the FraudPipeline deleted", 180)
    failed = hack_skaffold(*verify, timeout=600)
    assert failed.returncode != 0, "skaffold verify passed without a pipeline"
    assert f"no FraudPipeline {PIPELINE} in namespace {FIXTURE_NAMESPACE}" in (
        failed.stdout + failed.stderr
    )
