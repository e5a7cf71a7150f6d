"""Where a scored batch goes: Redis decision cache, Postgres alerts, and one Kafka transaction
carrying its decisions, its DLQ records and its consumed offsets.

Redis and Postgres writes are idempotent (SET of the same value, ON CONFLICT DO NOTHING), so
they run first and may repeat after a crash; the Kafka transaction commits last and is what
moves the group's offsets. A batch whose Kafka transaction did not commit is replayed, and its
replay overwrites nothing and duplicates nothing (docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as WaitTimeoutError
from typing import Any, TypeVar, cast

import asyncpg
import orjson
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from redis.asyncio import Redis

from fraudpipe_common.contracts.decisions import Decision, DecisionRecord, Verdict
from fraudpipe_common.contracts.dlq import Rejection
from fraudpipe_common.contracts.transactions import SCHEMA_HEADER
from fraudpipe_common.kafka import KafkaSettings
from fraudpipe_scorer.scoring import Record

log = logging.getLogger(__name__)
T = TypeVar("T")


# One command for the whole batch: a pipeline of SETs costs the client several microseconds a
# command to build, the script's arguments a fraction of that. The first decision written for
# a transaction stays: a replayed batch gets back what its first attempt cached (false where
# nothing was), so its alerts and decisions.v1 repeat that decision even when the replay was
# routed to another model (decision 84).
_SET_FIRST = """
local earlier = {}
for i, key in ipairs(KEYS) do
  local old = redis.call('GET', key)
  if old then
    earlier[i] = old
  else
    redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
    earlier[i] = false
  end
end
return earlier
"""


class DecisionCache:
    """`<prefix>decision:<tx_id>` → the decision JSON, with a TTL, one round trip per batch."""

    def __init__(self, redis: Redis, prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._set_first = redis.register_script(_SET_FIRST)
        self._prefix = prefix + "decision:"
        self._ttl_s = ttl_s

    def key(self, tx_id: str) -> str:
        return self._prefix + tx_id

    async def write(self, decisions: Sequence[tuple[DecisionRecord, bytes]]) -> list[bytes | None]:
        """Cache each decision unless one is cached for its transaction already; returns,
        per decision, the one cached before (None where this one was written)."""
        if not decisions:
            return []
        keys = [self._prefix + decision.tx_id for decision, _ in decisions]
        earlier = await self._set_first(keys=keys, args=[self._ttl_s, *(p for _, p in decisions)])
        return [value or None for value in earlier]

    async def overwrite(self, decisions: Sequence[tuple[DecisionRecord, bytes]]) -> None:
        """Replace what is cached for these transactions (values no decision can be read
        from)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for decision, payload in decisions:
                pipe.set(self.key(decision.tx_id), payload, ex=self._ttl_s)
            await pipe.execute()


def first_decisions(
    decisions: Sequence[tuple[DecisionRecord, bytes]], earlier: Sequence[bytes | None]
) -> tuple[list[tuple[DecisionRecord, bytes]], list[int]]:
    """The decisions to publish: each transaction's first cached decision where it differs
    from the one just made (a replay), else the one just made. Also returns the positions
    whose cached value is not a valid decision (another version's, damaged): those keep the
    new decision, and the caller overwrites the cache with it, or every replay would stop
    on the same value until it expires."""
    first = []
    unreadable = []
    for i, ((decision, payload), cached) in enumerate(zip(decisions, earlier, strict=True)):
        if cached is None or cached == payload:
            first.append((decision, payload))
            continue
        try:
            parsed = Decision.from_json(cached)
        except ValueError:  # pydantic's ValidationError is one
            unreadable.append(i)
            first.append((decision, payload))
            continue
        record = DecisionRecord(*(getattr(parsed, f) for f in DecisionRecord._fields))
        first.append((record, cached))
    return first, unreadable


_INSERT_ALERTS = """
INSERT INTO alerts (tx_id, user_id, decision, score, model_digest, track, reasons, features,
                    event_ts, decided_ts, country, explanation)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[],
                     $7::jsonb[], $8::jsonb[], $9::timestamptz[], $10::timestamptz[],
                     $11::text[], $12::jsonb[])
ON CONFLICT (tx_id) DO NOTHING
"""


class AlertStore:
    """FLAG and BLOCK decisions as rows of `alerts`, one statement per batch."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write(
        self, decisions: Sequence[DecisionRecord], countries: Mapping[str, str]
    ) -> None:
        """`countries`: each alert's transaction country, by tx_id."""
        alerts = [d for d in decisions if d.decision is not Verdict.APPROVE]
        if not alerts:
            return
        columns: list[list[object]] = [[] for _ in range(12)]
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
                countries.get(d.tx_id),
                None if d.explanation is None else d.explanation.model_dump_json(),
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        # Bounded: batches are saved concurrently, and a dead pool must fail the attempt
        # (retried) rather than queue it forever.
        async with self._pool.acquire(timeout=5) as conn:
            await conn.execute(_INSERT_ALERTS, *columns)


_DECISION_HEADERS: list[tuple[str, str | bytes | None]] = [(SCHEMA_HEADER, b"decisions.v1")]

# Error codes of a producer whose consumer is no longer the group's member for the offsets it
# sends: a zombie's transaction, to be dropped, not retried.
_STALE_MEMBER = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
}


# A producer fenced by its own coordinator. The transactional id is this process's own
# (<group>.<host>.<pid>.<n>), so no other process took it over: the broker aborted one of its
# transactions that ran past transaction.timeout.ms while the broker could not be reached (the
# only broker killed and restarted, say) and bumped the producer's epoch, so that it can finish
# nothing more. The transaction is gone; a new producer takes the id over and goes on.
_FENCED_BY_COORDINATOR = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
}


class ProducerFencedError(RuntimeError):
    """The transactional producer hit a fatal error that a new producer cannot mend (another
    process uses the transactional id, or producers kept hanging): this process must stop and
    commit nothing more. A fence after a transaction timed out is not one (decision 92)."""


class TransactionFailedError(RuntimeError):
    """A batch's transaction did not commit (aborted, or its outcome unknown after a timeout):
    nothing of it is visible to read_committed readers and its offsets did not move."""

    def __init__(
        self, message: str, *, stale_member: bool = False, outcome_unknown: bool = False
    ) -> None:
        super().__init__(message)
        self.stale_member = stale_member
        # The transaction may have committed after all: where to resume is the group's
        # committed offsets, once the transaction is settled, not the first uncommitted batch.
        self.outcome_unknown = outcome_unknown


class ProducerStuckError(TransactionFailedError):
    """A blocking producer call outlived its own timeout by far: librdkafka can wait forever
    for a group coordinator that went away (confluentinc/librdkafka issues 5456 and 5511, seen
    here when the only broker was killed). The producer is replaced before its next use; the
    replacement's init_transactions fences it and settles its transaction."""

    def __init__(self, call: str, waited_s: float) -> None:
        super().__init__(
            f"the producer's {call} did not return within {waited_s:.0f} s", outcome_unknown=True
        )


class _CallThread:
    """One producer's blocking calls, run on a daemon thread of its own so that the caller can
    stop waiting for one that never returns (abandoned with its producer, it holds up nothing,
    not even the process's exit)."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def call(self, fn: Callable[[], Any], *, within_s: float, what: str) -> Any:
        done: Future[Any] = Future()
        self._calls.put((fn, done))
        try:
            return done.result(within_s)
        except WaitTimeoutError:
            raise ProducerStuckError(what, within_s) from None

    def then_stop(self, fn: Callable[[], Any]) -> None:
        """Run `fn` after whatever call is running (if it ever returns), then stop."""
        self._calls.put((fn, Future()))
        self._calls.put(None)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, done = item
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)


class DecisionTransactions:
    """The scorer's one transactional producer (librdkafka, KIP-447).

    Each batch is one transaction: its decisions (key tx_id), its DLQ records and its input
    offsets, sent with the consumer's group metadata. The group coordinator refuses offsets
    from a member of an older generation, so a zombie scorer (frozen while its partitions were
    given to another) cannot commit: its transaction aborts. A successor reads the committed
    offsets only once no transaction holding offsets for them is pending (read_committed
    consumers ask for stable offsets), so it starts exactly after the last committed batch.

    The transactional id names the process: a restarted container keeps it, and its
    `init_transactions` aborts what the previous run left open at once; a transaction left
    open under another id (a deleted pod) is aborted by the broker after
    `transaction.timeout.ms` (decision 67).

    A transaction is prepared (begun, records and offsets sent and acknowledged) and then
    finished (committed) or aborted, in separate calls: the service prepares one producer's
    transaction while the other producer's commits (decision 78).

    Every method blocks: the service calls them from a worker thread (librdkafka releases the
    GIL, and its own threads batch, compress and send). librdkafka's blocking calls run on a
    thread of the producer's own, and one that outlives its timeout by STUCK_GRACE_S raises
    ProducerStuckError: the producer is then replaced by a new one under the same
    transactional id (decision 85).
    """

    STUCK_GRACE_S = 5.0
    # Each abandoned producer keeps its thread, sockets and buffers for as long as its call
    # hangs: past this many, the process stops (ProducerFencedError) and is restarted whole.
    MAX_HUNG = 4
    # Fenced this many times with no commit between, even after timeouts: stop and restart.
    MAX_FENCED = 3

    def __init__(
        self,
        kafka: KafkaSettings,
        transactional_id: str,
        decisions_topic: str,
        dlq_topic: str,
        *,
        transaction_timeout_ms: int = 10_000,
        request_timeout_s: float = 10.0,
        on_retry: Callable[[], None] = lambda: None,
        on_replace: Callable[[], None] = lambda: None,
    ) -> None:
        self._on_retry = on_retry  # called (from a worker thread) before each call again
        self._on_replace = on_replace  # called when a new producer takes over the id
        self._decisions_topic = decisions_topic
        self._dlq_topic = dlq_topic
        self._timeout_s = request_timeout_s
        self._transactional_id = transactional_id
        self._config = kafka.librdkafka() | {
            "transactional.id": transactional_id,
            "transaction.timeout.ms": transaction_timeout_ms,
            # The Java client's default partitioner: decisions land where any Kafka client
            # would put their key.
            "partitioner": "murmur2_random",
            "compression.type": "lz4",
            # A transaction's records are produced in one burst: a short linger still
            # sends them as one request per partition (several cost the broker ~40 % more
            # CPU), and they travel while the offsets are sent.
            "linger.ms": 5,
            # Room for the largest message the DLQ must carry back (1 MiB value + headers).
            "message.max.bytes": 2_097_152,
            # The next transaction often starts before the broker wrote the last one's
            # markers: "concurrent transactions" is retried after this long, and not
            # exponentially longer each time (librdkafka's default grows to 1 s; at 5 ms a
            # transaction takes ~13 ms median on the local broker, at 100 ms ~110 ms).
            "retry.backoff.ms": 5,
            "retry.backoff.max.ms": 5,
        }
        self._producer = Producer(self._config)
        self._calls = _CallThread(f"txn-{transactional_id}")
        self._stuck = False  # replace the producer before its next use
        self._hung = 0  # producers abandoned in a call that never returned
        self._fenced = 0  # producers fenced by the coordinator since the last commit
        self._transaction_timeout_s = transaction_timeout_ms / 1000
        self._began = 0.0  # monotonic time the current transaction began
        self._initialised = False
        self._open = False  # a transaction begun and neither committed nor aborted

    def prepare(
        self,
        decisions: Sequence[tuple[bytes, bytes]],
        rejections: Sequence[tuple[Record, Rejection]],
        offsets: Sequence[TopicPartition],
        group_metadata: object,
    ) -> None:
        """Begin a transaction with decisions (key, value), DLQ records and the next offsets,
        all sent and acknowledged, and leave it open: `finish` commits it, `abort` drops it.
        On failure nothing stays open and TransactionFailedError (or ProducerFencedError)
        says why."""
        with self._translated():
            if not self._initialised:
                self._resumed(self.open)
            p = self._producer
            p.begin_transaction()
            self._began = time.monotonic()
            self._open = True
            try:
                topic = self._decisions_topic
                for key, payload in decisions:
                    self._produce(topic, payload, key, _DECISION_HEADERS)
                for record, rejection in rejections:
                    self._produce(
                        self._dlq_topic, record.value or b"", record.key, [*rejection.headers()]
                    )
                # The offsets go while the records travel (they leave after the linger); the
                # flush then finds them sent, and the commit, run while the next transaction
                # is prepared, has nothing left to send.
                self._resumed_bounded(
                    "send_offsets_to_transaction",
                    lambda: p.send_offsets_to_transaction(
                        list(offsets), group_metadata, self._timeout_s
                    ),
                )
                self._flushed()
            except KafkaException as exc:
                if exc.args[0].fatal():
                    raise  # fenced: the producer can do nothing more, not even abort
                self.abort()  # e.g. a topic deleted under us, a refused offset commit
                raise

    def finish(self) -> None:
        """Commit the prepared transaction. Returns only once the outcome is known: a call
        that timed out is resumed, never abandoned (a commit given up on locally may still
        complete on the broker, and the batches scored again would then be decided twice)."""
        p = self._producer
        with self._translated():
            try:
                self._resumed_bounded(
                    "commit_transaction", lambda: p.commit_transaction(self._timeout_s)
                )
                self._open = False
                self._fenced = 0
            except KafkaException as exc:
                if not exc.args[0].txn_requires_abort():
                    raise  # neither retriable nor abortable: librdkafka says treat it as fatal
                self.abort()
                raise

    def abort(self) -> None:
        """Drop the open transaction (records and offsets), if any."""
        if self._open:
            p = self._producer
            with self._translated():
                self._resumed_bounded(
                    "abort_transaction", lambda: p.abort_transaction(self._timeout_s)
                )
                self._open = False

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """librdkafka's errors as this module's: a failed transaction, or a producer that can
        go no further."""
        try:
            yield
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            # Only an open transaction at least transaction.timeout.ms old can have been
            # aborted for its age; a younger one fenced means another producer took the id.
            aged = self._open and time.monotonic() - self._began >= self._transaction_timeout_s
            timed_out = aged and error.code() in _FENCED_BY_COORDINATOR
            self._fenced += timed_out
            if timed_out and self._fenced < self.MAX_FENCED:
                self.renew()
                log.warning(
                    "kafka: producer %s fenced (%s): the broker aborted its transaction, which "
                    "outlived transaction.timeout.ms while it could not be reached; replacing it",
                    self._transactional_id,
                    error.str(),
                )
                # Said as unknown, not aborted: librdkafka also reports a commit the broker
                # completed after a local failure as fatal. The service then settles every
                # producer and resumes from the group's committed offsets, the one safe place.
                raise TransactionFailedError(
                    f"{error.name()}: {error.str()}", outcome_unknown=True
                ) from exc
            if error.fatal() or self._open:
                # Fenced by another producer, or a transaction this producer cannot end: only
                # a new process can go on (its init_transactions aborts what is left open).
                raise ProducerFencedError(error.str()) from exc
            raise TransactionFailedError(
                f"{error.name()}: {error.str()}", stale_member=error.code() in _STALE_MEMBER
            ) from exc

    def _flushed(self) -> None:
        p = self._producer
        while self._bounded("flush", lambda: p.flush(self._timeout_s)) > 0:
            self._on_retry()
            log.warning("kafka: records not delivered after %.0f s; waiting on", self._timeout_s)

    def open(self) -> None:
        """init_transactions: takes the transactional id over, aborting what a previous run
        (or an abandoned producer of this one) under it left open, so the group's offsets are
        readable at once. Raises a retriable KafkaException while the broker is unreachable:
        calling again resumes."""
        if self._stuck:
            self._replace()
        p = self._producer
        try:
            self._bounded("init_transactions", lambda: p.init_transactions(self._timeout_s))
        except KafkaException as exc:
            if exc.args[0].fatal():
                self.renew()  # this producer can do nothing more: the next call makes another
            raise
        self._initialised = True

    @property
    def longest_call_s(self) -> float:
        """How long one call may block before ProducerStuckError: callers waiting on a call
        must wait longer than this, or a second call would run beside the first."""
        return self._timeout_s + self.STUCK_GRACE_S + 1.0

    def _bounded(self, what: str, call: Callable[[], T]) -> T:
        """`call` on the producer's thread; past its timeout and the grace, the producer is
        abandoned (replaced at the next `open`) and ProducerStuckError raised."""
        try:
            return cast(
                T,
                self._calls.call(call, within_s=self._timeout_s + self.STUCK_GRACE_S, what=what),
            )
        except ProducerStuckError:
            self._abandon()
            raise

    def _resumed_bounded(self, what: str, call: Callable[[], object]) -> None:
        self._resumed(lambda: self._bounded(what, call))

    @property
    def stuck(self) -> bool:
        """A call of the current producer hung: what its transaction became is unknown until
        a replacement takes the transactional id over."""
        return self._stuck

    def _abandon(self) -> None:
        """The producer hangs in a call: nothing more is asked of it, and the transaction it
        holds is settled by its replacement's init_transactions (which bumps the epoch)."""
        self.renew()
        self._hung += 1
        log.warning("kafka: transactional producer %s hangs; replacing it", self._transactional_id)
        if self._hung > self.MAX_HUNG:
            raise ProducerFencedError(
                f"{self._hung} transactional producers hung under {self._transactional_id}; "
                "restarting the process rather than keep them all"
            )

    def renew(self) -> None:
        """Go on with a new producer under the same transactional id, from the next `open`:
        after one producer hung, the others hold the same stale view of the coordinators.
        `stuck` stays True until then, and the service reads it as "outcome unknown" even
        where another failure's known outcome was the one reported."""
        self._stuck = True
        self._open = False
        self._initialised = False

    def _replace(self) -> None:
        stuck = self._producer
        # Its call may return one day (fenced by then): only then is it torn down, on its own
        # thread.
        self._calls.then_stop(lambda: stuck.purge())
        self._producer = Producer(self._config)
        self._calls = _CallThread(f"txn-{self._transactional_id}")
        self._stuck = False
        self._on_replace()

    def _resumed(self, call: Callable[[], object]) -> None:
        """Call a blocking transactional API until it succeeds or fails for good: librdkafka
        asks for the same call again after a retriable error (a timeout most often), which
        resumes the operation still running in the background."""
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                if not exc.args[0].retriable():
                    raise
                self._on_retry()
                log.warning("kafka: %s; calling again", exc.args[0].str())
                time.sleep(0.05)

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, str | bytes | None]],
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:
                # The local queue is full: let librdkafka deliver some first.
                self._producer.poll(0.05)

    def close(self) -> None:
        """Abort a transaction left open by a failure; nothing else is ever pending."""
        if self._open:
            p = self._producer
            # (Past MAX_HUNG an abandon says "restart": the process is leaving anyway.)
            with contextlib.suppress(KafkaException, ProducerStuckError, ProducerFencedError):
                self._bounded("abort_transaction", lambda: p.abort_transaction(self._timeout_s))
            self._open = False
        self._calls.then_stop(lambda: None)
