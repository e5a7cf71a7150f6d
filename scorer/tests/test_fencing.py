"""A zombie scorer (frozen mid-stream, its partitions given to another) cannot commit."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from fraudpipe_common.contracts.decisions import Verdict

from .harness import produce, read_committed, traffic, transaction_messages
from .test_pipeline import StartScorer, alert_rows, by_tx

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(180)]


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
        # The group gives the successor every partition once the zombie's session expires; its
        # producers take over the partitions' transactional ids and fence the zombie's.
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
