"""The API process against real PostgreSQL, Redis and Kafka: a client that presents too many
unknown keys gets 429 for every request with a key (counted once, whichever path served it),
others do not; X-Forwarded-For counts only from trusted proxies; each worker counts its own;
a body over the limit gets 413 before it is read or any key is checked."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from fraudpipe_api.auth import hash_key

from .harness import READ_TOKEN, WRITE_TOKEN, ApiProcess, transaction

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]

READ = {"Authorization": f"Bearer {READ_TOKEN}"}
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}
GUESS = {"Authorization": "Bearer fpk_guess"}
FEEDBACK = {"label": "fraud", "analyst": "ann"}


async def metric(api: ApiProcess, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(api.url + "/metrics")).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def from_address(api: ApiProcess, address: str) -> httpx.AsyncClient:
    """A client whose connections come from another loopback address: another client."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=api.url, transport=transport)


async def statuses(client: httpx.AsyncClient, times: int, path: str, **kwargs: Any) -> list[int]:
    return [(await client.get(path, **kwargs)).status_code for _ in range(times)]


async def test_after_too_many_unknown_keys_every_request_with_a_key_gets_429_from_that_client(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(api_env, AUTH_FAILURE_LIMIT="3", AUTH_FAILURE_WINDOW_S="300")
    async with httpx.AsyncClient(base_url=api.url) as client:
        assert await statuses(client, 3, "/v1/alerts", headers=GUESS) == [401, 401, 401]
        refused = await client.get("/v1/alerts", headers=GUESS)
        assert refused.status_code == 429
        assert 290 <= int(refused.headers["retry-after"]) <= 300
        assert refused.json()["error"] == "too_many_failures"
        assert "too many unknown API keys from this address" in refused.json()["detail"]
        # A valid key is not even looked up while the client is refused.
        assert (await client.get("/v1/alerts", headers=READ)).status_code == 429
        feedback = await client.post("/v1/alerts/a1/feedback", json=FEEDBACK, headers=WRITE)
        assert feedback.status_code == 429
        client.cookies.set("fraudpipe_key", hash_key(READ_TOKEN))
        assert (await client.get("/ui/alerts")).status_code == 429
        client.cookies.clear()
        # Requests without a key are served as before.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/v1/alerts")).status_code == 401
    async with from_address(api, "127.0.0.2") as other:
        assert (await other.get("/v1/alerts", headers=READ)).status_code == 200
        assert (await other.get("/v1/alerts", headers=GUESS)).status_code == 401
    # GET /v1/alerts went through the fast path and then FastAPI's route: counted once.
    assert await metric(api, "fraudpipe_api_auth_failures_total") == 4
    assert await metric(api, "fraudpipe_api_auth_throttled_total") == 4
    assert await metric(api, "fraudpipe_api_auth_tracked_clients") == 2
    assert "presented 3 unknown API keys within 300 s" in api.output()
    assert "127.0.0.1" in api.output()
    assert "fpk_guess" not in api.output()


async def test_only_unknown_keys_count_not_missing_malformed_or_narrow_ones(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(api_env, AUTH_FAILURE_LIMIT="2")
    async with httpx.AsyncClient(base_url=api.url) as client:
        assert await statuses(client, 4, "/v1/alerts") == [401] * 4
        basic = {"Authorization": "Basic dXNlcjpwdw=="}
        assert await statuses(client, 4, "/v1/alerts", headers=basic) == [401] * 4
        for _ in range(4):  # a read key on a write route: 403, a valid key, no guess
            narrow = await client.post("/v1/alerts/a1/feedback", json=FEEDBACK, headers=READ)
            assert narrow.status_code == 403
        assert (await client.get("/v1/alerts", headers=READ)).status_code == 200
        # The analyst page's cookie is a key too.
        client.cookies.set("fraudpipe_key", hash_key("fpk_stale"))
        assert await statuses(client, 3, "/ui/alerts") == [401, 401, 429]
        client.cookies.set("fraudpipe_key", hash_key(READ_TOKEN))
        assert (await client.get("/")).status_code == 429
    assert await metric(api, "fraudpipe_api_auth_failures_total") == 2


async def test_a_forged_forwarded_for_changes_nothing_without_a_trusted_proxy(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(api_env, AUTH_FAILURE_LIMIT="2")
    async with httpx.AsyncClient(base_url=api.url) as client:
        answers = [
            (await client.get("/v1/alerts", headers=GUESS | {"X-Forwarded-For": f"198.51.100.{i}"}))
            for i in range(3)
        ]
    assert [a.status_code for a in answers] == [401, 401, 429]


async def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(api_env, AUTH_FAILURE_LIMIT="2", API_TRUSTED_PROXIES="127.0.0.1/32")
    attacker = {"X-Forwarded-For": "6.6.6.6, 203.0.113.5"}  # the first part is forged
    analyst = {"X-Forwarded-For": "203.0.113.6"}
    async with httpx.AsyncClient(base_url=api.url) as proxy:
        assert await statuses(proxy, 3, "/v1/alerts", headers=GUESS | attacker) == [401, 401, 429]
        elsewhere = {"X-Forwarded-For": "6.6.6.7, 203.0.113.5"}
        assert (await proxy.get("/v1/alerts", headers=READ | elsewhere)).status_code == 429
        assert (await proxy.get("/v1/alerts", headers=READ | analyst)).status_code == 200
        assert (await proxy.get("/v1/alerts", headers=READ)).status_code == 200  # the proxy
    # A peer that is no trusted proxy is itself the client, whatever it forwards.
    async with from_address(api, "127.0.0.2") as direct:
        forged = {"X-Forwarded-For": "203.0.113.5"}
        assert (await direct.get("/v1/alerts", headers=READ | forged)).status_code == 200


async def test_with_two_workers_each_counts_its_own_so_at_most_twice_the_limit_is_tried(
    api_env: dict[str, str], start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(api_env, AUTH_FAILURE_LIMIT="3", API_WORKERS="2")
    answers = []
    for _ in range(2 * 3 + 1):  # a new connection each: the kernel spreads them
        async with httpx.AsyncClient(base_url=api.url) as client:
            answers.append((await client.get("/v1/alerts", headers=GUESS)).status_code)
    assert set(answers) <= {401, 429}
    assert 3 <= answers.count(401) <= 6  # at most the limit per worker
    assert answers.count(429) >= 1  # 7 tries: some worker has refused at least one


# -- body size -----------------------------------------------------------------------------------
LIMIT = 4096


@pytest.fixture
def small_bodies(api_env: dict[str, str], start_api: Callable[..., ApiProcess]) -> ApiProcess:
    return start_api(api_env, API_MAX_BODY_BYTES=str(LIMIT))


def batch_of_exactly(size: int, prefix: str) -> bytes:
    """A valid batch, padded with JSON whitespace to `size` bytes."""
    body = orjson.dumps([transaction(f"{prefix}-{i}") for i in range(3)])
    assert len(body) < size
    return body[:-1] + b" " * (size - len(body)) + b"]"


def raw_request(api: ApiProcess, head: str) -> bytes:
    """Sends only a request's head and reads until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


async def test_a_declared_body_over_the_limit_gets_413_before_it_is_sent(
    small_bodies: ApiProcess,
) -> None:
    api = small_bodies
    for auth in (f"Authorization: Bearer {WRITE_TOKEN}\r\n", ""):
        head = (
            "POST /v1/transactions HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            f"{auth}Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n"
        )
        # Not a byte of the body is sent: a handler, or the key check after the body is
        # parsed, would wait for it and the server would time out instead.
        answer = await asyncio.to_thread(raw_request, api, head)
        status, _, rest = answer.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"100 Continue" not in answer
        assert b"connection: close" in rest.lower()
        assert orjson.loads(rest.partition(b"\r\n\r\n")[2])["error"] == "body_too_large"
    assert await metric(api, "fraudpipe_api_published_transactions_total") == 0


async def test_a_streamed_body_over_the_limit_gets_413_and_nothing_is_published(
    small_bodies: ApiProcess,
) -> None:
    api = small_bodies
    body = batch_of_exactly(LIMIT + 1, "over")

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    async with httpx.AsyncClient(base_url=api.url, headers=WRITE) as client:
        answer = await client.post(
            "/v1/transactions", content=chunked(), headers={"Content-Type": "application/json"}
        )
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413
    assert answer.json()["error"] == "body_too_large"
    assert await metric(api, "fraudpipe_api_published_transactions_total") == 0


async def test_a_body_at_the_limit_is_served(small_bodies: ApiProcess) -> None:
    api = small_bodies
    declared = batch_of_exactly(LIMIT, "declared")
    streamed = batch_of_exactly(LIMIT, "streamed")

    async def chunked() -> AsyncIterator[bytes]:
        yield streamed[:2000]
        yield streamed[2000:]

    json = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=api.url, headers=WRITE, timeout=20) as client:
        first = await client.post("/v1/transactions", content=declared, headers=json)
        second = await client.post("/v1/transactions", content=chunked(), headers=json)
        over = await client.post("/v1/transactions", content=declared + b" ", headers=json)
    assert first.status_code == 202, first.text
    assert second.status_code == 202, second.text
    assert over.status_code == 413
    assert await metric(api, "fraudpipe_api_published_transactions_total") == 6
