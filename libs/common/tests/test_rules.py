"""Decision rules: each rule fires on its own condition, the most severe verdict wins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudpipe_common.contracts.decisions import Verdict
from fraudpipe_common.features import FEATURE_NAMES
from fraudpipe_common.rules import Thresholds, decide, may_fire
from fraudpipe_scorer.config import RuleSettings

THRESHOLDS = Thresholds(flag=0.1, block=0.8)
RULES = RuleSettings(amount_ceiling=5000, velocity_1m=5, velocity_1h=30, new_country_amount=500)


def features(**values: float) -> list[float]:
    row = dict.fromkeys(FEATURE_NAMES, 0.0) | {"user_tx_count": 10.0, "count_1m": 1.0}
    row |= values
    return [row[name] for name in FEATURE_NAMES]


def codes(amount: float, row: list[float], score: float) -> tuple[Verdict, list[str]]:
    verdict, reasons = decide(amount, row, score, THRESHOLDS, RULES)
    return verdict, [r.code for r in reasons]


def test_an_ordinary_transaction_is_approved_without_reasons() -> None:
    assert codes(40.0, features(), 0.01) == (Verdict.APPROVE, [])


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.0999, Verdict.APPROVE), (0.1, Verdict.FLAG), (0.7999, Verdict.FLAG), (0.8, Verdict.BLOCK)],
)
def test_model_thresholds_are_inclusive(score: float, expected: Verdict) -> None:
    verdict, reasons = codes(40.0, features(), score)
    assert verdict is expected
    assert reasons == ([] if expected is Verdict.APPROVE else ["model_score"])


@pytest.mark.parametrize("score", [float("nan"), float("inf"), -float("inf")])
def test_a_score_the_model_could_not_give_is_flagged_not_approved(score: float) -> None:
    assert codes(10.0, features(), score) == (Verdict.FLAG, ["model_score_invalid"])


def test_amount_above_the_ceiling_blocks_even_with_a_low_score() -> None:
    assert codes(5000.01, features(), 0.0) == (Verdict.BLOCK, ["amount_ceiling"])
    assert codes(5000.0, features(), 0.0) == (Verdict.APPROVE, [])


def test_velocity_rules_flag_bursts_per_window() -> None:
    assert codes(10.0, features(count_1m=6), 0.0) == (Verdict.FLAG, ["velocity_1m"])
    assert codes(10.0, features(count_1m=5), 0.0) == (Verdict.APPROVE, [])
    assert codes(10.0, features(count_1h=31), 0.0) == (Verdict.FLAG, ["velocity_1h"])


def test_new_country_with_a_large_amount_flags_only_users_with_history() -> None:
    assert codes(600.0, features(new_country=1), 0.0) == (
        Verdict.FLAG,
        ["new_country_large_amount"],
    )
    assert codes(400.0, features(new_country=1), 0.0) == (Verdict.APPROVE, [])
    # A user's very first transaction is from a "new" country by definition.
    assert codes(600.0, features(new_country=1, user_tx_count=0), 0.0) == (Verdict.APPROVE, [])


def test_the_most_severe_verdict_wins_and_every_reason_is_kept() -> None:
    verdict, reasons = codes(9000.0, features(count_1m=9, new_country=1), 0.2)
    assert verdict is Verdict.BLOCK
    assert reasons == ["model_score", "amount_ceiling", "velocity_1m", "new_country_large_amount"]


_NEAR = st.sampled_from([0.0, 1.0, 7.0, 8.0, 9.0, 39.0, 40.0, 41.0, 999.99, 1000.0, 10_000.0])
_ROW = st.lists(
    st.one_of(_NEAR, st.floats(0, 20_000, allow_nan=False)),
    min_size=len(FEATURE_NAMES),
    max_size=len(FEATURE_NAMES),
)


@settings(max_examples=400, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            _ROW,
            st.one_of(
                st.sampled_from([0.0, 0.5, 0.9, float("nan"), float("inf"), -float("inf")]),
                st.floats(0, 1),
            ),
        ),
        min_size=1,
        max_size=20,
    ),
    flag=st.sampled_from([0.3, 0.5, 0.9]),
    block=st.sampled_from([0.5, 0.9, 0.95]),
)
def test_may_fire_covers_every_row_decide_would_not_approve_plainly(
    rows: list[tuple[list[float], float]], flag: float, block: float
) -> None:
    """Rows `may_fire` leaves out must be exactly APPROVE with no reason."""
    rules = RuleSettings()
    matrix = np.asarray([row for row, _ in rows], dtype=np.float64)
    scores = np.asarray([score for _, score in rows], dtype=np.float64)
    flagged = may_fire(matrix, scores, min(flag, block), rules)
    amount_at = FEATURE_NAMES.index("amount")
    for (row, score), might in zip(rows, flagged.tolist(), strict=True):
        verdict, reasons = decide(row[amount_at], row, score, Thresholds(flag, block), rules)
        if not might:
            assert (verdict, reasons) == (Verdict.APPROVE, [])
