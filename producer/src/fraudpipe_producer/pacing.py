"""Keep a steady send rate without a sleep per message."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Allows `rate` events per second on average; `rate <= 0` means unlimited."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self._clock, self._sleep = rate, clock, sleep
        self._start = clock()
        self._sent = 0

    def acquire(self, count: int = 1) -> None:
        self._sent += count
        if self.rate <= 0:
            return
        ahead = self._sent / self.rate - (self._clock() - self._start)
        if ahead > 0.005:  # sleeping for less is all overhead
            self._sleep(ahead)
