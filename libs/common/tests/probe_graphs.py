"""Tiny ONNX graphs with the artifact's signature (input `features` [N, 22], output
`fraud_score` [N]) that score sanely or not, built with onnx's helpers for the probe's tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import NodeProto, TensorProto, helper, numpy_helper

from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import ModelArtifact

from .test_model_artifact import make_card

WIDTH = len(FEATURE_NAMES)
OPSET = [helper.make_opsetid("", 17)]


def graph(
    nodes: Sequence[NodeProto],
    constants: dict[str, np.ndarray],
    output_shape: Sequence[int | None] = (None,),
) -> bytes:
    model = helper.make_model(
        helper.make_graph(
            list(nodes),
            "probe_test",
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, WIDTH])],
            [helper.make_tensor_value_info("fraud_score", TensorProto.FLOAT, output_shape)],
            [numpy_helper.from_array(value, name) for name, value in constants.items()],
        ),
        opset_imports=OPSET,
        ir_version=8,
    )
    onnx.checker.check_model(model, full_check=True)
    serialized: bytes = model.SerializeToString()
    return serialized


def squashed(feature: str) -> bytes:
    """sigmoid(one feature column): finite and in [0, 1] for any finite input."""
    return graph(
        [
            helper.make_node("Gather", ["features", "column"], ["raw"], axis=1),
            helper.make_node("Sigmoid", ["raw"], ["fraud_score"]),
        ],
        {"column": np.array(FEATURE_NAMES.index(feature), dtype=np.int64)},
    )


def raw_column(feature: str) -> bytes:
    """One feature column as the score: a graph whose transform to [0, 1] was left out."""
    return graph(
        [helper.make_node("Gather", ["features", "column"], ["fraud_score"], axis=1)],
        {"column": np.array(FEATURE_NAMES.index(feature), dtype=np.int64)},
    )


def nan_on_zeros() -> bytes:
    """row sum / row sum: 1 for every row but the all-zero one, where it is 0/0 = NaN."""
    return graph(
        [
            helper.make_node("ReduceSum", ["features", "axis"], ["total"], keepdims=0),
            helper.make_node("Div", ["total", "total"], ["fraud_score"]),
        ],
        {"axis": np.array([1], dtype=np.int64)},
    )


def both_classes() -> bytes:
    """[N, 2]: both classes' probabilities instead of one score per row."""
    return graph(
        [
            helper.make_node("Gather", ["features", "columns"], ["pair"], axis=1),
            helper.make_node("Sigmoid", ["pair"], ["fraud_score"]),
        ],
        {"columns": np.array([0, 1], dtype=np.int64)},
        output_shape=(None, 2),
    )


def one_row_only() -> bytes:
    """Reshapes its input to a single row: loads, but fails to run on a batch of several."""
    return graph(
        [
            helper.make_node("Reshape", ["features", "one_row"], ["row"]),
            helper.make_node("ReduceSum", ["row", "axis"], ["total"], keepdims=0),
            helper.make_node("Sigmoid", ["total"], ["fraud_score"]),
        ],
        {
            "one_row": np.array([1, WIDTH], dtype=np.int64),
            "axis": np.array([1], dtype=np.int64),
        },
    )


def artifact(onnx_bytes: bytes, name: str = "probe-test") -> ModelArtifact:
    """The graph with a card that describes it (so only the probe can refuse it)."""
    return ModelArtifact(onnx_bytes, make_card(onnx_bytes, name=name))
