"""Postgres unreachable for 20 s: nothing is committed for unsaved work, and the scorer catches
up by itself when it returns, losing and duplicating nothing."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from fraudpipe_common.contracts.decisions import Verdict
from fraudpipe_testing.proxy import CuttableProxy

from .harness import produce, read_committed, traffic, transaction_messages
from .test_pipeline import StartScorer, alert_rows, by_tx

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(180)]

OUTAGE_S = 20


async def test_postgres_outage_commits_nothing_unsaved_and_catches_up(
    pipeline_env: dict[str, str], start_scorer: StartScorer
) -> None:
    env = pipeline_env
    bootstrap, decisions_topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["DECISIONS_TOPIC"]
    parts = urlsplit(env["DATABASE_URL"])
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    via_proxy = urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0] + f":{proxy.port}"))
    try:
        txs = traffic(6_000, fraud_rate=0.03)
        before, during = txs[:2_000], txs[2_000:]
        scorer = start_scorer(DATABASE_URL=via_proxy)
        await scorer.wait_ready()
        await produce(bootstrap, env["TRANSACTIONS_TOPIC"], transaction_messages(before))
        first = await read_committed(bootstrap, decisions_topic, at_least=len(before), timeout_s=60)
        assert len(first.records) == len(before)

        proxy.cut()
        cut_at = time.monotonic()
        await produce(bootstrap, env["TRANSACTIONS_TOPIC"], transaction_messages(during))
        status, body = await asyncio.to_thread(scorer.get, "/readyz")
        assert status == 503
        assert b'"postgres": false' in body
        while time.monotonic() - cut_at < OUTAGE_S:
            await asyncio.sleep(5)
            # Whatever is committed on decisions.v1 has its alerts in Postgres already.
            committed = by_tx(
                (
                    await read_committed(bootstrap, decisions_topic, at_least=len(txs), timeout_s=2)
                ).decisions()
            )
            assert len(committed) == len(before), "a batch was committed without its alerts"
            alerts = await alert_rows(env["DATABASE_URL"])
            assert {t for t, d in committed.items() if d.decision is not Verdict.APPROVE} <= set(
                alerts
            )
        assert scorer.metric('fraudpipe_scorer_dependency_errors_total{dependency="postgres"}') > 0

        proxy.restore()
        after = await read_committed(
            bootstrap, decisions_topic, at_least=len(txs), timeout_s=60, settle_s=2
        )
        decided = by_tx(after.decisions())
        assert set(decided) == {tx.tx_id for tx in txs}
        alerts = await alert_rows(env["DATABASE_URL"])
        assert alerts == {
            t: d.decision.value for t, d in decided.items() if d.decision is not Verdict.APPROVE
        }
        assert scorer.terminate() == 0
    finally:
        await proxy.stop()
