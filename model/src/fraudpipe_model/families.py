"""The two model families, their default settings and their scores as scikit-learn computes
them (the reference the ONNX export must match)."""

from __future__ import annotations

from typing import Any, get_args

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest  # type: ignore[import-untyped]
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from fraudpipe_common.model_artifact import Family

FAMILIES: tuple[Family, ...] = get_args(Family)
DEFAULT_FAMILY: Family = "gradient_boosting"

# A fitted HistGradientBoostingClassifier or IsolationForest (scikit-learn ships no types).
Estimator = Any

SCORE_TRANSFORMS: dict[Family, str] = {
    "gradient_boosting": "probability of fraud: sigmoid of the boosted trees' raw score "
    "(scikit-learn predict_proba(X)[:, 1])",
    "isolation_forest": "anomaly score s = 2 ** (-E[h(x)] / c(max_samples)) of Liu et al. "
    "(2008), E[h(x)] the mean path length over the trees (scikit-learn -score_samples(X)); "
    "unsupervised, so it ranks rarity rather than estimating a probability",
}


def hyperparameters(family: Family, seed: int) -> dict[str, Any]:
    if family == "gradient_boosting":
        return {
            "max_iter": 300,
            "learning_rate": 0.1,
            "max_leaf_nodes": 31,
            "l2_regularization": 1.0,
            "early_stopping": False,
            "random_state": seed,
        }
    # max_features=1.0: every tree sees every column in order, which the ONNX converter needs.
    return {
        "n_estimators": 200,
        "max_samples": 256,
        "max_features": 1.0,
        "contamination": "auto",
        "random_state": seed,
    }


def fit(
    family: Family,
    features: np.ndarray,
    labels: np.ndarray,
    seed: int,
    *,
    threads: int | None = None,
) -> Estimator:
    """`threads` caps OpenMP threads; on a busy machine one thread is often the fastest,
    because spinning OpenMP workers fight over the cores. None: scikit-learn's default."""
    params = hyperparameters(family, seed)
    with threadpool_limits(limits=threads):
        if family == "gradient_boosting":
            return HistGradientBoostingClassifier(**params).fit(features, labels)
        return IsolationForest(**params).fit(features)  # unsupervised: labels unused


def sklearn_scores(estimator: Estimator, features: np.ndarray) -> np.ndarray:
    """Fraud scores in [0, 1], higher is riskier, as float64."""
    if isinstance(estimator, HistGradientBoostingClassifier):
        return np.asarray(estimator.predict_proba(features)[:, 1], dtype=np.float64)
    return -np.asarray(estimator.score_samples(features), dtype=np.float64)


def family_of(estimator: Estimator) -> Family:
    return (
        "gradient_boosting"
        if isinstance(estimator, HistGradientBoostingClassifier)
        else ("isolation_forest")
    )
