"""What the API image's Kafka workers (`notify`, `archive`) share: a read_committed consumer
that commits only what the worker says is done, and a stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from aiokafka import AIOKafkaConsumer

from fraudpipe_common.kafka import KafkaSettings


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
