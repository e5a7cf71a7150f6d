"""Each model's inference is timed and a failing candidate is counted, not fatal: its rows are
left to the stable model (the canary's latency and error-rate checks, docs/canary.md)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import generate_latest

from fraudpipe_scorer.metrics import ScorerMetrics
from fraudpipe_scorer.routing import Router
from fraudpipe_scorer.scoring import BatchResult, BatchScorer, DecodedBatch, Record


class FakeModel:
    def __init__(self, digest: str, *, fails: bool = False, value: float = 0.5) -> None:
        self.digest = digest
        self.fails = fails
        self.value = value

    def score(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self.fails:
            raise RuntimeError("onnxruntime: bad shape")
        return np.full(len(matrix), self.value, dtype=np.float32)


def batch(users: list[str]) -> DecodedBatch:
    records = [Record("t", 0, i, None, b"{}") for i in range(len(users))]
    good: list[tuple[Record, Any]] = [
        (r, SimpleNamespace(user_id=u)) for r, u in zip(records, users, strict=True)
    ]
    return DecodedBatch(records, BatchResult(), good, [])


def scorer(candidate: FakeModel, *, shadow: bool) -> BatchScorer:
    router = Router(has_candidate=True, weight=0 if shadow else 100, shadow=shadow)
    return BatchScorer(None, FakeModel("sha256:s"), candidate, router, None)  # type: ignore[arg-type]


def test_each_model_is_timed_under_its_track_and_digest() -> None:
    scores = scorer(FakeModel("sha256:c"), shadow=True).infer(
        batch(["a", "b", "c"]), np.zeros((3, 22))
    )
    assert set(scores.seconds) == {("stable", "sha256:s"), ("candidate", "sha256:c")}
    assert all(seconds >= 0 for seconds in scores.seconds.values())
    assert scores.errors == {}
    assert len(scores.candidate) == 3


def test_a_failing_candidate_leaves_its_rows_to_the_stable_model_and_is_counted() -> None:
    scores = scorer(FakeModel("sha256:c", fails=True), shadow=False).infer(
        batch(["a", "b"]), np.zeros((2, 22))
    )
    assert scores.candidate == {}  # every row decided by the stable model
    assert scores.errors == {("candidate", "sha256:c"): 2}
    metrics = ScorerMetrics()
    for model, failed in scores.errors.items():
        metrics.model_errors.labels(*model).inc(failed)
    text = generate_latest(metrics.registry).decode()
    assert (
        'fraudpipe_scorer_model_errors_total{model_digest="sha256:c",track="candidate"} 2.0' in text
    )


def test_rows_the_candidate_scores_nan_are_its_errors_and_go_to_the_stable_model() -> None:
    scores = scorer(FakeModel("sha256:c", value=float("nan")), shadow=False).infer(
        batch(["a", "b", "c"]), np.zeros((3, 22))
    )
    assert scores.candidate == {}
    assert scores.errors == {("candidate", "sha256:c"): 3}
