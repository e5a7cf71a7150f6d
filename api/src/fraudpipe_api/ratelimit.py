"""Failed attempts per client in a sliding window, with a bounded number of clients.

A client that reaches `limit` failures within `window_s` seconds must wait until the oldest of
them is `window_s` old: never more than `limit` failures in any `window_s` interval, so guessing
runs at `limit / window_s` at most, bursts included. Each client holds at most `limit` times
(8 bytes each, about 200 bytes per client besides: 3 MB for 10,000 clients of 10).

Memory is bounded: at most `max_clients` clients are tracked, in the order of their latest
failure. A client whose failures have all expired is dropped when a new one arrives; when the
table is still full, the one whose latest failure is oldest is forgotten (it is the one closest
to being released anyway).

Pure: no I/O, the clock is injected (monotonic seconds).
"""

from __future__ import annotations

import time
from array import array
from collections import OrderedDict
from collections.abc import Callable


class FailureWindow:
    def __init__(
        self,
        limit: int,
        window_s: float,
        max_clients: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 0 or window_s <= 0 or max_clients < 1:
            raise ValueError("limit >= 0, window_s > 0 and max_clients >= 1 are required")
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        # client -> its latest `limit` failure times, oldest first; least recent failure first
        self._failures: OrderedDict[str, array[float]] = OrderedDict()

    def __len__(self) -> int:
        """Clients tracked now (some may hold only expired failures until the next record)."""
        return len(self._failures)

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may fail again; 0 when it may now. O(1)."""
        times = self._failures.get(client)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window_s - self._clock())

    def record(self, client: str) -> bool:
        """Counts one failure of `client`; True when this one reaches the limit (from now on
        `retry_after` is positive until the window has passed)."""
        if self.limit == 0:
            return False
        now = self._clock()
        times = self._failures.get(client)
        if times is None:
            self._make_room(now)
            times = self._failures[client] = array("d")
        else:
            self._failures.move_to_end(client)
            if len(times) == self.limit:
                del times[0]
        times.append(now)
        return len(times) == self.limit and now - times[0] < self.window_s

    def _make_room(self, now: float) -> None:
        horizon = now - self.window_s
        while self._failures:
            oldest = next(iter(self._failures.values()))
            if oldest[-1] > horizon and len(self._failures) < self.max_clients:
                return
            self._failures.popitem(last=False)
