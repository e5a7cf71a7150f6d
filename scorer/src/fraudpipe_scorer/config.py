"""The scorer's one configuration object, read from the environment (docs/configuration.md).

Kafka connection and topic names come from the shared `KafkaSettings`/`TopicSettings`, so that
every service reads the same variables; the rule settings (`RULE_*`) are shared with the API.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudpipe_common.kafka import KafkaSettings, TopicSettings
from fraudpipe_common.rules import RuleSettings


class ScorerSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    redis_url: str = Field(description="Redis for online features and the decision cache.")
    database_url: str = Field(description="PostgreSQL for alerts.")
    model_ref: str = Field(description="Stable model: registry/repo@sha256:… or a local dir.")
    canary_model_ref: str | None = Field(
        default=None, description="Candidate model, scored beside the stable one when set."
    )
    canary_weight: int = Field(
        default=0, ge=0, le=100, description="Percent of users routed to the candidate."
    )
    shadow: bool = Field(
        default=False,
        description="Candidate scores every transaction, recorded as track=shadow, not acted on.",
    )
    consumer_group: str = "fraudpipe-scorer"
    transactional_id: str | None = Field(
        default=None,
        description="Kafka transactional id; default <group>.<hostname>.<pid>, unique per "
        "process and kept across a container's restarts.",
    )
    batch_max_size: int = Field(default=500, ge=1)
    batch_max_wait_ms: int = Field(default=50, ge=1)
    metrics_port: int = Field(default=9000, ge=0, le=65535)
    control_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of PUT /routing alone (the operator sets it and opens it only to "
        "itself); unset: PUT /routing is on the metrics port.",
    )
    flag_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Overrides the model card's FLAG threshold."
    )
    block_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Overrides the model card's BLOCK threshold."
    )
    max_message_bytes: int = Field(
        default=65_536, ge=1024, description="Larger input messages go to the DLQ (too_large)."
    )
    redis_key_prefix: str = Field(default="fp:", description="Prefix of every Redis key.")
    decision_cache_ttl_s: int = Field(default=86_400, ge=1)
    registry_plain_http: bool | None = Field(
        default=None, description="Pull models over plain HTTP (default: only from loopback)."
    )
    shutdown_grace_s: float = Field(default=8.0, gt=0)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> ScorerSettings:
        if (
            self.flag_threshold is not None
            and self.block_threshold is not None
            and self.block_threshold < self.flag_threshold
        ):
            raise ValueError(
                f"BLOCK_THRESHOLD {self.block_threshold} is below FLAG_THRESHOLD "
                f"{self.flag_threshold}"
            )
        return self


class MigrateSettings(BaseSettings):
    """`fraudpipe-scorer migrate` needs the database only."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str
    log_level: str = "INFO"


def load_settings() -> tuple[ScorerSettings, KafkaSettings, TopicSettings, RuleSettings]:
    """Everything the scorer reads from its environment; raises pydantic's ValidationError
    naming each missing or invalid variable."""
    return ScorerSettings(), KafkaSettings(), TopicSettings(), RuleSettings()  # type: ignore[call-arg]
