"""Helpers for the API's tests on real services: the API as a process, a migrated database,
alerts as the scorer writes them, and the scorer itself as a process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from fraudpipe_common.migrations import migrations

BIN = Path(sys.executable).parent
API = str(BIN / "fraudpipe-api")
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
WRITE_TOKEN = "test-write-key"
READ_TOKEN = "test-read-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def key_line(token: str, scope: str, name: str) -> str:
    import hashlib

    return f"{hashlib.sha256(token.encode()).hexdigest()}:{scope}:{name}"


async def migrate(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for migration in migrations():
            await conn.execute(migration.sql)
    finally:
        await conn.close()


@dataclass
class ApiProcess:
    env: dict[str, str]
    log: Path

    def __post_init__(self) -> None:
        self.port = int(self.env["API_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(
            [API], env={**os.environ, **self.env}, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fraudpipe-api exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"fraudpipe-api not healthy:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def output(self) -> str:
        return self.log.read_text()


def transaction(
    tx_id: str, user_id: str = "u-1", amount: str = "42.50", **extra: str
) -> dict[str, str]:
    """A valid transactions.v1 record, as a client posts it."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {
        "tx_id": tx_id,
        "ts": now,
        "user_id": user_id,
        "card_id": "c-1",
        "merchant_id": "m-1",
        "mcc": "5411",
        "amount": amount,
        "currency": "EUR",
        "country": "FR",
        "channel": "pos",
        "device_id": "d-1",
    } | extra


def alert_row(
    tx_id: str,
    *,
    user_id: str = "u1",
    decision: str = "FLAG",
    score: float = 0.5,
    digest: str = DIGEST,
    track: str = "stable",
    decided: dt.datetime | None = None,
) -> tuple[Any, ...]:
    decided = decided or dt.datetime.now(dt.UTC)
    reasons = [{"code": "model_score", "detail": f"score {score:.4f} >= flag 0.3000"}]
    return (
        tx_id,
        user_id,
        decision,
        score,
        digest,
        track,
        orjson.dumps(reasons).decode(),
        orjson.dumps({"amount": 12.5, "count_1m": 1.0}).decode(),
        decided - dt.timedelta(seconds=1),
        decided,
    )


async def insert_alerts(database_url: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """As the scorer writes them (its AlertStore: same columns, ON CONFLICT DO NOTHING)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO alerts (tx_id, user_id, decision, score, model_digest, track, reasons, "
            "features, event_ts, decided_ts) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, "
            "$8::jsonb, $9, $10) ON CONFLICT (tx_id) DO NOTHING",
            rows,
        )
    finally:
        await conn.close()


def run(coro: Any) -> Any:
    """Runs a coroutine to completion from synchronous code, in a thread of its own (the
    caller's thread may already run a loop, e.g. Playwright's)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
