"""The verdict on "exactly one decision per transaction", as a read_committed consumer sees it.

Notes the end of the transactions topic, reads every transaction up to it, then reads the
decisions topic as a read_committed consumer until each of those transactions has a decision
and up to the end the topic had at that moment; the verdict says how many transactions, which
have no decision and which have more than one (two different decisions; the very same decision
published again counts once). Given PostgreSQL, it also reconciles the alerts
table with those decisions: every acting FLAG or BLOCK has its alert with the same decision,
and no transaction decided APPROVE has one.

Standard library, aiokafka and asyncpg only. Both live in the e2e image (k8s-tests/e2e/Dockerfile),
where this file runs two ways: imported by the in-cluster check (`in_cluster.py verify`), and
as the program of the host suite's checker pod (`python kafka_verdict.py`, settings from the
environment, the verdict as the last line of its log).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
from typing import Any


async def _consumer(bootstrap: str, topic: str) -> tuple[Any, list[Any]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    cluster = await consumer._client.fetch_all_metadata()
    partitions = [
        TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or [])
    ]
    if not partitions:
        await consumer.stop()
        raise AssertionError(f"topic {topic} has no partitions (does it exist?)")
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return consumer, partitions


async def verdict(
    bootstrap: str,
    within_s: float,
    tx_topic: str = "transactions.v1",
    decisions_topic: str = "decisions.v1",
    postgres_dsn: str | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    txc, tps = await _consumer(bootstrap, tx_topic)
    produced: set[str] = set()
    try:
        ends = await txc.end_offsets(tps)
        for tp in tps:
            while await txc.position(tp) < ends[tp]:
                for m in (await txc.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if m.offset < ends[tp]:
                        produced.add(json.loads(m.value)["tx_id"])
    finally:
        await txc.stop()
    dc, dtps = await _consumer(bootstrap, decisions_topic)
    counts: collections.Counter[str] = collections.Counter()
    tracks: collections.Counter[str] = collections.Counter()
    acting: dict[str, str] = {}  # tx_id -> the acting decision (the last one, if several)
    contents: collections.defaultdict[str, set[bytes]] = collections.defaultdict(set)
    repeated = 0
    drain_to = None  # the decisions' end once every transaction was seen: read up to it
    try:
        while time.monotonic() < deadline:
            batch = await dc.getmany(timeout_ms=2000, max_records=5000)
            for messages in batch.values():
                for m in messages:
                    decision = json.loads(m.value)
                    tracks[decision["track"]] += 1
                    # A shadow decision is recorded beside the acting one, never instead.
                    if decision["track"] != "shadow":
                        # The same decision again (a transaction produced twice gets its
                        # first decision again) counts once; another decision does not.
                        if m.value not in contents[decision["tx_id"]]:
                            contents[decision["tx_id"]].add(m.value)
                            counts[decision["tx_id"]] += 1
                        else:
                            repeated += 1
                        acting[decision["tx_id"]] = decision["decision"]
            if drain_to is None and produced <= counts.keys():
                drain_to = await dc.end_offsets(dtps)
            if drain_to is not None and all([await dc.position(tp) >= drain_to[tp] for tp in dtps]):
                break
    finally:
        await dc.stop()
    missing = sorted(produced - counts.keys())
    duplicated = {t: n for t, n in counts.items() if n > 1}
    alerts = {} if postgres_dsn is None else await _reconcile_alerts(postgres_dsn, produced, acting)
    return {
        "produced": len(produced),
        "decisions": sum(counts.values()),
        "missing": len(missing),
        "missing_sample": missing[:5],
        "duplicated": len(duplicated),
        "duplicated_sample": dict(list(duplicated.items())[:5]),
        "repeated": repeated,
        "by_track": dict(tracks),
        **alerts,
    }


async def _reconcile_alerts(dsn: str, produced: set[str], acting: dict[str, str]) -> dict[str, Any]:
    """The alerts of the produced transactions against their acting decisions."""
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=30)
    try:
        rows = await connection.fetch(
            "SELECT tx_id, decision FROM alerts WHERE tx_id = ANY($1::text[])", sorted(produced)
        )
    finally:
        await connection.close()
    alerts = {row["tx_id"]: row["decision"] for row in rows}
    expected = {tx: d for tx, d in acting.items() if tx in produced and d in ("FLAG", "BLOCK")}
    without_alert = sorted(expected.keys() - alerts.keys())
    unexpected = sorted(tx for tx in alerts if acting.get(tx) not in ("FLAG", "BLOCK"))
    differing = sorted(tx for tx in expected.keys() & alerts.keys() if expected[tx] != alerts[tx])
    return {
        "alerts": len(alerts),
        "alerts_expected": len(expected),
        "alerts_missing": len(without_alert),
        "alerts_unexpected": len(unexpected),
        "alerts_differing": len(differing),
        "alerts_sample": {
            "missing": without_alert[:5],
            "unexpected": [(tx, acting.get(tx), alerts[tx]) for tx in unexpected[:5]],
            "differing": [(tx, expected[tx], alerts[tx]) for tx in differing[:5]],
        },
    }


if __name__ == "__main__":
    print(
        json.dumps(
            asyncio.run(
                verdict(
                    os.environ["BOOTSTRAP"],
                    float(os.environ["WITHIN_S"]),
                    os.environ.get("TX_TOPIC", "transactions.v1"),
                    os.environ.get("DECISIONS_TOPIC", "decisions.v1"),
                    os.environ.get("POSTGRES_DSN") or None,
                )
            )
        )
    )
