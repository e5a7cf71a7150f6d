"""The canary state machine, pure: every transition, which models the scorer Deployment
loads in each phase, and the routing each phase asks of the scorers (docs/canary.md)."""

from __future__ import annotations

from typing import Any

from fraudpipe_operator import builders
from fraudpipe_operator.builders.apps import build_scorer_deployment, build_scorer_networkpolicy
from fraudpipe_operator.builders.common import OperatorPods
from fraudpipe_operator.canary import machine
from fraudpipe_operator.canary.analysis import Result, Verdict
from fraudpipe_operator.models import FraudPipeline
from fraudpipe_operator.models.v1alpha1 import (
    Canary,
    CanaryStatus,
    FraudPipelineStatus,
    ModelSpec,
    PromotedModel,
)

STABLE = "registry.example.com/models/gbt@sha256:" + "a" * 64
CANDIDATE = "registry.example.com/models/gbt@sha256:" + "b" * 64
OTHER = "registry.example.com/models/gbt@sha256:" + "c" * 64
CANARY = Canary(ref=CANDIDATE, shadow_seconds=60, steps=[10, 50], interval_seconds=30)
MODEL = ModelSpec(ref=STABLE, canary=CANARY)
PASSED = Verdict(Result.PASSED, 500, 2000, 0.0, 3.0, 1.1, 0.02)
FAILED = Verdict(Result.FAILED, 500, 2000, 0.0, 3.0, 9.5, 0.02, ["alertRateRatio=9.50 > 2.0"])
INCONCLUSIVE = Verdict(Result.INCONCLUSIVE, 20, 2000, reason="the candidate has 20 of 200")


def status(canary: CanaryStatus | None = None, **extra: Any) -> FraudPipelineStatus:
    return FraudPipelineStatus(canary=canary, **extra)


def started(now: float = 1000.0) -> CanaryStatus:
    step = machine.follow_spec(MODEL, status(), now)
    assert step.status is not None
    return step.status


def in_shadow(now: float = 1000.0) -> CanaryStatus:
    loading = machine.validated(started(now), None, now).status
    assert loading is not None
    shadow = machine.loaded(loading, CANARY, now).status
    assert shadow is not None
    return shadow


def analysed(state: CanaryStatus, verdict: Verdict, now: float) -> machine.Step:
    return machine.analysed(state, CANARY, MODEL, verdict, now, "2026-01-01T00:00:00Z")


def test_a_candidate_in_the_spec_starts_validating_with_both_digests() -> None:
    state = started()
    assert state.phase == "Validating"
    assert state.ref == CANDIDATE
    assert state.candidate_digest == "sha256:" + "b" * 64
    assert state.stable_digest == "sha256:" + "a" * 64
    assert machine.follow_spec(ModelSpec(ref=STABLE), status(), 1.0).status is None
    # The same candidate again changes nothing.
    assert machine.follow_spec(MODEL, status(state), 2.0).status == state


def test_an_invalid_candidate_never_gets_traffic_and_says_why() -> None:
    step = machine.validated(started(), "features computed that the model does not take", 1.0)
    assert step.status is not None
    assert step.status.phase == "Invalid"
    assert [e.reason for e in step.events] == ["CandidateInvalid"]
    assert "does not take" in step.events[0].message
    assert step.events[0].type == "Warning"
    assert machine.routing(step.status) == (0, False)
    assert machine.deployment_models(MODEL, status(step.status)) == (STABLE, None)


def test_a_valid_candidate_is_loaded_then_shadowed_then_stepped_then_promoted() -> None:
    validating = started()
    assert machine.deployment_models(MODEL, status(validating)) == (STABLE, None)
    loading = machine.validated(validating, None, 1000.0).status
    assert loading is not None
    assert loading.phase == "Loading"
    assert machine.deployment_models(MODEL, status(loading)) == (STABLE, CANDIDATE)
    assert machine.routing(loading) == (0, False)

    shadow = machine.loaded(loading, CANARY, 1010.0).status
    assert shadow is not None
    assert shadow.phase == "Shadow"
    assert shadow.loaded_at == 1010.0
    assert machine.routing(shadow) == (0, True)
    assert shadow.next_check_at == 1070.0
    assert not machine.due(shadow, 1069.0)
    assert machine.due(shadow, 1070.0)

    first = analysed(shadow, PASSED, 1070.0).status
    assert first is not None
    assert (first.phase, first.step, first.weight) == ("Progressing", 1, 10)
    assert machine.routing(first) == (10, False)
    assert first.next_check_at == 1100.0
    assert first.checks_passed == 1
    assert first.last_analysis is not None
    assert first.last_analysis.alert_rate_ratio == 1.1

    second = analysed(first, PASSED, 1100.0).status
    assert second is not None
    assert (second.step, second.weight) == (2, 50)
    done = analysed(second, PASSED, 1130.0)
    assert done.status is not None
    assert done.status.phase == "Promoted"
    assert done.status.weight == 100
    assert done.status.checks_passed == 3
    assert done.promoted == PromotedModel(ref=CANDIDATE, replaces=STABLE)
    assert [e.reason for e in done.events] == ["CanaryPromoted"]
    # Promoted: the candidate is the stable model; the spec still reads as written.
    after = status(done.status, promoted=done.promoted)
    assert machine.deployment_models(MODEL, after) == (CANDIDATE, None)


def test_no_shadow_phase_goes_straight_to_the_first_step() -> None:
    canary = CANARY.model_copy(update={"shadow_seconds": 0})
    loading = machine.validated(started(), None, 5.0).status
    assert loading is not None
    step = machine.loaded(loading, canary, 5.0).status
    assert step is not None
    assert (step.phase, step.weight) == ("Progressing", 10)


def test_inconclusive_pauses_and_extends_the_window_without_counting() -> None:
    shadow = in_shadow()
    paused = analysed(shadow, INCONCLUSIVE, 1060.0)
    assert paused.status is not None
    assert paused.status.phase == "Shadow"
    assert paused.status.paused
    assert paused.status.window_started_at == shadow.window_started_at  # the window grows
    assert paused.status.next_check_at == 1120.0
    assert paused.status.checks_failed == 0
    assert paused.status.checks_passed == 0
    assert [e.reason for e in paused.events] == ["CanaryPaused"]
    # Still inconclusive: no second Event; then enough samples: it moves on.
    again = analysed(paused.status, INCONCLUSIVE, 1120.0)
    assert again.events == []
    assert again.status is not None
    resumed = analysed(again.status, PASSED, 1180.0).status
    assert resumed is not None
    assert resumed.phase == "Progressing"
    assert not resumed.paused


def test_failed_checks_up_to_the_threshold_then_rollback_to_weight_zero() -> None:
    shadow = in_shadow()
    step1 = analysed(shadow, PASSED, 1060.0).status
    assert step1 is not None
    once = analysed(step1, FAILED, 1090.0)
    assert once.status is not None
    assert once.status.phase == "Progressing"
    assert once.status.checks_failed == 1
    assert once.status.weight == 10
    assert once.status.window_started_at == 1090.0  # a fresh window for the second try
    assert [e.reason for e in once.events] == ["CanaryCheckFailed"]
    twice = analysed(once.status, FAILED, 1120.0)
    assert twice.status is not None
    assert twice.status.phase == "Failed"
    assert twice.status.weight == 0
    assert machine.routing(twice.status) == (0, False)
    (event,) = twice.events
    assert (event.type, event.reason) == ("Warning", "CanaryFailed")
    assert "alertRateRatio=9.50" in event.message
    # Rolled back: the candidate stays loaded, idle, so that no pod restarts.
    assert machine.deployment_models(MODEL, status(twice.status)) == (STABLE, CANDIDATE)


def test_a_candidate_that_never_loads_fails_and_is_dropped() -> None:
    loading = machine.validated(started(), None, 0.0).status
    assert loading is not None
    step = machine.timed_out(loading, 601)
    assert step.status is not None
    assert step.status.phase == "Failed"
    assert machine.deployment_models(MODEL, status(step.status)) == (STABLE, None)


def test_changing_the_candidate_mid_rollout_restarts_the_analysis() -> None:
    first = analysed(in_shadow(), PASSED, 1060.0).status
    assert first is not None
    changed = MODEL.model_copy(update={"canary": CANARY.model_copy(update={"ref": OTHER})})
    step = machine.follow_spec(changed, status(first), 2000.0)
    assert step.status is not None
    assert step.status.phase == "Validating"
    assert step.status.ref == OTHER
    assert step.status.checks_passed == 0
    assert [e.reason for e in step.events] == ["CanaryRestarted"]
    # Until the new candidate is valid, the scorers hold no candidate: weight 0 everywhere.
    assert machine.deployment_models(changed, status(step.status)) == (STABLE, None)


def test_removing_the_candidate_aborts_cleanly() -> None:
    first = analysed(in_shadow(), PASSED, 1060.0).status
    assert first is not None
    step = machine.follow_spec(ModelSpec(ref=STABLE), status(first), 2000.0)
    # Aborting until the driver sees every pod at weight 0 (then no status.canary at all).
    assert step.status is not None
    assert (step.status.phase, step.status.weight) == ("Aborting", 0)
    assert machine.routing(step.status) == (0, False)
    assert [e.reason for e in step.events] == ["CanaryAborted"]
    assert machine.deployment_models(ModelSpec(ref=STABLE), status(step.status)) == (STABLE, None)
    again = machine.follow_spec(ModelSpec(ref=STABLE), status(step.status), 2001.0)
    assert (again.status, again.events) == (step.status, [])
    # The same candidate named again while aborting: a new rollout, from the start.
    back = machine.follow_spec(MODEL, status(step.status), 2002.0).status
    assert back is not None
    assert (back.phase, back.checks_passed) == ("Validating", 0)
    # A finished rollout winds down silently; a promoted one is simply forgotten.
    failed = first.model_copy(update={"phase": "Failed"})
    quiet = machine.follow_spec(ModelSpec(ref=STABLE), status(failed), 2000.0)
    assert quiet.status is not None
    assert quiet.status.phase == "Aborting"
    assert quiet.events == []
    done = first.model_copy(update={"phase": "Promoted"})
    assert machine.follow_spec(ModelSpec(ref=STABLE), status(done), 2000.0).status is None


def test_the_promoted_model_stays_stable_until_the_spec_names_another() -> None:
    promoted = PromotedModel(ref=CANDIDATE, replaces=STABLE)
    assert machine.stable_ref(ModelSpec(ref=STABLE), promoted) == CANDIDATE
    assert machine.stable_ref(ModelSpec(ref=CANDIDATE), promoted) == CANDIDATE
    assert machine.stable_ref(ModelSpec(ref=OTHER), promoted) == OTHER
    # Over once the spec names anything but the model it replaced (then status.promoted goes).
    assert not machine.promotion_ended(ModelSpec(ref=STABLE), promoted)
    assert machine.promotion_ended(ModelSpec(ref=CANDIDATE), promoted)
    assert machine.promotion_ended(ModelSpec(ref=OTHER), promoted)
    assert not machine.promotion_ended(ModelSpec(ref=STABLE), None)


def scorer_env(model: dict[str, Any], state: dict[str, Any]) -> dict[str, str]:
    body = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {"model": model},
        "status": state,
    }
    deployment = build_scorer_deployment(FraudPipeline.from_body(body))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_the_scorer_deployment_loads_what_the_rollout_state_says() -> None:
    model = {"ref": STABLE, "canary": {"ref": CANDIDATE}}
    env = scorer_env(model, {})
    assert env["MODEL_REF"] == STABLE
    assert "CANARY_MODEL_REF" not in env
    shadow = {"canary": {"phase": "Shadow", "ref": CANDIDATE}}
    env = scorer_env(model, shadow)
    assert env["CANARY_MODEL_REF"] == CANDIDATE
    # No weight in the env: a weight change must not roll the pods.
    assert "CANARY_WEIGHT" not in env
    assert "SHADOW" not in env
    promoted = {
        "canary": {"phase": "Promoted", "ref": CANDIDATE},
        "promoted": {"ref": CANDIDATE, "replaces": STABLE},
    }
    env = scorer_env(model, promoted)
    assert env["MODEL_REF"] == CANDIDATE
    assert "CANARY_MODEL_REF" not in env


def test_canary_settings_do_not_roll_the_scorer_pods() -> None:
    def checksum(canary: dict[str, Any]) -> str:
        body = {
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"model": {"ref": STABLE, "canary": canary}},
        }
        template = build_scorer_deployment(FraudPipeline.from_body(body))["spec"]["template"]
        return str(template["metadata"]["annotations"])

    assert checksum({"ref": CANDIDATE}) == checksum(
        {"ref": OTHER, "steps": [50], "intervalSeconds": 10}
    )


def test_only_the_operator_may_change_a_scorers_routing() -> None:
    body = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {"model": {"ref": STABLE}},
    }
    pipeline = FraudPipeline.from_body(body)
    operator = OperatorPods(namespace="fraudpipe-system", instance="fp")
    policy = build_scorer_networkpolicy(pipeline, operator)
    control, metrics = policy["spec"]["ingress"]
    assert control["ports"] == [{"protocol": "TCP", "port": 9001}]
    (peer,) = control["from"]
    # PUT /routing is unauthenticated: the operator's own pods, in its own namespace, only.
    assert peer["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "fraudpipe",
        "app.kubernetes.io/component": "operator",
        "app.kubernetes.io/instance": "fp",
    }
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "fraudpipe-system"}
    }
    # The plan the reconciler applies carries the same peer, to the managed broker too.
    planned = builders.plan(pipeline, operator)
    policies = [o for o in planned.all() if o["kind"] == "NetworkPolicy"]
    scorer = next(o for o in policies if o["metadata"]["name"] == "p-scorer")
    assert scorer["spec"]["ingress"][0]["from"] == [peer]
    kafka = next(o for o in policies if o["metadata"]["name"] == "p-kafka")
    assert peer in kafka["spec"]["ingress"][0]["from"]
    # /metrics (and a read-only GET /routing): the pipeline, the operator (the canary
    # driver's statistics) and Prometheus Operator pods, by default.
    assert metrics == {
        "from": [
            {"podSelector": {"matchLabels": {"fraudpipe.io/pipeline": "p"}}},
            peer,
            {"namespaceSelector": {}, "podSelector": {"matchLabels": PROMETHEUS}},
        ],
        "ports": [{"protocol": "TCP", "port": 9000}],
    }
    assert policy["spec"]["podSelector"]["matchLabels"]["fraudpipe.io/component"] == "scorer"
    assert scorer_env({"ref": STABLE}, {})["CONTROL_PORT"] == "9001"


PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}


def test_changing_the_stable_model_mid_rollout_reloads_and_restarts_the_analysis() -> None:
    """Else the stable series would be the old model's, which no pod runs any more: 0
    samples, inconclusive forever."""
    first = analysed(in_shadow(), PASSED, 1060.0).status
    assert first is not None
    assert first.weight == 10
    moved = MODEL.model_copy(update={"ref": OTHER})
    step = machine.follow_spec(moved, status(first), 2000.0)
    assert step.status is not None
    assert step.status.phase == "Loading"
    assert step.status.stable_digest == "sha256:" + "c" * 64
    assert step.status.candidate_digest == first.candidate_digest
    assert (step.status.weight, step.status.step, step.status.checks_passed) == (0, 0, 0)
    assert step.status.loaded_at == 0
    assert step.status.phase_started_at == 2000.0
    assert machine.routing(step.status) == (0, False)
    assert [e.reason for e in step.events] == ["CanaryRestarted"]
    # The validated candidate stays in the Deployment: only the stable change rolls the pods.
    assert machine.deployment_models(moved, status(step.status)) == (OTHER, CANDIDATE)
    # Once restarted, the same spec changes nothing more.
    assert machine.follow_spec(moved, status(step.status), 2001.0).status == step.status


def test_a_stable_change_while_validating_only_records_the_new_stable_digest() -> None:
    moved = MODEL.model_copy(update={"ref": OTHER})
    step = machine.follow_spec(moved, status(started()), 1001.0)
    assert step.status is not None
    assert (step.status.phase, step.status.stable_digest) == ("Validating", "sha256:" + "c" * 64)
    assert step.events == []


def test_a_finished_rollout_is_not_restarted_by_the_stable_model() -> None:
    shadow = in_shadow()
    promoted = shadow.model_copy(update={"phase": "Promoted"})
    after = status(promoted, promoted=PromotedModel(ref=CANDIDATE, replaces=STABLE))
    # The promoted candidate is now the stable model: its digest differs, nothing restarts.
    assert machine.follow_spec(MODEL, after, 2000.0).status == promoted
    failed = shadow.model_copy(update={"phase": "Failed"})
    moved = MODEL.model_copy(update={"ref": OTHER})
    assert machine.follow_spec(moved, status(failed), 2000.0).status == failed


def test_at_100_percent_a_stable_side_too_short_fails_closed() -> None:
    """The stable model decides nobody at 100 %: waiting cannot bring its figures."""
    canary = CANARY.model_copy(update={"steps": [100]})
    loading = machine.validated(started(), None, 5.0).status
    assert loading is not None
    last = machine.loaded(loading, canary.model_copy(update={"shadow_seconds": 0}), 5.0).status
    assert last is not None
    assert last.weight == 100
    short = Verdict(Result.INCONCLUSIVE, 500, 3, reason="the stable model has 3", stable_short=True)
    step = machine.analysed(last, canary, MODEL, short, 40.0, "2026-01-01T00:00:00Z")
    assert step.status is not None
    assert (step.status.phase, step.status.weight) == ("Failed", 0)
    assert [e.reason for e in step.events] == ["CanaryFailed"]
    assert step.promoted is None
    # Below 100 % the stable side still grows: it pauses, as any inconclusive check.
    first = analysed(in_shadow(), PASSED, 1060.0).status
    assert first is not None
    paused = analysed(first, short, 1090.0).status
    assert paused is not None
    assert (paused.phase, paused.paused) == ("Progressing", True)
