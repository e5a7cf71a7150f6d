"""POST /v1/transactions on an Avro topic: the Confluent wire format under the schema the API
registered, read back by the scorer's decoder; a registry that is down is a 503."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from fraudpipe_common.contracts.transactions_avro import AvroDecoder, schema_id_of
from fraudpipe_common.schema_registry import SchemaRegistryClient

from .harness import WRITE_TOKEN, ApiProcess, transaction

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.kafka,
    pytest.mark.schema_registry,
]
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}


async def test_published_transactions_are_avro_the_scorer_reads(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess], schema_registry_url: str
) -> None:
    api = start_api(api_env, TRANSACTIONS_FORMAT="avro", SCHEMA_REGISTRY_URL=schema_registry_url)
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE) as http:
        one = await http.post("/v1/transactions", json=transaction("av1", user_id="ua"))
        batch = await http.post(
            "/v1/transactions",
            json=[transaction("av2", user_id="ub"), transaction("av3", ip="192.0.2.1")],
        )
    assert one.status_code == 202, one.text
    assert batch.status_code == 202, batch.text

    records = await read_all(api.env, 3)
    ids = {schema_id_of(r.value) for r in records}
    assert None not in ids  # every message in the wire format
    assert len(ids) == 1  # under the one schema the API registered
    async with SchemaRegistryClient(schema_registry_url) as registry:
        decoder = AvroDecoder(registry)
        await decoder.prepare(r.value for r in records)
        decoded = {decoder.decode(r.value).tx_id: decoder.decode(r.value) for r in records}
    assert set(decoded) == {"av1", "av2", "av3"}
    assert decoded["av3"].ip == "192.0.2.1"
    assert decoded["av1"].amount_text == "42.50"


async def test_a_registry_that_is_down_is_a_503_naming_it(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(
        api_env,
        TRANSACTIONS_FORMAT="avro",
        SCHEMA_REGISTRY_URL="http://127.0.0.1:9/apis/ccompat/v7",
    )
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE) as http:
        response = await http.post("/v1/transactions", json=transaction("down1"))
    assert response.status_code == 503, response.text
    assert "schema_registry" in response.text
    assert "retry-after" in response.headers
    assert await read_all(api.env, 1, timeout_s=3) == []  # nothing was sent


async def read_all(env: dict[str, str], at_least: int, timeout_s: float = 10) -> list[Any]:
    consumer = AIOKafkaConsumer(
        env["TRANSACTIONS_TOPIC"],
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(records) < at_least and time.monotonic() < deadline:
            for part in (await consumer.getmany(timeout_ms=500)).values():
                records += part
    finally:
        await consumer.stop()
    return records
