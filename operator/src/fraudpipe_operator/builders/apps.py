"""The pipeline's own services: migrations Job, scorer, API, notifier, scheduled jobs (daily
report, retention) and producer."""

from __future__ import annotations

from typing import Any

from fraudpipe_operator.builders.common import (
    API_PORT,
    CHECKSUM_ANNOTATION,
    METRICS_PORT,
    SCORER_CONTROL_PORT,
    OperatorPods,
    checksum,
    child_name,
    container_security,
    headless_or_cluster_service,
    labels,
    metadata,
    network_policy,
    pod_security,
    resources,
    selector_labels,
    tmp_volume,
)
from fraudpipe_operator.builders.connections import (
    common_env,
    from_secret,
    kafka_ca_volume,
    kafka_env,
    postgres_env,
    redis_env,
    value,
)
from fraudpipe_operator.builders.monitoring import rule_values
from fraudpipe_operator.canary.machine import deployment_models
from fraudpipe_operator.models import FraudPipeline
from fraudpipe_operator.models.v1alpha1 import Resources

APP_UID = 10001
API_KEYS_DIR = "/etc/fraudpipe/api-keys"


def service_account_name(pipeline: FraudPipeline) -> str:
    return child_name(pipeline, "workload")


def build_pipeline_serviceaccount(pipeline: FraudPipeline) -> dict[str, Any]:
    """Pipeline pods never talk to the Kubernetes API: no token is mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(pipeline, service_account_name(pipeline), "workload"),
        "automountServiceAccountToken": False,
    }


def pod_template(
    pipeline: FraudPipeline,
    component: str,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    config: Any,
) -> dict[str, Any]:
    return {
        "metadata": {
            "labels": labels(pipeline, component),
            # Rolls the pods when their configuration changes, including what the pod spec
            # does not show (the contents of the spec sections they were built from).
            "annotations": {CHECKSUM_ANNOTATION: checksum(config, container)},
        },
        "spec": {
            "serviceAccountName": service_account_name(pipeline),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security(APP_UID),
            "containers": [container],
            "volumes": volumes,
        },
    }


def app_container(
    name: str,
    image: str,
    env: list[dict[str, Any]],
    spec_resources: Resources,
    mounts: list[dict[str, Any]],
    ports: dict[str, int],
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "ports": [{"name": n, "containerPort": p} for n, p in ports.items()],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": METRICS_PORT},
            "periodSeconds": 10,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": METRICS_PORT},
            "periodSeconds": 20,
            "failureThreshold": 3,
        },
        "resources": resources(spec_resources),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }


def deployment(
    pipeline: FraudPipeline, component: str, replicas: int | None, template: dict[str, Any]
) -> dict[str, Any]:
    """`replicas` None leaves the count out of the operator's apply, to whoever scales it."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(pipeline, component)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
        "template": template,
    }
    if replicas is not None:
        spec = {"replicas": replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(pipeline, child_name(pipeline, component), component),
        "spec": spec,
    }


# -- migrations -------------------------------------------------------------------------------
def migrations_job_name(pipeline: FraudPipeline) -> str:
    # A Job's pod template is immutable, and the schema ships with the scorer image: a new
    # image is a new Job (which applies only what is missing).
    return child_name(pipeline, f"migrate-{checksum(pipeline.spec.scorer.image)[:10]}")


def build_migrations_job(pipeline: FraudPipeline) -> dict[str, Any]:
    """`fraudpipe-scorer migrate` applies the shared schema (libs/common) under an advisory
    lock, skipping versions already applied: safe to run again, and concurrently."""
    tmp, tmp_mount = tmp_volume()
    container = {
        "name": "migrate",
        "image": pipeline.spec.scorer.image,
        "command": ["fraudpipe-scorer", "migrate"],
        "env": [*postgres_env(pipeline), *common_env(pipeline)],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "securityContext": container_security(),
        "volumeMounts": [tmp_mount],
    }
    template = pod_template(pipeline, "migrations", container, [tmp], None)
    template["spec"]["restartPolicy"] = "OnFailure"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(pipeline, migrations_job_name(pipeline), "migrations"),
        "spec": {"backoffLimit": 10, "template": template},
    }


# -- scorer -----------------------------------------------------------------------------------
def build_scorer_deployment(pipeline: FraudPipeline) -> dict[str, Any]:
    scorer = pipeline.spec.scorer
    thresholds = scorer.rules.thresholds
    stable, candidate = deployment_models(pipeline.spec.model, pipeline.status)
    env = [
        *kafka_env(pipeline),
        *redis_env(pipeline),
        *postgres_env(pipeline),
        *common_env(pipeline),
        value("METRICS_PORT", METRICS_PORT),
        value("CONTROL_PORT", SCORER_CONTROL_PORT),
        value("CONSUMER_GROUP", scorer.consumer_group),
        value("MODEL_REF", stable),
        # Only a validated candidate; its weight is pushed to each pod at run time, never
        # set here (an env change would roll the pods), so a pod starts with weight 0.
        *([value("CANARY_MODEL_REF", candidate)] if candidate else []),
        *([value("REGISTRY_PLAIN_HTTP", "true")] if pipeline.spec.model.plain_http else []),
        value("BATCH_MAX_SIZE", scorer.batch.max_size),
        value("BATCH_MAX_WAIT_MS", scorer.batch.max_wait_ms),
        # Absent thresholds leave the model card's in force.
        *(
            value(name, threshold)
            for name, threshold in (
                ("FLAG_THRESHOLD", thresholds.flag),
                ("BLOCK_THRESHOLD", thresholds.block),
            )
            if threshold is not None
        ),
    ]
    ca_volumes, ca_mounts = kafka_ca_volume(pipeline)
    tmp, tmp_mount = tmp_volume()
    container = app_container(
        "scorer",
        scorer.image,
        env,
        scorer.resources,
        [tmp_mount, *ca_mounts],
        {"metrics": METRICS_PORT, "control": SCORER_CONTROL_PORT},
    )
    # The replica count is not the pods' configuration: scaling must not roll them.
    pod_config = scorer.model_dump(mode="json", exclude={"replicas", "autoscaling"})
    # The canary's settings are not either: the models it loads are in the env already.
    config = [pod_config, pipeline.spec.model.model_dump(mode="json", exclude={"canary"})]
    template = pod_template(pipeline, "scorer", container, [tmp, *ca_volumes], config)
    # While autoscaling, the autoscaler (builtin or KEDA's HPA) owns the count.
    replicas = None if scorer.autoscaling.enabled else scorer.replicas
    return deployment(pipeline, "scorer", replicas, template)


def build_scorer_networkpolicy(
    pipeline: FraudPipeline, operator: OperatorPods | None = None
) -> dict[str, Any]:
    """The routing control (canary weights, unauthenticated) from the operator's own pods
    alone, in its own namespace; the metrics port (also the per-model statistics the canary
    driver reads) from those, the pipeline's pods and its scrapers. Nothing else listens on
    a scorer."""
    peer = (operator or OperatorPods()).peer()
    policy = network_policy(pipeline, "scorer", [SCORER_CONTROL_PORT], [peer], [METRICS_PORT])
    policy["spec"]["ingress"][0]["from"] = [peer]
    return policy


def build_scorer_service(pipeline: FraudPipeline) -> dict[str, Any]:
    """Metrics only: the scorer serves nothing else."""
    return headless_or_cluster_service(pipeline, "scorer", {"metrics": METRICS_PORT})


# -- API --------------------------------------------------------------------------------------
def build_api_deployment(pipeline: FraudPipeline) -> dict[str, Any]:
    api = pipeline.spec.api
    env = [
        *kafka_env(pipeline),
        *redis_env(pipeline),
        *postgres_env(pipeline),
        *common_env(pipeline),
        value("METRICS_PORT", METRICS_PORT),
        value("API_PORT", API_PORT),
        value("API_OPEN_READS", str(api.open_reads).lower()),
        *(
            [value("API_TRUSTED_PROXIES", ",".join(api.trusted_proxies))]
            if api.trusted_proxies
            else []
        ),
    ]
    ca_volumes, ca_mounts = kafka_ca_volume(pipeline)
    tmp, tmp_mount = tmp_volume()
    volumes, mounts = [tmp, *ca_volumes], [tmp_mount, *ca_mounts]
    if api.auth_secret_ref is not None:
        ref = api.auth_secret_ref
        env.append(value("API_KEYS_FILE", f"{API_KEYS_DIR}/keys"))
        volumes.append(
            {
                "name": "api-keys",
                "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": "keys"}]},
            }
        )
        mounts.append({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True})
    container = app_container(
        "api", api.image, env, api.resources, mounts, {"http": API_PORT, "metrics": METRICS_PORT}
    )
    # The API's health endpoints are its own business; the port answering is the contract.
    container["readinessProbe"] = {"tcpSocket": {"port": API_PORT}, "periodSeconds": 10}
    container["livenessProbe"] = {
        "tcpSocket": {"port": API_PORT},
        "periodSeconds": 20,
        "failureThreshold": 3,
    }
    template = pod_template(pipeline, "api", container, volumes, api.model_dump(mode="json"))
    return deployment(pipeline, "api", api.replicas, template)


def build_api_service(pipeline: FraudPipeline) -> dict[str, Any]:
    service = headless_or_cluster_service(
        pipeline,
        "api",
        {"http": API_PORT, "metrics": METRICS_PORT},
        service_type=pipeline.spec.api.service_type,
    )
    if pipeline.spec.api.service_type == "LoadBalancer":
        # Cluster would source-NAT external clients to a node's address: all of them would
        # share the API's limit on unknown keys, and one guesser would lock out the rest. The
        # load balancer's health checks keep traffic off nodes without an API pod; a NodePort
        # has no such steering (a node without one would drop it), so it keeps Cluster.
        service["spec"]["externalTrafficPolicy"] = "Local"
    return service


# -- webhook notifications ----------------------------------------------------------------------
def build_notify_deployment(pipeline: FraudPipeline) -> dict[str, Any]:
    """`fraudpipe-api notify` on the API's image: one replica (its rate limit is per process;
    Kafka would split the decisions between several anyway)."""
    notify = pipeline.spec.notify
    ref = notify.webhook_url_secret_ref
    assert ref is not None  # the CRD's CEL rule
    env = [
        *kafka_env(pipeline),
        *common_env(pipeline),
        from_secret("NOTIFY_WEBHOOK_URL", ref.name, ref.key),
        value("NOTIFY_CONSUMER_GROUP", f"{pipeline.name}-notify"),
        value("NOTIFY_RATE_PER_MINUTE", notify.rate_per_minute),
        value("NOTIFY_METRICS_PORT", METRICS_PORT),
    ]
    ca_volumes, ca_mounts = kafka_ca_volume(pipeline)
    tmp, tmp_mount = tmp_volume()
    container = app_container(
        "notify", pipeline.spec.api.image, env, notify.resources, [tmp_mount, *ca_mounts],
        {"metrics": METRICS_PORT},
    )  # fmt: skip
    container["command"] = ["fraudpipe-api", "notify"]
    # Its metrics port answers while the worker runs; it has no health endpoints of its own.
    container["readinessProbe"] = {"tcpSocket": {"port": METRICS_PORT}, "periodSeconds": 10}
    container["livenessProbe"] = {
        "tcpSocket": {"port": METRICS_PORT},
        "periodSeconds": 20,
        "failureThreshold": 3,
    }
    config = notify.model_dump(mode="json")
    template = pod_template(pipeline, "notify", container, [tmp, *ca_volumes], config)
    return deployment(pipeline, "notify", 1, template)


# -- scheduled jobs: daily report, retention ---------------------------------------------------
def cronjob_container(
    pipeline: FraudPipeline, name: str, command: list[str], env: list[dict[str, Any]]
) -> dict[str, Any]:
    """A short-lived client of PostgreSQL on the API's image."""
    return {
        "name": name,
        "image": pipeline.spec.api.image,
        "command": command,
        "env": [*postgres_env(pipeline), *common_env(pipeline), *env],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "securityContext": container_security(),
    }


# How long one run may take, retries included, before it counts as failed. Without a deadline
# a pod that never starts (an image that cannot be pulled, a quota) keeps its run active for
# ever, and under concurrencyPolicy Forbid no later run starts: a silent stop (decision 91).
REPORT_DEADLINE_S = 3600
RETENTION_DEADLINE_S = 6 * 3600  # a first clean-up of a large backlog
BACKUP_DEADLINE_S = 12 * 3600  # pg_dump of a large database to a slow store


def cronjob(
    pipeline: FraudPipeline,
    component: str,
    schedule: str,
    container: dict[str, Any],
    *,
    deadline_s: int,
    init_containers: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`init_containers` run to completion, in order, before `container`; `volumes` are
    there for them to share (each container names its own mounts); a run still going after
    `deadline_s` is stopped and failed."""
    tmp, tmp_mount = tmp_volume()
    container = {**container, "volumeMounts": [tmp_mount, *container.get("volumeMounts", [])]}
    template = pod_template(pipeline, component, container, [tmp, *(volumes or [])], None)
    template["spec"]["restartPolicy"] = "OnFailure"
    if init_containers:
        template["spec"]["initContainers"] = init_containers
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(pipeline, child_name(pipeline, component), component),
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            # A run still going when the next is due (say, a first clean-up of a large
            # backlog) finishes alone: two would compete for the same rows.
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 7,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 3,
                    "activeDeadlineSeconds": deadline_s,
                    "template": template,
                }
            },
        },
    }


def build_report_cronjob(pipeline: FraudPipeline) -> dict[str, Any]:
    """`fraudpipe-api report` for the previous UTC day; the report is the Job's log
    (`kubectl logs job/<name>`)."""
    report = pipeline.spec.report
    env: list[dict[str, Any]] = []
    if report.prometheus_url:
        # Only this pipeline's scorers: one Prometheus usually scrapes several pipelines.
        env += [
            value("PROMETHEUS_URL", report.prometheus_url),
            value("PROMETHEUS_SELECTOR", rule_values(pipeline)["scorer"]),
        ]
    command = ["fraudpipe-api", "report", "--date", "yesterday", "--output", report.output]
    container = cronjob_container(pipeline, "report", command, env)
    return cronjob(pipeline, "report", report.schedule, container, deadline_s=REPORT_DEADLINE_S)


def build_retention_cronjob(pipeline: FraudPipeline) -> dict[str, Any]:
    """`fraudpipe-api retention`: alerts and feedback past their days, deleted in batches of
    one short transaction each (docs/decisions.md, decision 87); its JSON summary is the Job's
    log."""
    retention = pipeline.spec.retention
    env = [value("RETENTION_BATCH_SIZE", retention.batch_size)]
    if retention.alerts_days is not None:
        env.append(value("RETENTION_ALERTS_DAYS", retention.alerts_days))
    if retention.feedback_days is not None:
        env.append(value("RETENTION_FEEDBACK_DAYS", retention.feedback_days))
    container = cronjob_container(pipeline, "retention", ["fraudpipe-api", "retention"], env)
    return cronjob(
        pipeline, "retention", retention.schedule, container, deadline_s=RETENTION_DEADLINE_S
    )


# -- producer ---------------------------------------------------------------------------------
def build_producer_deployment(pipeline: FraudPipeline) -> dict[str, Any]:
    producer = pipeline.spec.producer
    env = [
        *kafka_env(pipeline),
        *common_env(pipeline),
        value("PRODUCER_RPS", producer.rps),
        value("PRODUCER_FRAUD_RATE", producer.fraud_rate),
    ]
    ca_volumes, ca_mounts = kafka_ca_volume(pipeline)
    tmp, tmp_mount = tmp_volume()
    container = app_container(
        "producer", producer.image, env, producer.resources, [tmp_mount, *ca_mounts], {}
    )
    # fraudpipe-produce is a plain client: no HTTP surface to probe. Labels go to their own
    # topic, never with the scored transactions.
    container["command"] = [
        "fraudpipe-produce",
        "--labels-to",
        f"kafka:{pipeline.spec.kafka.topics.labels.name}",
    ]
    del container["readinessProbe"], container["livenessProbe"]
    config = producer.model_dump(mode="json")
    template = pod_template(pipeline, "producer", container, [tmp, *ca_volumes], config)
    return deployment(pipeline, "producer", 1, template)
