"""Estimator to ONNX: one float32 input `features` [N, F], one float32 output `fraud_score`
[N] in [0, 1] — the same contract for both families, so a scorer needs no family logic.

Gradient boosting goes through skl2onnx, with the positive-class column picked out in the
graph. IsolationForest gets its own converter: skl2onnx builds a subgraph per tree (about 20 s
to convert 200 trees, and slow to run); here all trees are one TreeEnsembleRegressor whose
leaves hold their share of the path-length exponent, followed by 2 ** -x.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper
from skl2onnx import to_onnx  # type: ignore[import-untyped]
from skl2onnx.common.data_types import FloatTensorType  # type: ignore[import-untyped]
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest  # type: ignore[import-untyped]

from fraudpipe_model.families import Estimator

INPUT_NAME = "features"
OUTPUT_NAME = "fraud_score"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
IR_VERSION = 8  # readable by every onnxruntime since 1.10


def export_onnx(estimator: Estimator, n_features: int) -> bytes:
    if isinstance(estimator, HistGradientBoostingClassifier):
        model = _gradient_boosting_graph(estimator, n_features)
    elif isinstance(estimator, IsolationForest):
        model = _isolation_forest_graph(estimator, n_features)
    else:
        raise TypeError(f"cannot export {type(estimator).__name__}")
    onnx.checker.check_model(model, full_check=True)
    serialized: bytes = model.SerializeToString()
    return serialized


def _gradient_boosting_graph(
    estimator: HistGradientBoostingClassifier, n_features: int
) -> onnx.ModelProto:
    with warnings.catch_warnings():
        # skl2onnx passes booleans where protobuf wants ints; harmless with protobuf < 7.
        warnings.filterwarnings("ignore", "Field onnx.AttributeProto", DeprecationWarning)
        model: onnx.ModelProto = to_onnx(
            estimator,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            target_opset=TARGET_OPSET,
            options={id(estimator): {"zipmap": False}},
        )
    graph = model.graph
    probabilities = next(o.name for o in graph.output if o.name == "probabilities")
    graph.initializer.append(helper.make_tensor("positive_class", TensorProto.INT64, [], [1]))
    graph.node.append(
        helper.make_node(
            "Gather", [probabilities, "positive_class"], [OUTPUT_NAME], axis=1, name="pick_fraud"
        )
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None]))
    model.ir_version = IR_VERSION
    return model


def average_path_length(samples: int) -> float:
    """c(n): mean path length of an unsuccessful binary-search-tree lookup among n points."""
    if samples <= 1:
        return 0.0
    if samples == 2:
        return 1.0
    return 2.0 * (math.log(samples - 1.0) + np.euler_gamma) - 2.0 * (samples - 1.0) / samples


def float32_at_or_below(value: float) -> float:
    """The largest float32 <= value: for any float32 x, x <= result exactly when x <= value,
    so trees compare float32 inputs exactly as scikit-learn does in float64."""
    rounded = np.float32(value)
    if float(rounded) > value:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return float(rounded)


def _isolation_forest_graph(estimator: IsolationForest, n_features: int) -> onnx.ModelProto:
    if estimator.max_features != 1.0:
        raise ValueError("the IsolationForest converter needs max_features=1.0")
    trees = estimator.estimators_
    denominator = len(trees) * average_path_length(int(estimator.max_samples_))
    attrs: dict[str, list[int | float | str]] = {
        key: []
        for key in [
            "nodes_treeids",
            "nodes_nodeids",
            "nodes_featureids",
            "nodes_values",
            "nodes_modes",
            "nodes_truenodeids",
            "nodes_falsenodeids",
            "target_treeids",
            "target_nodeids",
            "target_ids",
            "target_weights",
        ]
    }
    for tree_id, tree_estimator in enumerate(trees):
        tree = tree_estimator.tree_
        depths = _node_depths(tree.children_left, tree.children_right)
        for node in range(tree.node_count):
            left, right = int(tree.children_left[node]), int(tree.children_right[node])
            is_leaf = left == -1
            attrs["nodes_treeids"].append(tree_id)
            attrs["nodes_nodeids"].append(node)
            attrs["nodes_featureids"].append(0 if is_leaf else int(tree.feature[node]))
            attrs["nodes_values"].append(
                0.0 if is_leaf else float32_at_or_below(float(tree.threshold[node]))
            )
            attrs["nodes_modes"].append("LEAF" if is_leaf else "BRANCH_LEQ")
            attrs["nodes_truenodeids"].append(0 if is_leaf else left)
            attrs["nodes_falsenodeids"].append(0 if is_leaf else right)
            if is_leaf:
                path = depths[node] + average_path_length(int(tree.n_node_samples[node]))
                attrs["target_treeids"].append(tree_id)
                attrs["target_nodeids"].append(node)
                attrs["target_ids"].append(0)
                attrs["target_weights"].append(path / denominator)
    nodes = [
        helper.make_node(
            "TreeEnsembleRegressor",
            [INPUT_NAME],
            ["path_exponent"],
            domain="ai.onnx.ml",
            n_targets=1,
            aggregate_function="SUM",
            post_transform="NONE",
            name="isolation_trees",
            **attrs,  # type: ignore[arg-type]
        ),
        helper.make_node("Mul", ["path_exponent", "minus_ln2"], ["log_score"], name="times_ln2"),
        helper.make_node("Exp", ["log_score"], ["score_column"], name="two_to_minus"),
        helper.make_node("Reshape", ["score_column", "flat"], [OUTPUT_NAME], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes,
        "fraudpipe_isolation_forest",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None])],
        initializer=[
            helper.make_tensor("minus_ln2", TensorProto.FLOAT, [], [-math.log(2.0)]),
            helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
        ],
    )
    opsets = [helper.make_opsetid(domain, version) for domain, version in TARGET_OPSET.items()]
    return helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION)


def _node_depths(children_left: np.ndarray, children_right: np.ndarray) -> list[int]:
    depths = [0] * len(children_left)
    stack = [0]
    while stack:
        node = stack.pop()
        for child in (int(children_left[node]), int(children_right[node])):
            if child != -1:
                depths[child] = depths[node] + 1
                stack.append(child)
    return depths
