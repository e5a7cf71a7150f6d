"""`fraudpipe-scorer migrate`: applies the shared schema once, safe to repeat and to race."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from fraudpipe_common.migrations import migrations
from fraudpipe_scorer.migrate import migrate

pytestmark = pytest.mark.postgres

SCORER = str(Path(sys.executable).parent / "fraudpipe-scorer")


async def test_concurrent_runs_apply_each_migration_once(database_url: str) -> None:
    results = await asyncio.gather(*(migrate(database_url) for _ in range(4)))

    versions = [m.version for m in migrations()]
    assert sorted(v for applied in results for v in applied) == versions  # once in total
    conn = await asyncpg.connect(database_url)
    try:
        recorded = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        assert recorded == versions
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'alerts'"
            )
        }
        assert {"tx_id", "decision", "score", "model_digest", "track", "reasons"} <= columns
    finally:
        await conn.close()


def test_the_console_command_migrates_and_repeats_harmlessly(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    first = subprocess.run([SCORER, "migrate"], env=env, capture_output=True, text=True)
    second = subprocess.run([SCORER, "migrate"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert f"{len(migrations())} migration(s) applied" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "0 migration(s) applied" in second.stdout


def test_migrate_without_a_database_url_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run([SCORER, "migrate"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "database_url" in result.stderr.lower()


def test_the_shared_schema_starts_with_the_alerts_table() -> None:
    first = migrations()[0]
    assert first.version == "0001_alerts_feedback"
    assert "CREATE TABLE IF NOT EXISTS alerts" in first.sql
