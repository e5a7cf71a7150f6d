"""ONNX export: both families reproduce scikit-learn within 1e-5 on 10,000 unseen rows,
under the one input/output contract the scorer relies on."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import Family
from fraudpipe_model.dataset import Dataset, DatasetSpec, load_dataset
from fraudpipe_model.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    average_path_length,
    export_onnx,
    float32_at_or_below,
)
from fraudpipe_model.families import FAMILIES, Estimator, fit, sklearn_scores
from fraudpipe_model.runtime import (
    PARITY_TOLERANCE,
    OnnxModel,
    ParityError,
    check_parity,
    max_abs_diff,
)

TRAIN_ROWS = 30_000
PARITY_ROWS = 10_000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    spec = DatasetSpec(rows=TRAIN_ROWS + PARITY_ROWS, seed=11)
    return load_dataset(spec, tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="module", params=FAMILIES)
def fitted(request: pytest.FixtureRequest, dataset: Dataset) -> tuple[Estimator, bytes]:
    family: Family = request.param
    estimator = fit(
        family, dataset.features[:TRAIN_ROWS], dataset.labels[:TRAIN_ROWS], seed=3, threads=1
    )
    return estimator, export_onnx(estimator, len(FEATURE_NAMES))


def test_onnx_matches_scikit_learn_on_10000_unseen_rows(
    fitted: tuple[Estimator, bytes], dataset: Dataset
) -> None:
    estimator, onnx_bytes = fitted
    rows = dataset.features[TRAIN_ROWS:]
    assert len(rows) == PARITY_ROWS
    diff = check_parity(OnnxModel(onnx_bytes), estimator, rows)
    assert diff <= PARITY_TOLERANCE
    scores = sklearn_scores(estimator, rows)
    assert scores.std() > 0.01  # a constant model would pass parity trivially


def test_graph_has_one_float_input_and_one_score_output_in_unit_range(
    fitted: tuple[Estimator, bytes], dataset: Dataset
) -> None:
    _, onnx_bytes = fitted
    model = OnnxModel(onnx_bytes)
    (tensor,) = model.session.get_inputs()
    assert (tensor.name, tensor.type, tensor.shape[1]) == (
        INPUT_NAME,
        "tensor(float)",
        len(FEATURE_NAMES),
    )
    assert [o.name for o in model.session.get_outputs()] == [OUTPUT_NAME]
    scores = model.scores(dataset.features[:1000])
    assert scores.shape == (1000,)
    assert scores.dtype == np.float32
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    opsets = {o.domain: o.version for o in onnx.load_from_string(onnx_bytes).opset_import}
    assert opsets[""] == 17
    assert opsets["ai.onnx.ml"] <= 3  # skl2onnx lowers it to what the graph needs


def test_gradient_boosting_scores_rank_fraud_above_legitimate(
    dataset: Dataset, fitted: tuple[Estimator, bytes]
) -> None:
    _, onnx_bytes = fitted
    scores = OnnxModel(onnx_bytes).scores(dataset.features[TRAIN_ROWS:])
    labels = dataset.labels[TRAIN_ROWS:]
    assert scores[labels == 1].mean() > scores[labels == 0].mean()


def test_parity_check_catches_a_wrong_graph(
    fitted: tuple[Estimator, bytes], dataset: Dataset
) -> None:
    estimator, _ = fitted
    other = fit("isolation_forest", dataset.features[:5000], dataset.labels[:5000], seed=99)
    wrong = OnnxModel(export_onnx(other, len(FEATURE_NAMES)))
    assert max_abs_diff(wrong, estimator, dataset.features[:1000]) > PARITY_TOLERANCE
    with pytest.raises(ParityError, match="do not ship it"):
        check_parity(wrong, estimator, dataset.features[:1000])


def test_average_path_length_matches_the_paper() -> None:
    assert average_path_length(1) == 0.0
    assert average_path_length(2) == 1.0
    # c(256) = 2 H(255) - 2 * 255 / 256 with H(i) ~ ln(i) + Euler's constant
    assert average_path_length(256) == pytest.approx(10.2447, abs=1e-3)


@pytest.mark.parametrize("value", [0.1, 1 / 3, 12345.678901, -0.7, 3.0, 1e-30])
def test_float32_threshold_keeps_float64_comparisons(value: float) -> None:
    threshold = float32_at_or_below(value)
    assert np.float32(threshold) == threshold  # representable
    assert threshold <= value
    above = np.nextafter(np.float32(threshold), np.float32(np.inf))
    assert float(above) > value  # no float32 lies between: x <= t exactly when x <= value


def test_export_refuses_an_unknown_estimator() -> None:
    with pytest.raises(TypeError, match="cannot export"):
        export_onnx(object(), 3)
