"""The traffic: everyday purchases on a simulated clock, with fraud scenarios woven in.

Everyday events arrive as a Poisson process whose rate follows each user's daily rhythm.
Fraud scenarios start at random moments, pick a victim, and schedule their own events
(card testing bursts, account takeover, velocity bursts, amount outliers, impossible
travel); both streams are merged in timestamp order. Same seed, same stream.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fraudpipe_common.contracts.transactions import format_utc_timestamp, parse_utc_timestamp
from fraudpipe_common.features.definition import FeatureInput
from fraudpipe_common.synthetic.population import Population, PopulationConfig
from fraudpipe_common.synthetic.world import (
    CARD_TESTING_CATEGORIES,
    CATEGORIES,
    COUNTRIES,
    HIGH_VALUE_CATEGORIES,
)

SCENARIOS = (
    "card_testing",
    "account_takeover",
    "velocity_burst",
    "amount_outlier",
    "impossible_travel",
)
# Mean number of transactions per scenario, used to turn a fraud rate into a start rate.
_MEAN_EVENTS = {
    "card_testing": 15.0,
    "account_takeover": 2.5,
    "velocity_burst": 13.0,
    "amount_outlier": 1.0,
    "impossible_travel": 2.0,
}


@dataclass(frozen=True)
class TrafficConfig:
    population: PopulationConfig = field(default_factory=PopulationConfig)
    fraud_rate: float = 0.01  # share of transactions that belong to a fraud scenario
    start_ts: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    seed: int = 7
    # Part of every tx_id. Two runs with the same seed are different transactions (other
    # timestamps) and must not share ids: stores deduplicate on tx_id.
    run_id: str | None = None

    @property
    def id_prefix(self) -> str:
        return f"tx-{self.seed}-{self.run_id}-" if self.run_id else f"tx-{self.seed}-"


@dataclass(frozen=True, slots=True)
class GeneratedTransaction:
    tx_id: str
    ts: float
    user_id: str
    card_id: str
    merchant_id: str
    mcc: str
    amount_text: str
    currency: str
    country: str
    channel: str
    device_id: str
    ip: str | None
    is_fraud: bool
    scenario: str | None

    def message(self) -> dict[str, Any]:
        """The transactions.v1 body (no label: labels never travel with the transaction)."""
        body = {
            "tx_id": self.tx_id,
            "ts": format_utc_timestamp(self.ts),
            "user_id": self.user_id,
            "card_id": self.card_id,
            "merchant_id": self.merchant_id,
            "mcc": self.mcc,
            "amount": self.amount_text,
            "currency": self.currency,
            "country": self.country,
            "channel": self.channel,
            "device_id": self.device_id,
        }
        if self.ip is not None:
            body["ip"] = self.ip
        return body

    def feature_input(self) -> FeatureInput:
        # The timestamp exactly as a consumer of the message decodes it (milliseconds).
        ts = parse_utc_timestamp(format_utc_timestamp(self.ts))
        return FeatureInput.of(self)._replace(ts=ts)


class _Draws:
    """Random numbers drawn from numpy in blocks: one scalar draw per call is the producer's
    hot path, and a list pop is an order of magnitude cheaper than a numpy scalar call."""

    def __init__(self, rng: np.random.Generator, block: int = 65_536) -> None:
        self.rng, self.block = rng, block
        self._uniform: list[float] = []
        self._normal: list[float] = []
        self._exponential: list[float] = []

    def uniform(self) -> float:
        if not self._uniform:
            self._uniform = self.rng.random(self.block).tolist()
        return self._uniform.pop()

    def below(self, n: int) -> int:
        return int(self.uniform() * n)

    def normal(self) -> float:
        if not self._normal:
            self._normal = self.rng.standard_normal(self.block).tolist()
        return self._normal.pop()

    def exponential(self) -> float:
        if not self._exponential:
            self._exponential = self.rng.standard_exponential(self.block).tolist()
        return self._exponential.pop()

    def everyday_rows(self) -> list[list[float]]:
        """Blocks of the draws one everyday transaction needs, one row each:
        inter-arrival (exponential), six uniforms, the amount's normal deviate."""
        rows = np.empty((self.block // 8, 8))
        rows[:, 0] = self.rng.standard_exponential(len(rows))
        rows[:, 1:7] = self.rng.random((len(rows), 6))
        rows[:, 7] = self.rng.standard_normal(len(rows))
        return rows.tolist()


_MCCS = list(CATEGORIES)
_MCC_CUMULATIVE = np.cumsum([CATEGORIES[m][0] for m in _MCCS]).tolist()


class _World:
    """Random draws about users and merchants, all from one seeded generator."""

    def __init__(self, population: Population, rng: np.random.Generator) -> None:
        self.p = population
        self.rng = rng
        self.draws = _Draws(rng)
        self.countries = list(COUNTRIES)
        self.new_devices = 0
        self.mu = population.amount_mu.tolist()
        self.sigma = population.amount_sigma.tolist()
        self.favourites: list[list[int]] = population.favourites.tolist()

    def merchant(self, country: str, mcc: str) -> int:
        local = self.p.merchants_by_country_mcc.get((country, mcc))
        if local:
            return local[self.draws.below(len(local))]
        return self.draws.below(len(self.p.merchant_ids))

    def everyday_category(self) -> str:
        return _MCCS[
            bisect.bisect_right(_MCC_CUMULATIVE, self.draws.uniform() * _MCC_CUMULATIVE[-1])
        ]

    def foreign_country(self, home: str, far: bool) -> str:
        region = COUNTRIES[home][1]
        options = [c for c in self.countries if c != home and (COUNTRIES[c][1] != region) == far]
        return options[self.draws.below(len(options))]

    def fresh_device(self, user: int) -> str:
        self.new_devices += 1
        return f"dev-{user:07d}-n{self.new_devices}"

    def amount(self, user: int, scale: float, normal: float | None = None) -> str:
        deviate = self.draws.normal() if normal is None else normal
        value = math.exp(self.mu[user] + self.sigma[user] * deviate) * scale
        return f"{min(max(value, 0.5), 50_000.0):.2f}"

    def ip(self, user: int, foreign: bool) -> str:
        # Documentation-only address ranges: these are data, never contacted.
        block = "203.0.113" if foreign else "198.51.100"
        return f"{block}.{(user * 7 + (97 if foreign else 0)) % 254 + 1}"


def generate(config: TrafficConfig) -> Iterator[GeneratedTransaction]:
    """An endless, time-ordered stream; take what you need with itertools.islice."""
    population = Population.build(config.population)
    rng = np.random.default_rng(config.seed)
    world = _World(population, rng)
    draws = world.draws
    hourly = population.hourly_weights() * population.daily_rate[None, :]
    cumulative = np.cumsum(hourly, axis=1)
    totals: list[float] = (cumulative[:, -1] / 86400.0).tolist()  # events/s per UTC hour
    mean_events = sum(_MEAN_EVENTS.values()) / len(_MEAN_EVENTS)
    start_probability = config.fraud_rate / (mean_events * max(1.0 - config.fraud_rate, 1e-9))

    pending: list[tuple[float, int, GeneratedTransaction]] = []  # scheduled fraud events
    counter = 0
    now = config.start_ts
    users_buffer: list[int] = []
    rows: list[list[float]] = []
    buffer_hour = -1
    prefix = config.id_prefix
    while True:
        hour = int(now // 3600) % 24
        if hour != buffer_hour or not users_buffer:
            picks = rng.random(2048) * cumulative[hour, -1]
            users_buffer = np.searchsorted(cumulative[hour], picks)[::-1].tolist()
            buffer_hour = hour
        if not rows:
            rows = draws.everyday_rows()
        row = rows.pop()
        now += row[0] / totals[hour]
        while pending and pending[0][0] <= now:
            yield heapq.heappop(pending)[2]
        user = users_buffer.pop()
        counter += 1
        yield _everyday(world, user, now, f"{prefix}{counter:010d}", row)
        if row[6] < start_probability:
            scenario = SCENARIOS[draws.below(len(SCENARIOS))]
            victim = draws.below(population.size)
            for offset, event in enumerate(
                _scenario(world, scenario, victim, now, prefix, counter)
            ):
                heapq.heappush(pending, (event.ts, offset + counter * 100, event))


def _everyday(
    world: _World, user: int, ts: float, tx_id: str, row: list[float]
) -> GeneratedTransaction:
    _, roll, pick, favourite, primary, which, fresh, normal = row
    p = world.p
    home = p.home[user]
    country = home
    if roll < 0.015:
        country = world.foreign_country(home, far=False)  # a trip nearby
    elif roll < 0.018:
        country = world.foreign_country(home, far=True)  # a trip far away
    if country == home and pick < 0.85:
        merchant = world.favourites[user][int(favourite * 12)]
        mcc = p.merchant_mcc[merchant]
    else:
        mcc = world.everyday_category()
        merchant = world.merchant(country, mcc)
    devices = p.devices[user]
    device = devices[0] if primary < 0.8 else devices[int(which * len(devices))]
    if fresh < 0.004:
        device = world.fresh_device(user)  # a new phone: legitimate, and looks new
        devices.append(device)
    channel = CATEGORIES[mcc][2]
    return GeneratedTransaction(
        tx_id=tx_id,
        ts=ts,
        user_id=p.user_ids[user],
        card_id=p.cards[user],
        merchant_id=p.merchant_ids[merchant],
        mcc=mcc,
        amount_text=world.amount(user, CATEGORIES[mcc][1], normal),
        currency=COUNTRIES[country][0],
        country=country,
        channel=channel,
        device_id=device,
        ip=world.ip(user, country != home) if channel == "ecom" else None,
        is_fraud=False,
        scenario=None,
    )


def _scenario(
    world: _World, scenario: str, user: int, start: float, prefix: str, counter: int
) -> list[GeneratedTransaction]:
    p, rng = world.p, world.rng
    home = p.home[user]
    events: list[
        tuple[float, str, str, str, str, str]
    ] = []  # (ts, mcc, amount, country, device, channel)
    if scenario == "card_testing":
        device, country = (
            world.fresh_device(user),
            world.foreign_country(home, far=rng.random() < 0.5),
        )
        t = start
        for _ in range(int(rng.integers(8, 23))):
            t += float(rng.uniform(3, 25))
            mcc = CARD_TESTING_CATEGORIES[int(rng.integers(len(CARD_TESTING_CATEGORIES)))]
            events.append((t, mcc, f"{rng.uniform(0.5, 3.0):.2f}", country, device, "ecom"))
        if rng.random() < 0.5:
            events.append(
                (
                    t + float(rng.uniform(30, 300)),
                    "5732",
                    f"{rng.uniform(200, 900):.2f}",
                    country,
                    device,
                    "ecom",
                )
            )
    elif scenario == "account_takeover":
        device, country = (
            world.fresh_device(user),
            world.foreign_country(home, far=rng.random() < 0.6),
        )
        t = start
        for _ in range(int(rng.integers(1, 5))):
            t += float(rng.uniform(60, 600))
            mcc = HIGH_VALUE_CATEGORIES[int(rng.integers(3))]
            events.append(
                (
                    t,
                    mcc,
                    world.amount(user, float(rng.uniform(8, 30))),
                    country,
                    device,
                    CATEGORIES[mcc][2],
                )
            )
    elif scenario == "velocity_burst":
        device = p.devices[user][0] if rng.random() < 0.5 else world.fresh_device(user)
        t = start
        for _ in range(int(rng.integers(8, 19))):
            t += float(rng.uniform(20, 90))
            mcc = list(CATEGORIES)[int(rng.integers(len(CATEGORIES)))]
            events.append(
                (
                    t,
                    mcc,
                    world.amount(user, float(rng.uniform(1.5, 4))),
                    home,
                    device,
                    CATEGORIES[mcc][2],
                )
            )
    elif scenario == "amount_outlier":
        device = p.devices[user][0] if rng.random() < 0.7 else world.fresh_device(user)
        mcc = HIGH_VALUE_CATEGORIES[int(rng.integers(2))]
        events.append(
            (
                start + 1.0,
                mcc,
                world.amount(user, float(rng.uniform(25, 80))),
                home,
                device,
                CATEGORIES[mcc][2],
            )
        )
    else:  # impossible_travel: far away, minutes after being at home
        device = p.devices[user][0] if rng.random() < 0.5 else world.fresh_device(user)
        country = world.foreign_country(home, far=True)
        t = start
        for _ in range(int(rng.integers(2, 4))):
            t += float(rng.uniform(60, 900))
            mcc = ("5732", "6011", "5944")[int(rng.integers(3))]
            events.append(
                (
                    t,
                    mcc,
                    world.amount(user, float(rng.uniform(3, 10))),
                    country,
                    device,
                    CATEGORIES[mcc][2],
                )
            )
    return [
        GeneratedTransaction(
            tx_id=f"{prefix}{counter:010d}-f{i}",
            ts=ts,
            user_id=p.user_ids[user],
            card_id=p.cards[user],
            merchant_id=p.merchant_ids[world.merchant(country, mcc)],
            mcc=mcc,
            amount_text=amount,
            currency=COUNTRIES[country][0],
            country=country,
            channel=channel,
            device_id=device,
            ip=world.ip(user, country != home) if channel == "ecom" else None,
            is_fraud=True,
            scenario=scenario,
        )
        for i, (ts, mcc, amount, country, device, channel) in enumerate(events)
    ]
