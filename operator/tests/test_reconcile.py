"""What the reconciler derives from children's status, and which children it removes."""

from __future__ import annotations

from typing import Any

from fraudpipe_operator.conditions import ConditionType, Reason
from fraudpipe_operator.kube import KubeError
from fraudpipe_operator.reconcile import (
    job_observation,
    remove_turned_off,
    scheduled_jobs_observation,
    scheduled_run,
    short_model,
    workload_observation,
    workload_ready,
)

from .pipelines import pipeline


def workload(replicas: int, ready: int, updated: int, total: int, observed: int = 2) -> Any:
    return {
        "metadata": {"generation": 2},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "replicas": total,
        },
    }


def test_a_workload_is_ready_only_when_rolled_out_and_every_replica_is_ready() -> None:
    assert workload_ready(workload(2, 2, 2, 2)) == (True, "2/2 replicas ready")
    assert not workload_ready(workload(2, 1, 2, 2))[0]
    assert not workload_ready(workload(2, 2, 1, 3))[0]  # an old replica is still around
    assert workload_ready(workload(2, 2, 2, 2, observed=1)) == (False, "rollout not observed yet")
    assert workload_ready(None) == (False, "not created yet")


def test_scaled_to_zero_is_ready_with_its_own_reason() -> None:
    observation = workload_observation(ConditionType.SCORER_READY, workload(0, 0, 0, 0))
    assert observation.ok
    assert observation.reason is Reason.SCALED_TO_ZERO


def test_migration_job_states() -> None:
    job: dict[str, Any] = {"metadata": {"name": "p-migrate-1"}, "status": {}}
    assert job_observation(job).reason is Reason.MIGRATIONS_RUNNING
    job["status"] = {"succeeded": 1}
    assert job_observation(job).ok
    job["status"] = {"conditions": [{"type": "Failed", "status": "True", "message": "limit"}]}
    failed = job_observation(job)
    assert failed.reason is Reason.MIGRATIONS_FAILED
    assert "limit" in failed.message


def cronjob(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p-backup"}, "status": status}


def test_a_scheduled_run_failed_only_once_out_of_retries_with_no_success_since() -> None:
    never = scheduled_run("backup", cronjob())
    assert not never.failed  # not due yet
    running = scheduled_run("backup", cronjob(lastScheduleTime="2026-12-05T02:00:00Z", active=[{}]))
    assert not running.failed  # a run still retrying is active
    done = scheduled_run(
        "backup",
        cronjob(lastScheduleTime="2026-12-05T02:00:00Z", lastSuccessfulTime="2026-12-05T02:00:41Z"),
    )
    assert not done.failed  # the controller writes a success's completion, after its schedule
    failed = scheduled_run(
        "backup",
        cronjob(lastScheduleTime="2026-12-05T02:00:00Z", lastSuccessfulTime="2026-12-04T02:00:37Z"),
    )
    assert failed.failed
    assert scheduled_run("report", cronjob(lastScheduleTime="2026-12-05T00:15:00Z")).failed


def test_scheduled_jobs_condition_names_each_failed_run_and_is_absent_without_cronjobs() -> None:
    assert scheduled_jobs_observation([]) == []
    ok = scheduled_run("retention", cronjob(lastScheduleTime="2026-12-05T01:30:00Z", active=[{}]))
    failed = scheduled_run(
        "backup",
        cronjob(lastScheduleTime="2026-12-05T02:00:00Z", lastSuccessfulTime="2026-12-04T02:00:37Z"),
    )
    (healthy,) = scheduled_jobs_observation([ok])
    assert (healthy.type, healthy.ok, healthy.reason) == (
        ConditionType.SCHEDULED_JOBS_SUCCEEDING,
        True,
        Reason.LAST_RUNS_SUCCEEDED,
    )
    (unhealthy,) = scheduled_jobs_observation([ok, failed])
    assert (unhealthy.ok, unhealthy.reason) == (False, Reason.SCHEDULED_RUN_FAILED)
    assert unhealthy.message.startswith(
        "backup: the run scheduled at 2026-12-05T02:00:00Z failed (last success "
        "2026-12-04T02:00:37Z)"
    ), unhealthy.message
    assert "retention" not in unhealthy.message


def test_model_column_is_repository_and_short_digest() -> None:
    ref = "registry.example.com/fraudpipe/models/gbt@sha256:" + "0123456789" * 6 + "abcd"
    assert short_model(ref) == "gbt@sha256:012345678901"


class Children:
    """The few calls of Kube that remove_turned_off makes, over a dict of objects."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if name.endswith("-forbidden"):
            raise KubeError(403, f"{kind} {name} is forbidden")
        return self.objects.get(f"{kind}/{namespace}/{name}")

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        return self.objects.pop(f"{kind}/{namespace}/{name}", None) is not None


def owned_by(uid: str) -> dict[str, Any]:
    return {"metadata": {"ownerReferences": [{"kind": "FraudPipeline", "uid": uid}]}}


async def test_a_scheduled_job_turned_off_is_deleted_only_when_this_pipeline_owns_it() -> None:
    kube = Children(
        {
            "CronJob/fraud/payments-retention": owned_by("uid-1"),
            "CronJob/fraud/payments-report": owned_by("someone-else"),
        }
    )
    turned_off = [
        ("Deployment", "payments-forbidden"),  # an error, and the others are still tried
        ("CronJob", "payments-retention"),
        ("CronJob", "payments-report"),
        ("CronJob", "payments-never-created"),
    ]
    errors = await remove_turned_off(kube, pipeline(), turned_off)  # type: ignore[arg-type]
    assert errors == [
        "Deployment/payments-forbidden: HTTP 403: Deployment payments-forbidden is forbidden"
    ]
    assert list(kube.objects) == ["CronJob/fraud/payments-report"]
