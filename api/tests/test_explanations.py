"""GET /v1/alerts/{tx_id}/explanation: the rules and the model's strongest features, in words."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from fraudpipe_common.contracts.decisions import Contribution, Explanation

from .harness import READ_TOKEN, ApiProcess, alert_row, insert_alerts

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]
READ = {"Authorization": f"Bearer {READ_TOKEN}"}

EXPLANATION = Explanation(
    unit="log-odds of fraud",
    base=-6.25,
    contributions=[
        Contribution(feature="amount", value=9450.0, contribution=3.125),
        Contribution(feature="hour_of_day", value=14.0, contribution=-0.5),
        Contribution(feature="new_device", value=1.0, contribution=0.75),
    ],
)


async def explain(database_url: str, tx_id: str, reasons_json: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE alerts SET explanation = $2::jsonb, reasons = $3::jsonb WHERE tx_id = $1",
            tx_id,
            EXPLANATION.model_dump_json(),
            reasons_json,
        )
    finally:
        await conn.close()


async def test_an_explained_alert_lists_rules_and_features_in_words(api: ApiProcess) -> None:
    await insert_alerts(api.env["DATABASE_URL"], [alert_row("x1", decision="BLOCK", score=0.97)])
    reasons = (
        '[{"code": "model_score", "detail": "score 0.9700 >= block 0.9000"},'
        ' {"code": "feature:amount", "detail": "amount = 9450 raised the risk by 3.125"}]'
    )
    await explain(api.env["DATABASE_URL"], "x1", reasons)
    async with httpx.AsyncClient(base_url=api.url, headers=READ) as client:
        response = await client.get("/v1/alerts/x1/explanation")
    assert response.status_code == 200, response.text
    body = response.json()
    # Rules only: the feature reason codes are the contributions, listed below.
    assert body["rules"] == [{"code": "model_score", "detail": "score 0.9700 >= block 0.9000"}]
    assert [c["feature"] for c in body["contributions"]] == ["amount", "hour_of_day", "new_device"]
    assert body["contributions"][1]["text"] == (
        "hour_of_day = 14 lowered the risk by 0.500 (log-odds of fraud)"
    )
    assert body["base"] == -6.25
    assert body["summary"] == (
        "BLOCK with model score 0.9700 because: score 0.9700 >= block 0.9000. "
        "What raised the model's risk most: amount = 9450 (+3.125), new_device = 1 (+0.750). "
        "What lowered it: hour_of_day = 14 (-0.500). "
        "Contributions are in log-odds of fraud, from an average transaction's -6.250."
    )


async def test_unknown_and_unexplained_alerts_are_404_saying_which(api: ApiProcess) -> None:
    await insert_alerts(api.env["DATABASE_URL"], [alert_row("plain")])
    async with httpx.AsyncClient(base_url=api.url, headers=READ) as client:
        missing = await client.get("/v1/alerts/nope/explanation")
        plain = await client.get("/v1/alerts/plain/explanation")
        anonymous = await client.get("/v1/alerts/plain/explanation", headers={"Authorization": ""})
    assert missing.status_code == 404
    assert "no alert for tx_id 'nope'" in missing.text
    assert plain.status_code == 404
    assert "carries no explainer" in plain.text
    assert anonymous.status_code == 401
