"""Unreachable routes for a local cluster's Pod and Service ranges.

Nothing on this machine serves those addresses, so traffic to them must fail here rather than
follow the default route off the machine. Several local clusters may run at once (a developer's
stack and a test session), so each one records a claim, and the routes go away only when the
last live claim is released.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from fraudpipe_testing.stack.process import alive

CLAIMS_DIR = Path(os.environ.get("FRAUDPIPE_ROUTE_CLAIMS", "/run/fraudpipe/route-claims"))


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def can_route() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def has_unreachable(cidr: str) -> bool:
    return any(
        line.split()[:2] == ["unreachable", cidr]
        for line in _ip("route", "show", "type", "unreachable").stdout.splitlines()
    )


def claim_file(owner: Path) -> Path:
    return CLAIMS_DIR / hashlib.sha256(str(owner).encode()).hexdigest()[:16]


def claim_unreachable(owner: Path, cidrs: list[str], pid: int) -> bool:
    """Record that the cluster whose process is `pid` needs these ranges unreachable, and make
    sure they are. Returns False where routes cannot be managed (not root, no `ip`)."""
    if not can_route():
        return False
    CLAIMS_DIR.mkdir(parents=True, exist_ok=True)
    claim_file(owner).write_text(json.dumps({"owner": str(owner), "pid": pid, "cidrs": cidrs}))
    for cidr in cidrs:
        if not has_unreachable(cidr):
            _ip("route", "add", "unreachable", cidr)
    return True


def release_unreachable(owner: Path) -> None:
    """Drop this cluster's claim; remove each range's route once no live claim needs it."""
    if not can_route():
        return
    mine = claim_file(owner)
    released = json.loads(mine.read_text())["cidrs"] if mine.exists() else []
    mine.unlink(missing_ok=True)
    still_needed: set[str] = set()
    for claim in CLAIMS_DIR.glob("*") if CLAIMS_DIR.exists() else []:
        try:
            record = json.loads(claim.read_text())
        except (OSError, ValueError):
            continue
        if alive(int(record["pid"])):
            still_needed.update(record["cidrs"])
        else:
            claim.unlink(missing_ok=True)  # a cluster that died without releasing
    for cidr in released:
        if cidr not in still_needed:
            _ip("route", "del", "unreachable", cidr)
