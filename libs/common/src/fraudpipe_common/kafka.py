"""Kafka connection settings, read from the environment once and handed to either client.

The same variables configure every service (docs/configuration.md); this module turns them
into librdkafka properties (confluent-kafka, used by the producer) or aiokafka keyword
arguments (the asyncio services).
"""

from __future__ import annotations

import ssl
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudpipe_common.schema_registry import SchemaRegistryClient

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """KAFKA_* variables."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(description="Comma-separated host:port list.")
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_file: str | None = Field(default=None, description="PEM bundle to verify brokers.")

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs KAFKA_SASL_MECHANISM, "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        return self

    def librdkafka(self) -> dict[str, str | int | float | bool]:
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.sasl_mechanism and self.sasl_username and self.sasl_password:
            conf |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": self.sasl_password.get_secret_value(),
            }
        if self.ssl_ca_file:
            conf["ssl.ca.location"] = self.ssl_ca_file
        return conf

    def aiokafka(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = ssl.create_default_context(cafile=self.ssl_ca_file)
        if self.sasl_mechanism and self.sasl_username and self.sasl_password:
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        return kwargs


class TopicSettings(BaseSettings):
    """Topic names; the defaults are the contract's names."""

    model_config = SettingsConfigDict(extra="ignore")

    transactions_topic: str = "transactions.v1"
    decisions_topic: str = "decisions.v1"
    dlq_topic: str = "transactions.v1.dlq"
    labels_topic: str = "transactions.v1.labels"
    transactions_format: Literal["json", "avro"] = Field(
        default="json",
        description="How transactions.v1 is written: JSON, or Avro in the Confluent wire format "
        "(schema id from SCHEMA_REGISTRY_URL).",
    )
    schema_registry_url: str | None = Field(
        default=None,
        description="Confluent-compatible schema registry (Redpanda's, Confluent's, Apicurio's "
        "/apis/ccompat/v7), without credentials in it; needed for avro.",
    )
    schema_registry_username: str | None = Field(
        default=None, description="HTTP Basic user of the schema registry, if it needs one."
    )
    schema_registry_password: SecretStr | None = Field(
        default=None, description="Its password (from a Secret)."
    )

    @model_validator(mode="after")
    def _avro_needs_a_registry(self) -> TopicSettings:
        if self.transactions_format == "avro" and not self.schema_registry_url:
            raise ValueError("TRANSACTIONS_FORMAT=avro needs SCHEMA_REGISTRY_URL")
        if self.schema_registry_url and "@" in urlsplit(self.schema_registry_url).netloc:
            raise ValueError(
                "SCHEMA_REGISTRY_URL must not carry credentials (they would show in logs and "
                "DLQ details): set SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD"
            )
        return self

    def schema_registry(self, *, timeout_s: float = 5.0) -> SchemaRegistryClient:
        """A client of SCHEMA_REGISTRY_URL with its credentials (close it when done)."""
        if self.schema_registry_url is None:
            raise ValueError("no SCHEMA_REGISTRY_URL")
        password = self.schema_registry_password
        return SchemaRegistryClient(
            self.schema_registry_url,
            username=self.schema_registry_username,
            password=None if password is None else password.get_secret_value(),
            timeout_s=timeout_s,
        )
