"""`observe_many` leaves a histogram exactly as one `observe` per value would."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from fraudpipe_common.contracts.dlq import CODES
from fraudpipe_scorer.metrics import ScorerMetrics, observe_many

BUCKETS = (0.005, 0.01, 0.05, 0.1, 1.0)


def exposition(values: list[float], *, bulk: bool) -> tuple[bytes, float]:
    """The histogram's lines but its sum, and the sum (added in another order: equal only to
    rounding)."""
    registry = CollectorRegistry()
    histogram = Histogram("h_seconds", "test", buckets=BUCKETS, registry=registry)
    if bulk:
        observe_many(histogram, np.asarray(values, dtype=np.float64))
    else:
        for value in values:
            histogram.observe(value)
    lines = generate_latest(registry).splitlines()
    (total,) = (float(line.split()[1]) for line in lines if line.startswith(b"h_seconds_sum"))
    kept = (line for line in lines if b"_created" not in line and b"_sum" not in line)
    return b"\n".join(kept), total


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from([0.0, *BUCKETS]), st.floats(0, 5, allow_nan=False)),
        max_size=60,
    )
)
def test_bulk_observation_equals_one_observe_per_value(values: list[float]) -> None:
    lines, total = exposition(values, bulk=True)
    expected_lines, expected_total = exposition(values, bulk=False)
    assert lines == expected_lines
    assert total == pytest.approx(expected_total, rel=1e-12, abs=1e-12)


def test_dlq_counters_start_at_zero_for_every_rejection_code() -> None:
    text = generate_latest(ScorerMetrics().registry).decode()
    for code in CODES:
        assert f'fraudpipe_scorer_dlq_messages_total{{code="{code}"}} 0.0' in text
