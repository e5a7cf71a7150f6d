"""The canary rollout as a state machine over `status.canary` (docs/canary.md): pure functions
from the current state and what was observed to the next state and the Events to post.

    (spec names a candidate) -> Validating -> Invalid            (artifact refused: no traffic)
                                Validating -> Validating     (registry unreachable: again later)
                                          -> Loading -> Shadow -> Progressing (step 1..n)
                                                                  -> Promoted
                                          any of Loading/Shadow/Progressing -> Failed
    (candidate changed) -> Validating again
    (candidate removed) -> Aborting -> no rollout, once every pod holding it is at weight 0
    (stable model changed) -> Loading again (the candidate stays validated)

Each analysed phase has a window: the shadow phase `shadowSeconds`, each step
`intervalSeconds`. A passed check moves on and opens a new window; a failed one counts towards
`failureThreshold` and opens a new window; an inconclusive one (too few samples) keeps the
window open for one more length and pauses the rollout where it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fraudpipe_operator.canary.analysis import Result, Verdict, describe
from fraudpipe_operator.models.v1alpha1 import (
    Canary,
    CanaryAnalysisStatus,
    CanaryStatus,
    FraudPipelineStatus,
    ModelSpec,
    PromotedModel,
)

# The phases in which the rollout is still going (removing or changing the candidate then
# interrupts it), and those in which the scorers hold the candidate in memory.
ACTIVE = frozenset({"Validating", "Loading", "Shadow", "Progressing"})
ANALYSED = frozenset({"Shadow", "Progressing"})
# A registry that could not be asked is asked again after this long.
VALIDATION_RETRY_S = 10.0


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Step:
    status: CanaryStatus | None
    events: list[Event] = field(default_factory=list)
    promoted: PromotedModel | None = None


def digest_of(ref: str) -> str:
    return ref.rpartition("@")[2]


def stable_ref(model: ModelSpec, promoted: PromotedModel | None) -> str:
    """The model the scorers hold as stable: the last promoted candidate, for as long as
    spec.model.ref still names the model it replaced; spec.model.ref otherwise."""
    if promoted is not None and promoted.replaces == model.ref:
        return promoted.ref
    return model.ref


def promotion_ended(model: ModelSpec, promoted: PromotedModel | None) -> bool:
    """spec.model.ref names another model than the one the promotion replaced: the promotion
    is over for good, and status.promoted goes, or a spec.model.ref set back to that model
    later would bring the promoted candidate back instead of it."""
    return promoted is not None and promoted.replaces != model.ref


def deployment_models(model: ModelSpec, status: FraudPipelineStatus) -> tuple[str, str | None]:
    """(stable ref, candidate ref or None) the scorer Deployment loads. A candidate is loaded
    only once validated, for the rollout of the candidate the spec names now, and stays loaded
    (idle at weight 0) after it failed, so that a rollback restarts no pod."""
    canary = status.canary
    candidate = None
    if (
        model.canary is not None
        and canary is not None
        and canary.ref == model.canary.ref
        and (
            canary.phase in ACTIVE - {"Validating"}
            or (canary.phase == "Failed" and canary.loaded_at > 0)
        )
    ):
        candidate = canary.ref
    return stable_ref(model, status.promoted), candidate


def routing(status: CanaryStatus | None) -> tuple[int, bool]:
    """(weight, shadow) every scorer holding the candidate must have."""
    if status is None:
        return 0, False
    if status.phase == "Shadow":
        return 0, True
    if status.phase in ("Progressing", "Promoted"):
        return status.weight, False
    return 0, False


def follow_spec(model: ModelSpec, status: FraudPipelineStatus, now: float) -> Step:
    """A new rollout when the spec names another candidate; none when it names none."""
    current, canary = status.canary, model.canary
    if canary is None:
        if current is None or current.phase == "Promoted":
            # A promoted candidate is the stable model now: nothing to wind down.
            return Step(None)
        if current.phase == "Aborting":
            return Step(current)
        events = []
        if current.phase in ACTIVE:
            events.append(
                Event(
                    "Normal",
                    "CanaryAborted",
                    f"candidate {current.ref} removed from the spec in phase {current.phase} "
                    f"at weight {current.weight}%: the stable model decides for everyone",
                )
            )
        aborting = current.model_copy(
            update={
                "phase": "Aborting",
                "weight": 0,
                "paused": False,
                "phase_started_at": now,
                "message": f"candidate {current.ref} removed from the spec: weight 0, waiting "
                "for every scorer pod holding it to report weight 0 and shadow off",
            }
        )
        return Step(aborting, events)
    stable_digest = digest_of(stable_ref(model, status.promoted))
    if current is not None and current.ref == canary.ref and current.phase != "Aborting":
        if current.phase in ACTIVE and current.stable_digest != stable_digest:
            return _stable_changed(current, stable_digest, now)
        return Step(current)
    events = []
    if current is not None and current.phase in ACTIVE:
        events.append(
            Event(
                "Normal",
                "CanaryRestarted",
                f"candidate changed from {current.ref} to {canary.ref} in phase "
                f"{current.phase}: analysis starts again",
            )
        )
    started = CanaryStatus(
        phase="Validating",
        ref=canary.ref,
        candidate_digest=digest_of(canary.ref),
        stable_digest=stable_digest,
        phase_started_at=now,
        message="checking the candidate artifact: pullable, digest, inputs",
    )
    return Step(started, events)


def _stable_changed(current: CanaryStatus, stable_digest: str, now: float) -> Step:
    """spec.model.ref changed mid-rollout: the stable series of the analysis would be the old
    model's, which no pod runs any more. The candidate stays validated and loaded (no extra
    roll of the pods), but the rollout goes back to Loading, weight 0 and no check counted,
    until every scorer pod holds both models again."""
    if current.phase == "Validating":
        return Step(current.model_copy(update={"stable_digest": stable_digest}))
    message = (
        f"stable model changed from {current.stable_digest} to {stable_digest} in phase "
        f"{current.phase}: the rollout starts again once every scorer pod holds both models"
    )
    restarted = CanaryStatus(
        phase="Loading",
        ref=current.ref,
        candidate_digest=current.candidate_digest,
        stable_digest=stable_digest,
        phase_started_at=now,
        message=message,
    )
    return Step(restarted, [Event("Normal", "CanaryRestarted", f"{current.ref}: {message}")])


def validated(status: CanaryStatus, problem: str | None, now: float) -> Step:
    """Validating -> Loading, or Invalid (no traffic ever) with the reason."""
    status = status.model_copy(update={"next_check_at": 0.0})
    if problem is not None:
        message = f"candidate {status.ref} refused, it gets no traffic: {problem}"
        invalid = status.model_copy(update={"phase": "Invalid", "message": message})
        return Step(invalid, [Event("Warning", "CandidateInvalid", message)])
    loading = status.model_copy(
        update={
            "phase": "Loading",
            "phase_started_at": now,
            "message": "candidate valid; waiting for every scorer pod to load it",
        }
    )
    return Step(loading, [Event("Normal", "CandidateValid", f"candidate {status.ref} is valid")])


def validation_deferred(status: CanaryStatus, why: str, now: float) -> Step:
    """Validating, still: the registry could not be asked (unreachable, 5xx, timeout), which
    says nothing about the candidate. Tried again in VALIDATION_RETRY_S; a Warning once."""
    message = (
        f"cannot check the candidate yet, trying again in {VALIDATION_RETRY_S:g} s "
        f"(no traffic until it is checked): {why}"
    )
    waiting = status.model_copy(
        update={"next_check_at": now + VALIDATION_RETRY_S, "message": message}
    )
    first = status.next_check_at == 0
    events = [Event("Warning", "CandidateUnchecked", f"{status.ref}: {message}")] if first else []
    return Step(waiting, events)


def validation_due(status: CanaryStatus, now: float) -> bool:
    return status.phase == "Validating" and now >= status.next_check_at


def loaded(status: CanaryStatus, canary: Canary, now: float) -> Step:
    """Loading -> Shadow (or straight to the first step without a shadow phase)."""
    base = status.model_copy(update={"loaded_at": now})
    if canary.shadow_seconds > 0:
        shadow = base.model_copy(
            update={
                "phase": "Shadow",
                "phase_started_at": now,
                "window_started_at": now,
                "next_check_at": now + canary.shadow_seconds,
                "message": f"shadow: the candidate scores every transaction for "
                f"{canary.shadow_seconds} s, not acted on",
            }
        )
        return Step(shadow, [Event("Normal", "CanaryShadow", f"{shadow.ref}: {shadow.message}")])
    return _enter_step(base, canary, 1, now, "loaded on every scorer")


def timed_out(status: CanaryStatus, waited_s: float) -> Step:
    """Loading for too long: the scorers cannot load the candidate (see their logs)."""
    message = (
        f"candidate {status.ref} not loaded by every scorer pod within {int(waited_s)} s "
        "(see the scorer pods' logs); rolled back to weight 0"
    )
    failed = status.model_copy(update={"phase": "Failed", "weight": 0, "message": message})
    return Step(failed, [Event("Warning", "CanaryFailed", message)])


def due(status: CanaryStatus | None, now: float) -> bool:
    return status is not None and status.phase in ANALYSED and now >= status.next_check_at


def window_seconds(status: CanaryStatus, canary: Canary) -> int:
    return canary.shadow_seconds if status.phase == "Shadow" else canary.interval_seconds


def analysed(
    status: CanaryStatus, canary: Canary, model: ModelSpec, verdict: Verdict, now: float, at: str
) -> Step:
    """The next state after one check of the current window."""
    record = CanaryAnalysisStatus(
        result=verdict.result.value,
        at=at,
        samples=verdict.samples,
        stable_samples=verdict.stable_samples,
        error_rate=_rounded(verdict.error_rate),
        p99_latency_ms=_rounded(verdict.p99_latency_ms),
        alert_rate_ratio=_rounded(verdict.alert_rate_ratio),
        psi=_rounded(verdict.psi),
        failed=verdict.failed,
    )
    summary = describe(verdict)
    length = window_seconds(status, canary)
    where = "shadow" if status.phase == "Shadow" else f"step {status.step} ({status.weight}%)"
    if verdict.result is Result.INCONCLUSIVE and verdict.stable_short and status.weight >= 100:
        # The stable model decides for nobody at 100 %: no later window can bring its figures.
        message = (
            f"{status.ref} rolled back at {where}: the stable model decides nothing at 100 % "
            f"and decided only {verdict.stable_samples} of the {canary.analysis.min_sample_size} "
            "transactions needed to compare with since the candidate was loaded, so the "
            "candidate cannot be judged; give the rollout a shadow phase (shadowSeconds) or a "
            "step below 100"
        )
        failed = status.model_copy(
            update={
                "phase": "Failed",
                "weight": 0,
                "paused": False,
                "last_analysis": record,
                "message": message,
            }
        )
        return Step(failed, [Event("Warning", "CanaryFailed", message)])
    if verdict.result is Result.INCONCLUSIVE:
        paused = status.model_copy(
            update={
                "paused": True,
                "next_check_at": now + length,
                "last_analysis": record,
                "message": f"paused at {where}, window extended by {length} s: {summary}",
            }
        )
        note = f"{paused.ref}: {paused.message}"
        events = [] if status.paused else [Event("Normal", "CanaryPaused", note)]
        return Step(paused, events)
    if verdict.result is Result.FAILED:
        failures = status.checks_failed + 1
        if failures >= canary.failure_threshold:
            message = (
                f"{status.ref} rolled back at {where} after {failures} failed check(s), "
                f"weight 0: {summary}"
            )
            failed = status.model_copy(
                update={
                    "phase": "Failed",
                    "weight": 0,
                    "paused": False,
                    "checks_failed": failures,
                    "last_analysis": record,
                    "message": message,
                }
            )
            return Step(failed, [Event("Warning", "CanaryFailed", message)])
        retry = status.model_copy(
            update={
                "paused": False,
                "checks_failed": failures,
                "window_started_at": now,
                "next_check_at": now + length,
                "last_analysis": record,
                "message": f"check {failures} of {canary.failure_threshold} allowed failed at "
                f"{where}, {where} again: {summary}",
            }
        )
        note = f"{retry.ref}: {retry.message}"
        return Step(retry, [Event("Warning", "CanaryCheckFailed", note)])
    passed = status.model_copy(
        update={"paused": False, "checks_passed": status.checks_passed + 1, "last_analysis": record}
    )
    next_step = 1 if status.phase == "Shadow" else status.step + 1
    if next_step <= len(canary.steps):
        return _enter_step(passed, canary, next_step, now, f"{where} passed: {summary}")
    message = f"promoted after {where} passed: {summary}; {status.ref} is now the stable model"
    promoted = passed.model_copy(
        update={"phase": "Promoted", "weight": 100, "phase_started_at": now, "message": message}
    )
    return Step(
        promoted,
        [Event("Normal", "CanaryPromoted", message)],
        PromotedModel(ref=status.ref, replaces=model.ref),
    )


def _enter_step(status: CanaryStatus, canary: Canary, step: int, now: float, why: str) -> Step:
    weight = canary.steps[step - 1]
    entered = status.model_copy(
        update={
            "phase": "Progressing",
            "step": step,
            "weight": weight,
            "phase_started_at": now,
            "window_started_at": now,
            "next_check_at": now + canary.interval_seconds,
            "message": f"step {step} of {len(canary.steps)}: weight {weight}% ({why})",
        }
    )
    return Step(entered, [Event("Normal", "CanaryStep", f"{entered.ref}: {entered.message}")])


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
