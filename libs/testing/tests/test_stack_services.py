"""Each real service of the local stack does its job for real."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, start_http_server

from fraudpipe_common.oci import Blob, OciClient, Reference
from fraudpipe_testing import toolchain
from fraudpipe_testing.plugin import PrometheusSettings
from fraudpipe_testing.stack.process import free_port


async def consume(
    bootstrap: str, topic: str, count: int, within_s: float = 30
) -> list[tuple[bytes | None, bytes | None]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list[tuple[bytes | None, bytes | None]] = []
    try:
        deadline = time.monotonic() + within_s
        while len(got) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                got.extend((r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return got


async def test_kafka_keeps_per_key_order_across_partitions(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=3)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for i in range(300):
            await producer.send(topic, key=f"user-{i % 7}".encode(), value=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()

    got = await consume(kafka_bootstrap, topic, 300)

    assert len(got) == 300
    for user in range(7):
        seq = [int(v or b"") for k, v in got if k == f"user-{user}".encode()]
        assert seq == list(range(user, 300, 7))


async def test_kafka_interoperates_with_an_independent_client(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    kcat = str(toolchain.find("kcat"))
    to_python, to_kcat = kafka_topic(), kafka_topic()
    await asyncio.to_thread(
        subprocess.run,
        [kcat, "-b", kafka_bootstrap, "-P", "-t", to_python, "-K", ":"],
        input="alice:hello\nbob:world\n",
        text=True,
        check=True,
        timeout=60,
    )
    assert sorted(await consume(kafka_bootstrap, to_python, 2)) == [
        (b"alice", b"hello"),
        (b"bob", b"world"),
    ]

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(to_kcat, key=b"carol", value=b"from-aiokafka")
    finally:
        await producer.stop()
    read = await asyncio.to_thread(
        subprocess.run,
        [
            kcat,
            "-b",
            kafka_bootstrap,
            "-C",
            "-t",
            to_kcat,
            "-o",
            "beginning",
            "-c",
            "1",
            "-e",
            "-f",
            "%k=%s\n",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert read.stdout.strip() == "carol=from-aiokafka"


async def test_postgres_runs_sql_with_idempotent_inserts(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE alerts (tx_id text PRIMARY KEY, score real NOT NULL)")
        insert = "INSERT INTO alerts VALUES ($1, $2) ON CONFLICT (tx_id) DO NOTHING"
        await conn.executemany(insert, [("t1", 0.9), ("t2", 0.4), ("t1", 0.1)])
        rows = await conn.fetch("SELECT tx_id, score FROM alerts ORDER BY tx_id")
    finally:
        await conn.close()
    assert [(r["tx_id"], round(r["score"], 2)) for r in rows] == [("t1", 0.9), ("t2", 0.4)]


async def test_postgres_rejects_a_wrong_password(database_url: str) -> None:
    bad = database_url.replace("://fraudpipe:", "://fraudpipe:wrong", 1)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(bad)


async def test_redis_commands_pipelines_and_ttls(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.incrby(f"{redis_prefix}count", 2)
            pipe.incrby(f"{redis_prefix}count", 3)
            pipe.set(f"{redis_prefix}decision", "BLOCK", ex=60)
            results = await pipe.execute()
        assert results[:2] == [2, 5]
        assert await client.get(f"{redis_prefix}decision") == b"BLOCK"
        assert 0 < await client.ttl(f"{redis_prefix}decision") <= 60
    finally:
        await client.aclose()


async def test_redis_requires_its_password(redis_url: str) -> None:
    anonymous = redis_url.split("@", 1)[1]
    client = aioredis.Redis.from_url(f"redis://{anonymous}")
    try:
        with pytest.raises(aioredis.AuthenticationError):
            await client.ping()
    finally:
        await client.aclose()


async def test_prometheus_scrapes_a_target(prometheus: PrometheusSettings) -> None:
    if prometheus.targets_dir is None:
        pytest.fail(
            "PROMETHEUS_TARGETS_DIR is required to add a scrape target (hack/stack env sets it)"
        )
    registry = CollectorRegistry()
    Counter("fraudpipe_smoke_events", "Events seen by the smoke test", registry=registry).inc(42)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    target_file = prometheus.targets_dir / f"smoke-{port}.json"
    target_file.write_text(
        json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"job": f"smoke-{port}"}}])
    )
    try:
        value = await _wait_for_sample(
            prometheus.url, f'fraudpipe_smoke_events_total{{job="smoke-{port}"}}'
        )
        assert value == 42.0
    finally:
        target_file.unlink()
        server.shutdown()
        thread.join()


async def _wait_for_sample(url: str, query: str, within_s: float = 30) -> float:
    async with httpx.AsyncClient(base_url=url) as http:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            result = (await http.get("/api/v1/query", params={"query": query})).json()["data"][
                "result"
            ]
            if result:
                return float(result[0]["value"][1])
            await asyncio.sleep(0.5)
    raise AssertionError(f"Prometheus never returned {query} within {within_s}s")


async def test_oci_artifact_round_trips_by_digest(oci_registry: str, oci_repository: str) -> None:
    payload = Blob(b"\x08\x01onnx-bytes" * 1000, "application/vnd.fraudpipe.model.onnx")
    card = Blob(b'{"features": ["amount"]}', "application/vnd.fraudpipe.model.card+json")
    async with OciClient(oci_registry) as client:
        ref = await client.push_artifact(
            oci_repository, "application/vnd.fraudpipe.model.v1", [payload, card], tag="v1"
        )
        assert ref.digest is not None
        assert str(ref).startswith(f"{oci_registry}/{oci_repository}@sha256:")
        manifest, layers = await client.pull_artifact(Reference.parse(str(ref)))
        by_tag, tag_digest = await client.pull_manifest(
            Reference(oci_registry, oci_repository, "v1")
        )

    assert layers == [payload.data, card.data]
    assert manifest["artifactType"] == "application/vnd.fraudpipe.model.v1"
    assert tag_digest == ref.digest
    assert by_tag == manifest


def test_helm_lints_and_renders_a_chart(tmp_path: Path) -> None:
    helm = str(toolchain.find("helm"))
    env = {
        "HELM_CACHE_HOME": str(tmp_path / "c"),
        "HELM_CONFIG_HOME": str(tmp_path / "f"),
        "HELM_DATA_HOME": str(tmp_path / "d"),
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run([helm, "create", "demo"], cwd=tmp_path, env=env, check=True, capture_output=True)
    lint = subprocess.run(
        [helm, "lint", "demo"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = subprocess.run(
        [helm, "template", "smoke", "demo", "--set", "replicaCount=3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "kind: Deployment" in rendered
    assert "replicas: 3" in rendered
