"""Where transactions and labels go: Kafka (librdkafka, for throughput) or a JSON-lines file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from fraudpipe_common.contracts.transactions import SCHEMA, SCHEMA_HEADER
from fraudpipe_common.kafka import KafkaSettings

Headers = list[tuple[str, str | bytes | None]]
SCHEMA_HEADERS: Headers = [(SCHEMA_HEADER, SCHEMA.encode())]
LIBRDKAFKA_LOG = logging.getLogger("fraudpipe_producer.librdkafka")


class ProducerError(RuntimeError):
    """Kafka cannot be used as configured; the message says what to check."""


def producer_config(settings: KafkaSettings) -> dict[str, Any]:
    # Large lz4 batches and a short linger: throughput without noticeable latency. Idempotence
    # keeps retries from duplicating or reordering a user's events. murmur2 is the partitioner
    # of aiokafka (the API publishes to the same topic) and the Java clients; librdkafka's
    # default (CRC32) would put a user's events in two partitions and break their order.
    return settings.librdkafka() | {
        "partitioner": "murmur2_random",
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 10,
        "batch.size": 1_000_000,
        "batch.num.messages": 20_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "message.timeout.ms": 60_000,
    }


class KafkaSink:
    def __init__(self, settings: KafkaSettings, *, connect_timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.errors = 0
        self.last_error: str | None = None
        self._unpolled = 0
        # librdkafka logs every failed connection attempt; route it through logging (quiet
        # unless asked) and report failures ourselves, once, with what to do about them.
        self._producer = Producer(producer_config(settings), logger=LIBRDKAFKA_LOG)
        self._timeout = connect_timeout_s
        self._check_reachable()

    def _check_reachable(self) -> None:
        try:
            self._producer.list_topics(timeout=self._timeout)
        except KafkaException as exc:
            raise ProducerError(
                f"cannot reach Kafka at {self.settings.bootstrap_servers} within "
                f"{self._timeout:.0f}s ({exc.args[0]}); check KAFKA_BOOTSTRAP_SERVERS "
                "and that the broker is up"
            ) from None

    def ensure_topic(self, topic: str, *, create_partitions: int | None) -> int:
        """Create the topic if it is missing and asked to; returns its partition count."""
        metadata = self._producer.list_topics(topic=topic, timeout=self._timeout)
        found = metadata.topics.get(topic)
        if found is not None and found.error is None:
            return len(found.partitions)
        if create_partitions is None:
            raise ProducerError(
                f"topic {topic!r} does not exist on {self.settings.bootstrap_servers}; create it, "
                "or pass --partitions N to create it here"
            )
        admin = AdminClient(self.settings.librdkafka())
        future = admin.create_topics([NewTopic(topic, create_partitions, 1)])[topic]
        try:
            future.result(timeout=self._timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ProducerError(f"could not create topic {topic!r}: {exc.args[0]}") from None
            return self.ensure_topic(topic, create_partitions=None)  # created meanwhile
        return create_partitions

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.errors += 1
            self.last_error = str(error)

    def send(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        *,
        headers: Headers | None = None,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value, key, headers=headers, on_delivery=self._delivered
                )
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain
        self._unpolled += 1
        if self._unpolled >= 1000:  # serve delivery callbacks in bulk, not per message
            self._producer.poll(0)
            self._unpolled = 0

    def flush(self, timeout_s: float = 60.0) -> int:
        """Wait for outstanding deliveries; returns how many are still undelivered."""
        remaining: int = self._producer.flush(timeout_s)
        return remaining


class LabelSink(Protocol):
    def write(self, tx_id: str, label: bytes) -> None: ...

    def close(self) -> None: ...


class FileLabelSink:
    """JSON lines, one label per transaction."""

    def __init__(self, path: Path) -> None:
        self._handle: BinaryIO = path.open("ab", buffering=1 << 20)

    def write(self, tx_id: str, label: bytes) -> None:
        self._handle.write(label + b"\n")

    def close(self) -> None:
        self._handle.close()


class TopicLabelSink:
    """A labels topic, keyed by tx_id; never the scored topic."""

    def __init__(self, sink: KafkaSink, topic: str) -> None:
        self._sink, self._topic = sink, topic

    def write(self, tx_id: str, label: bytes) -> None:
        self._sink.send(self._topic, tx_id.encode(), label)

    def close(self) -> None:
        pass
