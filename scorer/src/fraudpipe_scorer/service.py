"""The scorer's run loop: fetch a micro-batch, score it, write every sink, commit.

Order per batch (DESIGN.md §5): features and scores (Redis), then the decision cache (Redis)
and the alerts (Postgres) together, then a Kafka transaction with its decisions, its DLQ
records and its next offsets. Batches overlap without reordering: batch k+1's feature call runs
in Redis while batch k is decided, batch k is saved while k+1 is decided, and a committer task
commits the saved batches, all those waiting in one transaction, in order, while the next ones
are scored. Redis and
Postgres steps are retried with backoff while their dependency is down and nothing new is
fetched meanwhile (the consumer is in effect paused). Offsets move only inside the Kafka
transactions, so no unsaved work is ever committed; a transaction that fails drops every
uncommitted batch and rewinds the consumer to the first of them, which are then scored again
(idempotent features, cache and alerts make that safe). A rebalance commits the batches
already saved first and leaves the one being scored to the next owner; a lost assignment (this
scorer was a zombie) commits nothing more.

Kafka I/O is librdkafka's (confluent-kafka): its consume and transaction calls block and
release the GIL, so they run in worker threads, and rebalance callbacks, which librdkafka runs
inside `consume`, hand their work to the event loop (decision 67).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import gc
import logging
import os
import socket
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import asyncpg
import numpy as np
import orjson
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from redis.asyncio import Redis

from fraudpipe_common import inference
from fraudpipe_common.contracts.decisions import DecisionRecord
from fraudpipe_common.contracts.transactions_avro import AvroDecoder
from fraudpipe_common.features import OnlineFeatureStore
from fraudpipe_common.kafka import KafkaSettings, TopicSettings
from fraudpipe_common.model_artifact import ModelArtifactError
from fraudpipe_common.rules import RuleSettings
from fraudpipe_common.schema_registry import SchemaRegistryClient
from fraudpipe_scorer.config import ScorerSettings
from fraudpipe_scorer.http import serve_http
from fraudpipe_scorer.metrics import ScorerMetrics, observe_many
from fraudpipe_scorer.routing import Router
from fraudpipe_scorer.scoring import BatchResult, BatchScorer, DecodedBatch, Matrix, Record
from fraudpipe_scorer.sinks import (
    AlertStore,
    DecisionCache,
    DecisionTransactions,
    ProducerFencedError,
    TransactionFailedError,
    first_decisions,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BACKOFF_S = 5.0
ATTEMPT_TIMEOUT_S = 10.0  # one try of a Redis or Postgres step (each has its own 5 s timeouts)
MAX_QUEUED_BATCHES = 4  # prepared batches waiting for the committer before scoring waits too
COMMITTED_TIMEOUT_S = 10.0  # one read of the group's committed offsets


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
        # The committer: commits the prepared batches, all those waiting in one transaction.
        self._in_flight: asyncio.Task[None] | None = None
        self._to_commit: list[_Prepared] = []
        self._saving: set[asyncio.Task[None]] = set()  # batches' cache and alert writes
        self._queue_changed = asyncio.Event()  # a batch queued for the committer, or taken
        self._turn = 0  # which producer's turn it is to prepare a transaction
        self._pending: _Pending | None = None
        self._parts: _Parts | None = None
        self._fatal: BaseException | None = None
        self._joined = False
        self._models_loaded = False
        self._redis: Redis | None = None
        self._pool: asyncpg.Pool | None = None
        self._registry: SchemaRegistryClient | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        # Batches fetched and not yet committed, oldest first: where to rewind to.
        self._uncommitted: collections.deque[DecodedBatch] = collections.deque()
        self._kafka_failures = 0
        self._rebalances = 0  # bumped by every rebalance callback
        # Kept by the rebalance callbacks, so that the event loop never calls into the consumer
        # while `consume` may be inside a callback waiting for the loop (that deadlocks).
        self._owned: set[tuple[str, int]] = set()
        self._group_metadata: object | None = None

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
        runner = await serve_http(m, self.router, self.readiness, s.metrics_port, s.control_port)
        try:
            # Before anything else: a model that fails its checks (inference.open_session)
            # stops the scorer here, before it joins the group, so it never becomes ready
            # and never decides a transaction (docs/security.md).
            stable = await self._load_model("stable", s.model_ref)
            candidate = None
            if s.canary_model_ref:
                candidate = await self._load_model("candidate", s.canary_model_ref)
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
                avro=self._avro_decoder(),
            )
            cache = DecisionCache(self._redis, s.redis_key_prefix, s.decision_cache_ttl_s)
            alerts = AlertStore(self._pool)
            # Two producers take turns, so that one transaction is prepared while the
            # previous one commits (decision 78).
            base_id = s.transactional_id or _process_transactional_id(s.consumer_group)
            txns = tuple(
                DecisionTransactions(
                    self.kafka,
                    f"{base_id}.{n}",
                    self.topics.decisions_topic,
                    self.topics.dlq_topic,
                    on_retry=self.metrics.sink_errors.labels("kafka").inc,
                    on_replace=self.metrics.producers_replaced.inc,
                )
                for n in range(2)
            )
            # Before joining the group: a previous run's open transactions under these ids are
            # aborted now, so this run's offset fetch does not wait for the broker's timeout.
            try:
                for producer in txns:
                    await self._retry(
                        "kafka",
                        functools.partial(asyncio.to_thread, producer.open),
                        attempt_s=producer.longest_call_s,
                    )
            except BatchAbandonedError as exc:
                log.warning("stopped before Kafka could be reached: %s", exc)
                return
            _tune_collector()
            consumer = Consumer(self._consumer_config())
            self._parts = _Parts(scorer, cache, alerts, txns, consumer)
            self._event_loop = asyncio.get_running_loop()
            consumer.subscribe(
                [self.topics.transactions_topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
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
                    except (
                        BatchAbandonedError,
                        ProducerFencedError,
                        TransactionFailedError,
                    ) as exc:
                        log.warning("left uncommitted: %s", exc)
                    finally:
                        self._drop_pending()
                # Leaves the group at once (its revoke callback finds nothing in flight).
                await asyncio.to_thread(consumer.close)
                for producer in txns:
                    await asyncio.to_thread(producer.close)
        finally:
            if self._registry is not None:
                await self._registry.aclose()
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

    def _avro_decoder(self) -> AvroDecoder | None:
        if self.topics.transactions_format != "avro":
            return None
        self._registry = self.topics.schema_registry()
        return AvroDecoder(self._registry)

    async def _load_model(self, track: str, ref: str) -> inference.LoadedModel:
        s = self.settings
        try:
            return await inference.load(
                ref,
                flag=s.flag_threshold,
                block=s.block_threshold,
                plain_http=s.registry_plain_http,
            )
        except ModelArtifactError as exc:
            raise ModelArtifactError(f"the {track} model {ref} is refused: {exc}") from exc

    def _consumer_config(self) -> dict[str, Any]:
        s = self.settings
        return self.kafka.librdkafka() | {
            "group.id": s.consumer_group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Only committed input; and committed offsets are read only once no transaction
            # holding offsets for the partition is pending (KIP-447's stable offsets).
            "isolation.level": "read_committed",
            # Answer as soon as anything is there: the batch wait bounds latency, not the
            # broker's.
            "fetch.wait.max.ms": min(s.batch_max_wait_ms, 20),
            "fetch.min.bytes": 1,
            # Read-ahead bounded to a few batches' worth: librdkafka's defaults (100,000
            # messages a partition, 64 MB) cost ~200 MB of RSS and gain nothing once a batch of
            # 500 is always waiting. A larger message still arrives alone (KIP-74).
            "max.partition.fetch.bytes": 1_048_576,
            "fetch.max.bytes": 8 * 1_048_576,
            "queued.min.messages": 10_000,
            "queued.max.messages.kbytes": 8_192,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 2_000,
            # A rebalance waits for every member to call consume again, and this scorer does
            # not while Redis, PostgreSQL or the broker is down and its queue is full: past
            # 30 s it leaves the group (its uncommitted batches go to the next owner) rather
            # than hold everyone for librdkafka's default 5 minutes.
            "max.poll.interval.ms": 30_000,
            "partition.assignment.strategy": "range",
            # Lag per partition comes from librdkafka's statistics (served in `consume`).
            "statistics.interval.ms": 1_000,
            "stats_cb": self._on_stats,
        }

    async def _loop(self, consumer: Consumer) -> None:
        wait_s, size = self.settings.batch_max_wait_ms / 1000, self.settings.batch_max_size
        while not self._stop.is_set():
            if self._fatal is not None:
                raise self._fatal
            # With a batch waiting for its decisions, take only what is already fetched.
            timeout = 0 if self._pending is not None else wait_s
            rebalances = self._rebalances
            fetched = await asyncio.to_thread(consumer.consume, size, timeout)
            async with self._batch_lock:
                records = self._records(consumer, fetched)
                if self._rebalances != rebalances:
                    # The assignment changed inside this call: what it returned may predate
                    # the change, so none of it is scored; the partitions still ours are read
                    # again from the first of it (the committed offset after the revoke).
                    self._seek_to_first(consumer, records)
                    records = []
                try:
                    if not records and self._pending is None:
                        if self._in_flight is not None and self._in_flight.done():
                            await self._settle()  # an idle scorer still learns of a failure
                        continue
                    await self._advance(records)
                except BatchAbandonedError as exc:
                    log.warning("%s", exc)
                    return
                except TransactionFailedError as exc:
                    try:
                        await self._rewind(consumer, exc)
                    except BatchAbandonedError as abandoned:
                        log.warning("%s", abandoned)
                        return

    def _records(self, consumer: Consumer, fetched: list[Message]) -> list[Record]:
        owned = self._owned
        records = []
        for message in fetched:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                # Transport hiccups: librdkafka reconnects and refetches by itself.
                log.warning("consumer: %s", error.str())
                continue
            # A message without an error always has its topic, partition and offset.
            topic, partition = cast(str, message.topic()), cast(int, message.partition())
            if (topic, partition) in owned:  # never a revoked partition's leftovers
                offset = cast(int, message.offset())
                records.append(Record(topic, partition, offset, message.key(), message.value()))
        return records

    async def _rewind(self, consumer: Consumer, exc: TransactionFailedError) -> None:
        """A transaction failed: drop every uncommitted batch, point the consumer back at the
        first of them, wait before trying again (call under the lock)."""
        self.metrics.sink_errors.labels("kafka").inc()
        self._drop_pending()
        self._drop_unsaved()
        self._in_flight = None
        self._to_commit = []
        self._seek_to_first(consumer, [r for batch in self._uncommitted for r in batch.records])
        self._uncommitted.clear()
        assert self._parts is not None
        # A hung producer may also sit behind a failure of known outcome (the other producer's
        # prepare failed while this one's commit hung): its transaction may have committed.
        if exc.outcome_unknown or any(p.stuck for p in self._parts.txns):
            log.warning("kafka transaction outcome unknown (%s); settling it", exc)
            await self._resume_from_committed(consumer)
        if exc.stale_member:
            # This scorer was a zombie: the next consume rejoins the group.
            log.warning("transaction refused, not a group member any more: %s", exc)
            return
        delay = min(0.1 * 2**self._kafka_failures, MAX_BACKOFF_S)
        self._kafka_failures += 1
        log.warning(
            "kafka transaction failed (%s); batches rewound, retrying in %.1f s", exc, delay
        )
        await asyncio.sleep(delay)

    async def _resume_from_committed(self, consumer: Consumer) -> None:
        """A transaction may have committed, or not: every producer is replaced (one hung; the
        others may have the same stale coordinator), each replacement takes its transactional
        id over (which completes or aborts what the old one held), and then the
        group's committed offsets say where each partition resumes (read_committed asks for
        stable offsets, so none is read while a transaction holding offsets is pending)."""
        parts = self._parts
        assert parts is not None
        for producer in parts.txns:
            producer.renew()
            await self._retry(
                "kafka",
                functools.partial(asyncio.to_thread, producer.open),
                attempt_s=producer.longest_call_s,
            )
        owned = [TopicPartition(topic, partition) for topic, partition in sorted(self._owned)]
        if not owned:
            return  # whoever is assigned them next starts from the committed offsets anyway
        committed = await self._committed_offsets(consumer, owned)
        for tp in committed:
            if tp.offset >= 0 and (tp.topic, tp.partition) in self._owned:
                consumer.seek(tp)
                log.info(
                    "resumed %s[%d] at its committed offset %d", tp.topic, tp.partition, tp.offset
                )

    async def _committed_offsets(
        self, consumer: Consumer, owned: list[TopicPartition]
    ) -> list[TopicPartition]:
        """The group's committed offsets of `owned`, every one of them without error."""

        async def read() -> list[TopicPartition]:
            committed = await asyncio.to_thread(
                consumer.committed, owned, timeout=COMMITTED_TIMEOUT_S
            )
            for tp in committed:
                if tp.error is not None:
                    raise KafkaException(tp.error)
            return committed

        return await self._retry("kafka", read, attempt_s=None)

    def _seek_to_first(self, consumer: Consumer, records: Sequence[Record]) -> None:
        first: dict[tuple[str, int], int] = {}
        for record in records:
            tp = (record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        for (topic, partition), offset in first.items():
            if (topic, partition) in self._owned:
                consumer.seek(TopicPartition(topic, partition, offset))
                log.info("rewound %s[%d] to %d", topic, partition, offset)

    def _drop_unsaved(self) -> None:
        """Stop the cache and alert writes still running: their batches will not commit (the
        committer drops a batch whose writes were stopped, and every one after it)."""
        for task in self._saving:
            task.cancel()

    def _drop_pending(self) -> None:
        if self._pending is not None:
            self._pending.features.cancel()
            self._pending = None

    # -- rebalances: librdkafka calls these from `consume`, in its worker thread ---------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalances += 1
        log.info("assigned %s", _names(partitions))
        self._owned = {(tp.topic, tp.partition) for tp in partitions}
        # The generation these partitions belong to: their offsets go with it (KIP-447).
        self._group_metadata = consumer.consumer_group_metadata()
        self._joined = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalances += 1
        log.info("revoked %s", _names(partitions))
        self._owned = set()  # (eager: all of them)
        # The batches already saved commit (their offsets travel in their transactions)
        # before the partitions go.
        self._on_loop(self._revoked(partitions, lost=False))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalances += 1
        log.warning("lost %s", _names(partitions))
        self._owned = set()
        # Someone else may own them already: what is in flight is dropped, not committed.
        self._on_loop(self._revoked(partitions, lost=True))

    def _on_stats(self, stats_json: str) -> None:
        stats = orjson.loads(stats_json)
        topic = stats.get("topics", {}).get(self.topics.transactions_topic, {})
        for partition, p in topic.get("partitions", {}).items():
            if (self.topics.transactions_topic, int(partition)) in self._owned:
                # Last stable offset (read_committed) minus the next offset handed to us.
                stable, position = p.get("ls_offset", -1), p.get("app_offset", -1)
                if stable >= 0 and position >= 0:
                    self.metrics.lag.labels(partition).set(max(stable - position, 0))

    def _on_loop(self, work: Coroutine[Any, Any, None]) -> None:
        assert self._event_loop is not None
        asyncio.run_coroutine_threadsafe(work, self._event_loop).result()

    async def _revoked(self, partitions: list[TopicPartition], *, lost: bool) -> None:
        async with self._batch_lock:
            try:
                if lost:
                    self._drop_pending()
                    self._drop_unsaved()
                    self._to_commit = []  # the committer stops after its transaction
                    task, self._in_flight = self._in_flight, None
                    if task is not None:
                        # Its offsets were sent with the old generation: it commits (KIP-447
                        # keeps that exact) or fails; either way nothing more is owed.
                        with contextlib.suppress(TransactionFailedError):
                            await task
                else:
                    # What is saved commits; the batches still being scored or saved are left
                    # to whoever owns their partitions next (their offsets never moved):
                    # finishing them here could hold the group's rebalance for as long as
                    # Redis or PostgreSQL is down.
                    self._drop_pending()
                    self._drop_unsaved()
                    await self._settle()
            except (BatchAbandonedError, TransactionFailedError) as exc:
                log.warning("partitions revoked with work uncommitted: %s", exc)
            except Exception as exc:
                self._fatal = exc  # the run loop raises it
            finally:
                self._drop_pending()
                self._in_flight = None
                self._to_commit = []
                # Whoever owns them next starts from the committed offsets.
                self._uncommitted.clear()
        for tp in partitions:
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(str(tp.partition))

    async def _advance(self, records: Sequence[Any]) -> None:
        """Send batch k+1's features call, then finish batch k while Redis computes them.

        Feature calls stay in batch order (k's has returned before k+1's is sent), and batch
        k+1 is dropped if batch k fails, so no offset ever passes unsaved work."""
        parts = self._parts
        assert parts is not None
        previous, self._pending = self._pending, None
        stateful = await previous.features if previous is not None else None
        if records:
            if parts.scorer.avro is not None:  # a JSON batch has nothing to fetch
                await self._retry("schema_registry", lambda: parts.scorer.prepare(records))
            batch = parts.scorer.decode(records)
            self._uncommitted.append(batch)
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
        """Wait until every prepared batch is committed (call under the lock); raises the
        committer's failure."""
        while self._in_flight is not None:
            task = self._in_flight
            try:
                await task
            finally:
                if self._in_flight is task:
                    self._in_flight = None

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
        if result.unexplained:
            await asyncio.to_thread(scorer.explain, result, matrix)
        for stage, seconds in result.stage_seconds.items():
            m.stage.labels(stage).observe(seconds)
        for model, seconds in scores.seconds.items():
            m.inference.labels(*model).observe(seconds)
        for model, failed in scores.errors.items():
            m.model_errors.labels(*model).inc(failed)

        started = time.perf_counter()
        acting = [(record, d, d.to_json()) for record, d in result.decisions]
        shadow = [(record, d, d.to_json()) for record, d in result.shadow]
        m.stage.labels("encode").observe(time.perf_counter() - started)

        # Saved while the next batches are scored: the committer waits for it before the
        # batch's transaction, so no offset passes unsaved work. The save may swap in what a
        # first attempt of a replayed batch decided (acting first in `records`).
        records = [(d.tx_id.encode(), payload) for _, d, payload in (*acting, *shadow)]
        saved = asyncio.create_task(self._save(acting, result.alert_countries, records))
        self._saving.add(saved)
        saved.add_done_callback(self._saving.discard)

        next_offsets: dict[tuple[str, int], int] = {}
        for record in batch.records:
            tp = (record.topic, record.partition)
            next_offsets[tp] = max(next_offsets.get(tp, 0), record.offset + 1)
        prepared = _Prepared(
            result,
            acting,
            shadow,
            records,
            [TopicPartition(topic, partition, o) for (topic, partition), o in next_offsets.items()],
            saved,
        )
        # A failed transaction surfaces here, before more work is queued behind it; and at most
        # a few batches wait (each transaction takes all of them), or the committer would fall
        # ever further behind in a drain.
        while self._in_flight is not None:
            if self._in_flight.done():
                await self._settle()
            elif len(self._to_commit) >= MAX_QUEUED_BATCHES:
                self._queue_changed.clear()
                changed = asyncio.ensure_future(self._queue_changed.wait())
                await asyncio.wait((self._in_flight, changed), return_when=FIRST_COMPLETED)
                changed.cancel()
            else:
                break
        self._to_commit.append(prepared)
        self._queue_changed.set()
        if self._in_flight is None:
            self._in_flight = asyncio.create_task(self._committer(parts.txns))

    async def _committer(self, producers: Sequence[DecisionTransactions]) -> None:
        """Commit what is prepared, in order, all of it in one transaction, until none waits:
        the loop never waits for a commit while it can score.

        Two producers take turns. Group k+1's transaction is prepared (records and offsets sent
        and acknowledged) on one while group k's commits on the other, and commits only once
        k's has; if k's fails, k+1's is aborted. The broker completes a transaction (writes its
        markers) after its commit returns, and a producer's next transaction waits for that:
        the other producer's does not. Offsets stay exact: of two committed offsets for a
        partition, the group coordinator keeps the one written last, k+1's (decision 78)."""
        committing: asyncio.Task[None] | None = None  # the previous group's commit
        try:
            while self._to_commit or committing is not None:
                if not self._to_commit:
                    assert committing is not None
                    # Nothing to prepare: wait for the commit, or for a batch meanwhile.
                    self._queue_changed.clear()
                    queued = asyncio.ensure_future(self._queue_changed.wait())
                    await asyncio.wait((committing, queued), return_when=FIRST_COMPLETED)
                    queued.cancel()
                    if committing.done():
                        task, committing = committing, None
                        await task  # raises its failure
                    continue
                group, self._to_commit = self._to_commit, []
                self._queue_changed.set()
                txns = producers[self._turn]
                self._turn = (self._turn + 1) % len(producers)
                started = time.perf_counter()
                try:
                    await self._prepare(group, txns)
                except BaseException:
                    if committing is not None:
                        task, committing = committing, None
                        await _outcome(task)  # known before anything is rewound
                    raise
                if committing is not None:
                    task, committing = committing, None
                    try:
                        await task
                    except BaseException:
                        await asyncio.to_thread(txns.abort)
                        raise
                committing = asyncio.create_task(self._finish(group, txns, started))
        finally:
            if committing is not None:
                await _outcome(committing)

    async def _save(
        self,
        acting: list[tuple[Record, DecisionRecord, bytes]],
        countries: dict[str, str],
        records: list[tuple[bytes, bytes]],
    ) -> None:
        """The batch's decision cache (Redis), then its alerts (Postgres), retried while down.

        The cache keeps each transaction's first decision: where a replayed batch decided
        otherwise (another model routed, another rule set), the first decision replaces the new
        one in `acting` and in the batch's Kafka `records`, and only then are alerts written,
        so the cache, the alerts and decisions.v1 always agree (decision 84)."""
        parts = self._parts
        assert parts is not None
        cache, alerts = parts.cache, parts.alerts
        started = time.perf_counter()
        made = [(d, p) for _, d, p in acting]
        earlier = await self._retry("redis", lambda: cache.write(made))
        if any(e is not None for e in earlier):
            first, unreadable = first_decisions(made, earlier)
            for i, (decision, payload) in enumerate(first):
                if payload is not made[i][1]:
                    acting[i] = (acting[i][0], decision, payload)
                    records[i] = (decision.tx_id.encode(), payload)
                    self.metrics.replayed_decisions.inc()
            if unreadable:
                log.warning(
                    "%d cached decisions could not be read (e.g. %s); replaced by this batch's",
                    len(unreadable),
                    made[unreadable[0]][0].tx_id,
                )
                fresh = [made[i] for i in unreadable]
                await self._retry("redis", lambda: cache.overwrite(fresh))
        await self._retry("postgres", lambda: alerts.write([d for _, d, _ in acting], countries))
        self.metrics.stage.labels("cache_and_alerts").observe(time.perf_counter() - started)

    async def _prepare(self, group: list[_Prepared], txns: DecisionTransactions) -> None:
        """Begin the transaction of the batches of `group` once they are saved: their
        decisions, DLQ records and the next offset of every partition they read."""
        try:
            for prepared in group:
                await prepared.saved
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise  # the committer itself is cancelled
            raise TransactionFailedError("a batch was dropped before it was saved") from None
        offsets: dict[tuple[str, int], int] = {}
        for prepared in group:
            for tp in prepared.offsets:
                offsets[(tp.topic, tp.partition)] = tp.offset  # later batches read further
        await asyncio.to_thread(
            txns.prepare,
            [d for prepared in group for d in prepared.decisions],
            [r for prepared in group for r in prepared.result.rejections],
            [TopicPartition(topic, partition, o) for (topic, partition), o in offsets.items()],
            self._group_metadata,
        )

    async def _finish(
        self, group: list[_Prepared], txns: DecisionTransactions, started: float
    ) -> None:
        await asyncio.to_thread(txns.finish)
        for prepared in group:
            self._committed(prepared)
        self.metrics.stage.labels("kafka_commit").observe(time.perf_counter() - started)

    def _committed(self, prepared: _Prepared) -> None:
        m = self.metrics
        if self._uncommitted:  # (a lost assignment may have dropped it meanwhile)
            self._uncommitted.popleft()
        self._kafka_failures = 0
        now = time.time()
        # Counted per label set while the decisions were built: a labelled child is looked up
        # once per batch, and each histogram takes the batch's values in one step.
        tally = prepared.result.tally
        observe_many(m.end_to_end, np.maximum(now - tally.event_seconds, 0.0))
        for verdict_labels, count in tally.verdicts.items():
            if count:
                m.decisions.labels(*verdict_labels).inc(count)
        for score_labels, values in tally.scores.items():
            observe_many(m.scores.labels(*score_labels), values)
        for _, rejection in prepared.result.rejections:
            m.dlq.labels(rejection.code).inc()

    async def _retry(
        self,
        dependency: str,
        action: Callable[[], Awaitable[T]],
        *,
        attempt_s: float | None = ATTEMPT_TIMEOUT_S,
    ) -> T:
        """`action` until it succeeds, with backoff. Each attempt is cut at `attempt_s`, or
        not at all with None: for a librdkafka call that bounds itself, since one given up on
        would run on beside the next (or beside the consumer's close) in the same handle."""
        delay = 0.1
        while True:
            # No attempt outlives the shutdown grace: one stuck on a dead connection would
            # hold the exit past it.
            limit = attempt_s
            if self._give_up_at is not None and limit is not None:
                limit = min(limit, max(self._give_up_at - time.monotonic(), 0.05))
            try:
                return await asyncio.wait_for(action(), timeout=limit)
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
    txns: tuple[DecisionTransactions, ...]
    consumer: Consumer


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
    decisions: list[tuple[bytes, bytes]]  # (key, value) for decisions.v1
    offsets: list[TopicPartition]  # the next offset of each partition in the batch
    saved: asyncio.Task[None]  # its decision cache and alerts written


def _names(partitions: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


def _process_transactional_id(group: str) -> str:
    """Unique per process, stable across a container's restarts (same pod name, same pid)."""
    return f"{group}.{socket.gethostname()}.{os.getpid()}"


async def _create_pool(url: str, scorer: Scorer) -> asyncpg.Pool:
    """Postgres may be down at start: wait for it like for any other outage."""
    return await scorer._retry(
        "postgres",
        # command_timeout: a half-open connection fails the write (and is retried) instead of
        # hanging it until TCP gives up.
        lambda: asyncpg.create_pool(
            url, min_size=1, max_size=2, timeout=5, command_timeout=5, reset=_keep_session
        ),
    )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool: the scorer keeps no session
    state (no locks, listeners, cursors or settings), and asyncpg's default reset is one more
    round trip after every batch of alerts."""


def _tune_collector() -> None:
    """Keep the cycle collector off the hot path (decision 79). What exists now (models,
    clients, modules) lives as long as the process: frozen, it is never scanned again. And a
    batch allocates tens of thousands of short-lived objects that reference counting frees:
    collecting the young generation every 20,000 net allocations instead of 700 took the
    collector from ~14 % of the scoring CPU to ~1 %, and its pauses out of the latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


async def _outcome(task: asyncio.Task[None]) -> None:
    """Wait for a commit whose failure another one's already explains; a fenced producer
    still stops the process."""
    try:
        await task
    except ProducerFencedError:
        raise
    except Exception as exc:
        log.debug("commit failed too: %s", exc)


async def _reachable(check: Callable[[], Awaitable[None]]) -> bool:
    try:
        await asyncio.wait_for(check(), timeout=1.0)
    except Exception:
        return False
    return True
