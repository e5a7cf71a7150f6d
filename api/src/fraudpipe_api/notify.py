"""`fraudpipe-api notify`: webhook notifications (Slack-compatible JSON) of BLOCK decisions and
alert-rate spikes, outside the scorer's hot path.

A worker of its own reads decisions.v1 as a read_committed consumer (its own consumer group, so
it never slows or shares offsets with anything else), posts to `NOTIFY_WEBHOOK_URL`, and commits
its offsets once a batch's notifications were sent or given up: at least once, a restart may
repeat a few. Decisions in shadow are never notified.

- BLOCK: one message each, through a token bucket (`NOTIFY_RATE_PER_MINUTE`, burst
  `NOTIFY_BURST`); what the bucket holds back is counted and sent as one summary message as soon
  as a token is free, so a burst of blocks becomes "… and 340 more", not 340 messages.
- Spike: the share of FLAG+BLOCK among acting decisions over the last `NOTIFY_SPIKE_WINDOW_S`
  against the share over the day before it; above `NOTIFY_SPIKE_FACTOR` times (with at least
  `NOTIFY_SPIKE_MIN_DECISIONS` in both), one message, then quiet for `NOTIFY_SPIKE_COOLDOWN_S`.
  Time is the decisions' own `decided_ts`, so a replay behaves as the original run did.
- Delivery: retried on connection errors, 5xx and 429 (honouring Retry-After) with doubling
  backoff, up to `NOTIFY_MAX_ATTEMPTS`; any other 4xx is the receiver refusing the message and
  is not retried.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudpipe_api.metrics import NotifyMetrics
from fraudpipe_api.workers import committed_reader, start_when_reachable, stop_on_signals
from fraudpipe_common.contracts.decisions import Decision, Track, Verdict
from fraudpipe_common.kafka import KafkaSettings, TopicSettings

log = logging.getLogger("fraudpipe_api.notify")


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    webhook_url: str = Field(description="Where to POST (a Slack incoming webhook, or any).")
    consumer_group: str = Field(default="fraudpipe-notify", description="Kafka consumer group.")
    start_from: str = Field(
        default="latest",
        pattern="^(latest|earliest)$",
        description="Where a new consumer group starts: latest (no backlog of old BLOCKs).",
    )
    rate_per_minute: float = Field(default=30.0, gt=0, description="BLOCK messages per minute.")
    burst: int = Field(default=5, ge=1, description="BLOCK messages sent at once before pacing.")
    max_attempts: int = Field(default=5, ge=1, le=20, description="Tries per message.")
    retry_base_s: float = Field(default=0.5, gt=0, description="First retry delay; doubles.")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest retry delay.")
    timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one POST.")
    spike_factor: float = Field(default=3.0, gt=1, description="Spike: window share / day share.")
    spike_window_s: int = Field(default=600, ge=10, description="Window the spike looks at.")
    spike_min_decisions: int = Field(
        default=200, ge=1, description="Decisions needed in the window and in the day before."
    )
    spike_cooldown_s: int = Field(default=1800, ge=0, description="Quiet time after a spike.")
    metrics_port: int = Field(default=9000, ge=0, le=65535, description="0: no /metrics.")
    metrics_host: str = Field(default="0.0.0.0", description="Address of /metrics.")  # noqa: S104


# -- pure logic ---------------------------------------------------------------------------------
class TokenBucket:
    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = per_minute / 60.0, burst, clock
        self.tokens, self.at = float(burst), clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Spike:
    window_share: float
    baseline_share: float
    window_decisions: int


@dataclass
class SpikeDetector:
    """Counts acting decisions and alerts in buckets of a tenth of the window, a day deep."""

    factor: float
    window_s: int
    min_decisions: int
    cooldown_s: int
    horizon_s: int = 86_400
    _buckets: collections.OrderedDict[int, list[int]] = field(
        default_factory=collections.OrderedDict
    )
    _quiet_until: float = -math.inf

    @property
    def bucket_s(self) -> int:
        return max(1, self.window_s // 10)

    def observe(self, ts: float, alert: bool) -> None:
        key = int(ts // self.bucket_s)
        counts = self._buckets.setdefault(key, [0, 0])
        counts[0] += 1
        counts[1] += int(alert)
        oldest = key - (self.horizon_s + self.window_s) // self.bucket_s
        while self._buckets and next(iter(self._buckets)) < oldest:
            self._buckets.popitem(last=False)

    def check(self, now: float) -> Spike | None:
        if now < self._quiet_until:
            return None
        first_in_window = int(now // self.bucket_s) - self.window_s // self.bucket_s + 1
        window, baseline = [0, 0], [0, 0]
        for key, (decided, alerts) in self._buckets.items():
            into = window if key >= first_in_window else baseline
            into[0] += decided
            into[1] += alerts
        if window[0] < self.min_decisions or baseline[0] < self.min_decisions:
            return None
        window_share, baseline_share = window[1] / window[0], baseline[1] / baseline[0]
        if window_share <= self.factor * baseline_share or window[1] == 0:
            return None
        self._quiet_until = now + self.cooldown_s
        return Spike(window_share, baseline_share, window[0])


def _reasons(decision: Decision) -> str:
    return ", ".join(r.code for r in decision.reasons) or "score above the block threshold"


def block_message(decision: Decision) -> dict[str, object]:
    text = (
        f"BLOCK {decision.tx_id} (score {decision.score:.3f}) for user {decision.user_id}: "
        f"{_reasons(decision)}"
    )
    detail = "\n".join(f"• `{r.code}` {r.detail}" for r in decision.reasons)
    return {
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*BLOCK* `{decision.tx_id}` — score *{decision.score:.3f}*, user "
                    f"`{decision.user_id}`, model `{decision.model_digest[:19]}` "
                    f"({decision.track.value})\n{detail}".rstrip(),
                },
            }
        ],
    }


def summary_message(held_back: int) -> dict[str, object]:
    text = (
        f"… and {held_back} more BLOCK decisions not sent one by one (notification rate limit); "
        "see /v1/alerts?decision=BLOCK"
    )
    return {"text": text}


def spike_message(spike: Spike, window_s: int) -> dict[str, object]:
    text = (
        f"Alert-rate spike: {spike.window_share:.1%} of {spike.window_decisions} decisions "
        f"flagged or blocked over the last {window_s // 60 or 1} min, against "
        f"{spike.baseline_share:.1%} over the day before"
    )
    return {"text": text}


# -- delivery -----------------------------------------------------------------------------------
@dataclass
class Webhook:
    url: str
    max_attempts: int
    retry_base_s: float
    retry_max_s: float
    client: httpx.AsyncClient
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def post(self, payload: dict[str, object]) -> bool:
        """True once the receiver accepted it; False after the last attempt or a refusal."""
        delay = self.retry_base_s
        for attempt in range(1, self.max_attempts + 1):
            wait = delay
            try:
                response = await self.client.post(self.url, json=payload)
            except httpx.HTTPError as exc:
                log.warning("webhook attempt %d failed: %r", attempt, exc)
            else:
                if response.status_code < 300:
                    return True
                if response.status_code != 429 and response.status_code < 500:
                    log.error("webhook refused the message: %d %s", response.status_code,
                              response.text[:200])  # fmt: skip
                    return False
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = max(wait, float(retry_after))
                log.warning("webhook attempt %d: %d", attempt, response.status_code)
            if attempt < self.max_attempts:
                await self.sleep(min(wait, self.retry_max_s))
                delay = min(delay * 2, self.retry_max_s)
        return False


@dataclass
class Notifier:
    """What to send for each decision; I/O through `webhook`."""

    settings: NotifySettings
    webhook: Webhook
    metrics: NotifyMetrics
    clock: Callable[[], float] = time.monotonic
    held_back: int = 0

    def __post_init__(self) -> None:
        s = self.settings
        self.bucket = TokenBucket(s.rate_per_minute, s.burst, self.clock)
        self.spikes = SpikeDetector(
            s.spike_factor, s.spike_window_s, s.spike_min_decisions, s.spike_cooldown_s
        )

    async def _send(self, kind: str, payload: dict[str, object]) -> None:
        sent = await self.webhook.post(payload)
        self.metrics.notifications.labels(kind, "sent" if sent else "failed").inc()

    async def handle(self, decisions: list[Decision]) -> None:
        latest = None
        for decision in decisions:
            if decision.track is Track.SHADOW:
                continue
            ts = decision.decided_ts.timestamp()
            latest = ts if latest is None else max(latest, ts)
            self.spikes.observe(ts, decision.decision is not Verdict.APPROVE)
            if decision.decision is not Verdict.BLOCK:
                continue
            if self.bucket.take():
                await self._send("block", block_message(decision))
            else:
                self.held_back += 1
                self.metrics.held_back.inc()
        await self.flush_summary()
        if latest is not None and (spike := self.spikes.check(latest)) is not None:
            await self._send("spike", spike_message(spike, self.settings.spike_window_s))

    async def flush_summary(self) -> None:
        if self.held_back and self.bucket.take():
            held, self.held_back = self.held_back, 0
            await self._send("summary", summary_message(held))


# -- the worker ---------------------------------------------------------------------------------
async def run(settings: NotifySettings, kafka: KafkaSettings, topics: TopicSettings) -> None:
    metrics = NotifyMetrics()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port, settings.metrics_host)
    consumer = committed_reader(
        kafka, settings.consumer_group, settings.start_from, topics.decisions_topic
    )
    stopping = stop_on_signals()
    async with httpx.AsyncClient(timeout=settings.timeout_s) as client:
        webhook = Webhook(
            settings.webhook_url,
            settings.max_attempts,
            settings.retry_base_s,
            settings.retry_max_s,
            client,
        )
        notifier = Notifier(settings, webhook, metrics)
        if not await start_when_reachable(consumer, stopping):
            return
        # The host only: webhook paths carry the secret (Slack's /services/T…/B…/<secret>).
        # (hostname, not netloc: a URL may carry user:password@ before the host)
        log.info("notifying %s of BLOCKs and spikes on %s", urlsplit(settings.webhook_url).hostname,
                 topics.decisions_topic)  # fmt: skip
        try:
            while not stopping.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                decisions = []
                for records in batch.values():
                    for record in records:
                        try:
                            decisions.append(Decision.from_json(record.value))
                        except (ValidationError, ValueError) as exc:
                            log.warning("skipping an unreadable decision: %s", exc)
                if decisions:
                    await notifier.handle(decisions)
                    await consumer.commit()
                else:
                    await notifier.flush_summary()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
