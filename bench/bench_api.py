"""GET /v1/alerts latency and the highest sustainable request rate, against a textbook FastAPI
endpoint, in one run.

  fraudpipe   `fraudpipe-api` (one uvicorn process, uvloop and httptools): the route served by
              the fast path ahead of FastAPI (api/src/fraudpipe_api/fastpath.py), each alert's
              JSON written by PostgreSQL, no response-model pass
  fraudpipe_2_workers   the same with API_WORKERS=2 (one process per core)
  baseline    the same SQL and pool in a FastAPI endpoint written the usual way: jsonb parsed,
              pydantic response models validated and serialised by FastAPI

All serve `GET /v1/alerts?decision=FLAG&min_score=...&since=...&limit=50` (50 rows each, a
fresh min_score per request) over --alerts seeded alerts. The load is open-loop (`OpenLoop`,
in this process): requests are sent on a fixed schedule and latency counts from the scheduled
time, so a slow server cannot slow the load down and hide its queueing. A rate is sustained
when every request is answered 200, at least 98 % of the offered rate is answered, and
p99 <= 50 ms. Each variant: --rate for --seconds, then the highest sustained rate (probes of
10 s, climbing by --step from --rate while it holds, else stepping down by a quarter).

CPU per request at --rate is reported for the server, PostgreSQL (its whole process tree,
when it runs on this machine) and the load generator: on a shared machine it moves much less
than latency does. The last lines are a Markdown table for docs/benchmarks.md.

    uv run python bench/bench_api.py [--alerts 200000] [--rate 500] [--seconds 20]
        [--variants fraudpipe,fraudpipe_2_workers,baseline]

Uses DATABASE_URL when set (`eval "$(hack/stack env)"`), otherwise starts PostgreSQL from the
local stack in a scratch folder (then nothing else uses that server). Only PostgreSQL is read
by this endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import uvloop

from fraudpipe_common.features import FEATURE_NAMES

BIN = Path(sys.executable).parent
P99_LIMIT_MS = 50.0
PAGE = 50
MAX_CONNECTIONS = 1000
ANSWER_WAIT_S = 120
IDLE_REUSE_S = 3.0


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
        # As autovacuum would have left a table of this age: statistics, hint bits, visibility.
        await conn.execute("VACUUM (ANALYZE) alerts")
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


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the load generator: one request at a time,
    responses framed by Content-Length (the API never answers chunked)."""

    def __init__(self, load: OpenLoop) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.due = 0.0
        self.idle_since = 0.0
        self.body_at = -1
        self.end = -1
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, request: bytes, due: float) -> None:
        assert self.transport is not None
        self.due = due
        self.end = -1
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.end < 0:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buffer[:head_end]).lower()
            self.status = int(head[9:12])
            start = head.index(b"content-length:") + 15
            stop = head.find(b"\r\n", start)
            self.body_at = head_end + 4
            self.end = self.body_at + int(head[start : stop if stop >= 0 else None])
        if len(self.buffer) >= self.end:
            body = bytes(self.buffer[self.body_at : self.end])
            del self.buffer[: self.end]
            self.end = -1
            self.load.answered(self, self.status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.lost(self)


class OpenLoop:
    """An open-loop load generator that costs little CPU (it shares the cores with the server
    and PostgreSQL): request i is sent at start + i/rate whatever the server does, on an idle
    keep-alive connection or a new one, and its latency counts from that scheduled time, so a
    server that falls behind cannot slow the load down and hide its queueing (no coordinated
    omission). Raw asyncio protocol on uvloop: about a fifth of a millisecond of CPU a request
    here, where aiohttp's client cost several times that."""

    def __init__(self, host: str, port: int, path_for: Callable[[int], str]) -> None:
        self.host, self.port = host, port
        self.path_for = path_for
        self.idle: deque[_Connection] = deque()  # most recently used last
        self.busy: set[_Connection] = set()
        self.waiting: deque[tuple[bytes, float]] = deque()  # all connections busy, at the cap
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.short = 0
        self.outstanding = 0
        self.connections = 0
        self.all_answered: asyncio.Event | None = None

    def answered(self, conn: _Connection, status: int, body: bytes) -> None:
        if self.waiting:
            conn.send(*self.waiting.popleft())
        else:
            self.busy.discard(conn)
            conn.idle_since = time.perf_counter()
            self.idle.append(conn)
        if status != 200:
            self.errors.append(f"{status} {body[:200]!r}")
        else:
            self.latencies.append(time.perf_counter() - conn.due)
            if body.count(b'"tx_id"') != PAGE:
                self.short += 1
        self._one_less()

    def lost(self, conn: _Connection) -> None:
        self.connections -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if conn in self.busy:  # closed with a request in flight
            self.busy.discard(conn)
            self.errors.append("connection closed before the answer")
            self._one_less()

    def _close_stale(self) -> None:
        """Closes connections idle for longer than the server keeps them (uvicorn: 5 s), as
        HTTP clients do: a request sent as the server closes one would fail for nothing."""
        stale = time.perf_counter() - IDLE_REUSE_S
        while self.idle and self.idle[0].idle_since < stale:
            conn = self.idle.popleft()
            if conn.transport is not None:
                conn.transport.close()

    def _one_less(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0 and self.all_answered is not None:
            self.all_answered.set()

    async def _send(self, request: bytes, due: float) -> None:
        if self.idle:
            conn = self.idle.pop()
        elif self.connections >= MAX_CONNECTIONS:
            self.waiting.append((request, due))
            return
        else:
            loop = asyncio.get_running_loop()
            self.connections += 1
            try:
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port
                )
            except OSError as exc:
                self.connections -= 1
                self.errors.append(repr(exc))
                self._one_less()
                return
        self.busy.add(conn)
        conn.send(request, due)

    async def run(self, rate: float, seconds: float) -> dict[str, Any]:
        total = int(rate * seconds)
        self.latencies, self.errors, self.short = [], [], 0
        self.outstanding = total
        self.all_answered = asyncio.Event()
        host = self.host.encode()
        pending: set[asyncio.Task[None]] = set()
        started = time.perf_counter()
        for i in range(total):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            request = b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (self.path_for(i).encode(), host)
            self._close_stale()
            if self.idle:
                self.busy.add(conn := self.idle.pop())
                conn.send(request, due)
            else:  # connecting takes a round trip: do not hold up the schedule for it
                task = asyncio.create_task(self._send(request, due))
                pending.add(task)
                task.add_done_callback(pending.discard)
        try:  # a server that never answers must not hang the benchmark
            await asyncio.wait_for(self.all_answered.wait(), seconds + ANSWER_WAIT_S)
        except TimeoutError:
            self.errors += [f"no answer within {ANSWER_WAIT_S} s"] * self.outstanding
            for conn in [*self.busy]:  # their answers, if any, would be counted late
                self.busy.discard(conn)
                if conn.transport is not None:
                    conn.transport.abort()
            self.waiting.clear()
        elapsed = time.perf_counter() - started
        latencies = sorted(self.latencies)
        if not latencies:
            raise RuntimeError(f"every request failed: {self.errors[:3]}")

        def pct(q: float) -> float:
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

        return {
            "offered_per_s": rate,
            "answered_per_s": round(len(latencies) / elapsed, 1),
            "requests": total,
            "failures": len(self.errors),
            "first_failures": self.errors[:3],
            "short_pages": self.short,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": pct(1.0),
            "connections": self.connections,
        }

    def close(self) -> None:
        for conn in [*self.idle, *self.busy]:
            if conn.transport is not None:
                conn.transport.close()


def alerts_path(seed: int = 11) -> Callable[[int], str]:
    """`GET /v1/alerts?decision=FLAG&min_score=<0.3-0.6, fresh per request>&since=<12 h
    ago>&limit=50`: every answer is a full page, and no two requests ask the same."""
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rng = random.Random(seed)  # noqa: S311 (query mix)

    def path(_: int) -> str:
        return (
            f"/v1/alerts?decision=FLAG&min_score={rng.uniform(0.3, 0.6):.3f}"
            f"&since={since}&limit={PAGE}"
        )

    return path


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU of a process and its live descendants (uvicorn's workers), from
    /proc; `reaped` adds the children it has already waited for (PostgreSQL's backends of
    closed connections)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))):
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    family, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    total = sum(times.get(p, 0.0) for p in family)
    if reaped and (fields := _proc_stat(pid)):
        total += (int(fields[13]) + int(fields[14])) / ticks
    return total


async def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's pid when it runs on this machine and its data directory is
    readable (the bench's own stack); None otherwise."""
    try:
        conn = await asyncpg.connect(url)
        try:
            data_dir = await conn.fetchval("SHOW data_directory")
        finally:
            await conn.close()
        return int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError, asyncpg.PostgresError):
        return None


@dataclass
class CpuMeter:
    """CPU time of the server under test, PostgreSQL and the load generator (this process)
    over one run, in ms per request: unlike latency it hardly depends on what else runs."""

    server_pid: int
    postgres_pid: int | None

    def snapshot(self) -> tuple[float, float | None, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return (
            cpu_seconds(self.server_pid),
            None if self.postgres_pid is None else cpu_seconds(self.postgres_pid, reaped=True),
            usage.ru_utime + usage.ru_stime,
        )

    @staticmethod
    def per_request(
        before: tuple[float, float | None, float],
        after: tuple[float, float | None, float],
        requests: int,
    ) -> dict[str, float | None]:
        def ms(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else round((b - a) * 1000 / requests, 3)

        return {
            "server_cpu_ms_per_request": ms(before[0], after[0]),
            "postgres_cpu_ms_per_request": ms(before[1], after[1]),
            "load_generator_cpu_ms_per_request": ms(before[2], after[2]),
        }


def sustained(result: dict[str, Any]) -> bool:
    return bool(
        result["failures"] == 0
        and result["answered_per_s"] >= 0.98 * result["offered_per_s"]
        and result["p99_ms"] <= P99_LIMIT_MS
    )


async def measure(
    name: str, port: int, meter: CpuMeter, rate: float, seconds: float, step: float
) -> dict[str, Any]:
    """The target rate for --seconds, then the highest sustained rate: climbing by --step from
    the target while it holds, or stepping down by a quarter at a time until one holds. CPU
    per request is measured at the target rate (and at the highest sustained one)."""
    load = OpenLoop("127.0.0.1", port, alerts_path())

    async def run(offered: float, duration: float) -> dict[str, Any]:
        before = meter.snapshot()
        result = await load.run(offered, duration)
        result |= CpuMeter.per_request(before, meter.snapshot(), result["requests"])
        print(
            f"{name}: {offered:g}/s offered, {result['answered_per_s']:g}/s answered, "
            f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
            f"{result['failures']} failed, server CPU "
            f"{result['server_cpu_ms_per_request']} ms/request, load average "
            f"{os.getloadavg()[0]:.2f}",
            file=sys.stderr,
        )
        return result

    try:
        await load.run(50, 3)  # warm-up: pool, prepared statements, imports
        at_target = await run(rate, seconds)
        best = at_target if sustained(at_target) else None
        probe_seconds = min(seconds, 10)
        if best is not None:
            offered = rate + step
            while (probe := await run(offered, probe_seconds)) and sustained(probe):
                best = probe
                offered += step
        else:
            offered = rate * 0.75
            while offered >= 10:
                probe = await run(round(offered), probe_seconds)
                if sustained(probe):
                    best = probe
                    break
                offered *= 0.75
    finally:
        load.close()
    return {
        "at_target": at_target,
        "max_sustained_per_s": best["offered_per_s"] if best else 0,
        "at_max": best,
    }


def _family(pid: int) -> list[int]:
    """A process and its children (PostgreSQL's postmaster and its backends)."""
    children = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and (fields := _proc_stat(int(entry.name)))
        and int(fields[1]) == pid
    ]
    return [pid, *children]


def renice(value: int, pids: list[int]) -> int | None:
    """Sets the nice value of these processes; None (and a warning) when not allowed."""
    try:
        for pid in pids:
            os.setpriority(os.PRIO_PROCESS, pid, value)
    except PermissionError:
        print(f"bench_api: cannot set nice {value} (needs root); running as is", file=sys.stderr)
        return None
    except ProcessLookupError:
        pass
    return value


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def summary(results: dict[str, Any], rate: float) -> str:
    """The numbers docs/benchmarks.md records, as a Markdown table."""
    names = [n for n in ("fraudpipe", "fraudpipe_2_workers", "baseline") if n in results]
    machine = results["machine"]

    def row(label: str, cell: Callable[[dict[str, Any]], Any]) -> str:
        return f"| {label} | " + " | ".join(str(cell(results[n])) for n in names) + " |"

    def at_max(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda r: r["at_max"][key] if r["at_max"] else "-"

    lines = [
        f"load average {machine['load_average_at_start']} at start, "
        f"{machine['load_average_at_end']} at end; {machine['cores']} cores; "
        f"nice {machine.get('nice', 0)}; "
        f"commit {machine['commit']}",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        row(f"answered per s at {rate:g} offered", lambda r: r["at_target"]["answered_per_s"]),
        row(
            f"p50 / p99 ms at {rate:g}",
            lambda r: f"{r['at_target']['p50_ms']} / {r['at_target']['p99_ms']}",
        ),
        row(f"failures at {rate:g}", lambda r: r["at_target"]["failures"]),
        row(
            "max sustained req/s (p99 <= 50 ms, >= 98 % answered)",
            lambda r: r["max_sustained_per_s"],
        ),
        row(
            "p50 / p99 ms at max sustained",
            lambda r: f"{at_max('p50_ms')(r)} / {at_max('p99_ms')(r)}",
        ),
        row(
            f"API CPU ms/request at {rate:g}", lambda r: r["at_target"]["server_cpu_ms_per_request"]
        ),
        row(
            f"PostgreSQL CPU ms/request at {rate:g}",
            lambda r: r["at_target"]["postgres_cpu_ms_per_request"],
        ),
        row(
            f"load generator CPU ms/request at {rate:g}",
            lambda r: r["at_target"]["load_generator_cpu_ms_per_request"],
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--step", type=float, default=100)
    parser.add_argument(
        "--variants",
        default="fraudpipe,fraudpipe_2_workers,baseline",
        help="comma-separated, run in this order",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the bench, the servers under test and its own PostgreSQL at this nice "
        "value (e.g. -10 on a machine shared with other work; needs root for below 0)",
    )
    parser.add_argument("--serve-baseline", nargs=2, metavar=("PORT", "DATABASE_URL"))
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(int(args.serve_baseline[0]), args.serve_baseline[1])
        return

    scratch = Path(tempfile.mkdtemp(prefix="fraudpipe-bench-api-", dir="/tmp"))
    scratch.chmod(0o755)  # the stack's postgres user must reach its data dir below
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
        results: dict[str, Any] = {
            "machine": {
                "cores": os.cpu_count(),
                "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                "commit": _commit(),
            },
            "alerts": args.alerts,
            "seed_s": round(seeded_s, 1),
        }
        postgres = asyncio.run(postmaster_pid(url))
        if args.nice:
            # The servers started below inherit it; PostgreSQL's backends inherit the
            # postmaster's. An external server (DATABASE_URL) is left as it is.
            results["machine"]["nice"] = renice(
                args.nice, [os.getpid()] + (_family(postgres) if postgres and stack_root else [])
            )
        two_workers_port = free_port()
        variants = {
            "fraudpipe": ([str(BIN / "fraudpipe-api")], api_port, {}),
            "fraudpipe_2_workers": (
                [str(BIN / "fraudpipe-api")],
                two_workers_port,
                {"API_WORKERS": "2", "API_PORT": str(two_workers_port)},
            ),
            "baseline": (
                [sys.executable, __file__, "--serve-baseline", str(baseline_port), url],
                baseline_port,
                {},
            ),
        }
        for name in args.variants.split(","):
            command, port, extra = variants[name]
            proc = start(command, env | extra, port, scratch / f"{name}.log")
            procs.append(proc)
            try:
                results[name] = uvloop.run(
                    measure(
                        name,
                        port,
                        CpuMeter(proc.pid, postgres),
                        args.rate,
                        args.seconds,
                        args.step,
                    )
                )
            except RuntimeError:
                print((scratch / f"{name}.log").read_text()[-4000:], file=sys.stderr)
                raise
            proc.terminate()
            proc.wait(10)
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
        print(summary(results, args.rate))
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
