"""Replay public fraud data sets as transactions.v1, with their labels kept apart.

- PaySim (mobile money simulator): step, type, amount, nameOrig, ..., nameDest, ..., isFraud
- Kaggle "Credit Card Fraud Detection": Time, V1..V28, Amount, Class (no user ids: rows are
  spread over a configurable number of pseudo-users; the PCA components travel as extra fields)

A malformed row is counted and reported with its line number; it never stops the replay.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudpipe_common.contracts.labels import Label
from fraudpipe_common.contracts.transactions import format_utc_timestamp

FORMATS = ("paysim", "kaggle")
DEFAULT_START_TS = 1_767_225_600.0  # 2026-01-01T00:00:00Z

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
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        for index, row in enumerate(reader):
            line = reader.line_num
            report.rows += 1
            try:
                yield adapt(row, index, options)
            except (KeyError, ValueError, TypeError) as exc:
                report.reject(line, _reason(exc))


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing column {exc.args[0]}"
    return str(exc) or type(exc).__name__


def _amount(text: str | None) -> str:
    value = float(text or "")
    if not 0 <= value <= 1e9:
        raise ValueError(f"amount {text!r} is not a positive amount")
    # Both data sets hold zero-amount rows (card verifications); the contract needs a
    # positive amount, so they replay as the smallest one rather than being dropped.
    return f"{value:.2f}" if value >= 0.01 else "0.01"


def _paysim(row: dict[str, str], index: int, options: CsvOptions) -> tuple[dict[str, Any], Label]:
    kind = row["type"]
    if kind not in PAYSIM_TYPES:
        raise ValueError(f"unknown PaySim type {kind!r}")
    channel, mcc = PAYSIM_TYPES[kind]
    step = int(row["step"])  # one step is one hour of simulated time
    user = row["nameOrig"]
    tx_id = f"paysim-{index:09d}"
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


def _kaggle(row: dict[str, str], index: int, options: CsvOptions) -> tuple[dict[str, Any], Label]:
    seconds = float(row["Time"])
    tx_id = f"kaggle-{index:09d}"
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
        message[f"v{k}"] = float(row[f"V{k}"])  # anonymised features, kept as extra fields
    return message, Label(tx_id=tx_id, is_fraud=_flag(row["Class"]), scenario=None)


def _flag(text: str) -> bool:
    if text.strip() not in ("0", "1"):
        raise ValueError(f"label {text!r} is not 0 or 1")
    return text.strip() == "1"
