"""One canary check: the candidate's statistics over a window against the stable model's.

Pure: the numbers come from `stats`, the verdict goes to `machine`. Checks (docs/canary.md):
- error rate: transactions the candidate failed to score / those routed to it;
- p99 latency: the candidate's inference time per micro-batch (from its histogram);
- alert-rate ratio: the candidate's share of FLAG/BLOCK over the stable model's (reported with
  the stable rate floored at one alert in its sample, so that a stable model with no alert does
  not make every candidate alert an infinite ratio). It fails only when even the lower end of
  its one-sided 95 % confidence interval is over the limit: during steps the two models decide
  for disjoint users, and alerts cluster on users (velocity rules, fraud bursts), so a few
  hundred decisions a side give ratios of 3-4 for identical models;
- PSI: population stability index of the two score histograms, bins smoothed by half a count
  so that an empty bin does not make it infinite.
Too few samples on either side make the check inconclusive, never passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from fraudpipe_operator.models.v1alpha1 import CanaryAnalysis

# Cumulative histogram: (upper bound, count of observations <= it), ascending, +Inf last.
Buckets = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class TrackStats:
    """What one model did in a window, summed over the scorer pods."""

    decisions: float = 0
    alerts: float = 0
    errors: float = 0
    latency: Buckets = ()
    scores: Buckets = ()

    def __add__(self, other: TrackStats) -> TrackStats:
        return TrackStats(
            self.decisions + other.decisions,
            self.alerts + other.alerts,
            self.errors + other.errors,
            add_buckets(self.latency, other.latency),
            add_buckets(self.scores, other.scores),
        )

    def __sub__(self, other: TrackStats) -> TrackStats:
        return TrackStats(
            self.decisions - other.decisions,
            self.alerts - other.alerts,
            self.errors - other.errors,
            add_buckets(self.latency, other.latency, -1),
            add_buckets(self.scores, other.scores, -1),
        )


def add_buckets(a: Buckets, b: Buckets, sign: int = 1) -> Buckets:
    if not b:
        return a
    if not a:
        return tuple((le, sign * count) for le, count in b)
    counts = dict(a)
    for le, count in b:
        counts[le] = counts.get(le, 0) + sign * count
    return tuple(sorted(counts.items()))


class Result(StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True)
class Verdict:
    result: Result
    samples: int
    stable_samples: int
    error_rate: float | None = None
    p99_latency_ms: float | None = None
    alert_rate_ratio: float | None = None
    psi: float | None = None
    # "metric=value > threshold" for each check over its limit.
    failed: list[str] = field(default_factory=list)
    reason: str = ""
    # Inconclusive for want of the stable model's decisions (more time helps only while the
    # stable model still decides for some users).
    stable_short: bool = False


def quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket holding the q-th observation;
    the highest finite bound when it falls in +Inf."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def _bin_counts(buckets: Buckets) -> list[float]:
    previous, counts = 0.0, []
    for _, cumulative in buckets:
        counts.append(max(cumulative - previous, 0.0))
        previous = cumulative
    return counts


def psi(candidate: Buckets, stable: Buckets) -> float | None:
    """Population stability index over the histograms' common bins."""
    bounds = sorted({le for le, _ in candidate} | {le for le, _ in stable})
    if not bounds:
        return None

    def aligned(buckets: Buckets) -> list[float]:
        known = dict(buckets)
        filled, last = [], 0.0
        for le in bounds:
            last = known.get(le, last)
            filled.append(last)
        return _bin_counts(tuple(zip(bounds, filled, strict=True)))

    c, s = aligned(candidate), aligned(stable)
    if sum(c) <= 0 or sum(s) <= 0:
        return None
    smooth = 0.5
    c_total, s_total = sum(c) + smooth * len(c), sum(s) + smooth * len(s)
    value = 0.0
    for ci, si in zip(c, s, strict=True):
        p, r = (ci + smooth) / c_total, (si + smooth) / s_total
        value += (p - r) * math.log(p / r)
    return value


Z_ONE_SIDED_95 = 1.645


def alert_rate_ratio_lower_bound(candidate: TrackStats, stable: TrackStats) -> float | None:
    """Lower end of the one-sided 95 % confidence interval of the rate ratio: the Wilson
    interval of the candidate's share of all alerts, turned into a ratio of rates given each
    side's decisions (the usual conditional test for two Poisson rates)."""
    if candidate.decisions <= 0 or stable.decisions <= 0:
        return None
    alerts = candidate.alerts + stable.alerts
    if alerts <= 0:
        return 0.0
    share = candidate.alerts / alerts
    z2 = Z_ONE_SIDED_95**2
    centre = (share + z2 / (2 * alerts)) / (1 + z2 / alerts)
    spread = (
        Z_ONE_SIDED_95
        * math.sqrt(share * (1 - share) / alerts + z2 / (4 * alerts**2))
        / (1 + z2 / alerts)
    )
    low = max(centre - spread, 0.0)
    if low >= 1:
        return math.inf
    return low / (1 - low) * stable.decisions / candidate.decisions


def alert_rate_ratio(candidate: TrackStats, stable: TrackStats) -> float | None:
    if candidate.decisions <= 0 or stable.decisions <= 0:
        return None
    stable_rate = max(stable.alerts, 1.0) / stable.decisions
    return (candidate.alerts / candidate.decisions) / stable_rate


def analyze(
    candidate: TrackStats,
    stable_window: TrackStats,
    stable_rollout: TrackStats,
    spec: CanaryAnalysis,
) -> Verdict:
    """Judge the candidate's window. The stable model is compared over the same window when
    it made enough decisions there, else over `stable_rollout`, everything it decided since
    the candidate was loaded (at weight 100 it makes none)."""
    needed = spec.min_sample_size
    routed = candidate.decisions + candidate.errors
    stable = stable_window if stable_window.decisions >= needed else stable_rollout
    samples, stable_samples = int(candidate.decisions), int(stable.decisions)
    if routed < needed:
        return Verdict(
            Result.INCONCLUSIVE,
            samples,
            stable_samples,
            reason=f"the candidate has {int(routed)} of the {needed} samples needed",
        )
    error_rate = candidate.errors / routed
    latency = quantile(0.99, candidate.latency)
    p99_ms = None if latency is None else latency * 1000
    limits = spec.thresholds
    failed = []
    if error_rate > limits.max_error_rate:
        failed.append(f"errorRate={error_rate:.4f} > {limits.max_error_rate}")
    if p99_ms is not None and p99_ms > limits.max_p99_latency_ms:
        failed.append(f"p99LatencyMs={p99_ms:.1f} > {limits.max_p99_latency_ms}")
    if stable_samples < needed:
        # Errors and latency need no comparison; the ratio and drift do.
        if failed:
            return Verdict(
                Result.FAILED, samples, stable_samples, error_rate, p99_ms, failed=failed
            )
        return Verdict(
            Result.INCONCLUSIVE,
            samples,
            stable_samples,
            error_rate,
            p99_ms,
            reason=f"the stable model has {stable_samples} of the {needed} samples needed",
            stable_short=True,
        )
    ratio = alert_rate_ratio(candidate, stable)
    drift = psi(candidate.scores, stable.scores)
    at_least = alert_rate_ratio_lower_bound(candidate, stable)
    if ratio is not None and at_least is not None and at_least > limits.max_alert_rate_ratio:
        failed.append(
            f"alertRateRatio={ratio:.2f} > {limits.max_alert_rate_ratio} "
            f"(at least {at_least:.2f} at 95 % confidence)"
        )
    if drift is not None and drift > limits.max_psi:
        failed.append(f"psi={drift:.3f} > {limits.max_psi}")
    return Verdict(
        Result.FAILED if failed else Result.PASSED,
        samples,
        stable_samples,
        error_rate,
        p99_ms,
        ratio,
        drift,
        failed,
    )


def describe(verdict: Verdict) -> str:
    """One line for a status message or an Event."""
    if verdict.result is Result.INCONCLUSIVE:
        return f"inconclusive: {verdict.reason}"
    if verdict.failed:
        return "failed: " + ", ".join(verdict.failed)
    parts = [f"{verdict.samples} samples"]
    for name, value, fmt in (
        ("errorRate", verdict.error_rate, ".4f"),
        ("p99LatencyMs", verdict.p99_latency_ms, ".1f"),
        ("alertRateRatio", verdict.alert_rate_ratio, ".2f"),
        ("psi", verdict.psi, ".3f"),
    ):
        if value is not None:
            parts.append(f"{name}={value:{fmt}}")
    return "passed: " + ", ".join(parts)
