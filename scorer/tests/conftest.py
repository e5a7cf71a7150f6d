from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from fraudpipe_scorer.migrate import migrate

from .harness import ScorerProcess, create_topics, delete_topics, free_port, train_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gradient-boosting model trained the way `fraudpipe-model train` always does (the
    scorer may not import the model package), small enough to train in seconds."""
    return train_model(tmp_path_factory.mktemp("model") / "gbt")


@pytest.fixture
async def pipeline_env(
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    database_url: str,
    model_dir: Path,
) -> AsyncIterator[dict[str, str]]:
    """Fresh topics (3 input partitions), a migrated database and a scorer environment."""
    suffix = uuid.uuid4().hex[:8]
    topics = {f"tx-{suffix}": 3, f"decisions-{suffix}": 3, f"dlq-{suffix}": 1}
    await create_topics(kafka_bootstrap, topics)
    await migrate(database_url)
    tx, decisions, dlq = topics
    yield {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TRANSACTIONS_TOPIC": tx,
        "DECISIONS_TOPIC": decisions,
        "DLQ_TOPIC": dlq,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": redis_prefix,
        "DATABASE_URL": database_url,
        "MODEL_REF": str(model_dir),
        "CONSUMER_GROUP": f"scorer-{suffix}",
        "METRICS_PORT": str(free_port()),
        "LOG_LEVEL": "INFO",
    }
    await delete_topics(kafka_bootstrap, list(topics))


@pytest.fixture
def start_scorer(
    pipeline_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., ScorerProcess]]:
    started: list[ScorerProcess] = []

    def start(**overrides: str) -> ScorerProcess:
        env = pipeline_env | {"METRICS_PORT": str(free_port())} | overrides
        scorer = ScorerProcess(env, tmp_path / f"scorer-{len(started)}.log")
        started.append(scorer)
        return scorer

    yield start
    for scorer in started:
        if scorer.proc.poll() is None:
            scorer.proc.kill()
            scorer.proc.wait()
