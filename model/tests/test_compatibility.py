"""check_compatible against real onnxruntime sessions of exported graphs."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import (
    Family,
    IncompatibleModelError,
    Metrics,
    ModelCard,
    ScoreSemantics,
    Thresholds,
    TrainingData,
    check_compatible,
)
from fraudpipe_common.oci import sha256_digest
from fraudpipe_model.export import export_onnx
from fraudpipe_model.families import fit
from fraudpipe_model.runtime import InvalidGraphError, OnnxModel


def card_for(
    family: Family,
    name: str,
    thresholds: Thresholds | None = None,
    features: tuple[str, ...] = FEATURE_NAMES,
    onnx: bytes = b"",
) -> ModelCard:
    return ModelCard(
        name=name,
        family=family,
        created=dt.datetime.now(dt.UTC),
        features=features,
        score=ScoreSemantics(transform="t"),
        thresholds=thresholds or Thresholds(flag=0.5, block=0.9, rule="r"),
        validation=Metrics(
            split="s",
            rows=1,
            positives=1,
            pr_auc=1.0,
            recall_at_1pct_fpr=1.0,
            flag_precision=1.0,
            flag_recall=1.0,
            flag_fpr=0.0,
            block_precision=1.0,
            block_recall=1.0,
            block_fpr=0.0,
        ),
        training_data=TrainingData(
            source="s", sha256="sha256:" + "0" * 64, rows=1, positives=1, validation_rows=1
        ),
        model_sha256=sha256_digest(onnx),
        export_max_abs_diff=0.0,
    )


def graph_of_width(width: int) -> OnnxModel:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, width)).astype(np.float32)
    labels = (features[:, 0] > 1.5).astype(np.int8)
    estimator = fit("isolation_forest", features, labels, seed=0)
    return OnnxModel(export_onnx(estimator, width))


def test_an_exported_graph_fits_a_card_for_the_current_features() -> None:
    session = graph_of_width(len(FEATURE_NAMES)).session
    check_compatible(card_for("isolation_forest", "m"), FEATURE_NAMES, session)


def test_a_graph_narrower_than_its_card_is_refused() -> None:
    session = graph_of_width(len(FEATURE_NAMES) - 1).session
    with pytest.raises(IncompatibleModelError, match="is 21 wide but the card lists 22 features"):
        check_compatible(card_for("isolation_forest", "m"), FEATURE_NAMES, session)


def test_a_model_trained_on_fewer_features_is_refused_naming_them() -> None:
    session = graph_of_width(len(FEATURE_NAMES) - 1).session
    card = card_for("isolation_forest", "old", features=FEATURE_NAMES[:-1])
    check_compatible(card, FEATURE_NAMES[:-1], session)  # fine for a scorer of that era
    with pytest.raises(
        IncompatibleModelError, match="does not take: \\['home_country_mismatch'\\]"
    ):
        check_compatible(card, FEATURE_NAMES, session)


def test_bytes_that_are_not_a_graph_are_reported() -> None:
    with pytest.raises(InvalidGraphError, match="onnxruntime cannot load"):
        OnnxModel(b"not a graph")
