"""`fraudpipe-api retention`: deletes alerts and feedback older than their retention.

Feedback goes first, then alerts without feedback (docs/decisions.md, decision 87): an alert
that an analyst labelled is a training example, so it stays as long as its feedback does;
deleting it would cascade to the label (`feedback.tx_id ... ON DELETE CASCADE`). Decisions are
not here: they live in the decisions topic (its `retention.ms`) and the Redis decision cache
(`DECISION_CACHE_TTL_S`), which expire them on their own.

Each batch is one DELETE of at most `RETENTION_BATCH_SIZE` rows in its own transaction, so the
rows it locks are few and are released at once; the scorer's inserts and the API's reads carry
on beside it. Both cut-offs are fixed when the run starts: rows that age during a run wait for
the next one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Self

import asyncpg
import orjson
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RetentionSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(description="PostgreSQL: alerts and feedback.")
    retention_alerts_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Delete alerts decided more than this many days ago, except those with "
        "feedback (unset: keep alerts).",
    )
    retention_feedback_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Delete feedback given more than this many days ago (unset: keep it, and "
        "with it the alerts it labels).",
    )
    retention_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Most rows one DELETE (one transaction) takes."
    )
    retention_batch_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Longest one batch may take, lock waits included; past it the run stops "
        "(exit 1) and what it deleted so far stays deleted.",
    )
    dependency_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Connect timeout towards PostgreSQL."
    )

    @model_validator(mode="after")
    def labels_outlive_alerts(self) -> Self:
        alerts, feedback = self.retention_alerts_days, self.retention_feedback_days
        if alerts is not None and feedback is not None and feedback < alerts:
            raise ValueError(
                f"RETENTION_FEEDBACK_DAYS ({feedback}) must be at least RETENTION_ALERTS_DAYS "
                f"({alerts}): analyst labels are training data and must not go before the "
                "alerts they label (decision 87)"
            )
        return self


@dataclass
class TableResult:
    days: int
    before: str  # the cut-off: rows older than this were deleted
    deleted: int = 0
    batches: int = 0  # DELETE statements run, the last one short (or empty)


# Oldest first, by feedback_created_at_idx.
_DELETE_FEEDBACK = """
DELETE FROM feedback WHERE id IN (
    SELECT id FROM feedback WHERE created_at < $1 ORDER BY created_at LIMIT $2
)
"""

# Walks alerts_decided_ts_tx_id_idx from a cursor, the last key the previous batch looked at:
# labelled alerts stay behind in the index, and without the cursor every batch would scan
# past all of them again. The cursor is computed here, in the database's collation.
# Two statements in one transaction, because a label must never be cascaded away: the first
# locks the unlabelled candidates (SKIP LOCKED passes over an alert whose feedback is being
# inserted right now: the insert holds a key-share lock on it), so that no feedback can be
# added to them until the transaction ends; the second, with a snapshot taken after those
# locks, deletes only those still without feedback (a label committed after the first
# statement's snapshot but before its lock is seen here, and keeps its alert).
_LOCK_ALERTS = """
SELECT a.tx_id, a.decided_ts FROM alerts a
WHERE a.decided_ts < $1
  AND a.decided_ts >= $2
  AND (a.decided_ts, a.tx_id) > ($2, $3)
  AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.tx_id = a.tx_id)
ORDER BY a.decided_ts, a.tx_id
LIMIT $4
FOR UPDATE SKIP LOCKED
"""
_DELETE_ALERTS = """
DELETE FROM alerts a
WHERE a.tx_id = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.tx_id = a.tx_id)
"""

# Before any alert: where the cursor starts.
_START = (dt.datetime(1, 1, 1, tzinfo=dt.UTC), "")


async def _delete_feedback(
    conn: asyncpg.Connection, cutoff: dt.datetime, batch_size: int, result: TableResult
) -> None:
    while True:
        status = await conn.execute(_DELETE_FEEDBACK, cutoff, batch_size)
        deleted = int(status.split()[-1])  # "DELETE <n>"
        result.deleted += deleted
        result.batches += 1
        if deleted < batch_size:
            return


async def _delete_alerts(
    conn: asyncpg.Connection, cutoff: dt.datetime, batch_size: int, result: TableResult
) -> None:
    last_decided_ts, last_tx_id = _START
    while True:
        async with conn.transaction():
            candidates = await conn.fetch(
                _LOCK_ALERTS, cutoff, last_decided_ts, last_tx_id, batch_size
            )
            status = await conn.execute(_DELETE_ALERTS, [c["tx_id"] for c in candidates])
        result.deleted += int(status.split()[-1])  # "DELETE <n>"
        result.batches += 1
        if len(candidates) < batch_size:
            return
        last_decided_ts, last_tx_id = candidates[-1]["decided_ts"], candidates[-1]["tx_id"]


class RetentionFailed(Exception):
    """PostgreSQL failed mid-run; `summary` says what was deleted before (it stays deleted)."""

    def __init__(self, cause: BaseException, summary: dict[str, Any]) -> None:
        super().__init__(repr(cause))
        self.summary = summary


async def enforce(settings: RetentionSettings, now: dt.datetime | None = None) -> dict[str, Any]:
    """Deletes what is past retention; returns the summary printed as JSON."""
    now = now or dt.datetime.now(dt.UTC)
    started = time.monotonic()
    results: dict[str, TableResult] = {}

    def summary() -> dict[str, Any]:
        tables = {t: asdict(results[t]) if t in results else None for t in ("alerts", "feedback")}
        return {**tables, "seconds": round(time.monotonic() - started, 3)}

    try:
        conn = await asyncpg.connect(
            settings.database_url,
            timeout=settings.dependency_timeout_s,
            command_timeout=settings.retention_batch_timeout_s,
            server_settings={"application_name": "fraudpipe-retention"},
        )
        try:
            # Feedback first: the alerts it no longer protects go in the same run.
            for table, days, delete in (
                ("feedback", settings.retention_feedback_days, _delete_feedback),
                ("alerts", settings.retention_alerts_days, _delete_alerts),
            ):
                if days is not None:
                    cutoff = now - dt.timedelta(days=days)
                    results[table] = TableResult(days=days, before=cutoff.isoformat())
                    await delete(conn, cutoff, settings.retention_batch_size, results[table])
        finally:
            await conn.close()
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise RetentionFailed(exc, summary()) from exc
    return summary()


def main(alerts_days: int | None, feedback_days: int | None, batch_size: int | None) -> int:
    """Flags override the environment. Exit 2 on a bad configuration, 1 when PostgreSQL
    cannot be reached or a batch fails."""
    overrides = {
        "retention_alerts_days": alerts_days,
        "retention_feedback_days": feedback_days,
        "retention_batch_size": batch_size,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = RetentionSettings(**given)  # type: ignore[arg-type]  # the rest: environment
    if settings.retention_alerts_days is None and settings.retention_feedback_days is None:
        print(
            "fraudpipe-api retention: nothing to enforce; set --alerts-days (or "
            "RETENTION_ALERTS_DAYS), --feedback-days (or RETENTION_FEEDBACK_DAYS), or both",
            file=sys.stderr,
        )
        return 2
    try:
        summary = asyncio.run(enforce(settings))
    except RetentionFailed as failed:
        done = orjson.dumps(failed.summary).decode()
        print(
            f"fraudpipe-api retention: PostgreSQL failed: {failed}. Check DATABASE_URL and "
            "that the database is up; a batch that ran past RETENTION_BATCH_TIMEOUT_S needs a "
            "smaller RETENTION_BATCH_SIZE. Deleted before the failure (kept deleted, the next "
            f"run carries on): {done}",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
