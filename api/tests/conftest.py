from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import (
    BIN,
    READ_TOKEN,
    WRITE_TOKEN,
    ApiProcess,
    free_port,
    key_line,
    migrate,
)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gradient-boosting model trained the way `fraudpipe-model train` does (the API may not
    import the model package), small enough to train in seconds."""
    out = tmp_path_factory.mktemp("model") / "gbt"
    train = [str(BIN / "fraudpipe-model"), "train", "--rows", "60000", "--threads", "1"]
    subprocess.run(
        [*train, "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text(
        "# sha256:scope:name\n"
        + key_line(WRITE_TOKEN, "write", "analysts")
        + "\n"
        + key_line(READ_TOKEN, "read", "dashboard")
        + "\n"
    )
    return path


@pytest.fixture
async def api_env(
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    redis_url: str,
    redis_prefix: str,
    database_url: str,
    keys_file: Path,
) -> dict[str, str]:
    """A migrated database, a fresh transactions topic and key prefix, and two keys."""
    await migrate(database_url)
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TRANSACTIONS_TOPIC": kafka_topic(partitions=3, prefix="api-tx"),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": redis_prefix,
        "DATABASE_URL": database_url,
        "API_KEYS_FILE": str(keys_file),
        "API_HOST": "127.0.0.1",
        "METRICS_PORT": "0",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    started: list[ApiProcess] = []

    def start(env: dict[str, str], **overrides: str) -> ApiProcess:
        name = uuid.uuid4().hex[:6]
        api = ApiProcess(
            env | {"API_PORT": str(free_port())} | overrides, tmp_path / f"api-{name}.log"
        )
        started.append(api)
        api.wait_healthy()
        return api

    yield start
    for api in started:
        api.stop()


@pytest.fixture
def api(api_env: dict[str, str], start_api: Callable[..., ApiProcess]) -> ApiProcess:
    return start_api(api_env)
