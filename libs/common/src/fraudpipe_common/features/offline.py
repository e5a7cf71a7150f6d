"""Stateful features in plain Python, over a stream replayed in order (training, evaluation).

Mirrors online.lua operation for operation (same doubles, same integer window sums), so the
two agree on the same ordered stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fraudpipe_common.features.definition import (
    AMOUNT_SCALE,
    NO_PREVIOUS_SECONDS,
    WINDOWS,
    ZSCORE_CLIP,
    ZSCORE_FLOOR,
    FeatureInput,
)


@dataclass(frozen=True, slots=True)
class _Event:
    ts: float
    units: int
    country: str
    device: str


@dataclass
class _UserState:
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    last_ts: float | None = None
    events: list[_Event] = field(default_factory=list)
    countries: dict[str, int] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)
    merchants: set[str] = field(default_factory=set)


class OfflineFeatureStore:
    """In-memory per-user state; `process` is idempotent per tx_id like the online store."""

    def __init__(self) -> None:
        self._users: dict[str, _UserState] = {}
        self._seen: dict[str, tuple[float, ...]] = {}

    def process(self, tx: FeatureInput) -> tuple[float, ...]:
        if (known := self._seen.get(tx.tx_id)) is not None:
            return known
        user = self._users.setdefault(tx.user_id, _UserState())
        values = _step(user, tx)
        self._seen[tx.tx_id] = values
        return values


def _step(user: _UserState, tx: FeatureInput) -> tuple[float, ...]:
    ts, x = tx.ts, tx.log_amount
    prior = user.n
    zscore = 0.0
    if prior >= 2:
        std = max(math.sqrt(user.m2 / (prior - 1)), ZSCORE_FLOOR)
        zscore = min(max((x - user.mean) / std, -ZSCORE_CLIP), ZSCORE_CLIP)
    since_last = NO_PREVIOUS_SECONDS if user.last_ts is None else max(ts - user.last_ts, 0.0)

    home_mismatch = 0.0
    if user.countries:
        best = max(user.countries.values())
        home = min((c for c, n in user.countries.items() if n == best), key=str.encode)
        home_mismatch = float(tx.country != home)
    new_country = float(tx.country not in user.countries)
    new_device = float(tx.device_id not in user.devices)
    new_merchant = float(tx.merchant_id not in user.merchants)

    current = _Event(ts, tx.amount_units, tx.country, tx.device_id)
    cutoff = ts - WINDOWS["24h"]
    in_day = [e for e in user.events if cutoff < e.ts <= ts] + [current]
    counts, sums = [], []
    for width in WINDOWS.values():
        lower = ts - width
        inside = [e.units for e in in_day if e.ts > lower]
        counts.append(float(len(inside)))
        sums.append(sum(inside) / AMOUNT_SCALE)
    distinct_countries = float(len({e.country for e in in_day}))
    distinct_devices = float(len({e.device for e in in_day}))

    user.events = [e for e in [*user.events, current] if e.ts > cutoff]
    user.n = prior + 1
    delta = x - user.mean
    user.mean += delta / user.n
    user.m2 += delta * (x - user.mean)
    user.last_ts = ts
    user.countries[tx.country] = user.countries.get(tx.country, 0) + 1
    user.devices.add(tx.device_id)
    user.merchants.add(tx.merchant_id)

    return (
        float(prior),
        zscore,
        since_last,
        *counts,
        *sums,
        distinct_countries,
        distinct_devices,
        new_merchant,
        new_device,
        new_country,
        home_mismatch,
    )
