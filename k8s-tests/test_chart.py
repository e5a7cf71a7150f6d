"""The Helm chart: lint-clean, every rendered manifest accepted by the real API server, least
privilege in both RBAC modes, the CRD upgraded with the chart and kept on uninstall, and NOTES
that print an example the API server accepts."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

sys.path.insert(0, str(Path(__file__).parent))
from operator_harness import (
    CHART,
    MODEL_REF,
    RELEASE,
    RELEASE_NAMESPACE,
    Pipelines,
    Release,
    crd_established,
    example,
    helm,
    install_chart,
    kubectl,
    operator_kubeconfig,
    operator_release,
    service_account_kubeconfig,
    start_operator,
    unique_topics,
    volumes,
    wait_for,
)

pytestmark = pytest.mark.k8s
__all__ = ["operator_kubeconfig", "operator_release", "start_operator", "volumes"]  # fixtures

KUBE_VERSION = "v1.34.4"
VALUE_SETS = {
    "defaults": [],
    "watch-namespaces": ["operator.watchNamespaces={NAMESPACE}"],
    "custom": [
        "crds.install=false",
        "serviceAccount.create=false",
        "serviceAccount.name=existing",
        "metrics.service=false",
        "operator.image.tag=dev",
        "pipelineImages.tag=dev",
        "operator.logLevel=DEBUG",
        "operator.podLabels.team=fraud",
        "fullnameOverride=fp",
        "dashboards.enabled=false",
    ],
}


def values_for(name: str, namespace: str) -> list[str]:
    return [v.replace("{NAMESPACE}", "{" + namespace + "}") for v in VALUE_SETS[name]]


def sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_is_clean(kubeconfig: str, value_set: str) -> None:
    result = helm(kubeconfig, "lint", "--strict", str(CHART), *sets(values_for(value_set, "x")))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_rendered_manifest_is_accepted_by_the_api_server(
    operator_release: Release,
    kube_client: Any,
    kubeconfig: str,
    k8s_namespace: str,
    value_set: str,
) -> None:
    rendered = helm(
        kubeconfig,
        "template",
        "dry",
        str(CHART),
        "--namespace",
        k8s_namespace,
        "--kube-version",
        KUBE_VERSION,
        *sets(values_for(value_set, k8s_namespace)),
    ).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {d["kind"] for d in documents}
    # The helm test pod runs as the namespace's default ServiceAccount, which the
    # controller-manager creates a moment after the namespace.
    core = client.CoreV1Api(kube_client)
    wait_for(lambda: core.read_namespaced_service_account("default", k8s_namespace), "default SA")
    assert {"Deployment"} <= kinds
    result = kubectl(
        kubeconfig,
        "apply",
        "--dry-run=server",
        "--server-side",
        "--force-conflicts",
        "--field-manager=chart-test",
        "-f",
        "-",
        input=rendered,
    )
    assert result.stdout.count("(server dry run)") == len(documents)


def test_the_operator_is_scraped_where_the_prometheus_operator_is(kubeconfig: str) -> None:
    """The pipelines' alert on failed scheduled runs reads the operator's own metrics: where
    the ServiceMonitor CRD exists, the chart selects its metrics Service by port name."""

    def render(*api_versions: str) -> list[dict[str, Any]]:
        flags = [arg for v in api_versions for arg in ("--api-versions", v)]
        rendered = helm(kubeconfig, "template", "dry", str(CHART), "--namespace", "ops",
                        "--kube-version", KUBE_VERSION, *flags,
                        "--set", "metrics.serviceMonitor.labels.release=kps").stdout  # fmt: skip
        return [d for d in yaml.safe_load_all(rendered) if d]

    assert not [d for d in render() if d["kind"] == "ServiceMonitor"]  # no CRD, no object
    documents = render("monitoring.coreos.com/v1/ServiceMonitor")
    (monitor,) = [d for d in documents if d["kind"] == "ServiceMonitor"]
    (service,) = [d for d in documents if d["kind"] == "Service"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "kps"


def access(
    kube_client: Any,
    user: str,
    verb: str,
    resource: str,
    namespace: str = "",
    groups: list[str] | None = None,
    **extra: str,
) -> bool:
    review = client.AuthorizationV1Api(kube_client).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": groups or [],
                "resourceAttributes": {
                    "verb": verb,
                    "resource": resource,
                    "namespace": namespace,
                    **extra,
                },
            },
        }
    )
    return bool(review.status.allowed)


def test_operator_rbac_is_least_privilege(
    operator_release: Release, kube_client: Any, k8s_namespace: str
) -> None:
    sa = f"system:serviceaccount:{operator_release.namespace}:{operator_release.service_account}"
    ns = k8s_namespace
    allowed = [
        ("patch", "deployments", {"group": "apps"}),
        ("create", "statefulsets", {"group": "apps"}),
        ("create", "secrets", {}),
        ("get", "secrets", {}),
        ("list", "pods", {}),  # the canary driver finds the scorer pods
        ("patch", "fraudpipelines", {"group": "fraudpipe.io", "subresource": "status"}),
        ("create", "events", {}),
        ("patch", "servicemonitors", {"group": "monitoring.coreos.com"}),
        ("patch", "scaledobjects", {"group": "keda.sh"}),
        ("delete", "scaledobjects", {"group": "keda.sh"}),
        ("create", "triggerauthentications", {"group": "keda.sh"}),
        ("delete", "cronjobs", {"group": "batch"}),  # a report, retention or backup turned off
        ("delete", "deployments", {"group": "apps"}),  # the archiver turned off
    ]
    denied = [
        ("delete", "statefulsets", {"group": "apps"}),
        ("delete", "jobs", {"group": "batch"}),
        ("list", "secrets", {}),
        ("patch", "secrets", {}),
        ("delete", "secrets", {}),
        ("create", "pods", {}),
        ("delete", "pods", {}),
        ("create", "rolebindings", {"group": "rbac.authorization.k8s.io"}),
        ("delete", "fraudpipelines", {"group": "fraudpipe.io"}),
        ("create", "persistentvolumeclaims", {}),
        ("list", "scaledobjects", {"group": "keda.sh"}),
        ("create", "scaledjobs", {"group": "keda.sh"}),
        ("patch", "deployments", {"group": "apps", "subresource": "scale"}),
    ]
    for verb, resource, extra in allowed:
        assert access(kube_client, sa, verb, resource, ns, **extra), (verb, resource)
    for verb, resource, extra in denied:
        assert not access(kube_client, sa, verb, resource, ns, **extra), (verb, resource)
    # The pipeline's own pods run as `<name>-workload` with no token and no binding: nothing
    # the chart installs grants it (or every service account) anything.
    workload = f"system:serviceaccount:{ns}:payments-workload"
    # With the groups a service account's token carries, as the API server would see it.
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
    for verb, resource, extra in [*allowed, ("get", "pods", {}), ("get", "configmaps", {})]:
        assert not access(kube_client, workload, verb, resource, ns, groups, **extra), (
            verb,
            resource,
        )


def test_watch_namespaces_mode_reconciles_only_its_namespaces(
    operator_release: Release,
    kube_client: Any,
    kubeconfig: str,
    k8s_namespace: str,
    kafka_bootstrap: str,
    start_operator: Any,
    volumes: Any,
    tmp_path: Path,
) -> None:
    release = Release("fp-scoped", f"{k8s_namespace}-op", "fp-scoped-fraudpipe")
    core = client.CoreV1Api(kube_client)
    other = f"{k8s_namespace}-other"
    core.create_namespace({"metadata": {"name": other, "labels": {"fraudpipe.io/test": "true"}}})
    try:
        install_chart(
            kubeconfig,
            release.name,
            release.namespace,
            "crds.install=false",
            f"operator.watchNamespaces={{{k8s_namespace}}}",
        )
        sa = f"system:serviceaccount:{release.namespace}:{release.service_account}"
        apps = {"group": "apps"}
        assert access(kube_client, sa, "patch", "deployments", k8s_namespace, **apps)
        assert not access(kube_client, sa, "patch", "deployments", other, **apps)
        assert not access(kube_client, sa, "patch", "deployments", "default", **apps)

        config = service_account_kubeconfig(kube_client, kubeconfig, release, tmp_path / "kc")
        start_operator([k8s_namespace], kafka_bootstrap=kafka_bootstrap, kubeconfig=config)
        volumes(k8s_namespace, "payments")
        pipelines = Pipelines(kube_client, k8s_namespace)
        pipelines.create(example("managed.yaml", spec={"kafka": {"topics": unique_topics()}}))
        pipelines.wait_condition("payments", "Ready", within_s=180)
        ignored = Pipelines(kube_client, other)
        ignored.create(example("managed.yaml"))
        time.sleep(5)
        assert "status" not in ignored.get("payments")
        assert not client.AppsV1Api(kube_client).list_namespaced_stateful_set(other).items
        # Delete the served pipeline while its operator (and its token) still exist.
        pipelines.delete("payments")
        wait_for(
            lambda: (
                not pipelines.api.list_namespaced_custom_object(
                    "fraudpipe.io", "v1alpha1", k8s_namespace, "fraudpipelines"
                )["items"]
            ),
            "served pipeline finalized",
            within_s=60,
        )
    finally:
        helm(kubeconfig, "uninstall", release.name, "--namespace", release.namespace)
        core.delete_namespace(release.namespace)
        release_finalizers(kube_client, other)
        core.delete_namespace(other)


def release_finalizers(kube_client: Any, namespace: str) -> None:
    """No operator serves `namespace`: let its pipelines go without their finalizer."""
    api = client.CustomObjectsApi(kube_client)
    for item in api.list_namespaced_custom_object(
        "fraudpipe.io", "v1alpha1", namespace, "fraudpipelines"
    )["items"]:
        api.patch_namespaced_custom_object(
            "fraudpipe.io",
            "v1alpha1",
            namespace,
            "fraudpipelines",
            item["metadata"]["name"],
            {"metadata": {"finalizers": []}},
        )


def test_crd_upgrades_with_the_chart_and_survives_uninstall(
    operator_release: Release, kube_client: Any, kubeconfig: str, k8s_namespace: str
) -> None:
    extensions = client.ApiextensionsV1Api(kube_client)
    crd_name = "fraudpipelines.fraudpipe.io"
    install_chart(kubeconfig, RELEASE, RELEASE_NAMESPACE, "operator.reconcileIntervalSeconds=11")
    crd = extensions.read_custom_resource_definition(crd_name)
    assert crd.metadata.annotations["meta.helm.sh/release-name"] == RELEASE
    assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
    history = helm(kubeconfig, "history", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json").stdout
    assert len(json.loads(history)) >= 2

    pipelines = Pipelines(kube_client, k8s_namespace)
    pipelines.create(example("managed.yaml"))
    helm(kubeconfig, "uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE)
    try:
        assert extensions.read_custom_resource_definition(crd_name).metadata.uid == crd.metadata.uid
        assert pipelines.get("payments")["spec"]["model"]["ref"] == MODEL_REF
    finally:
        install_chart(kubeconfig, RELEASE, RELEASE_NAMESPACE)
        wait_for(lambda: crd_established(kube_client), "CRD established after reinstall")
        release_finalizers(kube_client, k8s_namespace)


def test_notes_print_an_example_the_api_server_accepts(
    operator_release: Release, kubeconfig: str, k8s_namespace: str
) -> None:
    output = helm(
        kubeconfig,
        "install",
        "notes",
        str(CHART),
        "--dry-run=server",
        "--set",
        "crds.install=false",
        "--namespace",
        k8s_namespace,
    ).stdout
    notes = output[output.index("NOTES:") :]
    manifest = re.search(r"<<'YAML'.*?\n(.*?)\nYAML\n", notes, re.S)
    assert manifest, notes
    text = manifest.group(1).replace("<64 hex digits>", "ab" * 32)
    result = kubectl(
        kubeconfig, "apply", "--dry-run=server", "-n", k8s_namespace, "-f", "-", input=text
    )
    assert "fraudpipeline.fraudpipe.io/payments created (server dry run)" in result.stdout
    assert "kubectl wait --for=condition=Ready fp/payments" in notes
