"""Candidates from a real OCI registry that a scorer could load but should never use: a graph
that scores NaN or outside [0, 1], or one cut short before it was pushed. The operator refuses
each before Loading, and the reason reaches the canary's status, its Event and the
CanaryHealthy condition (docs/canary.md, docs/security.md)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import onnx
import pytest
from onnx import NodeProto, TensorProto, helper, numpy_helper

from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import (
    Metrics,
    ModelArtifact,
    ModelCard,
    ScoreSemantics,
    Thresholds,
    TrainingData,
    push_model,
)
from fraudpipe_common.oci import sha256_digest
from fraudpipe_operator.canary.validate import candidate_problem
from fraudpipe_operator.conditions import ConditionType, Reason
from fraudpipe_operator.models import FraudPipeline
from fraudpipe_operator.reconcile import canary_observations

from .test_canary_driver import STABLE, FakeKube, Pods, make_driver

pytestmark = pytest.mark.registry


def graph(nodes: list[NodeProto], constants: dict[str, np.ndarray]) -> bytes:
    """A graph with the artifact's signature: `features` [N, 22] to `fraud_score` [N]."""
    width = len(FEATURE_NAMES)
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "candidate",
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, width])],
            [helper.make_tensor_value_info("fraud_score", TensorProto.FLOAT, [None])],
            [numpy_helper.from_array(value, name) for name, value in constants.items()],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
    )
    onnx.checker.check_model(model, full_check=True)
    serialized: bytes = model.SerializeToString()
    return serialized


def nan_on_zeros() -> bytes:
    """row sum / row sum: NaN (0/0) for the all-zero row, 1 elsewhere."""
    return graph(
        [
            helper.make_node("ReduceSum", ["features", "axis"], ["total"], keepdims=0),
            helper.make_node("Div", ["total", "total"], ["fraud_score"]),
        ],
        {"axis": np.array([1], dtype=np.int64)},
    )


def row_sum() -> bytes:
    """The row sum as the score: no transform to [0, 1] at all."""
    return graph(
        [helper.make_node("ReduceSum", ["features", "axis"], ["fraud_score"], keepdims=0)],
        {"axis": np.array([1], dtype=np.int64)},
    )


def card(onnx_bytes: bytes) -> ModelCard:
    """A card describing these bytes, with the scorer's features in order."""
    return ModelCard(
        name="candidate",
        family="gradient_boosting",
        created=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        features=FEATURE_NAMES,
        score=ScoreSemantics(transform="predict_proba(X)[:, 1]"),
        thresholds=Thresholds(flag=0.2, block=0.8, rule="test"),
        validation=Metrics(
            split="validation",
            rows=1,
            positives=0,
            pr_auc=0.0,
            recall_at_1pct_fpr=0.0,
            flag_precision=0.0,
            flag_recall=0.0,
            flag_fpr=0.0,
            block_precision=0.0,
            block_recall=0.0,
            block_fpr=0.0,
        ),
        training_data=TrainingData(
            source="none", sha256="sha256:" + "0" * 64, rows=1, positives=0, validation_rows=1
        ),
        model_sha256=sha256_digest(onnx_bytes),
        export_max_abs_diff=0.0,
    )


async def push_candidate(registry: str, repository: str, onnx_bytes: bytes) -> str:
    return str(await push_model(registry, repository, ModelArtifact(onnx_bytes, card(onnx_bytes))))


async def test_a_sane_candidate_passes(oci_registry: str, oci_repository: str) -> None:
    squashed = graph(
        [
            helper.make_node("ReduceSum", ["features", "axis"], ["total"], keepdims=0),
            helper.make_node("Sigmoid", ["total"], ["fraud_score"]),
        ],
        {"axis": np.array([1], dtype=np.int64)},
    )
    ref = await push_candidate(oci_registry, oci_repository, squashed)
    assert await candidate_problem(ref, plain_http=True) is None


@pytest.mark.parametrize(
    ("onnx_bytes", "reason"),
    [
        (nan_on_zeros(), "non-finite score nan at probe row 1 (all zeros)"),
        (row_sum(), "outside [0, 1] at probe row 0 (typical purchase)"),
        (row_sum()[:100], "ONNX Runtime cannot load the graph (a truncated or corrupt file?)"),
    ],
    ids=["nan", "out-of-range", "truncated"],
)
async def test_a_candidate_that_fails_the_probe_is_refused_with_the_reason(
    oci_registry: str, oci_repository: str, onnx_bytes: bytes, reason: str
) -> None:
    ref = await push_candidate(oci_registry, oci_repository, onnx_bytes)
    problem = await candidate_problem(ref, plain_http=True)
    assert problem is not None
    assert reason in problem
    assert problem.startswith("model 'candidate' (sha256:")


async def test_a_nan_candidate_never_loads_and_every_report_says_why(
    oci_registry: str, oci_repository: str
) -> None:
    ref = await push_candidate(oci_registry, oci_repository, nan_on_zeros())
    kube = FakeKube({"model": {"ref": STABLE, "canary": {"ref": ref}}})
    driver = make_driver(kube, Pods())
    await driver.tick("ns", "p")  # saves Validating
    result = await driver.tick("ns", "p")  # validates
    status = kube.body["status"]["canary"]
    assert status["phase"] == "Invalid"
    assert "gets no traffic" in status["message"]
    assert "non-finite score nan at probe row 1 (all zeros)" in status["message"]
    (event,) = result.events
    assert (event.type, event.reason) == ("Warning", "CandidateInvalid")
    assert "non-finite score nan" in event.message
    (healthy,) = canary_observations(FraudPipeline.from_body(kube.body).status.canary)
    assert healthy.type is ConditionType.CANARY_HEALTHY
    assert not healthy.ok
    assert healthy.reason is Reason.CANDIDATE_INVALID
    assert "non-finite score nan at probe row 1 (all zeros)" in healthy.message
