"""Producer throughput to a real local broker, against two baselines, in one run.

Variants (each in its own process, so peak memory is its own):
  generate-only   the synthetic generator + JSON encoding, no Kafka: the ceiling
  fraudpipe       fraudpipe-produce's pipeline (librdkafka, lz4 batches, idempotent)
  aiokafka        baseline: the same messages through aiokafka, one `send` per message

    uv run python bench/bench_producer.py [--count 300000]

Uses KAFKA_BOOTSTRAP_SERVERS when set (e.g. `eval "$(hack/stack env)"`), otherwise starts a
broker from the local stack in a scratch folder.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from fraudpipe_common.synthetic import TrafficConfig, generate

VARIANTS = ("generate-only", "fraudpipe", "aiokafka")


def messages(count: int) -> itertools.islice:  # type: ignore[type-arg]
    return itertools.islice(generate(TrafficConfig(fraud_rate=0.01)), count)


def run_generate_only(count: int, _bootstrap: str, _topic: str) -> None:
    for generated in messages(count):
        message = generated.message()
        orjson.dumps(message)
        message["user_id"].encode()


def run_fraudpipe(count: int, bootstrap: str, topic: str) -> None:
    from fraudpipe_common.kafka import KafkaSettings
    from fraudpipe_producer.sinks import SCHEMA_HEADERS, KafkaSink

    sink = KafkaSink(KafkaSettings(bootstrap_servers=bootstrap))
    for generated in messages(count):
        message = generated.message()
        sink.send(topic, message["user_id"].encode(), orjson.dumps(message), headers=SCHEMA_HEADERS)
    if sink.flush() or sink.errors:
        raise SystemExit(f"undelivered messages: {sink.errors}")


def run_aiokafka(count: int, bootstrap: str, topic: str) -> None:
    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=10,
            max_batch_size=1_000_000,
            compression_type="lz4",
        )
        await producer.start()
        try:
            for generated in messages(count):
                message = generated.message()
                await producer.send(topic, orjson.dumps(message), key=message["user_id"].encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(go())


def child(variant: str, count: int, bootstrap: str, topic: str) -> None:
    runner = {
        "generate-only": run_generate_only,
        "fraudpipe": run_fraudpipe,
        "aiokafka": run_aiokafka,
    }
    start = time.perf_counter()
    runner[variant](count, bootstrap, topic)
    elapsed = time.perf_counter() - start
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "variant": variant,
                "count": count,
                "seconds": elapsed,
                "rate": count / elapsed,
                "peak_rss_mib": rss_mib,
            }
        )
    )


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the future
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--child", choices=VARIANTS)
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.count, args.bootstrap, args.topic)
        return

    stack_root = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        from fraudpipe_testing.stack import Stack

        stack_root = Path(tempfile.mkdtemp(prefix="fraudpipe-bench-", dir="/tmp"))
        bootstrap = Stack(stack_root).up(["kafka"])["KAFKA_BOOTSTRAP_SERVERS"]
    try:
        results = []
        for variant in VARIANTS:
            topic = f"bench-{variant}-{int(time.time())}"
            if variant != "generate-only":
                create_topic(bootstrap, topic, 6)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    variant,
                    "--count",
                    str(args.count),
                    "--bootstrap",
                    bootstrap,
                    "--topic",
                    topic,
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
        print(
            "| variant | messages | seconds | messages/s | peak RSS (MiB) |\n|---|---|---|---|---|"
        )
        for r in results:
            print(
                f"| {r['variant']} | {r['count']:,} | {r['seconds']:.2f} "
                f"| {r['rate']:,.0f} | {r['peak_rss_mib']:.0f} |"
            )
    finally:
        if stack_root is not None:
            from fraudpipe_testing.stack import Stack

            Stack(stack_root).down()
            shutil.rmtree(stack_root, ignore_errors=True)


if __name__ == "__main__":
    main()
