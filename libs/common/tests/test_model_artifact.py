"""The model artifact format without a registry: the card, file pairs and compatibility."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import (
    CARD_FILE,
    MODEL_FILE,
    IncompatibleModelError,
    Metrics,
    ModelArtifact,
    ModelArtifactError,
    ModelCard,
    ScoreSemantics,
    Thresholds,
    TrainingData,
    check_compatible,
    feature_mismatch,
    pull_model,
    read_model_dir,
    write_model_dir,
)
from fraudpipe_common.oci import sha256_digest

ONNX = b"\x08\x08stand-in for an ONNX graph"


def make_card(onnx: bytes = ONNX, **changes: Any) -> ModelCard:
    fields: dict[str, Any] = {
        "name": "fraudpipe-gradient-boosting",
        "family": "gradient_boosting",
        "created": dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC),
        "features": FEATURE_NAMES,
        "score": ScoreSemantics(transform="predict_proba(X)[:, 1]"),
        "thresholds": Thresholds(flag=0.2, block=0.8, rule="FPR 1% / 0.1%"),
        "validation": Metrics(
            split="validation",
            rows=1000,
            positives=10,
            pr_auc=0.93,
            recall_at_1pct_fpr=0.9,
            flag_precision=0.5,
            flag_recall=0.9,
            flag_fpr=0.01,
            block_precision=0.9,
            block_recall=0.8,
            block_fpr=0.001,
        ),
        "training_data": TrainingData(
            source="synthetic seed=1",
            sha256="sha256:" + "0" * 64,
            rows=4000,
            positives=40,
            validation_rows=1000,
        ),
        "model_sha256": sha256_digest(onnx),
        "export_max_abs_diff": 3e-7,
        "versions": {"scikit-learn": "1.9.1"},
        "hyperparameters": {"max_iter": 300, "early_stopping": False},
    }
    return ModelCard(**(fields | changes))


@dataclass
class FakeTensor:
    name: str
    shape: Sequence[int | str | None]
    type: str = "tensor(float)"


@dataclass
class FakeSession:
    inputs: list[FakeTensor]
    outputs: list[FakeTensor]

    def get_inputs(self) -> list[FakeTensor]:
        return self.inputs

    def get_outputs(self) -> list[FakeTensor]:
        return self.outputs


def session(
    width: int | str = len(FEATURE_NAMES),
    input_name: str = "features",
    output_name: str = "fraud_score",
    dtype: str = "tensor(float)",
) -> FakeSession:
    return FakeSession(
        [FakeTensor(input_name, [None, width], dtype)], [FakeTensor(output_name, [None])]
    )


def test_card_survives_a_json_round_trip() -> None:
    card = make_card()
    assert ModelCard.from_json(card.to_json()) == card


def test_card_ignores_fields_added_by_a_later_writer() -> None:
    text = card_json_with(extra_field="from the future")
    assert ModelCard.from_json(text) == make_card()


def card_json_with(**extra: str) -> bytes:
    return orjson.dumps(orjson.loads(make_card().to_json()) | extra)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"features": ("amount", "amount")}, "feature names repeat"),
        ({"created": dt.datetime(2026, 1, 1)}, "time zone"),
        ({"model_sha256": "md5:abc"}, "model_sha256"),
        ({"family": "random_forest"}, "family"),
    ],
)
def test_card_rejects_inconsistent_fields(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_card(**changes)


def test_block_threshold_may_not_be_looser_than_flag() -> None:
    with pytest.raises(ValueError, match="below flag threshold"):
        Thresholds(flag=0.5, block=0.4, rule="r")


def test_invalid_card_json_is_reported_as_an_artifact_error() -> None:
    with pytest.raises(ModelArtifactError, match="invalid model card"):
        ModelCard.from_json(b'{"name": "x"}')


def test_matching_features_and_graph_are_compatible() -> None:
    check_compatible(make_card(), FEATURE_NAMES, session())
    check_compatible(make_card(), FEATURE_NAMES, session(width="N"))  # symbolic width: unknown


def test_a_feature_the_scorer_does_not_compute_is_named() -> None:
    card = make_card(features=(*FEATURE_NAMES, "merchant_chargebacks_30d"))
    with pytest.raises(
        IncompatibleModelError, match=r"not computed: \['merchant_chargebacks_30d'\]"
    ):
        check_compatible(card, FEATURE_NAMES)


def test_a_feature_the_model_does_not_take_is_named() -> None:
    card = make_card(features=FEATURE_NAMES[:-1])
    with pytest.raises(
        IncompatibleModelError, match="does not take: \\['home_country_mismatch'\\]"
    ):
        check_compatible(card, FEATURE_NAMES)


def test_reordered_features_name_the_first_differing_position() -> None:
    swapped = (FEATURE_NAMES[1], FEATURE_NAMES[0], *FEATURE_NAMES[2:])
    with pytest.raises(IncompatibleModelError) as caught:
        check_compatible(make_card(features=swapped), FEATURE_NAMES)
    message = str(caught.value)
    assert "different order: position 0 is 'amount_log' in the model but 'amount'" in message
    assert "fraudpipe-model train" in message  # says what to do


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (session(width=21), "is 21 wide but the card lists 22 features"),
        (session(input_name="input"), "no input 'features'"),
        (session(output_name="probabilities"), "no output 'fraud_score'"),
        (session(dtype="tensor(double)"), "tensor\\(double\\), expected tensor\\(float\\)"),
    ],
)
def test_a_graph_that_disagrees_with_its_card_is_refused(graph: FakeSession, message: str) -> None:
    with pytest.raises(IncompatibleModelError, match=message):
        check_compatible(make_card(), FEATURE_NAMES, graph)


def test_feature_mismatch_is_empty_only_for_identical_order() -> None:
    assert feature_mismatch(FEATURE_NAMES, FEATURE_NAMES) == []
    assert feature_mismatch(FEATURE_NAMES, tuple(reversed(FEATURE_NAMES))) != []


def test_model_directory_round_trip(tmp_path: Path) -> None:
    artifact = ModelArtifact(ONNX, make_card())
    write_model_dir(tmp_path / "m", artifact)
    assert read_model_dir(tmp_path / "m") == artifact


def test_a_card_paired_with_other_onnx_bytes_is_refused(tmp_path: Path) -> None:
    write_model_dir(tmp_path, ModelArtifact(ONNX, make_card()))
    (tmp_path / MODEL_FILE).write_bytes(ONNX + b"tampered")
    with pytest.raises(ModelArtifactError, match="do not belong together"):
        read_model_dir(tmp_path)
    with pytest.raises(ModelArtifactError, match="do not belong together"):
        write_model_dir(tmp_path / "other", ModelArtifact(b"other", make_card()))


def test_a_directory_without_a_card_names_the_missing_file(tmp_path: Path) -> None:
    (tmp_path / MODEL_FILE).write_bytes(ONNX)
    with pytest.raises(ModelArtifactError, match=CARD_FILE):
        read_model_dir(tmp_path)


async def test_models_are_pulled_by_digest_only() -> None:
    with pytest.raises(ModelArtifactError, match="by digest only"):
        await pull_model("127.0.0.1:5000/models/fraud:latest")
