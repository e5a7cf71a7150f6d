"""The tree explainer file of a fitted estimator (fraudpipe_common.explain.trees): its trees
once more, with how many training rows reached each node, which ONNX does not keep."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest  # type: ignore[import-untyped]

from fraudpipe_common.explain.trees import ExplainerFile, Tree
from fraudpipe_model.export import average_path_length, float32_at_or_below
from fraudpipe_model.families import Estimator

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def export_explainer(estimator: Estimator, features: Sequence[str]) -> bytes:
    if isinstance(estimator, HistGradientBoostingClassifier):
        file = _gradient_boosting(estimator, features)
    elif isinstance(estimator, IsolationForest):
        file = _isolation_forest(estimator, features)
    else:
        raise TypeError(f"cannot explain {type(estimator).__name__}")
    return file.to_json()


def _gradient_boosting(
    estimator: HistGradientBoostingClassifier, features: Sequence[str]
) -> ExplainerFile:
    trees = []
    for (predictor,) in estimator._predictors:  # one tree per iteration for two classes
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits cannot be explained (fraudpipe has none)")
        leaf = nodes["is_leaf"].astype(bool)
        trees.append(
            Tree(
                feature=nodes["feature_idx"].tolist(),
                threshold=[_finite(t) for t in nodes["num_threshold"].tolist()],
                left=np.where(leaf, -1, nodes["left"].astype(np.int64)).tolist(),
                right=np.where(leaf, -1, nodes["right"].astype(np.int64)).tolist(),
                missing_left=nodes["missing_go_to_left"].astype(bool).tolist(),
                value=np.where(leaf, nodes["value"], 0.0).tolist(),
                cover=nodes["count"].astype(float).tolist(),
            )
        )
    baseline = float(estimator._baseline_prediction.ravel()[0])
    return ExplainerFile(
        features=tuple(features), link="logistic", base_offset=baseline, trees=trees
    )


def _finite(threshold: float) -> float:
    """skl2onnx writes each threshold as the nearest float32, and Tree compares so too. A split
    of NaN from every number has threshold +inf, which JSON cannot hold: the largest float32
    sends every finite value the same way (features are never infinite)."""
    return threshold if math.isfinite(threshold) else _FLOAT32_MAX


def _isolation_forest(estimator: IsolationForest, features: Sequence[str]) -> ExplainerFile:
    """The same leaves as the exported graph (export._isolation_forest_graph): each holds its
    share of the path-length exponent, so the margin is E[h(x)] / c(max_samples)."""
    estimators = estimator.estimators_
    denominator = len(estimators) * average_path_length(int(estimator.max_samples_))
    trees = []
    for tree_estimator in estimators:
        tree = tree_estimator.tree_
        left, right = tree.children_left.tolist(), tree.children_right.tolist()
        depth = [0] * tree.node_count
        for node in range(tree.node_count):  # children come after their parent
            for child in (left[node], right[node]):
                if child != -1:
                    depth[child] = depth[node] + 1
        samples = tree.n_node_samples.tolist()
        trees.append(
            Tree(
                feature=[max(f, 0) for f in tree.feature.tolist()],
                threshold=[
                    0.0 if left[n] == -1 else float32_at_or_below(float(tree.threshold[n]))
                    for n in range(tree.node_count)
                ],
                left=left,
                right=right,
                # scikit-learn's IsolationForest sends NaN right (it fails `x <= threshold`).
                missing_left=[False] * tree.node_count,
                value=[
                    (depth[n] + average_path_length(samples[n])) / denominator
                    if left[n] == -1
                    else 0.0
                    for n in range(tree.node_count)
                ],
                cover=[float(s) for s in samples],
            )
        )
    return ExplainerFile(
        features=tuple(features), link="exp2_negative", base_offset=0.0, trees=trees
    )
