"""GET /v1/stats by country: counted from the alerts' `country` column once the scorer's
migration has added it, null before."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg
import httpx
import pytest

from .harness import READ_TOKEN, ApiProcess, alert_row, insert_alerts

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
# Migration 0003's statement (idempotent): drops and re-adds below need it by itself.
ADD_COUNTRY = "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS country text"


async def _insert_with_countries(database_url: str, rows: Sequence[tuple[str, str | None]]) -> None:
    """(tx_id, country) alerts, written with their country as the scorer will write them."""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(ADD_COUNTRY)
        await conn.executemany(
            "INSERT INTO alerts (tx_id, user_id, decision, score, model_digest, track, reasons, "
            "features, event_ts, decided_ts, country) VALUES ($1, $2, $3, $4, $5, $6, "
            "$7::jsonb, $8::jsonb, $9, $10, $11)",
            [
                (
                    *alert_row(
                        tx_id,
                        decision="BLOCK" if tx_id.startswith("b") else "FLAG",
                        decided=old if tx_id.startswith("old") else None,
                    ),
                    country,
                )
                for tx_id, country in rows
            ],
        )
    finally:
        await conn.close()


async def test_stats_count_alerts_by_country_in_the_window(api: ApiProcess) -> None:
    await _insert_with_countries(
        api.env["DATABASE_URL"],
        [
            ("f1", "FR"),
            ("b1", "FR"),
            ("f2", "FR"),
            ("f3", "DE"),
            ("b2", "DE"),
            ("f4", "NL"),
            ("f5", None),  # written before the scorer stored countries
            ("old1", "US"),  # five hours ago
            ("old2", "US"),
            ("old3", "US"),
        ],
    )
    async with httpx.AsyncClient(base_url=api.url, headers=READ) as client:
        hour = (await client.get("/v1/stats", params={"window": "1h"})).json()
        day = (await client.get("/v1/stats", params={"window": "1d"})).json()
    assert hour["by_country"] == [
        {"country": "FR", "alerts": 3, "blocks": 1},
        {"country": "DE", "alerts": 2, "blocks": 1},
        {"country": "NL", "alerts": 1, "blocks": 0},
    ]
    assert hour["alerts"] == 7  # the alert without a country still counts as an alert
    assert [c["country"] for c in day["by_country"]] == ["FR", "US", "DE", "NL"]


async def test_stats_list_at_most_ten_countries(api: ApiProcess) -> None:
    countries = [chr(65 + i) * 2 for i in range(12)]  # AA, BB, … LL
    rows = [(f"f{i}-{n}", country) for i, country in enumerate(countries) for n in range(i + 1)]
    await _insert_with_countries(api.env["DATABASE_URL"], rows)
    async with httpx.AsyncClient(base_url=api.url, headers=READ) as client:
        stats = (await client.get("/v1/stats")).json()
    assert len(stats["by_country"]) == 10
    assert stats["by_country"][0] == {"country": countries[11], "alerts": 12, "blocks": 0}


async def test_stats_by_country_is_null_before_alerts_have_a_country(api: ApiProcess) -> None:
    database_url = api.env["DATABASE_URL"]
    conn = await asyncpg.connect(database_url)
    try:  # a database the migration has not reached (the API may be upgraded first)
        await conn.execute("ALTER TABLE alerts DROP COLUMN IF EXISTS country")
    finally:
        await conn.close()
    await insert_alerts(database_url, [alert_row("a1")])
    async with httpx.AsyncClient(base_url=api.url, headers=READ) as client:
        stats = (await client.get("/v1/stats")).json()
        assert stats["alerts"] == 1
        assert stats["by_country"] is None
        await _insert_with_countries(database_url, [("f1", "PT")])  # the migration runs
        after = (await client.get("/v1/stats")).json()
    assert after["by_country"] == [{"country": "PT", "alerts": 1, "blocks": 0}]
