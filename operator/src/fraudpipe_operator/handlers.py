"""kopf entry points: thin, typed, each handing off to the Reconciler.

Each FraudPipeline has a daemon that reconciles it every `progressing_interval_seconds` until
it is Ready and every `reconcile_interval_seconds` after (which restores deleted or edited
children); a spec change is reconciled at once by the update handler.
"""

from __future__ import annotations

import asyncio
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
    # Daemons need a finalizer to be stopped cleanly; name it after us, not after kopf.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Events are for transitions (posted explicitly), not for every log line.
    settings.posting.level = logging.WARNING
    # Re-establish watches regularly: a silently dead watch would stop all reconciliation.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # httpx logs every request at INFO: that is our own client, far too chatty for a log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
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
    return outcome.phase


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
        warning = not good and (kind in before or kind == conditions.ConditionType.DEGRADED.value)
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


@kopf.on.update(*RESOURCE, field="spec", backoff=5)
async def fraudpipeline_update(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """A spec change is applied at once rather than at the daemon's next round."""
    await _reconcile("update", body, memo, logger)
