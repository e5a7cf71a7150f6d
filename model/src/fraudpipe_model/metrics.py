"""Pure scoring arithmetic: thresholds at a false-positive budget, and the figures we report.

A transaction is positive (FLAG or BLOCK) when `score >= threshold`. All functions take the
labels (1 = fraud) and the scores the model produced for the same rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve  # type: ignore[import-untyped]

FLAG_MAX_FPR = 0.01
BLOCK_MAX_FPR = 0.001
THRESHOLD_RULE = (
    "FLAG = lowest score threshold whose false-positive rate on the validation split is at most "
    f"{FLAG_MAX_FPR:.1%}; BLOCK = the same at {BLOCK_MAX_FPR:.1%} (never below FLAG); "
    "a transaction matches when score >= threshold"
)


@dataclass(frozen=True)
class Confusion:
    threshold: float
    precision: float
    recall: float
    fpr: float
    flagged: int


def threshold_at_fpr(labels: np.ndarray, scores: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold t with FPR(score >= t) <= max_fpr.

    Allowing k = floor(max_fpr * negatives) false positives, t sits just above the (k+1)-th
    highest negative score, so at most k negatives reach it, ties included.
    """
    negatives = np.sort(np.asarray(scores, dtype=np.float64)[labels == 0])[::-1]
    if len(negatives) == 0:
        raise ValueError("no negative rows: a false-positive rate is undefined")
    allowed = math.floor(max_fpr * len(negatives) + 1e-9)
    if allowed >= len(negatives):
        return float(negatives[-1])
    return float(np.nextafter(negatives[allowed], np.inf))


def confusion_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Confusion:
    predicted = np.asarray(scores, dtype=np.float64) >= threshold
    fraud = labels == 1
    true_positives = int(np.sum(predicted & fraud))
    flagged = int(np.sum(predicted))
    negatives = int(np.sum(~fraud))
    return Confusion(
        threshold=threshold,
        precision=true_positives / flagged if flagged else 1.0,
        recall=true_positives / int(np.sum(fraud)) if np.any(fraud) else 0.0,
        fpr=int(np.sum(predicted & ~fraud)) / negatives if negatives else 0.0,
        flagged=flagged,
    )


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision)."""
    return float(average_precision_score(labels, scores))


def recall_at_fpr(labels: np.ndarray, scores: np.ndarray, max_fpr: float) -> float:
    return confusion_at(labels, scores, threshold_at_fpr(labels, scores, max_fpr)).recall


def per_scenario_recall(
    scenarios: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, tuple[int, float]]:
    """For each fraud scenario: (rows, share of them at or above the threshold)."""
    result = {}
    for scenario in sorted(set(scenarios.tolist()) - {""}):
        rows = scenarios == scenario
        hits = np.asarray(scores, dtype=np.float64)[rows] >= threshold
        result[scenario] = (int(rows.sum()), float(hits.mean()))
    return result


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) points for plotting."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    return recall, precision
