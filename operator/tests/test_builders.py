"""Builders are pure: assertions on the dicts they return."""

from __future__ import annotations

from typing import Any

from fraudpipe_operator import builders
from fraudpipe_operator.builders import apps, monitoring, object_store, stores
from fraudpipe_operator.builders.common import CHECKSUM_ANNOTATION, FIELD_MANAGER

from .pipelines import example, pipeline

IMAGES = builders.Images(scorer="fp/scorer:1", api="fp/api:1", producer="fp/producer:1")
OBJECT_STORE = {
    "endpoint": "http://minio.storage:9000",
    "bucket": "fraud-archive",
    "prefix": "payments",
    "credentialsSecretRef": {"name": "s3-credentials"},
}


def env_of(obj: dict[str, Any]) -> dict[str, Any]:
    container = obj["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objects]


def test_managed_example_plans_every_child() -> None:
    managed = example("managed.yaml")
    plan = builders.plan(builders.with_default_images(managed, IMAGES))
    assert set(kinds(plan.foundation)) == {
        "ServiceAccount/payments-workload",
        *(
            f"{kind}/payments-{c}"
            for c in ("kafka", "redis", "postgres")
            for kind in ("Service", "StatefulSet", "PodDisruptionBudget", "NetworkPolicy")
        ),
    }
    assert kinds(plan.workloads) == [
        "Service/payments-scorer",
        "NetworkPolicy/payments-scorer",
        "Deployment/payments-scorer",
        "Service/payments-api",
        "Deployment/payments-api",
        "CronJob/payments-report",
        "Deployment/payments-producer",
    ]
    assert {o["kind"] for o in plan.monitoring} == {"ServiceMonitor", "PrometheusRule"}


def test_external_kafka_has_no_broker_and_points_pods_at_the_servers() -> None:
    external = example("external-kafka.yaml")
    plan = builders.plan(external)
    assert not any("kafka" in name for name in kinds(plan.foundation))
    env = env_of(apps.build_scorer_deployment(external))
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka-0.kafka.example.com:9092"
    assert env["TRANSACTIONS_TOPIC"] == "cards.transactions.v1"
    assert env["KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"


def test_every_child_is_owned_and_labelled() -> None:
    managed = example("managed.yaml")
    for obj in builders.plan(managed).all():
        meta = obj["metadata"]
        assert meta["namespace"] == "fraud"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == FIELD_MANAGER
        assert meta["labels"]["fraudpipe.io/pipeline"] == "payments"
        (owner,) = meta["ownerReferences"]
        assert owner == {
            "apiVersion": "fraudpipe.io/v1alpha1",
            "kind": "FraudPipeline",
            "name": "payments",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_every_pod_runs_under_the_restricted_profile() -> None:
    managed = example("managed.yaml")
    pods = [
        o["spec"]["template"]["spec"]
        for o in builders.plan(managed).all()
        if o["kind"] in ("Deployment", "StatefulSet", "Job")
    ]
    assert len(pods) == 7
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


def test_scorer_gets_the_documented_environment() -> None:
    managed = example("managed.yaml")
    env = env_of(apps.build_scorer_deployment(builders.with_default_images(managed, IMAGES)))
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "payments-kafka.fraud.svc:9092"
    assert env["MODEL_REF"] == managed.spec.model.ref
    assert env["BATCH_MAX_SIZE"] == "500"
    assert env["BATCH_MAX_WAIT_MS"] == "50"
    assert env["CONSUMER_GROUP"] == "fraudpipe-scorer"
    assert env["METRICS_PORT"] == "9000"
    assert env["REDIS_URL"] == "redis://:$(REDIS_PASSWORD)@payments-redis.fraud.svc:6379/0"
    assert env["REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "payments-redis-credentials", "key": "password"}
    }
    assert env["DATABASE_URL"].startswith("postgresql://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@")
    names = [
        e["name"]
        for e in apps.build_scorer_deployment(managed)["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    ]
    # $(VAR) expansion only sees variables defined earlier in the list.
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")
    assert names.index("POSTGRES_PASSWORD") < names.index("DATABASE_URL")


def test_external_stores_read_urls_from_the_users_secrets() -> None:
    p = pipeline(
        {
            "redis": {"mode": "external", "urlSecretRef": {"name": "r", "key": "url"}},
            "postgres": {"mode": "external", "dsnSecretRef": {"name": "pg", "key": "dsn"}},
        }
    )
    env = env_of(apps.build_api_deployment(p))
    assert env["REDIS_URL"] == {"secretKeyRef": {"name": "r", "key": "url"}}
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "pg", "key": "dsn"}}
    assert builders.credential_secrets(p, lambda: "x") == []
    statefulsets = [o for o in builders.plan(p).foundation if o["kind"] == "StatefulSet"]
    assert kinds(statefulsets) == ["StatefulSet/payments-kafka"]


def test_sasl_and_tls_come_from_secret_refs() -> None:
    p = pipeline(
        {
            "kafka": {
                "mode": "external",
                "external": {
                    "bootstrapServers": ["k:9093"],
                    "tls": {"enabled": True, "caSecretRef": {"name": "ca", "key": "ca.pem"}},
                    "sasl": {"mechanism": "SCRAM-SHA-256", "secretName": "creds"},
                },
            }
        }
    )
    deployment = apps.build_scorer_deployment(p)
    env = env_of(deployment)
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-256"
    assert env["KAFKA_SASL_PASSWORD"] == {"secretKeyRef": {"name": "creds", "key": "password"}}
    assert env["KAFKA_SSL_CA_FILE"] == "/etc/fraudpipe/kafka-ca/ca.crt"
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"key": "ca.pem", "path": "ca.crt"} in next(
        v["secret"]["items"] for v in volumes if v["name"] == "kafka-ca"
    )


def test_config_checksum_changes_with_the_config_and_only_then() -> None:
    def checksum(spec: dict[str, Any]) -> str:
        deployment = apps.build_scorer_deployment(pipeline(spec))
        return str(deployment["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION])

    base = checksum({})
    assert checksum({}) == base
    assert checksum({"scorer": {"batch": {"maxSize": 100}}}) != base
    assert checksum({"scorer": {"rules": {"thresholds": {"flag": 0.3}}}}) != base
    assert checksum({"api": {"replicas": 5}}) == base


def test_api_mounts_its_keys_and_exposes_the_service_type() -> None:
    p = pipeline(
        {"api": {"authSecretRef": {"name": "keys", "key": "k"}, "serviceType": "NodePort"}}
    )
    deployment = apps.build_api_deployment(p)
    assert env_of(deployment)["API_KEYS_FILE"] == "/etc/fraudpipe/api-keys/keys"
    assert apps.build_api_service(p)["spec"]["type"] == "NodePort"
    ports = {port["name"]: port["port"] for port in apps.build_api_service(p)["spec"]["ports"]}
    assert ports == {"http": 8000, "metrics": 9000}


def test_credentials_are_separate_secrets_not_owned_by_the_pipeline() -> None:
    passwords = iter(["one", "two"])
    redis_secret, postgres_secret = builders.credential_secrets(pipeline(), lambda: next(passwords))
    assert redis_secret["stringData"] == {"password": "one"}
    assert postgres_secret["stringData"]["password"] == "two"
    assert "ownerReferences" not in redis_secret["metadata"]


def test_statefulsets_have_claims_and_pdbs_keep_quorum() -> None:
    p = pipeline({"kafka": {"managed": {"replicas": 3, "storage": {"size": "50Gi"}}}})
    sts = stores.build_kafka_statefulset(p)
    assert sts["spec"]["replicas"] == 3
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert (
        "--seeds="
        + ",".join(f"payments-kafka-{i}.payments-kafka.fraud.svc:33145" for i in range(3))
        in sts["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert stores.build_kafka_pdb(p)["spec"] == {
        "selector": {
            "matchLabels": {"fraudpipe.io/pipeline": "payments", "fraudpipe.io/component": "kafka"}
        },
        "minAvailable": 2,
    }
    assert stores.build_redis_pdb(p)["spec"]["maxUnavailable"] == 0


def test_managed_redis_keeps_an_append_only_file_and_frees_expired_keys_lazily() -> None:
    (container,) = stores.build_redis_statefulset(pipeline())["spec"]["template"]["spec"][
        "containers"
    ]
    args = container["args"]
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--appendonly"] == "yes"  # features survive a restart
    # The replay-record hashes are large: expired in the background, not in a pause.
    assert options["--lazyfree-lazy-expire"] == "yes"


def test_network_policies_admit_only_pipeline_pods() -> None:
    policy = stores.build_postgres_networkpolicy(pipeline())
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"fraudpipe.io/pipeline": "payments"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    kafka = stores.build_kafka_networkpolicy(pipeline())
    peers = kafka["spec"]["ingress"][0]["from"]
    assert peers[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    # Redpanda's admin port serves its metrics and its (unauthenticated) admin API: the
    # pipeline, the operator and the scrapers only, by default Prometheus Operator pods.
    metrics = kafka["spec"]["ingress"][1]
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9644}]
    assert metrics["from"] == [
        *peers,
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        },
    ]


def test_scrapers_can_be_narrowed_to_a_namespace() -> None:
    scrapers = [{"namespaceLabels": {"team": "obs"}, "podLabels": {"app": "vmagent"}}]
    p = pipeline({"monitoring": {"scrapers": scrapers}})
    for policy in (stores.build_kafka_networkpolicy(p), apps.build_scorer_networkpolicy(p)):
        metrics = policy["spec"]["ingress"][1]
        assert metrics["from"][-1] == {
            "namespaceSelector": {"matchLabels": {"team": "obs"}},
            "podSelector": {"matchLabels": {"app": "vmagent"}},
        }
        assert "prometheus" not in str(metrics["from"])
    # No scraper at all: only the pipeline and the operator.
    p = pipeline({"monitoring": {"scrapers": []}})
    assert len(stores.build_kafka_networkpolicy(p)["spec"]["ingress"][1]["from"]) == 2


def test_migrations_job_runs_the_scorers_migrate_and_is_renamed_with_its_image() -> None:
    job = apps.build_migrations_job(builders.with_default_images(pipeline(), IMAGES))
    assert job["metadata"]["name"].startswith("payments-migrate-")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "fp/scorer:1"
    assert container["command"] == ["fraudpipe-scorer", "migrate"]
    assert "DATABASE_URL" in {e["name"] for e in container["env"]}
    newer = builders.with_default_images(pipeline({"scorer": {"image": "fp/scorer:2"}}), IMAGES)
    assert apps.build_migrations_job(newer)["metadata"]["name"] != job["metadata"]["name"]
    assert job["spec"]["template"]["metadata"]["labels"]["fraudpipe.io/pipeline"] == "payments"


def test_thresholds_are_passed_only_when_set() -> None:
    env = env_of(apps.build_scorer_deployment(pipeline()))
    assert "FLAG_THRESHOLD" not in env
    assert "BLOCK_THRESHOLD" not in env
    p = pipeline({"scorer": {"rules": {"thresholds": {"flag": 0.4, "block": 0.8}}}})
    env = env_of(apps.build_scorer_deployment(p))
    assert (env["FLAG_THRESHOLD"], env["BLOCK_THRESHOLD"]) == ("0.4", "0.8")


def test_monitoring_objects_carry_extra_labels_and_the_rules_file() -> None:
    p = pipeline({"monitoring": {"labels": {"release": "prom"}}})
    rule = monitoring.build_pipeline_prometheusrule(p)
    assert rule["metadata"]["labels"]["release"] == "prom"
    # The rules themselves are tested with promtool in test_monitoring_rules.py.
    assert rule["spec"]["groups"] == monitoring.render_rule_groups(monitoring.rule_values(p))
    assert rule["spec"]["groups"][0]["name"] == "fraudpipe.fraud.payments"
    assert monitoring.build_kafka_servicemonitor(p)["spec"]["endpoints"][0]["port"] == "admin"
    off = pipeline({"monitoring": {"serviceMonitors": False, "prometheusRules": False}})
    assert builders.plan(off).monitoring == []


def test_default_images_fill_only_empty_fields() -> None:
    p = builders.with_default_images(pipeline({"api": {"image": "mine/api:2"}}), IMAGES)
    assert p.spec.scorer.image == "fp/scorer:1"
    assert p.spec.api.image == "mine/api:2"


def test_producer_runs_the_cli_with_labels_on_their_own_topic() -> None:
    p = pipeline({"producer": {"enabled": True, "rps": 25}})
    deployment = apps.build_producer_deployment(p)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == [
        "fraudpipe-produce",
        "--labels-to",
        "kafka:transactions.v1.labels",
    ]
    env = env_of(deployment)
    assert env["PRODUCER_RPS"] == "25"
    assert env["TRANSACTIONS_TOPIC"] == "transactions.v1"
    assert "readinessProbe" not in container


def test_redpanda_is_the_default_flavor_with_its_pinned_image() -> None:
    container = stores.build_kafka_statefulset(pipeline())["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["name"] == "redpanda"
    assert container["image"] == "docker.redpanda.com/redpandadata/redpanda:v24.2.18"


def test_kafka_flavor_is_a_kraft_quorum_of_every_pod_behind_the_same_service() -> None:
    p = pipeline({"kafka": {"managed": {"flavor": "kafka", "replicas": 3}}})
    sts = stores.build_kafka_statefulset(p)
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(sts)
    assert container["image"] == "apache/kafka:4.1.1"
    assert spec["replicas"] == 3
    assert spec["serviceName"] == "payments-kafka"
    assert spec["podManagementPolicy"] == "Parallel"  # a quorum needs its voters together
    assert env["KAFKA_NODE_ID"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == ",".join(
        f"{i}@payments-kafka-{i}.payments-kafka.fraud.svc:9093" for i in range(3)
    )
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert (
        env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://$(POD_NAME).payments-kafka.fraud.svc:9092"
    )
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
    # Data on the claim (in a subfolder), generated config under /tmp: the root stays read-only.
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data/logs"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/var/lib/kafka/data", "/tmp"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert container["startupProbe"]["tcpSocket"]["port"] == 9092
    assert container["readinessProbe"]["tcpSocket"]["port"] == 9092
    assert container["livenessProbe"]["tcpSocket"]["port"] == 9093
    assert stores.build_kafka_pdb(p)["spec"]["minAvailable"] == 2


def test_a_single_kafka_broker_replicates_internal_topics_once() -> None:
    env = env_of(
        stores.build_kafka_statefulset(pipeline({"kafka": {"managed": {"flavor": "kafka"}}}))
    )
    assert (
        env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "0@payments-kafka-0.payments-kafka.fraud.svc:9093"
    )
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"


def test_both_flavors_give_the_pipeline_the_same_bootstrap_address() -> None:
    for flavor in ("redpanda", "kafka"):
        p = pipeline({"kafka": {"managed": {"flavor": flavor}}})
        service = stores.build_kafka_service(p)
        assert service["metadata"]["name"] == "payments-kafka"
        assert service["spec"]["clusterIP"] == "None"
        assert {"name": "kafka", "port": 9092, "targetPort": 9092, "protocol": "TCP"} in service[
            "spec"
        ]["ports"]
        assert env_of(apps.build_scorer_deployment(p))["KAFKA_BOOTSTRAP_SERVERS"] == (
            "payments-kafka.fraud.svc:9092"
        )


def test_kafka_flavor_opens_its_controller_port_to_the_pipeline_and_has_no_servicemonitor() -> None:
    p = pipeline({"kafka": {"managed": {"flavor": "kafka"}}})
    policy = stores.build_kafka_networkpolicy(p)
    assert policy["spec"]["ingress"] == [
        {
            "from": policy["spec"]["ingress"][0]["from"],
            "ports": [{"protocol": "TCP", "port": 9092}, {"protocol": "TCP", "port": 9093}],
        }
    ]
    plan = builders.plan(builders.with_default_images(p, IMAGES))
    assert "ServiceMonitor/payments-kafka" not in kinds(plan.monitoring)
    assert "ServiceMonitor/payments-scorer" in kinds(plan.monitoring)


def test_an_image_overrides_the_flavors_default() -> None:
    p = pipeline({"kafka": {"managed": {"flavor": "kafka", "image": "localhost/k:1"}}})
    container = stores.build_kafka_statefulset(p)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/k:1"


def test_local_node_example_runs_kafka_from_local_images_and_pulls_the_model_over_http() -> None:
    local = builders.with_default_images(example("local-node.yaml"), IMAGES)
    plan = builders.plan(local)
    images = {
        c["image"]
        for o in plan.all()
        if o["kind"] in ("StatefulSet", "Deployment")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert all(image.startswith("localhost/fraudpipe/") for image in images), images
    assert local.spec.kafka.managed.flavor == "kafka"
    assert env_of(apps.build_scorer_deployment(local))["REGISTRY_PLAIN_HTTP"] == "true"
    assert "REGISTRY_PLAIN_HTTP" not in env_of(apps.build_scorer_deployment(pipeline()))


def test_the_report_cronjob_runs_yesterdays_report_on_the_api_image_when_enabled() -> None:
    assert "CronJob" not in {o["kind"] for o in builders.plan(pipeline()).all()}
    p = builders.with_default_images(
        pipeline({"report": {"enabled": True, "prometheusUrl": "http://prom:9090"}}), IMAGES
    )
    (cron,) = [o for o in builders.plan(p).workloads if o["kind"] == "CronJob"]
    assert cron["metadata"]["name"] == "payments-report"
    assert cron["spec"]["schedule"] == "15 0 * * *"
    assert cron["spec"]["timeZone"] == "Etc/UTC"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    # A pod that never starts fails the run at its deadline rather than hold the CronJob.
    assert cron["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 3600
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    (container,) = pod["containers"]
    assert container["image"] == p.spec.api.image
    assert container["command"] == [
        "fraudpipe-api", "report", "--date", "yesterday", "--output", "json",
    ]  # fmt: skip
    env = {e["name"]: e for e in container["env"]}
    assert env["PROMETHEUS_URL"]["value"] == "http://prom:9090"
    assert env["PROMETHEUS_SELECTOR"]["value"] == 'namespace="fraud", service="payments-scorer"'
    assert "DATABASE_URL" in env
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_retention_cronjob_passes_only_the_days_it_is_given() -> None:
    p = builders.with_default_images(
        pipeline({"retention": {"enabled": True, "alertsDays": 90, "batchSize": 500}}), IMAGES
    )
    (cron,) = [
        o for o in builders.plan(p).workloads if o["metadata"]["name"] == "payments-retention"
    ]
    assert cron["kind"] == "CronJob"
    assert cron["spec"]["schedule"] == "30 1 * * *"  # after the daily report
    assert cron["spec"]["timeZone"] == "Etc/UTC"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == p.spec.api.image
    assert container["command"] == ["fraudpipe-api", "retention"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["RETENTION_ALERTS_DAYS"]["value"] == "90"
    assert env["RETENTION_BATCH_SIZE"]["value"] == "500"
    assert "RETENTION_FEEDBACK_DAYS" not in env  # absent: feedback is kept
    # The password comes from the Secret, never spelled out in the CronJob.
    assert "secretKeyRef" in env["POSTGRES_PASSWORD"]["valueFrom"]
    assert "$(POSTGRES_PASSWORD)@payments-postgres" in env["DATABASE_URL"]["value"]


def test_optional_jobs_and_workers_turned_off_are_planned_for_deletion() -> None:
    off = builders.plan(pipeline())
    assert off.turned_off == [
        ("CronJob", "payments-report"),
        ("CronJob", "payments-retention"),
        ("CronJob", "payments-backup"),
        ("Deployment", "payments-archive"),
        ("Deployment", "payments-notify"),
        ("Deployment", "payments-producer"),
    ]
    assert "CronJob" not in {o["kind"] for o in off.all()}
    assert "Deployment/payments-archive" not in kinds(off.all())
    on = builders.plan(
        pipeline(
            {
                "report": {"enabled": True},
                "retention": {"enabled": True, "feedbackDays": 7},
                "objectStore": OBJECT_STORE,
                "backup": {"enabled": True},
                "archive": {"enabled": True},
                "notify": {"enabled": True, "webhookUrlSecretRef": {"name": "hook", "key": "url"}},
                "producer": {"enabled": True},
            }
        )
    )
    assert on.turned_off == []
    assert {
        "CronJob/payments-report",
        "CronJob/payments-retention",
        "CronJob/payments-backup",
        "Deployment/payments-archive",
        "Deployment/payments-notify",
        "Deployment/payments-producer",
    } <= set(kinds(on.workloads))


def test_notifications_run_one_notifier_with_the_webhook_url_from_a_secret() -> None:
    assert "Deployment/payments-notify" not in kinds(builders.plan(pipeline()).all())
    p = builders.with_default_images(
        pipeline(
            {
                "notify": {
                    "enabled": True,
                    "webhookUrlSecretRef": {"name": "slack", "key": "url"},
                    "ratePerMinute": 12,
                }
            }
        ),
        IMAGES,
    )
    (notify,) = [
        o for o in builders.plan(p).workloads if o["metadata"]["name"] == "payments-notify"
    ]
    assert notify["spec"]["replicas"] == 1
    (container,) = notify["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["fraudpipe-api", "notify"]
    assert container["image"] == p.spec.api.image
    env = {e["name"]: e for e in container["env"]}
    assert env["NOTIFY_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"] == {"name": "slack", "key": "url"}
    assert env["NOTIFY_RATE_PER_MINUTE"]["value"] == "12"
    assert env["DECISIONS_TOPIC"]["value"] == p.spec.kafka.topics.decisions.name
    assert env["NOTIFY_CONSUMER_GROUP"]["value"] == "payments-notify"


def test_the_api_sees_its_clients_addresses_for_the_key_guessing_limit() -> None:
    """The API counts unknown keys per client address: an exposed Service keeps external
    clients' addresses (no source NAT), and proxies in front are named to the API."""
    internal = apps.build_api_service(pipeline())
    assert "externalTrafficPolicy" not in internal["spec"]
    exposed = apps.build_api_service(pipeline({"api": {"serviceType": "LoadBalancer"}}))
    assert exposed["spec"]["externalTrafficPolicy"] == "Local"
    # A NodePort reached on a node without an API pod would drop the connection under Local.
    node_port = apps.build_api_service(pipeline({"api": {"serviceType": "NodePort"}}))
    assert "externalTrafficPolicy" not in node_port["spec"]
    assert "API_TRUSTED_PROXIES" not in env_of(apps.build_api_deployment(pipeline()))
    behind = pipeline({"api": {"trustedProxies": ["10.0.0.0/8", "192.168.1.7"]}})
    assert env_of(apps.build_api_deployment(behind))["API_TRUSTED_PROXIES"] == (
        "10.0.0.0/8,192.168.1.7"
    )


def test_the_archiver_writes_to_the_object_store_with_credentials_from_its_secret() -> None:
    p = builders.with_default_images(
        pipeline(
            {
                "objectStore": OBJECT_STORE | {"region": "eu-west-1"},
                "archive": {"enabled": True, "labels": False, "maxRecords": 5000},
            }
        ),
        IMAGES,
    )
    (archive,) = [
        o for o in builders.plan(p).workloads if o["metadata"]["name"] == "payments-archive"
    ]
    assert archive["kind"] == "Deployment"
    assert archive["spec"]["replicas"] == 1
    # The old pod commits what it wrote before the new one reads: no overlap, no rebalance.
    assert archive["spec"]["strategy"] == {"type": "Recreate"}
    pod = archive["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == p.spec.api.image
    assert container["command"] == ["fraudpipe-api", "archive"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # No endpoint to probe: no fake liveness signal either.
    assert "livenessProbe" not in container
    assert "readinessProbe" not in container
    env = {e["name"]: e for e in container["env"]}
    assert env["ARCHIVE_URI"]["value"] == "s3://fraud-archive/payments"
    assert env["ARCHIVE_LABELS"]["value"] == "false"
    assert env["ARCHIVE_MAX_RECORDS"]["value"] == "5000"
    assert env["ARCHIVE_MAX_WAIT_S"]["value"] == "300"
    assert env["ARCHIVE_CONSUMER_GROUP"]["value"] == "payments-archive"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.storage:9000"
    assert env["AWS_REGION"]["value"] == "eu-west-1"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-credentials",
        "key": "AWS_ACCESS_KEY_ID",
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-credentials",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert env["DECISIONS_TOPIC"]["value"] == p.spec.kafka.topics.decisions.name


def test_the_archivers_pods_roll_when_the_object_store_changes() -> None:
    spec = {"objectStore": OBJECT_STORE, "archive": {"enabled": True}}
    moved = spec | {"objectStore": OBJECT_STORE | {"prefix": "payments-v2"}}

    def pod_checksum(overrides: dict[str, Any]) -> str:
        archive = object_store.build_archive_deployment(pipeline(overrides))
        return str(archive["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION])

    assert pod_checksum(spec) == pod_checksum(spec)
    assert pod_checksum(spec) != pod_checksum(moved)


def test_an_aws_object_store_sets_no_endpoint_and_reads_the_keys_it_is_told() -> None:
    aws = {
        "bucket": "fraud-archive",
        "credentialsSecretRef": {
            "name": "aws",
            "accessKeyIdKey": "id",
            "secretAccessKeyKey": "secret",
        },
    }
    archive = object_store.build_archive_deployment(
        pipeline({"objectStore": aws, "archive": {"enabled": True}})
    )
    env = env_of(archive)
    assert "AWS_ENDPOINT_URL" not in env
    assert env["ARCHIVE_URI"] == "s3://fraud-archive"  # no prefix: the bucket's root
    assert env["AWS_ACCESS_KEY_ID"]["secretKeyRef"] == {"name": "aws", "key": "id"}
    assert env["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"] == {"name": "aws", "key": "secret"}


def test_the_backup_cronjob_dumps_with_the_postgres_image_then_uploads_with_the_api_image() -> None:
    p = builders.with_default_images(
        pipeline({"objectStore": OBJECT_STORE, "backup": {"enabled": True, "keep": 14}}), IMAGES
    )
    (cron,) = [o for o in builders.plan(p).workloads if o["metadata"]["name"] == "payments-backup"]
    assert cron["kind"] == "CronJob"
    assert cron["spec"]["schedule"] == "0 2 * * *"
    assert cron["spec"]["timeZone"] == "Etc/UTC"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    conninfo, dump = pod["initContainers"]
    (upload,) = pod["containers"]
    for container in (conninfo, dump, upload):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The password reaches pg_dump in a service file on a memory volume, never in its
    # arguments (where `ps` on the node would show it).
    assert conninfo["image"] == p.spec.api.image
    service_file = conninfo["command"][-1]
    assert conninfo["command"] == ["fraudpipe-api", "pg-service", "--out", service_file]
    conninfo_env = {e["name"]: e for e in conninfo["env"]}
    assert "secretKeyRef" in conninfo_env["POSTGRES_PASSWORD"]["valueFrom"]
    (memory,) = [v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
    assert {"name": memory["name"], "mountPath": "/conninfo", "readOnly": True} in dump[
        "volumeMounts"
    ]
    # pg_dump of the managed server's own version, in its compressed custom format.
    assert dump["image"] == p.spec.postgres.managed.image
    assert dump["command"][:3] == ["pg_dump", "--format=custom", "--compress=6"]
    assert not any("DATABASE_URL" in a or "PASSWORD" in a for a in dump["command"])
    dump_env = {e["name"]: e for e in dump["env"]}
    assert dump_env["PGSERVICEFILE"]["value"] == service_file
    assert {"PGSERVICEFILE", "PGSERVICE"} == set(dump_env)  # no credentials of its own
    # The upload reads the file the dump wrote, through the volume they share.
    dump_file = next(a for a in dump["command"] if a.startswith("--file=")).split("=", 1)[1]
    assert upload["command"] == ["fraudpipe-api", "backup", "upload", dump_file]
    assert upload["image"] == p.spec.api.image
    (shared,) = [m for m in dump["volumeMounts"] if dump_file.startswith(m["mountPath"])]
    assert {"name": shared["name"], "mountPath": shared["mountPath"], "readOnly": True} in upload[
        "volumeMounts"
    ]
    assert {"name": shared["name"], "emptyDir": {}} in pod["volumes"]
    env = {e["name"]: e for e in upload["env"]}
    assert env["BACKUP_URI"]["value"] == "s3://fraud-archive/payments/backups/postgres"
    assert env["BACKUP_NAME"]["value"] == "payments"
    assert env["BACKUP_KEEP"]["value"] == "14"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3-credentials"
    assert "DATABASE_URL" not in env


def test_backups_of_an_external_database_read_its_url_with_the_pg_dump_image_given() -> None:
    cron = object_store.build_backup_cronjob(
        pipeline(
            {
                "postgres": {
                    "mode": "external",
                    "dsnSecretRef": {"name": "pg", "key": "url"},
                },
                "objectStore": OBJECT_STORE,
                "backup": {"enabled": True, "image": "postgres:17.2"},
            }
        )
    )
    conninfo, dump = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"]
    assert dump["image"] == "postgres:17.2"
    env = {e["name"]: e for e in conninfo["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "url"}


def test_avro_pipelines_tell_every_client_the_format_and_the_registry() -> None:
    json_pipeline = builders.plan(pipeline())
    assert "TRANSACTIONS_FORMAT" not in env_of(find(json_pipeline, "Deployment/payments-scorer"))
    avro = {"topics": {"transactions": {"format": "avro"}}}
    own = builders.plan(pipeline({"kafka": avro}))
    for name in ("Deployment/payments-scorer", "Deployment/payments-api"):
        env = env_of(find(own, name))
        assert env["TRANSACTIONS_FORMAT"] == "avro"
        assert env["SCHEMA_REGISTRY_URL"] == "http://payments-kafka.fraud.svc:8081"  # Redpanda's
    broker = find(own, "StatefulSet/payments-kafka")["spec"]["template"]["spec"]["containers"][0]
    assert "--schema-registry-addr=0.0.0.0:8081" in broker["args"]
    assert {"name": "schema-registry", "containerPort": 8081} in broker["ports"]
    policy = find(own, "NetworkPolicy/payments-kafka")
    assert {"protocol": "TCP", "port": 8081} in policy["spec"]["ingress"][0]["ports"]
    elsewhere = {**avro, "schemaRegistry": {"url": "http://apicurio:8080/apis/ccompat/v7"}}
    external = builders.plan(pipeline({"kafka": elsewhere}))
    env = env_of(find(external, "Deployment/payments-scorer"))
    assert env["SCHEMA_REGISTRY_URL"] == "http://apicurio:8080/apis/ccompat/v7"
    broker = find(external, "StatefulSet/payments-kafka")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert not any("schema-registry" in a for a in broker["args"])  # JSON brokers unchanged


def find(result: builders.Plan, name: str) -> dict[str, Any]:
    return next(o for o in result.all() if f"{o['kind']}/{o['metadata']['name']}" == name)


def test_the_lifecycle_example_archives_backs_up_keeps_and_speaks_avro() -> None:
    result = builders.plan(example("lifecycle.yaml"))
    names = set(kinds(result.all()))
    assert {
        "Deployment/payments-archive",
        "CronJob/payments-backup",
        "CronJob/payments-retention",
    } <= names
    archive = env_of(find(result, "Deployment/payments-archive"))
    assert archive["ARCHIVE_URI"] == "s3://fraud-data/payments"
    assert archive["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"] == {
        "name": "payments-s3",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert env_of(find(result, "Deployment/payments-scorer"))["TRANSACTIONS_FORMAT"] == "avro"
