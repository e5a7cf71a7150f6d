"""Faults injected on the node itself, below Kubernetes: a network partition between pods and
a restart of the node's containerd.

On this machine's node cluster the suite runs as root on the node; on kind, set
FRAUDPIPE_E2E_NODE_EXEC (for example `docker exec kind-control-plane`) and the same commands
run inside the node container (docs/development.md, "End-to-end")."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def node_exec() -> list[str]:
    return shlex.split(os.environ.get("FRAUDPIPE_E2E_NODE_EXEC", ""))


def on_node(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*node_exec(), *argv], capture_output=True, text=True, check=check, timeout=60
    )


def pod_netns(pod_ip: str) -> str:
    """The network namespace (CNI's bind mount under /run/netns) holding `pod_ip`."""
    for line in on_node("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0]
        addresses = json.loads(on_node("ip", "-n", name, "-j", "addr", "show").stdout or "[]")
        for link in addresses:
            if any(a.get("local") == pod_ip for a in link.get("addr_info", [])):
                return name
    raise AssertionError(f"no network namespace on the node holds {pod_ip}")


def _drop_rules(peers: Sequence[str]) -> list[list[str]]:
    # Both directions, packets dropped without a reset: what a partition looks like to the
    # pod (its connections hang until their timeouts, none is refused).
    return [
        rule
        for peer in peers
        for rule in (["OUTPUT", "-d", peer, "-j", "DROP"], ["INPUT", "-s", peer, "-j", "DROP"])
    ]


@contextmanager
def partition(pod_ips: Sequence[str], peers: Sequence[str]) -> Iterator[None]:
    """Inside each pod's own network namespace, drop all traffic to and from `peers` (pod and
    Service addresses) until the block ends."""
    namespaces = [pod_netns(ip) for ip in pod_ips]
    rules = _drop_rules(peers)
    try:
        for ns in namespaces:
            for rule in rules:
                on_node("ip", "netns", "exec", ns, "iptables", "-w", "-I", *rule)
        yield
    finally:
        for ns in namespaces:
            for rule in rules:
                on_node("ip", "netns", "exec", ns, "iptables", "-w", "-D", *rule, check=False)


def restart_containerd() -> None:
    if node_exec():
        on_node("systemctl", "restart", "containerd")
    else:
        subprocess.run(
            [str(ROOT / "hack" / "cluster"), "restart-containerd"],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
