"""Kafka topics through the admin API: created when missing, grown, never shrunk.

`plan_topics` is pure: it compares what the spec wants with what the brokers have and says
what to create, what to grow, and what cannot be done (Kafka cannot remove partitions or change
a replication factor in place). `KafkaAdmin` carries it out with aiokafka.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from fraudpipe_operator.conditions import Reason
from fraudpipe_operator.models.v1alpha1 import DlqTopic, Topic

TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class ExistingTopic:
    name: str
    partitions: int
    replication_factor: int


@dataclass(frozen=True)
class Problem:
    reason: Reason
    message: str


@dataclass
class TopicPlan:
    create: list[Topic] = field(default_factory=list)
    grow: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def noop(self) -> bool:
        return not (self.create or self.grow)


# The DLQ carries each rejected message back whole, plus its reason headers: room for the
# largest message the transactions topic accepts (the broker's default, about 1 MiB) and more.
# Were a DLQ record refused, the scorer's transaction would fail on every replay, and one
# transaction carries all of a scorer's partitions.
DLQ_MAX_MESSAGE_BYTES = 2 * 1_048_576


def topic_configs(topic: Topic) -> dict[str, str]:
    """The configs a topic is created with (an existing topic's are left as they are)."""
    configs = {"retention.ms": str(topic.retention_ms)}
    if isinstance(topic, DlqTopic):
        configs["max.message.bytes"] = str(DLQ_MAX_MESSAGE_BYTES)
    return configs


def plan_topics(desired: list[Topic], existing: dict[str, ExistingTopic]) -> TopicPlan:
    plan = TopicPlan()
    for topic in desired:
        current = existing.get(topic.name)
        if current is None:
            plan.create.append(topic)
            continue
        if topic.partitions > current.partitions:
            plan.grow[topic.name] = topic.partitions
        elif topic.partitions < current.partitions:
            plan.problems.append(
                Problem(
                    Reason.PARTITIONS_CANNOT_SHRINK,
                    f"topic {topic.name} has {current.partitions} partitions; the spec asks "
                    f"for {topic.partitions} but Kafka cannot remove partitions. Set "
                    f"partitions >= {current.partitions}.",
                )
            )
        if topic.replication_factor != current.replication_factor:
            plan.problems.append(
                Problem(
                    Reason.REPLICATION_FACTOR_IMMUTABLE,
                    f"topic {topic.name} has replication factor {current.replication_factor}; "
                    f"the spec asks for {topic.replication_factor}, which the operator does "
                    "not change in place. Restore the value or reassign partitions by hand.",
                )
            )
    return plan


@dataclass(frozen=True)
class KafkaConnection:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)  # never in a log line
    ca_pem: str | None = None

    def client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": 10_000,
        }
        if "SSL" in self.security_protocol:
            context = ssl.create_default_context()
            if self.ca_pem:
                context.load_verify_locations(cadata=self.ca_pem)
            options["ssl_context"] = context
        if self.sasl_mechanism:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        return options


@dataclass(frozen=True)
class TopicsResult:
    plan: TopicPlan
    consumer_lag: int | None


async def reconcile_topics(
    connection: KafkaConnection, desired: list[Topic], consumer_group: str, lag_topic: str
) -> TopicsResult:
    """Create and grow topics, then measure the consumer group's lag on `lag_topic`."""
    admin = AIOKafkaAdminClient(**connection.client_options())
    await admin.start()
    try:
        existing = await _describe(admin, [t.name for t in desired])
        plan = plan_topics(desired, existing)
        if plan.create:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=t.name,
                        num_partitions=t.partitions,
                        replication_factor=t.replication_factor,
                        topic_configs=topic_configs(t),
                    )
                    for t in plan.create
                ]
            )
            for error in response.topic_errors:
                topic_name, code = error[0], error[1]
                if code and code != TOPIC_ALREADY_EXISTS:
                    message = error[2] if len(error) > 2 else ""
                    plan.problems.append(
                        Problem(Reason.TOPIC_ERROR, f"creating {topic_name}: code {code} {message}")
                    )
        if plan.grow:
            await admin.create_partitions(
                {name: NewPartitions(total_count=count) for name, count in plan.grow.items()}
            )
        lag = await _measure_lag(admin, connection, consumer_group, existing.get(lag_topic))
    finally:
        await admin.close()
    return TopicsResult(plan, lag)


async def _measure_lag(
    admin: AIOKafkaAdminClient,
    connection: KafkaConnection,
    consumer_group: str,
    topic: ExistingTopic | None,
) -> int | None:
    """Lag is a nicety for `kubectl get`: when it cannot be measured (a fresh broker has no
    group coordinator yet), it is unknown rather than an error."""
    if topic is None:
        return None
    try:
        offsets = await admin.list_consumer_group_offsets(consumer_group)
        return await _lag(connection, topic.name, topic.partitions, offsets)
    except Exception as error:
        if type(error).__module__.startswith("aiokafka"):
            return None
        raise


async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, ExistingTopic]:
    found = {}
    for topic in await admin.describe_topics(names):
        if topic.get("error_code"):  # UNKNOWN_TOPIC_OR_PARTITION: not there yet
            continue
        partitions = topic["partitions"]
        replicas = len(partitions[0]["replicas"]) if partitions else 0
        found[topic["topic"]] = ExistingTopic(topic["topic"], len(partitions), replicas)
    return found


async def _lag(
    connection: KafkaConnection, topic: str, partitions: int, committed: dict[Any, Any]
) -> int:
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(**connection.client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    total = 0
    for tp in tps:
        done = committed.get(tp)
        position = done.offset if done is not None and done.offset >= 0 else 0
        total += max(0, ends[tp] - position)
    return total


@dataclass(frozen=True)
class LagReading:
    partitions: int
    lag: int


class LagUnavailable(Exception):
    """The brokers could not say what the lag is (which is not the same as no lag)."""


async def read_consumer_lag(
    connection: KafkaConnection, consumer_group: str, topic: str
) -> LagReading:
    """Total lag of `consumer_group` on `topic` (committed offsets against high watermarks) and
    the topic's partition count. Raises LagUnavailable instead of guessing."""
    admin = AIOKafkaAdminClient(**connection.client_options())
    try:
        await admin.start()
        existing = (await _describe(admin, [topic])).get(topic)
        if existing is None:
            raise LagUnavailable(f"topic {topic} does not exist")
        offsets = await admin.list_consumer_group_offsets(consumer_group)
        lag = await _lag(connection, topic, existing.partitions, offsets)
    except LagUnavailable:
        raise
    except Exception as error:
        if type(error).__module__.startswith("aiokafka") or isinstance(error, OSError):
            raise LagUnavailable(str(error) or type(error).__name__) from error
        raise
    finally:
        await admin.close()
    return LagReading(existing.partitions, lag)
