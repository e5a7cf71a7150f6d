"""The data lifecycle on real pods: an S3-compatible server in the pipeline's namespace (the
`s3` image of hack/images: versitygw), the pipeline's `objectStore`, `archive`, `backup` and
`retention` pointed at it, and a CronJob's run started now rather than at its schedule.

The host reads the bucket through a port-forward with the archive's own client
(fraudpipe_common.archive), as `fraudpipe-model train --from-archive` would.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from e2e_harness import Target, kubectl, local_url
from kubernetes import client
from operator_harness import wait_for
from pydantic import SecretStr

from fraudpipe_common.archive.store import S3Settings

S3 = "fraudpipe-s3"
S3_PORT = 7070
S3_BUCKET = "fraudpipe"
S3_SECRET = "fraudpipe-s3-credentials"
S3_REGION = "us-east-1"
# Everything the pipeline writes goes under this prefix of the bucket.
PREFIX = "e2e"
# Never due while the suite runs (1 January, 03:00 UTC): the tests start each run themselves.
NEVER_DURING_THE_SUITE = "0 3 1 1 *"


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str

    @classmethod
    def generate(cls) -> S3Credentials:
        return cls("fp" + secrets.token_hex(8), secrets.token_urlsafe(32))

    def settings(self, port: int) -> S3Settings:
        """The archive client's settings for a port-forward's loopback end."""
        return S3Settings(
            endpoint_url=local_url(port),
            region=S3_REGION,
            access_key_id=self.access_key_id,
            secret_access_key=SecretStr(self.secret_access_key),
        )


def object_store_objects(
    target: Target, namespace: str, credentials: S3Credentials
) -> list[dict[str, Any]]:
    """The Secret the pipeline reads its keys from (as a user would create it), and the S3
    server whose root keys they are, with the bucket made at start."""
    labels = {"app.kubernetes.io/name": S3}
    from_secret = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": key}}}
        for var, key in (
            ("ROOT_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
            ("ROOT_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        )
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": S3_SECRET, "namespace": namespace},
            "stringData": {
                "AWS_ACCESS_KEY_ID": credentials.access_key_id,
                "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": S3, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 1000,
                            "runAsGroup": 1000,
                            "fsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "s3",
                                "image": target.s3_image,
                                "imagePullPolicy": "IfNotPresent",
                                "env": [
                                    {"name": "S3_BUCKETS", "value": S3_BUCKET},
                                    {"name": "S3_REGION", "value": S3_REGION},
                                    *from_secret,
                                ],
                                "ports": [{"containerPort": S3_PORT}],
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                                # Unsigned requests are refused (403): any answer means up.
                                "readinessProbe": {
                                    "tcpSocket": {"port": S3_PORT},
                                    "periodSeconds": 2,
                                },
                            }
                        ],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": S3, "namespace": namespace, "labels": labels},
            "spec": {"selector": labels, "ports": [{"port": S3_PORT}]},
        },
    ]


def lifecycle_spec(namespace: str) -> dict[str, Any]:
    """The FraudPipeline fields that archive, back up and expire into the server above; the
    archive writes a window at least every 30 s so that the suite sees objects soon."""
    return {
        "objectStore": {
            "endpoint": f"http://{S3}.{namespace}.svc:{S3_PORT}",
            "region": S3_REGION,
            "bucket": S3_BUCKET,
            "prefix": PREFIX,
            "credentialsSecretRef": {"name": S3_SECRET},
        },
        "archive": {"enabled": True, "maxWaitSeconds": 30},
        "backup": {"enabled": True, "schedule": NEVER_DURING_THE_SUITE, "keep": 3},
        "retention": {
            "enabled": True,
            "schedule": NEVER_DURING_THE_SUITE,
            "alertsDays": 30,
            "feedbackDays": 365,
        },
    }


def run_cronjob_now(
    target: Target, batch: client.BatchV1Api, namespace: str, cronjob: str, within_s: float
) -> str:
    """A Job from the CronJob's template (`kubectl create job --from`, owned by the CronJob as a
    scheduled run is); returns the Job's name once it succeeded."""
    name = f"{cronjob}-now-{int(time.time()) % 10**6}"
    kubectl(target, "create", "job", name, f"--from=cronjob/{cronjob}", "-n", namespace)

    def finished() -> str | None:
        status = batch.read_namespaced_job(name, namespace).status
        for condition in status.conditions or []:
            if condition.type in ("Complete", "Failed") and condition.status == "True":
                return str(condition.type)
        return None

    outcome = wait_for(finished, f"Job {name} finished", within_s)
    if outcome != "Complete":
        logs = kubectl(
            target, "logs", f"job/{name}", "-n", namespace, "--all-containers", "--prefix"
        ).stdout
        raise AssertionError(f"Job {name} failed:\n{logs[-4000:]}")
    return name
