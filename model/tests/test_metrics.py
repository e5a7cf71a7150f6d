"""Threshold and metric arithmetic on hand-checked examples."""

from __future__ import annotations

import numpy as np
import pytest

from fraudpipe_model.card import choose_thresholds
from fraudpipe_model.metrics import (
    confusion_at,
    per_scenario_recall,
    pr_auc,
    recall_at_fpr,
    threshold_at_fpr,
)

# 1000 legitimate rows scored 0.000 … 0.999 and 10 fraud rows scored 0.9905 … 0.9995.
LEGIT = np.arange(1000) / 1000.0
FRAUD = 0.9905 + np.arange(10) / 1000.0
SCORES = np.concatenate([LEGIT, FRAUD])
LABELS = np.concatenate([np.zeros(1000, dtype=np.int8), np.ones(10, dtype=np.int8)])


def test_threshold_at_fpr_allows_exactly_the_budget_of_false_positives() -> None:
    threshold = threshold_at_fpr(LABELS, SCORES, 0.01)  # 10 false positives allowed
    assert 0.989 < threshold <= 0.990  # just above the 11th highest legitimate score
    confusion = confusion_at(LABELS, SCORES, threshold)
    assert confusion.fpr == pytest.approx(0.01)
    assert confusion.recall == 1.0
    lower = np.nextafter(0.989, -np.inf)
    assert confusion_at(LABELS, SCORES, lower).fpr > 0.01  # any lower threshold overspends


def test_ties_at_the_threshold_count_against_the_budget() -> None:
    scores = np.array([0.5] * 5 + [0.1] * 995 + [0.9])
    labels = np.array([0] * 1000 + [1])
    threshold = threshold_at_fpr(labels, scores, 0.003)  # 3 allowed, 5 tied at 0.5
    assert confusion_at(labels, scores, threshold).fpr <= 0.003
    assert threshold > 0.5


def test_threshold_needs_negative_rows() -> None:
    with pytest.raises(ValueError, match="no negative rows"):
        threshold_at_fpr(np.ones(3), np.array([0.1, 0.2, 0.3]), 0.01)


def test_recall_at_fpr_and_pr_auc_of_a_perfect_and_a_useless_ranking() -> None:
    assert recall_at_fpr(LABELS, LABELS.astype(float), 0.01) == 1.0
    assert pr_auc(LABELS, LABELS.astype(float)) == 1.0
    assert pr_auc(LABELS, np.zeros(len(LABELS))) == pytest.approx(10 / 1010)


def test_thresholds_follow_the_rule_and_block_is_stricter() -> None:
    thresholds = choose_thresholds(LABELS, SCORES)
    assert confusion_at(LABELS, SCORES, thresholds.flag).fpr <= 0.01
    assert confusion_at(LABELS, SCORES, thresholds.block).fpr <= 0.001
    assert thresholds.block >= thresholds.flag
    assert "1.0%" in thresholds.rule
    assert "0.1%" in thresholds.rule


def test_per_scenario_recall_counts_each_scenario_and_ignores_legitimate_rows() -> None:
    scenarios = np.array(["", "", "card_testing", "card_testing", "amount_outlier"])
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.95])
    assert per_scenario_recall(scenarios, scores, 0.5) == {
        "amount_outlier": (1, 1.0),
        "card_testing": (2, 0.5),
    }
