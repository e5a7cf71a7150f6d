"""The canary check, pure: PSI, the alert-rate ratio, latency quantiles, each threshold, and
inconclusive windows (docs/canary.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from fraudpipe_operator.canary.analysis import (
    Buckets,
    Result,
    TrackStats,
    alert_rate_ratio,
    alert_rate_ratio_lower_bound,
    analyze,
    psi,
    quantile,
)
from fraudpipe_operator.canary.stats import PodMetrics, sides, window
from fraudpipe_operator.models.v1alpha1 import CanaryAnalysis

SCORE_BOUNDS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, math.inf)
LATENCY_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, math.inf)


def cumulative(bounds: tuple[float, ...], per_bin: Sequence[float]) -> Buckets:
    total, out = 0.0, []
    for le, count in zip(bounds, per_bin, strict=True):
        total += count
        out.append((le, total))
    return tuple(out)


def scores(per_bin: Sequence[float]) -> Buckets:
    return cumulative(SCORE_BOUNDS, per_bin)


# Most transactions score low, a few high: the stable model's shape.
TYPICAL = [300, 250, 200, 120, 60, 30, 15, 10, 6, 5, 4, 0]
FAST = cumulative(LATENCY_BOUNDS, [900, 100, 0, 0, 0, 0, 0])  # p99 well under 5 ms


def track(
    decisions: float, alerts: float, errors: float = 0, per_bin: Sequence[float] | None = None
) -> TrackStats:
    shape = per_bin or TYPICAL
    factor = decisions / sum(shape)
    return TrackStats(decisions, alerts, errors, FAST, scores([c * factor for c in shape]))


SPEC = CanaryAnalysis(min_sample_size=200)


def test_identical_distributions_have_zero_psi_and_a_shifted_one_a_large_psi() -> None:
    same = psi(scores(TYPICAL), scores([c * 3 for c in TYPICAL]))
    assert same == pytest.approx(0.0, abs=1e-3)
    shifted = psi(scores(list(reversed(TYPICAL))), scores(TYPICAL))
    assert shifted is not None
    assert shifted > 1.0


def test_an_empty_bin_does_not_make_psi_infinite() -> None:
    value = psi(scores([0] * 11 + [1000]), scores(TYPICAL))
    assert value is not None
    assert math.isfinite(value)
    assert value > 1.0


def test_alert_rate_ratio_and_its_floor_when_the_stable_model_never_alerts() -> None:
    assert alert_rate_ratio(track(1000, 40), track(2000, 40)) == pytest.approx(2.0)
    # No stable alert in 500 decisions counts as one: 100/100 over 1/500 is 500, not infinite.
    assert alert_rate_ratio(track(100, 100), track(500, 0)) == pytest.approx(500.0)
    assert alert_rate_ratio(track(0, 0), track(500, 5)) is None


def test_p99_is_interpolated_within_its_bucket_like_histogram_quantile() -> None:
    buckets = cumulative(LATENCY_BOUNDS, [0, 0, 0, 0, 100, 0, 0])  # all in (0.02, 0.05]
    assert quantile(0.99, buckets) == pytest.approx(0.02 + 0.03 * 0.99)
    assert quantile(0.99, ()) is None
    assert quantile(0.5, cumulative(LATENCY_BOUNDS, [0, 0, 0, 0, 0, 0, 10])) == 0.1


def test_a_candidate_like_the_stable_model_passes_with_its_values_recorded() -> None:
    verdict = analyze(track(400, 8), track(1600, 30), track(1600, 30), SPEC)
    assert verdict.result is Result.PASSED, verdict
    assert verdict.samples == 400
    assert verdict.stable_samples == 1600
    assert verdict.error_rate == 0
    assert verdict.psi is not None
    assert verdict.psi < 0.01
    assert verdict.alert_rate_ratio == pytest.approx((8 / 400) / (30 / 1600))


@pytest.mark.parametrize(
    ("candidate", "failing"),
    [
        (track(400, 400, per_bin=[0] * 10 + [400, 0]), "alertRateRatio"),
        (TrackStats(400, 8, 20, FAST, scores(TYPICAL)), "errorRate"),
        (
            TrackStats(
                400, 8, 0, cumulative(LATENCY_BOUNDS, [0, 0, 0, 0, 0, 50, 0]), scores(TYPICAL)
            ),
            "p99LatencyMs",
        ),
        (track(400, 8, per_bin=list(reversed(TYPICAL))), "psi"),
    ],
)
def test_each_threshold_fails_the_check_and_names_its_metric(
    candidate: TrackStats, failing: str
) -> None:
    verdict = analyze(candidate, track(1600, 30), track(1600, 30), SPEC)
    assert verdict.result is Result.FAILED
    assert any(f.startswith(failing + "=") for f in verdict.failed), verdict.failed


def test_too_few_candidate_samples_is_inconclusive_not_passed() -> None:
    verdict = analyze(track(150, 3), track(1600, 30), track(1600, 30), SPEC)
    assert verdict.result is Result.INCONCLUSIVE
    assert "150 of the 200" in verdict.reason


def test_without_stable_traffic_in_the_window_the_rollout_wide_stable_stats_are_used() -> None:
    # At weight 100 the stable model decides nothing in the window.
    verdict = analyze(track(400, 8), TrackStats(), track(3000, 60), SPEC)
    assert verdict.result is Result.PASSED
    assert verdict.stable_samples == 3000
    starved = analyze(track(400, 8), TrackStats(), track(50, 1), SPEC)
    assert starved.result is Result.INCONCLUSIVE
    # ... but a slow candidate fails without any comparison.
    slow = TrackStats(400, 8, 0, cumulative(LATENCY_BOUNDS, [0, 0, 0, 0, 0, 0, 400]), ())
    assert analyze(slow, TrackStats(), TrackStats(), SPEC).result is Result.FAILED


SCRAPE = """
# TYPE fraudpipe_scorer_decisions counter
fraudpipe_scorer_decisions_total{decision="APPROVE",model_digest="sha256:s",track="stable"} 90
fraudpipe_scorer_decisions_total{decision="FLAG",model_digest="sha256:s",track="stable"} 10
fraudpipe_scorer_decisions_total{decision="BLOCK",model_digest="sha256:c",track="shadow"} 30
fraudpipe_scorer_decisions_total{decision="APPROVE",model_digest="sha256:c",track="canary"} 20
# TYPE fraudpipe_scorer_model_errors counter
fraudpipe_scorer_model_errors_total{model_digest="sha256:c",track="candidate"} 2
# TYPE fraudpipe_scorer_model_inference_seconds histogram
INFERENCE_bucket{le="0.01",model_digest="sha256:c",track="candidate"} 4
INFERENCE_bucket{le="+Inf",model_digest="sha256:c",track="candidate"} 5
fraudpipe_scorer_model_inference_seconds_count{model_digest="sha256:c",track="candidate"} 5
fraudpipe_scorer_model_inference_seconds_sum{model_digest="sha256:c",track="candidate"} 0.2
# TYPE fraudpipe_scorer_model_info info
fraudpipe_scorer_model_info{digest="sha256:c",name="cand",track="candidate"} 1
# TYPE fraudpipe_scorer_canary_weight_percent gauge
fraudpipe_scorer_canary_weight_percent 25
# TYPE fraudpipe_scorer_shadow_mode gauge
fraudpipe_scorer_shadow_mode 0
""".replace("INFERENCE", "fraudpipe_scorer_model_inference_seconds")


def test_a_scrape_is_split_by_model_and_windows_survive_a_pod_restart() -> None:
    pod = PodMetrics.parse(SCRAPE)
    assert (pod.weight, pod.shadow, pod.candidate_digest) == (25, False, "sha256:c")
    candidate, stable = sides("sha256:s", "sha256:c")
    mine = pod.track(candidate)
    assert (mine.decisions, mine.alerts, mine.errors) == (50, 30, 2)
    assert mine.latency == ((0.01, 4.0), (math.inf, 5.0))
    assert (pod.track(stable).decisions, pod.track(stable).alerts) == (100, 10)
    opened = {"a": TrackStats(40, 5), "b": TrackStats(500, 50)}
    # a: 50-40 since the window opened; b restarted (fewer than before): all 30 count; c new.
    now = {"a": TrackStats(50, 6), "b": TrackStats(30, 3), "c": TrackStats(7, 0)}
    assert window(now, opened) == TrackStats(47, 4)


def test_the_alert_rate_ratio_fails_only_on_evidence_beyond_the_limit() -> None:
    spec = CanaryAnalysis(min_sample_size=150, thresholds={"maxAlertRateRatio": 4})
    # Seen on real pods: an identical model at 50 %, alerts clustered on a few users.
    noisy = analyze(track(205, 35), track(200, 8), track(200, 8), spec)
    assert noisy.alert_rate_ratio == pytest.approx((35 / 205) / (8 / 200))
    assert noisy.alert_rate_ratio > 4
    assert noisy.result is Result.PASSED, noisy
    lower = alert_rate_ratio_lower_bound(track(205, 35), track(200, 8))
    assert lower is not None
    assert 1 < lower < 4
    # A candidate that flags everything: far beyond, however small the sample.
    flags_all = analyze(track(200, 200), track(200, 9), track(200, 9), spec)
    assert flags_all.result is Result.FAILED
    assert flags_all.failed[0].startswith("alertRateRatio=")
    # No alert on either side is no evidence of anything.
    assert alert_rate_ratio_lower_bound(track(200, 0), track(200, 0)) == 0.0
    # A stable model without alerts: a candidate with a few is not proven worse...
    assert analyze(track(200, 3), track(200, 0), track(200, 0), spec).result is Result.PASSED
    # ... one with many is.
    assert analyze(track(200, 60), track(200, 0), track(200, 0), spec).result is Result.FAILED
