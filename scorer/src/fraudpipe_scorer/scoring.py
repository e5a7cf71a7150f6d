"""One micro-batch from raw records to decisions: decode, features, inference, rules.

The only I/O is the feature store's one Redis round trip; everything else is computation, so
the service loop can retry this whole step after a Redis failure (the feature update is
idempotent per tx_id, a retried batch counts nothing twice).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fraudpipe_common.contracts.decisions import Decision, Track
from fraudpipe_common.contracts.dlq import Rejection
from fraudpipe_common.contracts.transactions import (
    InvalidTransactionError,
    Tx,
    decode_transaction,
)
from fraudpipe_common.features import FEATURE_NAMES, FeatureInput, OnlineFeatureStore, assemble
from fraudpipe_scorer.config import RuleSettings
from fraudpipe_scorer.model import LoadedModel
from fraudpipe_scorer.routing import Router
from fraudpipe_scorer.rules import decide


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

    decisions: list[tuple[Record, Decision]] = field(default_factory=list)
    shadow: list[tuple[Record, Decision]] = field(default_factory=list)
    rejections: list[tuple[Record, Rejection]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class DecodedBatch:
    """A batch between decoding and its decisions."""

    records: list[Record]
    result: BatchResult
    good: list[tuple[Record, Tx]]
    inputs: list[FeatureInput]


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
        return self.finish(batch, await self.fetch_features(batch))

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

    async def fetch_features(self, batch: DecodedBatch) -> list[tuple[float, ...]]:
        """The batch's one Redis round trip: records the transactions, returns their state."""
        started = time.perf_counter()
        stateful = await self.features.update(batch.inputs) if batch.inputs else []
        batch.result.stage_seconds["features"] = time.perf_counter() - started
        return stateful

    def finish(self, batch: DecodedBatch, stateful: Sequence[tuple[float, ...]]) -> BatchResult:
        """Inference and rules: computation only."""
        result, good = batch.result, batch.good
        if not good:
            return result
        clock = time.perf_counter()
        rows = [assemble(i, s) for i, s in zip(batch.inputs, stateful, strict=True)]
        matrix = np.asarray(rows, dtype=np.float32)
        stable_scores = self.stable.score(matrix).tolist()
        routing = self.router.state
        candidate_scores: list[float] | None = None
        if self.candidate is not None and (routing.shadow or routing.weight > 0):
            candidate_scores = self.candidate.score(matrix).tolist()
        clock = _lap(result, "inference", clock)

        decided = dt.datetime.now(dt.UTC)
        for i, (record, tx) in enumerate(good):
            row = rows[i]
            if candidate_scores is not None and self.router.to_candidate(tx.user_id):
                acting = self._decision(tx, row, candidate_scores[i], Track.CANARY, decided)
            else:
                acting = self._decision(tx, row, stable_scores[i], Track.STABLE, decided)
            result.decisions.append((record, acting))
            if candidate_scores is not None and routing.shadow:
                shadow = self._decision(tx, row, candidate_scores[i], Track.SHADOW, decided)
                result.shadow.append((record, shadow))
        _lap(result, "rules", clock)
        return result

    def _decision(
        self, tx: Tx, row: list[float], score: float, track: Track, decided: dt.datetime
    ) -> Decision:
        model = self.stable if track is Track.STABLE else self.candidate
        assert model is not None
        verdict, reasons = decide(tx.amount, row, score, model.thresholds, self.rules)
        return Decision(
            tx_id=tx.tx_id,
            user_id=tx.user_id,
            decision=verdict,
            score=min(max(score, 0.0), 1.0),
            model_digest=model.digest,
            track=track,
            reasons=reasons,
            features=dict(zip(FEATURE_NAMES, row, strict=True)),
            event_ts=dt.datetime.fromtimestamp(tx.ts, dt.UTC),
            decided_ts=decided,
        )


def _lap(result: BatchResult, stage: str, since: float) -> float:
    now = time.perf_counter()
    result.stage_seconds[stage] = now - since
    return now
