"""Publishing, the decision long-poll and synchronous scoring, with the real scorer deciding
what the API published."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from fraudpipe_common.contracts.decisions import Decision, Track, Verdict
from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_testing.plugin import PrometheusSettings

from .harness import (
    BIN,
    DIGEST,
    WRITE_TOKEN,
    ApiProcess,
    alert_row,
    free_port,
    insert_alerts,
    transaction,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}


def cached_decision(tx_id: str, verdict: Verdict = Verdict.APPROVE) -> bytes:
    now = dt.datetime.now(dt.UTC)
    return Decision(
        tx_id=tx_id,
        user_id="u-1",
        decision=verdict,
        score=0.01,
        model_digest=DIGEST,
        track=Track.STABLE,
        event_ts=now,
        decided_ts=now,
    ).to_json()


async def test_long_poll_returns_a_decision_as_soon_as_it_is_cached(api: ApiProcess) -> None:
    key = f"{api.env['REDIS_KEY_PREFIX']}decision:late"
    client = aioredis.Redis.from_url(api.env["REDIS_URL"])

    async def cache_later() -> None:
        await asyncio.sleep(0.6)
        await client.set(key, cached_decision("late"), ex=60)

    async with httpx.AsyncClient(base_url=api.url, headers=WRITE, timeout=15) as http:
        started = time.monotonic()
        writer = asyncio.create_task(cache_later())
        response = await http.get("/v1/transactions/late/decision", params={"wait": "5s"})
        waited = time.monotonic() - started
        await writer
    await client.aclose()
    assert response.status_code == 200
    assert response.json()["tx_id"] == "late"
    assert response.headers["x-decision-source"] == "cache"
    assert 0.5 < waited < 2.0


async def test_unknown_decision_is_a_404_after_the_wait(api: ApiProcess) -> None:
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE, timeout=15) as http:
        started = time.monotonic()
        response = await http.get("/v1/transactions/never/decision", params={"wait": "700ms"})
        waited = time.monotonic() - started
        bad = await http.get("/v1/transactions/never/decision", params={"wait": "forever"})
    assert response.status_code == 404
    assert "never" in response.json()["detail"]
    assert 0.6 < waited < 2.0
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "wait"


async def test_an_alert_whose_cache_entry_expired_comes_from_postgres(api: ApiProcess) -> None:
    await insert_alerts(api.env["DATABASE_URL"], [alert_row("old", decision="BLOCK")])
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE) as http:
        response = await http.get("/v1/transactions/old/decision")
    assert response.status_code == 200
    assert response.headers["x-decision-source"] == "alerts"
    decision = Decision.model_validate(response.json())
    assert decision.decision is Verdict.BLOCK


async def test_publish_validates_and_sends_keyed_by_user(api: ApiProcess) -> None:
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE) as http:
        one = await http.post("/v1/transactions", json=transaction("p1", user_id="ua"))
        batch = await http.post(
            "/v1/transactions",
            json=[transaction("p2", user_id="ub"), transaction("p3", user_id="ub", extra="x")],
        )
        bad = await http.post(
            "/v1/transactions", json=[transaction("p4"), transaction("p5", amount="1e5")]
        )
        too_many = await http.post("/v1/transactions", json=[transaction("x")] * 1001)
        nul = await http.post("/v1/transactions", json=transaction("p\x006"))
    assert one.status_code == 202
    assert one.json()["tx_ids"] == ["p1"]
    assert batch.json()["tx_ids"] == ["p2", "p3"]
    assert bad.status_code == 422
    assert any("amount" in f["field"] for f in bad.json()["fields"]), bad.json()
    assert too_many.status_code == 422
    assert nul.status_code == 422

    consumer = AIOKafkaConsumer(
        api.env["TRANSACTIONS_TOPIC"],
        bootstrap_servers=api.env["KAFKA_BOOTSTRAP_SERVERS"],
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        records: list[Any] = []
        deadline = time.monotonic() + 10
        while len(records) < 3 and time.monotonic() < deadline:
            for batch_records in (await consumer.getmany(timeout_ms=500)).values():
                records += batch_records
    finally:
        await consumer.stop()
    by_id = {orjson.loads(r.value)["tx_id"]: r for r in records}
    assert set(by_id) == {"p1", "p2", "p3"}  # nothing of the refused batch was sent
    assert by_id["p1"].key == b"ua"
    assert by_id["p2"].partition == by_id["p3"].partition
    assert ("fraudpipe.schema", b"transactions.v1") in by_id["p1"].headers
    assert orjson.loads(by_id["p3"].value)["extra"] == "x"  # unknown fields travel on


@pytest.fixture
def scorer(
    api_env: dict[str, str],
    kafka_topic: Callable[..., str],
    model_dir: Path,
    tmp_path: Path,
) -> Iterator[dict[str, str]]:
    """The real scorer on the API's topic, Redis prefix and database."""
    env = {
        **os.environ,
        **api_env,
        "DECISIONS_TOPIC": kafka_topic(partitions=3, prefix="api-decisions"),
        "DLQ_TOPIC": kafka_topic(partitions=1, prefix="api-dlq"),
        "MODEL_REF": str(model_dir),
        "CONSUMER_GROUP": f"api-test-{free_port()}",
        "METRICS_PORT": str(free_port()),
        "BATCH_MAX_WAIT_MS": "20",
    }
    log = (tmp_path / "scorer.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "fraudpipe-scorer")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    yield env
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


async def test_published_transactions_are_decided_and_score_changes_no_state(
    api_env: dict[str, str],
    start_api: Callable[..., ApiProcess],
    scorer: dict[str, str],
    model_dir: Path,
) -> None:
    api = start_api(api_env, MODEL_REF=str(model_dir))
    prefix = api_env["REDIS_KEY_PREFIX"]
    client = aioredis.Redis.from_url(api_env["REDIS_URL"])
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE, timeout=40) as http:
        before = await http.post("/v1/score", json=transaction("s-probe", user_id="e2e"))
        assert before.status_code == 200, before.text
        keys_before = sorted(await client.keys(prefix + "*"))
        again = await http.post("/v1/score", json=transaction("s-probe", user_id="e2e"))
        assert sorted(await client.keys(prefix + "*")) == keys_before  # peek writes nothing

        published = await http.post("/v1/transactions", json=transaction("e2e-1", user_id="e2e"))
        assert published.status_code == 202
        decided = await http.get("/v1/transactions/e2e-1/decision", params={"wait": "30s"})
        assert decided.status_code == 200, decided.text
        after = await http.post("/v1/score", json=transaction("s-probe-2", user_id="e2e"))
        big = transaction("s-big", user_id="e2e", amount="50000.00")  # over the amount ceiling
        blocked = (await http.post("/v1/score", json=big)).json()
        models = (await http.get("/v1/models")).json()
    await client.aclose()

    probe, repeat, later = before.json(), again.json(), after.json()
    at = FEATURE_NAMES.index("user_tx_count")
    assert probe["features"]["user_tx_count"] == 0.0
    assert repeat["features"] == probe["features"]
    assert decided.json()["tx_id"] == "e2e-1"
    assert decided.json()["model_digest"] == probe["model_digest"]  # one model, same digest
    assert later["features"][FEATURE_NAMES[at]] == 1.0  # sees what the scorer recorded
    assert probe["decision"] in {"APPROVE", "FLAG", "BLOCK"}
    assert models["scoring_model"]["digest"] == probe["model_digest"]
    # A BLOCK is explained as the scorer explains it: TreeSHAP's strongest features.
    assert blocked["decision"] == "BLOCK"
    assert "amount_ceiling" in [r["code"] for r in blocked["reasons"]]
    explained = blocked["explanation"]["contributions"]
    assert len(explained) == 5
    assert {c["feature"]: c["value"] for c in explained}.items() <= blocked["features"].items()
    raising = [f"feature:{c['feature']}" for c in explained if c["contribution"] > 0][:3]
    assert [r["code"] for r in blocked["reasons"] if r["code"].startswith("feature:")] == raising
    if probe["decision"] == "APPROVE":
        assert "explanation" not in probe


async def test_alerts_the_scorer_writes_are_counted_by_country(
    api: ApiProcess, scorer: dict[str, str]
) -> None:
    # Above the amount ceiling (RULE_AMOUNT_CEILING, 10,000): a BLOCK whatever the model says.
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE, timeout=40) as http:
        big = transaction("ctry-1", user_id="ctry", amount="50000.00", country="BR")
        assert (await http.post("/v1/transactions", json=big)).status_code == 202
        decided = await http.get("/v1/transactions/ctry-1/decision", params={"wait": "30s"})
        assert decided.status_code == 200, decided.text
        deadline = time.monotonic() + 30
        while not (await http.get("/v1/alerts", params={"user_id": "ctry"})).json()["items"]:
            assert time.monotonic() < deadline, "the scorer wrote no alert"
            await asyncio.sleep(0.2)
        stats = (await http.get("/v1/stats")).json()
    assert decided.json()["decision"] == "BLOCK"
    assert stats["by_country"] == [{"country": "BR", "alerts": 1, "blocks": 1}]


async def test_score_without_a_model_is_a_503_with_retry_after(api: ApiProcess) -> None:
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE) as http:
        response = await http.post("/v1/score", json=transaction("nomodel"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "MODEL_REF" in response.json()["detail"]


@pytest.mark.prometheus
async def test_stats_and_models_count_every_decision_through_prometheus(
    api_env: dict[str, str],
    start_api: Callable[..., ApiProcess],
    scorer: dict[str, str],
    prometheus: PrometheusSettings,
) -> None:
    assert prometheus.targets_dir is not None
    target = prometheus.targets_dir / f"api-test-{scorer['METRICS_PORT']}.json"
    target.write_text(orjson.dumps([{"targets": [f"127.0.0.1:{scorer['METRICS_PORT']}"]}]).decode())
    # Only this scorer's series count (other tests' scorers may be scraped too).
    selector = f'instance="127.0.0.1:{scorer["METRICS_PORT"]}"'
    api = start_api(api_env, PROMETHEUS_URL=prometheus.url, PROMETHEUS_SELECTOR=selector)
    try:
        async with httpx.AsyncClient(base_url=api.url, headers=WRITE, timeout=40) as http:
            # Waves until Prometheus has seen them: increase() counts only what happens after a
            # series' first scrape, and when that scrape comes depends on the machine's load.
            deadline = time.monotonic() + 90
            for wave in itertools.count():
                ids = [f"prom-{wave}-{i}" for i in range(10)]
                batch = [transaction(tx_id, user_id=f"pu-{i}") for i, tx_id in enumerate(ids)]
                assert (await http.post("/v1/transactions", json=batch)).status_code == 202
                for tx_id in ids:
                    got = await http.get(f"/v1/transactions/{tx_id}/decision?wait=30s")
                    assert got.status_code == 200
                digest = got.json()["model_digest"]
                await asyncio.sleep(3)
                stats = (await http.get("/v1/stats", params={"window": "5m"})).json()
                models = (await http.get("/v1/models", params={"window": "5m"})).json()
                ours = [m for m in models["models"] if m["model_digest"] == digest]
                if (stats["decisions"]["APPROVE"] or 0) >= 5 and ours and ours[0]["decisions"]:
                    break
                assert time.monotonic() < deadline, (stats, models)
    finally:
        target.unlink()
    assert stats["alert_rate"] is not None
    assert 0 <= stats["alert_rate"] <= 1
    assert ours[0]["track"] == "stable"
    assert ours[0]["traffic_share"] is not None
    assert 0 < ours[0]["traffic_share"] <= 1
