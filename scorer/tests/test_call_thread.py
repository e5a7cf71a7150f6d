"""A producer call that never returns is given up on, without holding up the caller."""

from __future__ import annotations

import threading
import time

import pytest

from fraudpipe_scorer.sinks import ProducerStuckError, _CallThread


def test_a_call_returns_its_value_and_raises_its_error() -> None:
    calls = _CallThread("test")
    assert calls.call(lambda: 42, within_s=1, what="answer") == 42
    with pytest.raises(ZeroDivisionError):
        calls.call(lambda: 1 / 0, within_s=1, what="divide")


def test_a_hung_call_raises_stuck_and_the_teardown_runs_once_it_returns() -> None:
    release, torn_down = threading.Event(), threading.Event()
    calls = _CallThread("test")
    started = time.monotonic()
    with pytest.raises(ProducerStuckError, match="commit_transaction did not return within 0 s"):
        calls.call(release.wait, within_s=0.2, what="commit_transaction")
    assert time.monotonic() - started < 1.0
    calls.then_stop(torn_down.set)
    assert not torn_down.wait(0.2)  # still inside the hung call
    release.set()
    assert torn_down.wait(2)
