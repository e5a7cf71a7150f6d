"""fraudpipe.io/v1alpha1 FraudPipeline: the one resource a platform engineer writes.

Every field carries a description, bounds and a default where one makes sense; rules the schema
alone cannot express are CEL rules (`x-kubernetes-validations`) attached to the model that owns
both fields. `fraudpipe-operator crd` turns these models into crds/fraudpipe.io_fraudpipelines.yaml.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "fraudpipe.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FraudPipeline"
PLURAL = "fraudpipelines"
SINGULAR = "fraudpipeline"
SHORT_NAMES = ["fp"]

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
DIGEST_REF_PATTERN = r"^[^@ ]+@sha256:[a-f0-9]{64}$"
DIGEST_RULE: dict[str, Any] = {
    "rule": f"self.matches('{DIGEST_REF_PATTERN}')",
    "message": "must be an OCI reference pinned by digest: registry/repository@sha256:<64 hex>",
    "reason": "FieldValueInvalid",
}


def rules(*entries: tuple[str, str, str]) -> dict[str, Any]:
    """CEL rules as (rule, message, fieldPath relative to the model)."""
    return {
        "x-kubernetes-validations": [
            {"rule": rule, "message": message, "fieldPath": path, "reason": "FieldValueInvalid"}
            for rule, message, path in entries
        ]
    }


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields ignored (the apiserver
    prunes them anyway)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def section(model: type[Model], description: str) -> Any:
    """A nested block that defaults to an object filled with its own defaults, so that
    a missing section is complete after the apiserver's defaulting."""
    return Field(
        default_factory=model,
        description=description,
        json_schema_extra={"default": wire(model())},
    )


def wire(value: Model) -> dict[str, Any]:
    """How the apiserver stores `value`: camelCase, unset optionals absent. Defaults are
    spelled out in full because the apiserver checks CEL rules against them as they are."""
    return value.model_dump(by_alias=True, exclude_none=True, mode="json")


def image_field(component: str) -> Any:
    return Field(
        default="",
        max_length=512,
        description=(
            f"Container image of the {component}. Empty means the operator's default "
            "(the chart's appVersion, or the image set in the chart's values)."
        ),
    )


# -- shared building blocks -------------------------------------------------------------------
class ResourceList(Model):
    cpu: str | None = Field(
        default=None, pattern=QUANTITY_PATTERN, max_length=32, description="CPU, e.g. 500m."
    )
    memory: str | None = Field(
        default=None, pattern=QUANTITY_PATTERN, max_length=32, description="Memory, e.g. 512Mi."
    )


class Resources(Model):
    requests: ResourceList = section(ResourceList, "Resources the scheduler reserves.")
    limits: ResourceList = section(ResourceList, "Hard limits enforced at run time.")


class Storage(Model):
    size: str = Field(
        default="10Gi",
        pattern=QUANTITY_PATTERN,
        max_length=32,
        description="Size of each replica's PersistentVolumeClaim, e.g. 10Gi.",
    )
    storage_class_name: str | None = Field(
        default=None,
        max_length=253,
        description="StorageClass of the claims; empty uses the cluster's default class.",
    )


class SecretKeyRef(Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=K8S_NAME_PATTERN,
        description="Name of a Secret in the pipeline's namespace.",
    )
    key: str = Field(min_length=1, max_length=253, description="Key inside that Secret.")


# -- Kafka ------------------------------------------------------------------------------------
REDPANDA_IMAGE = "docker.redpanda.com/redpandadata/redpanda:v24.2.18"
APACHE_KAFKA_IMAGE = "apache/kafka:4.1.1"


class ManagedKafka(Model):
    flavor: Literal["redpanda", "kafka"] = Field(
        default="redpanda",
        description=(
            "Broker software: redpanda, or kafka (Apache Kafka in KRaft mode, every broker also "
            "a controller, configured through the apache/kafka image's KAFKA_* variables). "
            "Either way the pipeline reaches it at <name>-kafka:9092."
        ),
    )
    replicas: int = Field(default=1, ge=1, le=9, description="Number of brokers.")
    image: str = Field(
        default="",
        max_length=512,
        description=(
            f"Broker image. Empty means the flavor's pinned default: {REDPANDA_IMAGE} for "
            f"redpanda, {APACHE_KAFKA_IMAGE} for kafka (or an image with the same interface)."
        ),
    )
    storage: Storage = section(Storage, "Persistent storage of each broker.")
    resources: Resources = section(Resources, "CPU and memory of each broker.")


class KafkaTLS(Model):
    enabled: bool = Field(default=False, description="Connect to the brokers over TLS.")
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="PEM bundle that verifies the brokers; absent means the system CAs.",
    )


class KafkaSASL(Model):
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism."
    )
    secret_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=K8S_NAME_PATTERN,
        description="Secret holding the credentials under the keys `username` and `password`.",
    )


class ExternalKafka(Model):
    bootstrap_servers: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Brokers to bootstrap from, each host:port.",
        json_schema_extra={
            "items": {"type": "string", "pattern": r"^[^\s:,]+:[0-9]{1,5}$", "maxLength": 261}
        },
    )
    tls: KafkaTLS = section(KafkaTLS, "TLS towards the brokers.")
    sasl: KafkaSASL | None = Field(
        default=None, description="SASL authentication; absent means none."
    )


class Topic(Model):
    name: str = Field(
        min_length=1,
        max_length=249,
        pattern=r"^[a-zA-Z0-9._-]+$",
        description="Topic name.",
    )
    partitions: int = Field(
        default=6,
        ge=1,
        le=1000,
        description="Partition count; it can grow but never shrink (Kafka cannot shrink it).",
    )
    replication_factor: int = Field(
        default=1, ge=1, le=9, description="Copies of each partition; fixed once created."
    )
    retention_ms: int = Field(
        default=604_800_000,
        ge=-1,
        description="How long records are kept, in milliseconds (-1 keeps them forever).",
    )


def topic_name(default: str) -> Any:
    """The name field of one of the pipeline's topics: it defaults to the standard name, so
    that overriding only a topic's partition count keeps its name."""
    return Field(
        default=default,
        min_length=1,
        max_length=249,
        pattern=r"^[a-zA-Z0-9._-]+$",
        description=f"Topic name (default {default}).",
    )


class TransactionsTopic(Topic):
    name: str = topic_name("transactions.v1")


class DecisionsTopic(Topic):
    name: str = topic_name("decisions.v1")


class DlqTopic(Topic):
    name: str = topic_name("transactions.v1.dlq")


class LabelsTopic(Topic):
    name: str = topic_name("transactions.v1.labels")


class Topics(Model):
    transactions: TransactionsTopic = section(TransactionsTopic, "Scored input (key = user_id).")
    decisions: DecisionsTopic = section(DecisionsTopic, "Decisions written by the scorer.")
    dlq: DlqTopic = section(DlqTopic, "Rejected input, with reason headers.")
    labels: LabelsTopic = section(
        LabelsTopic, "Ground-truth labels of demo traffic (evaluation only)."
    )


class Kafka(Model):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.mode != 'external' || (has(self.external) && "
                "size(self.external.bootstrapServers) > 0)",
                "external Kafka requires at least one entry in bootstrapServers",
                ".external.bootstrapServers",
            ),
            (
                "self.mode != 'managed' || (self.topics.transactions.replicationFactor <= "
                "self.managed.replicas && self.topics.decisions.replicationFactor <= "
                "self.managed.replicas && self.topics.dlq.replicationFactor <= "
                "self.managed.replicas && self.topics.labels.replicationFactor <= "
                "self.managed.replicas)",
                "a topic's replicationFactor cannot exceed managed.replicas (the broker count)",
                ".topics",
            ),
        )
    )
    mode: Literal["managed", "external"] = Field(
        default="managed",
        description=(
            "managed runs brokers (Redpanda or Apache Kafka) in the namespace; external uses "
            "your own Kafka."
        ),
    )
    managed: ManagedKafka = section(ManagedKafka, "The in-cluster brokers (mode managed).")
    external: ExternalKafka | None = Field(
        default=None, description="Your Kafka cluster (mode external)."
    )
    topics: Topics = section(Topics, "Topics the pipeline uses; created and grown by the operator.")


# -- Redis and PostgreSQL ---------------------------------------------------------------------
class ManagedStore(Model):
    image: str = Field(min_length=1, max_length=512, description="Server image.")
    storage: Storage = section(Storage, "Persistent storage of the server.")
    resources: Resources = section(Resources, "CPU and memory of the server.")


class ManagedRedis(ManagedStore):
    image: str = Field(
        default="redis:7.4.1", min_length=1, max_length=512, description="Redis image."
    )


class ManagedPostgres(ManagedStore):
    image: str = Field(
        default="postgres:16.6", min_length=1, max_length=512, description="PostgreSQL image."
    )


def store_rules(store: str, ref: str) -> ConfigDict:
    return ConfigDict(
        json_schema_extra=rules(
            (
                f"self.mode != 'external' || has(self.{ref})",
                f"external {store} requires {ref}",
                f".{ref}",
            )
        )
    )


class Redis(Model):
    model_config = store_rules("Redis", "urlSecretRef")
    mode: Literal["managed", "external"] = Field(
        default="managed", description="managed runs Redis in the namespace; external uses yours."
    )
    managed: ManagedRedis = section(ManagedRedis, "The in-cluster Redis (mode managed).")
    url_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding REDIS_URL, redis://[:password@]host:port/db (external).",
    )


class Postgres(Model):
    model_config = store_rules("PostgreSQL", "dsnSecretRef")
    mode: Literal["managed", "external"] = Field(
        default="managed",
        description="managed runs PostgreSQL in the namespace; external uses yours.",
    )
    managed: ManagedPostgres = section(ManagedPostgres, "The in-cluster PostgreSQL.")
    dsn_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding DATABASE_URL, postgresql://user:pw@host:port/db.",
    )


# -- scorer and model -------------------------------------------------------------------------
class Batch(Model):
    max_size: int = Field(default=500, ge=1, le=10_000, description="Most records per batch.")
    max_wait_ms: int = Field(
        default=50, ge=1, le=10_000, description="Longest wait to fill a batch, in ms."
    )


class Thresholds(Model):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.flag) || !has(self.block) || self.flag <= self.block",
                "flag must be <= block",
                ".flag",
            )
        )
    )
    flag: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Score at or above which: FLAG. Absent: the model card's threshold.",
    )
    block: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Score at or above which: BLOCK. Absent: the model card's threshold.",
    )


class Rules(Model):
    thresholds: Thresholds = section(Thresholds, "Score thresholds of the decisions.")


class Autoscaling(Model):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must be <= maxReplicas",
                ".minReplicas",
            )
        )
    )
    enabled: bool = Field(default=False, description="Scale the scorer on consumer lag.")
    engine: Literal["builtin", "keda"] = Field(
        default="builtin", description="builtin (the operator) or keda (a ScaledObject)."
    )
    min_replicas: int = Field(default=1, ge=0, le=1000, description="Fewest scorer replicas.")
    max_replicas: int = Field(default=6, ge=1, le=1000, description="Most scorer replicas.")
    lag_per_replica: int = Field(
        default=1000, ge=1, description="Consumer lag one replica is expected to absorb."
    )


class Scorer(Model):
    image: str = image_field("scorer")
    replicas: int = Field(
        default=2, ge=0, le=1000, description="Scorer replicas (ignored while autoscaling)."
    )
    consumer_group: str = Field(
        default="fraudpipe-scorer",
        min_length=1,
        max_length=249,
        description="Kafka consumer group of all scorer replicas.",
    )
    batch: Batch = section(Batch, "Micro-batching bounds.")
    rules: Rules = section(Rules, "Decision rules and thresholds.")
    resources: Resources = section(Resources, "CPU and memory of each replica.")
    autoscaling: Autoscaling = section(Autoscaling, "Autoscaling on consumer lag.")


class Canary(Model):
    ref: str = Field(
        max_length=512,
        description="Candidate model, registry/repository@sha256:<digest>.",
        json_schema_extra={"x-kubernetes-validations": [dict(DIGEST_RULE)]},
    )
    steps: list[int] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        max_length=20,
        description="Traffic weights (percent) of the candidate, step by step.",
        json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 100}},
    )
    interval_seconds: int = Field(
        default=300, ge=10, le=86_400, description="Time spent on each step before analysis."
    )


class ModelSpec(Model):
    ref: str = Field(
        max_length=512,
        description="Stable model, an OCI reference pinned by digest (registry/repo@sha256:…).",
        json_schema_extra={"x-kubernetes-validations": [dict(DIGEST_RULE)]},
    )
    canary: Canary | None = Field(default=None, description="Candidate model rolled out by canary.")
    plain_http: bool = Field(
        default=False,
        description=(
            "Pull models over plain HTTP (an in-cluster registry without TLS). Default: HTTPS, "
            "except from a loopback registry."
        ),
    )


# -- API, producer, monitoring ----------------------------------------------------------------
class Api(Model):
    image: str = image_field("API")
    replicas: int = Field(default=2, ge=0, le=100, description="API replicas.")
    auth_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key with `sha256-hex:scope` lines (API_KEYS_FILE); none = no writes.",
    )
    open_reads: bool = Field(default=False, description="Serve read endpoints without a key.")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Type of the API's Service."
    )
    resources: Resources = section(Resources, "CPU and memory of each replica.")


class Producer(Model):
    enabled: bool = Field(default=False, description="Run the demo traffic generator.")
    image: str = image_field("producer")
    rps: int = Field(default=100, ge=1, le=100_000, description="Transactions per second.")
    fraud_rate: float = Field(
        default=0.01, ge=0, le=0.5, description="Share of injected fraud scenarios."
    )
    resources: Resources = section(Resources, "CPU and memory of the producer.")


class Notify(Model):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!self.enabled || has(self.webhookUrlSecretRef)",
                "notifications need webhookUrlSecretRef (the webhook URL is a credential)",
                ".webhookUrlSecretRef",
            )
        )
    )

    enabled: bool = Field(
        default=False,
        description="Run `fraudpipe-api notify`: BLOCK decisions and alert-rate spikes to a "
        "webhook (Slack-compatible JSON).",
    )
    webhook_url_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the webhook URL (NOTIFY_WEBHOOK_URL)."
    )
    rate_per_minute: int = Field(
        default=30, ge=1, le=6000, description="BLOCK messages per minute; more become a summary."
    )
    resources: Resources = section(Resources, "CPU and memory of the notifier.")


class Report(Model):
    enabled: bool = Field(
        default=False,
        description="Run `fraudpipe-api report` as a CronJob (its output is in the Job's log).",
    )
    schedule: str = Field(
        default="15 0 * * *",
        max_length=64,
        pattern=r"^\S+( \S+){4}$",
        description="Cron schedule, in UTC; each run reports the previous UTC day.",
    )
    prometheus_url: str | None = Field(
        default=None,
        max_length=512,
        description="Prometheus scraping the scorers, for APPROVE counts and the alert rate "
        "(without it they are null).",
    )
    output: Literal["json", "text"] = Field(default="json", description="Format of the report.")


class Monitoring(Model):
    service_monitors: bool = Field(
        default=True, description="Create ServiceMonitors (scorer, API, broker) when possible."
    )
    prometheus_rules: bool = Field(
        default=True,
        description="Create the PrometheusRule: recording rules and alerts (docs/metrics.md).",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on ServiceMonitors and PrometheusRules (Prometheus selectors).",
        json_schema_extra={"maxProperties": 32},
    )


class FraudPipelineSpec(Model):
    kafka: Kafka = section(
        Kafka, "Kafka: managed brokers (Redpanda or Apache Kafka) or your own, and topics."
    )
    redis: Redis = section(Redis, "Redis: online features and the decision cache.")
    postgres: Postgres = section(Postgres, "PostgreSQL: alerts and analyst feedback.")
    scorer: Scorer = section(Scorer, "The scoring Deployment.")
    model: ModelSpec = Field(description="The model the scorer serves.")
    api: Api = section(Api, "The alerts and feedback API.")
    producer: Producer = section(Producer, "Demo traffic.")
    monitoring: Monitoring = section(Monitoring, "Prometheus Operator integration.")
    report: Report = section(Report, "Daily report (`fraudpipe-api report`) as a CronJob.")
    notify: Notify = section(Notify, "Webhook notifications (`fraudpipe-api notify`).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="LOG_LEVEL of every pipeline service."
    )


# -- status -----------------------------------------------------------------------------------
class Condition(Model):
    type: str = Field(max_length=64, description="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", max_length=128, description="CamelCase reason.")
    message: str = Field(default="", max_length=4096, description="Human-readable details.")
    last_transition_time: str = Field(
        default="", max_length=64, description="When the status last flipped (RFC 3339)."
    )
    observed_generation: int = Field(
        default=0, description="Generation of the spec this condition was computed from."
    )


class FraudPipelineStatus(Model):
    observed_generation: int = Field(default=0, description="Last spec generation reconciled.")
    phase: Literal["Pending", "Progressing", "Ready", "Degraded"] = Field(
        default="Pending", description="Summary: Pending, Progressing, Ready or Degraded."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=32,
        description="Ready, Progressing, Degraded and one condition per component.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    consumer_lag: int | None = Field(
        default=None, description="Total lag of the scorer's consumer group (records)."
    )
    model: str = Field(default="", max_length=128, description="Short form of the stable model.")
    scorer_replicas: int = Field(default=0, description="Scorer replicas (scale subresource).")
    scorer_selector: str = Field(
        default="",
        max_length=1024,
        description="Label selector of scorer pods (scale subresource).",
    )


class FraudPipeline(Model):
    """The parsed resource as the operator sees it (metadata kept raw)."""

    api_version: str = Field(default=API_VERSION, description="fraudpipe.io/v1alpha1.")
    kind: str = Field(default=KIND, description="FraudPipeline.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Object metadata.")
    spec: FraudPipelineSpec = Field(description="Desired state.")
    status: FraudPipelineStatus = section(FraudPipelineStatus, "Observed state.")

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def namespace(self) -> str:
        return str(self.metadata["namespace"])

    @property
    def uid(self) -> str:
        return str(self.metadata.get("uid", ""))

    @property
    def generation(self) -> int:
        return int(self.metadata.get("generation", 0))

    @classmethod
    def from_body(cls, body: Any) -> FraudPipeline:
        return cls.model_validate(
            {
                "metadata": dict(body.get("metadata", {})),
                "spec": dict(body.get("spec", {})),
                "status": {},
            }
        )
