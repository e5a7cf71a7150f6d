"""A one-line progress display for terminals: rate, sent, errors."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, stream: TextIO = sys.stderr, *, enabled: bool | None = None, interval_s: float = 0.25
    ) -> None:
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.interval_s = interval_s
        self._start = self._last = time.monotonic()
        self._last_sent = 0
        self._rate = 0.0

    def update(self, sent: int, errors: int, fraud: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < self.interval_s:
            return
        self._rate = (sent - self._last_sent) / (now - self._last)
        self._last, self._last_sent = now, sent
        share = 100.0 * fraud / sent if sent else 0.0
        self.stream.write(
            f"\r  sent {sent:>12,}   rate {self._rate:>9,.0f}/s   errors {errors:>6,}"
            f"   fraud {share:5.2f}%  "
        )
        self.stream.flush()

    def finish(self, sent: int, errors: int, fraud: int) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        if self.enabled:
            self.stream.write("\n")
        return (
            f"sent {sent:,} transactions in {elapsed:.1f}s ({sent / elapsed:,.0f}/s), "
            f"{fraud:,} fraudulent, {errors:,} delivery errors"
        )
