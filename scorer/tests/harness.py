"""Helpers for the scorer's tests on real services: topics, traffic, the scorer as a process,
and reading back what it committed."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from fraudpipe_common.contracts.decisions import Decision
from fraudpipe_common.synthetic import GeneratedTransaction, PopulationConfig, TrafficConfig
from fraudpipe_common.synthetic import generate as generate_traffic

BIN = Path(sys.executable).parent
SCORER = str(BIN / "fraudpipe-scorer")
TOPIC_MAX_BYTES = 4 * 1_048_576


def train_model(out: Path) -> Path:
    subprocess.run(
        [
            str(BIN / "fraudpipe-model"),
            "train",
            "--rows",
            "60000",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    n,
                    1,
                    topic_configs={"max.message.bytes": str(TOPIC_MAX_BYTES)},
                )
                for name, n in partitions.items()
            ]
        )
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


def traffic(
    count: int, *, fraud_rate: float, seed: int = 7, users: int = 10_000
) -> list[GeneratedTransaction]:
    config = TrafficConfig(
        population=PopulationConfig(users=users, seed=seed), fraud_rate=fraud_rate, seed=seed
    )
    return list(itertools.islice(generate_traffic(config), count))


async def produce(
    bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]
) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type="lz4",
        max_request_size=TOPIC_MAX_BYTES,
        linger_ms=5,
        acks="all",
    )
    await producer.start()
    sent = 0
    try:
        futures = []
        for key, value in messages:
            futures.append(await producer.send(topic, value, key=key))
            sent += 1
        for future in futures:
            await future
    finally:
        await producer.stop()
    return sent


def transaction_messages(txs: Iterable[GeneratedTransaction]) -> list[tuple[bytes, bytes]]:
    return [(tx.user_id.encode(), orjson.dumps(tx.message())) for tx in txs]


@dataclass
class Committed:
    """What a read_committed consumer sees on a topic."""

    records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)

    def decisions(self) -> list[Decision]:
        return [Decision.from_json(value) for _, value, _ in self.records]


async def read_committed(
    bootstrap: str, topic: str, *, at_least: int, timeout_s: float, settle_s: float = 0.0
) -> Committed:
    """Everything committed on `topic`, once `at_least` records are there (or the time is up);
    then reads on for `settle_s` more to catch duplicates."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=TOPIC_MAX_BYTES,
        fetch_max_bytes=4 * TOPIC_MAX_BYTES,
    )
    await consumer.start()
    found = Committed()
    try:
        partitions = consumer.partitions_for_topic(topic)
        for _ in range(50):
            if partitions:
                break
            await asyncio.sleep(0.1)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions or [])])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        while True:
            now = time.monotonic()
            if settle_until is None and (len(found.records) >= at_least or now > deadline):
                settle_until = now + settle_s
            if settle_until is not None and now >= settle_until:
                break
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    found.records.append((r.key, r.value, list(r.headers)))
    finally:
        await consumer.stop()
    return found


class ScorerProcess:
    """`fraudpipe-scorer` as a child process with its own environment and metrics port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = int(env["METRICS_PORT"])
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [SCORER],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    async def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"scorer exited {self.proc.returncode}:\n{self.tail()}")
            try:
                status, _ = await asyncio.to_thread(self.get, "/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.3)
        raise AssertionError(f"scorer not ready within {timeout_s} s:\n{self.tail()}")

    def metric(self, name: str) -> float:
        """Sum of every sample of one metric family line prefix."""
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head == name or head.startswith(name + "{"):
                    total += float(value)
        return total

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
