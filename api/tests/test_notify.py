"""`fraudpipe-api notify`: BLOCK decisions and alert-rate spikes as Slack-compatible webhook
messages, with retries and a rate limit, proven against a real HTTP receiver on loopback and a
real Kafka topic."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from fraudpipe_api.metrics import NotifyMetrics
from fraudpipe_api.notify import (
    Notifier,
    NotifySettings,
    SpikeDetector,
    TokenBucket,
    Webhook,
    block_message,
)
from fraudpipe_common.contracts.decisions import Decision, Reason, Track, Verdict

from .harness import API, DIGEST, free_port

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def decision(
    tx_id: str,
    verdict: Verdict = Verdict.BLOCK,
    *,
    track: Track = Track.STABLE,
    at: dt.datetime = NOW,
) -> Decision:
    return Decision(
        tx_id=tx_id,
        user_id="u-7",
        decision=verdict,
        score=0.97 if verdict is Verdict.BLOCK else 0.01,
        model_digest=DIGEST,
        track=track,
        reasons=[Reason(code="amount_outlier", detail="amount 9,400.00 is 31x the user's median")]
        if verdict is not Verdict.APPROVE
        else [],
        event_ts=at,
        decided_ts=at,
    )


# -- pure logic ---------------------------------------------------------------------------------
def test_the_bucket_lets_a_burst_through_then_paces() -> None:
    now = [0.0]
    bucket = TokenBucket(per_minute=60, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 1.0
    assert bucket.take()
    assert not bucket.take()


def test_a_spike_needs_history_then_fires_once_per_cooldown() -> None:
    spikes = SpikeDetector(factor=3, window_s=600, min_decisions=100, cooldown_s=1800)
    start = NOW.timestamp()
    for i in range(200):  # no day before: no spike, however many alerts
        spikes.observe(start + i, alert=True)
    assert spikes.check(start + 200) is None

    spikes = SpikeDetector(factor=3, window_s=600, min_decisions=100, cooldown_s=1800)
    for i in range(1000):  # the day before: 2 % alerts
        spikes.observe(start - 3600 + i, alert=i % 50 == 0)
    for i in range(100):  # the last minutes: 5 % is not three times 2 %
        spikes.observe(start + i, alert=i % 20 == 0)
    assert spikes.check(start + 100) is None
    for i in range(100):  # then 30 %
        spikes.observe(start + 100 + i, alert=i % 2 == 0)
    spike = spikes.check(start + 200)
    assert spike is not None
    assert spike.window_share > 3 * spike.baseline_share
    assert spikes.check(start + 260) is None  # cooling down


def test_a_block_message_is_slack_json_with_the_reasons() -> None:
    message = block_message(decision("tx-9"))
    assert "tx-9" in str(message["text"])
    assert "amount_outlier" in str(message["text"])
    (section,) = message["blocks"]  # type: ignore[misc]
    assert section["text"]["type"] == "mrkdwn"
    assert "31x" in section["text"]["text"]


# -- a real receiver ----------------------------------------------------------------------------
@dataclass
class Receiver:
    """An HTTP server on loopback that records every POST; `answers` scripts the status codes
    of the first requests (then 200)."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[dict[str, object]] = field(default_factory=list)
    attempts: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.json()
        if self.answers:
            status, headers = self.answers.pop(0)
            return web.Response(status=status, headers=headers, text="not now")
        self.received.append(body)
        return web.Response(text="ok")

    def texts(self) -> list[str]:
        return [str(m["text"]) for m in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}/hook"
    yield found
    await runner.cleanup()


async def test_delivery_retries_5xx_and_429_then_succeeds(receiver: Receiver) -> None:
    receiver.answers = [(503, {}), (429, {"Retry-After": "2"}), (502, {})]
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    async with httpx.AsyncClient(timeout=10) as client:
        hook = Webhook(receiver.url, 5, 0.5, 30.0, client, sleep=no_wait)
        assert await hook.post({"text": "hello"})
    assert receiver.attempts == 4
    assert receiver.texts() == ["hello"]
    assert waits == [0.5, 2.0, 2.0]  # doubling, and Retry-After when longer


async def test_delivery_gives_up_on_a_refusal_and_after_the_last_attempt(
    receiver: Receiver,
) -> None:
    async def no_wait(_: float) -> None:
        return None

    async with httpx.AsyncClient(timeout=10) as client:
        receiver.answers = [(400, {})]
        assert not await Webhook(receiver.url, 5, 0.5, 30.0, client, sleep=no_wait).post({})
        assert receiver.attempts == 1
        receiver.answers = [(500, {})] * 3
        assert not await Webhook(receiver.url, 3, 0.5, 30.0, client, sleep=no_wait).post({})
        assert receiver.attempts == 4
    assert receiver.received == []


async def test_a_burst_of_blocks_is_rate_limited_into_a_summary(receiver: Receiver) -> None:
    now = [0.0]
    settings = NotifySettings(webhook_url=receiver.url, rate_per_minute=60, burst=3)
    async with httpx.AsyncClient(timeout=10) as client:
        hook = Webhook(receiver.url, 3, 0.01, 0.01, client)
        notifier = Notifier(settings, hook, NotifyMetrics(), clock=lambda: now[0])
        await notifier.handle([decision(f"b-{i}") for i in range(20)])
        assert len(receiver.received) == 3
        now[0] += 1.0  # one token later
        await notifier.flush_summary()
    assert receiver.texts()[-1].startswith("… and 17 more BLOCK decisions")


# -- the worker, on Kafka -----------------------------------------------------------------------
@pytest.mark.kafka
async def test_the_worker_notifies_blocks_and_a_spike_from_decisions_v1(
    receiver: Receiver,
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    topic = kafka_topic(partitions=2, prefix="notify")
    day_before = NOW - dt.timedelta(hours=3)
    history = [
        decision(f"h-{i}", Verdict.FLAG if i % 50 == 0 else Verdict.APPROVE, at=day_before)
        for i in range(300)
    ]
    now = [
        decision(f"n-{i}", Verdict.BLOCK if i % 3 == 0 else Verdict.APPROVE, at=NOW)
        for i in range(60)
    ]
    shadow = [decision("shadow-1", track=Track.SHADOW, at=NOW)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for d in [*history, *shadow, *now]:
            await producer.send(topic, d.to_json(), key=d.tx_id.encode())
        await producer.flush()
    finally:
        await producer.stop()

    metrics_port = free_port()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DECISIONS_TOPIC": topic,
        "NOTIFY_WEBHOOK_URL": receiver.url,
        "NOTIFY_CONSUMER_GROUP": f"notify-{topic}",
        "NOTIFY_START_FROM": "earliest",
        "NOTIFY_RATE_PER_MINUTE": "600",
        "NOTIFY_BURST": "5",
        "NOTIFY_SPIKE_WINDOW_S": "600",
        "NOTIFY_SPIKE_MIN_DECISIONS": "50",
        "NOTIFY_METRICS_PORT": str(metrics_port),
        "NOTIFY_METRICS_HOST": "127.0.0.1",
    }
    log = tmp_path / "notify.log"
    with log.open("wb") as out:
        worker = await asyncio.create_subprocess_exec(
            API, "notify", env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    blocks = sum(1 for d in now if d.decision is Verdict.BLOCK)
    try:

        def accounted() -> int:
            single = sum(t.startswith("BLOCK ") for t in receiver.texts())
            summed = sum(int(t.split()[2]) for t in receiver.texts() if t.startswith("… and "))
            return single + summed

        deadline = time.monotonic() + 120
        while not (
            accounted() >= blocks
            and any(t.startswith("Alert-rate spike") for t in receiver.texts())
        ):
            assert worker.returncode is None, log.read_text()
            assert time.monotonic() < deadline, (receiver.texts(), log.read_text()[-2000:])
            await asyncio.sleep(0.5)
        async with httpx.AsyncClient() as http:
            page = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), timeout=30)
    texts = receiver.texts()
    assert accounted() == blocks  # each BLOCK once, alone or in a summary
    assert not any("shadow-1" in t for t in texts)
    assert not any(t.startswith("BLOCK h-") for t in texts)  # history had no BLOCK
    (spike,) = [t for t in texts if t.startswith("Alert-rate spike")]
    found = re.match(r"Alert-rate spike: ([\d.]+)% of (\d+) decisions .* against ([\d.]+)%", spike)
    assert found, spike
    window, baseline = float(found[1]), float(found[3])
    assert window > 3 * baseline
    assert baseline == pytest.approx(2.0, abs=0.5)
    assert worker.returncode == 0
    assert 'fraudpipe_api_notifications_total{kind="block",result="sent"}' in page
