"""The end-to-end checks, one implementation for two callers: the host suite
(k8s-tests/e2e/test_pipeline.py, through the API server and port-forwards) and the in-cluster
check of `skaffold verify` (in_cluster.py in the e2e image, through Service names).

Each check raises AssertionError with what it saw. Kubernetes objects come from the official
client (the caller's ApiClient: kubeconfig on the host, the ServiceAccount in the cluster);
HTTP goes to a base URL (a port-forward's loopback port, or the API Service's DNS name).
Standard library and the kubernetes client only: both the development venv and the e2e image
have them.
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from typing import Any

from fraudpipe_testing.waiting import wait_for

PIPELINE = "payments"
PIPELINE_LABEL = "fraudpipe.io/pipeline"
COMPONENT_LABEL = "fraudpipe.io/component"
# Every long-running part of a pipeline with the demo producer on.
RUNNING_COMPONENTS = frozenset({"kafka", "redis", "postgres", "scorer", "api", "producer"})


# -- pods ----------------------------------------------------------------------------------------
def pipeline_pods(core: Any, namespace: str, pipeline: str = PIPELINE) -> list[Any]:
    """The pipeline's own pods (those the operator labels with a component; a checker pod that
    only borrows the pipeline label for the broker's NetworkPolicy is not one), not deleting."""
    selector = f"{PIPELINE_LABEL}={pipeline},{COMPONENT_LABEL}"
    return [
        pod
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items
        if pod.metadata.deletion_timestamp is None
    ]


def component(pod: Any) -> str:
    return str(pod.metadata.labels[COMPONENT_LABEL])


def ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and all(
        status.ready for status in pod.status.container_statuses or []
    )


def of_a_job(pod: Any) -> bool:
    return any(owner.kind == "Job" for owner in pod.metadata.owner_references or [])


def check_pods_run(pods: list[Any]) -> None:
    """Broker, Redis, PostgreSQL, scorer, API and producer pods Running and Ready; the pods of
    Jobs (the migrations, a CronJob's run) done."""
    missing = RUNNING_COMPONENTS - {component(pod) for pod in pods}
    assert not missing, f"no pod of: {', '.join(sorted(missing))}"
    for pod in pods:
        if of_a_job(pod):
            assert pod.status.phase == "Succeeded", f"{pod.metadata.name}: {pod.status.phase}"
        else:
            assert ready(pod), f"{pod.metadata.name}: {pod.status.phase}, not Ready"


# -- decisions -----------------------------------------------------------------------------------
def check_exactly_once(verdict: dict[str, Any], at_least: int) -> None:
    """A verdict of kafka_verdict.py: at least `at_least` transactions, each decided once, and
    (when it read PostgreSQL) exactly the FLAG and BLOCK decisions among them as alerts."""
    assert verdict["produced"] >= at_least, f"too few transactions: {verdict}"
    assert verdict["missing"] == 0, f"transactions without a decision: {verdict}"
    assert verdict["duplicated"] == 0, f"transactions decided twice: {verdict}"
    if "alerts" in verdict:
        assert verdict["alerts_missing"] == 0, f"FLAG/BLOCK decisions without an alert: {verdict}"
        assert verdict["alerts_unexpected"] == 0, f"alerts of APPROVE decisions: {verdict}"
        assert verdict["alerts_differing"] == 0, f"alerts unlike their decision: {verdict}"


# -- the API -------------------------------------------------------------------------------------
def get_json(base_url: str, path: str) -> tuple[int, Any]:
    """(status, body); a connection that fails counts as status 0, so callers can poll."""
    request = urllib.request.Request(f"{base_url}{path}")  # noqa: S310 (http:// URLs only)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except (urllib.error.URLError, OSError):
        return 0, None


def check_alerts_served(base_url: str, model_ref: str, within_s: float = 180) -> dict[str, Any]:
    """FLAG/BLOCK alerts with reasons through the API, each readable by its id, decided by the
    pipeline's model. Returns the first one."""

    def alerts() -> list[dict[str, Any]]:
        status, body = get_json(base_url, "/v1/alerts?limit=20")
        return list(body["items"]) if status == 200 else []

    first: dict[str, Any] = wait_for(alerts, f"an alert through {base_url}", within_s)[0]
    assert first["decision"] in ("FLAG", "BLOCK"), first
    assert first["reasons"], first
    status, one = get_json(base_url, f"/v1/alerts/{first['tx_id']}")
    assert status == 200, f"GET /v1/alerts/{first['tx_id']}: {status}"
    assert one["tx_id"] == first["tx_id"], one
    digest = one["model_digest"].removeprefix("sha256:")
    assert digest in model_ref, f"alert decided by {digest}, the pipeline serves {model_ref}"
    # The trained model carries its explainer: every alert says why, in numbers and words.
    status, why = get_json(base_url, f"/v1/alerts/{first['tx_id']}/explanation")
    assert status == 200, f"GET /v1/alerts/{first['tx_id']}/explanation: {status}"
    assert len(why["contributions"]) == 5, why
    assert why["summary"].startswith(f"{first['decision']} with model score"), why
    return first


# -- the pipeline under test ---------------------------------------------------------------------
def pipeline_body(
    example: dict[str, Any],
    model_ref: str,
    flavor: str,
    kafka_image: str = "",
    redis_image: str = "",
    postgres_image: str = "",
    name: str = PIPELINE,
) -> dict[str, Any]:
    """examples/local-node.yaml (`example`) made into the pipeline the checks expect: this
    model, the broker flavor and stateful images of the target (empty: the CRD's default, the
    official image), the services' images from the chart, the producer at 20 tx/s."""
    body = copy.deepcopy(example)
    body["metadata"] = {"name": name}
    spec = body["spec"]
    spec["model"] = {"ref": model_ref, "plainHttp": True}
    spec["kafka"]["managed"].update(flavor=flavor, image=kafka_image)
    for store, image in (("redis", redis_image), ("postgres", postgres_image)):
        spec[store]["managed"].pop("image", None)
        if image:
            spec[store]["managed"]["image"] = image
    for service in ("scorer", "api", "producer"):
        spec[service]["image"] = ""
    spec["producer"].update(rps=20, fraudRate=0.05)
    return body
