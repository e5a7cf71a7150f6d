"""Per-model statistics of the scorers, as `TrackStats` for the analysis.

Two sources (docs/canary.md):
- the scorer pods' own /metrics (default): `PodMetrics.parse` reads one scrape; a window is the
  sum over pods of (now - the pod's value when the window opened), a pod that appeared or
  restarted since counting from zero;
- Prometheus (`analysis.prometheusUrl`): `increase(...[window])` over the pipeline's scorers,
  which already handles restarts.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fraudpipe_operator.canary.analysis import Buckets, TrackStats

CANDIDATE_TRACKS = ("canary", "shadow")
ALERTS = ("FLAG", "BLOCK")


@dataclass(frozen=True)
class Side:
    """Which model a series belongs to."""

    digest: str
    decision_tracks: tuple[str, ...]  # track label of decisions and scores
    role: str  # track label of inference time and errors


def sides(stable_digest: str, candidate_digest: str) -> tuple[Side, Side]:
    return (
        Side(candidate_digest, CANDIDATE_TRACKS, "candidate"),
        Side(stable_digest, ("stable",), "stable"),
    )


@dataclass
class PodMetrics:
    """One scorer pod's scrape: what the analysis and the routing push need."""

    weight: int = 0
    shadow: bool = False
    candidate_digest: str = ""  # the candidate it loaded, "" for none
    stable_digest: str = ""  # the stable model it loaded
    decisions: dict[tuple[str, str, str], float] = field(default_factory=dict)
    scores: dict[tuple[str, str], dict[float, float]] = field(default_factory=dict)
    latency: dict[tuple[str, str], dict[float, float]] = field(default_factory=dict)
    errors: dict[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> PodMetrics:
        pod = cls()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels, value = sample.labels, sample.value
                name = sample.name
                if name == "fraudpipe_scorer_canary_weight_percent":
                    pod.weight = int(value)
                elif name == "fraudpipe_scorer_shadow_mode":
                    pod.shadow = value >= 1
                elif name == "fraudpipe_scorer_model_info" and labels.get("track") == "candidate":
                    pod.candidate_digest = labels.get("digest", "")
                elif name == "fraudpipe_scorer_model_info" and labels.get("track") == "stable":
                    pod.stable_digest = labels.get("digest", "")
                elif name == "fraudpipe_scorer_decisions_total":
                    key = (labels["decision"], labels["model_digest"], labels["track"])
                    pod.decisions[key] = value
                elif name == "fraudpipe_scorer_model_score_bucket":
                    series = pod.scores.setdefault((labels["model_digest"], labels["track"]), {})
                    series[float(labels["le"])] = value
                elif name == "fraudpipe_scorer_model_inference_seconds_bucket":
                    series = pod.latency.setdefault((labels["track"], labels["model_digest"]), {})
                    series[float(labels["le"])] = value
                elif name == "fraudpipe_scorer_model_errors_total":
                    pod.errors[(labels["track"], labels["model_digest"])] = value
        return pod

    def track(self, side: Side) -> TrackStats:
        decisions = alerts = 0.0
        for (verdict, digest, track), count in self.decisions.items():
            if digest == side.digest and track in side.decision_tracks:
                decisions += count
                alerts += count if verdict in ALERTS else 0
        scores: dict[float, float] = defaultdict(float)
        for (digest, track), series in self.scores.items():
            if digest == side.digest and track in side.decision_tracks:
                for le, count in series.items():
                    scores[le] += count
        latency = self.latency.get((side.role, side.digest), {})
        return TrackStats(
            decisions,
            alerts,
            self.errors.get((side.role, side.digest), 0.0),
            _sorted(latency),
            _sorted(scores),
        )


def _sorted(series: dict[float, float]) -> Buckets:
    return tuple(sorted(series.items()))


Snapshot = dict[str, TrackStats]  # pod name -> one side's counters


def adopt_unread_pods(opened: Snapshot, now: Snapshot, started_since: set[str]) -> Snapshot:
    """The window's opening counters, with the pods read for the first time now: one that
    started since the window opened stays absent (it counts from zero), one that ran already
    (unread then, e.g. a failed scrape) opens at what it counts now rather than bringing its
    whole history into the window."""
    adopted = {pod: stats for pod, stats in now.items() if pod not in started_since}
    return {**adopted, **opened}


def window(now: Snapshot, opened: Snapshot) -> TrackStats:
    """Sum over pods of what each counted since the window opened. A pod absent then (it
    started since: see `adopt_unread_pods`), or whose counters went down (it restarted),
    counts everything it has now."""
    total = TrackStats()
    for pod, stats in now.items():
        before = opened.get(pod)
        if before is None or stats.decisions < before.decisions or stats.errors < before.errors:
            total = total + stats
        else:
            total = total + (stats - before)
    return total


def total(now: Snapshot) -> TrackStats:
    """Sum over pods of everything each counted since it started."""
    return window(now, {})


# -- Prometheus ------------------------------------------------------------------------------
class PrometheusError(RuntimeError):
    """Prometheus could not be read; the check is skipped, not judged."""


class PrometheusSource:
    """Window statistics from Prometheus, for the scorers matched by `selector`
    (e.g. `namespace="payments",service="payments-scorer"`)."""

    def __init__(self, url: str, selector: str, client: httpx.AsyncClient) -> None:
        self.url = url.rstrip("/")
        self.selector = selector
        self.client = client

    async def _result(self, query: str) -> list[dict[str, Any]]:
        """The instant query's result vector."""
        try:
            response = await self.client.get(
                f"{self.url}/api/v1/query", params={"query": query}, timeout=10
            )
            response.raise_for_status()
            result: list[dict[str, Any]] = response.json()["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError) as error:
            raise PrometheusError(f"Prometheus at {self.url}: {error}") from error
        return result

    async def scalar(self, query: str) -> float:
        result = await self._result(query)
        value = float(result[0]["value"][1]) if result else 0.0
        return 0.0 if math.isnan(value) else value

    async def buckets(self, query: str) -> Buckets:
        result = await self._result(query)
        return tuple(sorted((float(r["metric"]["le"]), float(r["value"][1])) for r in result))

    async def track(self, side: Side, seconds: float) -> TrackStats:
        span = f"{max(int(seconds), 1)}s"
        tracks = "|".join(side.decision_tracks)
        chosen = f'{self.selector},model_digest="{side.digest}"'
        decided = f'{chosen},track=~"{tracks}"'
        own = f'{chosen},track="{side.role}"'
        # At once, not one after the other: each may take up to its timeout.
        decisions, alerts, errors, latency, scores = await asyncio.gather(
            self.scalar(f"sum(increase(fraudpipe_scorer_decisions_total{{{decided}}}[{span}]))"),
            self.scalar(
                "sum(increase(fraudpipe_scorer_decisions_total"
                f'{{{decided},decision=~"FLAG|BLOCK"}}[{span}]))'
            ),
            self.scalar(f"sum(increase(fraudpipe_scorer_model_errors_total{{{own}}}[{span}]))"),
            self.buckets(
                "sum by (le) (increase("
                f"fraudpipe_scorer_model_inference_seconds_bucket{{{own}}}[{span}]))"
            ),
            self.buckets(
                f"sum by (le) (increase(fraudpipe_scorer_model_score_bucket{{{decided}}}[{span}]))"
            ),
        )
        return TrackStats(decisions, alerts, errors, latency, scores)
