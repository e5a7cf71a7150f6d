"""The restore Job of docs/runbooks.md is what the API server accepts, and its pod is admitted
where the restricted Pod Security Standard is enforced (its commands are proven against real
servers by api/tests/test_backup.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

pytestmark = pytest.mark.k8s

RUNBOOKS = Path(__file__).resolve().parents[1] / "docs" / "runbooks.md"
SECTION = "## Restoring PostgreSQL from a backup"


def restore_job() -> dict[str, Any]:
    text = RUNBOOKS.read_text()
    section = text[text.index(SECTION) :]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)[:1]
    job: dict[str, Any] = yaml.safe_load(
        "\n".join(line.removeprefix("   ") for line in block.splitlines())
    )
    return job


def test_the_runbooks_restore_job_downloads_then_restores_all_or_nothing() -> None:
    pod = restore_job()["spec"]["template"]["spec"]
    (download,) = pod["initContainers"]
    (restore,) = pod["containers"]
    assert download["command"][:3] == ["fraudpipe-api", "backup", "download"]
    for flag in ("--clean", "--if-exists", "--single-transaction", "--exit-on-error"):
        assert flag in restore["command"]
    out = download["command"][download["command"].index("--out") + 1]
    assert out in restore["command"]  # the file the download wrote


def test_the_runbooks_restore_job_is_accepted_under_the_restricted_profile(
    kube_client: Any, k8s_namespace: str
) -> None:
    core = client.CoreV1Api(kube_client)
    core.patch_namespace(
        k8s_namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    job = restore_job()
    account = job["spec"]["template"]["spec"]["serviceAccountName"]  # the operator makes it
    core.create_namespaced_service_account(k8s_namespace, {"metadata": {"name": account}})
    # Server-side dry runs: the full validation and admission, nothing stored or run.
    client.BatchV1Api(kube_client).create_namespaced_job(k8s_namespace, job, dry_run="All")
    template = job["spec"]["template"]
    metadata = {"name": "restore", **template["metadata"]}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
    # Pod Security is enforced on pods, not on the Jobs that make them.
    core.create_namespaced_pod(k8s_namespace, pod, dry_run="All")
