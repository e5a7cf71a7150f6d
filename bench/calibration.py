"""How fast this machine runs Python right now, so that runs on different days compare.

The project machine is a shared virtual machine: the same code measured 4.9 µs per decoded
transaction one day and 16.7 µs another. Absolute rates mean little without this figure; a
bench prints it before and after its phases and reports both.

    uv run python bench/calibration.py
"""

from __future__ import annotations

import itertools
import time

import orjson

from fraudpipe_common.contracts.transactions import decode_transaction
from fraudpipe_common.synthetic import TrafficConfig, generate

_PAYLOADS = [
    orjson.dumps(g.message()) for g in itertools.islice(generate(TrafficConfig(seed=5)), 5_000)
]


def decode_us_per_message(rounds: int = 5) -> float:
    """Best of `rounds` over 5,000 messages: µs the scorer's decoder takes per transaction
    (4.9 on the machine of the first benchmark runs)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for payload in _PAYLOADS:
            decode_transaction(payload)
        best = min(best, time.perf_counter() - started)
    return best / len(_PAYLOADS) * 1e6


if __name__ == "__main__":
    print(f"decode_transaction: {decode_us_per_message():.2f} µs per message")
