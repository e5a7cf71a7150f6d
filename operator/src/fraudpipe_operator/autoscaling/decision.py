"""What the scorer's replica count should be, given the lag: pure, so every rule is unit-tested.

desired = clamp(ceil(lag / lagPerReplica), min, min(max, partitions)). A replica beyond the
partition count would get no partition (one consumer per partition), so the cap wins over
minReplicas too. Stabilization follows the HorizontalPodAutoscaler: the scorer is scaled up to
the *lowest* recommendation of the scale-up window and down to the *highest* of the scale-down
window, so a short dip in lag never removes replicas (each removal rebalances the group).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from fraudpipe_operator.models.v1alpha1 import Autoscaling


class Why(StrEnum):
    SCALED_UP = "ScaledUp"
    SCALED_DOWN = "ScaledDown"
    STEADY = "Steady"
    SCALE_UP_STABILIZING = "ScaleUpStabilizing"
    SCALE_DOWN_STABILIZING = "ScaleDownStabilizing"
    LAG_UNKNOWN = "LagUnknown"
    SCALED_BY_KEDA = "ScaledByKeda"
    WAITING_FOR_SCORER = "WaitingForScorer"


@dataclass(frozen=True)
class Policy:
    min_replicas: int
    max_replicas: int
    lag_per_replica: int
    scale_up_window_s: float = 0.0
    scale_down_window_s: float = 300.0

    @classmethod
    def of(cls, spec: Autoscaling) -> Policy:
        return cls(
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            lag_per_replica=spec.lag_per_replica,
            scale_up_window_s=spec.scale_up.stabilization_window_seconds,
            scale_down_window_s=spec.scale_down.stabilization_window_seconds,
        )


def bounds(policy: Policy, partitions: int) -> tuple[int, int]:
    """(fewest, most) replicas: the partition count caps both."""
    upper = min(policy.max_replicas, max(partitions, 1))
    return min(policy.min_replicas, upper), upper


def recommend(lag: int, partitions: int, policy: Policy) -> int:
    lower, upper = bounds(policy, partitions)
    wanted = math.ceil(max(lag, 0) / policy.lag_per_replica)
    return max(lower, min(upper, wanted))


@dataclass(frozen=True)
class Recommendation:
    at: float
    replicas: int
    # The replica count found when there was no history (operator start), or kept while the
    # lag was unreadable: it holds scale-downs back for a whole window, as if it had been
    # recommended then; it never holds a scale-up.
    found: bool = False


@dataclass(frozen=True)
class Decision:
    replicas: int
    recommended: int | None
    why: Why
    message: str
    history: tuple[Recommendation, ...] = field(default=())

    def scales(self, current: int) -> bool:
        return self.replicas != current


def decide(
    current: int,
    lag: int | None,
    partitions: int | None,
    policy: Policy,
    history: tuple[Recommendation, ...],
    now: float,
    unknown_because: str = "",
) -> Decision:
    """The replica count for now, and the history to pass to the next call."""
    horizon = max(policy.scale_up_window_s, policy.scale_down_window_s)
    kept = tuple(r for r in history if now - r.at <= horizon)
    if lag is None or partitions is None:
        # Unknown is not zero: a broker outage must not look like an empty backlog. The count
        # kept holds scale-downs like a count found at start, so that the window after an
        # outage counts from its end.
        return Decision(
            current,
            None,
            Why.LAG_UNKNOWN,
            f"lag unreadable ({unknown_because or 'no answer from the brokers'}); "
            f"keeping {current} replicas",
            (*kept, Recommendation(now, current, found=True)),
        )
    wanted = recommend(lag, partitions, policy)
    if not history:
        # Only at the operator's start: a history that merely aged out (a window no longer
        # than the timer's interval) must not re-seed, or every round would hold the
        # scale-down again and the scorer would never shrink.
        kept = (Recommendation(now, current, found=True),)
    window = (*kept, Recommendation(now, wanted))
    up = min(r.replicas for r in window if not r.found and now - r.at <= policy.scale_up_window_s)
    down = max(
        r.replicas
        for r in window
        # The found count holds for the window after the start, not at all without a window.
        if (
            now - r.at < policy.scale_down_window_s
            if r.found
            else now - r.at <= policy.scale_down_window_s
        )
    )
    lower, upper = bounds(policy, partitions)
    if current < up:
        target = up
    elif current > down:
        target = down
    else:
        target = current
    # Bounds changed in the spec (or partitions) apply at once, as the HPA applies min and max.
    target = max(lower, min(upper, target))
    basis = f"lag {lag} at {policy.lag_per_replica} per replica, {partitions} partitions"
    if target > current:
        why, message = Why.SCALED_UP, f"{current} → {target} replicas: {basis}"
    elif target < current:
        why, message = Why.SCALED_DOWN, f"{current} → {target} replicas: {basis}"
    elif wanted > current:
        why = Why.SCALE_UP_STABILIZING
        message = (
            f"{basis} asks for {wanted}; keeping {current} until that has held for "
            f"{policy.scale_up_window_s:g}s"
        )
    elif wanted < current:
        why = Why.SCALE_DOWN_STABILIZING
        message = (
            f"{basis} asks for {wanted}; keeping {current} until that has held for "
            f"{policy.scale_down_window_s:g}s"
        )
    else:
        why, message = Why.STEADY, f"{current} replicas: {basis}"
    return Decision(target, wanted, why, message, window)
