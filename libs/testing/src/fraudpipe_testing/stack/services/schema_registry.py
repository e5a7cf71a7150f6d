"""A Confluent-compatible schema registry on loopback: Apicurio Registry (hack/provision
schema-registry), its Quarkus distribution from Maven Central run on a Java 21+, with in-memory
H2 storage (its default: every start is empty).

Apicurio implements the Confluent Schema Registry REST API for real (subjects, versions, ids,
per-subject compatibility checked by its Avro, Protobuf and JSON Schema rules) at
/apis/ccompat/v7, so clients are tested against the protocol they meet in production.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from fraudpipe_testing import toolchain
from fraudpipe_testing.stack.process import free_port, spawn, wait_until
from fraudpipe_testing.stack.services.base import Running

CCOMPAT_PATH = "/apis/ccompat/v7"


def java_command(home: Path, workdir: Path, port: int, management_port: int) -> list[str]:
    app = home / "quarkus-app"
    return [
        str(home / "java"),
        # A test registry holds a few schemas: a small heap, serial GC and the C1 compiler
        # alone start it in about half the time on 2 cores.
        "-Xmx512m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Djava.io.tmpdir={workdir}",
        "-Dquarkus.http.host=127.0.0.1",
        f"-Dquarkus.http.port={port}",
        # Health and metrics are on a second listener, all interfaces by default.
        "-Dquarkus.management.host=127.0.0.1",
        f"-Dquarkus.management.port={management_port}",
        # In-memory H2, named per start (the app's default, said here so it never persists).
        "-Dapicurio.storage.kind=sql",
        "-Dapicurio.storage.sql.kind=h2",
        "-jar",
        str(app / "quarkus-run.jar"),
    ]


class SchemaRegistryService:
    name = "schema-registry"

    def start(self, workdir: Path) -> Running:
        home = toolchain.apicurio_home()
        port, management_port = free_port(), free_port()
        proc = spawn(
            self.name,
            java_command(home, workdir, port, management_port),
            workdir / "apicurio.log",
            cwd=workdir,
        )
        running = Running.of(
            self.name,
            [proc],
            {"SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{port}{CCOMPAT_PATH}"},
            management_port=management_port,
        )
        wait_until(
            lambda: self.healthy(running),
            what="schema-registry (apicurio)",
            proc=proc,
            timeout=120,
            interval=0.25,
        )
        return running

    def healthy(self, running: Running) -> bool:
        try:
            response = httpx.get(f"{running.env['SCHEMA_REGISTRY_URL']}/subjects", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
