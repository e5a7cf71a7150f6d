"""Polling for a condition in tests and checks, shared so each suite does not keep its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(check: Callable[[], Any], what: str, within_s: float, interval_s: float = 1.0) -> Any:
    """`check()`'s first truthy result, polled every `interval_s`; AssertionError naming
    `what` and the last result after `within_s`."""
    deadline = time.monotonic() + within_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not reached within {within_s:.0f} s (last: {last!r})")
