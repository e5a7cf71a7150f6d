"""Assembling the model card from what training measured (pure)."""

from __future__ import annotations

import datetime as dt
from importlib import metadata
from typing import Any

import numpy as np

from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import (
    Family,
    Metrics,
    ModelCard,
    ModelIO,
    ScoreSemantics,
    Thresholds,
    TrainingData,
)
from fraudpipe_common.oci import sha256_digest
from fraudpipe_model.dataset import Dataset
from fraudpipe_model.export import INPUT_NAME, OUTPUT_NAME
from fraudpipe_model.families import SCORE_TRANSFORMS
from fraudpipe_model.metrics import (
    BLOCK_MAX_FPR,
    FLAG_MAX_FPR,
    THRESHOLD_RULE,
    confusion_at,
    pr_auc,
    recall_at_fpr,
    threshold_at_fpr,
)

VERSIONED = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "fraudpipe-common")


def choose_thresholds(labels: np.ndarray, scores: np.ndarray) -> Thresholds:
    flag = threshold_at_fpr(labels, scores, FLAG_MAX_FPR)
    block = max(threshold_at_fpr(labels, scores, BLOCK_MAX_FPR), flag)
    return Thresholds(flag=min(flag, 1.0), block=min(block, 1.0), rule=THRESHOLD_RULE)


def measure(split: str, labels: np.ndarray, scores: np.ndarray, thresholds: Thresholds) -> Metrics:
    flag = confusion_at(labels, scores, thresholds.flag)
    block = confusion_at(labels, scores, thresholds.block)
    return Metrics(
        split=split,
        rows=len(labels),
        positives=int(labels.sum()),
        pr_auc=pr_auc(labels, scores),
        recall_at_1pct_fpr=recall_at_fpr(labels, scores, FLAG_MAX_FPR),
        flag_precision=flag.precision,
        flag_recall=flag.recall,
        flag_fpr=flag.fpr,
        block_precision=block.precision,
        block_recall=block.recall,
        block_fpr=block.fpr,
    )


def library_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in VERSIONED}


def build_card(
    *,
    name: str,
    family: Family,
    onnx_bytes: bytes,
    explainer_bytes: bytes | None,
    train: Dataset,
    validation: Dataset,
    validation_scores: np.ndarray,
    export_max_abs_diff: float,
    hyperparameters: dict[str, Any],
    created: dt.datetime | None = None,
) -> ModelCard:
    thresholds = choose_thresholds(validation.labels, validation_scores)
    return ModelCard(
        name=name,
        family=family,
        created=created or dt.datetime.now(dt.UTC),
        features=FEATURE_NAMES,
        io=ModelIO(input_name=INPUT_NAME, output_name=OUTPUT_NAME),
        score=ScoreSemantics(transform=SCORE_TRANSFORMS[family]),
        thresholds=thresholds,
        validation=measure(
            f"validation: the last {len(validation)} rows of the training stream, never trained on",
            validation.labels,
            validation_scores,
            thresholds,
        ),
        training_data=TrainingData(
            source=train.spec.describe(),
            sha256=train.sha256(),
            rows=len(train),
            positives=train.positives,
            validation_rows=len(validation),
        ),
        model_sha256=sha256_digest(onnx_bytes),
        explainer_sha256=None if explainer_bytes is None else sha256_digest(explainer_bytes),
        export_max_abs_diff=export_max_abs_diff,
        versions=library_versions(),
        hyperparameters=hyperparameters,
    )
