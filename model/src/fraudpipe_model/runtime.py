"""Running an exported graph with onnxruntime, and checking it against scikit-learn."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from fraudpipe_model.export import INPUT_NAME, OUTPUT_NAME
from fraudpipe_model.families import Estimator, sklearn_scores

PARITY_TOLERANCE = 1e-5


class ParityError(AssertionError):
    """The ONNX graph does not reproduce the estimator's scores."""


class InvalidGraphError(ValueError):
    """The bytes are not an ONNX graph onnxruntime can run."""


class OnnxModel:
    def __init__(self, onnx_bytes: bytes, *, threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (all cores)
        try:
            self.session = ort.InferenceSession(
                onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped exception classes
            raise InvalidGraphError(f"onnxruntime cannot load the model: {exc}") from exc

    def scores(self, features: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(features, dtype=np.float32)
        (scores,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        return np.asarray(scores)


def max_abs_diff(onnx_model: OnnxModel, estimator: Estimator, features: np.ndarray) -> float:
    onnx_scores = onnx_model.scores(features).astype(np.float64)
    reference = sklearn_scores(estimator, features)
    if onnx_scores.shape != reference.shape:
        raise ParityError(f"ONNX gives shape {onnx_scores.shape}, scikit-learn {reference.shape}")
    return float(np.max(np.abs(onnx_scores - reference))) if len(reference) else 0.0


def check_parity(onnx_model: OnnxModel, estimator: Estimator, features: np.ndarray) -> float:
    """The largest score difference; raises ParityError above PARITY_TOLERANCE."""
    diff = max_abs_diff(onnx_model, estimator, features)
    if not diff <= PARITY_TOLERANCE:
        raise ParityError(
            f"ONNX and scikit-learn scores differ by up to {diff:.3g} on {len(features)} rows "
            f"(tolerance {PARITY_TOLERANCE}); the export is wrong, do not ship it"
        )
    return diff
