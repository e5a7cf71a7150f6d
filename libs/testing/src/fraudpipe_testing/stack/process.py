"""Start, watch and stop the long-running processes of the stack."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class StackError(RuntimeError):
    """A service failed to start or to become ready; the message carries its log's tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass(frozen=True)
class Spawned:
    name: str
    pid: int
    log: Path


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> Spawned:
    """Start a daemon in its own session so it outlives `hack/stack up` and can be stopped
    as a group; its output goes to a log file in the service's directory."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    return Spawned(name=name, pid=proc.pid, log=log)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def stop(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            if not alive(pid) and not _group_alive(pid):
                return
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    proc: Spawned | None = None,
    timeout: float = 120.0,
    interval: float = 0.2,
) -> None:
    """Poll `ready` until it holds; fail fast with the log tail if the process died."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except Exception as exc:  # readiness probes fail in many ways while starting
            last_error = exc
        if proc is not None and not alive(proc.pid):
            raise StackError(
                f"{what}: process exited before it was ready. Log {proc.log}:\n{log_tail(proc.log)}"
            )
        time.sleep(interval)
    detail = f" (last probe error: {last_error})" if last_error else ""
    tail = f"\nLog {proc.log}:\n{log_tail(proc.log)}" if proc else ""
    raise StackError(f"{what}: not ready after {timeout:.0f}s{detail}{tail}")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, even when the calling thread
    already runs an event loop (pytest-asyncio sets fixtures up inside one)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
