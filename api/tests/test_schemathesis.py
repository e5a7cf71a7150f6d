"""Schemathesis generates requests from the OpenAPI schema (valid and invalid ones) against
the API with real PostgreSQL, Redis, Kafka and a model behind it: no answer may be a 5xx."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from fraudpipe_common.contracts.decisions import Contribution, Explanation
from fraudpipe_testing.schemathesis import run_schemathesis

from .harness import WRITE_TOKEN, ApiProcess, alert_row, insert_alerts, run

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]


async def explain_all(database_url: str) -> None:
    explanation = Explanation(
        unit="log-odds of fraud",
        base=-5.0,
        contributions=[Contribution(feature="amount", value=12.5, contribution=1.25)],
    )
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE alerts SET explanation = $1::jsonb", explanation.model_dump_json()
        )
    finally:
        await conn.close()


@pytest.mark.timeout(600)
def test_generated_requests_never_get_a_server_error(
    api_env: dict[str, str],
    start_api: Callable[..., ApiProcess],
    model_dir: Path,
    tmp_path: Path,
) -> None:
    api = start_api(api_env, MODEL_REF=str(model_dir), LONG_POLL_MAX_S="0.2")
    run(insert_alerts(api_env["DATABASE_URL"], [alert_row(f"st-{i}") for i in range(5)]))
    run(explain_all(api_env["DATABASE_URL"]))  # so that explanations answer 200, not only 404
    result = run_schemathesis(api.url, WRITE_TOKEN, tmp_path, max_examples=40, timeout_s=540)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested: 13" in result.stdout, result.stdout[-3000:]  # every operation ran
    assert "Traceback" not in api.output()
