"""A node cluster killed under its owner (a session or CI job that ended, a crash) leaves its
bridge, iptables chains, mounts and stray processes on the host. The next `up` clears them
instead of refusing to start, and never touches a cluster that still runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudpipe_testing.stack.process import StackError
from fraudpipe_testing.stack.services import node

pytestmark = pytest.mark.k8s


@pytest.fixture
def owner_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the node cluster's host pieces need root (bridge, iptables, mounts)")
    if (owner := node.machine_owner()) is not None:
        pytest.skip(f"another node cluster runs on this machine, from {owner.parent}")
    path = tmp_path / "node-cluster.json"
    monkeypatch.setattr(node, "OWNER_FILE", path)
    yield path
    # Whatever the test's outcome, nothing of the fake dead cluster stays on the host.
    node.unmount_under(tmp_path)
    node._clean_iptables()
    subprocess.run(["ip", "link", "del", node.BRIDGE], check=False, capture_output=True)


def test_up_clears_what_a_killed_cluster_left(owner_file: Path, tmp_path: Path) -> None:
    dead = tmp_path / "dead" / "node"
    (dead / "mnt").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(dead / "mnt")], check=True)
    subprocess.run(["ip", "link", "add", node.BRIDGE, "type", "bridge"], check=True)
    subprocess.run(["iptables", *node.egress_rule("-I")], check=True)
    subprocess.run(["iptables", "-N", "KUBE-FRAUDPIPE-LEFTOVER"], check=True)
    subprocess.run(["iptables", "-I", "FORWARD", "-j", "KUBE-FRAUDPIPE-LEFTOVER"], check=True)
    # A process of the dead cluster that outlived it (its folder on its command line).
    straggler = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", str(dead / "kubelet")]
    )
    # The claim names a live pid, ours, but with another start time: the pid was reused
    # after the cluster's process died, so the claim is dead.
    owner_file.write_text(f'{{"workdir": "{dead}", "pid": {os.getpid()}, "started": "1"}}')
    assert node.machine_owner() is None

    node.preflight(tmp_path / "next" / "node")

    assert straggler.wait(timeout=10) == -9
    assert not node.bridge_exists()
    assert not owner_file.exists()
    assert node.leftovers(dead) == {
        "processes": [],
        "mounts": [],
        "links": [],
        "routes": [],
        "claims": [],
        "iptables": [],
    }


def test_a_live_cluster_is_never_cleared(owner_file: Path, tmp_path: Path) -> None:
    theirs = tmp_path / "theirs" / "node"
    node._claim_machine(theirs, os.getpid())
    subprocess.run(["ip", "link", "add", node.BRIDGE, "type", "bridge"], check=True)

    assert node.clear_dead_cluster() is None
    with pytest.raises(StackError, match="another node cluster runs"):
        node.preflight(tmp_path / "mine" / "node")
    assert node.bridge_exists()
    assert node.machine_owner() == theirs
