"""fraudpipe-e2e: the end-to-end fixture and checks that run inside the cluster, the program of
the e2e image (k8s-tests/e2e/Dockerfile) that `skaffold run` and `skaffold verify` start.

  seed    push the model baked into the image to the namespace's registry, then create (or
          update) the FraudPipeline the checks expect (the chart's post-install hook Job)
  unseed  delete that FraudPipeline and wait until the operator has removed it (the chart's
          pre-delete hook: skaffold uninstalls this release before the operator's)
  verify  the checks of the host suite (e2e_checks.py, kafka_verdict.py) against that pipeline:
          Ready, its pods Running and Ready, every transaction decided exactly once on
          decisions.v1 (read_committed), alerts served through the API Service's DNS name
          (the Job of `skaffold verify`, whose ServiceAccount may only read)

Settings come from the environment (the Jobs set them); the namespace is the pod's own.
Exit status 0 when everything holds, 1 with the failed check on the last line otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from fraudpipe_common.model_artifact import push_model, read_model_dir
from fraudpipe_testing.waiting import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_checks import (
    PIPELINE,
    check_alerts_served,
    check_exactly_once,
    check_pods_run,
    get_json,
    pipeline_body,
    pipeline_pods,
)
from kafka_verdict import verdict

GROUP, VERSION, PLURAL = "fraudpipe.io", "v1alpha1", "fraudpipelines"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def log(message: str) -> None:
    print(f"[fraudpipe-e2e] {message}", flush=True)


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name) or default
    if value is None:
        raise SystemExit(f"[fraudpipe-e2e] {name} is not set (the Job's manifest sets it)")
    return value


def own_namespace() -> str:
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return setting("NAMESPACE")


def kube() -> Any:
    from kubernetes import client, config

    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client


# -- seed ----------------------------------------------------------------------------------------
def seed() -> None:
    from kubernetes.client.exceptions import ApiException

    client = kube()
    namespace = own_namespace()
    registry = setting("REGISTRY", f"fraudpipe-registry.{namespace}.svc:5000")
    wait_for(lambda: get_json(f"http://{registry}", "/v2/")[0] == 200, f"registry {registry}", 180)
    artifact = read_model_dir(Path(setting("MODEL_DIR", "/opt/fraudpipe-e2e/model")))
    pushed = asyncio.run(
        push_model(registry, "fraudpipe/models/e2e", artifact, tag="latest", plain_http=True)
    )
    model_ref = str(pushed)
    log(f"model pushed: {model_ref}")

    example = yaml.safe_load(Path(setting("PIPELINE_EXAMPLE")).read_text())

    def image(variable: str, store: str) -> str:
        # "example": the image examples/local-node.yaml names (what hack/images builds).
        chosen = setting(variable, "")
        return str(example["spec"][store]["managed"]["image"]) if chosen == "example" else chosen

    body = pipeline_body(
        example,
        model_ref,
        setting("KAFKA_FLAVOR", "redpanda"),
        image("KAFKA_IMAGE", "kafka"),
        image("REDIS_IMAGE", "redis"),
        image("POSTGRES_IMAGE", "postgres"),
    )
    custom = client.CustomObjectsApi()
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        log(f"FraudPipeline {PIPELINE} created in {namespace}")
    except ApiException as exc:
        if exc.status != 409:
            raise
        # Already there (a second `skaffold run`): the new model and settings, same object.
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, PIPELINE, {"spec": body["spec"]}
        )
        log(f"FraudPipeline {PIPELINE} updated in {namespace}")


def unseed() -> None:
    from kubernetes.client.exceptions import ApiException

    custom = kube().CustomObjectsApi()
    namespace = own_namespace()

    def gone() -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, PIPELINE)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    if gone():
        log(f"no FraudPipeline {PIPELINE} in {namespace}")
        return
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, PIPELINE)
    # The operator's finalizer stops the pipeline's daemons: it must still run, which is why
    # this is a hook of this release rather than a garbage-collected owner reference.
    wait_for(gone, f"FraudPipeline {PIPELINE} deleted by the operator", 240)
    log(f"FraudPipeline {PIPELINE} deleted from {namespace}")


# -- verify --------------------------------------------------------------------------------------
def ready_condition(pipeline: dict[str, Any]) -> dict[str, Any]:
    conditions = pipeline.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Ready"), {})


def verify() -> None:
    from kubernetes.client.exceptions import ApiException

    client = kube()
    namespace = own_namespace()
    custom, core = client.CustomObjectsApi(), client.CoreV1Api()
    started = time.monotonic()

    def pipeline() -> dict[str, Any]:
        found: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, PIPELINE
        )
        return found

    try:
        pipeline()
    except ApiException as exc:
        if exc.status == 404:
            raise AssertionError(
                f"no FraudPipeline {PIPELINE} in namespace {namespace}: deploy it first "
                "(skaffold run), then verify"
            ) from None
        raise

    within = float(setting("READY_WITHIN_S", "600"))
    wait_for(
        lambda: ready_condition(pipeline()).get("status") == "True",
        f"FraudPipeline {PIPELINE} Ready",
        within,
    )
    log(f"ok: FraudPipeline {PIPELINE} Ready ({time.monotonic() - started:.0f}s)")

    check_pods_run(pipeline_pods(core, namespace))
    log("ok: broker, Redis, PostgreSQL, scorer, API and producer pods Running and Ready")

    def some_traffic() -> dict[str, Any] | None:
        found = asyncio.run(verdict(f"{PIPELINE}-kafka:9092", within_s=180))
        return found if found["produced"] else None

    # The demo producer's pod is Ready before its first send (slow nodes: seconds later).
    result = wait_for(some_traffic, "transactions on transactions.v1", 120, interval_s=5)
    check_exactly_once(result, at_least=1)
    log(
        f"ok: {result['produced']} transactions on transactions.v1, each with exactly one "
        "committed decision on decisions.v1"
    )

    api = setting("API_URL", f"http://{PIPELINE}-api.{namespace}.svc.cluster.local:8000")
    alert = check_alerts_served(api, pipeline()["spec"]["model"]["ref"])
    log(f"ok: alerts served through {api} (e.g. {alert['decision']} {alert['tx_id']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fraudpipe-e2e", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("command", choices=["seed", "unseed", "verify"])
    args = parser.parse_args(argv)
    try:
        {"seed": seed, "unseed": unseed, "verify": verify}[args.command]()
    except AssertionError as failed:
        log(f"FAILED: {failed}")
        return 1
    log(f"{args.command}: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
