"""transactions.v1: the fast decoder and the pydantic model accept and reject the same things."""

from __future__ import annotations

import itertools
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fraudpipe_common.contracts.transactions import (
    InvalidTransactionError,
    Transaction,
    decode_transaction,
    format_utc_timestamp,
)
from fraudpipe_common.synthetic import TrafficConfig, generate

VALID = {
    "tx_id": "t1",
    "ts": "2026-01-01T12:00:00.250Z",
    "user_id": "u1",
    "card_id": "c1",
    "merchant_id": "m1",
    "mcc": "5411",
    "amount": "12.50",
    "currency": "EUR",
    "country": "FR",
    "channel": "pos",
    "device_id": "d1",
}


def test_a_valid_message_decodes_with_extra_fields_kept() -> None:
    tx = decode_transaction(orjson.dumps({**VALID, "loyalty_tier": "gold"}))
    assert tx.amount == 12.5
    assert tx.amount_text == "12.50"
    assert tx.ts == 1767268800.25
    assert tx.raw["loyalty_tier"] == "gold"
    model = Transaction.model_validate({**VALID, "loyalty_tier": "gold"})
    assert model.model_extra == {"loyalty_tier": "gold"}


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"amount": 12.5}, "invalid_field", "amount"),
        ({"amount": "-1"}, "invalid_field", "amount"),
        ({"amount": "1e3"}, "invalid_field", "amount"),
        ({"amount": "0"}, "invalid_field", "amount"),
        ({"ts": "2026-01-01T12:00:00"}, "invalid_field", "ts"),
        ({"ts": "2026-01-01T12:00:00+02:00"}, "invalid_field", "ts"),
        ({"ts": "yesterday"}, "invalid_field", "ts"),
        ({"channel": "phone"}, "invalid_field", "channel"),
        ({"country": "france"}, "invalid_field", "country"),
        ({"currency": "eur"}, "invalid_field", "currency"),
        ({"mcc": 5411}, "invalid_field", "mcc"),
        ({"tx_id": ""}, "invalid_field", "tx_id"),
        ({"user_id": None}, "missing_field", "user_id"),
        ({"ip": 12}, "invalid_field", "ip"),
        ({"amount": "12.50\n"}, "invalid_field", "amount"),
        ({"ts": 1767268800}, "invalid_field", "ts"),
        ({"ts": "2026-01-01T+1:00:00Z"}, "invalid_field", "ts"),
        ({"ts": "2026-01-01T12:00:00.-12Z"}, "invalid_field", "ts"),
        ({"mcc": "54\uff111"}, "invalid_field", "mcc"),  # a full-width digit
        ({"user_id": "u\x001"}, "invalid_field", "user_id"),  # PostgreSQL text holds no NUL
        ({"ip": "10.0.0.1\x00"}, "invalid_field", "ip"),
    ],
)
def test_both_validators_reject_the_same_bad_fields(
    change: dict[str, object], code: str, field: str
) -> None:
    body = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    with pytest.raises(InvalidTransactionError) as rejected:
        decode_transaction(orjson.dumps(body))
    assert rejected.value.code == code
    assert rejected.value.detail.startswith(f"{field}:")
    with pytest.raises(ValidationError) as invalid:
        Transaction.model_validate(body)
    assert field in {str(e["loc"][0]) for e in invalid.value.errors()}


@pytest.mark.parametrize(
    ("data", "code"), [(b"{not json", "malformed_json"), (b"[1, 2]", "not_an_object")]
)
def test_non_objects_are_rejected_with_a_code(data: bytes, code: str) -> None:
    with pytest.raises(InvalidTransactionError) as rejected:
        decode_transaction(data)
    assert rejected.value.code == code


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    error: InvalidTransactionError | None = None
    try:
        decode_transaction(data)
    except InvalidTransactionError as exc:
        error = exc
    if error is not None:
        assert error.code in {"malformed_json", "not_an_object", "missing_field", "invalid_field"}


def test_generated_traffic_is_valid_for_both_validators() -> None:
    for generated in itertools.islice(generate(TrafficConfig(fraud_rate=0.05)), 2000):
        data = orjson.dumps(generated.message())
        tx = decode_transaction(data)
        assert Transaction.model_validate_json(data).tx_id == tx.tx_id
        assert tx.ts == generated.feature_input().ts


def test_timestamps_round_trip_at_millisecond_precision() -> None:
    assert format_utc_timestamp(1767268800.25) == "2026-01-01T12:00:00.250Z"


FIELD_VALUES = {
    "tx_id": st.one_of(st.text(max_size=3), st.just("t" * 129), st.integers(-(2**63), 2**63 - 1)),
    "user_id": st.one_of(st.text(min_size=1, max_size=5), st.none()),
    "mcc": st.sampled_from(
        ["5411", "541", "54111", "54a1", "\u0665\u0664\u0661\u0661", "5411\n", 5411]
    ),
    "amount": st.one_of(
        st.sampled_from(
            [
                "12.50",
                "0",
                "0.0001",
                "1e3",
                "-1",
                "12.50\n",
                " 12",
                "12.12345",
                "1000000000",
                "1000000000.0001",
                "01.5",
                12.5,
                None,
            ]
        ),
        st.decimals(min_value=0, max_value=10**10, places=4).map(str),
    ),
    "currency": st.sampled_from(["EUR", "eur", "EURO", "ÉUR", "EU1", "EUR\n"]),
    "country": st.sampled_from(["FR", "fr", "FRA", "F1", "FR\n", ""]),
    "channel": st.sampled_from(["pos", "ecom", "atm", "transfer", "POS", "phone", 1]),
    "ts": st.sampled_from(
        [
            "2026-01-01T12:00:00Z",
            "2026-01-01T12:00:00.250Z",
            "2026-01-01t12:00:00z",
            "2026-01-01 12:00:00Z",
            "2026-01-01T12:00:00+00:00",
            "2026-01-01T12:00:00+01:00",
            "2026-01-01T12:00:00",
            "2026-02-30T12:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T+1:00:00Z",
            "2026-01-01T 1:00:00Z",
            "2026-01-01T12:00:00.1_0Z",
            "2026-01-01T12:00:00.-12Z",
            "yesterday",
            "200",
            "1767268800",
            "2026-01-01T00:02:037Z",
            "2026-01-01T00:02Z",
            "2026-01-01T00:02:03,5Z",
            "2026-01-01T00:02:03.1234567Z",
            "2026-01-01T00:02:03.123456789Z",
            "2026-01-01T00:02:03.1234567891Z",
            "2026-01-01 00:02:03.123456+00:00",
            1767268800,
        ]
    ),
    "ip": st.one_of(
        st.none(), st.just("198.51.100.7"), st.just("x" * 65), st.integers(-(2**63), 2**63 - 1)
    ),
}


@settings(max_examples=600)
@given(st.fixed_dictionaries({}, optional=FIELD_VALUES))
def test_the_two_validators_accept_exactly_the_same_messages(changes: dict[str, object]) -> None:
    body = {k: v for k, v in {**VALID, **changes}.items() if v is not None}
    data = orjson.dumps(body)
    try:
        fast = decode_transaction(data)
    except InvalidTransactionError:
        fast = None
    try:
        model = Transaction.model_validate_json(data)
    except ValidationError:
        model = None
    assert (fast is None) == (model is None), (body, fast, model)
    if fast is not None and model is not None:
        assert fast.ts == model.ts.timestamp()
        assert Decimal(fast.amount_text) == model.amount
