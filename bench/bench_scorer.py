"""Scorer throughput, latency and memory on the local stack, against a naive scorer, in one run.

  drain     `fraudpipe-scorer` (one process, stable + canary model loaded, canary weight 10)
            drains --count pre-produced transactions from a 6-partition topic
  latency   a scorer of its own (fresh topics and feature state, BATCH_MAX_WAIT_MS=
            --latency-wait-ms) at a steady --rate tx/s offered for 10 s of warm-up (not
            measured) then --seconds, before the
            drain: end-to-end latency from the event's timestamp (set when sent) to a
            read_committed reader receiving the decision
  explain   (only when asked for) the latency run twice on fresh scorers: the model without
            its explainer file (the baseline), then with it, so that every FLAG/BLOCK is
            explained (TreeSHAP): the cost of explanations in latency and scorer CPU
  naive     baseline: consume one, features for one (the same Redis script), score one with
            scikit-learn, write one (Redis, Postgres, Kafka), commit one; --naive-count messages
  soak      (only when asked for) one scorer for --soak-minutes at --soak-rate tx/s (default
            70 % of --rate), its p50/p99 and RSS reported each minute: whether latency or
            memory drift over time. Each minute is its own latency window (a reader joins,
            10 s unmeasured, 50 s measured), so traffic pauses briefly between minutes

    uv run python bench/bench_scorer.py [--count 1000000] [--model DIR]

Uses KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and DATABASE_URL when set (`eval "$(hack/stack env)"`),
otherwise starts them from the local stack in a scratch folder. Without --model it trains one
with `fraudpipe-model train --rows 60000`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import itertools
import os
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

import asyncpg
import orjson
from calibration import decode_us_per_message

BIN = Path(sys.executable).parent
WARMUP_S = 10.0  # the broker JIT-compiles its transaction paths during the first seconds
TOPIC_MAX_BYTES = 4 * 1_048_576


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(n, p, 1, topic_configs={"max.message.bytes": str(TOPIC_MAX_BYTES)})
                for n, p in topics.items()
            ]
        )
    finally:
        await admin.close()


async def fresh_database(server_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(server_url)
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(parts._replace(path=f"/{name}"))


def migrate(url: str) -> None:
    subprocess.run(
        [str(BIN / "fraudpipe-scorer"), "migrate"],
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        capture_output=True,
    )


def scrape(port: int) -> str:
    """The scorer's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def metric(port: int, name: str) -> float:
    body = scrape(port)
    total = 0.0
    for line in body.splitlines():
        head, _, value = line.rpartition(" ")
        if head == name or head.startswith(name + "{"):
            total += float(value)
    return total


def alert_count(port: int) -> float:
    """FLAG and BLOCK decisions, every model and track together."""
    body = scrape(port)
    return sum(
        float(line.rpartition(" ")[2])
        for line in body.splitlines()
        if line.startswith("fraudpipe_scorer_decisions_total{")
        and ('decision="FLAG"' in line or 'decision="BLOCK"' in line)
        and 'track="shadow"' not in line
    )


def stage_means_ms(port: int) -> dict[str, float]:
    """Mean duration of each stage per batch, from the scorer's own histograms."""
    body = scrape(port)
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in body.splitlines():
        for suffix, into in (("_sum", sums), ("_count", counts)):
            head = f'fraudpipe_scorer_stage_duration_seconds{suffix}{{stage="'
            if line.startswith(head):
                stage = line[len(head) :].split('"', 1)[0]
                into[stage] = float(line.rpartition(" ")[2])
    return {k: round(1000 * sums[k] / counts[k], 2) for k in sums if counts.get(k)}


def stage_p99_ms(port: int) -> dict[str, float]:
    """Upper bound of each stage's 99th percentile per batch (the histogram bucket it falls
    in): the tail of the end-to-end latency is made of these, not of the means."""
    body = scrape(port)
    buckets: dict[str, list[tuple[float, float]]] = {}
    head = "fraudpipe_scorer_stage_duration_seconds_bucket{"
    for line in body.splitlines():
        if line.startswith(head):
            labels, _, value = line[len(head) :].rpartition("} ")
            parsed = dict(part.split("=", 1) for part in labels.split(","))
            le = parsed["le"].strip('"')
            buckets.setdefault(parsed["stage"].strip('"'), []).append(
                (float("inf") if le == "+Inf" else float(le), float(value))
            )
    result = {}
    for stage, counts in buckets.items():
        counts.sort()
        total = counts[-1][1]
        if total:
            bound = next(le for le, seen in counts if seen >= 0.99 * total)
            result[stage] = round(bound * 1000, 2)
    return result


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(pid: int) -> float:
    """CPU time of a process's exited, waited-for children (PostgreSQL's finished backends)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def listener_pid(port: int) -> int | None:
    """The process listening on a local TCP port (through /proc: no tool needed)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                for fd in (entry / "fd").iterdir():
                    if os.readlink(fd) in inodes:
                        return int(entry.name)
            except OSError:
                continue
    return None


def service_cpu_seconds(settings: dict[str, str]) -> dict[str, float]:
    """CPU time so far of the broker, Redis and PostgreSQL (with every backend, running or
    exited), found by the ports they listen on: where a transaction's cost goes besides the
    scorer."""
    ports = {
        "kafka": urlsplit("//" + settings["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0]).port,
        "redis": urlsplit(settings["REDIS_URL"]).port,
        "postgres": urlsplit(settings["DATABASE_URL"]).port,
    }
    totals: dict[str, float] = {}
    for name, port in ports.items():
        root = listener_pid(port) if port else None
        if root is None:
            continue
        total = cpu_seconds(root) + children_cpu_seconds(root)
        for entry in Path("/proc").iterdir():  # PostgreSQL's backends are its children
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(stat[1]) == root:
                        total += cpu_seconds(int(entry.name))
                except (OSError, ValueError):
                    continue
        totals[name] = total
    return totals


def peak_rss_mib(pid: int) -> float:
    return _status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float:
    return _status_mib(pid, "VmRSS")


def _status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- fraudpipe scorer ---------------------------------------------------------------------------
def start_scorer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A scorer process, returned once /readyz says it is ready."""
    port = int(env["METRICS_PORT"])
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(BIN / "fraudpipe-scorer")],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    while not ready(port):
        if proc.poll() is not None:
            raise SystemExit(f"scorer exited, see {log}")
        time.sleep(0.1)
    return proc


def run_drain(
    env: dict[str, str], count: int, log: Path
) -> tuple[subprocess.Popen[bytes], dict[str, float]]:
    proc = start_scorer(env, log)
    port = int(env["METRICS_PORT"])
    services_before = service_cpu_seconds(env)
    started, cpu_before = time.perf_counter(), cpu_seconds(proc.pid)
    while metric(port, "fraudpipe_scorer_decisions_total") < count:
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds(proc.pid) - cpu_before
    services = {
        f"{name}_cpu_us_per_tx": (used - services_before.get(name, used)) / count * 1e6
        for name, used in service_cpu_seconds(env).items()
    }
    batches = metric(port, "fraudpipe_scorer_batch_size_messages_count")
    print(f"  mean batch {count / batches:.0f} messages; ms per batch {stage_means_ms(port)}")
    print(f"  CPU of the services per transaction (µs): {services}")
    return proc, {
        "seconds": seconds,
        "tx_per_s": count / seconds,
        "scorer_cpu_us_per_tx": cpu / count * 1e6,
        **services,
        "peak_rss_mib": peak_rss_mib(proc.pid),
    }


def read_latencies(
    bootstrap: str,
    topic: str,
    prefix: str,
    total: int,
    give_up_s: float,
    joined: Any,
    results: Any,
) -> None:
    """The read_committed reader, in a process of its own: each decision's arrival time and
    its latency (arrival minus event timestamp), for `total` decisions of this run (`prefix`).
    A thread beside the sender would wait for the sender's GIL (up to the 5 ms switch
    interval) before it could note the time, and the harness would measure itself."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex[:6]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        }
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.1)  # joins the group; its positions are the current ends
    joined.set()
    arrivals: list[tuple[float, float]] = []
    stop_at = time.monotonic() + give_up_s
    while len(arrivals) < total and time.monotonic() < stop_at:
        # poll returns at the first message (consume would wait to fill its batch or for its
        # whole timeout); what is already fetched behind it comes in one consume.
        first = consumer.poll(0.1)
        if first is None:
            continue
        for message in [first, *consumer.consume(1000, 0)]:
            now = time.time()
            if message.error() is not None:
                continue
            d = orjson.loads(message.value() or b"{}")
            if d["tx_id"].startswith(prefix) and d["track"] != "shadow":
                event = dt.datetime.fromisoformat(d["event_ts"]).timestamp()
                arrivals.append((now, now - event))
    consumer.close()
    results.put(arrivals)


def run_latency(env: dict[str, str], rate: int, seconds: float) -> dict[str, float]:
    """Offer `rate` tx/s and time each decision's arrival at a read_committed reader.

    librdkafka on both ends, the reader in a process of its own: the harness must add as
    little latency and take as little CPU as it can, or it measures itself."""
    import multiprocessing

    from confluent_kafka import Producer

    from fraudpipe_common.contracts.transactions import format_utc_timestamp
    from fraudpipe_common.synthetic import TrafficConfig, generate

    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = f"lat-{uuid.uuid4().hex[:6]}-"
    total = int(rate * seconds)
    spawn = multiprocessing.get_context("spawn")
    joined, results = spawn.Event(), spawn.Queue()
    reader = spawn.Process(
        target=read_latencies,
        args=(
            bootstrap,
            env["DECISIONS_TOPIC"],
            prefix,
            total,
            seconds + WARMUP_S + 60,
            joined,
            results,
        ),
        daemon=True,
    )
    reader.start()
    if not joined.wait(60):
        raise SystemExit("latency: the reader did not join its group within 60 s")
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "lz4", "linger.ms": 1})
    stream = generate(TrafficConfig(fraud_rate=0.01, seed=11))
    started = time.perf_counter()
    sent = 0
    # The first WARMUP_S of traffic is not measured: the group has just formed and the
    # transaction coordinator's first answers are slow; the target is about steady state.
    warmup = int(rate * WARMUP_S)
    for i, tx in enumerate(itertools.islice(stream, warmup + total)):
        if (delay := started + i / rate - time.perf_counter()) > 0.001:
            time.sleep(delay)
        # Warm-up ids are unique per call too: the soak calls this minute after minute on one
        # scorer, and a repeated id would take the replay path.
        tx_id = f"warm-{prefix}{i}" if i < warmup else f"{prefix}{i}"
        message = tx.message() | {"tx_id": tx_id, "ts": format_utc_timestamp(time.time())}
        producer.produce(env["TRANSACTIONS_TOPIC"], orjson.dumps(message), tx.user_id.encode())
        producer.poll(0)
        sent += 1
    offered = sent / (time.perf_counter() - started)
    producer.flush(10)
    arrivals: list[tuple[float, float]] = results.get()
    reader.join(10)
    if len(arrivals) < total:
        raise SystemExit(f"latency: {len(arrivals)} of {total} decisions arrived")
    # Whether the tail is a few clustered stalls or spread thin: decisions over 50 ms by the
    # second of their arrival, counted from the first such second.
    slow_by_second = collections.Counter(int(at) for at, lat in arrivals if lat > 0.05)
    if slow_by_second:
        first = min(slow_by_second)
        profile = ", ".join(f"{t - first}s:{n}" for t, n in sorted(slow_by_second.items()))
        print(f"  decisions over 50 ms by second of arrival: {profile}")
    latencies = sorted(lat for _, lat in arrivals)

    def pct(p: float) -> float:
        return latencies[min(int(p * len(latencies)), len(latencies) - 1)] * 1000

    return {
        "offered_tx_per_s": offered,
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000,
    }


def measure_latency(
    env: dict[str, str], tag: str, scratch: Path, rate: int, seconds: float, wait_ms: int
) -> dict[str, float]:
    """`run_latency` against a scorer of its own (fresh topics, group and feature state, the
    batch wait a latency-minded deployment would set); adds what the scorer spent: CPU
    seconds per second, mean ms per stage and batch, and how many decisions were alerts."""
    suffix = uuid.uuid4().hex[:6]
    topics = {f"bench-{tag}-tx-{suffix}": 6, f"bench-{tag}-dec-{suffix}": 6}
    asyncio.run(
        create_topics(env["KAFKA_BOOTSTRAP_SERVERS"], topics | {f"bench-{tag}-dlq-{suffix}": 1})
    )
    tx_topic, dec_topic = topics
    lat_env = env | {
        "TRANSACTIONS_TOPIC": tx_topic,
        "DECISIONS_TOPIC": dec_topic,
        "DLQ_TOPIC": f"bench-{tag}-dlq-{suffix}",
        "CONSUMER_GROUP": f"bench-{tag}-{suffix}",
        "REDIS_KEY_PREFIX": f"bench-{tag}-{suffix}:",
        "METRICS_PORT": str(free_port()),
        "BATCH_MAX_WAIT_MS": str(wait_ms),
    }
    proc = start_scorer(lat_env, scratch / f"scorer-{tag}.log")
    try:
        cpu_before, clock = cpu_seconds(proc.pid), time.perf_counter()
        latency = run_latency(lat_env, rate, seconds)
        latency["scorer_cpu_s_per_s"] = (cpu_seconds(proc.pid) - cpu_before) / (
            time.perf_counter() - clock
        )
        latency["batch_max_wait_ms"] = wait_ms
        port = int(lat_env["METRICS_PORT"])
        batches = metric(port, "fraudpipe_scorer_batch_size_messages_count")
        decided = metric(port, "fraudpipe_scorer_decisions_total")
        alerts = alert_count(port)
        latency["alert_share"] = alerts / max(decided, 1)
        stages = stage_means_ms(port)
        latency["explain_ms_per_batch"] = stages.get("explain", 0.0)
        print(
            f"{tag}: steady {latency['offered_tx_per_s']:,.0f} tx/s (BATCH_MAX_WAIT_MS="
            f"{wait_ms}): p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms, "
            f"max {latency['max_ms']:.1f} ms; scorer CPU {latency['scorer_cpu_s_per_s']:.2f} "
            f"s/s; alerts {100 * latency['alert_share']:.1f} %",
            flush=True,
        )
        print(
            f"  mean batch {decided / max(batches, 1):.0f}; "
            f"ms per batch {stages}; p99 at most {stage_p99_ms(port)}"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return latency


def strip_explainer(model: Path, out: Path) -> Path:
    """A copy of the model directory without its explainer file: the same graph, unexplained."""
    shutil.copytree(model, out)
    card = orjson.loads((out / "card.json").read_bytes())
    card["explainer_sha256"] = None
    (out / "card.json").write_bytes(orjson.dumps(card))
    (out / "explainer.json").unlink()
    return out


def run_soak(
    env: dict[str, str], suffix: str, scratch: Path, rate: int, minutes: int
) -> list[dict[str, float]]:
    """One scorer under `rate` tx/s for `minutes`, measured minute by minute (each minute: 10 s
    unmeasured as in the latency phase, then 50 s), with its resident memory at the end of each
    minute."""
    topics = {f"bench-soak-tx-{suffix}": 6, f"bench-soak-dec-{suffix}": 6}
    asyncio.run(
        create_topics(env["KAFKA_BOOTSTRAP_SERVERS"], topics | {f"bench-soak-dlq-{suffix}": 1})
    )
    soak_env = env | {
        "TRANSACTIONS_TOPIC": f"bench-soak-tx-{suffix}",
        "DECISIONS_TOPIC": f"bench-soak-dec-{suffix}",
        "DLQ_TOPIC": f"bench-soak-dlq-{suffix}",
        "CONSUMER_GROUP": f"bench-soak-{suffix}",
        "REDIS_KEY_PREFIX": f"bench-soak-{suffix}:",
        "METRICS_PORT": str(free_port()),
    }
    proc = start_scorer(soak_env, scratch / "scorer-soak.log")
    minutes_seen: list[dict[str, float]] = []
    try:
        for minute in range(1, minutes + 1):
            window = run_latency(soak_env, rate, 60 - WARMUP_S)
            window |= {"minute": minute, "rss_mib": rss_mib(proc.pid)}
            print(
                f"soak minute {minute}: {window['offered_tx_per_s']:,.0f} tx/s, "
                f"p50 {window['p50_ms']:.1f} ms, p99 {window['p99_ms']:.1f} ms, "
                f"RSS {window['rss_mib']:.0f} MiB",
                flush=True,
            )
            minutes_seen.append(window)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return minutes_seen


# -- naive baseline -----------------------------------------------------------------------------
async def run_naive(env: dict[str, str], model_dir: Path, count: int) -> dict[str, float]:
    import joblib  # type: ignore[import-untyped]
    import numpy as np
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from redis.asyncio import Redis

    from fraudpipe_common.contracts.transactions import decode_transaction
    from fraudpipe_common.features import FeatureInput, OnlineFeatureStore, assemble
    from fraudpipe_common.model_artifact import read_model_dir

    card = read_model_dir(model_dir).card
    estimator = joblib.load(model_dir / "estimator.joblib")
    redis = Redis.from_url(env["REDIS_URL"])
    store = OnlineFeatureStore(redis, prefix=f"naive-{uuid.uuid4().hex[:6]}:")
    pg = await asyncpg.connect(env["DATABASE_URL"])
    consumer = AIOKafkaConsumer(
        env["TRANSACTIONS_TOPIC"],
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        group_id=f"naive-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"])
    await consumer.start()
    await producer.start()
    done = 0
    started = 0.0
    try:
        while done < count:
            record = await consumer.getone()
            if done == 0:
                started = time.perf_counter()
            tx = decode_transaction(record.value)
            fi = FeatureInput.of(tx)
            (stateful,) = await store.update([fi])
            score = float(
                estimator.predict_proba(np.asarray([assemble(fi, stateful)], dtype=np.float32))[
                    0, 1
                ]
            )
            verdict = (
                "BLOCK"
                if score >= card.thresholds.block
                else "FLAG"
                if score >= card.thresholds.flag
                else "APPROVE"
            )
            payload = orjson.dumps({"tx_id": tx.tx_id, "decision": verdict, "score": score})
            await redis.set(f"naive:decision:{tx.tx_id}", payload, ex=86400)
            if verdict != "APPROVE":
                await pg.execute(
                    "INSERT INTO alerts (tx_id, user_id, decision, score, model_digest, event_ts) "
                    "VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (tx_id) DO NOTHING",
                    f"naive-{tx.tx_id}",
                    tx.user_id,
                    verdict,
                    score,
                    card.model_sha256,
                )
            await producer.send_and_wait(
                env["DECISIONS_TOPIC"] + "-naive", payload, key=tx.tx_id.encode()
            )
            await consumer.commit()
            done += 1
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()
        await pg.close()
        await redis.aclose()
    return {"seconds": seconds, "tx_per_s": count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--naive-count", type=int, default=3_000)
    parser.add_argument("--rate", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--latency-wait-ms", type=int, default=10, help="BATCH_MAX_WAIT_MS of the latency run"
    )
    parser.add_argument("--model", type=Path)
    parser.add_argument("--soak-minutes", type=int, default=10)
    parser.add_argument("--soak-rate", type=int, default=0, help="tx/s; 0: 70 %% of --rate")
    parser.add_argument(
        "--phases",
        default="latency,drain,naive",
        help="comma-separated subset of latency,drain,naive,explain,soak (the ratio needs "
        "drain and naive)",
    )
    args = parser.parse_args()
    phases = set(args.phases.split(","))

    calibration_before = decode_us_per_message()
    print(f"machine: decode_transaction {calibration_before:.2f} µs per message", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="fraudpipe-bench-scorer-", dir="/tmp"))
    scratch.chmod(0o755)  # the stack's postgres user must reach its data dir below
    stack_root = None
    names = {"kafka": "KAFKA_BOOTSTRAP_SERVERS", "redis": "REDIS_URL", "postgres": "DATABASE_URL"}
    settings: dict[str, str] = {}
    missing = [s for s, var in names.items() if not os.environ.get(var)]
    proc: subprocess.Popen[bytes] | None = None
    try:
        if missing:
            from fraudpipe_testing.stack import Stack

            stack_root = scratch / "stack"  # set first: a failed start is still stopped below
            settings |= Stack(stack_root).up(missing)
        settings |= {var: os.environ[var] for var in names.values() if os.environ.get(var)}
        model = args.model
        if model is None:
            model = scratch / "model"
            subprocess.run(
                [
                    str(BIN / "fraudpipe-model"),
                    "train",
                    "--rows",
                    "60000",
                    "--threads",
                    "1",
                    "--out",
                    str(model),
                ],
                check=True,
                capture_output=True,
            )
        suffix = uuid.uuid4().hex[:6]
        tx_topic, dec_topic = f"bench-tx-{suffix}", f"bench-dec-{suffix}"
        asyncio.run(
            create_topics(
                settings["KAFKA_BOOTSTRAP_SERVERS"],
                {tx_topic: 6, dec_topic: 6, f"bench-dlq-{suffix}": 1, dec_topic + "-naive": 6},
            )
        )
        database = asyncio.run(fresh_database(settings["DATABASE_URL"]))
        migrate(database)
        env = {
            **settings,
            "DATABASE_URL": database,
            "TRANSACTIONS_TOPIC": tx_topic,
            "DECISIONS_TOPIC": dec_topic,
            "DLQ_TOPIC": f"bench-dlq-{suffix}",
            "MODEL_REF": str(model),
            "CANARY_MODEL_REF": str(model),
            "CANARY_WEIGHT": "10",
            "CONSUMER_GROUP": f"bench-{suffix}",
            "REDIS_KEY_PREFIX": f"bench-{suffix}:",
            "METRICS_PORT": str(free_port()),
            "LOG_LEVEL": "WARNING",
        }
        if "drain" in phases:
            started = time.perf_counter()
            subprocess.run(
                [
                    str(BIN / "fraudpipe-produce"),
                    "--rps",
                    "0",
                    "--count",
                    str(args.count),
                    "--topic",
                    tx_topic,
                    "--no-progress",
                ],
                env={**os.environ, **env},
                check=True,
                capture_output=True,
            )
            print(
                f"pre-produced {args.count:,} transactions in "
                f"{time.perf_counter() - started:.1f} s",
                flush=True,
            )

        # Latency first, on its own topics and a fresh feature state, with the batch wait a
        # latency-minded deployment would set; then the drain on the pre-produced backlog.
        latency: dict[str, float] = {}
        if "latency" in phases:
            latency = measure_latency(
                env, "lat", scratch, args.rate, args.seconds, args.latency_wait_ms
            )
        explain: dict[str, dict[str, float]] = {}
        if "explain" in phases:
            # The same traffic twice, one scorer each: the model without its explainer file
            # (nothing explained: the baseline), then with it (every FLAG/BLOCK explained).
            plain = strip_explainer(Path(env["MODEL_REF"]), scratch / "model-without-explainer")
            for tag, model_ref in (("without", plain), ("with", env["MODEL_REF"])):
                explain[tag] = measure_latency(
                    env | {"MODEL_REF": str(model_ref), "CANARY_MODEL_REF": str(model_ref)},
                    f"explain-{tag}",
                    scratch,
                    args.rate,
                    args.seconds,
                    args.latency_wait_ms,
                )

        soak: list[dict[str, float]] = []
        if "soak" in phases:
            soak = run_soak(
                env | {"BATCH_MAX_WAIT_MS": str(args.latency_wait_ms)},
                suffix,
                scratch,
                args.soak_rate or int(args.rate * 0.7),
                args.soak_minutes,
            )

        drain: dict[str, float] = {}
        naive: dict[str, float] = {}
        rss_after = float("nan")
        if "drain" in phases:
            proc, drain = run_drain(env, args.count, scratch / "scorer.log")
            print(
                f"drain: {drain['tx_per_s']:,.0f} tx/s ({drain['seconds']:.1f} s, scorer CPU "
                f"{drain['scorer_cpu_us_per_tx']:.0f} µs/tx), "
                f"peak RSS {drain['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
            rss_after = peak_rss_mib(proc.pid)
            proc.terminate()
            proc.wait(timeout=15)
            proc = None
        if "naive" in phases:
            naive = asyncio.run(run_naive(env, model, args.naive_count))
            print(
                f"naive: {naive['tx_per_s']:,.0f} tx/s over {args.naive_count:,} transactions",
                flush=True,
            )
        result: dict[str, Any] = {
            "count": args.count,
            "drain": drain,
            "latency": latency,
            "explain": explain,
            "soak": soak,
            "peak_rss_mib": rss_after,
            "naive": naive,
            "ratio": drain["tx_per_s"] / naive["tx_per_s"] if drain and naive else None,
            "load_average": os.getloadavg(),
            # The machine's speed at the start and the end (bench/calibration.py).
            "decode_us_per_message": [calibration_before, decode_us_per_message()],
        }
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    finally:
        if proc is not None:
            proc.kill()
        if stack_root is not None:
            from fraudpipe_testing.stack import Stack

            Stack(stack_root).down()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
