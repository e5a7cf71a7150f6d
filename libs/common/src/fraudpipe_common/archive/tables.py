"""The archive's Parquet schemas, and Kafka records turned into tables (pure).

Decisions keep every field of `decisions.v1`; the feature snapshot becomes one float64 column
per feature (`feature_<name>`), so a training job reads the columns it needs without parsing
JSON. Reasons are a list of {code, detail} structs; the explanation, whose shape may grow, is
kept as its JSON text. Every row also says which Kafka partition and offset it came from, so
an audit can prove that nothing is missing or repeated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
import pyarrow as pa

from fraudpipe_common.contracts.decisions import Decision
from fraudpipe_common.contracts.labels import Label
from fraudpipe_common.features import FEATURE_NAMES

FEATURE_PREFIX = "feature_"
TIMESTAMP = pa.timestamp("us", tz="UTC")
REASON = pa.struct([("code", pa.string()), ("detail", pa.string())])
SOURCE_COLUMNS = [
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
]


def feature_column(name: str) -> str:
    return FEATURE_PREFIX + name


@dataclass(frozen=True)
class ArchivedDecision:
    partition: int
    offset: int
    decision: Decision

    @property
    def timestamp(self) -> dt.datetime:
        """Decisions are filed under the hour they were made."""
        return self.decision.decided_ts


@dataclass(frozen=True)
class ArchivedLabel:
    partition: int
    offset: int
    labelled_ts: dt.datetime  # the Kafka record's timestamp: a label carries no time of its own
    label: Label

    @property
    def timestamp(self) -> dt.datetime:
        return self.labelled_ts


def decision_schema(feature_names: Iterable[str] = FEATURE_NAMES) -> pa.Schema:
    return pa.schema(
        [
            pa.field("tx_id", pa.string(), nullable=False),
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("decision", pa.string(), nullable=False),
            pa.field("score", pa.float64(), nullable=False),
            pa.field("model_digest", pa.string(), nullable=False),
            pa.field("track", pa.string(), nullable=False),
            pa.field("reasons", pa.list_(REASON), nullable=False),
            pa.field("explanation", pa.string()),  # JSON, or null when the decision has none
            pa.field("event_ts", TIMESTAMP, nullable=False),
            pa.field("decided_ts", TIMESTAMP, nullable=False),
            *SOURCE_COLUMNS,
            *(pa.field(feature_column(name), pa.float64()) for name in feature_names),
        ]
    )


LABEL_SCHEMA = pa.schema(
    [
        pa.field("tx_id", pa.string(), nullable=False),
        pa.field("is_fraud", pa.bool_(), nullable=False),
        pa.field("scenario", pa.string()),
        pa.field("labelled_ts", TIMESTAMP, nullable=False),
        *SOURCE_COLUMNS,
    ]
)


def decisions_table(records: Sequence[ArchivedDecision]) -> pa.Table:
    """One row per decision. The feature columns are the current definition's, followed by
    any other feature a decision carried (a newer or older model's): nothing is dropped, and a
    feature a decision lacks is null."""
    extra = sorted({n for r in records for n in r.decision.features} - set(FEATURE_NAMES))
    names = [*FEATURE_NAMES, *extra]
    decisions = [r.decision for r in records]
    columns: dict[str, list[object]] = {
        "tx_id": [d.tx_id for d in decisions],
        "user_id": [d.user_id for d in decisions],
        "decision": [d.decision.value for d in decisions],
        "score": [d.score for d in decisions],
        "model_digest": [d.model_digest for d in decisions],
        "track": [d.track.value for d in decisions],
        "reasons": [[r.model_dump() for r in d.reasons] for d in decisions],
        "explanation": [
            None if d.explanation is None else orjson.dumps(d.explanation.model_dump()).decode()
            for d in decisions
        ],
        "event_ts": [d.event_ts for d in decisions],
        "decided_ts": [d.decided_ts for d in decisions],
        "kafka_partition": [r.partition for r in records],
        "kafka_offset": [r.offset for r in records],
    }
    for name in names:
        columns[feature_column(name)] = [d.features.get(name) for d in decisions]
    return pa.Table.from_pydict(columns, schema=decision_schema(names))


def labels_table(records: Sequence[ArchivedLabel]) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "tx_id": [r.label.tx_id for r in records],
            "is_fraud": [r.label.is_fraud for r in records],
            "scenario": [r.label.scenario for r in records],
            "labelled_ts": [r.labelled_ts for r in records],
            "kafka_partition": [r.partition for r in records],
            "kafka_offset": [r.offset for r in records],
        },
        schema=LABEL_SCHEMA,
    )
