"""SQL over the shared schema (libs/common migrations): alerts, feedback, labels, stats.

Rows go out as dicts ready for orjson; jsonb columns are passed through as JSON text
(`orjson.Fragment`), never parsed and re-serialised.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

_ALERT_COLUMNS = """
    a.tx_id, a.user_id, a.decision, a.score, a.model_digest, a.track, a.reasons::text AS reasons,
    a.features::text AS features, a.event_ts, a.decided_ts,
    (SELECT f.label FROM feedback f WHERE f.tx_id = a.tx_id ORDER BY f.id DESC LIMIT 1)
        AS feedback
"""


class CursorError(ValueError):
    """A cursor that this API did not hand out."""


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: tuple[type, ...]) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise CursorError("not a cursor returned by this API") from exc
    if not isinstance(values, list) or len(values) != len(kinds):
        raise CursorError("not a cursor returned by this API")
    out: list[Any] = []
    for value, kind in zip(values, kinds, strict=True):
        if kind is dt.datetime:
            if not isinstance(value, str):
                raise CursorError("not a cursor returned by this API")
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError as exc:
                raise CursorError("not a cursor returned by this API") from exc
            if parsed.tzinfo is None:
                raise CursorError("not a cursor returned by this API")
            out.append(parsed)
        elif kind is int:
            if type(value) is not int or not 0 <= value < 2**63:
                raise CursorError("not a cursor returned by this API")
            out.append(value)
        else:
            if type(value) is not str or "\x00" in value:
                raise CursorError("not a cursor returned by this API")
            out.append(value)
    return out


def alert_dict(row: asyncpg.Record, *, fragments: bool = True) -> dict[str, Any]:
    """`fragments=False` parses the jsonb columns (for templates) instead of passing them on."""
    wrap: Any = orjson.Fragment if fragments else orjson.loads
    return {
        "tx_id": row["tx_id"],
        "user_id": row["user_id"],
        "decision": row["decision"],
        "score": row["score"],
        "model_digest": row["model_digest"],
        "track": row["track"],
        "reasons": wrap(row["reasons"]),
        "features": wrap(row["features"]),
        "event_ts": row["event_ts"],
        "decided_ts": row["decided_ts"],
        "feedback": row["feedback"],
    }


@dataclass(frozen=True)
class AlertFilter:
    user_id: str | None = None
    decision: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    min_score: float | None = None
    model_digest: str | None = None
    track: str | None = None


def _alert_query(
    where: AlertFilter, limit: int, after: tuple[dt.datetime, str] | None, columns: str
) -> tuple[str, list[Any]]:
    """Newest first; keyset pagination on (decided_ts, tx_id); one row more than the page
    tells whether there is a next one."""
    clauses: list[str] = []
    args: list[Any] = []

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.format(f"${len(args)}"))

    if where.user_id is not None:
        add("a.user_id = {}", where.user_id)
    if where.decision is not None:
        add("a.decision = {}", where.decision)
    if where.since is not None:
        add("a.decided_ts >= {}", where.since)
    if where.until is not None:
        add("a.decided_ts < {}", where.until)
    if where.min_score is not None:
        add("a.score >= {}", where.min_score)
    if where.model_digest is not None:
        add("a.model_digest = {}", where.model_digest)
    if where.track is not None:
        add("a.track = {}", where.track)
    if after is not None:
        args.extend(after)
        clauses.append(f"(a.decided_ts, a.tx_id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    # Only fixed fragments are interpolated; every value is a $n parameter.
    sql = (
        f"SELECT {columns} FROM alerts a "  # noqa: S608
        + (f"WHERE {' AND '.join(clauses)} " if clauses else "")
        + f"ORDER BY a.decided_ts DESC, a.tx_id DESC LIMIT ${len(args)}"
    )
    return sql, args


def _next_cursor(rows: list[asyncpg.Record], limit: int) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor([last["decided_ts"].isoformat(), last["tx_id"]])


async def list_alerts(
    conn: asyncpg.Connection | asyncpg.Pool,
    where: AlertFilter,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of alerts as dicts (jsonb parsed), for templates."""
    sql, args = _alert_query(where, limit, after, _ALERT_COLUMNS)
    rows = await conn.fetch(sql, *args)
    return [alert_dict(r, fragments=False) for r in rows[:limit]], _next_cursor(rows, limit)


# A page is read in two steps. PostgreSQL writes each alert's JSON (timestamps in the session's
# UTC, jsonb as is), so the API never decodes and re-encodes the jsonb columns; but writing it
# (the features' jsonb to text above all) was most of PostgreSQL's work for a page. Alerts never
# change once written (the scorer inserts them ON CONFLICT DO NOTHING and nothing updates
# them), so each process keeps the JSON of the alerts it served (`AlertJsonCache`) and asks
# PostgreSQL for a page's keys and latest labels, then only for the JSON it lacks.
_ALERT_KEYS = """
    a.tx_id, a.decided_ts,
    (SELECT f.label FROM feedback f WHERE f.tx_id = a.tx_id ORDER BY f.id DESC LIMIT 1)
        AS feedback
"""
_ALERT_JSON_BY_ID = """
    SELECT a.tx_id, json_build_object(
        'tx_id', a.tx_id, 'user_id', a.user_id, 'decision', a.decision, 'score', a.score,
        'model_digest', a.model_digest, 'track', a.track, 'reasons', a.reasons,
        'features', a.features, 'event_ts', a.event_ts, 'decided_ts', a.decided_ts
    )::text AS item
    FROM alerts a WHERE a.tx_id = ANY($1::text[])
"""


class AlertJsonCache:
    """Alert JSON objects as PostgreSQL wrote them, without their closing brace (the latest
    label is appended per request), by tx_id; the least recently used go first."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._items: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, tx_id: str) -> str | None:
        item = self._items.get(tx_id)
        if item is not None:
            self._items.move_to_end(tx_id)
        return item

    def put(self, tx_id: str, item: str) -> None:
        self._items[tx_id] = item
        self._items.move_to_end(tx_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


_LABELS = {None: "null", "fraud": '"fraud"', "legit": '"legit"', "unsure": '"unsure"'}


async def alert_page_json(
    pool: asyncpg.Pool,
    where: AlertFilter,
    limit: int,
    after: tuple[dt.datetime, str] | None,
    cache: AlertJsonCache,
) -> bytes:
    """One page as the `AlertPage` JSON body."""
    sql, args = _alert_query(where, limit, after, _ALERT_KEYS)
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql, *args)
        page = rows[:limit]
        known = {r["tx_id"]: cache.get(r["tx_id"]) for r in page}
        missing = [tx_id for tx_id, item in known.items() if item is None]
        if missing:
            for r in await conn.fetch(_ALERT_JSON_BY_ID, missing):
                item = r["item"][:-1]
                known[r["tx_id"]] = item
                cache.put(r["tx_id"], item)
    items = ",".join(
        f'{known[r["tx_id"]]}, "feedback" : {_LABELS[r["feedback"]]}}}'
        for r in page
        if known[r["tx_id"]] is not None  # None: deleted between the two queries
    )
    return b'{"items":[%s],"next_cursor":%s}' % (
        items.encode(),
        orjson.dumps(_next_cursor(rows, limit)),
    )


async def get_alert(conn: asyncpg.Connection | asyncpg.Pool, tx_id: str) -> dict[str, Any] | None:
    sql = f"SELECT {_ALERT_COLUMNS} FROM alerts a WHERE a.tx_id = $1"  # noqa: S608 (fixed)
    row = await conn.fetchrow(sql, tx_id)
    return None if row is None else alert_dict(row)


async def get_explanation(
    conn: asyncpg.Connection | asyncpg.Pool, tx_id: str
) -> asyncpg.Record | None:
    """The alert's verdict, reasons and explanation (jsonb as text; explanation may be null)."""
    return await conn.fetchrow(
        "SELECT tx_id, decision, score, model_digest, track, reasons::text AS reasons, "
        "explanation::text AS explanation FROM alerts WHERE tx_id = $1",
        tx_id,
    )


async def feedback_history(
    conn: asyncpg.Connection | asyncpg.Pool, tx_id: str
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, tx_id, label, analyst, note, created_at FROM feedback "
        "WHERE tx_id = $1 ORDER BY id",
        tx_id,
    )
    return [dict(r) for r in rows]


async def add_feedback(
    conn: asyncpg.Connection | asyncpg.Pool, tx_id: str, label: str, analyst: str, note: str
) -> dict[str, Any] | None:
    """None when there is no alert with that tx_id."""
    row = await conn.fetchrow(
        "INSERT INTO feedback (tx_id, label, analyst, note) "
        "SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM alerts WHERE tx_id = $1) "
        "RETURNING id, tx_id, label, analyst, note, created_at",
        tx_id,
        label,
        analyst,
        note,
    )
    return None if row is None else dict(row)


async def list_labels(
    conn: asyncpg.Connection | asyncpg.Pool, since: dt.datetime | None, after_id: int, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Each alert's latest fraud/legit label (an alert whose latest word is "unsure" has no
    label), in the order they were given."""
    rows = await conn.fetch(
        """
        WITH latest AS (
            SELECT DISTINCT ON (tx_id) id, tx_id, label, analyst, created_at
            FROM feedback ORDER BY tx_id, id DESC
        )
        SELECT id, tx_id, label, analyst, created_at FROM latest
        WHERE label <> 'unsure' AND ($1::timestamptz IS NULL OR created_at >= $1) AND id > $2
        ORDER BY id LIMIT $3
        """,
        since,
        after_id,
        limit + 1,
    )
    items = [
        {
            "tx_id": r["tx_id"],
            "is_fraud": r["label"] == "fraud",
            "scenario": None,
            "analyst": r["analyst"],
            "created_at": r["created_at"],
            "feedback_id": r["id"],
        }
        for r in rows[:limit]
    ]
    next_cursor = encode_cursor([rows[limit - 1]["id"]]) if len(rows) > limit else None
    return items, next_cursor


async def alert_stats(conn: asyncpg.Connection, since: dt.datetime) -> dict[str, Any]:
    by_decision = {
        r["decision"]: r["n"]
        for r in await conn.fetch(
            "SELECT decision, count(*) AS n FROM alerts WHERE decided_ts >= $1 GROUP BY decision",
            since,
        )
    }
    labels = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE label = 'fraud') AS fraud,
               count(*) FILTER (WHERE label = 'legit') AS legit,
               count(*) FILTER (WHERE label = 'unsure') AS unsure
        FROM (SELECT DISTINCT ON (f.tx_id) f.label FROM feedback f
              JOIN alerts a ON a.tx_id = f.tx_id
              WHERE a.decided_ts >= $1 ORDER BY f.tx_id, f.id DESC) latest
        """,
        since,
    )
    top_users = await conn.fetch(
        """
        SELECT user_id, count(*) AS alerts, count(*) FILTER (WHERE decision = 'BLOCK') AS blocks
        FROM alerts WHERE decided_ts >= $1
        GROUP BY user_id ORDER BY alerts DESC, user_id LIMIT 10
        """,
        since,
    )
    by_model = await conn.fetch(
        """
        SELECT model_digest, track, count(*) AS alerts FROM alerts WHERE decided_ts >= $1
        GROUP BY model_digest, track ORDER BY alerts DESC, model_digest, track
        """,
        since,
    )
    return {
        "by_decision": by_decision,
        "feedback": dict(labels) if labels else {"fraud": 0, "legit": 0, "unsure": 0},
        "top_users": [dict(r) for r in top_users],
        "by_model": [dict(r) for r in by_model],
        "by_country": await _alerts_by_country(conn, since),
    }


TOP_COUNTRIES = 10


async def _alerts_by_country(
    conn: asyncpg.Connection, since: dt.datetime
) -> list[dict[str, Any]] | None:
    """The countries with the most alerts in the window (alerts without a country are not
    counted); None while the alerts table has no `country` column (a database the scorer's
    migration that adds it has not reached yet)."""
    try:
        rows = await conn.fetch(
            """
            SELECT country, count(*) AS alerts,
                   count(*) FILTER (WHERE decision = 'BLOCK') AS blocks
            FROM alerts WHERE decided_ts >= $1 AND country IS NOT NULL
            GROUP BY country ORDER BY alerts DESC, country LIMIT $2
            """,
            since,
            TOP_COUNTRIES,
        )
    except asyncpg.UndefinedColumnError:
        return None
    return [dict(r) for r in rows]
