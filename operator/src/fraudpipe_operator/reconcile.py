"""One reconciliation of a FraudPipeline: apply what the builders return, in order, and observe.

Order: credentials (create-if-absent) → stores, Services, policies → topics → migrations Job →
(once migrated) scorer, API, producer, scheduled jobs (deleted when turned off) → monitoring
(when Prometheus Operator is there). Every step is idempotent; running it twice, or
concurrently, converges to the same objects.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fraudpipe_operator import builders
from fraudpipe_operator.autoscaling.scaler import Autoscaler
from fraudpipe_operator.builders import apps
from fraudpipe_operator.builders.common import COMPONENT_LABEL, PIPELINE_LABEL, child_name
from fraudpipe_operator.builders.connections import (
    kafka_bootstrap_servers,
    kafka_security_protocol,
)
from fraudpipe_operator.canary.machine import stable_ref
from fraudpipe_operator.conditions import ConditionType, Observation, Reason, summarize
from fraudpipe_operator.config import OperatorConfig
from fraudpipe_operator.kube import Kube, KubeError
from fraudpipe_operator.models import FraudPipeline
from fraudpipe_operator.models.v1alpha1 import CanaryStatus, FraudPipelineStatus, rollout_status
from fraudpipe_operator.topics import KafkaConnection, reconcile_topics

C, R = ConditionType, Reason


@dataclass(frozen=True)
class Outcome:
    phase: str
    conditions: list[Observation]
    consumer_lag: int | None
    scorer_replicas: int
    scorer_selector: str
    model: str
    scheduled_runs: list[ScheduledRun] = field(default_factory=list)


@dataclass(frozen=True)
class ScheduledRun:
    """What one of the pipeline's CronJobs says of its last scheduled run."""

    component: str  # report, retention or backup
    last_scheduled: dt.datetime | None
    last_succeeded: dt.datetime | None  # the controller writes a successful run's completion
    running: bool

    @property
    def failed(self) -> bool:
        """A run was scheduled after the last success (or none ever succeeded) and is no longer
        active: it ran out of retries or past its deadline (a pod that never starts, say an
        image that cannot be pulled, meets the deadline). A run still retrying is active."""
        if self.last_scheduled is None or self.running:
            return False
        return self.last_succeeded is None or self.last_succeeded < self.last_scheduled


# -- pure observations ----------------------------------------------------------------------
def workload_ready(obj: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a Deployment or StatefulSet has rolled out and every replica is ready."""
    if obj is None:
        return False, "not created yet"
    want = int(obj.get("spec", {}).get("replicas", 1))
    status = obj.get("status", {})
    generation = int(obj.get("metadata", {}).get("generation", 0))
    if int(status.get("observedGeneration", 0)) < generation:
        return False, "rollout not observed yet"
    ready = int(status.get("readyReplicas", 0))
    updated = int(status.get("updatedReplicas", 0))
    total = int(status.get("replicas", 0))
    if ready >= want and updated >= want and total == want:
        return True, f"{ready}/{want} replicas ready"
    return False, f"{ready}/{want} replicas ready, {updated} updated"


def workload_observation(kind: ConditionType, obj: dict[str, Any] | None) -> Observation:
    ok, message = workload_ready(obj)
    if ok and obj is not None and int(obj["spec"].get("replicas", 1)) == 0:
        return Observation(kind, True, R.SCALED_TO_ZERO, "scaled to zero replicas")
    return Observation(kind, ok, R.REPLICAS_READY if ok else R.REPLICAS_NOT_READY, message)


def job_observation(job: dict[str, Any] | None) -> Observation:
    kind = C.MIGRATIONS_COMPLETE
    if job is None:
        return Observation(kind, False, R.MIGRATIONS_RUNNING, "migrations Job not created yet")
    status = job.get("status", {})
    name = job["metadata"]["name"]
    if int(status.get("succeeded", 0)) >= 1:
        return Observation(kind, True, R.MIGRATIONS_APPLIED, f"Job {name} succeeded")
    for condition in status.get("conditions", []):
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return Observation(
                kind,
                False,
                R.MIGRATIONS_FAILED,
                f"Job {name} failed: {condition.get('message', '')}; see its pod logs",
            )
    return Observation(kind, False, R.MIGRATIONS_RUNNING, f"Job {name} is running")


def canary_observations(canary: CanaryStatus | None) -> list[Observation]:
    """CanaryHealthy while a rollout runs or after one finished; none without one."""
    if canary is None:
        return []
    reason = {
        "Failed": R.CANARY_FAILED,
        "Invalid": R.CANDIDATE_INVALID,
        "Promoted": R.CANARY_PROMOTED,
    }.get(canary.phase, R.CANARY_PROGRESSING)
    ok = reason not in (R.CANARY_FAILED, R.CANDIDATE_INVALID)
    return [Observation(C.CANARY_HEALTHY, ok, reason, canary.message or canary.phase)]


def _timestamp(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) and value else None


def scheduled_run(component: str, cronjob: dict[str, Any]) -> ScheduledRun:
    status = cronjob.get("status") or {}
    return ScheduledRun(
        component,
        _timestamp(status.get("lastScheduleTime")),
        _timestamp(status.get("lastSuccessfulTime")),
        bool(status.get("active")),
    )


def scheduled_jobs_observation(runs: list[ScheduledRun]) -> list[Observation]:
    """ScheduledJobsSucceeding while the pipeline has CronJobs; none without."""
    if not runs:
        return []
    kind = C.SCHEDULED_JOBS_SUCCEEDING
    failed = [run for run in runs if run.failed]
    if not failed:
        names = ", ".join(run.component for run in runs)
        return [Observation(kind, True, R.LAST_RUNS_SUCCEEDED, f"{names}: no failed run")]

    def said(run: ScheduledRun) -> str:
        assert run.last_scheduled is not None
        since = (
            f"last success {run.last_succeeded:%Y-%m-%dT%H:%M:%SZ}"
            if run.last_succeeded
            else "no run has succeeded yet"
        )
        return (
            f"{run.component}: the run scheduled at {run.last_scheduled:%Y-%m-%dT%H:%M:%SZ} "
            f"failed ({since})"
        )

    message = "; ".join(said(run) for run in failed) + "; see the logs of its Job's pods"
    return [Observation(kind, False, R.SCHEDULED_RUN_FAILED, message)]


def short_model(ref: str) -> str:
    repository, _, digest = ref.partition("@")
    return f"{repository.rsplit('/', 1)[-1]}@{digest[:19]}"


async def remove_turned_off(
    kube: Kube, pipeline: FraudPipeline, children: list[tuple[str, str]]
) -> list[str]:
    """Deletes the children of parts turned off, if this pipeline owns them (an object of the
    same name that someone else made is not ours to delete); returns the errors, one per child
    that could not be checked or deleted (the others are still tried)."""
    errors = []
    for kind, name in children:
        try:
            found = await kube.get(kind, pipeline.namespace, name)
            owners = (found or {}).get("metadata", {}).get("ownerReferences", [])
            if any(owner.get("uid") == pipeline.uid for owner in owners):
                await kube.delete(kind, pipeline.namespace, name)
        except KubeError as error:
            errors.append(f"{kind}/{name}: {error}")
    return errors


# -- the reconcile ---------------------------------------------------------------------------
class Reconciler:
    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config
        self.autoscaler = Autoscaler(kube, self._kafka_connection, config.topic_timeout_seconds)

    async def reconcile(self, raw: FraudPipeline) -> Outcome:
        pipeline = builders.with_default_images(
            await self._current_rollout(raw), self.config.images
        )
        plan = builders.plan(pipeline, self.config.operator_pods)
        observations: list[Observation] = []
        errors: list[str] = []

        async def apply_all(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
            applied = {}
            for obj in objects:
                try:
                    applied[f"{obj['kind']}/{obj['metadata']['name']}"] = await self.kube.apply(obj)
                except KubeError as error:
                    errors.append(str(error))
            return applied

        for secret in builders.credential_secrets(pipeline, lambda: secrets.token_hex(24)):
            try:
                await self.kube.create_if_absent(secret)
            except KubeError as error:
                errors.append(str(error))

        applied = await apply_all(plan.foundation)
        spec = pipeline.spec

        def statefulset(component: str) -> dict[str, Any] | None:
            return applied.get(f"StatefulSet/{child_name(pipeline, component)}")

        for kind, component, mode in (
            (C.KAFKA_READY, "kafka", spec.kafka.mode),
            (C.REDIS_READY, "redis", spec.redis.mode),
            (C.POSTGRES_READY, "postgres", spec.postgres.mode),
        ):
            if mode == "external":
                observations.append(Observation(kind, True, R.EXTERNAL, "external, not managed"))
            else:
                observations.append(workload_observation(kind, statefulset(component)))

        topics_observation, lag = await self._topics(pipeline)
        observations.append(topics_observation)

        # Migrations run once PostgreSQL answers, and the services start once they are done.
        postgres_ready = next(o for o in observations if o.type is C.POSTGRES_READY).ok
        if postgres_ready:
            migrations = await apply_all(plan.migrations)
            migrated = job_observation(migrations.get(f"Job/{apps.migrations_job_name(pipeline)}"))
        else:
            migrated = Observation(
                C.MIGRATIONS_COMPLETE, False, R.WAITING_FOR_DEPENDENCIES, "waits for PostgreSQL"
            )
        observations.append(migrated)

        workloads = {
            C.SCORER_READY: child_name(pipeline, "scorer"),
            C.API_READY: child_name(pipeline, "api"),
        }
        for kind, component, enabled in (
            (C.PRODUCER_READY, "producer", spec.producer.enabled),
            (C.ARCHIVE_READY, "archive", spec.archive.enabled),
            (C.NOTIFY_READY, "notify", spec.notify.enabled),
        ):
            if enabled:
                workloads[kind] = child_name(pipeline, component)
        scorer_replicas = 0
        scheduled: list[ScheduledRun] = []
        if migrated.ok:
            try:
                await self.autoscaler.take_over_replicas(pipeline)
            except KubeError as error:
                errors.append(str(error))
            deployed = await apply_all(plan.workloads)
            for kind, name in workloads.items():
                observations.append(workload_observation(kind, deployed.get(f"Deployment/{name}")))
            scorer = deployed.get(f"Deployment/{workloads[C.SCORER_READY]}") or {}
            scorer_replicas = int(scorer.get("status", {}).get("replicas", 0))
            # A CronJob whose apply failed says nothing this round (the apply error does).
            scheduled = [
                scheduled_run(obj["metadata"]["labels"][COMPONENT_LABEL], applied_cronjob)
                for obj in plan.workloads
                if obj["kind"] == "CronJob"
                and (applied_cronjob := deployed.get(f"CronJob/{obj['metadata']['name']}"))
            ]
            observations += scheduled_jobs_observation(scheduled)
        else:
            for kind in workloads:
                observations.append(
                    Observation(
                        kind, False, R.WAITING_FOR_DEPENDENCIES, "waits for the migrations Job"
                    )
                )
        # Whatever the migrations do: a part turned off (say retention, to hold data) must stop
        # at once, not once a new image's migrations Job has run.
        errors += await remove_turned_off(self.kube, pipeline, plan.turned_off)

        try:
            observations.append(await self.autoscaler.reconcile_engine(pipeline))
        except KubeError as error:
            errors.append(str(error))
        observations.append(await self._monitoring(pipeline, plan.monitoring, apply_all))
        observations += canary_observations(pipeline.status.canary)
        if errors:
            observations.append(
                Observation(C.DEGRADED, False, R.APPLY_FAILED, "; ".join(errors)[:2000])
            )
        phase, summary = summarize(observations)
        components = [o for o in observations if o.type is not C.DEGRADED]
        return Outcome(
            phase=phase,
            conditions=summary + components,
            consumer_lag=lag,
            scorer_replicas=scorer_replicas,
            scorer_selector=f"{PIPELINE_LABEL}={pipeline.name},{COMPONENT_LABEL}=scorer",
            model=short_model(stable_ref(spec.model, pipeline.status.promoted)),
            scheduled_runs=scheduled,
        )

    async def _current_rollout(self, pipeline: FraudPipeline) -> FraudPipeline:
        """The pipeline with the canary state as stored now: the canary driver may have
        moved it since this body was read, and the scorer Deployment is built from it."""
        try:
            body = await self.kube.get("FraudPipeline", pipeline.namespace, pipeline.name)
        except KubeError:
            return pipeline
        if body is None:
            return pipeline
        status = FraudPipelineStatus.model_validate(rollout_status(body.get("status")))
        return pipeline.model_copy(update={"status": status})

    async def _monitoring(
        self,
        pipeline: FraudPipeline,
        objects: list[dict[str, Any]],
        apply_all: Callable[[list[dict[str, Any]]], Awaitable[dict[str, dict[str, Any]]]],
    ) -> Observation:
        kind = C.MONITORING_READY
        if not objects:
            return Observation(kind, True, R.DISABLED, "monitoring disabled in the spec")
        api = "monitoring.coreos.com/v1"
        needed = {o["kind"] for o in objects}
        plural = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}
        missing = [k for k in sorted(needed) if not await self.kube.serves(api, plural[k])]
        if missing:
            return Observation(
                kind,
                False,
                R.PROMETHEUS_OPERATOR_MISSING,
                f"the cluster does not serve {', '.join(missing)} ({api}): install the "
                "Prometheus Operator CRDs, or turn spec.monitoring off to silence this",
            )
        await apply_all(objects)
        return Observation(kind, True, R.MONITORING_CONFIGURED, f"{', '.join(sorted(needed))}")

    async def _topics(self, pipeline: FraudPipeline) -> tuple[Observation, int | None]:
        kind = C.TOPICS_READY
        topics = pipeline.spec.kafka.topics
        desired = [topics.transactions, topics.decisions, topics.dlq, topics.labels]
        try:
            connection = await self._kafka_connection(pipeline)
            result = await asyncio.wait_for(
                reconcile_topics(
                    connection,
                    desired,
                    pipeline.spec.scorer.consumer_group,
                    topics.transactions.name,
                ),
                self.config.topic_timeout_seconds,
            )
        except (TimeoutError, OSError, KubeError) as error:
            return Observation(kind, False, R.BROKER_UNREACHABLE, _describe(error)), None
        except Exception as error:  # aiokafka raises its own hierarchy for broker problems
            if type(error).__module__.startswith("aiokafka"):
                return Observation(kind, False, R.BROKER_UNREACHABLE, _describe(error)), None
            raise
        if result.plan.problems:
            first = result.plan.problems[0]
            message = " ".join(p.message for p in result.plan.problems)
            return Observation(kind, False, first.reason, message), result.consumer_lag
        return (
            Observation(kind, True, R.TOPICS_RECONCILED, ", ".join(t.name for t in desired)),
            result.consumer_lag,
        )

    async def _kafka_connection(self, pipeline: FraudPipeline) -> KafkaConnection:
        kafka = pipeline.spec.kafka
        bootstrap = kafka_bootstrap_servers(pipeline)
        if kafka.mode == "managed" and self.config.kafka_bootstrap_override:
            bootstrap = self.config.kafka_bootstrap_override
        protocol = kafka_security_protocol(pipeline)
        external = kafka.external if kafka.mode == "external" else None
        username = password = ca = None
        mechanism = None
        if external is not None and external.sasl is not None:
            mechanism = external.sasl.mechanism
            data = await self._secret_data(pipeline.namespace, external.sasl.secret_name)
            username, password = data.get("username"), data.get("password")
        if external is not None and external.tls.enabled and external.tls.ca_secret_ref:
            ref = external.tls.ca_secret_ref
            ca = (await self._secret_data(pipeline.namespace, ref.name)).get(ref.key)
        return KafkaConnection(bootstrap, protocol, mechanism, username, password, ca)

    async def _secret_data(self, namespace: str, name: str) -> dict[str, str]:
        secret = await self.kube.get("Secret", namespace, name)
        if secret is None:
            raise KubeError(404, f"Secret {namespace}/{name} not found")
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"cannot reach the Kafka brokers: {text}"
