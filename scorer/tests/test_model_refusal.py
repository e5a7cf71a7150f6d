"""A model that loads but scores NaN or outside [0, 1] is refused at start, stable or
candidate: the scorer logs why and exits before it joins its group, so it is never ready and
decides nothing (docs/security.md, "Models pinned by digest and verified")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.model_artifact import ModelArtifact, read_model_dir, write_model_dir
from fraudpipe_common.oci import sha256_digest

from .harness import ScorerProcess, produce, read_committed, traffic, transaction_messages
from .test_pipeline import StartScorer

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(120)]


def row_sum_graph(*, divided_by_itself: bool) -> bytes:
    """The row sum (far outside [0, 1]), or the row sum over itself (NaN for a zero row)."""
    nodes = [helper.make_node("ReduceSum", ["features", "axis"], ["total"], keepdims=0)]
    if divided_by_itself:
        nodes.append(helper.make_node("Div", ["total", "total"], ["fraud_score"]))
    else:
        nodes.append(helper.make_node("Identity", ["total"], ["fraud_score"]))
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "bad",
            [
                helper.make_tensor_value_info(
                    "features", TensorProto.FLOAT, [None, len(FEATURE_NAMES)]
                )
            ],
            [helper.make_tensor_value_info("fraud_score", TensorProto.FLOAT, [None])],
            [numpy_helper.from_array(np.array([1], dtype=np.int64), "axis")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
    )
    onnx.checker.check_model(model, full_check=True)
    serialized: bytes = model.SerializeToString()
    return serialized


def bad_model_dir(trained: Path, out: Path, onnx_bytes: bytes) -> Path:
    """The graph under the trained model's card, updated to describe it."""
    card = read_model_dir(trained).card.model_copy(
        update={"name": "bad", "model_sha256": sha256_digest(onnx_bytes), "explainer_sha256": None}
    )
    write_model_dir(out, ModelArtifact(onnx_bytes, card))
    return out


async def exits_without_ever_being_ready(scorer: ScorerProcess, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while scorer.proc.poll() is None and time.monotonic() < deadline:
        try:
            status, _ = await asyncio.to_thread(scorer.get, "/readyz")
            assert status != 200, f"the scorer became ready:\n{scorer.tail()}"
        except OSError:
            pass  # not listening yet, or gone
        await asyncio.sleep(0.1)
    assert scorer.proc.poll() is not None, f"the scorer still runs:\n{scorer.tail()}"
    return scorer.proc.returncode


async def test_a_stable_model_that_scores_nan_is_refused_and_nothing_is_decided(
    pipeline_env: dict[str, str], start_scorer: StartScorer, model_dir: Path, tmp_path: Path
) -> None:
    env = pipeline_env
    bad = bad_model_dir(model_dir, tmp_path / "nan", row_sum_graph(divided_by_itself=True))
    txs = traffic(50, fraud_rate=0.02)
    await produce(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["TRANSACTIONS_TOPIC"], transaction_messages(txs)
    )

    scorer = start_scorer(MODEL_REF=str(bad))
    assert await exits_without_ever_being_ready(scorer) == 1
    log = scorer.log.read_text()
    assert f"ERROR fraudpipe_scorer.cli: not starting: the stable model {bad} is refused: " in log
    assert "fails the probe: non-finite score nan at probe row 1 (all zeros)" in log
    committed = await read_committed(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["DECISIONS_TOPIC"], at_least=1, timeout_s=3
    )
    assert committed.records == []


async def test_a_candidate_scoring_outside_0_1_is_refused_at_start(
    start_scorer: StartScorer, model_dir: Path, tmp_path: Path
) -> None:
    bad = bad_model_dir(model_dir, tmp_path / "raw", row_sum_graph(divided_by_itself=False))
    scorer = start_scorer(CANARY_MODEL_REF=str(bad))
    assert await exits_without_ever_being_ready(scorer) == 1
    log = scorer.log.read_text()
    assert f"not starting: the candidate model {bad} is refused: " in log
    assert "outside [0, 1] at probe row 0 (typical purchase)" in log
