"""What the API image's Kafka workers (`notify`, `archive`) share: a read_committed consumer
that commits only what the worker says is done, started once Kafka answers, and a stop on
SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from fraudpipe_common.kafka import KafkaSettings

log = logging.getLogger(__name__)


def committed_reader(
    kafka: KafkaSettings,
    group: str,
    start_from: str,  # auto_offset_reset for a group with no committed offset
    *topics: str,
) -> AIOKafkaConsumer:
    """Sees only committed Kafka transactions (the scorer's decisions), never auto-commits."""
    return AIOKafkaConsumer(
        *topics,
        group_id=group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset=start_from,
        **kafka.aiokafka(),
    )


def stop_on_signals() -> asyncio.Event:
    """Set on SIGTERM or SIGINT: the worker finishes what it holds, commits, leaves."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    return stopping


async def start_when_reachable(
    consumer: AIOKafkaConsumer,
    stopping: asyncio.Event,
    first_wait_s: float = 0.5,
    longest_wait_s: float = 30.0,
) -> bool:
    """Start `consumer`, trying again with doubling waits while no broker answers: a new pod's
    first second, whose DNS may not resolve the broker's Service yet, or a broker restarting.
    A worker waits for Kafka as every other part of the pipeline does, rather than exit and
    be restarted by a back-off that grows to minutes. False if stopped before it started."""
    wait = first_wait_s
    while not stopping.is_set():
        try:
            await consumer.start()
            return True
        except KafkaConnectionError as exc:
            log.warning("kafka unreachable (%s); trying again in %.1f s", exc, wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), wait)
        wait = min(wait * 2, longest_wait_s)
    with contextlib.suppress(Exception):
        await consumer.stop()  # what the failed starts opened
    return False
