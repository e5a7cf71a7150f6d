"""Stateful features in Redis: one script call per batch computes, records and returns them.

The script (online.lua) is idempotent per tx_id: a transaction seen before gets back the
values recorded the first time and changes no state, so a replayed batch never counts twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import orjson
from redis.asyncio import Redis

from fraudpipe_common.features.definition import STATEFUL_FEATURES, FeatureInput

SCRIPT = resources.files(__package__).joinpath("online.lua").read_text()
DEFAULT_USER_TTL_S = 90 * 86400
DEFAULT_RECORD_TTL_S = 7 * 86400


class OnlineFeatureStore:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "fp:",
        user_ttl_s: int = DEFAULT_USER_TTL_S,
        record_ttl_s: int = DEFAULT_RECORD_TTL_S,
    ) -> None:
        self._script = redis.register_script(SCRIPT)
        self._prefix = prefix
        self._user_ttl_s = user_ttl_s
        self._record_ttl_s = record_ttl_s

    async def update(self, txs: Sequence[FeatureInput]) -> list[tuple[float, ...]]:
        """Compute and record, in order: what the scorer does for each batch."""
        return await self._call(txs, dry_run=False)

    async def peek(self, txs: Sequence[FeatureInput]) -> list[tuple[float, ...]]:
        """Compute against the current state, changing nothing (each transaction on its own)."""
        return await self._call(txs, dry_run=True)

    async def _call(self, txs: Sequence[FeatureInput], *, dry_run: bool) -> list[tuple[float, ...]]:
        if not txs:
            return []
        batch = orjson.dumps(
            [
                [
                    t.tx_id,
                    t.user_id,
                    t.ts,
                    t.amount_units,
                    t.log_amount,
                    t.country,
                    t.device_id,
                    t.merchant_id,
                ]
                for t in txs
            ]
        )
        args = [self._prefix, "1" if dry_run else "0", self._user_ttl_s, self._record_ttl_s, batch]
        replies = await self._script(keys=[], args=args)
        return [_parse(reply) for reply in replies]


def _parse(reply: bytes | str) -> tuple[float, ...]:
    text = reply.decode() if isinstance(reply, bytes) else reply
    values = tuple(float(v) for v in text.split(","))
    if len(values) != len(STATEFUL_FEATURES):
        raise RuntimeError(
            f"online feature script returned {len(values)} values, "
            f"expected {len(STATEFUL_FEATURES)}"
        )
    return values
