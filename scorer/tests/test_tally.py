"""The metrics a batch adds at commit are counted while its decisions are built (`Tally`);
they must equal a count over the decisions themselves, on every route."""

from __future__ import annotations

import collections
import itertools

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from fraudpipe_common.contracts.decisions import Track
from fraudpipe_common.features import STATEFUL_FEATURES
from fraudpipe_common.rules import RuleSettings, Thresholds
from fraudpipe_common.synthetic import TrafficConfig, generate
from fraudpipe_scorer.routing import Router
from fraudpipe_scorer.scoring import BatchScorer, Record


class SpreadModel:
    """Scores spread over [0, 1) by row, so that some rows FLAG and some BLOCK."""

    def __init__(self, digest: str, shift: float) -> None:
        self.digest = digest
        self.shift = shift
        self.thresholds = Thresholds(flag=0.6, block=0.9)
        self.explainer = None  # no explanations: what is counted does not depend on them

    def score(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return ((np.arange(len(matrix)) * 0.037 + self.shift) % 1.0).astype(np.float32)


def records(n: int) -> list[Record]:
    stream = itertools.islice(generate(TrafficConfig(seed=3, fraud_rate=0.05)), n)
    return [Record("t", 0, i, None, orjson.dumps(tx.message())) for i, tx in enumerate(stream)]


@pytest.mark.parametrize(
    ("weight", "shadow", "with_candidate"),
    [(30, False, True), (100, False, True), (0, True, True), (0, False, True), (0, False, False)],
)
def test_the_tally_equals_a_count_over_the_decisions(
    weight: int, shadow: bool, with_candidate: bool
) -> None:
    candidate = SpreadModel("sha256:c", 0.31) if with_candidate else None
    router = Router(has_candidate=with_candidate, weight=weight, shadow=shadow)
    scorer = BatchScorer(
        None,  # type: ignore[arg-type]  (no features call here)
        SpreadModel("sha256:s", 0.0),  # type: ignore[arg-type]
        candidate,  # type: ignore[arg-type]
        router,
        RuleSettings(),
    )
    batch = scorer.decode(records(400))
    stateful = np.zeros((len(batch.inputs), len(STATEFUL_FEATURES)))
    matrix = scorer.matrix(batch, stateful)
    result = scorer.finish(batch, matrix, scorer.infer(batch, matrix))

    expected: collections.Counter[tuple[str, str, str]] = collections.Counter()
    expected_scores: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for _, d in (*result.decisions, *result.shadow):
        expected[(d.decision.value, d.model_digest, d.track.value)] += 1
        expected_scores[(d.model_digest, d.track.value)].append(d.score)
    tally = result.tally
    assert {k: n for k, n in tally.verdicts.items() if n} == dict(expected)
    assert set(tally.scores) == set(expected_scores)
    for key, values in expected_scores.items():
        assert tally.scores[key].tolist() == values
    assert len(tally.event_seconds) == len(result.decisions)
    tracks = {d.track for _, d in result.decisions}
    if shadow:
        assert len(result.shadow) == len(result.decisions)
    if weight == 30:
        assert tracks == {Track.STABLE, Track.CANARY}
    assert {v for v, _, _ in expected} >= {"APPROVE", "FLAG", "BLOCK"}


class NanModel(SpreadModel):
    """A broken model: every third row scored NaN."""

    def score(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        scores = np.full(len(matrix), 0.01, dtype=np.float32)
        scores[::3] = np.nan
        return scores


def test_rows_the_stable_model_scores_nan_are_held_with_score_one_never_approved() -> None:
    scorer = BatchScorer(
        None,  # type: ignore[arg-type]
        NanModel("sha256:s", 0.0),  # type: ignore[arg-type]
        None,
        Router(has_candidate=False, weight=0, shadow=False),
        RuleSettings(),
    )
    batch = scorer.decode(records(30))
    matrix = scorer.matrix(batch, np.zeros((len(batch.inputs), len(STATEFUL_FEATURES))))
    result = scorer.finish(batch, matrix, scorer.infer(batch, matrix))
    broken = [d for _, d in result.decisions[::3]]
    assert "APPROVE" not in {d.decision.value for d in broken}
    assert all("model_score_invalid" in [r.code for r in d.reasons] for d in broken)
    assert {d.score for d in broken} == {1.0}
    assert all(0.0 <= d.score <= 1.0 for _, d in result.decisions)
    assert orjson.loads(result.decisions[0][1].to_json())["score"] == 1.0
