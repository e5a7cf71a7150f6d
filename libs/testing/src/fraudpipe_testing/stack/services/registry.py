"""An OCI distribution registry (Debian's docker-registry) on loopback, plain HTTP."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import yaml

from fraudpipe_testing import toolchain
from fraudpipe_testing.stack.process import free_port, spawn, wait_until
from fraudpipe_testing.stack.services.base import Running


class RegistryService:
    name = "registry"

    def start(self, workdir: Path) -> Running:
        port = free_port()
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        config = workdir / "config.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "log": {"level": "info"},
                    "storage": {
                        "filesystem": {"rootdirectory": str(workdir / "data")},
                        "delete": {"enabled": True},
                    },
                    "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
                }
            )
        )
        proc = spawn(
            self.name,
            [str(toolchain.find("docker-registry")), "serve", str(config)],
            workdir / "registry.log",
        )
        running = Running.of(self.name, [proc], {"OCI_REGISTRY": f"127.0.0.1:{port}"})
        wait_until(lambda: self.healthy(running), what="registry", proc=proc, timeout=30)
        return running

    def healthy(self, running: Running) -> bool:
        try:
            return (
                httpx.get(f"http://{running.env['OCI_REGISTRY']}/v2/", timeout=2).status_code == 200
            )
        except httpx.HTTPError:
            return False
