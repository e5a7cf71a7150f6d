"""`decisions.v1`: what the scorer decided about one transaction, and why. Key = tx_id."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field

SCHEMA = "decisions.v1"


class Verdict(StrEnum):
    APPROVE = "APPROVE"
    FLAG = "FLAG"
    BLOCK = "BLOCK"


class Track(StrEnum):
    """Which model decided: the stable one, the canary, or a shadow run (recorded, not acted on)."""

    STABLE = "stable"
    CANARY = "canary"
    SHADOW = "shadow"


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str = Field(
        description="Stable machine-readable code, e.g. model_score or amount_ceiling."
    )
    detail: str = Field(description="Human-readable explanation with the values involved.")


class Contribution(BaseModel):
    model_config = ConfigDict(frozen=True)

    feature: str
    value: float = Field(description="The feature's value in this transaction.")
    contribution: float = Field(
        description="Its exact TreeSHAP share of the model's margin, signed so that a "
        "positive share raised the risk."
    )

    def describe(self, unit: str) -> str:
        effect = "raised" if self.contribution > 0 else "lowered"
        size = abs(self.contribution)
        return f"{self.feature} = {self.value:g} {effect} the risk by {size:.3f} ({unit})"


class Explanation(BaseModel):
    """Why the model scored it so: the features with the largest effect. The base plus every
    feature's contribution (not only those listed) is the model's margin for this row."""

    model_config = ConfigDict(frozen=True)

    method: str = Field(default="tree_shap", description="Exact path-dependent TreeSHAP.")
    unit: str = Field(description="Unit of base and contributions (the model's margin).")
    base: float = Field(description="The margin of an average transaction, risk-signed.")
    contributions: list[Contribution] = Field(description="Largest effects first.")


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    tx_id: str
    user_id: str
    decision: Verdict
    score: float = Field(ge=0.0, le=1.0, description="Model fraud score in [0, 1].")
    model_digest: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="sha256 digest of the model artifact that scored it.",
    )
    track: Track = Track.STABLE
    reasons: list[Reason] = Field(default_factory=list)
    features: dict[str, float] = Field(default_factory=dict, description="Feature snapshot.")
    event_ts: dt.datetime = Field(description="The transaction's own timestamp.")
    decided_ts: dt.datetime = Field(description="When the decision was made.")
    explanation: Explanation | None = Field(
        default=None,
        description="Feature contributions, on FLAG/BLOCK decisions of models that carry an "
        "explainer; absent otherwise.",
    )

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def from_json(cls, data: bytes) -> Decision:
        return cls.model_validate_json(data)


class DecisionRecord(NamedTuple):
    """A decision as the scorer's hot path carries it: the fields of `Decision`, built from
    values the scorer computed itself and so not validated again, and written as the very
    bytes `Decision.to_json` writes (tests hold the two equal). Building and encoding one costs
    about a quarter of the pydantic model's time, which matters at thousands a second."""

    tx_id: str
    user_id: str
    decision: Verdict
    score: float
    model_digest: str
    track: Track
    reasons: list[Reason]
    features: dict[str, float]
    event_ts: dt.datetime  # timezone-aware, UTC
    decided_ts: dt.datetime  # timezone-aware, UTC
    explanation: Explanation | None = None

    def to_json(self) -> bytes:
        encoded = {
            "tx_id": self.tx_id,
            "user_id": self.user_id,
            "decision": self.decision,
            "score": self.score,
            "model_digest": self.model_digest,
            "track": self.track,
            "reasons": [{"code": r.code, "detail": r.detail} for r in self.reasons],
            "features": self.features,
            "event_ts": self.event_ts,
            "decided_ts": self.decided_ts,
        }
        if self.explanation is not None:
            encoded["explanation"] = self.explanation.model_dump(mode="json")
        return orjson.dumps(encoded, option=orjson.OPT_UTC_Z)

    def to_model(self) -> Decision:
        """The validated contract object (checks what the hot path skips)."""
        return Decision.model_validate(self._asdict())
