"""The API's one configuration object, read from the environment (docs/configuration.md).

Kafka, topics and rule settings are the shared ones (`KafkaSettings`, `TopicSettings`,
`RuleSettings`), so the API publishes where the scorer reads and decides as it does.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudpipe_api.peers import IPNetwork, parse_networks
from fraudpipe_common.kafka import KafkaSettings, TopicSettings
from fraudpipe_common.rules import RuleSettings

# The largest request the routes accept is a batch of MAX_BATCH (1000) transactions of up to
# MAX_MESSAGE_BYTES (64 KiB) each (routes.py): 1000 * 65,536 = 65,536,000 bytes, plus 1,001 for
# the brackets and 999 commas = 65,537,001. 64 MiB (67,108,864) holds it with 1,571,863 bytes
# (about 1.5 KiB per transaction) left for whitespace and escapes, which the re-encoding
# measured against MAX_MESSAGE_BYTES drops. test_units.py checks the sum against routes.py.
MAX_BODY_BYTES = 64 * 1024 * 1024


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    api_port: int = Field(default=8000, ge=1, le=65535, description="HTTP port.")
    api_host: str = Field(default="0.0.0.0", description="Address to listen on.")  # noqa: S104
    api_keys_file: str | None = Field(
        default=None,
        description="File of `sha256-hex:scope[:name]` lines (a mounted Secret); scope is "
        "read or write.",
    )
    api_keys: str | None = Field(
        default=None,
        description="The same lines, comma-separated, for keys passed in the environment.",
    )
    metrics_port: int = Field(
        default=9000,
        ge=0,
        le=65535,
        description="Also serve /metrics on this port (0: only on API_PORT).",
    )
    api_workers: int = Field(
        default=1, ge=1, le=64, description="uvicorn worker processes (one per core at most)."
    )
    api_open_reads: bool = Field(default=False, description="Serve reads without a key.")
    api_max_body_bytes: int = Field(
        default=MAX_BODY_BYTES,
        ge=1024,
        le=1024**3,
        description="Largest request body: a larger declared Content-Length is refused 413 "
        "before anything reads it, a streamed body as soon as it passes this.",
    )
    api_trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks of proxies whose X-Forwarded-For "
        "names the client (empty: the client is the socket peer; headers are ignored).",
    )
    auth_failure_limit: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="Unknown API keys one client may present within AUTH_FAILURE_WINDOW_S; "
        "then its requests with a key are refused 429 until the oldest is that old (0: off).",
    )
    auth_failure_window_s: float = Field(
        default=300.0, gt=0, le=86_400, description="The window of AUTH_FAILURE_LIMIT."
    )
    auth_failure_max_clients: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Clients each process remembers failures of; past it, the one whose "
        "latest failure is oldest is forgotten.",
    )
    redis_url: str = Field(description="Redis: decision cache and online features.")
    database_url: str = Field(description="PostgreSQL: alerts and feedback.")
    redis_key_prefix: str = Field(default="fp:", description="The scorer's Redis key prefix.")
    model_ref: str | None = Field(
        default=None, description="Model for POST /v1/score (registry/repo@sha256:… or a dir)."
    )
    flag_threshold: float | None = Field(default=None, ge=0, le=1)
    block_threshold: float | None = Field(default=None, ge=0, le=1)
    registry_plain_http: bool | None = None
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus scraping the scorers: APPROVE counts, alert rate, traffic "
        "share per model.",
    )
    prometheus_selector: str = Field(
        default="",
        description="Label matchers of this pipeline's scorers in Prometheus, e.g. "
        'namespace="payments", service="payments-scorer" (empty: every scorer it scrapes).',
    )
    long_poll_max_s: float = Field(default=30.0, gt=0, le=300)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    dependency_timeout_s: float = Field(default=5.0, gt=0, le=60)
    retry_after_s: int = Field(default=5, ge=1, le=3600)
    log_level: str = "INFO"

    @field_validator("api_trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def trusted_proxies(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.api_trusted_proxies)

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> ApiSettings:
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


def load_settings() -> tuple[ApiSettings, KafkaSettings, TopicSettings, RuleSettings]:
    """Everything the API reads from its environment; raises pydantic's ValidationError
    naming each missing or invalid variable."""
    return ApiSettings(), KafkaSettings(), TopicSettings(), RuleSettings()  # type: ignore[call-arg]
