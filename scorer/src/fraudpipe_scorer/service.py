"""The scorer's run loop: fetch a micro-batch, score it, write every sink, commit.

Order per batch (DESIGN.md §5): features and scores (Redis), then the decision cache (Redis)
and the alerts (Postgres) together, then one Kafka transaction per source partition with its
decisions, its DLQ records and its next offset. Batches overlap without reordering: batch
k+1's feature call runs in Redis while batch k is decided and saved, and batch k's Kafka
transactions run while batch k+1 is; each step waits for the same step of the batch before.
Each step is retried with backoff while its dependency is down and nothing new is fetched
meanwhile (the consumer is in effect paused); offsets move only inside the Kafka transactions,
so no unsaved work is ever committed. A rebalance waits for the batches in flight.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from redis.asyncio import Redis

from fraudpipe_common import inference
from fraudpipe_common.contracts.decisions import DecisionRecord
from fraudpipe_common.contracts.dlq import Rejection
from fraudpipe_common.features import OnlineFeatureStore
from fraudpipe_common.kafka import KafkaSettings, TopicSettings
from fraudpipe_common.rules import RuleSettings
from fraudpipe_scorer.config import ScorerSettings
from fraudpipe_scorer.http import build_app, serve
from fraudpipe_scorer.metrics import ScorerMetrics
from fraudpipe_scorer.routing import Router
from fraudpipe_scorer.scoring import BatchResult, BatchScorer, DecodedBatch, Matrix, Record
from fraudpipe_scorer.sinks import (
    AlertStore,
    DecisionCache,
    PartitionTransactions,
    ProducerFencedError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BACKOFF_S = 5.0


class BatchAbandonedError(RuntimeError):
    """Shutdown came while a dependency was still down: the batch is left uncommitted and
    will be processed again by whoever owns the partition next."""


class Scorer:
    def __init__(
        self,
        settings: ScorerSettings,
        kafka: KafkaSettings,
        topics: TopicSettings,
        rules: RuleSettings,
        metrics: ScorerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.kafka = kafka
        self.topics = topics
        self.rules = rules
        self.metrics = metrics or ScorerMetrics()
        self.router = Router(has_candidate=settings.canary_model_ref is not None)
        self._stop = asyncio.Event()
        self._give_up_at: float | None = None
        self._batch_lock = asyncio.Lock()
        self._in_flight: asyncio.Task[None] | None = None
        self._pending: _Pending | None = None
        self._parts: _Parts | None = None
        self._fatal: BaseException | None = None
        self._joined = False
        self._models_loaded = False
        self._redis: Redis | None = None
        self._pool: asyncpg.Pool | None = None

    def stop(self) -> None:
        """Finish the batch in flight, commit it, leave (SIGTERM)."""
        if not self._stop.is_set():
            self._give_up_at = time.monotonic() + self.settings.shutdown_grace_s
            self._stop.set()

    # -- readiness -----------------------------------------------------------------------------
    async def readiness(self) -> dict[str, bool]:
        return {
            "model": self._models_loaded,
            "group": self._joined,
            "redis": await _reachable(self._ping_redis),
            "postgres": await _reachable(self._ping_postgres),
        }

    async def _ping_redis(self) -> None:
        assert self._redis is not None
        await self._redis.ping()

    async def _ping_postgres(self) -> None:
        assert self._pool is not None
        await self._pool.fetchval("SELECT 1")

    # -- run -----------------------------------------------------------------------------------
    async def run(self) -> None:
        s = self.settings
        m = self.metrics
        runner = await serve(build_app(m, self.router, self.readiness), s.metrics_port)
        try:
            stable = await inference.load(
                s.model_ref,
                flag=s.flag_threshold,
                block=s.block_threshold,
                plain_http=s.registry_plain_http,
            )
            candidate = None
            if s.canary_model_ref:
                candidate = await inference.load(
                    s.canary_model_ref,
                    flag=s.flag_threshold,
                    block=s.block_threshold,
                    plain_http=s.registry_plain_http,
                )
            self.router.set(weight=s.canary_weight, shadow=s.shadow)
            m.canary_weight.set(s.canary_weight)
            m.shadow.set(int(s.shadow))
            for track, loaded in (("stable", stable), ("candidate", candidate)):
                if loaded is not None:
                    m.model.labels(track).info({"name": loaded.name, "digest": loaded.digest})
            self._models_loaded = True
            log.info(
                "models loaded: stable %s%s",
                stable.digest,
                f", candidate {candidate.digest}" if candidate else "",
            )

            self._redis = Redis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=5)
            self._pool = await _create_pool(s.database_url, self)
            features = OnlineFeatureStore(self._redis, prefix=s.redis_key_prefix)
            scorer = BatchScorer(
                features,
                stable,
                candidate,
                self.router,
                self.rules,
                max_message_bytes=s.max_message_bytes,
            )
            cache = DecisionCache(self._redis, s.redis_key_prefix, s.decision_cache_ttl_s)
            alerts = AlertStore(self._pool)
            txns = PartitionTransactions(
                self.kafka, s.consumer_group, self.topics.decisions_topic, self.topics.dlq_topic
            )
            consumer = AIOKafkaConsumer(
                **self.kafka.aiokafka(),
                group_id=s.consumer_group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                # Answer as soon as anything is there: the batch wait bounds latency, not the
                # broker's.
                fetch_max_wait_ms=min(s.batch_max_wait_ms, 20),
                fetch_min_bytes=1,
                max_partition_fetch_bytes=4 * 1_048_576,
                session_timeout_ms=10_000,
                heartbeat_interval_ms=2_000,
            )
            self._parts = _Parts(scorer, cache, alerts, txns, consumer)
            consumer.subscribe([self.topics.transactions_topic], listener=_Rebalance(self, txns))
            await consumer.start()
            fenced = False
            try:
                await self._loop(consumer)
            except ProducerFencedError:
                fenced = True  # a zombie commits nothing more
                raise
            finally:
                async with self._batch_lock:
                    try:
                        if not fenced:
                            await self._drain()
                    except (BatchAbandonedError, ProducerFencedError) as exc:
                        log.warning("left uncommitted: %s", exc)
                    finally:
                        if self._pending is not None:
                            self._pending.features.cancel()
                        await txns.close_all()
                await consumer.stop()
        finally:
            if self._redis is not None:
                await self._redis.aclose()
            if self._pool is not None:
                try:
                    # close() waits for every connection to finish politely; a connection
                    # left half-open by an outage must not hold up the exit.
                    await asyncio.wait_for(self._pool.close(), timeout=2.0)
                except TimeoutError:
                    self._pool.terminate()
            await runner.cleanup()

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        wait_ms, size = self.settings.batch_max_wait_ms, self.settings.batch_max_size
        while not self._stop.is_set():
            if self._fatal is not None:
                raise self._fatal
            # With a batch waiting for its decisions, take only what is already fetched.
            timeout = 0 if self._pending is not None else wait_ms
            fetched = await consumer.getmany(timeout_ms=timeout, max_records=size)
            async with self._batch_lock:
                owned = consumer.assignment()
                # A rebalance may have taken a partition between the fetch and now: its
                # records are the new owner's.
                records = [r for tp, rs in fetched.items() if tp in owned for r in rs]
                if not records and self._pending is None:
                    continue
                try:
                    await self._advance(records)
                except BatchAbandonedError as exc:
                    log.warning("%s", exc)
                    return

    async def _advance(self, records: Sequence[Any]) -> None:
        """Send batch k+1's features call, then finish batch k while Redis computes them.

        Feature calls stay in batch order (k's has returned before k+1's is sent), and batch
        k+1 is dropped if batch k fails, so no offset ever passes unsaved work."""
        parts = self._parts
        assert parts is not None
        previous, self._pending = self._pending, None
        stateful = await previous.features if previous is not None else None
        if records:
            batch = parts.scorer.decode(records)
            self.metrics.batch_size.observe(len(records))
            features = asyncio.create_task(
                self._retry("redis", lambda: parts.scorer.fetch_features(batch))
            )
            self._pending = _Pending(batch, features)
            await asyncio.sleep(0)  # the request leaves before the CPU work below
        if previous is not None and stateful is not None:
            try:
                await self._complete(previous.batch, stateful)
            except BaseException:
                if self._pending is not None:
                    self._pending.features.cancel()
                    self._pending = None
                raise

    async def _drain(self) -> None:
        """Finish and commit everything started (call under the lock)."""
        previous, self._pending = self._pending, None
        if previous is not None:
            await self._complete(previous.batch, await previous.features)
        await self._settle()

    async def _settle(self) -> None:
        """Wait for the batch whose Kafka transactions are in flight (call under the lock)."""
        task, self._in_flight = self._in_flight, None
        if task is not None:
            await task

    async def _complete(self, batch: DecodedBatch, stateful: Matrix) -> None:
        """Decide, save to Redis and Postgres (idempotent writes), then hand the batch to its
        Kafka transactions once the previous batch's have committed."""
        parts = self._parts
        assert parts is not None
        m = self.metrics
        scorer = parts.scorer
        matrix = scorer.matrix(batch, stateful)
        # ONNX Runtime releases the GIL: the previous batch's Kafka transactions and the next
        # batch's fetch go on meanwhile.
        scores = await asyncio.to_thread(scorer.infer, batch, matrix)
        result = scorer.finish(batch, matrix, scores)
        for stage, seconds in result.stage_seconds.items():
            m.stage.labels(stage).observe(seconds)

        started = time.perf_counter()
        acting = [(record, d, d.to_json()) for record, d in result.decisions]
        shadow = [(record, d, d.to_json()) for record, d in result.shadow]
        m.stage.labels("encode").observe(time.perf_counter() - started)

        started = time.perf_counter()
        cache, alerts = parts.cache, parts.alerts
        await asyncio.gather(
            self._retry("redis", lambda: cache.write([(d, p) for _, d, p in acting])),
            self._retry("postgres", lambda: alerts.write([d for _, d, _ in acting])),
        )
        m.stage.labels("cache_and_alerts").observe(time.perf_counter() - started)

        per_partition: dict[TopicPartition, _PartitionWork] = {}
        for record in batch.records:
            tp = TopicPartition(record.topic, record.partition)
            work = per_partition.setdefault(tp, _PartitionWork())
            work.next_offset = max(work.next_offset, record.offset + 1)
        for record, d, payload in (*acting, *shadow):
            per_partition[TopicPartition(record.topic, record.partition)].decisions.append(
                (d.tx_id, payload)
            )
        for record, rejection in result.rejections:
            tp = TopicPartition(record.topic, record.partition)
            per_partition[tp].rejections.append((record, rejection))
        prepared = _Prepared(result, acting, shadow, per_partition)
        # Batch k's Kafka transactions ran while batch k+1 was scored and saved; they finish
        # before k+1's start, so each partition's offsets only grow.
        await self._settle()
        self._in_flight = asyncio.create_task(self._commit(prepared, parts.consumer, parts.txns))

    async def _commit(
        self, prepared: _Prepared, consumer: AIOKafkaConsumer, txns: PartitionTransactions
    ) -> None:
        """One Kafka transaction per partition: decisions, DLQ records, next offset."""
        m = self.metrics
        started = time.perf_counter()

        def commit(tp: TopicPartition, w: _PartitionWork) -> Callable[[], Awaitable[None]]:
            return lambda: txns.commit(tp, w.decisions, w.rejections, w.next_offset)

        await asyncio.gather(
            *(self._retry("kafka", commit(tp, w)) for tp, w in prepared.per_partition.items())
        )
        m.stage.labels("kafka_commit").observe(time.perf_counter() - started)

        now = time.time()
        # Counted per label set first: a labelled child is looked up once per batch, not once
        # per decision.
        verdicts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        scores: dict[tuple[str, str], list[float]] = {}
        observe_latency = m.end_to_end.observe
        for _, d, _ in prepared.acting:
            observe_latency(max(now - d.event_ts.timestamp(), 0.0))
        for _, d, _ in (*prepared.acting, *prepared.shadow):
            verdicts[(d.decision.value, d.model_digest, d.track.value)] += 1
            scores.setdefault((d.model_digest, d.track.value), []).append(d.score)
        for verdict_labels, count in verdicts.items():
            m.decisions.labels(*verdict_labels).inc(count)
        for score_labels, values in scores.items():
            observe_score = m.scores.labels(*score_labels).observe
            for value in values:
                observe_score(value)
        for _, rejection in prepared.result.rejections:
            m.dlq.labels(rejection.code).inc()
        for tp, w in prepared.per_partition.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                m.lag.labels(str(tp.partition)).set(max(highwater - w.next_offset, 0))

    async def _retry(self, dependency: str, action: Callable[[], Awaitable[T]]) -> T:
        delay = 0.1
        while True:
            try:
                return await action()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, ProducerFencedError):
                    raise
                self.metrics.sink_errors.labels(dependency).inc()
                if self._give_up_at is not None and time.monotonic() + delay > self._give_up_at:
                    raise BatchAbandonedError(
                        f"stopping while {dependency} is unavailable ({exc}); the batch stays "
                        "uncommitted and will be processed again"
                    ) from exc
                log.warning(
                    "%s unavailable (%s: %s); retrying in %.1f s",
                    dependency,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)


@dataclass
class _Parts:
    scorer: BatchScorer
    cache: DecisionCache
    alerts: AlertStore
    txns: PartitionTransactions
    consumer: AIOKafkaConsumer


@dataclass
class _Pending:
    """A decoded batch whose features call is in flight."""

    batch: DecodedBatch
    features: asyncio.Task[Matrix]


@dataclass
class _Prepared:
    result: BatchResult
    acting: list[tuple[Record, DecisionRecord, bytes]]
    shadow: list[tuple[Record, DecisionRecord, bytes]]
    per_partition: dict[TopicPartition, _PartitionWork]


class _PartitionWork:
    __slots__ = ("decisions", "next_offset", "rejections")

    def __init__(self) -> None:
        self.decisions: list[tuple[str, bytes]] = []
        self.rejections: list[tuple[Record, Rejection]] = []
        self.next_offset = -1


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, scorer: Scorer, txns: PartitionTransactions) -> None:
        self._scorer = scorer
        self._txns = txns

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # The batch in flight commits (its offsets travel in its transactions) before the
        # partitions go; then their producers close.
        async with self._scorer._batch_lock:
            try:
                await self._scorer._drain()
            except BatchAbandonedError as exc:
                log.warning("%s", exc)
            except Exception as exc:
                self._scorer._fatal = exc  # the run loop raises it
            await self._txns.close(list(revoked))
        for tp in revoked:
            with contextlib.suppress(KeyError):
                self._scorer.metrics.lag.remove(str(tp.partition))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Opening the producers now fences a previous owner of each partition and aborts
        # whatever transaction it left open.
        async with self._scorer._batch_lock:
            for tp in assigned:
                await self._txns.open(tp)
        self._scorer._joined = True


async def _create_pool(url: str, scorer: Scorer) -> asyncpg.Pool:
    """Postgres may be down at start: wait for it like for any other outage."""
    return await scorer._retry(
        "postgres", lambda: asyncpg.create_pool(url, min_size=1, max_size=2, timeout=5)
    )


async def _reachable(check: Callable[[], Awaitable[None]]) -> bool:
    try:
        await asyncio.wait_for(check(), timeout=1.0)
    except Exception:
        return False
    return True
