"""The probe: a model that does not load, fails to run, or scores the probe rows with NaN,
outside [0, 1] or in the wrong shape is refused with the reason, before it scores anything."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fraudpipe_common.contracts.transactions import MAX_AMOUNT
from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.features.definition import (
    MCC_RISK,
    NO_PREVIOUS_SECONDS,
    WINDOWS,
    ZSCORE_CLIP,
)
from fraudpipe_common.inference import open_session, prepare
from fraudpipe_common.model_artifact import (
    IncompatibleModelError,
    ModelArtifact,
    ModelArtifactError,
)
from fraudpipe_common.model_probe import (
    ModelProbeError,
    ProbeRow,
    probe_batch,
    probe_rows,
    score_problems,
)

from . import probe_graphs
from .test_model_artifact import make_card

AT = {name: i for i, name in enumerate(FEATURE_NAMES)}


def row(label: str) -> dict[str, float]:
    (found,) = [r for r in probe_rows() if r.label == label]
    return dict(zip(FEATURE_NAMES, found.values, strict=True))


# -- the rows ------------------------------------------------------------------------------------
def test_the_probe_batch_is_one_float32_row_per_case_in_feature_order() -> None:
    batch = probe_batch()
    assert batch.dtype == np.float32
    assert batch.shape == (len(probe_rows()), len(FEATURE_NAMES))
    assert np.isfinite(batch).all()
    assert np.array_equal(batch, probe_batch())  # deterministic


def test_the_rows_reach_the_edges_the_definitions_allow() -> None:
    assert set(row("all zeros").values()) == {0.0}
    first = row("first transaction of a user")
    assert first["seconds_since_last"] == NO_PREVIOUS_SECONDS
    assert first["user_tx_count"] == 0
    assert first["new_device"] == first["new_country"] == first["new_merchant"] == 1
    burst = row("burst of the largest amounts")
    assert burst["amount"] == float(MAX_AMOUNT)
    assert burst["count_1m"] == WINDOWS["1m"]  # one a second over the whole window
    assert burst["sum_1m"] == WINDOWS["1m"] * float(MAX_AMOUNT)
    assert burst["distinct_countries_24h"] == burst["distinct_devices_24h"] == WINDOWS["1m"]
    assert burst["mcc_risk"] == max(MCC_RISK.values())
    assert burst["hour_of_day"] == 23
    assert row("largest amount after the smallest")["amount_zscore"] == ZSCORE_CLIP
    assert row("smallest amount after the largest")["amount_zscore"] == -ZSCORE_CLIP
    typical = row("typical purchase")
    assert 0 < typical["amount"] < 1000
    assert abs(typical["amount_zscore"]) < 1


# -- the verdict on scores (pure) ----------------------------------------------------------------
ROWS = (ProbeRow("a", (0.0,)), ProbeRow("b", (0.0,)), ProbeRow("c", (0.0,)))


@pytest.mark.parametrize(
    "scores",
    [
        np.array([0.0, 0.5, 1.0], dtype=np.float32),
        np.array([[0.1], [0.2], [0.3]], dtype=np.float32),  # [N, 1] flattens alike
        np.array([0.1, 0.2, 0.3], dtype=np.float64),
    ],
)
def test_one_finite_score_in_range_per_row_passes(scores: np.ndarray) -> None:
    assert score_problems(scores, ROWS) == []


@pytest.mark.parametrize(
    ("scores", "problems"),
    [
        (
            np.array([0.5, np.nan, 0.5], dtype=np.float32),
            ["non-finite score nan at probe row 1 (b)"],
        ),
        (
            np.array([np.inf, 0.5, -np.inf], dtype=np.float32),
            ["non-finite score inf at probe row 0 (a)", "non-finite score -inf at probe row 2 (c)"],
        ),
        (
            np.array([0.5, -0.25, 1.5], dtype=np.float32),
            [
                "score -0.25 outside [0, 1] at probe row 1 (b)",
                "score 1.5 outside [0, 1] at probe row 2 (c)",
            ],
        ),
        (
            np.zeros((3, 2), dtype=np.float32),
            ["wrong output shape: [3, 2] for 3 probe rows, expected [3] (one score per row)"],
        ),
        (
            np.zeros(6, dtype=np.float32),
            ["wrong output shape: [6] for 3 probe rows, expected [3] (one score per row)"],
        ),
        (
            np.array(["x", "y", "z"]),
            ["the output is <U1 [3], expected float scores [3]"],
        ),
    ],
)
def test_what_is_wrong_with_the_scores_is_named_row_by_row(
    scores: np.ndarray, problems: list[str]
) -> None:
    assert score_problems(scores, ROWS) == problems


# -- real ONNX Runtime sessions ------------------------------------------------------------------
def test_a_sane_graph_passes_and_scores() -> None:
    model = prepare(probe_graphs.artifact(probe_graphs.squashed("amount_zscore")))
    scores = model.score(probe_batch())
    assert scores.shape == (len(probe_rows()),)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_a_graph_that_outputs_nan_is_refused_naming_the_row() -> None:
    with pytest.raises(ModelProbeError) as refused:
        open_session(probe_graphs.artifact(probe_graphs.nan_on_zeros(), name="nan-model"))
    message = str(refused.value)
    assert message.startswith("model 'nan-model' (sha256:")
    assert "fails the probe: non-finite score nan at probe row 1 (all zeros)" in message
    assert "row 0" not in message  # the other rows score 1.0, which is fine
    assert "then push it again" in message


def test_a_graph_without_its_transform_to_0_1_is_refused_with_the_scores() -> None:
    with pytest.raises(ModelProbeError) as refused:
        open_session(probe_graphs.artifact(probe_graphs.raw_column("amount_zscore")))
    message = str(refused.value)
    assert "score 20 outside [0, 1] at probe row 4 (largest amount after the smallest)" in message
    assert "score -20 outside [0, 1] at probe row 5 (smallest amount after the largest)" in message


def test_a_graph_scoring_both_classes_is_refused_for_its_shape() -> None:
    n = len(probe_rows())
    with pytest.raises(ModelProbeError, match=re.escape(f"wrong output shape: [{n}, 2]")):
        open_session(probe_graphs.artifact(probe_graphs.both_classes()))


def test_a_graph_that_fails_to_run_on_a_batch_is_refused() -> None:
    with pytest.raises(
        ModelProbeError, match=r"the session fails to run on the probe rows: .*Reshape"
    ):
        open_session(probe_graphs.artifact(probe_graphs.one_row_only()))


def test_a_truncated_graph_is_refused_as_unloadable() -> None:
    whole = probe_graphs.squashed("amount")
    truncated = whole[: len(whole) // 2]
    with pytest.raises(ModelProbeError) as refused:
        open_session(probe_graphs.artifact(truncated))
    message = str(refused.value)
    assert "ONNX Runtime cannot load the graph (a truncated or corrupt file?)" in message
    assert len(message) < 800  # ONNX Runtime's own text is quoted, shortened


def test_a_refusal_is_a_model_artifact_error_as_the_services_expect() -> None:
    # The scorer exits on ModelArtifactError, the API answers 503, the operator refuses the
    # candidate: the probe's refusal must be one.
    assert issubclass(ModelProbeError, ModelArtifactError)
    assert issubclass(ModelProbeError, ValueError)


def test_the_signature_is_checked_before_the_probe_runs() -> None:
    onnx_bytes = probe_graphs.nan_on_zeros()
    card = make_card(onnx_bytes, features=(*FEATURE_NAMES[:-1], "device_risk_score"))
    with pytest.raises(IncompatibleModelError, match="device_risk_score"):
        open_session(ModelArtifact(onnx_bytes, card))
