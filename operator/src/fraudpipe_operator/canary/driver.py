"""The I/O around the canary state machine: one `tick` per second while a rollout runs.

Each tick reads the FraudPipeline fresh (its status.canary is the rollout's only state, so an
operator restart resumes where it was), validates a new candidate once its Validating state is
saved, scrapes every running scorer pod, pushes the routing the state asks for to every pod
holding the candidate that differs (a pod started later is brought in line at the next tick,
within about a second), runs the analysis when a window is due, writes status.canary and posts
an Event per transition. An abort lasts until every pod holding a candidate reports weight 0.
Which models the scorer Deployment loads follows from the status (`machine.deployment_models`);
the caller reconciles when a tick says the phase changed.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from fraudpipe_operator.builders.common import (
    COMPONENT_LABEL,
    METRICS_PORT,
    PIPELINE_LABEL,
    SCORER_CONTROL_PORT,
)
from fraudpipe_operator.builders.monitoring import rule_values
from fraudpipe_operator.canary import machine
from fraudpipe_operator.canary.analysis import TrackStats, analyze
from fraudpipe_operator.canary.machine import Event, Step
from fraudpipe_operator.canary.stats import (
    PodMetrics,
    PrometheusError,
    PrometheusSource,
    Side,
    Snapshot,
    adopt_unread_pods,
    sides,
    total,
    window,
)
from fraudpipe_operator.canary.validate import CannotCheckYet, candidate_problem
from fraudpipe_operator.kube import Kube, KubeError
from fraudpipe_operator.models import GROUP, PLURAL, VERSION, FraudPipeline
from fraudpipe_operator.models.v1alpha1 import CanaryStatus

log = logging.getLogger(__name__)

ACTIVE_TICK_S = 1.0  # routing reaches a new or restarted pod within about this
IDLE_TICK_S = 5.0  # how soon a candidate added to the spec is noticed (an update is sooner)
# A Prometheus that failed is asked again after 15 s, doubling up to 5 minutes (each check
# is up to 15 queries; a dead one must not cost every tick their timeouts).
PROMETHEUS_BACKOFF_S = 15.0
PROMETHEUS_BACKOFF_MAX_S = 300.0
SAVE_ATTEMPTS = 3  # a status write refused for another writer's change (409), tried again
LOADING_TIMEOUT_S = 600.0  # scorers that cannot load the candidate in this long never will


@dataclass(frozen=True)
class TickResult:
    events: list[Event]
    phase_changed: bool
    next_tick_s: float


@dataclass(frozen=True)
class ScorerPod:
    name: str
    ip: str
    ready: bool
    holds_candidate: bool  # its spec names a candidate (CANARY_MODEL_REF)
    metrics: PodMetrics | None  # None: it could not be scraped
    started_at: float = 0.0  # Unix time its scorer container (re)started, 0: unknown


@dataclass
class _Baseline:
    key: tuple[str, float]
    candidate: Snapshot
    stable: Snapshot


class CanaryDriver:
    def __init__(
        self,
        kube: Kube,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(3.0))
        self.clock = clock  # Unix time: the status stores it
        # Counters when the current window opened: per pipeline uid.
        self._windows: dict[str, _Baseline] = {}
        # Prometheus failures in a row and when to ask again: per pipeline uid.
        self._prometheus_errors: dict[str, tuple[int, float]] = {}

    async def close(self) -> None:
        await self.http.aclose()

    async def tick(self, namespace: str, name: str) -> TickResult:
        body = await self.kube.get("FraudPipeline", namespace, name)
        if body is None:
            return TickResult([], False, IDLE_TICK_S)
        pipeline = FraudPipeline.from_body(body)
        model, before = pipeline.spec.model, pipeline.status
        now = self.clock()
        step = machine.follow_spec(model, before, now)
        events = list(step.events)
        promoted = None
        state = step.status
        promotion_ended = machine.promotion_ended(model, before.promoted)
        if state is None and before.canary is None:
            # No rollout, none to wind down: the scorers hold no candidate, nothing to read.
            if promotion_ended:
                try:
                    await self._save(pipeline, None, None, None, promotion_ended=True)
                except KubeError as error:
                    if error.status != 409:
                        raise
                    return TickResult([], False, ACTIVE_TICK_S)
            return TickResult(events, False, IDLE_TICK_S)
        # A rollout is validated only once its Validating state is saved: a changed candidate
        # first takes the previous one's weight away (at this tick's push), and only then
        # is pulled, which can take a registry's timeouts.
        saved = (
            before.canary is not None
            and before.canary.phase == "Validating"
            and before.canary.ref == (state.ref if state else "")
        )
        if state is not None and saved and machine.validation_due(state, now):
            try:
                problem = await candidate_problem(state.ref, plain_http=model.plain_http)
            except CannotCheckYet as error:
                step = machine.validation_deferred(state, str(error), self.clock())
            else:
                step = machine.validated(state, problem, self.clock())
            events += step.events
            state = step.status
        scorers = await self._scrape(pipeline)
        pods = {p.name: (p.ip, p.metrics) for p in scorers if p.metrics is not None}
        if state is not None and state.phase == "Aborting" and _aborted(scorers):
            state = None
        if state is not None and state.phase == "Loading":
            ready = {p.name: (p.ip, p.metrics) for p in scorers if p.ready and p.metrics}
            state, more = self._loading(state, pipeline, ready, self.clock())
            events += more
        if state is not None and state.phase in machine.ANALYSED:
            # The routing first: an analysis may wait on Prometheus for seconds.
            await self._push_routing(state, pods)
            started = {p.name: p.started_at for p in scorers}
            step = await self._analyse(state, pipeline, pods, started)
            events += step.events
            state, promoted = step.status, step.promoted
        await self._push_routing(state, pods)
        try:
            await self._save(
                pipeline, before.canary, state, promoted, promotion_ended=promotion_ended
            )
        except KubeError as error:
            if error.status != 409:
                raise
            # The pipeline changed since this tick read it (the spec, e.g. the candidate
            # removed): nothing of this tick holds, the next one starts from the new object.
            log.info("canary state of %s/%s changed meanwhile: %s", namespace, name, error)
            return TickResult([], False, ACTIVE_TICK_S)
        phase_changed = (before.canary.phase if before.canary else None) != (
            state.phase if state else None
        )
        active = state is not None and (
            state.phase in machine.ACTIVE | {"Aborting"} or _misrouted(state, pods)
        )
        return TickResult(events, phase_changed, ACTIVE_TICK_S if active else IDLE_TICK_S)

    # -- pods -------------------------------------------------------------------------------
    async def _scrape(self, pipeline: FraudPipeline) -> list[ScorerPod]:
        """Every running, not terminating scorer pod with an IP, and its metrics (None when it
        could not be read). Readiness is not asked for: a pod that has loaded the candidate
        consumes (and routes) before its readiness probe first passes."""
        selector = f"{PIPELINE_LABEL}={pipeline.name},{COMPONENT_LABEL}=scorer"
        found: list[tuple[str, str, bool, bool, dict[str, Any]]] = []
        for pod in await self.kube.list("Pod", pipeline.namespace, selector):
            meta, status = pod["metadata"], pod.get("status", {})
            if (
                status.get("phase") != "Running"
                or not status.get("podIP")
                or meta.get("deletionTimestamp")
            ):
                continue
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions", [])
            )
            found.append((meta["name"], status["podIP"], ready, _holds_candidate(pod), pod))

        async def scrape(ip: str) -> PodMetrics | None:
            try:
                response = await self.http.get(f"http://{ip}:{METRICS_PORT}/metrics")
                response.raise_for_status()
            except httpx.HTTPError as error:
                log.info("cannot scrape scorer %s: %s", ip, error)
                return None
            return PodMetrics.parse(response.text)

        scraped = await asyncio.gather(*(scrape(ip) for _, ip, _, _, _ in found))
        return [
            ScorerPod(name, ip, ready, holds, metrics, _started_at(pod))
            for (name, ip, ready, holds, pod), metrics in zip(found, scraped, strict=True)
        ]

    def _loading(
        self,
        state: CanaryStatus,
        pipeline: FraudPipeline,
        pods: dict[str, tuple[str, PodMetrics]],
        now: float,
    ) -> tuple[CanaryStatus | None, list[Event]]:
        canary = pipeline.spec.model.canary
        assert canary is not None
        if pods and all(
            (m.candidate_digest, m.stable_digest) == (state.candidate_digest, state.stable_digest)
            for _, m in pods.values()
        ):
            step = machine.loaded(state, canary, now)
            return step.status, step.events
        if now - state.phase_started_at > LOADING_TIMEOUT_S:
            step = machine.timed_out(state, now - state.phase_started_at)
            return step.status, step.events
        return state, []

    async def _push_routing(
        self, state: CanaryStatus | None, pods: dict[str, tuple[str, PodMetrics]]
    ) -> None:
        weight, shadow = machine.routing(state)
        candidate = state.candidate_digest if state is not None else ""

        async def push(ip: str, metrics: PodMetrics) -> None:
            # A pod still holding a previous candidate gets weight 0 until it is replaced.
            want = (weight, shadow) if metrics.candidate_digest == candidate else (0, False)
            if (metrics.weight, metrics.shadow) == want:
                return
            try:
                response = await self.http.put(
                    f"http://{ip}:{SCORER_CONTROL_PORT}/routing",
                    json={"weight": want[0], "shadow": want[1]},
                )
                response.raise_for_status()
            except httpx.HTTPError as error:
                log.warning("cannot set the routing of scorer %s: %s", ip, error)
                return
            # What the pod holds now, for a later push of this tick and for _misrouted.
            metrics.weight, metrics.shadow = want

        await asyncio.gather(*(push(ip, m) for ip, m in pods.values() if m.candidate_digest))

    # -- analysis -----------------------------------------------------------------------------
    async def _analyse(
        self,
        state: CanaryStatus,
        pipeline: FraudPipeline,
        pods: dict[str, tuple[str, PodMetrics]],
        started: dict[str, float],
    ) -> Step:
        canary = pipeline.spec.model.canary
        assert canary is not None
        now = self.clock()
        candidate, stable = sides(state.stable_digest, state.candidate_digest)
        url = canary.analysis.prometheus_url
        if url:
            if not machine.due(state, now):
                return Step(state)
            failures, retry_at = self._prometheus_errors.get(pipeline.uid, (0, 0.0))
            if now < retry_at:
                return Step(state)
            source = PrometheusSource(url, rule_values(pipeline)["scorer"], self.http)
            try:
                got = await self._from_prometheus(source, candidate, stable, state, now)
            except PrometheusError as error:
                delay = min(PROMETHEUS_BACKOFF_S * 2**failures, PROMETHEUS_BACKOFF_MAX_S)
                self._prometheus_errors[pipeline.uid] = (failures + 1, now + delay)
                log.warning("canary analysis skipped, next try in %g s: %s", delay, error)
                return Step(state)
            self._prometheus_errors.pop(pipeline.uid, None)
            return self._judge(state, pipeline, *got, now)
        snapshots = (
            {pod: m.track(candidate) for pod, (_, m) in pods.items()},
            {pod: m.track(stable) for pod, (_, m) in pods.items()},
        )
        uid = pipeline.uid
        opened = self._windows.get(uid)
        if opened is None or not _same_window(opened.key, state):
            # No counters from when this window opened (a new window, or the operator
            # restarted): it opens now.
            length = machine.window_seconds(state, canary)
            state = state.model_copy(
                update={"window_started_at": now, "next_check_at": now + length}
            )
            self._windows[uid] = _Baseline((state.ref, now), *snapshots)
            return Step(state)
        # A pod read for the first time in this window: from zero if it started since the
        # window opened, else (it ran, unread, then) from what it counts now.
        fresh = {pod for pod in snapshots[0] if started.get(pod, 0.0) > opened.key[1]}
        opened.candidate = adopt_unread_pods(opened.candidate, snapshots[0], fresh)
        opened.stable = adopt_unread_pods(opened.stable, snapshots[1], fresh)
        if not machine.due(state, now):
            return Step(state)
        step = self._judge(
            state,
            pipeline,
            window(snapshots[0], opened.candidate),
            window(snapshots[1], opened.stable),
            # Since the candidate was loaded: the pods' own counters, kept by the pods (they
            # started with the candidate, which rolled them), so no operator restart loses them.
            total(snapshots[1]),
            now,
        )
        if step.status is not None and step.status.window_started_at != state.window_started_at:
            self._windows[uid] = _Baseline((state.ref, step.status.window_started_at), *snapshots)
        return step

    async def _from_prometheus(
        self,
        source: PrometheusSource,
        candidate: Side,
        stable: Side,
        state: CanaryStatus,
        now: float,
    ) -> tuple[TrackStats, TrackStats, TrackStats]:
        opened = now - state.window_started_at
        candidate_window, stable_window, stable_rollout = await asyncio.gather(
            source.track(candidate, opened),
            source.track(stable, opened),
            source.track(stable, now - (state.loaded_at or state.window_started_at)),
        )
        return candidate_window, stable_window, stable_rollout

    def _judge(
        self,
        state: CanaryStatus,
        pipeline: FraudPipeline,
        candidate: TrackStats,
        stable_window: TrackStats,
        stable_rollout: TrackStats,
        now: float,
    ) -> Step:
        canary = pipeline.spec.model.canary
        assert canary is not None
        verdict = analyze(candidate, stable_window, stable_rollout, canary.analysis)
        at = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return machine.analysed(state, canary, pipeline.spec.model, verdict, now, at)

    # -- status -------------------------------------------------------------------------------
    async def _save(
        self,
        pipeline: FraudPipeline,
        before: CanaryStatus | None,
        state: CanaryStatus | None,
        promoted: Any,
        *,
        promotion_ended: bool = False,
    ) -> None:
        patch: dict[str, Any] = {}
        if promotion_ended:
            patch["promoted"] = None
        if state != before:
            # A merge patch keeps what it does not mention: unset fields go as null (deleted),
            # or a new rollout would inherit the previous one's lastAnalysis.
            patch["canary"] = None if state is None else state.model_dump(by_alias=True)
        if promoted is not None:
            patch["promoted"] = promoted.model_dump(by_alias=True)
        if not patch:
            return
        # Judged against the object as read: a spec changed meanwhile (e.g. the candidate
        # removed while this tick promoted it) must not be overwritten by a stale decision.
        # Other writers (the reconciler's conditions, the autoscaler, kopf's annotations)
        # also move the resourceVersion: when the object read again still has this tick's
        # spec and rollout state, the same patch goes again against the new version.
        version = pipeline.metadata.get("resourceVersion")
        for attempt in range(SAVE_ATTEMPTS):
            try:
                await self.kube.patch_status(
                    f"{GROUP}/{VERSION}",
                    PLURAL,
                    pipeline.namespace,
                    pipeline.name,
                    patch,
                    resource_version=version,
                )
                return
            except KubeError as error:
                if error.status != 409 or attempt == SAVE_ATTEMPTS - 1:
                    raise
            fresh = await self.kube.get("FraudPipeline", pipeline.namespace, pipeline.name)
            if fresh is None or not _same_input(pipeline, FraudPipeline.from_body(fresh)):
                raise KubeError(409, "the pipeline's spec or rollout changed since it was read")
            version = fresh["metadata"].get("resourceVersion")


def _same_input(read: FraudPipeline, fresh: FraudPipeline) -> bool:
    """What a tick decides from: the spec and the rollout's stored state."""
    return read.generation == fresh.generation and read.status == fresh.status


def _same_window(key: tuple[str, float], state: CanaryStatus) -> bool:
    # The time went through JSON and the API server: compare loosely.
    return key[0] == state.ref and abs(key[1] - state.window_started_at) < 0.01


def _started_at(pod: dict[str, Any]) -> float:
    """When the pod's counters began: its scorer container's last start, else the pod's."""
    status = pod.get("status", {})
    stamps = [
        c.get("state", {}).get("running", {}).get("startedAt")
        for c in status.get("containerStatuses", [])
        if c.get("name") == "scorer"
    ]
    stamp = next((s for s in stamps if s), None) or status.get("startTime")
    if not stamp:
        return 0.0
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _holds_candidate(pod: dict[str, Any]) -> bool:
    return any(
        env.get("name") == "CANARY_MODEL_REF"
        for container in pod.get("spec", {}).get("containers", [])
        for env in container.get("env", [])
    )


def _aborted(scorers: list[ScorerPod]) -> bool:
    """Every pod that may route to a candidate says it does not: weight 0, shadow off. A pod
    whose spec holds no candidate cannot; one that could not be scraped might."""
    return all(
        not pod.holds_candidate
        or (
            pod.metrics is not None
            and (
                not pod.metrics.candidate_digest
                or (pod.metrics.weight, pod.metrics.shadow) == (0, False)
            )
        )
        for pod in scorers
    )


def _misrouted(state: CanaryStatus, pods: dict[str, tuple[str, PodMetrics]]) -> bool:
    """A pod whose routing is not yet what the state asks for (keeps the tick fast)."""
    want = machine.routing(state)
    return any(m.candidate_digest and (m.weight, m.shadow) != want for _, m in pods.values())
