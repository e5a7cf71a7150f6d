"""Unreachable routes for cluster ranges stay while any live cluster claims them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudpipe_testing.stack import network


def unused_range() -> str:
    """A benchmarking-range /24 this machine has no route for (the host may use others)."""
    table = subprocess.run(
        ["ip", "route", "show", "table", "all"], capture_output=True, text=True, check=False
    ).stdout
    for candidate in ("198.18.254.0/24", "198.19.254.0/24", "100.127.254.0/24"):
        if candidate.rsplit(".", 1)[0] + "." not in table:
            return candidate
    raise AssertionError("no unused test range; extend the candidates")


CIDR = unused_range() if network.can_route() else ""

pytestmark = pytest.mark.skipif(not network.can_route(), reason="managing routes needs root")


@pytest.fixture(autouse=True)
def claims_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(network, "CLAIMS_DIR", tmp_path / "claims")
    yield
    subprocess.run(["ip", "route", "del", "unreachable", CIDR], capture_output=True, check=False)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_routes_outlive_one_of_two_clusters(tmp_path: Path) -> None:
    assert network.claim_unreachable(tmp_path / "a", [CIDR], os.getpid())
    assert network.claim_unreachable(tmp_path / "b", [CIDR], os.getpid())
    assert network.has_unreachable(CIDR)

    network.release_unreachable(tmp_path / "a")
    assert network.has_unreachable(CIDR)  # b still runs

    network.release_unreachable(tmp_path / "b")
    assert not network.has_unreachable(CIDR)


def test_a_claim_of_a_dead_cluster_does_not_keep_routes(tmp_path: Path) -> None:
    network.claim_unreachable(tmp_path / "crashed", [CIDR], dead_pid())
    network.claim_unreachable(tmp_path / "live", [CIDR], os.getpid())

    network.release_unreachable(tmp_path / "live")

    assert not network.has_unreachable(CIDR)
    assert list(network.CLAIMS_DIR.iterdir()) == []
