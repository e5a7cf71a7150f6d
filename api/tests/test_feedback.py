"""Feedback on alerts: stored, shown with the alert, counted in precision, exported as labels."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest

from .harness import WRITE_TOKEN, ApiProcess, alert_row, insert_alerts

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}


async def _label(client: httpx.AsyncClient, tx_id: str, label: str, note: str = "") -> None:
    response = await client.post(
        f"/v1/alerts/{tx_id}/feedback", json={"label": label, "analyst": "ann", "note": note}
    )
    assert response.status_code == 201, response.text


async def test_feedback_is_stored_and_the_latest_label_counts(api: ApiProcess) -> None:
    await insert_alerts(api.env["DATABASE_URL"], [alert_row("f1"), alert_row("f2")])
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE) as client:
        first = await client.post(
            "/v1/alerts/f1/feedback", json={"label": "legit", "analyst": "ann", "note": "known"}
        )
        assert first.status_code == 201
        assert first.json()["label"] == "legit"
        assert first.json()["note"] == "known"
        await _label(client, "f1", "fraud")
        detail = (await client.get("/v1/alerts/f1")).json()
        listed = (await client.get("/v1/alerts")).json()["items"]
        unknown = await client.post(
            "/v1/alerts/nope/feedback", json={"label": "fraud"} | {"analyst": "a"}
        )
        bad_label = await client.post(
            "/v1/alerts/f1/feedback", json={"label": "maybe", "analyst": "a"}
        )
        no_analyst = await client.post("/v1/alerts/f1/feedback", json={"label": "fraud"})
    assert [f["label"] for f in detail["feedback_history"]] == ["legit", "fraud"]
    assert detail["feedback"] == "fraud"
    assert {a["tx_id"]: a["feedback"] for a in listed} == {"f1": "fraud", "f2": None}
    assert unknown.status_code == 404
    assert bad_label.status_code == 422
    assert [f["field"] for f in bad_label.json()["fields"]] == ["label"]
    assert no_analyst.status_code == 422
    assert [f["field"] for f in no_analyst.json()["fields"]] == ["analyst"]


async def test_precision_and_counts_in_stats(api: ApiProcess) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)
    await insert_alerts(
        api.env["DATABASE_URL"],
        [
            alert_row("s1", user_id="u1", decision="BLOCK"),
            alert_row("s2", user_id="u1", decision="FLAG"),
            alert_row("s3", user_id="u2", decision="FLAG"),
            alert_row("s4", user_id="u3", decision="FLAG"),
            alert_row("s5", user_id="u9", decision="BLOCK", decided=old),
        ],
    )
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE) as client:
        await _label(client, "s1", "fraud")
        await _label(client, "s2", "fraud")
        await _label(client, "s3", "legit")
        await _label(client, "s4", "unsure")
        await _label(client, "s5", "legit")  # outside the 1 h window
        stats = (await client.get("/v1/stats", params={"window": "1h"})).json()
        wide = (await client.get("/v1/stats", params={"window": "1d"})).json()
        bad = await client.get("/v1/stats", params={"window": "soon"})
    assert stats["decisions"] == {"APPROVE": None, "FLAG": 3, "BLOCK": 1}
    assert stats["alerts"] == 4
    assert stats["feedback"] == {"fraud": 2, "legit": 1, "unsure": 1}
    assert stats["precision"] == pytest.approx(2 / 3)
    assert stats["top_users"][0] == {"user_id": "u1", "alerts": 2, "blocks": 1}
    assert stats["alert_rate"] is None  # needs PROMETHEUS_URL
    assert wide["alerts"] == 5
    assert wide["precision"] == pytest.approx(2 / 4)
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "window"


async def test_labels_export_the_latest_fraud_or_legit_word_in_order(api: ApiProcess) -> None:
    await insert_alerts(api.env["DATABASE_URL"], [alert_row(f"l{i}") for i in range(5)])
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE) as client:
        await _label(client, "l0", "fraud")
        await _label(client, "l1", "legit")
        await _label(client, "l2", "fraud")
        await _label(client, "l2", "unsure")  # changed their mind: no label for l2
        await asyncio.sleep(0.05)
        cut = dt.datetime.now(dt.UTC)
        await _label(client, "l3", "legit")
        await _label(client, "l4", "fraud")
        await _label(client, "l0", "legit")  # relabelled: exported once, as legit, last

        everything: list[dict[str, object]] = []
        cursor = None
        while True:
            params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/v1/labels", params=params)).json()
            everything += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        recent = (await client.get("/v1/labels", params={"since": cut.isoformat()})).json()
    assert [(x["tx_id"], x["is_fraud"]) for x in everything] == [
        ("l1", False),
        ("l3", False),
        ("l4", True),
        ("l0", False),
    ]
    assert [x["tx_id"] for x in recent["items"]] == ["l3", "l4", "l0"]
    assert all(x["analyst"] == "ann" for x in everything)
