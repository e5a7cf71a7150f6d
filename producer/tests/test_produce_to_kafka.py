"""fraudpipe-produce against a real broker: keyed, valid, labelled apart, clear failures."""

from __future__ import annotations

import asyncio
import socket
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from fraudpipe_common.contracts.labels import Label
from fraudpipe_common.contracts.transactions import SCHEMA_HEADER, decode_transaction
from fraudpipe_producer.cli import main

pytestmark = pytest.mark.kafka


async def read_all(bootstrap: str, topic: str, count: int) -> list[object]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[object] = []
    try:
        async with asyncio.timeout(60):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_sends_keyed_valid_transactions_and_labels_apart(
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    topic, labels = kafka_topic(partitions=3), tmp_path / "labels.jsonl"
    exit_code = await asyncio.to_thread(
        main,
        [
            "--topic",
            topic,
            "--rps",
            "0",
            "--count",
            "3000",
            "--fraud-rate",
            "0.05",
            "--labels-to",
            str(labels),
            "--no-progress",
        ],
    )
    assert exit_code == 0
    # Labels are written as transactions are queued, before delivery: the summary says so.
    assert "3,000 labels written when queued" in capsys.readouterr().err

    records = await read_all(kafka_bootstrap, topic, 3000)
    assert len(records) == 3000
    last_ts_by_user: dict[str, float] = defaultdict(float)
    tx_ids = set()
    for record in records:
        tx = decode_transaction(record.value)  # type: ignore[attr-defined]
        assert record.key == tx.user_id.encode()  # type: ignore[attr-defined]
        assert (SCHEMA_HEADER, b"transactions.v1") in record.headers  # type: ignore[attr-defined]
        assert "is_fraud" not in tx.raw
        assert "scenario" not in tx.raw
        assert tx.ts >= last_ts_by_user[tx.user_id]  # a user's events stay in order
        last_ts_by_user[tx.user_id] = tx.ts
        tx_ids.add(tx.tx_id)
    label_lines = labels.read_bytes().splitlines()
    label_rows = [orjson.loads(line) for line in label_lines]
    assert label_lines == [Label(**row).to_json() for row in label_rows]  # the contract's bytes
    assert {row["tx_id"] for row in label_rows} == tx_ids
    frauds = [row for row in label_rows if row["is_fraud"]]
    assert 0.02 < len(frauds) / len(label_rows) < 0.10
    assert all(row["scenario"] for row in frauds)


async def test_a_user_s_partition_is_the_one_aiokafka_and_java_clients_choose(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The API publishes to the same topic with aiokafka: one user's events must share a
    # partition whichever client sent them, so both must hash keys with murmur2.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    topic = kafka_topic(partitions=6)
    argv = ["--topic", topic, "--rps", "0", "--count", "300", "--no-progress"]
    assert await asyncio.to_thread(main, argv) == 0

    records = await read_all(kafka_bootstrap, topic, 300)
    partitions = list(range(6))
    assert len(records) == 300
    assert len({record.partition for record in records}) > 1  # type: ignore[attr-defined]
    for record in records:
        expected = DefaultPartitioner()(record.key, partitions, partitions)  # type: ignore[attr-defined]
        assert record.partition == expected  # type: ignore[attr-defined]


PAYSIM_FILE = (
    "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,"
    "newbalanceDest,isFraud,isFlaggedFraud\n"
    "1,PAYMENT,9839.64,C1231006815,170136.0,160296.36,M1979787155,0.0,0.0,0,0\n"
)


@pytest.mark.parametrize(
    ("content", "csv_format", "said"),
    [
        (PAYSIM_FILE, "kaggle", "every row of {path} was rejected (1 read)"),
        (PAYSIM_FILE.splitlines(keepends=True)[0], "paysim", "{path} has no data rows"),
    ],
    ids=["wrong-format", "header-only"],
)
def test_a_replay_that_sends_nothing_fails(
    content: str,
    csv_format: str,
    said: str,
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    path = tmp_path / "paysim.csv"
    path.write_text(content)
    argv = ["--topic", kafka_topic(), "--from-csv", str(path), "--csv-format", csv_format]

    assert main([*argv, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "fraudpipe-produce: nothing was sent: " + said.format(path=path) in err


def test_an_existing_topic_with_other_partitions_is_used_with_a_warning(
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    topic = kafka_topic(partitions=2)

    assert main(["--topic", topic, "--partitions", "6", "--count", "1", "--no-progress"]) == 0
    assert (
        f"fraudpipe-produce: warning: topic {topic!r} already exists with 2 partitions, "
        "not 6; --partitions only applies when the topic is created"
    ) in capsys.readouterr().err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_broker_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", address)

    assert main(["--count", "1", "--connect-timeout", "1", "--no-progress"]) == 2
    assert f"cannot reach Kafka at {address}" in capsys.readouterr().err


def test_a_missing_topic_is_not_created_unless_asked(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)

    assert main(["--count", "1", "--topic", "no-such-topic", "--no-progress"]) == 2
    assert "topic 'no-such-topic' does not exist" in capsys.readouterr().err


def test_labels_may_not_go_to_the_scored_topic(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--topic", "transactions.v1", "--labels-to", "kafka:transactions.v1"])
    assert "labels never travel with transactions" in capsys.readouterr().err
