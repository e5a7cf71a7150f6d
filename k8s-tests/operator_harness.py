"""Shared machinery of the operator and chart tests.

The chart is installed with helm into the test API server; the operator then runs out of
cluster (a subprocess of the test) with a token of the chart's ServiceAccount, so any
permission the chart forgot fails the test. StatefulSets get pre-bound PersistentVolumes,
since the kwok control plane has no storage provisioner.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fraudpipe_testing import toolchain

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "fraudpipe"
EXAMPLES = REPO / "examples"
RELEASE = "fraudpipe"
RELEASE_NAMESPACE = "fraudpipe-system"
GROUP, VERSION, PLURAL = "fraudpipe.io", "v1alpha1", "fraudpipelines"
MODEL_REF = "registry.example.com/fraudpipe/models/gbt@sha256:" + "ab" * 32


def wait_for(check: Callable[[], Any], what: str, within_s: float = 90) -> Any:
    deadline = time.monotonic() + within_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except ApiException as exc:
            if exc.status != 404:
                raise
            last = None
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not reached within {within_s}s (last: {last!r})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def helm(kubeconfig: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run([str(toolchain.find("helm")), "--kubeconfig", kubeconfig, *args], **kwargs)


def kubectl(kubeconfig: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run([str(toolchain.find("kubectl")), "--kubeconfig", kubeconfig, *args], **kwargs)


# -- the chart ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    service_account: str


def install_chart(
    kubeconfig: str, release: str, namespace: str, *values: str
) -> subprocess.CompletedProcess[str]:
    sets = [arg for value in values for arg in ("--set", value)]
    return helm(
        kubeconfig,
        "upgrade",
        "--install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        *sets,
    )


def crd_established(kube_client: Any) -> bool:
    crd = client.ApiextensionsV1Api(kube_client).read_custom_resource_definition(
        f"{PLURAL}.{GROUP}"
    )
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


@pytest.fixture(scope="session")
def operator_release(kubeconfig: str, kube_client: Any) -> Release:
    """The chart, installed once per session (cluster-wide mode)."""
    install_chart(kubeconfig, RELEASE, RELEASE_NAMESPACE)
    wait_for(lambda: crd_established(kube_client), "FraudPipeline CRD established")
    return Release(RELEASE, RELEASE_NAMESPACE, RELEASE)


def service_account_kubeconfig(
    kube_client: Any, admin_kubeconfig: str, release: Release, path: Path
) -> Path:
    """A kubeconfig that authenticates as the release's ServiceAccount (TokenRequest API)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=7200)
    )
    token = (
        client.CoreV1Api(kube_client)
        .create_namespaced_service_account_token(
            release.service_account, release.namespace, request
        )
        .status.token
    )
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    user = f"system:serviceaccount:{release.namespace}:{release.service_account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": user}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture
def operator_kubeconfig(
    operator_release: Release, kube_client: Any, kubeconfig: str, tmp_path: Path
) -> Path:
    """Minted per test: a chart test may uninstall and reinstall the release (and with it
    the ServiceAccount the token is bound to)."""
    path = tmp_path / "operator.kubeconfig"
    return service_account_kubeconfig(kube_client, kubeconfig, operator_release, path)


# -- the operator process -------------------------------------------------------------------
@dataclass
class OperatorProcess:
    kubeconfig: Path
    namespaces: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    liveness_port: int = 0

    def start(self) -> OperatorProcess:
        self.liveness_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "FRAUDPIPE_METRICS_PORT": str(free_port()),
            "FRAUDPIPE_SCORER_IMAGE": "fraudpipe/scorer:test",
            "FRAUDPIPE_API_IMAGE": "fraudpipe/api:test",
            "FRAUDPIPE_PRODUCER_IMAGE": "fraudpipe/producer:test",
            **self.env,
        }
        scope = [f"--namespace={ns}" for ns in self.namespaces]
        liveness = f"http://127.0.0.1:{self.liveness_port}/healthz"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fraudpipe_operator", "run", *scope, "--liveness", liveness],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self.live, f"operator live (log: {self.log})", within_s=60)
        return self

    def live(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"operator exited {self.process.returncode}:\n{self.tail()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics_port(self) -> int:
        return int(self.env.get("FRAUDPIPE_METRICS_PORT", "0"))

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, as when a node dies under the operator."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def start_operator(
    operator_kubeconfig: Path, kube_client: Any, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Factory: `start_operator([namespace], kafka_bootstrap=...)` runs the operator with the
    chart's ServiceAccount token, watching only the given namespaces."""
    started: list[OperatorProcess] = []

    def start(
        namespaces: list[str],
        kafka_bootstrap: str | None = None,
        kubeconfig: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> OperatorProcess:
        """`settings`: extra FRAUDPIPE_* variables (e.g. short intervals)."""
        env = {"FRAUDPIPE_METRICS_PORT": str(free_port()), **(settings or {})}
        if kafka_bootstrap:
            env["FRAUDPIPE_KAFKA_BOOTSTRAP_OVERRIDE"] = kafka_bootstrap
        process = OperatorProcess(
            kubeconfig or operator_kubeconfig,
            namespaces,
            tmp_path / f"operator-{len(started)}.log",
            env,
        )
        started.append(process)
        return process.start()

    yield start
    # Delete the pipelines while an operator still runs to release their finalizers; the test
    # namespace could not go away otherwise.
    api = client.CustomObjectsApi(kube_client)
    namespaces = {ns for process in started for ns in process.namespaces}
    try:
        for ns in namespaces:
            for item in api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]:
                api.delete_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, item["metadata"]["name"]
                )
        if any(p.process is not None and p.process.poll() is None for p in started):
            for ns in namespaces:
                wait_for(
                    lambda ns=ns: (
                        not api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
                    ),
                    f"pipelines in {ns} finalized",
                    within_s=60,
                )
    finally:  # a failed teardown must not leave operators running
        for process in started:
            process.stop()
        for process in started:
            print(f"--- {process.log} ---\n{process.tail(30)}")


# -- storage ----------------------------------------------------------------------------------
@pytest.fixture
def volumes(kube_client: Any) -> Iterator[Callable[[str, str], None]]:
    """Factory: `volumes(namespace, pipeline)` pre-binds a PersistentVolume to each claim the
    pipeline's StatefulSets will make (the kwok cluster has no provisioner)."""
    core = client.CoreV1Api(kube_client)
    created: list[str] = []

    def provide(namespace: str, pipeline: str, components: tuple[str, ...] = ()) -> None:
        for component in components or ("kafka", "redis", "postgres"):
            claim = f"data-{pipeline}-{component}-0"
            name = f"pv-{uuid.uuid4().hex[:12]}"
            core.create_persistent_volume(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": name, "labels": {"fraudpipe.io/test": "true"}},
                    "spec": {
                        "capacity": {"storage": "100Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": "",
                        "hostPath": {"path": f"/tmp/fraudpipe-pv/{name}"},
                        "claimRef": {"namespace": namespace, "name": claim},
                    },
                }
            )
            created.append(name)

    yield provide
    for name in created:
        try:
            core.delete_persistent_volume(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


# -- FraudPipelines ---------------------------------------------------------------------------
def example(name: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    body["spec"]["model"]["ref"] = MODEL_REF
    return merge(body, overrides)


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def unique_topics(prefix: str | None = None) -> dict[str, Any]:
    """Topic names of one test, so tests never share topics on the shared broker."""
    prefix = prefix or f"t{uuid.uuid4().hex[:8]}"
    return {
        kind: {"name": f"{prefix}.{kind}"}
        for kind in ("transactions", "decisions", "dlq", "labels")
    }


class Pipelines:
    def __init__(self, kube_client: Any, namespace: str) -> None:
        self.api = client.CustomObjectsApi(kube_client)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return result

    def patch(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )
        return result

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        for item in self.get(name).get("status", {}).get("conditions", []):
            if item["type"] == kind:
                return dict(item)
        return None

    def wait_condition(
        self, name: str, kind: str, status: str = "True", within_s: float = 120
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            found = self.condition(name, kind)
            return found if found and found["status"] == status else None

        try:
            result: dict[str, Any] = wait_for(check, f"{name} {kind}={status}", within_s)
        except AssertionError as error:
            raise AssertionError(f"{error}\nstatus: {self.get(name).get('status')}") from None
        return result
