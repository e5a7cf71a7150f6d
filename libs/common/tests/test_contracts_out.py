"""decisions.v1 and the DLQ headers: round trips and the edges that broke them."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from fraudpipe_common.contracts.decisions import (
    Decision,
    DecisionRecord,
    Reason,
    Track,
    Verdict,
)
from fraudpipe_common.contracts.dlq import Rejection

DIGEST = "sha256:" + "0f" * 32
NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


def decision(**changes: object) -> Decision:
    fields: dict[str, object] = {
        "tx_id": "t1",
        "user_id": "u1",
        "decision": "BLOCK",
        "score": 0.97,
        "model_digest": DIGEST,
        "track": "canary",
        "reasons": [{"code": "model_score", "detail": "0.97 >= 0.05"}],
        "features": {"amount": 12.5},
        "event_ts": NOW,
        "decided_ts": NOW,
    }
    return Decision.model_validate(fields | changes)


def test_a_decision_round_trips_through_json() -> None:
    original = decision()
    assert Decision.from_json(original.to_json()) == original
    assert original.decision is Verdict.BLOCK
    assert original.track is Track.CANARY
    assert original.reasons == [Reason(code="model_score", detail="0.97 >= 0.05")]


instants = st.datetimes(
    min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
)
names = st.text(min_size=1, max_size=20)


@given(
    tx_id=names,
    verdict=st.sampled_from(Verdict),
    score=st.floats(0.0, 1.0),
    track=st.sampled_from(Track),
    reasons=st.lists(st.builds(Reason, code=names, detail=st.text(max_size=80)), max_size=4),
    features=st.dictionaries(names, st.floats(allow_nan=False, allow_infinity=False)),
    event_ts=instants,
    decided_ts=instants,
)
def test_the_scorer_record_writes_the_bytes_the_contract_writes(
    tx_id: str,
    verdict: Verdict,
    score: float,
    track: Track,
    reasons: list[Reason],
    features: dict[str, float],
    event_ts: dt.datetime,
    decided_ts: dt.datetime,
) -> None:
    record = DecisionRecord(
        tx_id, "u1", verdict, score, DIGEST, track, reasons, features, event_ts, decided_ts
    )
    model = record.to_model()
    assert record.to_json() == model.to_json()
    assert Decision.from_json(record.to_json()) == model


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model_digest": "latest"}, "model_digest"),
        ({"score": 1.5}, "score"),
        ({"decision": "MAYBE"}, "decision"),
        ({"track": "blue"}, "track"),
    ],
)
def test_a_bad_decision_is_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        decision(**change)
    assert field in {str(e["loc"][0]) for e in invalid.value.errors()}


def test_rejection_headers_round_trip() -> None:
    rejection = Rejection("invalid_field", "amount: expected …", "transactions.v1", 3, 1234)
    assert Rejection.from_headers(rejection.headers()) == rejection


def test_a_long_detail_is_cut_on_a_character_boundary() -> None:
    rejection = Rejection("invalid_field", "€" * 600, "t", 0, 0)
    headers = dict(rejection.headers())
    assert len(headers["error.detail"]) <= 1024
    restored = Rejection.from_headers(rejection.headers())
    assert restored.detail == "€" * (1024 // 3)
