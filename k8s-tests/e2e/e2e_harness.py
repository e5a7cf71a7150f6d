"""The end-to-end suite's machinery: which cluster and images (from the environment), the
model the pipeline serves (trained here, pushed to a registry inside the cluster), port-forwards
through the API server, and a checker pod that reads Kafka from inside the cluster.

Everything reaches the cluster through its API server (`kubectl port-forward`, pod logs), so
the same code runs on this machine's node cluster and on kind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from e2e_checks import PIPELINE, PIPELINE_LABEL, get_json
from operator_harness import REPO, run, wait_for

from fraudpipe_testing import toolchain

# The operator's Helm release and its namespace.
RELEASE, RELEASE_NAMESPACE = "fraudpipe", "fraudpipe-system"
REGISTRY = "fraudpipe-registry"
REGISTRY_PORT = 5000
LOCAL_IMAGE_REPO = "localhost/fraudpipe"


# Each fault scenario's measured recovery beside its limit; hack/e2e prints it at the end.
RECOVERY_REPORT = Path(
    os.environ.get("FRAUDPIPE_E2E_RECOVERY_REPORT", str(REPO / "build" / "e2e-recovery.json"))
)


def report_recovery(scenario: str, what: str, seconds: float, limit_s: float) -> None:
    """Record how long a scenario took to recover (RECOVERY_REPORT), then hold it to its
    limit."""
    report = json.loads(RECOVERY_REPORT.read_text()) if RECOVERY_REPORT.exists() else {}
    report[scenario] = {"recovered": what, "seconds": round(seconds, 1), "limit_s": limit_s}
    RECOVERY_REPORT.parent.mkdir(parents=True, exist_ok=True)
    RECOVERY_REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{scenario}: {what} after {seconds:.0f} s (limit {limit_s:.0f} s)")
    assert seconds <= limit_s, f"{scenario}: {what} after {seconds:.0f} s, over {limit_s:.0f} s"


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def local_image(name: str) -> str:
    """The reference `hack/images` gives an image it builds."""
    return run([str(REPO / "hack" / "images"), "ref", name]).stdout.strip()


@dataclass(frozen=True)
class Target:
    """Where the suite runs and with which images (docs/development.md, "End-to-end")."""

    kubeconfig: str
    image_repo: str
    image_tag: str
    scorer_image_next: str
    flavor: str
    kafka_image: str
    redis_image: str
    postgres_image: str
    registry_image: str
    s3_image: str

    def image(self, service: str) -> str:
        return f"{self.image_repo}/{service}:{self.image_tag}"


def target_from_env() -> Target | None:
    """None unless a cluster was named on purpose (`make e2e` names the node cluster of
    `hack/cluster`): a KUBECONFIG alone never sends the suite to a cluster."""
    kubeconfig = os.environ.get("FRAUDPIPE_E2E_KUBECONFIG")
    if not kubeconfig:
        return None
    repo = env("FRAUDPIPE_E2E_IMAGE_REPO", LOCAL_IMAGE_REPO)
    tag = env("FRAUDPIPE_E2E_IMAGE_TAG", "dev")

    def store(variable: str, name: str) -> str:
        # "default": the CRD's default (the official image); unset: the locally built one.
        chosen = env(variable, "local")
        if chosen == "default":
            return ""
        return local_image(name) if chosen == "local" else chosen

    return Target(
        kubeconfig=kubeconfig,
        image_repo=repo,
        image_tag=tag,
        scorer_image_next=env("FRAUDPIPE_E2E_SCORER_IMAGE_NEXT", f"{repo}/scorer:{tag}-next"),
        flavor=env("FRAUDPIPE_E2E_KAFKA_FLAVOR", "kafka"),
        kafka_image=store("FRAUDPIPE_E2E_KAFKA_IMAGE", "kafka"),
        redis_image=store("FRAUDPIPE_E2E_REDIS_IMAGE", "redis"),
        postgres_image=store("FRAUDPIPE_E2E_POSTGRES_IMAGE", "postgres"),
        registry_image=env("FRAUDPIPE_E2E_REGISTRY_IMAGE", "") or local_image("registry"),
        s3_image=env("FRAUDPIPE_E2E_S3_IMAGE", "") or local_image("s3"),
    )


def kubectl(target: Target, *args: str) -> subprocess.CompletedProcess[str]:
    return run([str(toolchain.find("kubectl")), "--kubeconfig", target.kubeconfig, *args])


# -- port-forwards through the API server -------------------------------------------------------
@contextlib.contextmanager
def port_forward(target: Target, namespace: str, resource: str, port: int) -> Iterator[int]:
    """A loopback port leading to `resource`'s `port` (kubectl port-forward: API server →
    kubelet → the pod's network namespace; nothing else is opened)."""
    process = subprocess.Popen(
        [
            str(toolchain.find("kubectl")),
            "--kubeconfig",
            target.kubeconfig,
            "port-forward",
            "-n",
            namespace,
            resource,
            f":{port}",
            "--address",
            "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not found:
            process.kill()
            _, err = process.communicate(timeout=10)
            raise AssertionError(f"port-forward to {resource}: {line!r} {err!r}")
        yield int(found.group(1))
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()


def local_url(port: int) -> str:
    """The base URL of a port-forward's loopback end."""
    return f"http://127.0.0.1:{port}"


# -- the model: trained here, pushed into the cluster's registry --------------------------------
MODEL_ROWS = int(os.environ.get("FRAUDPIPE_E2E_MODEL_ROWS", "20000"))
# The code a trained model depends on (training, features, synthetic data, the artifact format);
# hack/demo-cluster keys its model by the same folders.
MODEL_INPUTS = (
    "model/src",
    "libs/common/src/fraudpipe_common/features",
    "libs/common/src/fraudpipe_common/synthetic",
    "libs/common/src/fraudpipe_common/contracts",
    "libs/common/src/fraudpipe_common/model_artifact.py",
)


def model_inputs_key() -> str:
    """Digest of what a trained model depends on: retrain only when one of them changes."""
    digest = hashlib.sha256(str(MODEL_ROWS).encode())
    files = [REPO / "uv.lock"]
    for folder in MODEL_INPUTS:
        path = REPO / folder
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def trained_model() -> Path:
    """A small gradient-boosted model, cached under ~/.cache/fraudpipe/e2e by its inputs."""
    out = toolchain.cache_dir() / "e2e" / f"model-{model_inputs_key()}"
    if not (out / "card.json").exists():
        scratch = out.with_name(out.name + ".partial")
        run(
            [
                str(Path(sys.executable).with_name("fraudpipe-model")),
                "train",
                "--rows",
                str(MODEL_ROWS),
                "--out",
                str(scratch),
            ]
        )
        scratch.rename(out)
    return out


def push_model(target: Target, namespace: str, model: Path) -> str:
    """Push through a port-forward; return the reference pods use (the Service's name)."""
    with port_forward(target, namespace, f"svc/{REGISTRY}", REGISTRY_PORT) as port:
        wait_for(lambda: get_json(local_url(port), "/v2/")[0] == 200, "registry answers", 60)
        pushed = run(
            [
                str(Path(sys.executable).with_name("fraudpipe-model")),
                "push",
                str(model),
                f"127.0.0.1:{port}/fraudpipe/models/e2e:latest",
            ]
        ).stdout.strip()
    digest = pushed.splitlines()[-1].split("@", 1)[1]
    return f"{REGISTRY}.{namespace}.svc:{REGISTRY_PORT}/fraudpipe/models/e2e@{digest}"


def registry_objects(target: Target, namespace: str) -> list[dict[str, Any]]:
    """A plain-HTTP OCI registry inside the namespace, as a user's own registry would be."""
    labels = {"app.kubernetes.io/name": REGISTRY}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": REGISTRY, "namespace": namespace, "labels": labels},
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
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "registry",
                                "image": target.registry_image,
                                "imagePullPolicy": "IfNotPresent",
                                "ports": [{"containerPort": REGISTRY_PORT}],
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [
                                    {"name": "data", "mountPath": "/var/lib/registry"},
                                    {"name": "tmp", "mountPath": "/tmp"},
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/v2/", "port": REGISTRY_PORT},
                                    "periodSeconds": 2,
                                },
                            }
                        ],
                        "volumes": [
                            {"name": "data", "emptyDir": {}},
                            {"name": "tmp", "emptyDir": {}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": REGISTRY, "namespace": namespace, "labels": labels},
            "spec": {"selector": labels, "ports": [{"port": REGISTRY_PORT}]},
        },
    ]


def kill_operator(core: client.CoreV1Api) -> str:
    """Kill the running operator pod (1 s grace: SIGTERM, then SIGKILL) and wait until it is
    gone, so that its successor never runs beside it (the chart's operator is one replica,
    never two); returns its name. Everything the operator knows lives in the cluster, so its
    successor resumes."""
    (operator,) = [
        pod
        for pod in core.list_namespaced_pod(
            RELEASE_NAMESPACE, label_selector="app.kubernetes.io/component=operator"
        ).items
        if pod.metadata.deletion_timestamp is None and pod.status.phase == "Running"
    ]
    name: str = operator.metadata.name
    core.delete_namespaced_pod(name, RELEASE_NAMESPACE, grace_period_seconds=1)
    wait_gone(core, RELEASE_NAMESPACE, name)
    return name


def wait_gone(core: client.CoreV1Api, namespace: str, name: str, within_s: float = 90) -> None:
    """Until the API server no longer has the pod: its containers have stopped."""

    def gone() -> bool:
        try:
            core.read_namespaced_pod(name, namespace)
        except client.ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    wait_for(gone, f"pod {name} gone", within_s)


# -- reading Kafka from inside the cluster ------------------------------------------------------
# The checker pod runs kafka_verdict.py from the e2e image (k8s-tests/e2e/Dockerfile), which
# carries aiokafka whatever Kafka client the services use; `skaffold verify`'s Job imports the
# same file.
VERDICT_PROGRAM = "/opt/fraudpipe-e2e/kafka_verdict.py"


def kafka_verdict(
    core: client.CoreV1Api, target: Target, namespace: str, within_s: float = 240
) -> dict[str, Any]:
    """Run the checker pod (labelled as part of the pipeline, which the broker's
    NetworkPolicy admits) and return its verdict."""
    name = f"exactly-once-{int(time.time() * 1000) % 10**8}"
    uid = 10001
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {PIPELINE_LABEL: PIPELINE}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": uid,
                "runAsGroup": uid,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "check",
                    "image": target.image("e2e"),
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", VERDICT_PROGRAM],
                    "env": [
                        {"name": "BOOTSTRAP", "value": f"{PIPELINE}-kafka:9092"},
                        {"name": "TX_TOPIC", "value": "transactions.v1"},
                        {"name": "DECISIONS_TOPIC", "value": "decisions.v1"},
                        {"name": "WITHIN_S", "value": str(within_s - 30)},
                        # The alerts table, with the pipeline's generated credentials (the
                        # PostgreSQL NetworkPolicy admits the pipeline's label).
                        *(
                            {
                                "name": var,
                                "valueFrom": {
                                    "secretKeyRef": {
                                        "name": f"{PIPELINE}-postgres-credentials",
                                        "key": key,
                                    }
                                },
                            }
                            for var, key in (
                                ("PGUSER", "username"),
                                ("PGPASSWORD", "password"),
                                ("PGDATABASE", "database"),
                            )
                        ),
                        {
                            "name": "POSTGRES_DSN",
                            "value": f"postgresql://$(PGUSER):$(PGPASSWORD)@{PIPELINE}-postgres"
                            ":5432/$(PGDATABASE)",
                        },
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }
    core.create_namespaced_pod(namespace, pod)
    try:

        def finished() -> str | None:
            phase: str = core.read_namespaced_pod(name, namespace).status.phase
            return phase if phase in ("Succeeded", "Failed") else None

        phase = wait_for(finished, f"checker pod {name} finished", within_s)
        log: str = core.read_namespaced_pod_log(name, namespace)
        assert phase == "Succeeded", f"checker pod failed:\n{log[-3000:]}"
        verdict: dict[str, Any] = json.loads(log.strip().splitlines()[-1])
        return verdict
    finally:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
