"""Request and response bodies, as the OpenAPI schema shows them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from fraudpipe_common.contracts.decisions import Contribution, Reason, Track

NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL; refused up front, never a 500
Text = Annotated[str, Field(pattern=NO_NUL)]
FeedbackLabel = Literal["fraud", "legit", "unsure"]
AlertVerdict = Literal["FLAG", "BLOCK"]


class Alert(BaseModel):
    tx_id: str
    user_id: str
    decision: AlertVerdict
    score: float
    model_digest: str
    track: Track
    reasons: list[Reason]
    features: dict[str, float]
    event_ts: dt.datetime
    decided_ts: dt.datetime
    feedback: FeedbackLabel | None = Field(description="The latest analyst label, if any.")


class AlertPage(BaseModel):
    items: list[Alert]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class AlertQuery(BaseModel):
    """`GET /v1/alerts`'s query (one model: FastAPI's route and the fast path read it)."""

    user_id: Annotated[str | None, Field(max_length=128, pattern=NO_NUL)] = None
    decision: AlertVerdict | None = None
    since: dt.datetime | None = Field(default=None, description="decided at or after")
    until: dt.datetime | None = Field(default=None, description="decided before")
    min_score: Annotated[float | None, Field(ge=0, le=1, allow_inf_nan=False)] = None
    model_digest: Annotated[str | None, Field(pattern=r"^sha256:[0-9a-f]{64}$")] = None
    track: Track | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 50
    cursor: Annotated[str | None, Field(max_length=1024)] = None


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: FeedbackLabel
    analyst: Annotated[str, Field(min_length=1, max_length=128, pattern=NO_NUL)]
    note: Annotated[str, Field(max_length=2000, pattern=NO_NUL)] = ""


class Feedback(BaseModel):
    id: int
    tx_id: str
    label: FeedbackLabel
    analyst: str
    note: str
    created_at: dt.datetime


class AlertDetail(Alert):
    feedback_history: list[Feedback] = Field(description="Every label given, oldest first.")


class ExplainedContribution(Contribution):
    text: str = Field(description="The contribution in words.")


class AlertExplanation(BaseModel):
    tx_id: str
    decision: AlertVerdict
    score: float
    model_digest: str
    track: Track
    rules: list[Reason] = Field(description="The rules that fired (model score included).")
    method: str = Field(description="tree_shap: exact path-dependent TreeSHAP.")
    unit: str = Field(description="Unit of base and contributions (the model's margin).")
    base: float = Field(description="The margin of an average transaction, risk-signed.")
    contributions: list[ExplainedContribution] = Field(description="Largest effects first.")
    summary: str = Field(description="The whole explanation in a few sentences.")


class Accepted(BaseModel):
    tx_ids: list[str]
    topic: str


class LabelOut(BaseModel):
    """A training label (the `Label` contract's fields plus who gave it and when)."""

    tx_id: str
    is_fraud: bool
    scenario: str | None = None
    analyst: str
    created_at: dt.datetime
    feedback_id: int


class LabelPage(BaseModel):
    items: list[LabelOut]
    next_cursor: str | None


class UserCount(BaseModel):
    user_id: str
    alerts: int
    blocks: int


class ModelCount(BaseModel):
    model_digest: str
    track: Track
    alerts: int


class CountryCount(BaseModel):
    country: str = Field(description="The transaction's country, as the scorer stored it.")
    alerts: int
    blocks: int


class FeedbackCounts(BaseModel):
    fraud: int
    legit: int
    unsure: int


class Stats(BaseModel):
    window_s: float
    since: dt.datetime
    decisions: dict[str, int | None] = Field(
        description="By verdict; APPROVE needs PROMETHEUS_URL (only alerts are stored)."
    )
    alerts: int
    alert_rate: float | None = Field(description="Alerts over all decisions (PROMETHEUS_URL).")
    feedback: FeedbackCounts
    precision: float | None = Field(description="fraud / (fraud + legit) of labelled alerts.")
    top_users: list[UserCount]
    by_model: list[ModelCount]
    by_country: list[CountryCount] | None = Field(
        description="The ten countries with the most alerts in the window (alerts stored "
        "without a country are not counted); null while the alerts table has no country "
        "column."
    )


class ModelUse(BaseModel):
    model_digest: str
    track: Track
    decisions: int | None = Field(description="Decisions in the window (PROMETHEUS_URL).")
    traffic_share: float | None = Field(description="Share of decisions, without shadow.")
    alerts: int
    alert_share: float | None


class ScoringModel(BaseModel):
    name: str
    digest: str
    flag_threshold: float
    block_threshold: float


class Models(BaseModel):
    window_s: float
    models: list[ModelUse]
    scoring_model: ScoringModel | None = Field(description="The model behind POST /v1/score.")
