"""Environment of the pipeline's containers, in the names of docs/configuration.md.

Managed stores get URLs assembled from generated credentials with Kubernetes' `$(VAR)`
expansion, so no password ever appears in a spec; external stores read the whole URL from the
user's Secret.
"""

from __future__ import annotations

from typing import Any

from fraudpipe_operator.builders.common import (
    KAFKA_PORT,
    POSTGRES_PORT,
    REDIS_PORT,
    SCHEMA_REGISTRY_PORT,
    child_name,
)
from fraudpipe_operator.models import FraudPipeline
from fraudpipe_operator.models.v1alpha1 import ObjectStore

KAFKA_CA_DIR = "/etc/fraudpipe/kafka-ca"
POSTGRES_USER = "fraudpipe"
POSTGRES_DATABASE = "fraudpipe"


def value(name: str, val: object) -> dict[str, Any]:
    return {"name": name, "value": str(val)}


def from_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def redis_secret_name(pipeline: FraudPipeline) -> str:
    return child_name(pipeline, "redis-credentials")


def postgres_secret_name(pipeline: FraudPipeline) -> str:
    return child_name(pipeline, "postgres-credentials")


def host(pipeline: FraudPipeline, component: str) -> str:
    return f"{child_name(pipeline, component)}.{pipeline.namespace}.svc"


def kafka_bootstrap_servers(pipeline: FraudPipeline) -> str:
    kafka = pipeline.spec.kafka
    if kafka.mode == "external" and kafka.external is not None:
        return ",".join(kafka.external.bootstrap_servers)
    return f"{host(pipeline, 'kafka')}:{KAFKA_PORT}"


def schema_registry_url(pipeline: FraudPipeline) -> str:
    """The pipeline's registry, else managed Redpanda's built-in one (a CEL rule refuses an
    Avro topic with neither)."""
    registry = pipeline.spec.kafka.schema_registry
    if registry is not None:
        return registry.url
    return f"http://{host(pipeline, 'kafka')}:{SCHEMA_REGISTRY_PORT}"


def kafka_security_protocol(pipeline: FraudPipeline) -> str:
    external = pipeline.spec.kafka.external
    if pipeline.spec.kafka.mode != "external" or external is None:
        return "PLAINTEXT"
    tls, sasl = external.tls.enabled, external.sasl is not None
    return {(False, False): "PLAINTEXT", (True, False): "SSL", (False, True): "SASL_PLAINTEXT"}.get(
        (tls, sasl), "SASL_SSL"
    )


def kafka_env(pipeline: FraudPipeline) -> list[dict[str, Any]]:
    topics = pipeline.spec.kafka.topics
    env = [
        value("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap_servers(pipeline)),
        value("KAFKA_SECURITY_PROTOCOL", kafka_security_protocol(pipeline)),
        value("TRANSACTIONS_TOPIC", topics.transactions.name),
        value("DECISIONS_TOPIC", topics.decisions.name),
        value("DLQ_TOPIC", topics.dlq.name),
        value("LABELS_TOPIC", topics.labels.name),
    ]
    if topics.transactions.format == "avro":
        # Only for Avro: a JSON pipeline's pods stay exactly as they were.
        env += [
            value("TRANSACTIONS_FORMAT", "avro"),
            value("SCHEMA_REGISTRY_URL", schema_registry_url(pipeline)),
        ]
        registry = pipeline.spec.kafka.schema_registry
        if registry is not None and registry.credentials_secret_ref is not None:
            ref = registry.credentials_secret_ref
            env += [
                from_secret("SCHEMA_REGISTRY_USERNAME", ref.name, ref.username_key),
                from_secret("SCHEMA_REGISTRY_PASSWORD", ref.name, ref.password_key),
            ]
    external = pipeline.spec.kafka.external
    if pipeline.spec.kafka.mode == "external" and external is not None:
        if external.sasl is not None:
            env += [
                value("KAFKA_SASL_MECHANISM", external.sasl.mechanism),
                from_secret("KAFKA_SASL_USERNAME", external.sasl.secret_name, "username"),
                from_secret("KAFKA_SASL_PASSWORD", external.sasl.secret_name, "password"),
            ]
        if external.tls.enabled and external.tls.ca_secret_ref is not None:
            env.append(value("KAFKA_SSL_CA_FILE", f"{KAFKA_CA_DIR}/ca.crt"))
    return env


def kafka_ca_volume(pipeline: FraudPipeline) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volume and mount of the brokers' CA bundle, when the user gave one."""
    external = pipeline.spec.kafka.external
    if pipeline.spec.kafka.mode != "external" or external is None:
        return [], []
    ref = external.tls.ca_secret_ref
    if not external.tls.enabled or ref is None:
        return [], []
    volume = {
        "name": "kafka-ca",
        "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": "ca.crt"}]},
    }
    return [volume], [{"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True}]


def redis_env(pipeline: FraudPipeline) -> list[dict[str, Any]]:
    redis = pipeline.spec.redis
    if redis.mode == "external" and redis.url_secret_ref is not None:
        ref = redis.url_secret_ref
        return [from_secret("REDIS_URL", ref.name, ref.key)]
    return [
        from_secret("REDIS_PASSWORD", redis_secret_name(pipeline), "password"),
        value("REDIS_URL", f"redis://:$(REDIS_PASSWORD)@{host(pipeline, 'redis')}:{REDIS_PORT}/0"),
    ]


def postgres_env(pipeline: FraudPipeline) -> list[dict[str, Any]]:
    postgres = pipeline.spec.postgres
    if postgres.mode == "external" and postgres.dsn_secret_ref is not None:
        ref = postgres.dsn_secret_ref
        return [from_secret("DATABASE_URL", ref.name, ref.key)]
    secret = postgres_secret_name(pipeline)
    return [
        from_secret("POSTGRES_USER", secret, "username"),
        from_secret("POSTGRES_PASSWORD", secret, "password"),
        value(
            "DATABASE_URL",
            f"postgresql://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@{host(pipeline, 'postgres')}"
            f":{POSTGRES_PORT}/{POSTGRES_DATABASE}",
        ),
    ]


def object_store_uri(store: ObjectStore, *path: str) -> str:
    """s3://bucket/prefix[/path…]."""
    return "s3://" + "/".join(part for part in (store.bucket, store.prefix, *path) if part)


def object_store_env(store: ObjectStore) -> list[dict[str, Any]]:
    """The AWS SDKs' own variables (fraudpipe_common.archive.store.S3Settings reads them)."""
    ref = store.credentials_secret_ref
    env = [value("AWS_REGION", store.region)]
    if store.endpoint:
        env.append(value("AWS_ENDPOINT_URL", store.endpoint.rstrip("/")))
    return [
        *env,
        from_secret("AWS_ACCESS_KEY_ID", ref.name, ref.access_key_id_key),
        from_secret("AWS_SECRET_ACCESS_KEY", ref.name, ref.secret_access_key_key),
    ]


def common_env(pipeline: FraudPipeline) -> list[dict[str, Any]]:
    return [value("LOG_LEVEL", pipeline.spec.log_level)]
