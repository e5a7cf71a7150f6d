"""Users and merchants: who spends how much, when, where, on which devices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraudpipe_common.synthetic.world import CATEGORIES, COUNTRIES


@dataclass(frozen=True)
class PopulationConfig:
    users: int = 10_000
    merchants: int = 3_000
    seed: int = 7


@dataclass
class Population:
    """Column arrays, one row per user or merchant; built once from a seed."""

    user_ids: list[str]
    home: list[str]
    devices: list[list[str]]
    cards: list[str]
    amount_mu: np.ndarray  # lognormal parameters of the user's usual purchase
    amount_sigma: np.ndarray
    daily_rate: np.ndarray  # transactions per day
    peak_hour: np.ndarray
    favourites: np.ndarray  # (users, 12) merchant indices, mostly in the home country
    merchant_ids: list[str]
    merchant_mcc: list[str]
    merchant_country: list[str]
    merchants_by_country_mcc: dict[tuple[str, str], list[int]]

    @classmethod
    def build(cls, config: PopulationConfig) -> Population:
        rng = np.random.default_rng(config.seed)
        countries = list(COUNTRIES)
        shares = np.array([COUNTRIES[c][2] for c in countries])
        home = [
            countries[i] for i in rng.choice(len(countries), config.users, p=shares / shares.sum())
        ]
        mccs = list(CATEGORIES)
        mcc_share = np.array([CATEGORIES[m][0] for m in mccs])
        merchant_mcc = [
            mccs[i] for i in rng.choice(len(mccs), config.merchants, p=mcc_share / mcc_share.sum())
        ]
        merchant_country = [
            countries[i]
            for i in rng.choice(len(countries), config.merchants, p=shares / shares.sum())
        ]
        by_country_mcc: dict[tuple[str, str], list[int]] = {}
        for index, key in enumerate(zip(merchant_country, merchant_mcc, strict=True)):
            by_country_mcc.setdefault(key, []).append(index)
        by_country: dict[str, list[int]] = {}
        for index, country in enumerate(merchant_country):
            by_country.setdefault(country, []).append(index)
        favourites = np.empty((config.users, 12), dtype=np.int64)
        for user in range(config.users):
            local = by_country.get(home[user]) or list(range(config.merchants))
            favourites[user] = rng.choice(local, 12)
        device_counts = rng.choice([1, 2, 3], config.users, p=[0.6, 0.3, 0.1])
        return cls(
            user_ids=[f"u{i:07d}" for i in range(config.users)],
            home=home,
            devices=[[f"dev-{i:07d}-{k}" for k in range(n)] for i, n in enumerate(device_counts)],
            cards=[f"card-{i:07d}" for i in range(config.users)],
            amount_mu=rng.normal(3.2, 0.6, config.users),  # median purchase around 25
            amount_sigma=rng.uniform(0.5, 0.9, config.users),
            daily_rate=rng.lognormal(0.9, 0.6, config.users),  # about 3 a day, long tail
            peak_hour=rng.uniform(8, 21, config.users),
            favourites=favourites,
            merchant_ids=[f"m{i:06d}" for i in range(config.merchants)],
            merchant_mcc=merchant_mcc,
            merchant_country=merchant_country,
            merchants_by_country_mcc=by_country_mcc,
        )

    @property
    def size(self) -> int:
        return len(self.user_ids)

    def hourly_weights(self) -> np.ndarray:
        """(24, users) relative activity of each user in each UTC hour (mean 1 over a day)."""
        hours = np.arange(24)[:, None]
        distance = np.cos(2 * np.pi * (hours - self.peak_hour[None, :]) / 24)
        weights = 0.15 + np.exp(2.0 * distance)
        return np.asarray(weights / weights.mean(axis=0, keepdims=True))

    def typical_amount(self, user: int) -> float:
        return float(np.exp(self.amount_mu[user]))
