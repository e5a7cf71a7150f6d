"""The /v1 endpoints. Handlers are thin: parse, call queries or clients, shape the answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import Response
from pydantic import Field

from fraudpipe_api import queries
from fraudpipe_api.durations import DURATION_PATTERN, parse_duration
from fraudpipe_api.errors import ApiError, dependency, invalid, not_found
from fraudpipe_api.explanations import explain_alert
from fraudpipe_api.prom import decision_counts
from fraudpipe_api.schemas import (
    NO_NUL,
    Accepted,
    Alert,
    AlertDetail,
    AlertExplanation,
    AlertPage,
    AlertQuery,
    Feedback,
    FeedbackIn,
    LabelPage,
    Models,
    Stats,
)
from fraudpipe_api.security import ReadKey, WriteKey
from fraudpipe_api.state import AppState
from fraudpipe_common.contracts import transactions_avro
from fraudpipe_common.contracts.decisions import Decision, Track, Verdict
from fraudpipe_common.contracts.transactions import (
    SCHEMA,
    SCHEMA_HEADER,
    InvalidTransactionError,
    Transaction,
    decode_transaction,
)
from fraudpipe_common.explain import feature_reasons
from fraudpipe_common.features import FEATURE_NAMES, FeatureInput, assemble
from fraudpipe_common.rules import decide

router = APIRouter(prefix="/v1")

TxId = Annotated[str, Path(min_length=1, max_length=128, pattern=NO_NUL)]
MAX_BATCH = 1000
MAX_MESSAGE_BYTES = 65_536
MAX_WINDOW_S = 90 * 86400
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown API key."},
    403: {"description": "The key lacks the scope this request needs."},
    422: {"description": "Invalid input; `fields` names each offending field."},
    429: {
        "description": "This client presented too many unknown API keys; requests with a key "
        "are refused for `Retry-After` seconds."
    },
    503: {"description": "A dependency is down; retry after `Retry-After` seconds."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown tx_id."}}
_TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"description": "The body is over API_MAX_BODY_BYTES (64 MiB by default)."}
}


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.fraudpipe
    return state


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _window(text: str, field: str = "window") -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise invalid(field, str(exc)) from None
    if not 1 <= seconds <= MAX_WINDOW_S:
        raise invalid(field, "must be between 1s and 90d")
    return seconds


# -- alerts -------------------------------------------------------------------------------------
def alert_request(
    query: AlertQuery,
) -> tuple[queries.AlertFilter, int, tuple[dt.datetime, str] | None]:
    """The filter, page size and keyset position a validated query asks for; a cursor this
    API did not hand out is a 422 naming `cursor`."""
    after = None
    if query.cursor is not None:
        try:
            ts, tx_id = queries.decode_cursor(query.cursor, (dt.datetime, str))
        except queries.CursorError as exc:
            raise invalid("cursor", str(exc)) from None
        after = (ts, tx_id)
    where = queries.AlertFilter(
        user_id=query.user_id,
        decision=query.decision,
        since=_utc(query.since),
        until=_utc(query.until),
        min_score=query.min_score,
        model_digest=query.model_digest,
        track=query.track.value if query.track is not None else None,
    )
    return where, query.limit, after


async def alert_page(
    state: AppState,
    where: queries.AlertFilter,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> bytes:
    """The `AlertPage` JSON body (also served by `fastpath.AlertsFastPath`)."""
    async with dependency("postgres", state.settings.retry_after_s):
        pool = await state.clients.pool()
        return await queries.alert_page_json(pool, where, limit, after, state.alert_json)


@router.get("/alerts", response_model=AlertPage, responses=_ERRORS, tags=["alerts"])
async def list_alerts(
    request: Request, query: Annotated[AlertQuery, Query()], _key: Any = ReadKey
) -> Response:
    """Alerts (FLAG and BLOCK), newest first, filtered; follow `next_cursor` for more."""
    body = await alert_page(_state(request), *alert_request(query))
    return Response(body, media_type="application/json")


@router.get(
    "/alerts/{tx_id}",
    response_model=AlertDetail,
    responses=_ERRORS | _NOT_FOUND,
    tags=["alerts"],
)
async def get_alert(request: Request, tx_id: TxId, _key: Any = ReadKey) -> Response:
    """One alert with every label analysts gave it."""
    state = _state(request)
    async with dependency("postgres", state.settings.retry_after_s):
        pool = await state.clients.pool()
        alert = await queries.get_alert(pool, tx_id)
        if alert is None:
            raise not_found(f"no alert for tx_id {tx_id!r} (APPROVE decisions are not alerts)")
        alert["feedback_history"] = await queries.feedback_history(pool, tx_id)
    return _json(alert)


@router.get(
    "/alerts/{tx_id}/explanation",
    response_model=AlertExplanation,
    responses=_ERRORS | {404: {"description": "Unknown tx_id, or an alert without explanation."}},
    tags=["alerts"],
)
async def get_explanation(request: Request, tx_id: TxId, _key: Any = ReadKey) -> Response:
    """Why it was flagged or blocked: the rules that fired and the features that moved the
    model's score most (exact TreeSHAP), in numbers and in words."""
    state = _state(request)
    async with dependency("postgres", state.settings.retry_after_s):
        row = await queries.get_explanation(await state.clients.pool(), tx_id)
    if row is None:
        raise not_found(f"no alert for tx_id {tx_id!r} (APPROVE decisions are not alerts)")
    if row["explanation"] is None:
        raise not_found(
            f"alert {tx_id!r} has no explanation: the model that decided it "
            f"({row['model_digest'][:19]}…) carries no explainer (exported before explanations "
            "existed); its reasons are in GET /v1/alerts/{tx_id}"
        )
    return _json(explain_alert(row))


@router.post(
    "/alerts/{tx_id}/feedback",
    response_model=Feedback,
    status_code=201,
    responses=_ERRORS | _NOT_FOUND | _TOO_LARGE,
    tags=["feedback"],
)
async def add_feedback(
    request: Request, tx_id: TxId, feedback: FeedbackIn, _key: Any = WriteKey
) -> Response:
    """An analyst's label for an alert: fraud, legit or unsure. The latest label counts."""
    state = _state(request)
    async with dependency("postgres", state.settings.retry_after_s):
        pool = await state.clients.pool()
        row = await queries.add_feedback(
            pool, tx_id, feedback.label, feedback.analyst, feedback.note
        )
    if row is None:
        raise not_found(f"no alert for tx_id {tx_id!r}")
    return _json(row, status=201)


@router.get("/labels", response_model=LabelPage, responses=_ERRORS, tags=["feedback"])
async def list_labels(
    request: Request,
    _key: Any = ReadKey,
    since: Annotated[dt.datetime | None, Query(description="labels given at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response:
    """Analyst labels for retraining: each alert's latest fraud/legit label, oldest first."""
    state = _state(request)
    after_id = 0
    if cursor is not None:
        try:
            (after_id,) = queries.decode_cursor(cursor, (int,))
        except queries.CursorError as exc:
            raise invalid("cursor", str(exc)) from None
    async with dependency("postgres", state.settings.retry_after_s):
        pool = await state.clients.pool()
        items, next_cursor = await queries.list_labels(pool, _utc(since), after_id, limit)
    return _json({"items": items, "next_cursor": next_cursor})


# -- decisions ----------------------------------------------------------------------------------
@router.get(
    "/transactions/{tx_id}/decision",
    response_model=Decision,
    responses=_ERRORS | _NOT_FOUND,
    tags=["decisions"],
)
async def get_decision(
    request: Request,
    tx_id: TxId,
    _key: Any = ReadKey,
    wait: Annotated[
        str,
        Query(
            max_length=32,
            pattern=DURATION_PATTERN,
            description="Long-poll up to this long (e.g. 5s, 500ms; at most LONG_POLL_MAX_S).",
        ),
    ] = "0s",
) -> Response:
    """The decision from the scorer's Redis cache, else from the alerts table; waits for it up
    to `wait`, then 404."""
    state = _state(request)
    try:
        wait_s = parse_duration(wait)
    except ValueError as exc:
        raise invalid("wait", str(exc)) from None
    deadline = time.monotonic() + min(wait_s, state.settings.long_poll_max_s)
    key = f"{state.settings.redis_key_prefix}decision:{tx_id}"
    pause = 0.02
    checked_postgres = False
    while True:
        async with dependency("redis", state.settings.retry_after_s):
            cached = await state.clients.redis.get(key)
        if cached is not None:
            return Response(
                cached, media_type="application/json", headers={"X-Decision-Source": "cache"}
            )
        if not checked_postgres or time.monotonic() >= deadline:
            # An alert outlives its cache entry; checked first and last, Redis in between.
            checked_postgres = True
            async with dependency("postgres", state.settings.retry_after_s):
                pool = await state.clients.pool()
                alert = await queries.get_alert(pool, tx_id)
            if alert is not None:
                alert.pop("feedback", None)
                return _json(alert, headers={"X-Decision-Source": "alerts"})
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise not_found(f"no decision for tx_id {tx_id!r} after waiting {wait_s:g}s")
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.25)


# -- transactions -------------------------------------------------------------------------------
TransactionBatch = Annotated[list[Transaction], Field(min_length=1, max_length=MAX_BATCH)]


def _encode(tx: Transaction, index: int | None) -> bytes:
    payload = tx.to_json()
    where = "body" if index is None else f"body.{index}"
    if b"\\u0000" in payload:
        raise invalid(where, "strings may not contain NUL characters", "body")
    if len(payload) > MAX_MESSAGE_BYTES:
        raise invalid(where, f"a transaction is at most {MAX_MESSAGE_BYTES} bytes", "body")
    try:
        decode_transaction(payload)  # exactly what the scorer will accept
    except InvalidTransactionError as exc:
        raise invalid(where, exc.detail, "body") from None
    return payload


@router.post(
    "/transactions",
    response_model=Accepted,
    status_code=202,
    responses=_ERRORS | _TOO_LARGE,
    tags=["transactions"],
)
async def publish(
    request: Request,
    body: Annotated[Transaction | TransactionBatch, Body()],
    _key: Any = WriteKey,
) -> Response:
    """Validate one transaction or a batch (up to 1000) and publish them to the transactions
    topic, keyed by user_id; 202 once the broker has acknowledged them all."""
    state = _state(request)
    txs = body if isinstance(body, list) else [body]
    payloads = [_encode(tx, i if isinstance(body, list) else None) for i, tx in enumerate(txs)]
    topic = state.topics.transactions_topic
    if state.topics.transactions_format == "avro":
        async with dependency("schema_registry", state.settings.retry_after_s):
            schema_id = await state.clients.transactions_schema_id(state.topics)
        payloads = [transactions_avro.encode(schema_id, orjson.loads(p)) for p in payloads]
    headers = [(SCHEMA_HEADER, SCHEMA.encode())]
    try:
        async with dependency("kafka", state.settings.retry_after_s):
            producer = await state.clients.producer()
            futures = [
                await producer.send(topic, payload, key=tx.user_id.encode(), headers=headers)
                for tx, payload in zip(txs, payloads, strict=True)
            ]
            await asyncio.wait_for(
                asyncio.gather(*futures), state.settings.dependency_timeout_s * 2
            )
    except ApiError:
        await state.clients.drop_producer()
        raise
    state.metrics.published.inc(len(txs))
    return _json({"tx_ids": [tx.tx_id for tx in txs], "topic": topic}, status=202)


@router.post("/score", response_model=Decision, responses=_ERRORS | _TOO_LARGE, tags=["decisions"])
async def score(request: Request, tx: Transaction, _key: Any = WriteKey) -> Response:
    """Score one transaction now, with the scorer's feature, model and rule code, against the
    current feature state, changing nothing (the transaction is not recorded)."""
    state = _state(request)
    decoded = decode_transaction(_encode(tx, None))
    model = await state.clients.model()
    features = FeatureInput.of(decoded)
    async with dependency("redis", state.settings.retry_after_s):
        (stateful,) = await state.clients.features.peek([features])
    row = assemble(features, stateful)
    value = float(model.score(np.asarray([row], dtype=np.float32))[0])
    verdict, reasons = decide(decoded.amount, row, value, model.thresholds, state.rules)
    explanation = None
    if verdict is not Verdict.APPROVE and model.explainer is not None:
        (explanation,) = model.explainer.explain(np.asarray([row], dtype=np.float64))
        reasons += feature_reasons(explanation)
    decision = Decision(
        tx_id=decoded.tx_id,
        user_id=decoded.user_id,
        decision=verdict,
        score=min(max(value, 0.0), 1.0),
        model_digest=model.digest,
        track=Track.STABLE,
        reasons=reasons,
        features=dict(zip(FEATURE_NAMES, row, strict=True)),
        event_ts=dt.datetime.fromtimestamp(decoded.ts, dt.UTC),
        decided_ts=dt.datetime.now(dt.UTC),
        explanation=explanation,
    )
    return Response(decision.to_json(), media_type="application/json")


# -- statistics ---------------------------------------------------------------------------------
Window = Annotated[
    str, Query(max_length=32, pattern=DURATION_PATTERN, description="e.g. 15m, 1h, 7d")
]


async def _alert_stats(state: AppState, window_s: float) -> tuple[dt.datetime, dict[str, Any]]:
    """The window's start and the alert statistics PostgreSQL holds for it."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=window_s)
    async with dependency("postgres", state.settings.retry_after_s):
        pool = await state.clients.pool()
        async with pool.acquire() as conn:
            found = await queries.alert_stats(conn, since)
    return since, found


@router.get("/stats", response_model=Stats, responses=_ERRORS, tags=["stats"])
async def stats(
    request: Request,
    _key: Any = ReadKey,
    window: Window = "1h",
) -> Response:
    """Counts by decision, alert rate, precision from feedback, top users and countries by
    alerts."""
    state = _state(request)
    window_s = _window(window)
    since, found = await _alert_stats(state, window_s)
    totals = await decision_counts(
        state.settings.prometheus_url,
        window_s,
        "decision, track",
        state.settings.dependency_timeout_s,
        selector=state.settings.prometheus_selector,
    )
    # Acting decisions only: a shadow model's decisions are a second opinion on the same
    # transactions (counting them would halve the alert rate during every shadow phase).
    acting = None if totals is None else {k: n for k, n in totals.items() if k[1] != "shadow"}
    by_decision = found["by_decision"]
    alerts = by_decision.get("FLAG", 0) + by_decision.get("BLOCK", 0)
    approve = None if acting is None else sum(n for k, n in acting.items() if k[0] == "APPROVE")
    total = None if acting is None else sum(acting.values())
    labels = found["feedback"]
    judged = labels["fraud"] + labels["legit"]
    return _json(
        {
            "window_s": window_s,
            "since": since,
            "decisions": {
                "APPROVE": approve,
                "FLAG": by_decision.get("FLAG", 0),
                "BLOCK": by_decision.get("BLOCK", 0),
            },
            "alerts": alerts,
            "alert_rate": (alerts / total) if total else None,
            "feedback": labels,
            "precision": (labels["fraud"] / judged) if judged else None,
            "top_users": found["top_users"],
            "by_model": found["by_model"],
            "by_country": found["by_country"],
        }
    )


@router.get("/models", response_model=Models, responses=_ERRORS, tags=["stats"])
async def models(
    request: Request,
    _key: Any = ReadKey,
    window: Window = "1h",
) -> Response:
    """The models that decided in the window, their traffic share and alert share."""
    state = _state(request)
    window_s = _window(window)
    _, found = await _alert_stats(state, window_s)
    counts = await decision_counts(
        state.settings.prometheus_url,
        window_s,
        "model_digest, track",
        state.settings.dependency_timeout_s,
        selector=state.settings.prometheus_selector,
    )
    alerts = {(m["model_digest"], m["track"]): m["alerts"] for m in found["by_model"]}
    keys = set(alerts) | set(counts or {})
    acting_decisions = sum(n for (_, track), n in (counts or {}).items() if track != "shadow")
    acting_alerts = sum(n for (_, track), n in alerts.items() if track != "shadow")
    rows = []
    for digest, track in sorted(keys):
        decided = None if counts is None else counts.get((digest, track), 0)
        n_alerts = alerts.get((digest, track), 0)
        acting = track != "shadow"
        rows.append(
            {
                "model_digest": digest,
                "track": track,
                "decisions": decided,
                "traffic_share": (decided / acting_decisions)
                if decided is not None and acting and acting_decisions
                else None,
                "alerts": n_alerts,
                "alert_share": (n_alerts / acting_alerts) if acting and acting_alerts else None,
            }
        )
    loaded = state.clients.loaded_model
    scoring = (
        None
        if loaded is None
        else {
            "name": loaded.name,
            "digest": loaded.digest,
            "flag_threshold": loaded.thresholds.flag,
            "block_threshold": loaded.thresholds.block,
        }
    )
    return _json({"window_s": window_s, "models": rows, "scoring_model": scoring})


__all__ = ["Alert", "router"]
