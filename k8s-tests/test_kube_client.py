"""The operator's own Kubernetes client against a real API server, where its behaviour is the
server's: a status write against a stale resourceVersion is refused (the canary driver relies on
it so that a decision taken on a stale read never overwrites a newer spec), and a part turned
off is deleted only where the pipeline owns it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import kopf
import pytest
from kubernetes import client

sys.path.insert(0, str(Path(__file__).parent))
from operator_harness import Pipelines, example, operator_release

from fraudpipe_operator.kube import Kube, KubeError
from fraudpipe_operator.models import GROUP, PLURAL, VERSION, FraudPipeline
from fraudpipe_operator.reconcile import remove_turned_off

pytestmark = pytest.mark.k8s
__all__ = ["operator_release"]  # fixtures


def client_of(kube_client: Any) -> Kube:
    """Our client with the test's admin credentials."""
    configuration = kube_client.configuration
    token = (configuration.api_key or {}).get("authorization", "").removeprefix("Bearer ")
    return Kube(
        kopf.ConnectionInfo(
            server=configuration.host,
            ca_path=configuration.ssl_ca_cert,
            certificate_path=configuration.cert_file,
            private_key_path=configuration.key_file,
            token=token or None,
        )
    )


async def test_a_status_write_against_a_stale_resource_version_is_refused(
    kube_client: Any, k8s_namespace: str, operator_release: Any
) -> None:
    pipelines = Pipelines(kube_client, k8s_namespace)
    pipelines.create(example("managed.yaml"))
    name = example("managed.yaml")["metadata"]["name"]
    kube = client_of(kube_client)
    try:
        read = await kube.get("FraudPipeline", k8s_namespace, name)
        assert read is not None
        version = read["metadata"]["resourceVersion"]
        pipelines.patch(name, {"scorer": {"replicas": 3}})  # someone else writes meanwhile
        with pytest.raises(KubeError) as refused:
            await kube.patch_status(
                f"{GROUP}/{VERSION}",
                PLURAL,
                k8s_namespace,
                name,
                {"model": "stale"},
                resource_version=version,
            )
        assert refused.value.status == 409
        fresh = await kube.get("FraudPipeline", k8s_namespace, name)
        assert fresh is not None
        await kube.patch_status(
            f"{GROUP}/{VERSION}",
            PLURAL,
            k8s_namespace,
            name,
            {"model": "fresh"},
            resource_version=fresh["metadata"]["resourceVersion"],
        )
        after = await kube.get("FraudPipeline", k8s_namespace, name)
        assert after is not None
        assert after["status"]["model"] == "fresh"
    finally:
        await kube.close()


def cronjob(name: str, owners: list[dict[str, Any]]) -> dict[str, Any]:
    container = {"name": "c", "image": "localhost/fraudpipe/api:dev", "command": ["true"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "ownerReferences": owners},
        "spec": {
            "schedule": "0 3 1 1 *",
            "jobTemplate": {
                "spec": {
                    "template": {"spec": {"restartPolicy": "Never", "containers": [container]}}
                }
            },
        },
    }


async def test_a_part_turned_off_is_deleted_only_where_the_pipeline_owns_it(
    kube_client: Any, k8s_namespace: str, operator_release: Any
) -> None:
    """remove_turned_off on the API server: the pipeline's own CronJob goes, one of the same
    kind someone else made stays, and one that is not there is no error."""
    body = example("managed.yaml")
    Pipelines(kube_client, k8s_namespace).create(body)
    kube = client_of(kube_client)
    batch = client.BatchV1Api(kube_client)
    try:
        read = await kube.get("FraudPipeline", k8s_namespace, body["metadata"]["name"])
        assert read is not None
        pipeline = FraudPipeline.from_body(read)
        owner = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FraudPipeline",
            "name": pipeline.name,
            "uid": pipeline.uid,
            "controller": True,
        }
        batch.create_namespaced_cron_job(k8s_namespace, cronjob("ours-retention", [owner]))
        batch.create_namespaced_cron_job(k8s_namespace, cronjob("theirs-retention", []))
        errors = await remove_turned_off(
            kube,
            pipeline,
            [
                ("CronJob", "ours-retention"),
                ("CronJob", "theirs-retention"),
                ("CronJob", "never-made-backup"),
            ],
        )
        assert errors == []
        left = {c.metadata.name for c in batch.list_namespaced_cron_job(k8s_namespace).items}
        assert "ours-retention" not in left
        assert "theirs-retention" in left
    finally:
        await kube.close()
