"""The local control plane behaves like a real cluster: CRDs are served, RBAC is enforced,
and Deployments get scheduled pods that go Running and Ready on kwok nodes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.k8s

CRD_GROUP = "smoke.fraudpipe.io"


def wait_for(check: Callable[[], Any], what: str, within_s: float = 90) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what}: not reached within {within_s}s")


def widget_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{CRD_GROUP}"},
        "spec": {
            "group": CRD_GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                    "required": ["size"],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def test_a_crd_is_served_and_validates_its_schema(kube_client: Any, k8s_namespace: str) -> None:
    extensions = client.ApiextensionsV1Api(kube_client)
    try:
        extensions.create_custom_resource_definition(widget_crd())
    except ApiException as exc:
        if exc.status != 409:
            raise
    wait_for(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in extensions.read_custom_resource_definition(
                f"widgets.{CRD_GROUP}"
            ).status.conditions
            or []
        ),
        "CRD Established",
    )
    custom = client.CustomObjectsApi(kube_client)

    def create(size: int) -> Any:
        body = {
            "apiVersion": f"{CRD_GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": f"w{size}"},
            "spec": {"size": size},
        }
        return custom.create_namespaced_custom_object(
            CRD_GROUP, "v1", k8s_namespace, "widgets", body
        )

    created = wait_for(lambda: _ignore_404(lambda: create(3)), "Widget kind served")
    assert created["spec"]["size"] == 3
    with pytest.raises(ApiException) as rejected:
        create(0)
    assert rejected.value.status == 422
    assert "spec.size" in rejected.value.body


def _ignore_404(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ApiException as exc:
        if exc.status == 404:  # the new kind takes a moment to appear in discovery
            return None
        raise


def test_rbac_denies_a_service_account_without_roles(kube_client: Any, k8s_namespace: str) -> None:
    authz = client.AuthorizationV1Api(kube_client)
    review = authz.create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{k8s_namespace}:nobody",
                "resourceAttributes": {
                    "namespace": k8s_namespace,
                    "verb": "list",
                    "resource": "secrets",
                },
            },
        }
    )
    assert review.status.allowed is False


def test_deployment_pods_become_ready_on_kwok_nodes(kube_client: Any, k8s_namespace: str) -> None:
    apps, core = client.AppsV1Api(kube_client), client.CoreV1Api(kube_client)
    labels = {"app": "smoke"}
    apps.create_namespaced_deployment(
        k8s_namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "smoke"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]
                    },
                },
            },
        },
    )
    wait_for(
        lambda: (
            (
                apps.read_namespaced_deployment_status("smoke", k8s_namespace).status.ready_replicas
                or 0
            )
            == 3
        ),
        "3 ready replicas",
    )
    pods = core.list_namespaced_pod(k8s_namespace, label_selector="app=smoke").items
    assert len(pods) == 3
    assert all(p.status.phase == "Running" for p in pods)
    ready_nodes = {
        n.metadata.name
        for n in core.list_node().items
        for c in n.status.conditions or []
        if c.type == "Ready" and c.status == "True"
    }
    assert {p.spec.node_name for p in pods} <= ready_nodes
    assert all(p.status.pod_ip and p.status.pod_ip.startswith("10.244.") for p in pods)
