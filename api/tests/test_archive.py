"""`fraudpipe-api archive`: decisions and labels from Kafka to hourly Parquet objects on a real
S3-compatible server (versitygw), exactly once across crashes."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from fraudpipe_api.archive import Archiver
from fraudpipe_common.archive.layout import ArchiveLocation, DatasetName, Run
from fraudpipe_common.archive.store import ArchiveStore
from fraudpipe_common.archive.tables import ArchivedDecision, decisions_table, feature_column
from fraudpipe_common.contracts.decisions import Decision, Reason, Track, Verdict
from fraudpipe_common.contracts.labels import Label
from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_testing.proxy import CuttableProxy
from fraudpipe_testing.stack.services.s3 import s3_settings

from .harness import API, DIGEST

H10 = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)


def decision(i: int, decided: dt.datetime) -> Decision:
    return Decision(
        tx_id=f"tx-{i:05d}",
        user_id=f"user-{i % 7}",
        decision=Verdict.FLAG if i % 10 == 0 else Verdict.APPROVE,
        score=(i % 100) / 100,
        model_digest=DIGEST,
        track=Track.STABLE,
        reasons=[Reason(code="model_score", detail=f"score {(i % 100) / 100}")] if i % 10 else [],
        features={name: float(i + k) for k, name in enumerate(FEATURE_NAMES)},
        event_ts=decided - dt.timedelta(milliseconds=40),
        decided_ts=decided,
    )


def store_of(uri: str, s3_env: dict[str, str]) -> ArchiveStore:
    return ArchiveStore(ArchiveLocation.parse(uri), s3_settings(s3_env).filesystem())


def object_names(store: ArchiveStore, dataset: DatasetName) -> list[str]:
    root = store.location.dataset_path(dataset)
    listing = store.fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(
        info.path.removeprefix(root + "/") for info in listing if info.type == pafs.FileType.File
    )


@pytest.mark.s3
def test_a_record_two_owners_both_archived_is_read_once(
    s3_archive_uri: str, s3_env: dict[str, str]
) -> None:
    """Two archivers owning partition 0 at once (one cut off from its group, not knowing it
    yet) each wrote a window before either could commit: offsets 0-9 and 5-14. Readers see
    each record once, in the order stored; the raw rows show what was written."""
    store = store_of(s3_archive_uri, s3_env)
    made = [ArchivedDecision(0, i, decision(i, H10 + dt.timedelta(seconds=i))) for i in range(15)]
    for first, last in ((0, 9), (5, 14)):
        run = Run(0, H10, first, last, first, last + 1)
        store.put(DatasetName.DECISIONS, run, decisions_table(made[first : last + 1]))

    raw = store.read(DatasetName.DECISIONS, ["tx_id"], once_per_record=False)
    assert raw.num_rows == 20
    once = store.read(DatasetName.DECISIONS, ["tx_id", "score"])
    assert once.column_names == ["tx_id", "score"]
    assert once["tx_id"].to_pylist() == [d.decision.tx_id for d in made]


# -- a crash between the upload and the commit, step by step --------------------------------
@pytest.mark.s3
def test_a_run_repeated_after_a_crash_skips_what_was_written_and_repeats_no_row(
    s3_env: dict[str, str], s3_archive_uri: str
) -> None:
    store = store_of(s3_archive_uri, s3_env)
    tp = TopicPartition("decisions.v1", 0)
    # 30 decisions: offsets 0..19 decided in hour 10, 20..29 in hour 11.
    records = [
        (i, decision(i, H10 + dt.timedelta(minutes=30 + i if i < 20 else 60 + i)))
        for i in range(30)
    ]

    def archiver() -> Archiver:
        return Archiver(store, {"decisions.v1": DatasetName.DECISIONS}, 1000, 60.0)

    first = archiver()
    for offset, d in records[:15]:
        first.add(tp, offset, 0, d.to_json())
    assert first.flush(tp) == 15
    # ... and it dies before committing 15: the next owner reads from offset 0 again, this
    # time with a window of a different size.
    second = archiver()
    for offset, d in records:
        second.add(tp, offset, 0, d.to_json())
    assert second.flush(tp) == 30

    assert object_names(store, DatasetName.DECISIONS) == [
        "dt=2025-03-01/hour=10/p0-00000000000000000000-00000000000000000014.parquet",
        "dt=2025-03-01/hour=10/p0-00000000000000000015-00000000000000000019.parquet",
        "dt=2025-03-01/hour=11/p0-00000000000000000020-00000000000000000029.parquet",
    ]
    table = store.read(DatasetName.DECISIONS, once_per_record=False).sort_by("kafka_offset")
    assert table["kafka_offset"].to_pylist() == list(range(30))
    assert table["tx_id"].to_pylist() == [d.tx_id for _, d in records]
    row = table.slice(21, 1).to_pylist()[0]
    original = records[21][1]
    assert (row["dt"], row["hour"]) == ("2025-03-01", 11)
    assert row["decided_ts"] == original.decided_ts
    assert row["reasons"] == [{"code": "model_score", "detail": "score 0.21"}]
    assert [row[feature_column(n)] for n in FEATURE_NAMES] == [
        original.features[n] for n in FEATURE_NAMES
    ]


@pytest.mark.s3
def test_an_owner_that_read_less_than_an_archived_object_commits_past_it(
    s3_env: dict[str, str], s3_archive_uri: str
) -> None:
    """A wrote 0..49 and died before committing; B read only 0..19 (stopped early), skipped
    them as archived and must commit 50, not 20: C, starting at 20, would otherwise archive
    20..59 again beside A's object."""
    store = store_of(s3_archive_uri, s3_env)
    tp = TopicPartition("decisions.v1", 0)
    records = [(i, decision(i, H10 + dt.timedelta(seconds=i))) for i in range(60)]

    def archiver() -> Archiver:
        return Archiver(store, {"decisions.v1": DatasetName.DECISIONS}, 1000, 60.0)

    a = archiver()
    for offset, d in records[:50]:
        a.add(tp, offset, 0, d.to_json())
    assert a.flush(tp) == 50  # ... and A dies before committing it
    b = archiver()
    for offset, d in records[:20]:
        b.add(tp, offset, 0, d.to_json())
    assert b.flush(tp) == 50
    # Even had B committed 20 (an older worker's commit), C finds the object holding 20.
    c = archiver()
    for offset, d in records[20:]:
        c.add(tp, offset, 0, d.to_json())
    assert c.flush(tp) == 60
    table = store.read(DatasetName.DECISIONS, once_per_record=False)
    assert sorted(table["kafka_offset"].to_pylist()) == list(range(60))


@pytest.mark.s3
def test_an_unreadable_record_is_skipped_and_its_offset_committed(
    s3_env: dict[str, str], s3_archive_uri: str
) -> None:
    store = store_of(s3_archive_uri, s3_env)
    tp = TopicPartition("labels", 1)
    archiver = Archiver(store, {"labels": DatasetName.LABELS}, 1000, 60.0)
    stamp = int(H10.timestamp() * 1000)
    archiver.add(tp, 5, stamp, Label(tx_id="tx-1", is_fraud=True, scenario="ato").to_json())
    archiver.add(tp, 6, stamp, b"{not json")
    assert archiver.flush(tp) == 7
    assert archiver.unreadable == 1
    assert object_names(store, DatasetName.LABELS) == [
        "dt=2025-03-01/hour=10/p1-00000000000000000005-00000000000000000005.parquet"
    ]
    (label,) = store.read(DatasetName.LABELS, once_per_record=False).to_pylist()
    assert (label["tx_id"], label["is_fraud"], label["scenario"]) == ("tx-1", True, "ato")
    assert label["labelled_ts"] == H10


# -- the worker on Kafka, killed half-way -------------------------------------------------------
async def produce(bootstrap: str, topic: str, items: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in items:
            await producer.send(topic, value, key=key.encode())
        await producer.flush()
    finally:
        await producer.stop()


def tail(log: Path) -> str:
    return log.read_text()[-3000:]


def worker_env(bootstrap: str, decisions_topic: str, s3_env: dict[str, str], uri: str,
               **extra: str) -> dict[str, str]:  # fmt: skip
    """`fraudpipe-api archive`'s environment: this broker, topic and store, windows of 1 s."""
    return {
        **os.environ,
        **s3_env,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DECISIONS_TOPIC": decisions_topic,
        "ARCHIVE_URI": uri,
        "ARCHIVE_CONSUMER_GROUP": f"archive-{decisions_topic}",
        "ARCHIVE_MAX_WAIT_S": "1",
        **extra,
    }


async def start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            API, "archive", env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def wait_for_rows(store: ArchiveStore, dataset: DatasetName, rows: int, worker: object,
                        log: Path, within_s: float = 120) -> None:  # fmt: skip
    deadline = time.monotonic() + within_s
    while True:
        try:
            found = store.read(dataset, ["tx_id"], once_per_record=False).num_rows
        except FileNotFoundError:
            found = 0
        if found >= rows:
            return
        assert getattr(worker, "returncode", None) is None, tail(log)
        assert time.monotonic() < deadline, (found, tail(log))
        await asyncio.sleep(0.5)


@pytest.mark.kafka
@pytest.mark.s3
async def test_the_worker_archives_two_hours_of_two_partitions_exactly_once_across_a_kill(
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    s3_env: dict[str, str],
    s3_archive_uri: str,
    tmp_path: Path,
) -> None:
    decisions_topic = kafka_topic(partitions=2, prefix="decisions")
    labels_topic = kafka_topic(partitions=2, prefix="labels")
    made = [decision(i, H10 + dt.timedelta(minutes=50) + dt.timedelta(seconds=12 * i))
            for i in range(200)]  # fmt: skip  # hour 10 up to i = 49, hour 11 after
    labels = [Label(tx_id=d.tx_id, is_fraud=i % 10 == 0) for i, d in enumerate(made)]
    env = worker_env(kafka_bootstrap, decisions_topic, s3_env, s3_archive_uri,
                     LABELS_TOPIC=labels_topic, ARCHIVE_MAX_RECORDS="20")  # fmt: skip
    store = store_of(s3_archive_uri, s3_env)
    log = tmp_path / "archive.log"
    await produce(kafka_bootstrap, decisions_topic, [(d.tx_id, d.to_json()) for d in made[:120]])
    worker = await start_worker(env, log)
    try:
        await wait_for_rows(store, DatasetName.DECISIONS, 40, worker, log)
        worker.kill()  # no chance to commit what it wrote last
        await worker.wait()
        await produce(kafka_bootstrap, decisions_topic,
                      [(d.tx_id, d.to_json()) for d in made[120:]])  # fmt: skip
        await produce(kafka_bootstrap, labels_topic, [(lb.tx_id, lb.to_json()) for lb in labels])
        worker = await start_worker(env, log)
        await wait_for_rows(store, DatasetName.DECISIONS, len(made), worker, log)
        await wait_for_rows(store, DatasetName.LABELS, len(labels), worker, log)
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
            await asyncio.wait_for(worker.wait(), timeout=30)
    assert worker.returncode == 0, tail(log)

    archived = store.read(DatasetName.DECISIONS, once_per_record=False)
    assert sorted(archived["tx_id"].to_pylist()) == [d.tx_id for d in made]  # once each
    assert sorted(store.read(DatasetName.LABELS, once_per_record=False)["tx_id"].to_pylist()) == [
        lb.tx_id for lb in labels
    ]
    names = object_names(store, DatasetName.DECISIONS)
    assert {n.split("/")[1] for n in names} == {"hour=10", "hour=11"}
    assert {n.split("/")[2].split("-")[0] for n in names} == {"p0", "p1"}
    for name in names:  # each object holds exactly the offsets and the hour its name says
        rows = store.read_object(f"{store.location.dataset_path(DatasetName.DECISIONS)}/{name}")
        partition, first, last = name.split("/")[2].removesuffix(".parquet").split("-")
        offsets = rows["kafka_offset"].to_pylist()
        assert (min(offsets), max(offsets)) == (int(first), int(last)), name
        assert set(rows["kafka_partition"].to_pylist()) == {int(partition[1:])}
        hours = {ts.hour for ts in rows["decided_ts"].to_pylist()}
        assert hours == {int(name.split("/")[1].removeprefix("hour="))}, name


@pytest.mark.kafka
@pytest.mark.s3
async def test_the_worker_waits_for_a_broker_it_cannot_reach_yet_then_archives(
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    s3_env: dict[str, str],
    s3_archive_uri: str,
    tmp_path: Path,
) -> None:
    """A new pod's first second, when the broker's name may not resolve yet: the worker keeps
    trying (it used to exit, and wait out a crash-loop back-off), then archives."""
    decisions_topic = kafka_topic(partitions=1, prefix="decisions")
    made = [decision(i, H10 + dt.timedelta(seconds=i)) for i in range(30)]
    await produce(kafka_bootstrap, decisions_topic, [(d.tx_id, d.to_json()) for d in made])
    host, _, port = kafka_bootstrap.rpartition(":")
    proxy = CuttableProxy(host, int(port))
    await proxy.start()
    proxy.cut()  # every connection refused, as with no broker there yet
    env = worker_env(f"127.0.0.1:{proxy.port}", decisions_topic, s3_env, s3_archive_uri,
                     ARCHIVE_LABELS="false")  # fmt: skip
    log = tmp_path / "archive.log"
    worker = await start_worker(env, log)
    try:
        await asyncio.sleep(4)
        assert worker.returncode is None, tail(log)  # still there, trying again
        assert "kafka unreachable" in log.read_text(), tail(log)
        proxy.restore()
        store = store_of(s3_archive_uri, s3_env)
        await wait_for_rows(store, DatasetName.DECISIONS, len(made), worker, log, within_s=60)
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
            await asyncio.wait_for(worker.wait(), timeout=30)
        await proxy.stop()
    assert worker.returncode == 0, tail(log)
