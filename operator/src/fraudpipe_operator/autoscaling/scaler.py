"""The autoscaler's I/O: reads the lag, scales the scorer Deployment, applies KEDA's objects.

Replicas are written by server-side apply under a field manager of their own
(`fraudpipe-autoscaler`), while the operator's apply of the Deployment leaves `replicas` out
whenever autoscaling is on. Each manager then owns its fields and neither undoes the other.
Before the operator first applies a Deployment without `replicas`, the autoscaler takes over the
current count: were the operator's manager its only owner, leaving the field out would reset
the Deployment to one replica.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fraudpipe_operator.autoscaling import keda
from fraudpipe_operator.autoscaling.decision import (
    Decision,
    Policy,
    Recommendation,
    Why,
    decide,
    recommend,
)
from fraudpipe_operator.builders.common import FIELD_MANAGER, child_name
from fraudpipe_operator.conditions import ConditionType, Observation, Reason
from fraudpipe_operator.kube import Kube, KubeError
from fraudpipe_operator.models import FraudPipeline
from fraudpipe_operator.topics import KafkaConnection, LagUnavailable, read_consumer_lag

AUTOSCALER_FIELD_MANAGER = "fraudpipe-autoscaler"


# -- pure --------------------------------------------------------------------------------------
def replicas_owners(deployment: dict[str, Any]) -> set[str]:
    """Field managers that own `spec.replicas`, from the object's managedFields."""
    owners = set()
    for entry in deployment.get("metadata", {}).get("managedFields") or []:
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}):
            owners.add(str(entry.get("manager", "")))
    return owners


def build_scorer_replicas(pipeline: FraudPipeline, replicas: int) -> dict[str, Any]:
    """The apply configuration of the autoscaler's manager: the replica count, nothing else."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": child_name(pipeline, "scorer"), "namespace": pipeline.namespace},
        "spec": {"replicas": replicas},
    }


def engine_observation(pipeline: FraudPipeline, keda_served: bool) -> Observation:
    """AutoscalingReady: which engine is in force, and what keeps the spec from being met."""
    kind = ConditionType.AUTOSCALING_READY
    autoscaling = pipeline.spec.scorer.autoscaling
    if not autoscaling.enabled:
        return Observation(kind, True, Reason.DISABLED, "autoscaling disabled in the spec")
    problems: list[tuple[Reason, str]] = []
    if autoscaling.engine == "keda" and not keda_served:
        problems.append(
            (
                Reason.KEDA_MISSING,
                f"engine keda needs KEDA, and the cluster does not serve {keda.SCALEDOBJECTS} "
                f"({keda.API_VERSION}): the operator scales the scorer itself (builtin) until "
                "KEDA is installed",
            )
        )
    topic = pipeline.spec.kafka.topics.transactions
    if autoscaling.max_replicas > topic.partitions:
        problems.append(
            (
                Reason.MAX_REPLICAS_ABOVE_PARTITIONS,
                f"maxReplicas {autoscaling.max_replicas} exceeds the {topic.partitions} "
                f"partitions of {topic.name}: a scorer beyond {topic.partitions} would get no "
                f"partition, so at most {topic.partitions} run; add partitions or lower "
                "maxReplicas",
            )
        )
    if problems:
        return Observation(kind, False, problems[0][0], "; ".join(m for _, m in problems))
    if autoscaling.engine == "keda":
        return Observation(
            kind, True, Reason.KEDA_ENGINE, f"ScaledObject {keda.scaledobject_name(pipeline)}"
        )
    return Observation(kind, True, Reason.BUILTIN_ENGINE, "the operator scales on consumer lag")


def autoscaling_status(
    engine: str,
    decision: Decision,
    lag: int | None,
    partitions: int | None,
    last_scale_time: str | None,
) -> dict[str, Any]:
    """status.autoscaling; None values are sent as null so that a merge patch removes them."""
    return {
        "engine": engine,
        "lag": lag,
        "partitions": partitions,
        "desiredReplicas": (
            decision.recommended if decision.recommended is not None else decision.replicas
        ),
        "currentReplicas": decision.replicas,
        "lastScaleTime": last_scale_time,
        "reason": decision.why.value,
        "message": decision.message[:1024],
    }


# -- I/O ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tick:
    status: dict[str, Any]
    event: tuple[str, str, str] | None  # (type, reason, message) of the Event to post


class Autoscaler:
    def __init__(
        self,
        kube: Kube,
        connect: Callable[[FraudPipeline], Awaitable[KafkaConnection]],
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.connect = connect
        self.timeout_s = timeout_s
        self.clock = clock
        # Recommendations of the stabilization windows, per pipeline uid (lost on restart: the
        # decision then counts the replicas it finds as recommended at that moment).
        self._history: dict[str, tuple[Recommendation, ...]] = {}

    async def keda_served(self) -> bool:
        return await self.kube.serves(keda.API_VERSION, keda.SCALEDOBJECTS)

    async def take_over_replicas(self, pipeline: FraudPipeline) -> None:
        """Before the operator applies the scorer Deployment without `replicas`."""
        if not pipeline.spec.scorer.autoscaling.enabled:
            return
        found = await self.kube.get(
            "Deployment", pipeline.namespace, child_name(pipeline, "scorer")
        )
        if found is None or FIELD_MANAGER not in replicas_owners(found):
            return
        current = int(found["spec"].get("replicas", 1))
        await self.kube.apply(build_scorer_replicas(pipeline, current), AUTOSCALER_FIELD_MANAGER)

    async def reconcile_engine(self, pipeline: FraudPipeline) -> Observation:
        """Apply the keda engine's objects when it is in force, remove them when it is not."""
        served = await self.keda_served()
        autoscaling = pipeline.spec.scorer.autoscaling
        if served:
            wanted = [
                o
                for o in (
                    keda.build_scorer_triggerauthentication(pipeline),
                    keda.build_scorer_scaledobject(pipeline),
                )
                if o is not None
            ]
            if not (autoscaling.enabled and autoscaling.engine == "keda"):
                wanted = []
            names = {o["kind"]: o["metadata"]["name"] for o in wanted}
            for obj in wanted:
                await self.kube.apply(obj)
            # Left behind, a ScaledObject would keep scaling against the builtin engine or the
            # spec's fixed replica count.
            for kind, name in (
                ("ScaledObject", keda.scaledobject_name(pipeline)),
                ("TriggerAuthentication", keda.triggerauthentication_name(pipeline)),
            ):
                if kind not in names and await self.kube.get(kind, pipeline.namespace, name):
                    await self.kube.delete(kind, pipeline.namespace, name)
        return engine_observation(pipeline, served)

    async def tick(self, pipeline: FraudPipeline, previous: dict[str, Any] | None) -> Tick:
        """One round of the builtin engine (or, under KEDA, of observation only)."""
        previous = previous or {}
        last_scale = previous.get("lastScaleTime")
        autoscaling = pipeline.spec.scorer.autoscaling
        engine = "keda" if autoscaling.engine == "keda" and await self.keda_served() else "builtin"
        found = await self.kube.get(
            "Deployment", pipeline.namespace, child_name(pipeline, "scorer")
        )
        if found is None:
            waiting = Decision(0, None, Why.WAITING_FOR_SCORER, "the scorer is not deployed yet")
            return Tick(autoscaling_status(engine, waiting, None, None, last_scale), None)
        current = int(found["spec"].get("replicas", 1))
        lag = partitions = None
        unknown = ""
        try:
            reading = await asyncio.wait_for(
                read_consumer_lag(
                    await self.connect(pipeline),
                    pipeline.spec.scorer.consumer_group,
                    pipeline.spec.kafka.topics.transactions.name,
                ),
                self.timeout_s,
            )
            lag, partitions = reading.lag, reading.partitions
        except (LagUnavailable, TimeoutError, OSError, KubeError) as error:
            unknown = str(error) or type(error).__name__
        policy = Policy.of(autoscaling)
        if engine == "keda":
            observed = Decision(
                current,
                recommend(lag, partitions, policy) if lag is not None and partitions else None,
                Why.SCALED_BY_KEDA,
                f"KEDA scales the scorer (ScaledObject {keda.scaledobject_name(pipeline)})",
            )
            return Tick(autoscaling_status(engine, observed, lag, partitions, last_scale), None)
        decision = decide(
            current,
            lag,
            partitions,
            policy,
            self._history.get(pipeline.uid, ()),
            self.clock(),
            unknown,
        )
        self._history[pipeline.uid] = decision.history
        event = None
        if decision.scales(current):
            await self.kube.apply(
                build_scorer_replicas(pipeline, decision.replicas), AUTOSCALER_FIELD_MANAGER
            )
            last_scale = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            event = ("Normal", decision.why.value, decision.message)
        elif decision.why is Why.LAG_UNKNOWN and previous.get("reason") != Why.LAG_UNKNOWN:
            event = ("Warning", decision.why.value, decision.message)
        return Tick(autoscaling_status(engine, decision, lag, partitions, last_scale), event)
