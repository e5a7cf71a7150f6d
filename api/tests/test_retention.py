"""`fraudpipe-api retention` on real PostgreSQL: old rows go in batches, new and labelled stay."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import asyncpg
import orjson
import pytest

from fraudpipe_api.retention import RetentionSettings, enforce

from .harness import API, alert_row, free_port, insert_alerts, migrate, run

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def days_ago(days: float, now: dt.datetime = NOW) -> dt.datetime:
    return now - dt.timedelta(days=days)


async def label(database_url: str, tx_id: str, given: dt.datetime, value: str = "fraud") -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO feedback (tx_id, label, analyst, created_at) VALUES ($1, $2, 'ann', $3)",
            tx_id,
            value,
            given,
        )
    finally:
        await conn.close()


async def remaining(database_url: str) -> tuple[set[str], list[tuple[str, str]]]:
    """The alerts' tx_ids and the feedback as (tx_id, label)."""
    conn = await asyncpg.connect(database_url)
    try:
        alerts = {r["tx_id"] for r in await conn.fetch("SELECT tx_id FROM alerts")}
        feedback = [
            (r["tx_id"], r["label"])
            for r in await conn.fetch("SELECT tx_id, label FROM feedback ORDER BY id")
        ]
    finally:
        await conn.close()
    return alerts, feedback


async def year_of_alerts(database_url: str, now: dt.datetime = NOW) -> None:
    """25 unlabelled alerts 40 days old, 5 from yesterday, and 3 old ones with feedback of
    different ages (all with the same decided_ts, so that the cursor's tie-break on tx_id
    is exercised)."""
    await migrate(database_url)
    old = days_ago(40, now)
    rows = [alert_row(f"old-{i:02}", decided=old) for i in range(25)]
    rows += [alert_row(f"new-{i}", decided=days_ago(1, now)) for i in range(5)]
    rows += [alert_row(t, decided=old) for t in ("lab-recent", "lab-stale", "lab-both")]
    await insert_alerts(database_url, rows)
    await label(database_url, "lab-recent", days_ago(10, now))
    await label(database_url, "lab-stale", days_ago(39, now), "legit")
    await label(database_url, "lab-both", days_ago(39, now), "legit")
    await label(database_url, "lab-both", days_ago(5, now), "fraud")  # relabelled lately


def settings(database_url: str, **fields: int) -> RetentionSettings:
    return RetentionSettings(database_url=database_url, **fields)  # type: ignore[arg-type]


@pytest.mark.postgres
async def test_old_alerts_go_in_batches_and_labelled_ones_stay_with_their_feedback(
    database_url: str,
) -> None:
    await year_of_alerts(database_url)
    config = settings(
        database_url,
        retention_alerts_days=30,
        retention_feedback_days=30,
        retention_batch_size=10,
    )
    summary = await enforce(config, now=NOW)

    alerts, feedback = await remaining(database_url)
    # The stale label went, and its alert with it; a recent label keeps its alert.
    assert alerts == {f"new-{i}" for i in range(5)} | {"lab-recent", "lab-both"}
    assert feedback == [("lab-recent", "fraud"), ("lab-both", "fraud")]
    assert summary["feedback"] == {
        "days": 30,
        "before": days_ago(30).isoformat(),
        "deleted": 2,
        "batches": 1,
    }
    # 25 + lab-stale = 26 rows at 10 a batch: 10, 10, 6.
    assert summary["alerts"]["deleted"] == 26
    assert summary["alerts"]["batches"] == 3
    assert summary["seconds"] >= 0

    again = await enforce(config, now=NOW)
    assert (again["alerts"]["deleted"], again["feedback"]["deleted"]) == (0, 0)
    assert await remaining(database_url) == (alerts, feedback)


@pytest.mark.postgres
async def test_without_feedback_retention_every_labelled_alert_is_kept(
    database_url: str,
) -> None:
    await year_of_alerts(database_url)
    config = settings(database_url, retention_alerts_days=30, retention_batch_size=25)
    summary = await enforce(config, now=NOW)

    alerts, feedback = await remaining(database_url)
    assert alerts == {f"new-{i}" for i in range(5)} | {"lab-recent", "lab-stale", "lab-both"}
    assert len(feedback) == 4
    assert summary["feedback"] is None
    # Exactly a batch's worth: one more, empty, statement proves there is nothing left.
    assert (summary["alerts"]["deleted"], summary["alerts"]["batches"]) == (25, 2)


@pytest.mark.postgres
async def test_feedback_retention_alone_keeps_every_alert(database_url: str) -> None:
    await year_of_alerts(database_url)
    summary = await enforce(settings(database_url, retention_feedback_days=30), now=NOW)

    alerts, feedback = await remaining(database_url)
    assert len(alerts) == 33
    assert feedback == [("lab-recent", "fraud"), ("lab-both", "fraud")]
    assert summary["alerts"] is None


@pytest.mark.postgres
async def test_an_alert_being_labelled_during_the_run_keeps_its_new_label(
    database_url: str,
) -> None:
    await year_of_alerts(database_url)
    analyst = await asyncpg.connect(database_url)
    try:
        labelling = analyst.transaction()
        await labelling.start()  # the API's insert, not committed yet while retention runs
        await analyst.execute(
            "INSERT INTO feedback (tx_id, label, analyst) VALUES ('old-03', 'fraud', 'bob')"
        )
        config = settings(
            database_url, retention_alerts_days=30, retention_batch_size=10
        ).model_copy(update={"retention_batch_timeout_s": 5.0})  # never waits on the lock
        summary = await enforce(config, now=NOW)
        await labelling.commit()
    finally:
        await analyst.close()
    alerts, feedback = await remaining(database_url)
    assert "old-03" in alerts
    assert ("old-03", "fraud") in feedback
    assert summary["alerts"]["deleted"] == 24


def test_labels_may_not_go_before_the_alerts_they_label() -> None:
    with pytest.raises(ValueError, match="RETENTION_FEEDBACK_DAYS \\(7\\) must be at least"):
        settings("postgresql://unused", retention_alerts_days=30, retention_feedback_days=7)


def command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [API, "retention", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.postgres
def test_the_command_takes_days_from_the_environment_and_flags_and_prints_json(
    database_url: str,
) -> None:
    run(year_of_alerts(database_url, now=dt.datetime.now(dt.UTC)))
    done = command(
        "--feedback-days",
        "38",  # the flag wins over the environment's 60: lab-stale's label (39 days) goes
        DATABASE_URL=database_url,
        RETENTION_ALERTS_DAYS="30",
        RETENTION_FEEDBACK_DAYS="60",
        RETENTION_BATCH_SIZE="7",
    )
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    assert summary["feedback"]["days"] == 38
    assert summary["feedback"]["deleted"] == 2
    assert summary["alerts"]["deleted"] == 26
    assert summary["alerts"]["batches"] == 4  # 7, 7, 7, 5


def test_the_command_says_what_to_do_when_postgresql_cannot_be_reached() -> None:
    # Nothing listens there.
    done = command(
        "--alerts-days",
        "30",
        DATABASE_URL=f"postgresql://fp:secret@127.0.0.1:{free_port()}/fp",
        DEPENDENCY_TIMEOUT_S="2",
    )
    assert done.returncode == 1
    assert "fraudpipe-api retention: PostgreSQL failed" in done.stderr
    assert "Check DATABASE_URL" in done.stderr
    assert "secret" not in done.stderr  # the password stays out of the log


def test_the_command_refuses_to_run_without_any_retention() -> None:
    done = command(DATABASE_URL="postgresql://unused/fp")
    assert done.returncode == 2
    assert "set --alerts-days" in done.stderr
    bad = command(
        DATABASE_URL="postgresql://unused/fp",
        RETENTION_ALERTS_DAYS="30",
        RETENTION_FEEDBACK_DAYS="7",
    )
    assert bad.returncode == 2
    assert "invalid configuration" in bad.stderr
    assert "RETENTION_FEEDBACK_DAYS (7) must be at least RETENTION_ALERTS_DAYS (30)" in bad.stderr
