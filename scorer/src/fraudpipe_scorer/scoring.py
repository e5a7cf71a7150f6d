"""One micro-batch from raw records to decisions: decode, features, inference, rules.

The only I/O is the feature store's one Redis round trip; everything else is computation, so
the service loop can retry this whole step after a Redis failure (the feature update is
idempotent per tx_id, a retried batch counts nothing twice). Inference is a pure function of
the batch's matrix, so the service runs it in a worker thread (ONNX Runtime releases the GIL)
while the event loop moves the neighbouring batches along.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import isfinite
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from fraudpipe_common.contracts.decisions import DecisionRecord, Track, Verdict
from fraudpipe_common.contracts.dlq import Rejection
from fraudpipe_common.contracts.transactions import (
    InvalidTransactionError,
    Tx,
    decode_transaction,
)
from fraudpipe_common.contracts.transactions_avro import AvroDecoder
from fraudpipe_common.explain import feature_reasons
from fraudpipe_common.features import (
    FEATURE_NAMES,
    STATELESS_FEATURES,
    FeatureInput,
    OnlineFeatureStore,
    stateless_features,
)
from fraudpipe_common.inference import LoadedModel
from fraudpipe_common.rules import RuleSettings, decide, may_fire
from fraudpipe_scorer.routing import Router, Routing

Matrix = npt.NDArray[np.float64]


class Record(NamedTuple):
    """One consumed message: where it came from, and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class BatchResult:
    """Everything one batch produced; each item keeps the record it came from, whose
    partition decides which Kafka transaction carries it."""

    decisions: list[tuple[Record, DecisionRecord]] = field(default_factory=list)
    shadow: list[tuple[Record, DecisionRecord]] = field(default_factory=list)
    rejections: list[tuple[Record, Rejection]] = field(default_factory=list)
    # The transaction's country of each acting FLAG/BLOCK, by tx_id (stored with the alert).
    alert_countries: dict[str, str] = field(default_factory=dict)
    # Acting FLAG/BLOCK decisions whose model has an explainer, by that model: the positions
    # in `decisions` and in the batch's matrix (the same: one decision per good row).
    unexplained: dict[str, tuple[LoadedModel, list[int]]] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    tally: Tally = field(default_factory=lambda: Tally())


@dataclass
class Tally:
    """What a batch's decisions add to the metrics once committed, counted while they are
    built (not by walking the decisions again)."""

    # (decision, model digest, track) -> how many
    verdicts: collections.Counter[tuple[str, str, str]] = field(default_factory=collections.Counter)
    # (model digest, track) -> the scores
    scores: dict[tuple[str, str], Matrix] = field(default_factory=dict)
    # Each acting decision's event time (seconds): end-to-end latency at commit.
    event_seconds: Matrix = field(default_factory=lambda: np.empty(0))


@dataclass
class DecodedBatch:
    """A batch between decoding and its decisions."""

    records: list[Record]
    result: BatchResult
    good: list[tuple[Record, Tx]]
    inputs: list[FeatureInput]


@dataclass(frozen=True)
class Scores:
    """One batch's model scores, under one routing snapshot."""

    routing: Routing
    stable: list[float]
    # The candidate's score of row i, for the rows it scored: the users it acts for, or every
    # row in shadow mode.
    candidate: dict[int, float]
    # Each model's inference seconds and failed rows, by (track, digest), for the canary
    # analysis; a candidate that fails leaves its rows to the stable model.
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    errors: dict[tuple[str, str], int] = field(default_factory=dict)


class BatchScorer:
    def __init__(
        self,
        features: OnlineFeatureStore,
        stable: LoadedModel,
        candidate: LoadedModel | None,
        router: Router,
        rules: RuleSettings,
        *,
        max_message_bytes: int = 65_536,
        avro: AvroDecoder | None = None,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        # Avro topics: decoded by their writer schemas, fetched by `prepare` (JSON otherwise).
        self.avro = avro
        self.features = features
        self.stable = stable
        self.candidate = candidate
        self.router = router
        self.rules = rules

    async def score(self, records: Sequence[Record]) -> BatchResult:
        """The whole batch in one go (the service splits it to overlap batches)."""
        await self.prepare(records)
        batch = self.decode(records)
        matrix = self.matrix(batch, await self.fetch_features(batch))
        result = self.finish(batch, matrix, self.infer(batch, matrix))
        self.explain(result, matrix)
        return result

    async def prepare(self, records: Sequence[Record]) -> None:
        """What decoding needs from outside: the writer schemas of an Avro batch. Raises
        RegistryUnavailableError while the registry is down (the batch is retried, never
        sent to the DLQ for it)."""
        if self.avro is not None:
            await self.avro.prepare(r.value for r in records)

    def decode(self, records: Sequence[Record]) -> DecodedBatch:
        result = BatchResult()
        clock = time.perf_counter()
        good: list[tuple[Record, Tx]] = []
        for record in records:
            try:
                if record.value is None:
                    raise InvalidTransactionError("empty_value", "the message has no value")
                if len(record.value) > self.max_message_bytes:
                    raise InvalidTransactionError(
                        "too_large",
                        f"{len(record.value)} bytes, more than MAX_MESSAGE_BYTES="
                        f"{self.max_message_bytes} (a transaction is well under 1 KiB)",
                    )
                good.append(
                    (
                        record,
                        decode_transaction(record.value)
                        if self.avro is None
                        else self.avro.decode(record.value),
                    )
                )
            except InvalidTransactionError as exc:
                rejection = Rejection(
                    exc.code, exc.detail, record.topic, record.partition, record.offset
                )
                result.rejections.append((record, rejection))
        inputs = [FeatureInput.of(tx) for _, tx in good]
        _lap(result, "decode", clock)
        return DecodedBatch(list(records), result, good, inputs)

    async def fetch_features(self, batch: DecodedBatch) -> Matrix:
        """The batch's one Redis round trip: records the transactions, returns their state."""
        started = time.perf_counter()
        stateful = await self.features.update_matrix(batch.inputs)
        batch.result.stage_seconds["features"] = time.perf_counter() - started
        return stateful

    def matrix(self, batch: DecodedBatch, stateful: Matrix) -> Matrix:
        """The full feature rows, FEATURE_NAMES order (float64: the decisions' snapshot)."""
        clock = time.perf_counter()
        full = np.empty((len(batch.inputs), len(FEATURE_NAMES)), dtype=np.float64)
        if batch.inputs:
            full[:, : len(STATELESS_FEATURES)] = [stateless_features(i) for i in batch.inputs]
            full[:, len(STATELESS_FEATURES) :] = stateful
        _lap(batch.result, "assemble", clock)
        return full

    def infer(self, batch: DecodedBatch, matrix: Matrix) -> Scores:
        """Both models on the rows each must score; computation only, safe off the loop."""
        clock = time.perf_counter()
        routing = self.router.state
        if not batch.good:
            return Scores(routing, [], {})
        inputs = matrix.astype(np.float32)
        stable = self.stable.score(inputs).tolist()
        seconds = {("stable", self.stable.digest): time.perf_counter() - clock}
        errors: dict[tuple[str, str], int] = {}
        candidate: dict[int, float] = {}
        if self.candidate is not None and (routing.shadow or routing.weight > 0):
            rows = [
                i
                for i, (_, tx) in enumerate(batch.good)
                if routing.shadow or routing.to_candidate(tx.user_id)
            ]
            if rows:
                key = ("candidate", self.candidate.digest)
                started = time.perf_counter()
                try:
                    scored = self.candidate.score(inputs[rows]).tolist()
                    # A row the candidate cannot score (NaN, inf) is its error, decided by
                    # the stable model like every row of a candidate that fails outright.
                    candidate = {r: v for r, v in zip(rows, scored, strict=True) if isfinite(v)}
                    if len(candidate) < len(rows):
                        errors[key] = len(rows) - len(candidate)
                except Exception:  # a failing candidate is the analysis' finding, not an outage
                    errors[key] = len(rows)
                seconds[key] = time.perf_counter() - started
        _lap(batch.result, "inference", clock)
        return Scores(routing, stable, candidate, seconds, errors)

    def finish(self, batch: DecodedBatch, matrix: Matrix, scores: Scores) -> BatchResult:
        """Rules and decisions: computation only. The rules run per row only where one of
        them might fire (`may_fire`, one vector operation per rule): most rows are APPROVE
        with no reason and cost just their record."""
        result = batch.result
        if not batch.good:
            return result
        clock = time.perf_counter()
        decided = dt.datetime.now(dt.UTC)
        shadow = scores.routing.shadow
        stable, candidate = self.stable, self.candidate
        acting = np.asarray(scores.stable, dtype=np.float64)
        floor = np.full(len(acting), min(stable.thresholds.flag, stable.thresholds.block))
        if scores.candidate and not shadow:
            assert candidate is not None
            rows = np.fromiter(scores.candidate.keys(), dtype=np.intp)
            acting[rows] = np.fromiter(scores.candidate.values(), dtype=np.float64)
            floor[rows] = min(candidate.thresholds.flag, candidate.thresholds.block)
        suspicious = may_fire(matrix, acting, floor, self.rules).tolist()
        # A score the stable model could not give (NaN, inf) is FLAGged by `decide` and
        # recorded as 1.0: the decision's score stays in [0, 1].
        clipped_scores = np.clip(np.nan_to_num(acting, nan=1.0, posinf=1.0, neginf=1.0), 0.0, 1.0)
        clipped = clipped_scores.tolist()
        names = FEATURE_NAMES
        decisions, shadows = result.decisions, result.shadow
        # Every acting decision is APPROVE unless counted here; APPROVE counts are the rest.
        verdicts = result.tally.verdicts
        stable_track, canary_track = Track.STABLE.value, Track.CANARY.value
        shadow_scores: list[float] = []
        for i, ((record, tx), row) in enumerate(zip(batch.good, matrix.tolist(), strict=True)):
            features = dict(zip(names, row, strict=True))
            event_ts = dt.datetime.fromtimestamp(tx.ts, dt.UTC)
            candidate_score = scores.candidate.get(i)
            on_canary = candidate_score is not None and not shadow
            model = candidate if on_canary else stable
            assert model is not None
            if suspicious[i]:
                verdict, reasons = decide(
                    tx.amount, row, float(acting[i]), model.thresholds, self.rules
                )
                if verdict is not Verdict.APPROVE:
                    result.alert_countries[tx.tx_id] = tx.country
                    track = canary_track if on_canary else stable_track
                    verdicts[(verdict.value, model.digest, track)] += 1
                    if model.explainer is not None:
                        result.unexplained.setdefault(model.digest, (model, []))[1].append(i)
            else:
                verdict, reasons = Verdict.APPROVE, []
            decisions.append(
                (
                    record,
                    DecisionRecord(
                        tx.tx_id,
                        tx.user_id,
                        verdict,
                        clipped[i],
                        model.digest,
                        Track.CANARY if on_canary else Track.STABLE,
                        reasons,
                        features,
                        event_ts,
                        decided,
                    ),
                )
            )
            if candidate_score is not None and shadow:
                assert candidate is not None
                verdict, reasons = decide(
                    tx.amount, row, candidate_score, candidate.thresholds, self.rules
                )
                verdicts[(verdict.value, candidate.digest, Track.SHADOW.value)] += 1
                shadow_scores.append(min(max(candidate_score, 0.0), 1.0))
                shadows.append(
                    (
                        record,
                        DecisionRecord(
                            tx.tx_id,
                            tx.user_id,
                            verdict,
                            min(max(candidate_score, 0.0), 1.0),
                            candidate.digest,
                            Track.SHADOW,
                            reasons,
                            features,
                            event_ts,
                            decided,
                        ),
                    )
                )
        self._tally(result.tally, batch, scores, clipped_scores, shadow_scores)
        _lap(result, "rules", clock)
        return result

    def explain(self, result: BatchResult, matrix: Matrix) -> None:
        """TreeSHAP for the acting FLAG/BLOCK decisions: their explanation, and reasons for
        the features that raised the risk most. Computation only (numpy, mostly outside the
        GIL), safe off the loop; a batch of APPROVEs costs nothing here."""
        if not result.unexplained:
            return
        clock = time.perf_counter()
        decisions = result.decisions
        for model, rows in result.unexplained.values():
            assert model.explainer is not None
            for i, explanation in zip(rows, model.explainer.explain(matrix[rows]), strict=True):
                record, decision = decisions[i]
                reasons = decision.reasons + feature_reasons(explanation)
                decisions[i] = (record, decision._replace(reasons=reasons, explanation=explanation))
        result.unexplained = {}
        _lap(result, "explain", clock)

    def _tally(
        self,
        tally: Tally,
        batch: DecodedBatch,
        scores: Scores,
        clipped: Matrix,
        shadow_scores: list[float],
    ) -> None:
        """Scores by model and track, and the APPROVE counts the per-row loop left out."""
        on_canary = np.zeros(len(clipped), dtype=bool)
        if scores.candidate and not scores.routing.shadow:
            on_canary[np.fromiter(scores.candidate.keys(), dtype=np.intp)] = True
        groups = [((self.stable.digest, Track.STABLE.value), clipped[~on_canary])]
        if self.candidate is not None:
            groups.append(((self.candidate.digest, Track.CANARY.value), clipped[on_canary]))
            if shadow_scores:
                groups.append(
                    ((self.candidate.digest, Track.SHADOW.value), np.asarray(shadow_scores))
                )
        for (digest, track), values in groups:
            if len(values):
                tally.scores[(digest, track)] = values
                if track != Track.SHADOW.value:
                    others = sum(
                        n for (_, d, t), n in tally.verdicts.items() if d == digest and t == track
                    )
                    tally.verdicts[(Verdict.APPROVE.value, digest, track)] = len(values) - others
        tally.event_seconds = np.fromiter(
            (tx.ts for _, tx in batch.good), dtype=np.float64, count=len(batch.good)
        )


def _lap(result: BatchResult, stage: str, since: float) -> float:
    now = time.perf_counter()
    result.stage_seconds[stage] = now - since
    return now
