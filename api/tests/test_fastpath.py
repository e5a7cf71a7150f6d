"""`GET /v1/alerts` through the fast path answers exactly as FastAPI's route does, and hands
every request it does not serve itself (errors included) to FastAPI."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from fraudpipe_api.app import create_app, serving
from fraudpipe_api.config import load_settings
from fraudpipe_api.fastpath import AlertsFastPath
from fraudpipe_api.state import AppState

from .harness import DIGEST, OTHER_DIGEST, READ_TOKEN, WRITE_TOKEN, alert_row, insert_alerts

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


class CountingApp:
    """FastAPI behind the fast path, counting what reaches it."""

    def __init__(self, app: AlertsFastPath) -> None:
        self.inner = app.app
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.inner(scope, receive, send)


@pytest.fixture
async def apps(
    api_env: dict[str, str], keys_file: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, CountingApp, AppState]]:
    for name, value in api_env.items():
        monkeypatch.setenv(name, value)
    app = create_app(*load_settings())
    fast = serving(app)
    assert isinstance(fast, AlertsFastPath)
    behind = CountingApp(fast)
    fast.app = behind  # type: ignore[assignment]
    state: AppState = app.state.fraudpipe
    plain = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
    quick = httpx.AsyncClient(transport=httpx.ASGITransport(app=fast), base_url="http://api")
    async with plain, quick:
        yield plain, quick, behind, state
    await state.clients.close()


async def test_fast_path_answers_byte_for_byte_as_fastapi(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient, CountingApp, AppState],
) -> None:
    plain, quick, behind, state = apps
    await insert_alerts(
        state.settings.database_url,
        [
            alert_row(
                f"q{i:02d}",
                user_id=f"u{i % 3}",
                decision="BLOCK" if i % 4 == 0 else "FLAG",
                score=0.3 + i / 50,
                digest=OTHER_DIGEST if i % 5 == 0 else DIGEST,
                decided=NOW - dt.timedelta(minutes=i // 2),
            )
            for i in range(25)
        ],
    )
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    asked = [
        {},
        {"limit": "5"},
        {"user_id": "u1", "decision": "FLAG"},
        {"min_score": "0.5", "since": (NOW - dt.timedelta(minutes=6)).isoformat()},
        {"until": (NOW - dt.timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S")},  # naive: UTC
        {"model_digest": OTHER_DIGEST, "track": "stable"},
        {"limit": "3", "limit ": "x", "unknown": "ignored"},
        {"user_id": ""},
    ]
    for params in asked:
        expected = await plain.get("/v1/alerts", params=params, headers=read)
        got = await quick.get("/v1/alerts", params=params, headers=read)
        assert expected.status_code == got.status_code == 200, (params, expected.text)
        assert got.content == expected.content, params
        assert got.headers["content-type"] == expected.headers["content-type"]
    # Following the cursor through the fast path visits the same pages.
    cursor, pages = None, 0
    while True:
        params = {"limit": "7"} | ({"cursor": cursor} if cursor else {})
        expected = await plain.get("/v1/alerts", params=params, headers=read)
        got = await quick.get("/v1/alerts", params=params, headers=read)
        assert got.content == expected.content
        cursor, pages = got.json()["next_cursor"], pages + 1
        if cursor is None:
            break
    assert pages == 4
    assert behind.paths == []  # none of them needed FastAPI
    served = state.metrics.latency.labels("/v1/alerts", "GET", "200")
    assert served._sum.get() > 0  # the fast path's answers are in the latency histogram


@pytest.mark.parametrize(
    ("params", "headers", "status"),
    [
        ({"limit": "0"}, {"Authorization": f"Bearer {READ_TOKEN}"}, 422),
        ({"cursor": "not-a-cursor"}, {"Authorization": f"Bearer {READ_TOKEN}"}, 422),
        ({"since": "yesterday"}, {"Authorization": f"Bearer {READ_TOKEN}"}, 422),
        ({}, {}, 401),
        ({}, {"Authorization": "Bearer wrong"}, 401),
        ({}, {"Authorization": "Basic abc"}, 401),
        ({}, {"Authorization": f"Bearer {WRITE_TOKEN}"}, 200),
    ],
)
async def test_fast_path_leaves_errors_to_fastapi(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient, CountingApp, AppState],
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
) -> None:
    plain, quick, behind, _ = apps
    expected = await plain.get("/v1/alerts", params=params, headers=headers)
    got = await quick.get("/v1/alerts", params=params, headers=headers)
    assert expected.status_code == got.status_code == status, expected.text
    assert got.content == expected.content
    assert got.headers.get("www-authenticate") == expected.headers.get("www-authenticate")
    assert behind.paths == ([] if status == 200 else ["/v1/alerts"])


async def test_other_routes_go_to_fastapi(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient, CountingApp, AppState],
) -> None:
    _, quick, behind, _ = apps
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert (await quick.get("/healthz")).status_code == 200
    assert (await quick.get("/v1/alerts/nope", headers=read)).status_code == 404
    assert (await quick.post("/v1/alerts", headers=read)).status_code == 405
    assert behind.paths == ["/healthz", "/v1/alerts/nope", "/v1/alerts"]
