from __future__ import annotations

from fraudpipe_operator.conditions import (
    ConditionType,
    Observation,
    Reason,
    flips,
    merge,
    summarize,
)

C, R = ConditionType, Reason


def test_transition_time_changes_only_when_the_status_flips() -> None:
    first = merge([], [Observation(C.SCORER_READY, False, R.REPLICAS_NOT_READY, "0/2")], 1, "t1")
    assert first[0]["lastTransitionTime"] == "t1"
    same = merge(first, [Observation(C.SCORER_READY, False, R.REPLICAS_NOT_READY, "1/2")], 2, "t2")
    assert same[0]["lastTransitionTime"] == "t1"
    assert same[0]["message"] == "1/2"
    assert same[0]["observedGeneration"] == 2
    flipped = merge(same, [Observation(C.SCORER_READY, True, R.REPLICAS_READY, "2/2")], 2, "t3")
    assert flipped[0]["lastTransitionTime"] == "t3"
    assert [c["type"] for c in flips(same, flipped)] == ["ScorerReady"]
    assert flips(first, same) == []


def test_ready_needs_every_component_except_monitoring() -> None:
    phase, summary = summarize(
        [
            Observation(C.SCORER_READY, True, R.REPLICAS_READY, ""),
            Observation(C.MONITORING_READY, False, R.PROMETHEUS_OPERATOR_MISSING, "no CRDs"),
        ]
    )
    assert phase == "Ready"
    assert [(o.type, o.ok) for o in summary] == [
        (C.READY, True),
        (C.PROGRESSING, False),
        (C.DEGRADED, False),
    ]


def test_an_archive_behind_or_a_failed_backup_keeps_the_pipeline_ready_not_degraded() -> None:
    """They inform (condition, Event, alert): decisions flow, and Kafka keeps what the archive
    has not read yet."""
    phase, summary = summarize(
        [
            Observation(C.SCORER_READY, True, R.REPLICAS_READY, ""),
            Observation(C.ARCHIVE_READY, False, R.REPLICAS_NOT_READY, "0/1 replicas ready"),
            Observation(C.NOTIFY_READY, False, R.REPLICAS_NOT_READY, "0/1 replicas ready"),
            Observation(C.SCHEDULED_JOBS_SUCCEEDING, False, R.SCHEDULED_RUN_FAILED, "backup"),
        ]
    )
    assert phase == "Ready"
    assert [o.ok for o in summary] == [True, False, False]


def test_an_impossible_change_is_degraded_with_its_reason() -> None:
    phase, summary = summarize(
        [Observation(C.TOPICS_READY, False, R.PARTITIONS_CANNOT_SHRINK, "6 > 3")]
    )
    assert phase == "Degraded"
    degraded = next(o for o in summary if o.type is C.DEGRADED)
    assert degraded.ok
    assert degraded.reason is R.PARTITIONS_CANNOT_SHRINK
    assert "6 > 3" in degraded.message


def test_waiting_components_mean_progressing() -> None:
    phase, summary = summarize([Observation(C.API_READY, False, R.REPLICAS_NOT_READY, "0/1")])
    assert phase == "Progressing"
    assert next(o for o in summary if o.type is C.PROGRESSING).ok
