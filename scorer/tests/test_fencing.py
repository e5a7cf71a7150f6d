"""A zombie scorer (frozen mid-stream, its partitions given to another) cannot commit; a
producer the broker fenced after its transaction timed out is replaced, not a reason to stop."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition

from fraudpipe_common.contracts.decisions import Verdict
from fraudpipe_common.kafka import KafkaSettings
from fraudpipe_scorer.sinks import DecisionTransactions, TransactionFailedError

from .harness import produce, read_committed, traffic, transaction_messages
from .test_pipeline import StartScorer, alert_rows, by_tx

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(180)]
BROKER_ABORT_SCAN_S = 10  # Kafka's default, which the test broker keeps


async def test_a_frozen_scorer_is_fenced_when_its_partitions_move(
    pipeline_env: dict[str, str], start_scorer: StartScorer
) -> None:
    env = pipeline_env
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    txs = traffic(20_000, fraud_rate=0.01)
    await produce(bootstrap, env["TRANSACTIONS_TOPIC"], transaction_messages(txs))

    zombie = start_scorer(BATCH_MAX_SIZE="200")
    await zombie.wait_ready()
    deadline = time.monotonic() + 60
    while zombie.metric("fraudpipe_scorer_decisions_total") < 2_000:
        assert time.monotonic() < deadline, zombie.tail()
        await asyncio.sleep(0.05)
    zombie.proc.send_signal(signal.SIGSTOP)  # frozen with batches and transactions in flight
    try:
        successor = start_scorer(BATCH_MAX_SIZE="200")
        # The group gives the successor every partition once the zombie's session expires.
        # The zombie's open transactions outlive transaction.timeout.ms and the broker aborts
        # them; awake, its offsets carry a stale generation and are refused (KIP-447).
        await successor.wait_ready(timeout_s=60)
        deadline = time.monotonic() + 60
        while successor.metric("fraudpipe_scorer_decisions_total") == 0:
            assert time.monotonic() < deadline, successor.tail()
            await asyncio.sleep(0.1)
    finally:
        zombie.proc.send_signal(signal.SIGCONT)  # wakes up believing it still owns them

    committed = await read_committed(
        bootstrap, env["DECISIONS_TOPIC"], at_least=len(txs), timeout_s=120, settle_s=5
    )
    decided = by_tx(committed.decisions())  # the zombie's late commits did not duplicate
    assert set(decided) == {tx.tx_id for tx in txs}
    alerts = await alert_rows(env["DATABASE_URL"])
    assert alerts == {
        t: d.decision.value for t, d in decided.items() if d.decision is not Verdict.APPROVE
    }
    assert successor.terminate() == 0


async def test_a_producer_fenced_by_the_broker_after_its_transaction_timed_out_is_replaced(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """The broker aborts a transaction that outlived transaction.timeout.ms (as when it could
    not be reached for longer) and fences its producer. The id is this process's own, so the
    scorer does not stop: the batch fails, a new producer takes the id over, the next
    transaction commits, and nothing of the aborted one is ever read."""
    source = kafka_topic(partitions=1, prefix="tx")
    decisions, dlq = kafka_topic(partitions=1, prefix="decisions"), kafka_topic(prefix="dlq")
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    txns = DecisionTransactions(
        settings, f"fence-{uuid.uuid4().hex[:8]}", decisions, dlq, transaction_timeout_ms=1000
    )
    group = Consumer(settings.librdkafka() | {"group.id": f"fence-{uuid.uuid4().hex[:8]}"})
    metadata = group.consumer_group_metadata()
    try:
        await asyncio.to_thread(txns.open)
        await asyncio.to_thread(
            txns.prepare, [(b"k", b"aborted")], [], [TopicPartition(source, 0, 1)], metadata
        )
        # The broker looks for timed-out transactions every 10 s
        # (transaction.abort.timed.out.transaction.cleanup.interval.ms).
        await asyncio.sleep(BROKER_ABORT_SCAN_S + 2)
        with pytest.raises(TransactionFailedError):  # not ProducerFencedError: no exit
            await asyncio.to_thread(txns.finish)
        await asyncio.to_thread(txns.open)
        await asyncio.to_thread(
            txns.prepare, [(b"k", b"committed")], [], [TopicPartition(source, 0, 2)], metadata
        )
        await asyncio.to_thread(txns.finish)
    finally:
        await asyncio.to_thread(txns.close)
        group.close()
    committed = await read_committed(kafka_bootstrap, decisions, at_least=1, timeout_s=30,
                                     settle_s=2)  # fmt: skip
    assert [value for _, value, _ in committed.records] == [b"committed"]
