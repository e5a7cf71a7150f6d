"""kopf entry points: thin, typed, each handing off to the Reconciler.

Each FraudPipeline has a daemon that reconciles it every `progressing_interval_seconds` until
it is Ready and every `reconcile_interval_seconds` after (which restores deleted or edited
children); a spec change is reconciled at once by the update handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from typing import Any

import kopf
from prometheus_client import start_http_server

from fraudpipe_operator import conditions, metrics
from fraudpipe_operator.canary.driver import CanaryDriver
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
    # Daemons need a finalizer to be stopped cleanly; name it after us, not after kopf.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Events are for transitions (posted explicitly), not for every log line.
    settings.posting.level = logging.WARNING
    # Re-establish watches regularly: a silently dead watch would stop all reconciliation.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # A timer caught mid-round when its pipeline is deleted holds the finalizer until kopf
    # looks again: after 2 s rather than kopf's 60 (the autoscaler's round is that short).
    settings.background.cancellation_polling = 2
    # httpx logs every request at INFO: that is our own client, far too chatty for a log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    memo.kube = Kube(await _login(settings))
    memo.reconciler = Reconciler(memo.kube, CONFIG)
    memo.canary = CanaryDriver(memo.kube)
    start_http_server(CONFIG.metrics_port)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    if "canary" in memo:
        await memo.canary.close()
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


async def _reconcile(trigger: str, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger) -> str:
    """Reconcile once, write the status if it changed; returns the phase."""
    started = time.monotonic()
    pipeline = FraudPipeline.from_body(body)
    try:
        outcome: Outcome = await memo.reconciler.reconcile(pipeline)
        await write_status(memo.kube, body, outcome, pipeline.generation, logger)
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
    report_scheduled_runs(pipeline, outcome)
    return outcome.phase


def report_scheduled_runs(pipeline: FraudPipeline, outcome: Outcome) -> None:
    """The scheduled jobs' gauges. A job turned off has none; one not observed this time (its
    CronJob waits for a migrations Job) keeps what was last seen."""
    runs = {run.component: run for run in outcome.scheduled_runs}
    spec = pipeline.spec
    enabled = {
        "report": spec.report.enabled,
        "retention": spec.retention.enabled,
        "backup": spec.backup.enabled,
    }
    for job, on in enabled.items():
        labels = (pipeline.namespace, pipeline.name, job)
        run = runs.get(job)
        if run is None:
            if not on:
                for gauge in (metrics.SCHEDULED_JOB_FAILED, metrics.SCHEDULED_JOB_LAST_SUCCESS):
                    # prometheus-client before 0.22 raises for labels it never had.
                    with contextlib.suppress(KeyError):
                        gauge.remove(*labels)
            continue
        metrics.SCHEDULED_JOB_FAILED.labels(*labels).set(1 if run.failed else 0)
        if run.last_succeeded is not None:
            metrics.SCHEDULED_JOB_LAST_SUCCESS.labels(*labels).set(run.last_succeeded.timestamp())


async def write_status(
    kube: Kube, body: kopf.Body, outcome: Outcome, generation: int, logger: kopf.Logger
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
    if not _autoscaled(dict(body.get("spec") or {})):
        desired["autoscaling"] = None  # the autoscaler's last report goes with it
    changed = {key: value for key, value in desired.items() if current.get(key) != value}
    if not changed:
        return
    meta = body["metadata"]
    await kube.patch_status(f"{GROUP}/{VERSION}", PLURAL, meta["namespace"], meta["name"], changed)
    before = {c.get("type"): c.get("status") for c in previous_conditions}
    for flipped in conditions.flips(previous_conditions, merged):
        kind, status = flipped["type"], flipped["status"]
        good = (status == "True") != (kind == conditions.ConditionType.DEGRADED.value)
        # A loss is a Warning; a component still coming up for the first time is not.
        warning = not good and (
            kind in before
            or kind == conditions.ConditionType.DEGRADED.value
            or kind in conditions.WARN_WHEN_FIRST_FALSE
        )
        message = f"{kind}={status}: {flipped['reason']}: {flipped['message']}"
        kopf.event(
            body,
            type="Warning" if warning else "Normal",
            reason=kind if status == "True" else f"Not{kind}",
            message=message[:1000],
        )
        logger.info(message)


@kopf.daemon(*RESOURCE, cancellation_timeout=10)
async def fraudpipeline_daemon(
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Reconciles from the moment the pipeline is seen (created, or found at start-up) until
    it is deleted: quickly while it comes up, then as a drift check."""
    while not stopped:
        try:
            phase = await _reconcile("daemon", body, memo, logger)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # keep watching: the next round may well succeed
            logger.exception(f"reconcile failed: {error}")
            phase = "Error"
        ready = phase == "Ready"
        await stopped.wait(
            CONFIG.reconcile_interval_seconds if ready else CONFIG.progressing_interval_seconds
        )


@kopf.daemon(*RESOURCE, id="canary", cancellation_timeout=10)
async def fraudpipeline_canary(
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Drives the canary rollout (docs/canary.md): every second while one runs. A phase change
    reconciles at once, so the scorer Deployment loads or drops the candidate and the
    conditions follow without waiting for the drift check."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    while not stopped:
        delay = 5.0
        try:
            tick = await memo.canary.tick(namespace, name)
            delay = tick.next_tick_s
            for event in tick.events:
                kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1000])
                logger.info(f"canary: {event.reason}: {event.message}")
            if tick.phase_changed:
                fresh = await memo.kube.get("FraudPipeline", namespace, name)
                if fresh is not None:
                    await _reconcile("canary", fresh, memo, logger)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # keep driving: the next tick may well succeed
            logger.exception(f"canary tick failed: {error}")
        await stopped.wait(delay)


def _autoscaled(spec: Any, **_: Any) -> bool:
    return bool(spec.get("scorer", {}).get("autoscaling", {}).get("enabled"))


@kopf.timer(*RESOURCE, interval=CONFIG.autoscaling_interval_seconds, when=_autoscaled)
async def fraudpipeline_autoscale(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """The builtin engine's round: read the lag, scale the scorer, report (docs/operator.md)."""
    pipeline = FraudPipeline.from_body(body)
    previous = dict((body.get("status") or {}).get("autoscaling") or {})
    tick = await memo.reconciler.autoscaler.tick(pipeline, previous)
    if {k: v for k, v in tick.status.items() if v is not None} != previous:
        meta = body["metadata"]
        await memo.kube.patch_status(
            f"{GROUP}/{VERSION}",
            PLURAL,
            meta["namespace"],
            meta["name"],
            {"autoscaling": tick.status},
        )
    if tick.event is not None:
        kind, reason, message = tick.event
        kopf.event(body, type=kind, reason=reason, message=message[:1000])
        logger.info(f"autoscaling: {reason}: {message}")


@kopf.on.update(*RESOURCE, field="spec", backoff=5)
async def fraudpipeline_update(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """A spec change is applied at once rather than at the daemon's next round."""
    await _reconcile("update", body, memo, logger)
