"""Canary routing: stable buckets, exact weights, sticky users, shadow, run-time changes."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from fraudpipe_scorer.routing import Router, RoutingError, bucket

USERS = [f"user-{i:05d}" for i in range(20_000)]


def test_buckets_are_the_same_in_another_process() -> None:
    # Python's hash() of a str changes per process (PYTHONHASHSEED); the bucket must not.
    code = (
        "from fraudpipe_scorer.routing import bucket; "
        "print([bucket(f'user-{i:05d}') for i in range(50)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == str([bucket(u) for u in USERS[:50]])


@pytest.mark.parametrize("weight", [0, 5, 25, 50, 100])
def test_the_candidate_gets_about_weight_percent_of_users(weight: int) -> None:
    router = Router(has_candidate=True, weight=weight)
    share = sum(router.to_candidate(u) for u in USERS) / len(USERS)
    assert abs(share - weight / 100) < 0.015


def test_raising_the_weight_keeps_every_canary_user_on_the_canary() -> None:
    router = Router(has_candidate=True, weight=5)
    before = {u for u in USERS if router.to_candidate(u)}
    router.set(weight=25, shadow=False)
    after = {u for u in USERS if router.to_candidate(u)}
    assert before < after


def test_shadow_mode_leaves_every_decision_to_the_stable_model() -> None:
    router = Router(has_candidate=True, weight=50, shadow=True)
    assert router.shadow
    assert not any(router.to_candidate(u) for u in USERS)


def test_without_a_candidate_routing_can_only_be_off() -> None:
    router = Router(has_candidate=False)
    assert not router.to_candidate(str(uuid.uuid4()))
    with pytest.raises(RoutingError, match="CANARY_MODEL_REF"):
        router.set(weight=5, shadow=False)
    with pytest.raises(RoutingError, match="CANARY_MODEL_REF"):
        router.set(weight=0, shadow=True)


def test_weights_outside_0_to_100_are_refused() -> None:
    router = Router(has_candidate=True)
    with pytest.raises(RoutingError, match="0 to 100"):
        router.set(weight=101, shadow=False)
    assert router.state.weight == 0
