"""An Avro transactions topic (Confluent wire format) on a real broker and a real schema
registry: decided like JSON, unreadable messages to the DLQ with the reason, and a registry
outage waited out without losing or rejecting anything."""

from __future__ import annotations

import asyncio
import copy
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import fastavro
import orjson
import pytest

from fraudpipe_common.contracts import transactions_avro
from fraudpipe_common.contracts.dlq import Rejection
from fraudpipe_common.schema_registry import SchemaRegistryClient
from fraudpipe_testing.proxy import CuttableProxy

from .harness import ScorerProcess, produce, read_committed, traffic
from .test_pipeline import by_tx

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.schema_registry,
    pytest.mark.timeout(240),
]

BIN = Path(sys.executable).parent
StartScorer = Callable[..., ScorerProcess]


async def test_avro_traffic_is_decided_and_unreadable_messages_go_to_the_dlq(
    pipeline_env: dict[str, str], start_scorer: StartScorer, schema_registry_url: str
) -> None:
    env = pipeline_env | {"TRANSACTIONS_FORMAT": "avro", "SCHEMA_REGISTRY_URL": schema_registry_url}
    topic = env["TRANSACTIONS_TOPIC"]
    # The producer registers the schema itself (BACKWARD) and writes the wire format.
    produced = await asyncio.create_subprocess_exec(
        str(BIN / "fraudpipe-produce"), "--rps", "0", "--count", "1500", "--no-progress",
        env=env | {"PATH": str(BIN)},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await produced.communicate()
    assert produced.returncode == 0, stderr.decode()
    async with SchemaRegistryClient(schema_registry_url) as registry:
        schema_id = await transactions_avro.register(registry, topic)
        as_number = copy.deepcopy(transactions_avro.SCHEMA)
        for field in as_number["fields"]:
            if field["name"] == "amount":
                field["type"] = "double"
        other_id = await registry.register(f"{topic}-elsewhere-value", as_number)
    txs = traffic(500, fraud_rate=0.01)
    base = txs[0].message()
    poison = {
        "not_avro": orjson.dumps(base | {"tx_id": "json-on-avro"}),
        "unknown_schema": b"\x00" + (2**31 - 9).to_bytes(4, "big") + b"\x02x",
        "incompatible_schema": transactions_avro.encode(
            other_id, base | {"amount": 12.5}, fastavro.parse_schema(as_number)
        ),
        "malformed_avro": transactions_avro.encode(schema_id, base)[:-4],
    }
    messages: list[tuple[bytes | None, bytes | None]] = [
        (tx.user_id.encode(), transactions_avro.encode(schema_id, tx.message())) for tx in txs
    ]
    for i, value in enumerate(poison.values()):
        messages.insert(100 * (i + 1), (f"poison-{i}".encode(), value))
    await produce(env["KAFKA_BOOTSTRAP_SERVERS"], topic, messages)

    scorer = start_scorer(**env)
    await scorer.wait_ready()
    decisions, dlq = await asyncio.gather(
        read_committed(
            env["KAFKA_BOOTSTRAP_SERVERS"], env["DECISIONS_TOPIC"], at_least=2000, timeout_s=90
        ),
        read_committed(
            env["KAFKA_BOOTSTRAP_SERVERS"], env["DLQ_TOPIC"], at_least=len(poison), timeout_s=90
        ),
    )
    decided = by_tx(decisions.decisions())
    assert len(decided) == 2000
    assert {tx.tx_id for tx in txs} <= set(decided)
    rejected = {
        Rejection.from_headers(h).code: (v, Rejection.from_headers(h)) for _, v, h in dlq.records
    }
    assert sorted(rejected) == sorted(poison)
    for code, original in poison.items():
        assert rejected[code][0] == original, f"{code}: the DLQ must carry the original bytes"
    assert "amount" in rejected["incompatible_schema"][1].detail
    assert "not in the schema registry" in rejected["unknown_schema"][1].detail
    assert scorer.terminate() == 0


async def test_a_registry_outage_holds_the_batch_until_it_returns(
    pipeline_env: dict[str, str], start_scorer: StartScorer, schema_registry_url: str
) -> None:
    url = urlsplit(schema_registry_url)
    proxy = CuttableProxy(url.hostname or "127.0.0.1", url.port or 80)
    await proxy.start()
    try:
        proxied = f"http://127.0.0.1:{proxy.port}{url.path}"
        env = pipeline_env | {"TRANSACTIONS_FORMAT": "avro", "SCHEMA_REGISTRY_URL": proxied}
        async with SchemaRegistryClient(schema_registry_url) as registry:
            schema_id = await transactions_avro.register(registry, env["TRANSACTIONS_TOPIC"])
        txs = traffic(800, fraud_rate=0.01)
        proxy.cut()  # before the scorer ever saw the schema: it must wait, not reject
        await produce(
            env["KAFKA_BOOTSTRAP_SERVERS"],
            env["TRANSACTIONS_TOPIC"],
            [
                (tx.user_id.encode(), transactions_avro.encode(schema_id, tx.message()))
                for tx in txs
            ],
        )
        scorer = start_scorer(**env)
        await scorer.wait_ready()
        await asyncio.sleep(8)
        assert scorer.metric("fraudpipe_scorer_decisions_total") == 0
        assert scorer.metric("fraudpipe_scorer_dlq_messages_total") == 0
        errors = scorer.metric(
            'fraudpipe_scorer_dependency_errors_total{dependency="schema_registry"}'
        )
        assert errors > 0, scorer.tail()
        proxy.restore()
        decisions = await read_committed(
            env["KAFKA_BOOTSTRAP_SERVERS"], env["DECISIONS_TOPIC"], at_least=len(txs), timeout_s=90
        )
        assert set(by_tx(decisions.decisions())) == {tx.tx_id for tx in txs}
        assert scorer.metric("fraudpipe_scorer_dlq_messages_total") == 0
        assert scorer.terminate() == 0
    finally:
        await proxy.stop()
