"""Replay public fraud data sets as transactions.v1, with their labels kept apart.

- PaySim (mobile money simulator): step, type, amount, nameOrig, ..., nameDest, ..., isFraud
- Kaggle "Credit Card Fraud Detection": Time, V1..V28, Amount, Class (no user ids: rows are
  spread over a configurable number of pseudo-users; the PCA components travel as extra fields)

A malformed row is counted and reported with its line number; it never stops the replay. Every
message is checked with the scorer's own decoder before it is handed on, so a row that would
reach the DLQ is rejected here instead.

tx_ids are `<format>-<file id>-<row>`, the file id taken from the file's size and first 64 KiB:
replaying the same file again gives the same ids (idempotent downstream), while another file
never collides with it.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fraudpipe_common.contracts.labels import Label
from fraudpipe_common.contracts.transactions import (
    InvalidTransactionError,
    decode_transaction,
    format_utc_timestamp,
)

FORMATS = ("paysim", "kaggle")
DEFAULT_START_TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FILE_ID_PREFIX_BYTES = 64 * 1024
# What a bad row can raise while it is adapted: each becomes a rejected row, never a crash.
ROW_ERRORS = (ValueError, TypeError, KeyError, OverflowError, AttributeError, csv.Error)

# PaySim transaction types mapped to the contract's channel and a merchant category.
PAYSIM_TYPES = {
    "PAYMENT": ("ecom", "5999"),
    "TRANSFER": ("transfer", "4829"),
    "CASH_OUT": ("atm", "6011"),
    "CASH_IN": ("atm", "6011"),
    "DEBIT": ("pos", "5411"),
}


@dataclass
class CsvReport:
    rows: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)  # "line N: reason", the first 100

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.problems) < 100:
            self.problems.append(f"line {line}: {reason}")


@dataclass(frozen=True)
class CsvOptions:
    format: str
    currency: str = "USD"
    country: str = "US"
    kaggle_users: int = 5_000
    start_ts: float = DEFAULT_START_TS


def read_csv(
    path: Path, options: CsvOptions, report: CsvReport
) -> Iterator[tuple[dict[str, Any], Label]]:
    if options.format not in FORMATS:
        raise ValueError(
            f"--csv-format must be one of {', '.join(FORMATS)}, not {options.format!r}"
        )
    adapt = _paysim if options.format == "paysim" else _kaggle
    prefix = f"{options.format}-{file_id(path)}"
    # surrogateescape: a byte that is not UTF-8 costs its row, not the whole replay.
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        reader = csv.DictReader(handle)
        index = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a field over the size limit: that row only
                report.rows += 1
                report.reject(reader.reader.line_num, str(exc))  # DictReader's lags on errors
                index += 1
                continue
            line = reader.line_num
            report.rows += 1
            try:
                message, label = adapt(_complete(row), f"{prefix}-{index:09d}", index, options)
                decode_transaction(orjson.dumps(message))  # what the scorer would accept
            except ROW_ERRORS as exc:
                report.reject(line, _reason(exc))
            else:
                yield message, label
            index += 1


def file_id(path: Path) -> str:
    """8 hex digits from the file's size and first 64 KiB: cheap on a multi-GB file."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(FILE_ID_PREFIX_BYTES))
    return digest.hexdigest()[:8]


def _complete(row: dict[str | None, Any]) -> dict[str, str]:
    """The row as strings, or an error naming what is wrong with it as a whole."""
    values = row.values()
    if None in values:  # DictReader fills a short row's missing columns with None
        missing = [str(name) for name, value in row.items() if value is None]
        plural = "s" if len(missing) > 1 else ""
        raise ValueError(f"missing column{plural} {', '.join(missing)}")
    try:
        "".join(value for value in values if type(value) is str).encode()
    except UnicodeEncodeError:  # surrogates stand for bytes that were not UTF-8
        raise ValueError("not valid UTF-8") from None
    return row  # type: ignore[return-value]  # checked above: no None left


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing column {exc.args[0]}"
    if isinstance(exc, InvalidTransactionError):
        return exc.detail
    return str(exc) or type(exc).__name__


def _finite(name: str, text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{name} {text!r} is not a finite number")
    return value


def _amount(text: str | None) -> str:
    value = float(text or "")
    if not 0 <= value <= 1e9:
        raise ValueError(f"amount {text!r} is not a positive amount")
    # Both data sets hold zero-amount rows (card verifications); the contract needs a
    # positive amount, so they replay as the smallest one rather than being dropped.
    return f"{value:.2f}" if value >= 0.01 else "0.01"


def _paysim(
    row: dict[str, str], tx_id: str, index: int, options: CsvOptions
) -> tuple[dict[str, Any], Label]:
    kind = row["type"]
    if kind not in PAYSIM_TYPES:
        raise ValueError(f"unknown PaySim type {kind!r}")
    channel, mcc = PAYSIM_TYPES[kind]
    step = int(row["step"])  # one step is one hour of simulated time
    user = row["nameOrig"]
    message = {
        "tx_id": tx_id,
        "ts": format_utc_timestamp(options.start_ts + step * 3600 + (index % 3600)),
        "user_id": user,
        "card_id": user,
        "merchant_id": row["nameDest"],
        "mcc": mcc,
        "amount": _amount(row["amount"]),
        "currency": options.currency,
        "country": options.country,
        "channel": channel,
        "device_id": f"paysim-device-{user}",
    }
    return message, Label(tx_id=tx_id, is_fraud=_flag(row["isFraud"]), scenario=None)


def _kaggle(
    row: dict[str, str], tx_id: str, index: int, options: CsvOptions
) -> tuple[dict[str, Any], Label]:
    seconds = _finite("Time", row["Time"])
    user_bucket = int(hashlib.blake2b(str(index).encode(), digest_size=4).hexdigest(), 16)
    user = f"kaggle-u{user_bucket % options.kaggle_users:05d}"
    message: dict[str, Any] = {
        "tx_id": tx_id,
        "ts": format_utc_timestamp(options.start_ts + seconds),
        "user_id": user,
        "card_id": user,
        "merchant_id": "kaggle-merchant",
        "mcc": "5999",
        "amount": _amount(row["Amount"]),
        "currency": "EUR",
        "country": options.country,
        "channel": "pos",
        "device_id": f"kaggle-device-{user}",
    }
    for k in range(1, 29):
        # Anonymised features, kept as extra fields; JSON has no NaN or infinity.
        message[f"v{k}"] = _finite(f"V{k}", row[f"V{k}"])
    return message, Label(tx_id=tx_id, is_fraud=_flag(row["Class"]), scenario=None)


def _flag(text: str) -> bool:
    if text.strip() not in ("0", "1"):
        raise ValueError(f"label {text!r} is not 0 or 1")
    return text.strip() == "1"
