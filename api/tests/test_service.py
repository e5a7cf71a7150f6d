"""Health, readiness, metrics, and what the API answers while a dependency is down."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from .harness import READ_TOKEN, WRITE_TOKEN, ApiProcess, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}


async def test_ready_when_its_dependencies_answer(api: ApiProcess) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        health = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert health.json() == {"ok": True}
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "checks": {"postgres": True, "redis": True, "kafka": True},
    }


async def test_metrics_histogram_is_labelled_by_route_template_and_status(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    metrics_port = free_port()
    api = start_api(api_env, METRICS_PORT=str(metrics_port))
    async with httpx.AsyncClient(base_url=api.url, headers=READ) as http:
        await http.get("/v1/alerts")
        await http.get("/v1/alerts/some-id")
        await http.get("/v1/alerts/other-id")
        await http.get("/v1/alerts", params={"limit": "0"})
        text = (await http.get("/metrics")).text
        on_metrics_port = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert (
        'fraudpipe_api_request_duration_seconds_count{method="GET",route="/v1/alerts",'
        'status="200"} 1.0'
    ) in text
    assert (
        'fraudpipe_api_request_duration_seconds_count{method="GET",route="/v1/alerts/{tx_id}",'
        'status="404"} 2.0'
    ) in text
    assert 'route="/v1/alerts",status="422"' in text
    assert "other-id" not in text  # raw paths never become labels
    assert 'route="/v1/alerts/{tx_id}",status="404"} 2.0' in on_metrics_port


async def test_a_dependency_down_is_a_503_with_retry_after_never_a_500(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    closed = free_port()  # nothing listens there
    api = start_api(
        api_env,
        DATABASE_URL=f"postgresql://nobody:pw@127.0.0.1:{closed}/none",
        REDIS_URL=f"redis://127.0.0.1:{closed}/0",
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed}",
        DEPENDENCY_TIMEOUT_S="1",
        RETRY_AFTER_S="7",
    )
    tx = {
        "tx_id": "t",
        "ts": "2026-01-01T00:00:00Z",
        "user_id": "u",
        "card_id": "c",
        "merchant_id": "m",
        "mcc": "5411",
        "amount": "1.00",
        "currency": "EUR",
        "country": "FR",
        "channel": "pos",
        "device_id": "d",
    }
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE, timeout=20) as http:
        answers = {
            "alerts": await http.get("/v1/alerts"),
            "stats": await http.get("/v1/stats"),
            "decision": await http.get("/v1/transactions/t/decision"),
            "publish": await http.post("/v1/transactions", json=tx),
            "feedback": await http.post(
                "/v1/alerts/t/feedback", json={"label": "fraud", "analyst": "a"}
            ),
        }
        ready = await http.get("/readyz")
    for name, response in answers.items():
        assert response.status_code == 503, (name, response.text)
        assert response.headers["retry-after"] == "7", name
        assert response.json()["error"] == "dependency_unavailable", name
        assert "Traceback" not in response.text
    assert "postgres is unavailable" in answers["alerts"].json()["detail"]
    assert "redis is unavailable" in answers["decision"].json()["detail"]
    assert "kafka is unavailable" in answers["publish"].json()["detail"]
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"postgres": False, "redis": False, "kafka": False}
    assert "Traceback" not in api.output()
