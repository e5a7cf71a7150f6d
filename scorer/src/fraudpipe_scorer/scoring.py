"""One micro-batch from raw records to decisions: decode, features, inference, rules.

The only I/O is the feature store's one Redis round trip; everything else is computation, so
the service loop can retry this whole step after a Redis failure (the feature update is
idempotent per tx_id, a retried batch counts nothing twice). Inference is a pure function of
the batch's matrix, so the service runs it in a worker thread (ONNX Runtime releases the GIL)
while the event loop moves the neighbouring batches along.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from fraudpipe_common.contracts.decisions import DecisionRecord, Track
from fraudpipe_common.contracts.dlq import Rejection
from fraudpipe_common.contracts.transactions import (
    InvalidTransactionError,
    Tx,
    decode_transaction,
)
from fraudpipe_common.features import (
    FEATURE_NAMES,
    STATELESS_FEATURES,
    FeatureInput,
    OnlineFeatureStore,
    stateless_features,
)
from fraudpipe_common.inference import LoadedModel
from fraudpipe_common.rules import RuleSettings, decide
from fraudpipe_scorer.routing import Router, Routing

Matrix = npt.NDArray[np.float64]


class Record(Protocol):
    """The fields of aiokafka's ConsumerRecord that scoring reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass
class BatchResult:
    """Everything one batch produced; each item keeps the record it came from, whose
    partition decides which Kafka transaction carries it."""

    decisions: list[tuple[Record, DecisionRecord]] = field(default_factory=list)
    shadow: list[tuple[Record, DecisionRecord]] = field(default_factory=list)
    rejections: list[tuple[Record, Rejection]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)


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
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.features = features
        self.stable = stable
        self.candidate = candidate
        self.router = router
        self.rules = rules

    async def score(self, records: Sequence[Record]) -> BatchResult:
        """The whole batch in one go (the service splits it to overlap batches)."""
        batch = self.decode(records)
        matrix = self.matrix(batch, await self.fetch_features(batch))
        return self.finish(batch, matrix, self.infer(batch, matrix))

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
                good.append((record, decode_transaction(record.value)))
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
        candidate: dict[int, float] = {}
        if self.candidate is not None and (routing.shadow or routing.weight > 0):
            rows = [
                i
                for i, (_, tx) in enumerate(batch.good)
                if routing.shadow or routing.to_candidate(tx.user_id)
            ]
            if rows:
                scored = self.candidate.score(inputs[rows]).tolist()
                candidate = dict(zip(rows, scored, strict=True))
        _lap(batch.result, "inference", clock)
        return Scores(routing, stable, candidate)

    def finish(self, batch: DecodedBatch, matrix: Matrix, scores: Scores) -> BatchResult:
        """Rules and decisions: computation only."""
        result = batch.result
        if not batch.good:
            return result
        clock = time.perf_counter()
        decided = dt.datetime.now(dt.UTC)
        shadow = scores.routing.shadow
        for i, ((record, tx), row) in enumerate(zip(batch.good, matrix.tolist(), strict=True)):
            features = dict(zip(FEATURE_NAMES, row, strict=True))
            event_ts = dt.datetime.fromtimestamp(tx.ts, dt.UTC)
            candidate = scores.candidate.get(i)
            if candidate is not None and not shadow:
                acting = self._decision(
                    tx, row, features, candidate, Track.CANARY, event_ts, decided
                )
            else:
                acting = self._decision(
                    tx, row, features, scores.stable[i], Track.STABLE, event_ts, decided
                )
            result.decisions.append((record, acting))
            if candidate is not None and shadow:
                result.shadow.append(
                    (
                        record,
                        self._decision(
                            tx, row, features, candidate, Track.SHADOW, event_ts, decided
                        ),
                    )
                )
        _lap(result, "rules", clock)
        return result

    def _decision(
        self,
        tx: Tx,
        row: list[float],
        features: dict[str, float],
        score: float,
        track: Track,
        event_ts: dt.datetime,
        decided: dt.datetime,
    ) -> DecisionRecord:
        model = self.stable if track is Track.STABLE else self.candidate
        assert model is not None
        verdict, reasons = decide(tx.amount, row, score, model.thresholds, self.rules)
        return DecisionRecord(
            tx.tx_id,
            tx.user_id,
            verdict,
            min(max(score, 0.0), 1.0),
            model.digest,
            track,
            reasons,
            features,
            event_ts,
            decided,
        )


def _lap(result: BatchResult, stage: str, since: float) -> float:
    now = time.perf_counter()
    result.stage_seconds[stage] = now - since
    return now
