"""Where a scored batch goes: Redis decision cache, Postgres alerts, and one Kafka transaction
per source partition carrying its decisions, its DLQ records and its consumed offset.

Redis and Postgres writes are idempotent (SET of the same value, ON CONFLICT DO NOTHING), so
they run first and may repeat after a crash; the Kafka transaction commits last and is what
moves the group's offsets. A batch whose Kafka transaction did not commit is replayed, and its
replay overwrites nothing and duplicates nothing (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced, TransactionalIdAuthorizationFailed
from aiokafka.producer.message_accumulator import BatchBuilder
from redis.asyncio import Redis

from fraudpipe_common.contracts.decisions import DecisionRecord, Verdict
from fraudpipe_common.contracts.dlq import Rejection
from fraudpipe_common.contracts.transactions import SCHEMA_HEADER
from fraudpipe_common.kafka import KafkaSettings
from fraudpipe_common.partitioning import partitions
from fraudpipe_scorer.scoring import Record

log = logging.getLogger(__name__)


# One command for the whole batch: a pipeline of SETs costs the client several microseconds a
# command to build, the script's arguments a fraction of that.
_SET_ALL = """
for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1]) end
"""


class DecisionCache:
    """`<prefix>decision:<tx_id>` → the decision JSON, with a TTL, one round trip per batch."""

    def __init__(self, redis: Redis, prefix: str, ttl_s: int) -> None:
        self._set_all = redis.register_script(_SET_ALL)
        self._prefix = prefix + "decision:"
        self._ttl_s = ttl_s

    def key(self, tx_id: str) -> str:
        return self._prefix + tx_id

    async def write(self, decisions: Sequence[tuple[DecisionRecord, bytes]]) -> None:
        if not decisions:
            return
        keys = [self._prefix + decision.tx_id for decision, _ in decisions]
        await self._set_all(keys=keys, args=[self._ttl_s, *(p for _, p in decisions)])


_INSERT_ALERTS = """
INSERT INTO alerts (tx_id, user_id, decision, score, model_digest, track, reasons, features,
                    event_ts, decided_ts)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[],
                     $7::jsonb[], $8::jsonb[], $9::timestamptz[], $10::timestamptz[])
ON CONFLICT (tx_id) DO NOTHING
"""


class AlertStore:
    """FLAG and BLOCK decisions as rows of `alerts`, one statement per batch."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write(self, decisions: Sequence[DecisionRecord]) -> None:
        alerts = [d for d in decisions if d.decision is not Verdict.APPROVE]
        if not alerts:
            return
        columns: list[list[object]] = [[] for _ in range(10)]
        for d in alerts:
            values = (
                d.tx_id,
                d.user_id,
                d.decision.value,
                d.score,
                d.model_digest,
                d.track.value,
                orjson.dumps([r.model_dump() for r in d.reasons]).decode(),
                orjson.dumps(d.features).decode(),
                d.event_ts,
                d.decided_ts,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        async with self._pool.acquire() as conn:
            await conn.execute(_INSERT_ALERTS, *columns)


_DECISION_HEADERS = [(SCHEMA_HEADER, b"decisions.v1")]


class ProducerFencedError(RuntimeError):
    """Another scorer took over a partition's transactional id: this process is a zombie."""


class PartitionTransactions:
    """One transactional producer per assigned input partition.

    The transactional id is derived from the consumer group and the input partition, so
    whichever scorer is assigned a partition uses the same id; its `init_transactions` bumps
    the producer epoch, aborts whatever the previous owner left open and fences it: a zombie
    that still believes it owns the partition can no longer commit (docs/decisions.md).
    """

    def __init__(
        self, kafka: KafkaSettings, group_id: str, decisions_topic: str, dlq_topic: str
    ) -> None:
        self._kafka = kafka
        self._group_id = group_id
        self._decisions_topic = decisions_topic
        self._dlq_topic = dlq_topic
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._opening = asyncio.Lock()

    def transactional_id(self, tp: TopicPartition) -> str:
        return f"{self._group_id}.{tp.topic}.{tp.partition}"

    async def open(self, tp: TopicPartition) -> AIOKafkaProducer:
        # Two producers with one transactional id fence each other: opening is serialised
        # (the rebalance listener and a batch may both ask for a new partition's producer).
        async with self._opening:
            return await self._open(tp)

    async def _open(self, tp: TopicPartition) -> AIOKafkaProducer:
        producer = self._producers.get(tp)
        if producer is None:
            producer = AIOKafkaProducer(
                **self._kafka.aiokafka(),
                transactional_id=self.transactional_id(tp),
                compression_type="lz4",
                linger_ms=0,
                # A partition's next transaction starts as soon as the last one committed, often
                # before the broker wrote its markers: the broker answers "concurrent
                # transactions" and the client waits this long to retry (KAFKA-5477). The
                # default 100 ms would be most of the end-to-end latency.
                retry_backoff_ms=10,
                max_batch_size=1_048_576,
                # Room for the largest message the DLQ must carry back (1 MiB value + headers).
                max_request_size=2_097_152,
            )
            await producer.start()  # init_transactions: fences the previous owner
            self._producers[tp] = producer
        return producer

    async def close(self, tps: Sequence[TopicPartition]) -> None:
        for tp in tps:
            producer = self._producers.pop(tp, None)
            if producer is not None:
                with contextlib.suppress(Exception):  # a fenced producer may fail to stop
                    await producer.stop()

    async def close_all(self) -> None:
        await self.close(list(self._producers))

    async def commit(
        self,
        tp: TopicPartition,
        decisions: Sequence[tuple[str, bytes]],
        rejections: Sequence[tuple[Record, Rejection]],
        next_offset: int,
    ) -> None:
        """Decisions (key tx_id), DLQ records and the partition's next offset, atomically."""
        producer = await self.open(tp)
        try:
            async with producer.transaction():
                futures = await self._send_decisions(producer, decisions)
                for record, rejection in rejections:
                    futures.append(
                        await producer.send(
                            self._dlq_topic,
                            record.value or b"",
                            key=getattr(record, "key", None),
                            headers=rejection.headers(),
                        )
                    )
                # gather retrieves every failure, not just the first.
                await asyncio.gather(*futures)
                await producer.send_offsets_to_transaction({tp: next_offset}, self._group_id)
        except Exception as exc:
            # The producer's state after a failed transaction is not worth reasoning about:
            # drop it; the next attempt starts a fresh one (and fences nobody but ourselves).
            self._producers.pop(tp, None)
            with contextlib.suppress(Exception):  # already failing: the first error matters
                await producer.stop()
            if isinstance(exc, ProducerFenced | TransactionalIdAuthorizationFailed):
                raise ProducerFencedError(
                    f"partition {tp.topic}[{tp.partition}] was taken over by another scorer"
                ) from exc
            raise

    async def _send_decisions(
        self, producer: AIOKafkaProducer, decisions: Sequence[tuple[str, bytes]]
    ) -> list[asyncio.Future[Any]]:
        """Decisions keyed by tx_id, written straight into one record batch per output
        partition: `send()` per message costs a future and a queue round per record, which at
        thousands a second is most of the producer's time. The partition is the one `send()`
        would pick (murmur2 of the key, like the Java client)."""
        topic = self._decisions_topic
        count = len(await producer.partitions_for(topic))
        keys = [tx_id.encode() for tx_id, _ in decisions]
        builders: dict[int, BatchBuilder] = {}
        futures: list[asyncio.Future[Any]] = []
        for (tx_id, payload), key, partition in zip(
            decisions, keys, partitions(keys, count), strict=True
        ):
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = producer.create_batch()
            if builder.append(key=key, value=payload, timestamp=None, headers=_DECISION_HEADERS):
                continue
            # Full: send it and start the next one.
            futures.append(await producer.send_batch(builder, topic, partition=partition))
            builder = builders[partition] = producer.create_batch()
            if not builder.append(
                key=key, value=payload, timestamp=None, headers=_DECISION_HEADERS
            ):
                raise ValueError(f"decision {tx_id} does not fit in an empty record batch")
        for partition, builder in builders.items():
            futures.append(await producer.send_batch(builder, topic, partition=partition))
        return futures
