"""Stateful features in Redis: one script call per batch computes, records and returns them.

The script (online.lua) is idempotent per tx_id: a transaction seen before gets back the
values recorded the first time and changes no state, so a replayed batch never counts twice.
Values come back as packed little-endian doubles, exact and decoded in one numpy step.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import numpy as np
import numpy.typing as npt
import orjson
from redis.asyncio import Redis

from fraudpipe_common.features.definition import STATEFUL_FEATURES, FeatureInput

SCRIPT = resources.files(__package__).joinpath("online.lua").read_text()
# How many transactions each user's state has counted (the `n` of online.lua's user state).
_COUNTED = """
local out = {}
for i, key in ipairs(KEYS) do
  local blob = redis.call('GET', key)
  out[i] = blob and cmsgpack.unpack(blob).n or 0
end
return out
"""
DEFAULT_USER_TTL_S = 90 * 86400
DEFAULT_RECORD_TTL_S = 7 * 86400
_WIDTH = len(STATEFUL_FEATURES)


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
        self._counted = redis.register_script(_COUNTED)
        self._prefix = prefix
        self._user_ttl_s = user_ttl_s
        self._record_ttl_s = record_ttl_s

    async def update_matrix(self, txs: Sequence[FeatureInput]) -> npt.NDArray[np.float64]:
        """Compute and record, in order: what the scorer does for each batch. One row per
        transaction, columns in STATEFUL_FEATURES order."""
        return await self._call(txs, dry_run=False)

    async def update(self, txs: Sequence[FeatureInput]) -> list[tuple[float, ...]]:
        """`update_matrix`, as one tuple per transaction."""
        return [tuple(row) for row in (await self.update_matrix(txs)).tolist()]

    async def peek(self, txs: Sequence[FeatureInput]) -> list[tuple[float, ...]]:
        """Compute against the current state, changing nothing (each transaction on its own)."""
        return [tuple(row) for row in (await self._call(txs, dry_run=True)).tolist()]

    async def counted(self, user_ids: Sequence[str]) -> dict[str, int]:
        """How many distinct transactions each user's online state holds."""
        if not user_ids:
            return {}
        keys = [f"{self._prefix}u:{{{user}}}" for user in user_ids]
        replies = await self._counted(keys=keys, args=[])
        return {user: int(n) for user, n in zip(user_ids, replies, strict=True)}

    async def _call(self, txs: Sequence[FeatureInput], *, dry_run: bool) -> npt.NDArray[np.float64]:
        if not txs:
            return np.empty((0, _WIDTH), dtype=np.float64)
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
        reply = await self._script(keys=[], args=args)
        values = np.frombuffer(reply, dtype="<f8")
        if values.size != len(txs) * _WIDTH:
            raise RuntimeError(
                f"online feature script returned {values.size} values for {len(txs)} "
                f"transactions, expected {_WIDTH} each"
            )
        return values.reshape(len(txs), _WIDTH)
