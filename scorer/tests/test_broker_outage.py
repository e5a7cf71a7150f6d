"""The only broker killed (-9) while the scorer works, and started again on its data 15 s later:
the scorer recovers by itself, and every transaction is decided exactly once, its alert
written once."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudpipe_common.contracts.decisions import Verdict
from fraudpipe_scorer.migrate import migrate
from fraudpipe_testing.stack.process import alive
from fraudpipe_testing.stack.services.base import Running
from fraudpipe_testing.stack.services.kafka import KafkaService

from .harness import (
    create_topics,
    free_port,
    produce,
    read_committed,
    traffic,
    transaction_messages,
)
from .test_pipeline import StartScorer, alert_rows, by_tx

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(300)]

DOWN_S = 15
RECOVERY_S = 90  # broker back → every transaction decided


class PrivateBroker:
    """A broker of this test's own (the stack's is shared): killed and started again on the
    same data directory and port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.service = KafkaService()
        self.running: Running = self.service.start(workdir)
        self.bootstrap = self.running.env["KAFKA_BOOTSTRAP_SERVERS"]

    def kill9(self) -> None:
        for pid in self.running.pids:
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in self.running.pids):
            assert time.monotonic() < deadline, "the broker survived SIGKILL"
            time.sleep(0.05)

    def restart(self) -> None:
        port = int(self.bootstrap.rsplit(":", 1)[1])
        self.running = self.service.restart(self.workdir, port)

    def stop(self) -> None:
        for pid in self.running.pids:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    started = PrivateBroker(tmp_path / "kafka")
    yield started
    started.stop()


async def test_a_killed_broker_loses_and_duplicates_nothing(
    broker: PrivateBroker,
    pipeline_env: dict[str, str],
    database_url: str,
    start_scorer: StartScorer,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    tx_topic, decisions_topic, dlq_topic = f"tx-{suffix}", f"decisions-{suffix}", f"dlq-{suffix}"
    await create_topics(broker.bootstrap, {tx_topic: 3, decisions_topic: 3, dlq_topic: 1})
    await migrate(database_url)
    scorer = start_scorer(
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
        TRANSACTIONS_TOPIC=tx_topic,
        DECISIONS_TOPIC=decisions_topic,
        DLQ_TOPIC=dlq_topic,
        METRICS_PORT=str(free_port()),
    )
    await scorer.wait_ready()
    txs = traffic(9_000, fraud_rate=0.03)
    before, after = txs[:6_000], txs[6_000:]

    # Killed while the scorer is busy with a backlog: transactions open, commits in flight.
    await produce(broker.bootstrap, tx_topic, transaction_messages(before))
    await asyncio.sleep(0.5)
    broker.kill9()
    await asyncio.sleep(DOWN_S)
    assert scorer.proc.poll() is None, f"the scorer died with the broker:\n{scorer.tail()}"
    await asyncio.to_thread(broker.restart)
    back_at = time.monotonic()
    await produce(broker.bootstrap, tx_topic, transaction_messages(after))

    committed = await read_committed(
        broker.bootstrap, decisions_topic, at_least=len(txs), timeout_s=RECOVERY_S, settle_s=3
    )
    took = time.monotonic() - back_at
    decided = by_tx(committed.decisions())
    missing = {tx.tx_id for tx in txs} - set(decided)
    assert not missing, (
        f"{len(missing)} of {len(txs)} undecided {took:.0f} s after the broker came back:\n"
        f"{scorer.tail(60)}"
    )
    alerts = await alert_rows(database_url)
    assert alerts == {
        t: d.decision.value for t, d in decided.items() if d.decision is not Verdict.APPROVE
    }
    print(f"every transaction decided {took:.1f} s after the broker came back")
    assert scorer.terminate() == 0
