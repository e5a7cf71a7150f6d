"""The producer's configuration: environment first (PRODUCER_*), command-line flags override."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProducerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRODUCER_", extra="ignore")

    rps: float = Field(
        default=100.0, ge=0, description="Transactions per second; 0 = as fast as possible."
    )
    fraud_rate: float = Field(
        default=0.01, ge=0, le=0.5, description="Share of fraudulent transactions."
    )
    seed: int = Field(default=7, description="Random seed: same seed, same traffic.")
    users: int = Field(default=10_000, ge=1, description="Size of the simulated population.")
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Port of /metrics; 0 = no metrics endpoint."
    )
    metrics_host: str = Field(default="0.0.0.0", description="Address /metrics listens on.")  # noqa: S104
