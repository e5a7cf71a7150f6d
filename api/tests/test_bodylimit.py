"""The body size limit as an ASGI middleware, in process and without services: a declared
length over the limit never reaches the application, a streamed one is cut where it passes the
limit, one at the limit goes through whole; and in front of the real FastAPI application, the
413 comes before the key check."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from fraudpipe_api.app import create_app
from fraudpipe_api.bodylimit import BodySizeLimit
from fraudpipe_api.config import MAX_BODY_BYTES, ApiSettings
from fraudpipe_api.routes import MAX_BATCH, MAX_MESSAGE_BYTES
from fraudpipe_common.kafka import KafkaSettings, TopicSettings
from fraudpipe_common.rules import RuleSettings

LIMIT = 1000


class ReadsTheBody:
    """Reads the whole body as Starlette does and answers its length; like FastAPI, it turns a
    failed read into its own error answer (400)."""

    def __init__(self) -> None:
        self.calls = 0
        self.received = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        status = 200
        try:
            more = True
            while more:
                message: Message = await receive()
                self.received += len(message.get("body", b""))
                more = message.get("more_body", False)
        except Exception:
            status = 400
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": str(self.received).encode()})


async def chunks(*sizes: int) -> AsyncIterator[bytes]:
    for size in sizes:
        yield b"x" * size


@pytest.fixture
def inner() -> ReadsTheBody:
    return ReadsTheBody()


@pytest.fixture
async def client(inner: ReadsTheBody) -> AsyncIterator[httpx.AsyncClient]:
    app = BodySizeLimit(inner, max_bytes=LIMIT)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        yield client


async def test_a_declared_length_over_the_limit_never_reaches_the_application(
    client: httpx.AsyncClient, inner: ReadsTheBody
) -> None:
    answer = await client.post("/v1/transactions", content=b"x" * (LIMIT + 1))
    assert answer.status_code == 413
    assert answer.json() == {
        "error": "body_too_large",
        "detail": f"the request body is over {LIMIT} bytes (API_MAX_BODY_BYTES); send less "
        "per request, e.g. a smaller batch",
    }
    assert answer.headers["connection"] == "close"
    assert inner.calls == 0


async def test_a_streamed_body_is_cut_where_it_passes_the_limit(
    client: httpx.AsyncClient, inner: ReadsTheBody
) -> None:
    answer = await client.post("/v1/transactions", content=chunks(400, 400, 400, 400))
    assert "content-length" not in answer.request.headers  # really sent without a length
    assert answer.status_code == 413  # not the application's own 400
    assert answer.json()["error"] == "body_too_large"
    assert inner.received == 800  # the chunk that passed the limit was never handed over


@pytest.mark.parametrize("body", [b"x" * LIMIT, chunks(500, 500)], ids=["declared", "streamed"])
async def test_a_body_at_the_limit_goes_through_whole(
    client: httpx.AsyncClient, inner: ReadsTheBody, body: bytes | AsyncIterator[bytes]
) -> None:
    answer = await client.post("/v1/transactions", content=body)
    assert answer.status_code == 200
    assert answer.text == str(LIMIT)


async def test_in_front_of_the_api_a_large_body_is_refused_before_the_key_is_checked() -> None:
    settings = ApiSettings(
        redis_url="redis://127.0.0.1:9/0",  # never reached: nothing gets that far
        database_url="postgresql://nobody@127.0.0.1:9/none",
        api_keys=None,
        api_keys_file=None,
        api_max_body_bytes=4096,
        metrics_port=0,
    )
    app = create_app(
        settings, KafkaSettings(bootstrap_servers="127.0.0.1:9"), TopicSettings(), RuleSettings()
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        small = await client.post("/v1/transactions", content=b"[]")
        declared = await client.post("/v1/transactions", content=b" " * 4097)
        streamed = await client.post("/v1/transactions", content=chunks(2048, 2048, 1))
        feedback = await client.post("/v1/alerts/t1/feedback", content=chunks(5000))
        metrics = await client.get("/metrics")
    assert small.status_code == 401  # no key configured: the key check answers
    assert [declared.status_code, streamed.status_code, feedback.status_code] == [413] * 3
    assert streamed.json()["error"] == "body_too_large"
    assert 'status="413"' in metrics.text  # counted in the latency histogram


def test_the_default_limit_holds_the_largest_batch_the_routes_accept() -> None:
    brackets_and_commas = 2 + (MAX_BATCH - 1)
    largest = MAX_BATCH * MAX_MESSAGE_BYTES + brackets_and_commas
    assert largest <= MAX_BODY_BYTES
    assert ApiSettings.model_fields["api_max_body_bytes"].default == MAX_BODY_BYTES
    # ... and not far beyond it: at most 1.5 KiB per transaction of slack.
    assert MAX_BODY_BYTES - largest < MAX_BATCH * 1600
