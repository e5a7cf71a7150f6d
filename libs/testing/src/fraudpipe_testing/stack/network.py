"""Unreachable routes for a local cluster's Pod and Service ranges.

Nothing on this machine serves those addresses, so traffic to them must fail here rather than
follow the default route off the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def can_route() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def claim_unreachable(cidrs: list[str]) -> list[str]:
    """Add an `unreachable` route per range; returns the ranges it added (to remove later)."""
    if not can_route():
        return []
    added = []
    for cidr in cidrs:
        if _ip("route", "add", "unreachable", cidr).returncode == 0:
            added.append(cidr)
    return added


def has_unreachable(cidr: str) -> bool:
    return f"unreachable {cidr}" in _ip("route", "show", "type", "unreachable").stdout


def release_unreachable(cidrs: list[str]) -> None:
    for cidr in cidrs:
        _ip("route", "del", "unreachable", cidr)
