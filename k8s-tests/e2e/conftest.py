"""Fixtures of the end-to-end suite: the chart installed with helm, a namespace with a
registry holding the model, and one FraudPipeline with the demo producer on.

The suite runs only when a cluster is named with `FRAUDPIPE_E2E_KUBECONFIG` (`make e2e` names
the node cluster of `hack/cluster`; see docs/development.md). `make test` collects and skips
it.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, utils

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from canary_models import push_candidates, write_variants
from e2e_checks import PIPELINE, PIPELINE_LABEL, pipeline_body
from e2e_harness import (
    RELEASE,
    RELEASE_NAMESPACE,
    Target,
    kill_operator,
    model_inputs_key,
    push_model,
    registry_objects,
    target_from_env,
    trained_model,
)
from lifecycle_e2e import (
    S3,
    S3Credentials,
    lifecycle_spec,
    object_store_objects,
)
from operator_harness import (
    EXAMPLES,
    Pipelines,
    crd_established,
    helm,
    install_chart,
    wait_for,
)

from fraudpipe_testing import toolchain


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if target_from_env() is not None:
        return
    skip = pytest.mark.skip(
        reason="end-to-end: no cluster named; run `make e2e` (or set FRAUDPIPE_E2E_KUBECONFIG)"
    )
    for item in items:
        if "k8s-tests/e2e/" in str(item.path).replace("\\", "/"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def target() -> Target:
    found = target_from_env()
    assert found is not None
    return found


@pytest.fixture(scope="session")
def api_client(target: Target) -> client.ApiClient:
    return config.new_client_from_config(config_file=target.kubeconfig)


RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def create_restricted_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        core.create_namespace({"metadata": {"name": name, "labels": RESTRICTED}})
    except client.ApiException as error:
        if error.status != 409:
            raise
        core.patch_namespace(name, {"metadata": {"labels": RESTRICTED}})


@pytest.fixture(scope="module")
def operator_chart(target: Target, api_client: client.ApiClient) -> Iterator[str]:
    """The chart, installed as a user would, with the images under test, into a namespace that
    enforces the restricted Pod Security Standard (helm would create it unlabelled)."""
    create_restricted_namespace(client.CoreV1Api(api_client), RELEASE_NAMESPACE)
    install_chart(
        target.kubeconfig,
        RELEASE,
        RELEASE_NAMESPACE,
        f"operator.image.repository={target.image_repo}/operator",
        f"operator.image.tag={target.image_tag}",
        f"pipelineImages.scorer={target.image_repo}/scorer",
        f"pipelineImages.api={target.image_repo}/api",
        f"pipelineImages.producer={target.image_repo}/producer",
        f"pipelineImages.tag={target.image_tag}",
    )
    wait_for(lambda: crd_established(api_client), "FraudPipeline CRD established")
    apps = client.AppsV1Api(api_client)

    def operator_available() -> bool:
        for deployment in apps.list_namespaced_deployment(RELEASE_NAMESPACE).items:
            if (deployment.status.available_replicas or 0) >= 1:
                return True
        return False

    wait_for(operator_available, "operator Deployment available", 180)
    yield RELEASE
    helm(target.kubeconfig, "uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait")


@pytest.fixture(scope="module")
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    """The pipeline's namespace, where the API server's admission enforces the restricted Pod
    Security Standard: every pod of the pipeline, the registry and the checkers must pass it."""
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    create_restricted_namespace(core, name)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def model_ref(target: Target, api_client: client.ApiClient, namespace: str) -> str:
    model = trained_model()
    for obj in registry_objects(target, namespace):
        utils.create_from_dict(api_client, obj, namespace=namespace)

    def registry_ready() -> bool:
        status = (
            client.AppsV1Api(api_client)
            .read_namespaced_deployment("fraudpipe-registry", namespace)
            .status
        )
        return (status.ready_replicas or 0) >= 1

    wait_for(registry_ready, "in-cluster registry ready", 120)
    return push_model(target, namespace, model)


@pytest.fixture(scope="module")
def object_store(target: Target, api_client: client.ApiClient, namespace: str) -> S3Credentials:
    """An S3-compatible server in the namespace, as a user's MinIO would be, with the Secret of
    its keys: where the pipeline archives and backs up (lifecycle_e2e.py)."""
    credentials = S3Credentials.generate()
    for obj in object_store_objects(target, namespace, credentials):
        utils.create_from_dict(api_client, obj, namespace=namespace)

    def s3_ready() -> bool:
        status = client.AppsV1Api(api_client).read_namespaced_deployment(S3, namespace).status
        return (status.ready_replicas or 0) >= 1

    wait_for(s3_ready, "in-cluster S3 server ready", 120)
    return credentials


@pytest.fixture(scope="module")
def candidates(target: Target, namespace: str, model_ref: str) -> dict[str, str]:
    """The canary scenarios' candidate models (canary_models.py), pushed beside the model."""
    out = toolchain.cache_dir() / "e2e" / f"candidates-{model_inputs_key()}"
    return push_candidates(target, namespace, write_variants(trained_model(), out))


@pytest.fixture(scope="module")
def pipelines(api_client: client.ApiClient, namespace: str) -> Pipelines:
    return Pipelines(api_client, namespace)


@pytest.fixture(scope="module")
def pipeline(
    target: Target,
    operator_chart: str,
    model_ref: str,
    object_store: S3Credentials,
    pipelines: Pipelines,
    api_client: client.ApiClient,
) -> dict[str, Any]:
    """The FraudPipeline under test, created once; the last test deletes it. It archives,
    backs up and expires into the namespace's S3 server. The operator is killed mid-reconcile
    (its stores created, the rest not yet): the pipeline must still become Ready through the
    operator's successor."""
    example = yaml.safe_load((EXAMPLES / "local-node.yaml").read_text())
    body = pipeline_body(
        example,
        model_ref,
        target.flavor,
        target.kafka_image,
        target.redis_image,
        target.postgres_image,
    )
    body["spec"] |= lifecycle_spec(pipelines.namespace)
    created = pipelines.create(body)
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    wait_for(
        lambda: (
            apps.list_namespaced_stateful_set(
                pipelines.namespace, label_selector=f"{PIPELINE_LABEL}={PIPELINE}"
            ).items
        ),
        "the operator reconciling the new pipeline (stores created)",
        60,
    )
    kill_operator(core)  # returns once the pod is gone: only its successor can finish
    # The first start pulls nothing but runs a JVM, initdb and a migration on a small node.
    pipelines.wait_condition(PIPELINE, "Ready", within_s=420)
    return created
