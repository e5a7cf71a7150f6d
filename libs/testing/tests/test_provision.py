"""hack/provision: reuses fitting binaries, and fails with the tool, the step and the fix."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fraudpipe_testing.toolchain import HACK_DIR, versions


def provision(*args: str, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HACK_DIR / "provision"), *args],
        env={**os.environ, "FRAUDPIPE_CACHE": str(cache), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def fake_binary(folder: Path, name: str, version_line: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(0o755)
    return path


def test_binaries_in_kubebuilder_assets_with_a_fitting_version_are_used(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    minor = versions()["KUBERNETES_VERSION"].rsplit(".", 1)[0]  # e.g. v1.34
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        fake_binary(assets, name, f"Kubernetes {minor}.99")

    result = provision("kube", cache=tmp_path / "cache", KUBEBUILDER_ASSETS=str(assets))

    assert result.returncode == 0, result.stderr
    linked = tmp_path / "cache" / "bin" / "kube-apiserver"
    assert linked.resolve() == (assets / "kube-apiserver").resolve()
    assert not (tmp_path / "cache" / "src").exists()  # nothing was built


def test_a_failed_step_names_the_tool_the_step_and_the_fix(tmp_path: Path) -> None:
    result = provision("kafka", cache=tmp_path / "cache", KAFKA_VERSION="0.0.1-does-not-exist")

    assert result.returncode == 1
    assert "could not provision kafka" in result.stderr
    assert "step: mvn dependency:copy-dependencies" in result.stderr
    assert "fix:" in result.stderr
    assert "KAFKA_VERSION" in result.stderr


def test_an_unknown_target_is_refused_with_the_valid_ones(tmp_path: Path) -> None:
    result = provision("kafak", cache=tmp_path / "cache")

    assert result.returncode == 1
    assert "could not provision kafak" in result.stderr
    assert "use one of: all python apt kafka etcd kube kwok helm" in result.stderr
