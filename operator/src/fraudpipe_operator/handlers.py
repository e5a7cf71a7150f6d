"""kopf entry points: thin, typed, each handing off to the Reconciler.

A FraudPipeline is reconciled when it appears, when its spec changes, when the operator
starts, and every `reconcile_interval_seconds` (which restores deleted or edited children).
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

import kopf
from prometheus_client import start_http_server

from fraudpipe_operator import conditions, metrics
from fraudpipe_operator.config import OperatorConfig
from fraudpipe_operator.kube import Kube
from fraudpipe_operator.models import GROUP, PLURAL, VERSION, FraudPipeline
from fraudpipe_operator.reconcile import Outcome, Reconciler

CONFIG = OperatorConfig()
RESOURCE = (GROUP, VERSION, PLURAL)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's bookkeeping lives in annotations under our prefix, never in the user's status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Timers need a finalizer to be stopped cleanly; name it after us, not after kopf.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Events are for transitions (posted explicitly), not for every log line.
    settings.posting.level = logging.WARNING
    # Re-establish watches regularly: a silently dead watch would stop all reconciliation.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    memo.kube = Kube(await _login(settings))
    memo.reconciler = Reconciler(memo.kube, CONFIG)
    start_http_server(CONFIG.metrics_port)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    if "kube" in memo:
        await memo.kube.close()


async def _login(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise kopf.PermanentError(
            "no Kubernetes credentials: mount a service account or set KUBECONFIG"
        )
    return info


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    """The same credentials for kopf's watches as for our own client."""
    return kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )


async def _reconcile(
    trigger: str,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
) -> None:
    started = time.monotonic()
    pipeline = FraudPipeline.from_body(body)
    try:
        outcome: Outcome = await memo.reconciler.reconcile(pipeline)
    except Exception as error:
        metrics.RECONCILE_ERRORS.labels(trigger, type(error).__name__).inc()
        metrics.RECONCILES.labels(trigger, "error").inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.labels(trigger).observe(time.monotonic() - started)
    metrics.RECONCILES.labels(trigger, outcome.phase).inc()
    metrics.PIPELINE_READY.labels(pipeline.namespace, pipeline.name).set(
        1 if outcome.phase == "Ready" else 0
    )
    write_status(body, patch, outcome, pipeline.generation, logger)


def write_status(
    body: kopf.Body, patch: kopf.Patch, outcome: Outcome, generation: int, logger: kopf.Logger
) -> None:
    """Patch only the status fields that changed; post an Event for every condition flip."""
    current = dict(body.get("status") or {})
    previous_conditions = list(current.get("conditions") or [])
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    merged = conditions.merge(previous_conditions, outcome.conditions, generation, now)
    desired: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": outcome.phase,
        "conditions": merged,
        "model": outcome.model,
        "scorerReplicas": outcome.scorer_replicas,
        "scorerSelector": outcome.scorer_selector,
    }
    if outcome.consumer_lag is not None:
        desired["consumerLag"] = outcome.consumer_lag
    for key, value in desired.items():
        if current.get(key) != value:
            patch.status[key] = value
    before = {c.get("type"): c.get("status") for c in previous_conditions}
    for flipped in conditions.flips(previous_conditions, merged):
        good = flipped["status"] == "True"
        if flipped["type"] == conditions.ConditionType.DEGRADED.value:
            good = not good
        # A loss is a Warning; a component still coming up for the first time is not.
        lost = not good and flipped["type"] in before
        message = (
            f"{flipped['type']}={flipped['status']}: {flipped['reason']}: {flipped['message']}"
        )
        kopf.event(
            body,
            type="Warning" if lost else "Normal",
            reason=flipped["type"] + ("" if good else "Lost" if lost else "Pending"),
            message=message[:1000],
        )
        logger.info(message)


@kopf.on.resume(*RESOURCE, backoff=10)
async def fraudpipeline_resume(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    await _reconcile("resume", body, patch, memo, logger)


@kopf.on.create(*RESOURCE, backoff=10)
async def fraudpipeline_create(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    await _reconcile("create", body, patch, memo, logger)


@kopf.on.update(*RESOURCE, field="spec", backoff=10)
async def fraudpipeline_update(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    await _reconcile("update", body, patch, memo, logger)


@kopf.timer(*RESOURCE, interval=CONFIG.reconcile_interval_seconds, initial_delay=5)
async def fraudpipeline_drift(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    await _reconcile("timer", body, patch, memo, logger)
