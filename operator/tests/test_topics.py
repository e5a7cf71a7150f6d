from __future__ import annotations

from fraudpipe_operator.conditions import Reason
from fraudpipe_operator.models.v1alpha1 import DecisionsTopic, DlqTopic, Topic
from fraudpipe_operator.topics import (
    DLQ_MAX_MESSAGE_BYTES,
    ExistingTopic,
    KafkaConnection,
    plan_topics,
    topic_configs,
)


def test_missing_topics_are_created_and_smaller_ones_grown() -> None:
    plan = plan_topics(
        [Topic(name="a", partitions=3), Topic(name="b", partitions=12)],
        {"b": ExistingTopic("b", 6, 1)},
    )
    assert [t.name for t in plan.create] == ["a"]
    assert plan.grow == {"b": 12}
    assert plan.problems == []


def test_topics_are_never_shrunk_and_the_reason_says_why() -> None:
    plan = plan_topics([Topic(name="a", partitions=3)], {"a": ExistingTopic("a", 6, 1)})
    assert plan.noop
    (problem,) = plan.problems
    assert problem.reason is Reason.PARTITIONS_CANNOT_SHRINK
    assert "partitions >= 6" in problem.message


def test_replication_factor_changes_are_refused() -> None:
    plan = plan_topics(
        [Topic(name="a", partitions=6, replication_factor=3)], {"a": ExistingTopic("a", 6, 1)}
    )
    assert [p.reason for p in plan.problems] == [Reason.REPLICATION_FACTOR_IMMUTABLE]


def test_matching_topics_need_nothing() -> None:
    plan = plan_topics([Topic(name="a", partitions=6)], {"a": ExistingTopic("a", 6, 1)})
    assert plan.noop
    assert plan.problems == []


def test_the_dlq_is_created_with_room_for_a_whole_rejected_message() -> None:
    dlq = DlqTopic(retention_ms=1000)
    assert topic_configs(dlq) == {
        "retention.ms": "1000",
        "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES),
    }
    assert DLQ_MAX_MESSAGE_BYTES > 1_048_588 + 64 * 1024  # the broker default + headers
    assert topic_configs(DecisionsTopic()) == {"retention.ms": "604800000"}


def test_a_kafka_connection_never_shows_its_password() -> None:
    connection = KafkaConnection("b:9092", "SASL_SSL", "SCRAM-SHA-512", "u", "s3cret-pw")
    assert "s3cret-pw" not in repr(connection)
    assert connection.sasl_password == "s3cret-pw"
