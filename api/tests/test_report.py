"""`fraudpipe-api report --date`: one UTC day from real PostgreSQL (alerts and feedback)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import asyncpg
import orjson
import pytest

from fraudpipe_api.report import ReportSettings, as_text, build_report, parse_day

from .harness import API, alert_row, free_port, insert_alerts, migrate

DAY = dt.date(2026, 11, 20)
NOON = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def test_the_day_defaults_to_yesterday_utc() -> None:
    today = dt.date(2026, 3, 1)
    assert parse_day(None, today) == dt.date(2026, 2, 28)
    assert parse_day("today", today) == today
    assert parse_day("2026-01-31", today) == dt.date(2026, 1, 31)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_day("31/01/2026", today)


def with_reasons(row: tuple[object, ...], *codes: str) -> tuple[object, ...]:
    reasons = [{"code": code, "detail": f"{code} fired"} for code in codes]
    return (*row[:6], orjson.dumps(reasons).decode(), *row[7:])


async def day_of_alerts(database_url: str) -> None:
    await migrate(database_url)
    rows = [
        with_reasons(alert_row("b1", decision="BLOCK", decided=NOON), "model_score", "velocity"),
        with_reasons(alert_row("b2", decision="BLOCK", decided=NOON), "model_score"),
        with_reasons(alert_row("f1", decided=NOON), "model_score", "new_device"),
        with_reasons(alert_row("f2", decided=NOON), "velocity"),
        # The model's explanation codes are no rules: not in the top rules.
        with_reasons(alert_row("f3", decided=NOON), "model_score", "feature:amount"),
        # Outside the day, and a shadow decision inside it: neither counts.
        with_reasons(alert_row("late", decided=NOON + dt.timedelta(days=1)), "model_score"),
        with_reasons(alert_row("early", decided=NOON - dt.timedelta(days=1)), "model_score"),
        with_reasons(alert_row("sh", track="shadow", decided=NOON), "model_score"),
    ]
    await insert_alerts(database_url, rows)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO feedback (tx_id, label, analyst) VALUES ($1, $2, 'ann')",
            [
                ("b1", "fraud"),
                ("b2", "legit"),
                ("b2", "fraud"),  # relabelled: the latest word counts
                ("f1", "legit"),
                ("f2", "unsure"),
                ("late", "fraud"),
            ],
        )
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_a_day_counts_alerts_precision_and_rules_from_postgres(database_url: str) -> None:
    await day_of_alerts(database_url)
    report = await build_report(
        ReportSettings(database_url=database_url), DAY, now=NOON + dt.timedelta(days=2)
    )
    assert report["complete"] is True
    assert report["decisions"] == {"APPROVE": None, "FLAG": 3, "BLOCK": 2, "total": None}
    assert report["alert_rate"] is None  # APPROVE only comes from Prometheus
    assert report["feedback"] == {
        "fraud": 2,
        "legit": 1,
        "unsure": 1,
        "labelled_alerts": 4,
        "precision": pytest.approx(2 / 3),
    }
    assert report["top_rules"] == [
        {"code": "model_score", "alerts": 4, "blocks": 2},
        {"code": "velocity", "alerts": 2, "blocks": 1},
        {"code": "new_device", "alerts": 1, "blocks": 0},
    ]
    assert "precision   66.67% from 3 labelled alerts" in as_text(report)


@pytest.mark.postgres
def test_the_command_prints_the_report_and_says_when_prometheus_is_unreachable(
    database_url: str,
) -> None:
    from .harness import run

    run(day_of_alerts(database_url))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        # Nothing listens there: APPROVE and the alert rate are unknown, not an error.
        "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "DEPENDENCY_TIMEOUT_S": "2",
    }
    done = subprocess.run(
        [API, "report", "--date", DAY.isoformat(), "--output", "text"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "fraudpipe daily report 2026-11-20 (UTC)" in done.stdout
    assert "APPROVE n/a (no Prometheus)   FLAG 3   BLOCK 2" in done.stdout
    assert "velocity" in done.stdout
    bad = subprocess.run(
        [API, "report", "--date", "20/11/2026"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "YYYY-MM-DD" in bad.stderr
