"""read_consumer_lag against the real broker: the lag the autoscaler works from, and the
refusal to guess when the brokers cannot say."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from fraudpipe_operator.topics import (
    KafkaConnection,
    LagReading,
    LagUnavailable,
    read_consumer_lag,
)

pytestmark = pytest.mark.kafka


def commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


async def read(connection: KafkaConnection, group: str, topic: str) -> LagReading:
    """A broker's first group has no coordinator for a moment (the offsets topic is being
    created): the autoscaler keeps its count then; the test asks again."""
    for _ in range(20):
        try:
            return await read_consumer_lag(connection, group, topic)
        except LagUnavailable as error:
            if "Coordinator" not in str(error):
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("no group coordinator within 10 s")


async def test_lag_is_committed_offsets_against_high_watermarks(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(30):
        producer.produce(topic, value=b"x", partition=i % 3)
    assert producer.flush(30) == 0
    group = f"lag-{uuid.uuid4().hex[:8]}"
    connection = KafkaConnection(kafka_bootstrap)

    # No commit yet: the scorer would start at the earliest offset, so all of it is lag.
    reading = await read(connection, group, topic)
    assert (reading.partitions, reading.lag) == (3, 30)

    commit(kafka_bootstrap, group, topic, {0: 10, 1: 4})
    reading = await read(connection, group, topic)
    assert reading.lag == 0 + 6 + 10


async def test_an_unknown_lag_raises_instead_of_reading_zero(kafka_bootstrap: str) -> None:
    with pytest.raises(LagUnavailable, match="does not exist"):
        await read_consumer_lag(KafkaConnection(kafka_bootstrap), "g", f"absent-{uuid.uuid4()}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(LagUnavailable):
        await read_consumer_lag(KafkaConnection(closed), "g", "transactions.v1")
