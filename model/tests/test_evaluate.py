"""Evaluation figures, the quality-bar verdict and the table, on constructed scores."""

from __future__ import annotations

import numpy as np
import pytest

from fraudpipe_common.model_artifact import Thresholds
from fraudpipe_model.evaluate import evaluate_scores, format_table, quality_bar_failures

from .test_compatibility import card_for

LABELS = np.array([0] * 990 + [1] * 10, dtype=np.int8)
SCENARIOS = np.array([""] * 990 + ["card_testing"] * 6 + ["impossible_travel"] * 4)
PERFECT = LABELS.astype(np.float64)
USELESS = np.random.default_rng(0).random(1000)


def test_a_perfect_supervised_model_meets_the_bar_and_a_useless_one_does_not() -> None:
    good = evaluate_scores(card_for("gradient_boosting", "good"), LABELS, SCENARIOS, PERFECT)
    bad = evaluate_scores(card_for("gradient_boosting", "bad"), LABELS, SCENARIOS, USELESS)
    assert good.pr_auc == 1.0
    assert good.recall_at_1pct_fpr == 1.0
    assert quality_bar_failures([good, bad]) == ["bad"]


def test_isolation_forest_is_reported_but_never_fails_the_bar() -> None:
    weak = evaluate_scores(card_for("isolation_forest", "iforest"), LABELS, SCENARIOS, USELESS)
    assert not weak.meets_quality_bar()
    assert quality_bar_failures([weak]) == []


def test_figures_at_the_card_thresholds_and_per_scenario() -> None:
    scores = PERFECT.copy()
    scores[-4:] = 0.0  # the impossible-travel rows are missed
    card = card_for("gradient_boosting", "m", Thresholds(flag=0.5, block=0.9, rule="r"))
    evaluation = evaluate_scores(card, LABELS, SCENARIOS, scores)
    assert evaluation.flag.recall == pytest.approx(0.6)
    assert evaluation.flag.precision == 1.0
    assert evaluation.scenario_recall == {"card_testing": (6, 1.0), "impossible_travel": (4, 0.0)}
    table = format_table([evaluation], "constructed")
    assert "recall@FLAG impossible_travel (n=4)" in table
    assert "0.600" in table


def test_a_held_out_stream_without_fraud_is_refused() -> None:
    with pytest.raises(ValueError, match="no fraud rows"):
        evaluate_scores(
            card_for("gradient_boosting", "m"), np.zeros(5), np.array([""] * 5), USELESS[:5]
        )
