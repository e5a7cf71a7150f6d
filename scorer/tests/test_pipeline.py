"""The scorer end to end on a real broker, Redis and Postgres, run as its own process."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from fraudpipe_common.contracts.decisions import Decision, Verdict
from fraudpipe_common.contracts.dlq import Rejection
from fraudpipe_common.features import OnlineFeatureStore

from .harness import (
    ScorerProcess,
    produce,
    read_committed,
    traffic,
    transaction_messages,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(240)]

StartScorer = Callable[..., ScorerProcess]


async def alert_rows(database_url: str) -> dict[str, str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT tx_id, decision FROM alerts")
    finally:
        await conn.close()
    return {r["tx_id"]: r["decision"] for r in rows}


def by_tx(decisions: list[Decision]) -> dict[str, Decision]:
    found = {d.tx_id: d for d in decisions}
    assert len(found) == len(decisions), "a transaction was decided more than once"
    return found


async def _assert_alerts_explained(database_url: str, decided: dict[str, Decision]) -> None:
    """Every FLAG/BLOCK carries its TreeSHAP explanation (decisions.v1 and Postgres alike)
    and reason codes for the features that raised the risk; an APPROVE carries none."""
    conn = await asyncpg.connect(database_url)
    try:
        stored = {
            r["tx_id"]: r["explanation"]
            for r in await conn.fetch("SELECT tx_id, explanation::text AS explanation FROM alerts")
        }
    finally:
        await conn.close()
    for tx_id, decision in decided.items():
        if decision.decision is Verdict.APPROVE:
            assert decision.explanation is None
            continue
        explanation = decision.explanation
        assert explanation is not None, decision
        assert explanation.unit == "log-odds of fraud"
        assert len(explanation.contributions) == 5
        assert {c.feature: c.value for c in explanation.contributions}.items() <= (
            decision.features.items()
        )
        sizes = [abs(c.contribution) for c in explanation.contributions]
        assert sizes == sorted(sizes, reverse=True)
        raising = [c.feature for c in explanation.contributions if c.contribution > 0][:3]
        codes = [r.code for r in decision.reasons]
        assert [c for c in codes if c.startswith("feature:")] == [f"feature:{f}" for f in raising]
        assert orjson.loads(stored[tx_id]) == explanation.model_dump(mode="json")


async def test_injected_fraud_is_alerted_and_clean_traffic_is_mostly_approved(
    pipeline_env: dict[str, str], start_scorer: StartScorer
) -> None:
    env = pipeline_env
    txs = traffic(12_000, fraud_rate=0.02)
    await produce(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["TRANSACTIONS_TOPIC"], transaction_messages(txs)
    )
    scorer = start_scorer()
    await scorer.wait_ready()

    committed = await read_committed(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["DECISIONS_TOPIC"], at_least=len(txs), timeout_s=90
    )
    decided = by_tx(committed.decisions())
    assert set(decided) == {tx.tx_id for tx in txs}

    fraud = [tx for tx in txs if tx.is_fraud]
    clean = [tx for tx in txs if not tx.is_fraud]
    caught = [tx for tx in fraud if decided[tx.tx_id].decision is not Verdict.APPROVE]
    approved_clean = [tx for tx in clean if decided[tx.tx_id].decision is Verdict.APPROVE]
    assert len(fraud) > 100
    assert len(caught) / len(fraud) >= 0.7, collections.Counter(t.scenario for t in fraud)
    # A cold feature state makes every device and merchant new (docs/decisions.md, warm-up).
    assert len(approved_clean) / len(clean) >= 0.85

    alerts = await alert_rows(env["DATABASE_URL"])
    expected = {
        t: d.decision.value for t, d in decided.items() if d.decision is not Verdict.APPROVE
    }
    assert alerts == expected
    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        countries = {
            r["tx_id"]: r["country"] for r in await conn.fetch("SELECT tx_id, country FROM alerts")
        }
    finally:
        await conn.close()
    assert countries == {tx.tx_id: tx.country for tx in txs if tx.tx_id in expected}
    await _assert_alerts_explained(env["DATABASE_URL"], decided)
    some = next(iter(expected))
    reasons = decided[some].reasons
    assert reasons
    assert all(r.code and r.detail for r in reasons)
    assert decided[some].model_digest.startswith("sha256:")

    cache = aioredis.Redis.from_url(env["REDIS_URL"])
    try:
        cached = await cache.get(f"{env['REDIS_KEY_PREFIX']}decision:{some}")
        ttl = await cache.ttl(f"{env['REDIS_KEY_PREFIX']}decision:{some}")
    finally:
        await cache.aclose()
    assert cached is not None
    assert Decision.from_json(cached) == decided[some]
    assert 0 < ttl <= 86_400

    assert scorer.metric("fraudpipe_scorer_decisions_total") == len(txs)
    assert scorer.metric("fraudpipe_scorer_end_to_end_latency_seconds_count") == len(txs)
    # Lag is sampled from librdkafka's statistics once a second.
    deadline = time.monotonic() + 15
    while scorer.metric("fraudpipe_scorer_consumer_lag_messages") != 0:
        assert time.monotonic() < deadline, scorer.tail()
        await asyncio.sleep(0.2)
    assert scorer.get("/healthz")[0] == 200
    _, metrics = scorer.get("/metrics")
    digest = decided[some].model_digest
    assert f'fraudpipe_scorer_model_info{{digest="{digest}"' in metrics.decode()

    started = time.monotonic()
    assert scorer.terminate() == 0
    assert time.monotonic() - started < 10


async def test_poison_messages_go_to_the_dlq_with_reasons_while_good_traffic_flows(
    pipeline_env: dict[str, str], start_scorer: StartScorer
) -> None:
    env = pipeline_env
    txs = traffic(3_000, fraud_rate=0.01)
    good = transaction_messages(txs)
    base = txs[0].message()
    poison: dict[str, bytes | None] = {
        "malformed_json": b'{"tx_id": "p1", oops',
        "not_an_object": b'["tx_id", "p2"]',
        "invalid_field": orjson.dumps(base | {"tx_id": "p3", "amount": 12.5}),
        "missing_field": orjson.dumps({k: v for k, v in base.items() if k != "user_id"}),
        "too_large": orjson.dumps(base | {"tx_id": "p5", "note": "x" * 1_048_576}),
        "empty_value": None,
    }
    messages: list[tuple[bytes | None, bytes | None]] = list(good)
    for i, value in enumerate(poison.values()):
        # Spread over the stream and over partitions (keys), between good messages.
        messages.insert(400 * (i + 1), (f"poison-{i}".encode(), value))
    await produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["TRANSACTIONS_TOPIC"], messages)

    scorer = start_scorer()
    await scorer.wait_ready()
    decisions, dlq = await asyncio.gather(
        read_committed(
            env["KAFKA_BOOTSTRAP_SERVERS"], env["DECISIONS_TOPIC"], at_least=len(txs), timeout_s=60
        ),
        read_committed(
            env["KAFKA_BOOTSTRAP_SERVERS"], env["DLQ_TOPIC"], at_least=len(poison), timeout_s=60
        ),
    )

    assert set(by_tx(decisions.decisions())) == {tx.tx_id for tx in txs}
    rejected = {}
    for _, value, headers in dlq.records:
        rejection = Rejection.from_headers(headers)
        assert rejection.topic == env["TRANSACTIONS_TOPIC"]
        assert rejection.detail
        rejected[rejection.code] = (value, rejection)
    assert sorted(rejected) == sorted(poison)
    for code, original in poison.items():
        value, _ = rejected[code]
        assert value == (original or b""), f"{code}: the DLQ must carry the original bytes"
    assert "user_id" in rejected["missing_field"][1].detail
    assert "amount" in rejected["invalid_field"][1].detail
    assert scorer.metric("fraudpipe_scorer_dlq_messages_total") == len(poison)
    assert scorer.terminate() == 0


async def test_kill9_mid_stream_then_restart_decides_every_transaction_exactly_once(
    pipeline_env: dict[str, str], start_scorer: StartScorer
) -> None:
    env = pipeline_env
    txs = traffic(25_000, fraud_rate=0.01)
    await produce(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["TRANSACTIONS_TOPIC"], transaction_messages(txs)
    )

    first = start_scorer(BATCH_MAX_SIZE="200")
    await first.wait_ready()
    deadline = time.monotonic() + 60
    while first.metric("fraudpipe_scorer_decisions_total") < 3_000:
        assert time.monotonic() < deadline, first.tail()
        await asyncio.sleep(0.05)
    first.kill9()
    partial = await read_committed(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["DECISIONS_TOPIC"], at_least=len(txs), timeout_s=2
    )
    assert 0 < len(partial.records) < len(txs), "the kill must land mid-stream"

    second = start_scorer(BATCH_MAX_SIZE="200")
    await second.wait_ready()
    committed = await read_committed(
        env["KAFKA_BOOTSTRAP_SERVERS"],
        env["DECISIONS_TOPIC"],
        at_least=len(txs),
        timeout_s=120,
        settle_s=3,
    )
    decided = by_tx(committed.decisions())  # exactly once: no duplicates...
    assert set(decided) == {tx.tx_id for tx in txs}  # ...and nothing missing

    alerts = await alert_rows(env["DATABASE_URL"])
    assert alerts == {
        t: d.decision.value for t, d in decided.items() if d.decision is not Verdict.APPROVE
    }

    # Replayed transactions did not count twice in the online features.
    per_user = collections.Counter(tx.user_id for tx in txs)
    cache = aioredis.Redis.from_url(env["REDIS_URL"])
    try:
        users = sorted(per_user)[:500]
        store = OnlineFeatureStore(cache, prefix=env["REDIS_KEY_PREFIX"])
        counted = await store.counted(users)
    finally:
        await cache.aclose()
    assert counted == {u: per_user[u] for u in users}
    assert second.terminate() == 0
