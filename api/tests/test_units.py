"""Pure logic: durations in query strings and pagination cursors."""

from __future__ import annotations

import datetime as dt

import pytest

from fraudpipe_api.durations import parse_duration
from fraudpipe_api.queries import CursorError, decode_cursor, encode_cursor


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("250ms", 0.25), ("15m", 900.0), ("1h", 3600.0), ("7d", 604_800.0), ("2.5", 2.5)],
)
def test_durations_read_as_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5 minutes", "-1s", "1e3s", "nan", "5w"])
def test_other_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_cursor_round_trips_its_position() -> None:
    at = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    cursor = encode_cursor([at.isoformat(), "tx-1"])
    assert decode_cursor(cursor, (dt.datetime, str)) == [at, "tx-1"]
    assert decode_cursor(encode_cursor([42]), (int,)) == [42]


POSITION = (dt.datetime, str)


@pytest.mark.parametrize(
    ("cursor", "kinds"),
    [
        ("!!!", POSITION),
        (encode_cursor(["2026-01-01T00:00:00", "tx"]), POSITION),  # no time zone
        (encode_cursor(["yesterday", "tx"]), POSITION),
        (encode_cursor(["2026-01-01T00:00:00+00:00"]), POSITION),  # one value short
        (encode_cursor(["2026-01-01T00:00:00+00:00", "a\x00b"]), POSITION),
        (encode_cursor([-1]), (int,)),
        (encode_cursor(["1"]), (int,)),
    ],
)
def test_cursors_this_api_did_not_hand_out_are_refused(
    cursor: str, kinds: tuple[type, ...]
) -> None:
    with pytest.raises(CursorError):
        decode_cursor(cursor, kinds)
