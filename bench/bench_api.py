"""GET /v1/alerts latency and the highest sustainable request rate, against a textbook FastAPI
endpoint, in one run.

  fraudpipe   `fraudpipe-api` (one uvicorn process): the alerts page straight from asyncpg
              rows to orjson, jsonb columns passed through unparsed, no response-model pass
  fraudpipe_2_workers   the same with API_WORKERS=2 (one process per core)
  baseline    the same SQL and pool in a FastAPI endpoint written the usual way: jsonb parsed,
              pydantic response models validated and serialised by FastAPI

Both serve `GET /v1/alerts?decision=FLAG&min_score=…&since=…&limit=50` (50 rows each, a fresh
min_score per request) over --alerts seeded alerts. The load is open-loop: requests are sent on
a fixed schedule and latency counts from the scheduled time, so a slow server cannot slow the
load down and hide its queueing. A rate is sustained when all requests are answered 200 at the
offered rate and p99 ≤ 50 ms.

    uv run python bench/bench_api.py [--alerts 200000] [--rate 500] [--seconds 20]

Uses DATABASE_URL when set (`eval "$(hack/stack env)"`), otherwise starts PostgreSQL from the
local stack in a scratch folder. Only PostgreSQL is read by this endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson

from fraudpipe_common.features import FEATURE_NAMES

BIN = Path(sys.executable).parent
P99_LIMIT_MS = 50.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def fresh_database(server_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(server_url)
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(parts._replace(path=f"/{name}"))


async def seed(url: str, count: int) -> None:
    from fraudpipe_common.migrations import migrations

    rng = random.Random(7)  # noqa: S311 (synthetic data)
    now = dt.datetime.now(dt.UTC)
    digest = "sha256:" + "ab" * 32
    conn = await asyncpg.connect(url)
    try:
        for migration in migrations():
            await conn.execute(migration.sql)
        rows = []
        for i in range(count):
            score = rng.uniform(0.2, 1.0)
            decision = "BLOCK" if score > 0.9 or rng.random() < 0.1 else "FLAG"
            reasons = [{"code": "model_score", "detail": f"score {score:.4f} >= flag 0.2000"}]
            if rng.random() < 0.3:
                reasons.append({"code": "velocity_1m", "detail": "9 transactions in 1 minute"})
            features = {name: round(rng.random() * 100, 4) for name in FEATURE_NAMES}
            decided = now - dt.timedelta(seconds=rng.uniform(0, 86_400))
            rows.append(
                (
                    f"tx-{i:08d}",
                    f"user-{rng.randrange(20_000):05d}",
                    decision,
                    score,
                    digest,
                    "stable",
                    orjson.dumps(reasons).decode(),
                    orjson.dumps(features).decode(),
                    decided - dt.timedelta(milliseconds=40),
                    decided,
                )
            )
        await conn.execute(
            "CREATE TEMP TABLE staging (tx_id text, user_id text, decision text, score float8, "
            "model_digest text, track text, reasons text, features text, event_ts timestamptz, "
            "decided_ts timestamptz)"
        )
        await conn.copy_records_to_table("staging", records=rows)
        await conn.execute(
            "INSERT INTO alerts SELECT tx_id, user_id, decision, score, model_digest, track, "
            "reasons::jsonb, features::jsonb, event_ts, decided_ts FROM staging"
        )
        await conn.execute("ANALYZE alerts")
    finally:
        await conn.close()


def serve_baseline(port: int, database_url: str) -> None:
    """The comparison: a FastAPI endpoint written the usual way over the same query."""
    import uvicorn
    from fastapi import FastAPI

    from fraudpipe_api.schemas import AlertPage

    state: dict[str, asyncpg.Pool] = {}
    app = FastAPI()
    sql = """
        SELECT a.tx_id, a.user_id, a.decision, a.score, a.model_digest, a.track, a.reasons,
               a.features, a.event_ts, a.decided_ts,
               (SELECT f.label FROM feedback f WHERE f.tx_id = a.tx_id
                ORDER BY f.id DESC LIMIT 1) AS feedback
        FROM alerts a WHERE a.decision = $1 AND a.score >= $2 AND a.decided_ts >= $3
        ORDER BY a.decided_ts DESC, a.tx_id DESC LIMIT $4
    """

    @app.get("/v1/alerts", response_model=AlertPage)
    async def alerts(
        decision: str, min_score: float, since: dt.datetime, limit: int = 50
    ) -> dict[str, Any]:
        if "pool" not in state:
            state["pool"] = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
        rows = await state["pool"].fetch(sql, decision, min_score, since, limit)
        items = []
        for r in rows:
            item = dict(r)
            item["reasons"] = orjson.loads(item["reasons"])
            item["features"] = orjson.loads(item["features"])
            items.append(item)
        return {"items": items, "next_cursor": None}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start(command: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{command[0]} did not start")


async def run_load(base: str, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: request i is due at start + i/rate; latency counts from when it was due."""
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rng = random.Random(11)  # noqa: S311 (query mix)
    total = int(rate * seconds)
    latencies: list[float] = []
    failures = 0
    short = 0
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(due: float) -> None:
            nonlocal failures, short
            params = {
                "decision": "FLAG",
                "min_score": f"{rng.uniform(0.3, 0.6):.3f}",
                "since": since,
                "limit": "50",
            }
            try:
                async with session.get(base + "/v1/alerts", params=params) as response:
                    body = await response.read()
                    if response.status != 200:
                        failures += 1
                        errors.append(f"{response.status} {body[:200]!r}")
                        return
            except aiohttp.ClientError as exc:
                failures += 1
                errors.append(repr(exc))
                return
            latencies.append(time.perf_counter() - due)
            if len(orjson.loads(body)["items"]) != 50:
                short += 1

        started = time.perf_counter()
        tasks = []
        for i in range(total):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    latencies.sort()
    if not latencies:
        raise RuntimeError(f"every request to {base} failed: {errors[:3]}")

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "offered_per_s": rate,
        "answered_per_s": round(len(latencies) / elapsed, 1),
        "requests": total,
        "failures": failures,
        "short_pages": short,
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(latencies[-1] * 1000, 2),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (uvicorn's workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    family, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return sum(times.get(p, 0.0) for p in family)


def sustained(result: dict[str, Any]) -> bool:
    return (
        result["failures"] == 0
        and result["answered_per_s"] >= 0.98 * result["offered_per_s"]
        and result["p99_ms"] <= P99_LIMIT_MS
    )


async def measure(base: str, pid: int, rate: float, seconds: float, step: float) -> dict[str, Any]:
    """The target rate for --seconds, then the highest sustained rate: climbing by --step from
    the target while it holds, or stepping down by a quarter at a time until one holds. The
    server's CPU time per request (all its processes) does not depend on what else the machine
    runs: 1000 / cpu_ms is the rate one free core would sustain."""
    await run_load(base, 50, 3)  # warm-up: pool, plans, imports
    cpu_before = cpu_seconds(pid)
    at_target = await run_load(base, rate, seconds)
    at_target["server_cpu_ms_per_request"] = round(
        (cpu_seconds(pid) - cpu_before) * 1000 / at_target["requests"], 3
    )
    best = at_target if sustained(at_target) else None
    probe_seconds = min(seconds, 10)
    if best is not None:
        offered = rate + step
        while (probe := await run_load(base, offered, probe_seconds)) and sustained(probe):
            best = probe
            offered += step
    else:
        offered = rate * 0.75
        while offered >= 10:
            probe = await run_load(base, round(offered), probe_seconds)
            if sustained(probe):
                best = probe
                break
            offered *= 0.75
    return {
        "at_target": at_target,
        "max_sustained_per_s": best["offered_per_s"] if best else 0,
        "at_max": best,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--step", type=float, default=100)
    parser.add_argument("--serve-baseline", nargs=2, metavar=("PORT", "DATABASE_URL"))
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(int(args.serve_baseline[0]), args.serve_baseline[1])
        return

    scratch = Path(tempfile.mkdtemp(prefix="fraudpipe-bench-api-", dir="/tmp"))
    stack_root = None
    server_url = os.environ.get("DATABASE_URL")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if not server_url:
            from fraudpipe_testing.stack import Stack

            # A root of its own: the stack opens it up to the postgres user, not its parents.
            stack_root = Path(tempfile.mkdtemp(prefix="fraudpipe-bench-api-stack-", dir="/tmp"))
            server_url = Stack(stack_root).up(["postgres"])["DATABASE_URL"]
        url = asyncio.run(fresh_database(server_url))
        started = time.perf_counter()
        asyncio.run(seed(url, args.alerts))
        seeded_s = time.perf_counter() - started

        api_port, baseline_port = free_port(), free_port()
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": "redis://127.0.0.1:1/0",  # not read by GET /v1/alerts
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "API_OPEN_READS": "true",
            "METRICS_PORT": "0",
            "API_PORT": str(api_port),
            "API_HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
        }
        results: dict[str, Any] = {}
        two_workers_port = free_port()
        for name, command, port, extra in (
            ("fraudpipe", [str(BIN / "fraudpipe-api")], api_port, {}),
            (
                "fraudpipe_2_workers",
                [str(BIN / "fraudpipe-api")],
                two_workers_port,
                {"API_WORKERS": "2", "API_PORT": str(two_workers_port)},
            ),
            (
                "baseline",
                [sys.executable, __file__, "--serve-baseline", str(baseline_port), url],
                baseline_port,
                {},
            ),
        ):
            proc = start(command, env | extra, port, scratch / f"{name}.log")
            procs.append(proc)
            try:
                results[name] = asyncio.run(
                    measure(
                        f"http://127.0.0.1:{port}", proc.pid, args.rate, args.seconds, args.step
                    )
                )
            except RuntimeError:
                print((scratch / f"{name}.log").read_text()[-4000:], file=sys.stderr)
                raise
            proc.terminate()
            proc.wait(10)
        results["alerts"] = args.alerts
        results["seed_s"] = round(seeded_s, 1)
        results["load_average"] = os.getloadavg()
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        if stack_root is not None:
            from fraudpipe_testing.stack import Stack

            Stack(stack_root).down()
            shutil.rmtree(stack_root, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
