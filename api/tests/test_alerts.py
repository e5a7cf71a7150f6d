"""GET /v1/alerts: filters, keyset pagination, one alert, and input errors naming the field."""

from __future__ import annotations

import datetime as dt

import asyncpg
import httpx
import pytest

from .harness import (
    DIGEST,
    OTHER_DIGEST,
    READ_TOKEN,
    WRITE_TOKEN,
    ApiProcess,
    alert_row,
    insert_alerts,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


async def test_filters_select_exactly_the_matching_alerts(api: ApiProcess) -> None:
    await insert_alerts(
        api.env["DATABASE_URL"],
        [
            alert_row("t1", user_id="alice", decision="FLAG", score=0.4, decided=NOW),
            alert_row("t2", user_id="alice", decision="BLOCK", score=0.95, decided=NOW),
            alert_row("t3", user_id="bob", decision="BLOCK", score=0.9, digest=OTHER_DIGEST),
            alert_row("t4", user_id="alice", decision="FLAG", decided=NOW - dt.timedelta(hours=3)),
        ],
    )
    async with httpx.AsyncClient(base_url=api.url, headers=READ) as client:

        async def ids(**params: str | float) -> set[str]:
            response = await client.get("/v1/alerts", params=params)
            assert response.status_code == 200, response.text
            return {a["tx_id"] for a in response.json()["items"]}

        assert await ids() == {"t1", "t2", "t3", "t4"}
        assert await ids(user_id="alice") == {"t1", "t2", "t4"}
        assert await ids(user_id="alice", decision="BLOCK") == {"t2"}
        assert await ids(min_score=0.9) == {"t2", "t3"}
        assert await ids(model_digest=OTHER_DIGEST) == {"t3"}
        assert await ids(model_digest=DIGEST, user_id="bob") == set()
        since = (NOW - dt.timedelta(hours=1)).isoformat()
        assert await ids(since=since, user_id="alice") == {"t1", "t2"}
        assert await ids(until=since) == {"t4"}
        one = (await client.get("/v1/alerts", params={"user_id": "bob"})).json()["items"][0]
        assert one["reasons"][0]["code"] == "model_score"
        assert one["features"]["count_1m"] == 1.0
        assert one["feedback"] is None


async def test_keyset_pages_cover_every_alert_once_newest_first(api: ApiProcess) -> None:
    # 23 alerts, several sharing one decided_ts: the cursor must break ties by tx_id.
    rows = [alert_row(f"p{i:02d}", decided=NOW - dt.timedelta(seconds=i // 3)) for i in range(23)]
    await insert_alerts(api.env["DATABASE_URL"], rows)
    seen: list[tuple[str, str]] = []
    cursor = None
    pages = 0
    async with httpx.AsyncClient(base_url=api.url, headers=READ) as client:
        while True:
            params = {"limit": "5"} | ({"cursor": cursor} if cursor else {})
            body = (await client.get("/v1/alerts", params=params)).json()
            pages += 1
            seen += [(a["decided_ts"], a["tx_id"]) for a in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert pages == 5
    assert len(seen) == 23
    assert len({tx for _, tx in seen}) == 23
    assert seen == sorted(seen, key=lambda s: (dt.datetime.fromisoformat(s[0]), s[1]), reverse=True)


async def test_one_alert_and_unknown_ids(api: ApiProcess) -> None:
    await insert_alerts(api.env["DATABASE_URL"], [alert_row("known", user_id="carol")])
    async with httpx.AsyncClient(base_url=api.url, headers=READ) as client:
        found = await client.get("/v1/alerts/known")
        missing = await client.get("/v1/alerts/unknown")
    assert found.status_code == 200
    assert found.json()["user_id"] == "carol"
    assert found.json()["feedback_history"] == []
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert "unknown" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "1001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"decision": "APPROVE"}, "decision"),
        ({"min_score": "nan"}, "min_score"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"model_digest": "sha256:xyz"}, "model_digest"),
        ({"user_id": "a\x00b"}, "user_id"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    api: ApiProcess, params: dict[str, str], field: str
) -> None:
    async with httpx.AsyncClient(base_url=api.url, headers=READ) as client:
        response = await client.get("/v1/alerts", params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_input"
    assert [f["field"] for f in body["fields"]] == [field]
    assert "Traceback" not in response.text


async def test_alerts_served_again_from_memory_keep_labels_and_deletions_current(
    api: ApiProcess,
) -> None:
    database_url = api.env["DATABASE_URL"]
    await insert_alerts(database_url, [alert_row(f"m{i}", decided=NOW) for i in range(3)])
    write = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    async with httpx.AsyncClient(base_url=api.url, headers=write) as client:
        first = await client.get("/v1/alerts")  # PostgreSQL writes the JSON
        again = await client.get("/v1/alerts")  # the process has it now
        labelled = await client.post(
            "/v1/alerts/m1/feedback", json={"label": "fraud", "analyst": "ann"}
        )
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("DELETE FROM alerts WHERE tx_id = 'm2'")
        finally:
            await conn.close()
        after = (await client.get("/v1/alerts")).json()["items"]
    assert first.status_code == 200
    assert again.content == first.content
    assert [a["feedback"] for a in first.json()["items"]] == [None, None, None]
    assert labelled.status_code == 201
    assert {a["tx_id"]: a["feedback"] for a in after} == {"m1": "fraud", "m0": None}
    assert after[0] | {"feedback": None} in first.json()["items"]
