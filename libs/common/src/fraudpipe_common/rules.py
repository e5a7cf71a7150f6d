"""Decision rules: the model's thresholds plus hand-written rules, combined by severity.
Shared by the scorer and the API's synchronous scoring, so both decide alike.

Pure functions over one transaction's amount, its feature vector and its score, so that every
rule is unit-tested without a broker. Each rule that fires adds a `Reason`; the verdict is the
most severe one any rule asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudpipe_common.contracts.decisions import Reason, Verdict
from fraudpipe_common.features import FEATURE_NAMES

_AT = {name: i for i, name in enumerate(FEATURE_NAMES)}
_COUNT_1M, _COUNT_1H = _AT["count_1m"], _AT["count_1h"]
_NEW_COUNTRY, _USER_TX_COUNT = _AT["new_country"], _AT["user_tx_count"]
_AMOUNT = _AT["amount"]
_SEVERITY = {Verdict.APPROVE: 0, Verdict.FLAG: 1, Verdict.BLOCK: 2}


class RuleSettings(BaseSettings):
    """Thresholds of the hand-written rules that sit beside the model."""

    model_config = SettingsConfigDict(env_prefix="RULE_", extra="ignore")

    amount_ceiling: float = Field(
        default=10_000.0, gt=0, description="BLOCK any single transaction above this amount."
    )
    velocity_1m: int = Field(
        default=8, ge=1, description="FLAG when a user makes more transactions in one minute."
    )
    velocity_1h: int = Field(
        default=40, ge=1, description="FLAG when a user makes more transactions in one hour."
    )
    new_country_amount: float = Field(
        default=1_000.0,
        gt=0,
        description="FLAG a first transaction from a new country at or above this amount.",
    )


@dataclass(frozen=True, slots=True)
class Thresholds:
    """On the model score: `score >= block` is BLOCK, else `score >= flag` is FLAG."""

    flag: float
    block: float


def decide(
    amount: float,
    features: Sequence[float],
    score: float,
    thresholds: Thresholds,
    rules: RuleSettings,
) -> tuple[Verdict, list[Reason]]:
    verdict, reasons = Verdict.APPROVE, []

    def fire(asks: Verdict, code: str, detail: str) -> None:
        nonlocal verdict
        reasons.append(Reason(code=code, detail=detail))
        if _SEVERITY[asks] > _SEVERITY[verdict]:
            verdict = asks

    if not math.isfinite(score):
        # A model that cannot score a row must not approve it: held for an analyst.
        fire(Verdict.FLAG, "model_score_invalid", f"the model returned {score} for it")
    elif score >= thresholds.block:
        fire(Verdict.BLOCK, "model_score", f"score {score:.4f} >= block {thresholds.block:.4f}")
    elif score >= thresholds.flag:
        fire(Verdict.FLAG, "model_score", f"score {score:.4f} >= flag {thresholds.flag:.4f}")
    if amount > rules.amount_ceiling:
        fire(
            Verdict.BLOCK,
            "amount_ceiling",
            f"amount {amount:.2f} above the ceiling {rules.amount_ceiling:.2f}",
        )
    count_1m, count_1h = features[_COUNT_1M], features[_COUNT_1H]
    if count_1m > rules.velocity_1m:
        fire(
            Verdict.FLAG,
            "velocity_1m",
            f"{count_1m:.0f} transactions in 1 minute (limit {rules.velocity_1m})",
        )
    if count_1h > rules.velocity_1h:
        fire(
            Verdict.FLAG,
            "velocity_1h",
            f"{count_1h:.0f} transactions in 1 hour (limit {rules.velocity_1h})",
        )
    if (
        features[_NEW_COUNTRY] >= 1.0
        and features[_USER_TX_COUNT] > 0
        and amount >= rules.new_country_amount
    ):
        fire(
            Verdict.FLAG,
            "new_country_large_amount",
            f"first transaction from this country for {amount:.2f} "
            f"(limit {rules.new_country_amount:.2f})",
        )
    return verdict, reasons


def may_fire(
    features: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
    score_floor: npt.NDArray[np.float64] | float,
    rules: RuleSettings,
) -> npt.NDArray[np.bool_]:
    """Rows (feature vectors in FEATURE_NAMES order, whose `amount` column is the amount) for
    which some rule of `decide` might fire; `score_floor` is min(flag, block) of the model
    that scores each row. Every other row is APPROVE with no reason, so a batch calls
    `decide` only for these (the test holds this to `decide` itself)."""
    amount = features[:, _AMOUNT]
    return (
        (scores >= score_floor)
        | ~np.isfinite(scores)
        | (amount > rules.amount_ceiling)
        | (features[:, _COUNT_1M] > rules.velocity_1m)
        | (features[:, _COUNT_1H] > rules.velocity_1h)
        | (
            (features[:, _NEW_COUNTRY] >= 1.0)
            & (features[:, _USER_TX_COUNT] > 0)
            & (amount >= rules.new_country_amount)
        )
    )
