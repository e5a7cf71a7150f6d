"""What every service of the stack provides."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fraudpipe_testing.stack.process import Spawned


@dataclass
class Running:
    """A started service: its processes and the settings a client needs."""

    name: str
    pids: list[int]
    logs: list[str]
    env: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, procs: list[Spawned], env: dict[str, str], **extra: Any) -> Running:
        return cls(name, [p.pid for p in procs], [str(p.log) for p in procs], env, dict(extra))


class Service(Protocol):
    name: str

    def start(self, workdir: Path) -> Running: ...

    def healthy(self, running: Running) -> bool: ...


@runtime_checkable
class StopsItself(Protocol):
    """A service whose teardown is more than stopping its processes in reverse order (mounts,
    network devices, firewall rules): the stack hands `down` over to it."""

    def stop(self, running: Running) -> None: ...


def generated_password() -> str:
    """Credentials are generated per stack, never fixed in code."""
    return secrets.token_urlsafe(18)
