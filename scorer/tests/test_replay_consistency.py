"""A replayed batch repeats what its first attempt decided.

A batch whose Kafka transaction did not commit (scorer killed, partitions moved) is scored
again, possibly under other routing weights or another model. Its first attempt may already
have cached its decisions in Redis and written alerts to PostgreSQL; the replay must publish
those same decisions, or the alerts and decisions.v1 would disagree. Here the first attempt is
played by caching decisions that the model would not make, before the scorer sees the
transactions."""

from __future__ import annotations

import datetime as dt

import pytest
import redis.asyncio as aioredis

from fraudpipe_common.contracts.decisions import Decision, Reason, Track, Verdict

from .harness import produce, read_committed, traffic, transaction_messages
from .test_pipeline import StartScorer, alert_rows, by_tx

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(180)]

FIRST_DIGEST = "sha256:" + "e" * 64


def first_attempt(tx_id: str, user_id: str, verdict: Verdict, ts: float) -> Decision:
    when = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    return Decision(
        tx_id=tx_id,
        user_id=user_id,
        decision=verdict,
        score=0.5,
        model_digest=FIRST_DIGEST,
        track=Track.CANARY,
        reasons=[Reason(code="first_attempt", detail="decided before the replay")],
        features={"amount": 1.0},
        event_ts=when,
        decided_ts=when,
    )


async def test_a_replay_publishes_and_alerts_the_first_cached_decision(
    pipeline_env: dict[str, str], start_scorer: StartScorer
) -> None:
    env = pipeline_env
    txs = traffic(2_000, fraud_rate=0.05, seed=11)
    fraud = [tx for tx in txs if tx.is_fraud][:20]
    clean = [tx for tx in txs if not tx.is_fraud][:20]
    assert len(fraud) == 20
    first = {
        **{tx.tx_id: first_attempt(tx.tx_id, tx.user_id, Verdict.APPROVE, tx.ts) for tx in fraud},
        **{tx.tx_id: first_attempt(tx.tx_id, tx.user_id, Verdict.BLOCK, tx.ts) for tx in clean},
    }
    # A cached value no decision can be read from (another version's, damaged) must not stop
    # the scorer on every replay: the new decision stands and replaces it.
    broken = [tx for tx in txs if not tx.is_fraud][20:25]
    cache = aioredis.Redis.from_url(env["REDIS_URL"])
    try:
        for tx_id, decision in first.items():
            key = f"{env['REDIS_KEY_PREFIX']}decision:{tx_id}"
            await cache.set(key, decision.to_json(), ex=3600)
        for tx in broken:
            key = f"{env['REDIS_KEY_PREFIX']}decision:{tx.tx_id}"
            await cache.set(key, b'{"tx_id": "%s", "score": null}' % tx.tx_id.encode(), ex=3600)
    finally:
        await cache.aclose()

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

    # decisions.v1 carries the first decision, whole, for every transaction decided before.
    for tx_id, decision in first.items():
        assert decided[tx_id] == decision
    # The rest is the model's own.
    others = [d for t, d in decided.items() if t not in first]
    assert others
    assert all(d.model_digest != FIRST_DIGEST for d in others)
    # The alerts follow the published decisions: none for the fraud first approved, a BLOCK for
    # each clean transaction first blocked, and exactly the other FLAG/BLOCK decisions.
    alerts = await alert_rows(env["DATABASE_URL"])
    expected = {
        t: d.decision.value for t, d in decided.items() if d.decision is not Verdict.APPROVE
    }
    assert alerts == expected
    assert not {tx.tx_id for tx in fraud} & alerts.keys()
    assert {alerts[tx.tx_id] for tx in clean} == {"BLOCK"}
    assert scorer.metric("fraudpipe_scorer_replayed_decisions_total") == len(first)
    cache = aioredis.Redis.from_url(env["REDIS_URL"])
    try:
        for tx in broken:
            assert decided[tx.tx_id].model_digest != FIRST_DIGEST
            cached = await cache.get(f"{env['REDIS_KEY_PREFIX']}decision:{tx.tx_id}")
            assert cached is not None
            assert Decision.from_json(cached) == decided[tx.tx_id]
    finally:
        await cache.aclose()
    assert scorer.terminate() == 0
