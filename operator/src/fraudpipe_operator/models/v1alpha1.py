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
    # On update (oldSelf): what Kafka cannot do to an existing topic is refused by the API
    # server, naming the field, instead of surfacing later as a condition.
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.name != oldSelf.name || self.partitions >= oldSelf.partitions",
                "partitions can grow but never shrink (Kafka cannot remove a partition)",
                ".partitions",
            ),
            (
                "self.name != oldSelf.name || self.replicationFactor == oldSelf.replicationFactor",
                "replicationFactor is fixed once the topic exists",
                ".replicationFactor",
            ),
        )
    )

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


def cron_schedule(default: str, description: str) -> Any:
    """A CronJob's schedule field: five fields, evaluated in UTC (the CronJobs set timeZone)."""
    return Field(default=default, max_length=64, pattern=r"^\S+( \S+){4}$", description=description)


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
    format: Literal["json", "avro"] = Field(
        default="json",
        description="How its values are written: JSON, or Avro in the Confluent wire format "
        "(schema registered under <name>-value with BACKWARD compatibility; needs a schema "
        "registry: kafka.schemaRegistry, or managed Redpanda's own).",
    )


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


class RegistryCredentialsRef(Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=K8S_NAME_PATTERN,
        description="Name of a Secret in the pipeline's namespace with the registry's HTTP "
        "Basic credentials.",
    )
    username_key: str = Field(
        default="username", min_length=1, max_length=253, description="Key of the user name."
    )
    password_key: str = Field(
        default="password", min_length=1, max_length=253, description="Key of the password."
    )


class SchemaRegistry(Model):
    url: str = Field(
        min_length=1,
        max_length=512,
        # No user:password@: a URL is logged and shown in DLQ details; credentials go below.
        pattern=r"^https?://[^\s/@]+(/[^\s@]*)?$",
        description="Confluent-compatible schema registry, e.g. http://registry:8081 or "
        "Apicurio's http://apicurio:8080/apis/ccompat/v7 (no credentials in it).",
    )
    credentials_secret_ref: RegistryCredentialsRef | None = Field(
        default=None, description="HTTP Basic credentials, when the registry needs them."
    )


class Kafka(Model):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.topics.transactions.format != 'avro' || has(self.schemaRegistry) || "
                "(self.mode == 'managed' && self.managed.flavor == 'redpanda')",
                "an avro transactions topic needs schemaRegistry.url (only managed Redpanda "
                "brings a registry of its own)",
                ".schemaRegistry",
            ),
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
            (
                # On update, in every mode: a switch to external Kafka leaves the managed
                # brokers' StatefulSet and volumes in place, and a switch back would start the
                # other flavor on them. Keep managed.flavor in the spec when switching.
                "self.managed.flavor == oldSelf.managed.flavor",
                "managed.flavor cannot change: the brokers' volumes (kept when the pipeline "
                "switches to external Kafka) hold that flavor's data; keep it as it is, or "
                "create a new pipeline",
                ".managed.flavor",
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
    schema_registry: SchemaRegistry | None = Field(
        default=None,
        description="Schema registry for Avro topics; absent with managed Redpanda: its "
        "built-in registry (<name>-kafka:8081).",
    )


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


class ScaleWindow(Model):
    stabilization_window_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="How long a recommendation must hold before the scorer is scaled this way.",
    )


class ScaleUp(ScaleWindow):
    """Up fast: a backlog only grows while it waits."""


class ScaleDown(ScaleWindow):
    stabilization_window_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description=(
            "Scale down only to the highest recommendation of this many past seconds (as the "
            "HorizontalPodAutoscaler does): each scale-down rebalances the consumer group."
        ),
    )


class KedaOptions(Model):
    activation_lag_threshold: int = Field(
        default=0,
        ge=0,
        description=(
            "Lag above which KEDA activates the scorer from zero replicas (minReplicas 0 only)."
        ),
    )
    polling_interval_seconds: int = Field(
        default=15, ge=1, le=3600, description="How often KEDA reads the lag."
    )
    namespace: str = Field(
        default="keda",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description=(
            "The namespace KEDA runs in: only its operator's pods there may open the broker's "
            "Kafka port to read the lag (managed brokers)."
        ),
    )


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
    enabled: bool = Field(
        default=False,
        description="Scale the scorer on consumer lag (spec.scorer.replicas is then ignored).",
    )
    engine: Literal["builtin", "keda"] = Field(
        default="builtin",
        description=(
            "builtin: the operator reads the lag and scales the Deployment. keda: a KEDA "
            "ScaledObject with the kafka trigger (builtin is used while KEDA is not installed)."
        ),
    )
    min_replicas: int = Field(default=1, ge=0, le=1000, description="Fewest scorer replicas.")
    max_replicas: int = Field(
        default=6,
        ge=1,
        le=1000,
        description="Most scorer replicas; never more than the transactions topic's partitions.",
    )
    lag_per_replica: int = Field(
        default=1000, ge=1, description="Consumer lag one replica is expected to absorb."
    )
    scale_up: ScaleUp = section(ScaleUp, "Scaling up: how long a higher recommendation waits.")
    scale_down: ScaleDown = section(
        ScaleDown, "Scaling down: how long a lower recommendation must hold."
    )
    keda: KedaOptions = section(KedaOptions, "Options of the keda engine.")


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


class CanaryThresholds(Model):
    max_error_rate: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Most transactions the candidate may fail to score, as a share of those "
        "routed to it (failed ones fall back to the stable model).",
    )
    max_p99_latency_ms: float = Field(
        default=20.0,
        gt=0,
        le=60_000,
        description="Highest p99 of the candidate's inference time per micro-batch, in ms.",
    )
    max_alert_rate_ratio: float = Field(
        default=2.0,
        gt=0,
        le=1000,
        description="Highest ratio of the candidate's alert rate (FLAG and BLOCK) to the "
        "stable model's.",
    )
    max_psi: float = Field(
        default=0.2,
        gt=0,
        le=100,
        description="Highest population stability index between the candidate's and the "
        "stable model's score distributions (0.1 slight, 0.25 large drift).",
    )


class CanaryAnalysis(Model):
    min_sample_size: int = Field(
        default=200,
        ge=1,
        le=10_000_000,
        description="Decisions the candidate (and the stable model) must have made in a "
        "window before it is judged; fewer make the check inconclusive and extend the window.",
    )
    thresholds: CanaryThresholds = section(CanaryThresholds, "Limits of each check.")
    prometheus_url: str | None = Field(
        default=None,
        max_length=512,
        description="Prometheus scraping the scorers, read instead of the scorer pods' own "
        "/metrics when set.",
    )


class Canary(Model):
    ref: str = Field(
        max_length=512,
        description="Candidate model, registry/repository@sha256:<digest>.",
        json_schema_extra={"x-kubernetes-validations": [dict(DIGEST_RULE)]},
    )
    shadow_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="Time the candidate scores every transaction in shadow (not acted on) "
        "before its first step; 0 skips the shadow phase.",
    )
    steps: list[int] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        min_length=1,
        max_length=20,
        description="Traffic weights (percent) of the candidate, step by step; the candidate "
        "is promoted once the last step passes its analysis.",
        json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 100}},
    )
    interval_seconds: int = Field(
        default=300, ge=10, le=86_400, description="Time spent on each step before analysis."
    )
    analysis: CanaryAnalysis = section(CanaryAnalysis, "What each step is judged on.")
    failure_threshold: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Failed checks, over the whole rollout, before the candidate is rolled back.",
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
        default="ClusterIP",
        description=(
            "Type of the API's Service. LoadBalancer keeps external traffic on the receiving "
            "node (externalTrafficPolicy Local), so the API sees each client's own address, "
            "which its limit on unknown keys counts by; behind a NodePort, clients arrive "
            "from node addresses (name the nodes in trustedProxies only if a proxy there "
            "sets X-Forwarded-For)."
        ),
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Addresses or networks (10.0.0.0/8) of proxies in front of the API, such as an "
            "Ingress controller's pods: only from them is X-Forwarded-For read to find the "
            "client (API_TRUSTED_PROXIES). Without it, every client behind a proxy counts as "
            "the proxy, and one client's wrong keys lock the others out for the window."
        ),
        json_schema_extra={
            "items": {"type": "string", "maxLength": 64, "pattern": r"^[0-9a-fA-F:./]+$"}
        },
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
    schedule: str = cron_schedule(
        "15 0 * * *", "Cron schedule, in UTC; each run reports the previous UTC day."
    )
    prometheus_url: str | None = Field(
        default=None,
        max_length=512,
        description="Prometheus scraping the scorers, for APPROVE counts and the alert rate "
        "(without it they are null).",
    )
    output: Literal["json", "text"] = Field(default="json", description="Format of the report.")


class Retention(Model):
    # Decision 87: an alert with feedback stays as long as its feedback (deleting it would
    # cascade to the label), and labels, the training data, never go before the alerts.
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!self.enabled || has(self.alertsDays) || has(self.feedbackDays)",
                "retention needs alertsDays, feedbackDays or both",
                ".alertsDays",
            ),
            (
                "!has(self.alertsDays) || !has(self.feedbackDays) || "
                "self.feedbackDays >= self.alertsDays",
                "feedbackDays must be at least alertsDays: analyst labels are training data "
                "and must not go before the alerts they label",
                ".feedbackDays",
            ),
        )
    )

    enabled: bool = Field(
        default=False,
        description="Run `fraudpipe-api retention` as a CronJob: alerts and feedback past "
        "their days are deleted in short batches. Decisions need no job: they expire from "
        "the decisions topic after kafka.topics.decisions.retentionMs and from the Redis "
        "decision cache after the scorer's DECISION_CACHE_TTL_S (24 h). Turned off, the "
        "CronJob is deleted.",
    )
    alerts_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Delete alerts decided more than this many days ago, except alerts with "
        "feedback, which stay as long as their feedback does. Absent: alerts are kept.",
    )
    feedback_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Delete analyst feedback given more than this many days ago; at least "
        "alertsDays. Absent: feedback, and the alerts it labels, are kept.",
    )
    schedule: str = cron_schedule(
        "30 1 * * *", "Cron schedule, in UTC (by default after the daily report's 00:15)."
    )
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Rows deleted per transaction: smaller holds fewer row locks for less "
        "time, larger finishes sooner.",
    )


# -- object store: the archive and the backups ------------------------------------------------
S3_BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class S3CredentialsRef(Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=K8S_NAME_PATTERN,
        description="Name of a Secret in the pipeline's namespace holding the access key pair.",
    )
    access_key_id_key: str = Field(
        default="AWS_ACCESS_KEY_ID",
        min_length=1,
        max_length=253,
        description="Key of the access key id in that Secret.",
    )
    secret_access_key_key: str = Field(
        default="AWS_SECRET_ACCESS_KEY",
        min_length=1,
        max_length=253,
        description="Key of the secret access key in that Secret.",
    )


class ObjectStore(Model):
    endpoint: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^https?://[^/\s@]+/?$",  # credentials go in credentialsSecretRef
        description="http(s)://host[:port] of an S3-compatible server (MinIO, Ceph RGW, "
        "SeaweedFS, versitygw, …); absent: AWS S3.",
    )
    region: str = Field(
        default="us-east-1", min_length=1, max_length=64, description="The bucket's region."
    )
    bucket: str = Field(
        min_length=3,
        max_length=63,
        pattern=S3_BUCKET_PATTERN,
        description="The bucket (it must exist: nothing here creates one).",
    )
    prefix: str = Field(
        default="",
        max_length=512,
        pattern=r"^([^/\s]+(/[^/\s]+)*)?$",
        description="Key prefix of everything this pipeline writes, without leading or "
        "trailing '/': the archive under <prefix>/decisions and <prefix>/labels, backups "
        "under <prefix>/backups/postgres. Give each pipeline its own.",
    )
    credentials_secret_ref: S3CredentialsRef = Field(
        description="Secret with the access key pair (by default under the keys "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, as the aws CLI names them).",
    )


class Archive(Model):
    enabled: bool = Field(
        default=False,
        description="Run `fraudpipe-api archive`: decisions (with their feature snapshot) and "
        "labels to spec.objectStore as hourly Parquet (docs/archive.md). Needs objectStore. "
        "Turned off, its Deployment is deleted.",
    )
    labels: bool = Field(default=True, description="Archive the labels topic too.")
    max_records: int = Field(
        default=20_000,
        ge=1,
        le=1_000_000,
        description="Records per partition per object (ARCHIVE_MAX_RECORDS).",
    )
    max_wait_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="Longest a record waits before it is written (ARCHIVE_MAX_WAIT_S).",
    )
    resources: Resources = section(Resources, "CPU and memory of the archiver.")


class Backup(Model):
    enabled: bool = Field(
        default=False,
        description="Back PostgreSQL up to spec.objectStore on a schedule: a CronJob runs "
        "pg_dump (custom format, compressed) and `fraudpipe-api backup upload` "
        "(docs/runbooks.md#restoring-postgresql-from-a-backup). Needs objectStore. Turned "
        "off, the CronJob is deleted; the backups stay.",
    )
    schedule: str = cron_schedule(
        "0 2 * * *", "Cron schedule, in UTC (by default after the retention job's 01:30)."
    )
    keep: int = Field(
        default=7,
        ge=1,
        le=1000,
        description="How many of this pipeline's backups to keep: after each upload, older "
        "ones are deleted.",
    )
    image: str = Field(
        default="",
        max_length=512,
        description="Image providing pg_dump, whose major version must be at least the "
        "server's. Empty: spec.postgres.managed.image (the managed server's own).",
    )


class Scraper(Model):
    namespace_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels of the namespaces it runs in; empty: any namespace.",
        json_schema_extra={"maxProperties": 16},
    )
    pod_labels: dict[str, str] = Field(
        description="Labels of its pods (at least one).",
        json_schema_extra={"minProperties": 1, "maxProperties": 16},
    )


# The Prometheus Operator labels every Prometheus pod it runs with this.
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}


class Monitoring(Model):
    scrapers: list[Scraper] = Field(
        default_factory=lambda: [Scraper(pod_labels=dict(PROMETHEUS_POD_LABELS))],
        max_length=8,
        description=(
            "Who may open the metrics ports (scorer 9000, Redpanda's admin port 9644, which "
            "serves its metrics and its admin API) besides the pipeline's and the operator's "
            "pods. Default: Prometheus Operator pods in any namespace."
        ),
    )
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
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!self.archive.enabled || has(self.objectStore)",
                "the archive needs objectStore (bucket and credentialsSecretRef)",
                ".objectStore",
            ),
            (
                "!self.backup.enabled || has(self.objectStore)",
                "backups need objectStore (bucket and credentialsSecretRef)",
                ".objectStore",
            ),
        )
    )

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
    retention: Retention = section(
        Retention, "Retention of alerts and feedback (`fraudpipe-api retention`) as a CronJob."
    )
    notify: Notify = section(Notify, "Webhook notifications (`fraudpipe-api notify`).")
    object_store: ObjectStore | None = Field(
        default=None,
        description="S3-compatible storage shared by the archive and the backups.",
    )
    archive: Archive = section(
        Archive, "Archive of decisions and labels (`fraudpipe-api archive`) to objectStore."
    )
    backup: Backup = section(Backup, "Scheduled PostgreSQL backups to objectStore.")
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


class AutoscalingStatus(Model):
    engine: Literal["builtin", "keda"] = Field(
        default="builtin", description="The engine in force (builtin when KEDA is missing)."
    )
    lag: int | None = Field(
        default=None, description="Total lag of the consumer group; absent when unreadable."
    )
    partitions: int | None = Field(
        default=None, description="Partitions of the transactions topic (the replica cap)."
    )
    desired_replicas: int = Field(default=0, description="Replicas the lag asks for now.")
    current_replicas: int = Field(default=0, description="Replicas of the scorer Deployment.")
    last_scale_time: str | None = Field(
        default=None, max_length=64, description="When the autoscaler last scaled (RFC 3339)."
    )
    reason: str = Field(default="", max_length=128, description="CamelCase reason.")
    message: str = Field(default="", max_length=1024, description="Why, in words.")


class CanaryAnalysisStatus(Model):
    result: Literal["Passed", "Failed", "Inconclusive"] = Field(description="The verdict.")
    at: str = Field(default="", max_length=64, description="When it ran (RFC 3339).")
    samples: int = Field(default=0, description="Candidate decisions in the window.")
    stable_samples: int = Field(default=0, description="Stable decisions compared against.")
    error_rate: float | None = Field(default=None, description="Candidate's failed share.")
    p99_latency_ms: float | None = Field(default=None, description="Candidate's p99, ms/batch.")
    alert_rate_ratio: float | None = Field(default=None, description="Candidate/stable alerts.")
    psi: float | None = Field(default=None, description="Score distribution drift.")
    failed: list[str] = Field(
        default_factory=list, max_length=8, description="Checks over their threshold."
    )


class CanaryStatus(Model):
    phase: Literal[
        "Validating",
        "Invalid",
        "Loading",
        "Shadow",
        "Progressing",
        "Promoted",
        "Failed",
        "Aborting",
    ] = Field(description="Where the rollout is (docs/canary.md).")
    ref: str = Field(max_length=512, description="The candidate this rollout is about.")
    candidate_digest: str = Field(default="", max_length=80, description="Its digest.")
    stable_digest: str = Field(default="", max_length=80, description="The stable model's.")
    weight: int = Field(default=0, description="Percent of users the candidate decides for.")
    step: int = Field(default=0, description="Step reached (1-based; 0 before the first).")
    checks_passed: int = Field(default=0, description="Analyses passed in this rollout.")
    checks_failed: int = Field(default=0, description="Analyses failed in this rollout.")
    paused: bool = Field(default=False, description="The last analysis was inconclusive.")
    loaded_at: float = Field(
        default=0, description="Unix time every scorer pod had loaded the candidate (0: not yet)."
    )
    phase_started_at: float = Field(default=0, description="Unix time the phase began.")
    window_started_at: float = Field(default=0, description="Unix time the window began.")
    next_check_at: float = Field(default=0, description="Unix time of the next analysis.")
    last_analysis: CanaryAnalysisStatus | None = Field(
        default=None, description="The latest analysis and its values."
    )
    message: str = Field(default="", max_length=2048, description="Human-readable details.")


class PromotedModel(Model):
    ref: str = Field(max_length=512, description="The candidate promoted to stable.")
    replaces: str = Field(
        max_length=512,
        description="spec.model.ref when it was promoted: the promoted model stays stable "
        "while spec.model.ref keeps this value.",
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
    autoscaling: AutoscalingStatus | None = Field(
        default=None, description="What the lag autoscaler last saw and did (when enabled)."
    )
    canary: CanaryStatus | None = Field(
        default=None, description="The canary rollout in progress or last finished."
    )
    promoted: PromotedModel | None = Field(
        default=None, description="The last candidate promoted to stable by a canary."
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
                # The canary's state decides which models the scorer loads (docs/canary.md);
                # the rest of the status is the operator's output, never its input.
                "status": rollout_status(body.get("status")),
            }
        )


def rollout_status(status: Any) -> dict[str, Any]:
    """The parts of a stored status that the scorer Deployment is built from."""
    return {k: v for k, v in dict(status or {}).items() if k in ("canary", "promoted") and v}
