"""The lag autoscaler's pure parts: the formula and its caps, the stabilization windows, the
condition, the Deployment's replicas ownership and KEDA's ScaledObject."""

from __future__ import annotations

from typing import Any

import pytest

from fraudpipe_operator.autoscaling import keda
from fraudpipe_operator.autoscaling.decision import (
    Decision,
    Policy,
    Recommendation,
    Why,
    bounds,
    decide,
    recommend,
)
from fraudpipe_operator.autoscaling.scaler import (
    build_scorer_replicas,
    engine_observation,
    replicas_owners,
)
from fraudpipe_operator.builders.apps import build_scorer_deployment
from fraudpipe_operator.builders.stores import build_kafka_networkpolicy
from fraudpipe_operator.conditions import Reason, summarize

from .pipelines import pipeline

POLICY = Policy(
    min_replicas=1,
    max_replicas=8,
    lag_per_replica=100,
    scale_up_window_s=0,
    scale_down_window_s=60,
)


@pytest.mark.parametrize(
    ("lag", "partitions", "expected"),
    [
        (0, 6, 1),  # min
        (1, 6, 1),
        (100, 6, 1),
        (101, 6, 2),  # ceil
        (350, 6, 4),
        (10_000, 12, 8),  # max
        (10_000, 4, 4),  # the partition count caps max
        (-5, 6, 1),  # a broker racing a commit never yields a negative count
    ],
)
def test_recommendation_is_the_clamped_ceiling_of_lag_per_replica(
    lag: int, partitions: int, expected: int
) -> None:
    assert recommend(lag, partitions, POLICY) == expected


def test_partitions_cap_even_min_replicas() -> None:
    policy = Policy(min_replicas=5, max_replicas=10, lag_per_replica=100)
    assert bounds(policy, 3) == (3, 3)
    assert recommend(0, 3, policy) == 3
    assert bounds(Policy(min_replicas=0, max_replicas=4, lag_per_replica=1), 8) == (0, 4)


def run(
    steps: list[tuple[float, int | None]], policy: Policy = POLICY, start: int = 1
) -> list[Decision]:
    """Feed (time, lag) readings through decide(), applying each decision like the scaler."""
    current, history, decisions = start, (), []
    for at, lag in steps:
        decision = decide(current, lag, None if lag is None else 6, policy, history, at)
        decisions.append(decision)
        current, history = decision.replicas, decision.history
    return decisions


def test_scales_up_at_once_with_no_scale_up_window() -> None:
    (decision,) = run([(0.0, 350)])
    assert (decision.replicas, decision.why) == (4, Why.SCALED_UP)
    assert "1 → 4 replicas" in decision.message


def test_scale_up_window_takes_the_lowest_recommendation_of_the_window() -> None:
    policy = Policy(1, 8, 100, scale_up_window_s=30, scale_down_window_s=60)
    decisions = run([(0.0, 100), (10.0, 500), (20.0, 500), (41.0, 500)], policy)
    # A fresh start does not hold a scale-up back: the first reading asks for 1, so does t=10.
    assert [d.replicas for d in decisions] == [1, 1, 1, 5]
    assert decisions[1].why == Why.SCALE_UP_STABILIZING


def test_scales_down_only_after_the_window_to_the_highest_recommendation() -> None:
    decisions = run(
        [(0.0, 600), (15.0, 0), (30.0, 250), (45.0, 0), (70.0, 0), (91.0, 0)],
    )
    assert [d.replicas for d in decisions] == [6, 6, 6, 6, 3, 1]
    assert decisions[1].why == Why.SCALE_DOWN_STABILIZING
    assert "asks for 1; keeping 6 until that has held for 60s" in decisions[1].message
    # At 70 s the 600 of t=0 left the window, the 250 of t=30 has not: 3, not 1.
    assert decisions[4].why == Why.SCALED_DOWN


def test_a_fresh_start_holds_scale_down_for_a_whole_window() -> None:
    """After an operator restart the history is empty: the replicas found count as recommended
    then, so a restart never drops replicas early."""
    decisions = run([(100.0, 0), (150.0, 0), (161.0, 0)], start=5)
    assert [d.replicas for d in decisions] == [5, 5, 1]
    assert decisions[0].history[0] == Recommendation(100.0, 5, found=True)


def test_a_scale_down_window_no_longer_than_the_timer_interval_still_scales_down() -> None:
    """With the window at or below the 15 s round, each round finds the previous reading
    aged out; that is not an operator start and must not hold the scale-down again."""
    policy = Policy(min_replicas=1, max_replicas=8, lag_per_replica=100, scale_down_window_s=15)
    decisions = run([(0.0, 600), (15.2, 0), (30.4, 0), (45.6, 0)], policy)
    assert [d.replicas for d in decisions] == [6, 1, 1, 1]
    assert decisions[1].why == Why.SCALED_DOWN
    # A window shorter than the interval: the same.
    short = Policy(min_replicas=1, max_replicas=8, lag_per_replica=100, scale_down_window_s=5)
    assert [d.replicas for d in run([(0.0, 600), (15.0, 0)], short)] == [6, 1]


def test_unreadable_lag_keeps_the_current_count_and_the_history() -> None:
    decisions = run([(0.0, 600), (30.0, None), (61.0, None), (62.0, 0)])
    assert [d.replicas for d in decisions] == [6, 6, 6, 6]
    assert decisions[1].why == Why.LAG_UNKNOWN
    assert decisions[1].recommended is None
    assert "keeping 6 replicas" in decisions[1].message
    # The window counts from the last readings, not from the outage.
    assert decisions[3].why == Why.SCALE_DOWN_STABILIZING


def test_unreadable_lag_never_scales_to_zero() -> None:
    policy = Policy(min_replicas=0, max_replicas=4, lag_per_replica=10, scale_down_window_s=0)
    decision = decide(3, None, None, policy, (), 0.0, "broker down")
    assert decision.replicas == 3
    assert "broker down" in decision.message
    assert decide(3, 0, 4, policy, (), 0.0).replicas == 0  # a real zero lag does


def test_lowered_bounds_apply_at_once() -> None:
    decision = decide(8, 10_000, 4, POLICY, (), 0.0)
    assert (decision.replicas, decision.why) == (4, Why.SCALED_DOWN)


def test_steady_when_the_recommendation_is_the_current_count() -> None:
    decision = decide(2, 150, 6, POLICY, (), 0.0)
    assert (decision.replicas, decision.why, decision.scales(2)) == (2, Why.STEADY, False)


# -- the Deployment ----------------------------------------------------------------------------
def autoscaled(**autoscaling: Any) -> dict[str, Any]:
    return {"scorer": {"replicas": 2, "autoscaling": {"enabled": True, **autoscaling}}}


def test_the_operator_leaves_replicas_to_the_autoscaler() -> None:
    fixed = build_scorer_deployment(pipeline({"scorer": {"replicas": 3}}))
    assert fixed["spec"]["replicas"] == 3
    assert "replicas" not in build_scorer_deployment(pipeline(autoscaled()))["spec"]


def test_scaling_settings_do_not_roll_the_scorer_pods() -> None:
    def checksum(spec: dict[str, Any]) -> str:
        template = build_scorer_deployment(pipeline(spec))["spec"]["template"]
        return str(template["metadata"]["annotations"]["fraudpipe.io/config-checksum"])

    base = checksum({"scorer": {"replicas": 2}})
    assert checksum({"scorer": {"replicas": 7}}) == base
    assert checksum(autoscaled(lagPerReplica=5)) == base
    assert checksum({"scorer": {"batch": {"maxSize": 7}}}) != base


def test_replicas_owners_reads_managed_fields() -> None:
    deployment = {
        "metadata": {
            "managedFields": [
                {"manager": "fraudpipe-operator", "fieldsV1": {"f:spec": {"f:template": {}}}},
                {"manager": "fraudpipe-autoscaler", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"manager": "kube-controller-manager", "fieldsV1": {"f:status": {}}},
            ]
        }
    }
    assert replicas_owners(deployment) == {"fraudpipe-autoscaler"}
    assert replicas_owners({"metadata": {}}) == set()


def test_the_autoscalers_apply_sets_the_replicas_and_nothing_else() -> None:
    assert build_scorer_replicas(pipeline(autoscaled()), 4) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "payments-scorer", "namespace": "fraud"},
        "spec": {"replicas": 4},
    }


# -- the condition -----------------------------------------------------------------------------
def test_condition_warns_when_max_replicas_exceeds_the_partitions() -> None:
    p = pipeline(
        autoscaled(maxReplicas=10) | {"kafka": {"topics": {"transactions": {"partitions": 4}}}}
    )
    observation = engine_observation(p, keda_served=False)
    assert (observation.ok, observation.reason) == (False, Reason.MAX_REPLICAS_ABOVE_PARTITIONS)
    assert "maxReplicas 10 exceeds the 4 partitions of transactions.v1" in observation.message
    # Informative: the pipeline is still Ready.
    assert summarize([observation])[0] == "Ready"


def test_condition_says_why_keda_falls_back_to_builtin() -> None:
    p = pipeline(autoscaled(engine="keda", maxReplicas=6))
    missing = engine_observation(p, keda_served=False)
    assert (missing.ok, missing.reason) == (False, Reason.KEDA_MISSING)
    assert "scaledobjects (keda.sh/v1alpha1)" in missing.message
    assert "builtin" in missing.message
    served = engine_observation(p, keda_served=True)
    assert (served.ok, served.reason) == (True, Reason.KEDA_ENGINE)
    builtin = engine_observation(pipeline(autoscaled(maxReplicas=6)), keda_served=False)
    assert (builtin.ok, builtin.reason) == (True, Reason.BUILTIN_ENGINE)
    disabled = engine_observation(pipeline(), keda_served=True)
    assert (disabled.ok, disabled.reason) == (True, Reason.DISABLED)


# -- KEDA --------------------------------------------------------------------------------------
def test_scaledobject_carries_the_formula_the_cap_and_the_windows() -> None:
    p = pipeline(
        autoscaled(
            engine="keda",
            minReplicas=0,
            maxReplicas=10,
            lagPerReplica=250,
            scaleUp={"stabilizationWindowSeconds": 5},
            scaleDown={"stabilizationWindowSeconds": 120},
            keda={"activationLagThreshold": 20, "pollingIntervalSeconds": 10},
        )
        | {"kafka": {"topics": {"transactions": {"name": "tx", "partitions": 4}}}}
    )
    obj = keda.build_scorer_scaledobject(p)
    assert obj["apiVersion"] == "keda.sh/v1alpha1"
    assert obj["metadata"]["name"] == "payments-scorer"
    assert obj["metadata"]["ownerReferences"][0]["kind"] == "FraudPipeline"
    spec = obj["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "payments-scorer",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 4)
    assert spec["pollingInterval"] == 10
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 5},
        "scaleDown": {"stabilizationWindowSeconds": 120},
    }
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    assert "authenticationRef" not in trigger
    assert trigger["metadata"] == {
        "bootstrapServers": "payments-kafka.fraud.svc:9092",
        "consumerGroup": "fraudpipe-scorer",
        "topic": "tx",
        "lagThreshold": "250",
        "activationLagThreshold": "20",
        "offsetResetPolicy": "earliest",
        "allowIdleConsumers": "false",
        "limitToPartitionsWithLag": "false",
    }
    assert keda.build_scorer_triggerauthentication(p) is None


def test_scaledobject_authenticates_to_an_external_sasl_tls_broker() -> None:
    p = pipeline(
        autoscaled(engine="keda")
        | {
            "kafka": {
                "mode": "external",
                "external": {
                    "bootstrapServers": ["b1:9093", "b2:9093"],
                    "tls": {"enabled": True, "caSecretRef": {"name": "kafka-ca", "key": "ca"}},
                    "sasl": {"mechanism": "SCRAM-SHA-256", "secretName": "kafka-user"},
                },
            }
        }
    )
    trigger = keda.build_scorer_scaledobject(p)["spec"]["triggers"][0]
    assert trigger["metadata"]["bootstrapServers"] == "b1:9093,b2:9093"
    assert (trigger["metadata"]["tls"], trigger["metadata"]["sasl"]) == ("enable", "scram_sha256")
    assert trigger["authenticationRef"] == {"name": "payments-scorer-kafka"}
    auth = keda.build_scorer_triggerauthentication(p)
    assert auth is not None
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "username", "name": "kafka-user", "key": "username"},
        {"parameter": "password", "name": "kafka-user", "key": "password"},
        {"parameter": "ca", "name": "kafka-ca", "key": "ca"},
    ]


def test_keda_reaches_the_managed_broker_on_the_kafka_port_only() -> None:
    def keda_rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
        ingress = build_kafka_networkpolicy(pipeline(spec))["spec"]["ingress"]
        return [
            rule
            for rule in ingress
            if any(
                peer.get("podSelector", {}).get("matchLabels") == {"app": "keda-operator"}
                for peer in rule.get("from", [])
            )
        ]

    (rule,) = keda_rules(autoscaled(engine="keda"))
    assert rule["ports"] == [{"protocol": "TCP", "port": 9092}]
    # KEDA's namespace only ("keda" unless the spec says otherwise): its label is anyone's.
    assert rule["from"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "keda"}
    }
    (elsewhere,) = keda_rules(autoscaled(engine="keda", keda={"namespace": "autoscalers"}))
    assert elsewhere["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "autoscalers"
    }
    assert keda_rules(autoscaled()) == []
    assert keda_rules({}) == []
