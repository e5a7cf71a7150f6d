"""One training run: fit on the earlier rows, export, prove the export, and measure the
exported graph on the later rows to choose thresholds (what is measured is what ships)."""

from __future__ import annotations

from dataclasses import dataclass

from fraudpipe_common.explain import TreeExplainer
from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import Family, ModelArtifact
from fraudpipe_model.card import build_card
from fraudpipe_model.dataset import Dataset
from fraudpipe_model.explainer import export_explainer
from fraudpipe_model.export import export_onnx
from fraudpipe_model.families import Estimator, fit, hyperparameters
from fraudpipe_model.runtime import PARITY_TOLERANCE, OnnxModel, check_parity

PARITY_ROWS = 10_000
EXPLAINER_CHECK_ROWS = 500
VALIDATION_FRACTION = 0.2


@dataclass(frozen=True)
class TrainedModel:
    estimator: Estimator
    artifact: ModelArtifact


def train_model(
    family: Family,
    dataset: Dataset,
    *,
    seed: int,
    name: str | None = None,
    validation_fraction: float = VALIDATION_FRACTION,
    threads: int | None = None,
) -> TrainedModel:
    train, validation = dataset.split(validation_fraction)
    if train.positives == 0 or validation.positives == 0:
        raise ValueError(
            f"{dataset.spec.describe()}: training has {train.positives} and validation "
            f"{validation.positives} fraud rows; raise --rows or --fraud-rate"
        )
    estimator = fit(family, train.features, train.labels, seed, threads=threads)
    onnx_bytes = export_onnx(estimator, train.features.shape[1])
    model = OnnxModel(onnx_bytes)
    diff = check_parity(model, estimator, validation.features[:PARITY_ROWS])
    explainer = export_explainer(estimator, FEATURE_NAMES)
    checked = validation.features[:EXPLAINER_CHECK_ROWS]
    TreeExplainer.from_json(explainer).check_against(checked, model.scores(checked))
    card = build_card(
        name=name or f"fraudpipe-{family.replace('_', '-')}",
        family=family,
        onnx_bytes=onnx_bytes,
        explainer_bytes=explainer,
        train=train,
        validation=validation,
        validation_scores=model.scores(validation.features),
        export_max_abs_diff=diff,
        hyperparameters=hyperparameters(family, seed),
    )
    return TrainedModel(estimator, ModelArtifact(onnx_bytes, card, explainer=explainer))


__all__ = ["PARITY_ROWS", "PARITY_TOLERANCE", "TrainedModel", "train_model"]
