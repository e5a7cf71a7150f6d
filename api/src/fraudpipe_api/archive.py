"""`fraudpipe-api archive`: decisions.v1 (with each decision's feature snapshot) and the labels
topic, archived to S3-compatible storage as hourly-partitioned Parquet (fraudpipe_common.archive).

A worker of its own reads both topics as a read_committed consumer (its own consumer group) and
keeps one window per partition. A window is written when it holds `ARCHIVE_MAX_RECORDS` records,
when its oldest record waited `ARCHIVE_MAX_WAIT_S`, and at SIGTERM; then, and only then, its
offsets are committed.

Exactly one copy of each record, across crashes: a window becomes one object per UTC hour it
spans, named by the partition and the first and last offsets it holds. Before writing a run the
worker asks the store whether an object starting at the run's first offset exists already (a
run that crashed between upload and commit wrote it) and if so skips to that object's last
offset. Uploads are single PUTs of a finished file, so no reader ever sees half an object.
One archiver owns a partition at a time (the consumer group sees to that; a revoked partition
waits for its write in flight to finish).

S3 unreachable: the partition is paused (nothing more is buffered) and the write retried with
doubling backoff up to `ARCHIVE_RETRY_MAX_S`; nothing is committed for unwritten records.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudpipe_api.workers import committed_reader, start_when_reachable, stop_on_signals
from fraudpipe_common.archive.layout import ArchiveLocation, DatasetName, split_runs
from fraudpipe_common.archive.store import ArchiveStore, S3Settings
from fraudpipe_common.archive.tables import (
    ArchivedDecision,
    ArchivedLabel,
    decisions_table,
    labels_table,
)
from fraudpipe_common.contracts.decisions import Decision
from fraudpipe_common.contracts.labels import Label
from fraudpipe_common.kafka import KafkaSettings, TopicSettings

log = logging.getLogger("fraudpipe_api.archive")

Archived = ArchivedDecision | ArchivedLabel


class ArchiveSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARCHIVE_", extra="ignore")

    uri: str = Field(description="s3://bucket[/prefix]: where the archive lives.")
    labels: bool = Field(default=True, description="Archive the labels topic too.")
    consumer_group: str = Field(default="fraudpipe-archive", description="Kafka consumer group.")
    start_from: Literal["earliest", "latest"] = Field(
        default="earliest",
        description="Where a new consumer group starts: earliest (what the topics still hold).",
    )
    max_records: int = Field(
        default=20_000, ge=1, le=1_000_000, description="Records per partition per object."
    )
    max_wait_s: float = Field(
        default=300.0, gt=0, le=3600, description="Longest a record waits before it is written."
    )
    retry_base_s: float = Field(default=1.0, gt=0, description="First retry of a failed write.")
    retry_max_s: float = Field(default=60.0, gt=0, description="Longest wait between retries.")

    @field_validator("uri")
    @classmethod
    def _location_parses(cls, value: str) -> str:
        ArchiveLocation.parse(value)
        return value


# -- decoding (pure) ----------------------------------------------------------------------------
def decode(
    dataset: DatasetName, partition: int, offset: int, timestamp_ms: int, value: bytes | None
) -> Archived:
    """A Kafka record as an archive row; raises ValueError for a record that is not one."""
    if value is None:
        raise ValueError("empty record (a tombstone)")
    if dataset is DatasetName.DECISIONS:
        return ArchivedDecision(partition, offset, Decision.from_json(value))
    labelled = dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.UTC)
    return ArchivedLabel(partition, offset, labelled, Label.model_validate_json(value))


# -- windows and writing ------------------------------------------------------------------------
@dataclass
class Window:
    """One partition's records since its last write."""

    dataset: DatasetName
    records: list[Archived] = field(default_factory=list)
    last_seen: int | None = None  # the last offset consumed, readable or not
    opened_at: float | None = None  # clock time of the first record since the last write

    def add(self, offset: int, record: Archived | None, now: float) -> None:
        if record is not None:
            self.records.append(record)
        self.last_seen = offset
        if self.opened_at is None:
            self.opened_at = now


@dataclass
class Archiver:
    """The windows of the partitions this worker owns; `flush` blocks (S3), so the worker runs
    it in a thread."""

    store: ArchiveStore
    datasets: dict[str, DatasetName]  # topic -> dataset
    max_records: int
    max_wait_s: float
    clock: Callable[[], float] = time.monotonic
    windows: dict[TopicPartition, Window] = field(default_factory=dict)
    # Per partition, the last offset known to be in the archive: records at or below it are
    # skipped (a previous owner wrote them but could not commit).
    archived_through: dict[TopicPartition, int] = field(default_factory=dict)
    unreadable: int = 0

    def add(self, tp: TopicPartition, offset: int, timestamp_ms: int, value: bytes | None) -> None:
        dataset = self.datasets[tp.topic]
        window = self.windows.setdefault(tp, Window(dataset))
        try:
            record: Archived | None = decode(dataset, tp.partition, offset, timestamp_ms, value)
        except (ValidationError, ValueError) as exc:
            self.unreadable += 1
            log.warning("%s[%d]@%d is not a %s record, not archived: %s", tp.topic, tp.partition,
                        offset, dataset.value, exc)  # fmt: skip
            record = None
        window.add(offset, record, self.clock())

    def due(self, everything: bool = False) -> list[TopicPartition]:
        now = self.clock()
        return [
            tp
            for tp, w in self.windows.items()
            if w.last_seen is not None
            and (
                everything
                or len(w.records) >= self.max_records
                or (w.opened_at is not None and now - w.opened_at >= self.max_wait_s)
            )
        ]

    def full(self, tp: TopicPartition) -> bool:
        window = self.windows.get(tp)
        return window is not None and len(window.records) >= self.max_records

    def flush(self, tp: TopicPartition) -> int:
        """Write the partition's window, skipping what is archived already; return the offset
        to commit. A failure leaves the window as it was (what was written is found again)."""
        window = self.windows[tp]
        assert window.last_seen is not None, "flush of a window that saw nothing"
        through = self.archived_through.get(tp, -1)
        pending = [r for r in window.records if r.offset > through]
        while pending:
            run = split_runs(tp.partition, pending, lambda r: r.offset, lambda r: r.timestamp)[0]
            end = self.store.archived_through(window.dataset, run)
            if end is None:
                table = _table(window.dataset, pending[run.start : run.stop])
                key = self.store.put(window.dataset, run, table)
                log.info("archived %d %s to %s", table.num_rows, window.dataset.value, key)
                end = run.last_offset
            else:
                log.info("%s[%d]: offsets %d..%d were archived before; skipping them", tp.topic,
                         tp.partition, run.first_offset, end)  # fmt: skip
            through = self.archived_through[tp] = max(through, end)
            pending = [r for r in pending if r.offset > end]
        # Past what was consumed when a skipped object reaches further: those offsets are
        # archived, and a commit short of them would leave the next owner a window that
        # starts inside that object.
        next_offset = max(window.last_seen, self.archived_through.get(tp, -1)) + 1
        del self.windows[tp]
        return next_offset

    def forget(self, tps: Collection[TopicPartition]) -> None:
        """Partitions now owned elsewhere: their unwritten records are read again there."""
        for tp in tps:
            self.windows.pop(tp, None)
            self.archived_through.pop(tp, None)


def _table(dataset: DatasetName, records: list[Archived]) -> pa.Table:
    if dataset is DatasetName.DECISIONS:
        return decisions_table([r for r in records if isinstance(r, ArchivedDecision)])
    return labels_table([r for r in records if isinstance(r, ArchivedLabel)])


# -- the worker ---------------------------------------------------------------------------------
class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]
    """A revoked partition waits for its write in flight, then drops its window."""

    def __init__(self, archiver: Archiver, writing: asyncio.Lock) -> None:
        self.archiver, self.writing = archiver, writing

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.writing:
            self.archiver.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("archiving %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in assigned))


@dataclass
class _Retry:
    at: float
    delay: float


async def run(
    settings: ArchiveSettings, kafka: KafkaSettings, topics: TopicSettings, s3: S3Settings
) -> None:
    location = ArchiveLocation.parse(settings.uri)
    store = ArchiveStore(location, s3.filesystem())
    datasets = {topics.decisions_topic: DatasetName.DECISIONS}
    if settings.labels:
        datasets[topics.labels_topic] = DatasetName.LABELS
    archiver = Archiver(store, datasets, settings.max_records, settings.max_wait_s)
    consumer = committed_reader(kafka, settings.consumer_group, settings.start_from)
    writing = asyncio.Lock()
    consumer.subscribe(list(datasets), listener=_Handover(archiver, writing))
    stopping = stop_on_signals()
    retries: dict[TopicPartition, _Retry] = {}

    async def write(everything: bool) -> None:
        async with writing:
            for tp in archiver.due(everything):
                retry = retries.get(tp)
                if retry is not None and time.monotonic() < retry.at and not everything:
                    continue
                try:
                    next_offset = await asyncio.to_thread(archiver.flush, tp)
                except OSError as exc:
                    delay = settings.retry_base_s
                    if retry is not None:
                        delay = min(retry.delay * 2, settings.retry_max_s)
                    retries[tp] = _Retry(time.monotonic() + delay, delay)
                    consumer.pause(tp)
                    log.error("writing %s[%d] to %s failed (retry in %.0f s): %s", tp.topic,
                              tp.partition, location.uri, delay, exc)  # fmt: skip
                    continue
                retries.pop(tp, None)
                try:
                    await consumer.commit({tp: next_offset})
                except KafkaError as exc:  # the partition moved on: its next owner resumes
                    log.warning("commit of %s[%d] failed: %r", tp.topic, tp.partition, exc)
                if tp in consumer.paused():
                    consumer.resume(tp)

    if not await start_when_reachable(consumer, stopping):
        return  # stopped before Kafka answered: nothing read, nothing to write
    log.info("archiving %s to %s", ", ".join(datasets), location.uri)
    try:
        while not stopping.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=settings.max_records)
            for tp, records in batch.items():
                for record in records:
                    archiver.add(tp, record.offset, record.timestamp, record.value)
                if archiver.full(tp):
                    consumer.pause(tp)  # bounded memory: resumed once its window is written
            await write(everything=False)
        await write(everything=True)  # SIGTERM: write what is buffered, commit, leave
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
