"""PostgreSQL in its own cluster directory, password-authenticated, on loopback only."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import asyncpg

from fraudpipe_testing import toolchain
from fraudpipe_testing.stack.process import StackError, free_port, run_async, spawn, wait_until
from fraudpipe_testing.stack.services.base import Running, generated_password

DATABASE = "fraudpipe"
SUPERUSER = "fraudpipe"


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root; as root we run it as Debian's `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError as exc:
        raise StackError(
            "postgres: running as root needs a `postgres` user (apt-get install postgresql)"
        ) from exc


class PostgresService:
    name = "postgres"

    def start(self, workdir: Path) -> Running:
        port, password = free_port(), generated_password()
        bindir, user = toolchain.postgres_bin_dir(), _server_user()
        data = workdir / "data"
        workdir.mkdir(parents=True, exist_ok=True)
        if data.exists():
            shutil.rmtree(data)
        pwfile = workdir / "pwfile"
        pwfile.write_text(password + "\n")
        if user:
            workdir.chmod(0o755)
            shutil.chown(workdir, user, user)
            shutil.chown(pwfile, user, user)
        pwfile.chmod(0o600)
        initdb = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            check=False,
        )
        pwfile.unlink()
        if initdb.returncode != 0:
            raise StackError(f"postgres: initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        # fsync and friends are off: this cluster is scratch space for tests, not a store.
        proc = spawn(
            self.name,
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={workdir}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            workdir / "postgres.log",
            user=user,
        )
        admin_url = f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/postgres"
        wait_until(
            lambda: _query(admin_url, "SELECT 1") == 1, what="postgres", proc=proc, timeout=60
        )
        _query(admin_url, f"CREATE DATABASE {DATABASE}")
        running = Running.of(
            self.name,
            [proc],
            {"DATABASE_URL": f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/{DATABASE}"},
        )
        return running

    def healthy(self, running: Running) -> bool:
        try:
            return _query(running.env["DATABASE_URL"], "SELECT 1") == 1
        except (OSError, asyncpg.PostgresError):
            return False


def _query(url: str, sql: str) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return run_async(run())
