"""The rate limiter keeps the average rate without sleeping per message."""

from __future__ import annotations

from fraudpipe_producer.pacing import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_sleeps_just_enough_to_hold_the_rate() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1000, clock=fake.clock, sleep=fake.sleep)
    for _ in range(10):
        limiter.acquire(100)
    assert abs(fake.now - 1.0) < 1e-9  # 1000 events at 1000/s take one second


def test_unlimited_never_sleeps() -> None:
    fake = FakeTime()
    limiter = RateLimiter(0, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire(1_000_000)
    assert fake.slept == []


def test_no_sleep_when_behind_schedule() -> None:
    fake = FakeTime()
    limiter = RateLimiter(100, clock=fake.clock, sleep=fake.sleep)
    fake.now = 5.0
    limiter.acquire(100)
    assert fake.slept == []
