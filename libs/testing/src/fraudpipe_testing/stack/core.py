"""The stack as a whole: which services run, where their state lives, and their settings."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from fraudpipe_testing import toolchain
from fraudpipe_testing.stack import network
from fraudpipe_testing.stack.process import StackError, alive, stop
from fraudpipe_testing.stack.services.base import Running, Service, StopsItself
from fraudpipe_testing.stack.services.controlplane import ControlPlaneService
from fraudpipe_testing.stack.services.kafka import KafkaService
from fraudpipe_testing.stack.services.postgres import PostgresService
from fraudpipe_testing.stack.services.prometheus import PrometheusService
from fraudpipe_testing.stack.services.redis import RedisService
from fraudpipe_testing.stack.services.registry import RegistryService
from fraudpipe_testing.stack.services.s3 import S3Service
from fraudpipe_testing.stack.services.schema_registry import SchemaRegistryService

SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        KafkaService(),
        RedisService(),
        PostgresService(),
        PrometheusService(),
        RegistryService(),
        S3Service(),
        SchemaRegistryService(),
        ControlPlaneService(),
    )
}
SERVICE_NAMES = tuple(SERVICES)

__all__ = ["SERVICE_NAMES", "Stack", "StackError", "default_root"]


def default_root() -> Path:
    # Under /tmp rather than a home directory: PostgreSQL runs as its own user when we are
    # root and must be able to reach its data directory.
    fallback = f"/tmp/fraudpipe-stack-{os.geteuid()}"  # noqa: S108 (see above)
    return Path(os.environ.get("FRAUDPIPE_STACK_DIR", fallback))


class Stack:
    """The services of one root folder. The local stack uses SERVICES; hack/cluster uses the
    same machinery with its single-node cluster as the only service."""

    def __init__(
        self,
        root: Path | None = None,
        services: dict[str, Service] | None = None,
        root_variable: str = "FRAUDPIPE_STACK_DIR",
    ) -> None:
        self.root = root or default_root()
        self.services = services or SERVICES
        # The variable that names this root in `env`: one per kind of stack, so that loading
        # both hack/stack's and hack/cluster's settings keeps each one's folder.
        self.root_variable = root_variable
        self.state_file = self.root / "stack.json"

    # -- state ------------------------------------------------------------------------------
    def _load(self) -> dict[str, Running]:
        if not self.state_file.exists():
            return {}
        raw = json.loads(self.state_file.read_text())
        return {name: Running(**entry) for name, entry in raw.items()}

    def _save(self, state: dict[str, Running]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in state.items()}, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.state_file)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        with (self.root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # -- operations -------------------------------------------------------------------------
    def up(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """Start each named service unless it already runs healthy; returns the settings."""
        wanted = self._validated(names)
        with self._locked():
            state = self._load()
            for name in wanted:
                current = state.get(name)
                if current and self._is_healthy(current):
                    continue
                if current:
                    self._stop(current)
                workdir = self.root / name
                shutil.rmtree(workdir, ignore_errors=True)
                workdir.mkdir(parents=True)
                state[name] = self.services[name].start(workdir)
                self._save(state)
            return self._env(state, wanted)

    def update(self, name: str, change: Callable[[Running], Running]) -> None:
        """Replace a running service's record by what `change` makes of it (a fault that
        restarts one of its processes: its new pid)."""
        with self._locked():
            state = self._load()
            if name not in state:
                raise StackError(f"{name} is not running")
            state[name] = change(state[name])
            self._save(state)

    def down(self, names: Iterable[str] | None = None) -> None:
        wanted = self._validated(names)
        with self._locked():
            state = self._load()
            for name in reversed(wanted):
                if name in state:
                    self._stop(state.pop(name))
                    self._save(state)

    def status(self) -> dict[str, str]:
        state = self._load()
        report = {}
        for name in self.services:
            running = state.get(name)
            if running is None:
                report[name] = "stopped"
            elif not all(alive(pid) for pid in running.pids):
                report[name] = "failed (a process died; see logs in " + str(self.root / name) + ")"
            else:
                report[name] = "healthy" if self._is_healthy(running) else "unhealthy"
        return report

    def env(self, names: Iterable[str] | None = None) -> dict[str, str]:
        state = self._load()
        wanted = self._validated(names)
        if not any(name in state for name in wanted):
            raise StackError(f"nothing is running in {self.root}; start it with `up`")
        return self._env(state, wanted)

    # -- helpers ----------------------------------------------------------------------------
    def _env(self, state: dict[str, Running], names: list[str]) -> dict[str, str]:
        env = {self.root_variable: str(self.root)}
        for name in names:
            if name in state:
                env.update(state[name].env)
        if "controlplane" in state and "controlplane" in names:
            # Tests only touch a cluster whose KUBECONFIG came from here or was opted in.
            env["FRAUDPIPE_TEST_KUBECONFIG"] = "1"
        # The caller's PATH (hack/stack runs inside `uv run`, which prepends the virtualenv),
        # with the toolchain first, once, however often the output is eval'ed.
        caller = os.environ.get("FRAUDPIPE_CALLER_PATH", os.environ.get("PATH", ""))
        rest = [d for d in caller.split(":") if d and d != str(toolchain.bin_dir())]
        env["PATH"] = ":".join([str(toolchain.bin_dir()), *rest])
        return env

    def _is_healthy(self, running: Running) -> bool:
        if not all(alive(pid) for pid in running.pids):
            return False
        try:
            return self.services[running.name].healthy(running)
        except Exception:  # a health probe that errors means unhealthy, nothing more
            return False

    def _stop(self, running: Running) -> None:
        service: object = self.services.get(running.name)
        if isinstance(service, StopsItself):
            service.stop(running)
            return
        for pid in reversed(running.pids):
            stop(pid)
        if "workdir" in running.extra:
            network.release_unreachable(Path(running.extra["workdir"]))

    def _validated(self, names: Iterable[str] | None) -> list[str]:
        names = list(self.services) if names is None else list(names)
        unknown = [n for n in names if n not in self.services]
        if unknown:
            raise StackError(
                f"unknown service(s) {unknown}; choose from {', '.join(self.services)}"
            )
        return [n for n in self.services if n in names]
