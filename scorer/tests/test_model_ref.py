"""MODEL_REF: a model pulled from an OCI registry by digest, and refusals that say why."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fraudpipe_common.model_artifact import push_model, read_model_dir

from .harness import SCORER, ScorerProcess, produce, read_committed, traffic, transaction_messages
from .test_pipeline import StartScorer, by_tx

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.registry,
    pytest.mark.timeout(120),
]


async def test_a_model_pulled_by_digest_signs_every_decision_with_that_digest(
    pipeline_env: dict[str, str],
    start_scorer: StartScorer,
    model_dir: Path,
    oci_registry: str,
    oci_repository: str,
) -> None:
    env = pipeline_env
    ref = await push_model(oci_registry, oci_repository, read_model_dir(model_dir))
    txs = traffic(500, fraud_rate=0.02)
    await produce(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["TRANSACTIONS_TOPIC"], transaction_messages(txs)
    )

    scorer: ScorerProcess = start_scorer(MODEL_REF=str(ref))
    await scorer.wait_ready()
    committed = await read_committed(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["DECISIONS_TOPIC"], at_least=len(txs), timeout_s=60
    )
    decided = by_tx(committed.decisions())
    assert set(decided) == {tx.tx_id for tx in txs}
    assert {d.model_digest for d in decided.values()} == {ref.digest}
    assert scorer.terminate() == 0


def test_a_model_ref_without_a_digest_is_refused_with_the_reason(
    pipeline_env: dict[str, str], oci_registry: str
) -> None:
    env = pipeline_env | {"MODEL_REF": f"{oci_registry}/fraudpipe/model:latest"}
    result = subprocess.run(
        [SCORER], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "by digest" in result.stderr
