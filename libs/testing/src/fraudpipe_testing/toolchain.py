"""Find the binaries that hack/provision builds or installs, provisioning them on demand."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[4]
HACK_DIR = REPO_ROOT / "hack"


class ToolchainError(RuntimeError):
    """A tool could not be found or provisioned; the message names the tool and the fix."""


def cache_dir() -> Path:
    return Path(os.environ.get("FRAUDPIPE_CACHE", Path.home() / ".cache" / "fraudpipe"))


def bin_dir() -> Path:
    return cache_dir() / "bin"


@cache
def versions() -> dict[str, str]:
    """The pins in hack/versions.env (the one file every cache key derives from); as in
    hack/provision, a variable set in the environment overrides its pin."""
    pins: dict[str, str] = {}
    for line in (HACK_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            pins[key] = os.environ.get(key) or value
    return pins


# Which `hack/provision` target provides each binary.
PROVISION_TARGET = {
    "etcd": "etcd",
    "kube-apiserver": "kube",
    "kube-controller-manager": "kube",
    "kube-scheduler": "kube",
    "kubectl": "kube",
    "kwok": "kwok",
    "helm": "helm",
    "redis-server": "apt",
    "prometheus": "apt",
    "promtool": "apt",
    "docker-registry": "apt",
    "kcat": "apt",
    "chromium": "apt",
    "java": "kafka",
    "kubelet": "node",
    "kube-proxy": "node",
    "coredns": "node",
    "local-path-provisioner": "node",
    "pause": "node",
    "containerd": "node",
    "ctr": "node",
    "runc": "node",
    "iptables": "node",
    "busybox": "node",
    "versitygw": "s3server",
}


def find(name: str) -> Path:
    """Path of a binary: our cache first, then PATH, provisioning it when missing."""
    for candidate in (bin_dir() / name, shutil.which(name)):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    target = PROVISION_TARGET.get(name)
    if target is None:
        raise ToolchainError(f"{name}: not on PATH and hack/provision does not provide it")
    provision(target)
    candidate = bin_dir() / name
    found = candidate if candidate.exists() else shutil.which(name)
    if not found:
        raise ToolchainError(f"{name}: `hack/provision {target}` ran but {name} is still missing")
    return Path(found)


def postgres_bin_dir() -> Path:
    """Debian keeps the server binaries (initdb, postgres) off PATH, per major version."""
    if (on_path := shutil.which("initdb")) is not None:
        return Path(on_path).resolve().parent
    versions_dir = Path("/usr/lib/postgresql")
    if not versions_dir.exists():
        provision("apt")
    majors = sorted(versions_dir.iterdir(), key=lambda p: int(p.name), reverse=True)
    if not majors:
        raise ToolchainError(
            "postgresql: no server under /usr/lib/postgresql; run hack/provision apt"
        )
    return majors[0] / "bin"


def kwok_stages() -> Path:
    """The Stage definitions kwok runs with (copied from the pinned kwok module)."""
    stages = cache_dir() / "kwok-stages.yaml"
    if not stages.exists():
        provision("kwok")
    return stages


def kafka_home() -> Path:
    home = cache_dir() / "kafka"
    if not (home / ".complete").exists():
        provision("kafka")
    return home


def apicurio_home() -> Path:
    """Apicurio Registry's Quarkus distribution (`quarkus-app/`) and `java`, a Java 21+."""
    home = cache_dir() / f"apicurio-{versions()['APICURIO_VERSION']}"
    if not ((home / ".complete").exists() and (home / "java").exists()):
        provision("schema-registry")
    return home


def provision(*targets: str) -> None:
    result = subprocess.run([str(HACK_DIR / "provision"), *targets], check=False)
    if result.returncode != 0:
        raise ToolchainError(f"hack/provision {' '.join(targets)} failed (see its output above)")
