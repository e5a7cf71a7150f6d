"""Offline (Python) and online (Redis) features agree on the same ordered stream, and the
online store is idempotent per tx_id."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudpipe_common.features import (
    FEATURE_NAMES,
    STATEFUL_FEATURES,
    FeatureInput,
    OfflineFeatureStore,
    OnlineFeatureStore,
    assemble,
)
from fraudpipe_testing.stack.process import run_async

pytestmark = pytest.mark.redis

T0 = 1_750_000_000.0
AMOUNTS = ["0.01", "1", "2.5", "9.99", "12.3456", "100", "250.75", "999999.9999", "4000"]


@st.composite
def streams(draw: st.DrawFn) -> list[FeatureInput]:
    """Few users, countries and devices so state is shared; time steps that cross every
    window, repeat a timestamp, go backwards, or jump years ahead or back; replays of earlier
    tx_ids."""
    size = draw(st.integers(1, 40))
    steps = st.one_of(
        st.just(0.0),
        st.floats(0.001, 90.0),
        st.floats(90.0, 7200.0),
        st.floats(7200.0, 200_000.0),
        st.floats(-120.0, -0.001),
        # A producer's clock years off, either way (the decoder accepts any RFC 3339 time).
        st.floats(3e7, 3e9),
        st.floats(-3e9, -3e7),
    )
    ts, stream = T0, []
    for i in range(size):
        if stream and draw(st.integers(0, 9)) == 0:
            stream.append(draw(st.sampled_from(stream)))  # a replay
            continue
        ts += draw(steps)
        stream.append(
            FeatureInput(
                tx_id=f"tx{i}",
                user_id=draw(st.sampled_from(["u1", "u2", "ü|3"])),
                ts=ts,
                amount_text=draw(st.sampled_from(AMOUNTS)),
                country=draw(st.sampled_from(["FR", "DE", "US"])),
                device_id=draw(st.sampled_from(["d1", "d2", "d|3", "ðé"])),
                merchant_id=draw(st.sampled_from(["m1", "m2", "m3"])),
                mcc=draw(st.sampled_from(["5411", "7995", "0000"])),
                channel=draw(st.sampled_from(["pos", "ecom", "atm", "transfer"])),
            )
        )
    return stream


def close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    # Exact: both sides run the same double operations in the same order (decisions.md).
    return a == b


async def online_values(
    redis_url: str, stream: list[FeatureInput], batch: int
) -> list[tuple[float, ...]]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        store = OnlineFeatureStore(
            client, prefix=f"parity:{uuid.uuid4().hex}:", user_ttl_s=300, record_ttl_s=300
        )
        values: list[tuple[float, ...]] = []
        for start in range(0, len(stream), batch):
            values += await store.update(stream[start : start + batch])
        return values
    finally:
        await client.aclose()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stream=streams(), batch=st.integers(1, 16))
def test_online_features_equal_offline_features(
    redis_url: str, stream: list[FeatureInput], batch: int
) -> None:
    offline = OfflineFeatureStore()
    expected = [offline.process(tx) for tx in stream]

    actual = run_async(online_values(redis_url, stream, batch))

    for tx, want, got in zip(stream, expected, actual, strict=True):
        assert close(want, got), (
            tx,
            dict(zip(STATEFUL_FEATURES, zip(want, got, strict=True), strict=True)),
        )


async def test_a_replayed_batch_changes_nothing(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = OnlineFeatureStore(client, prefix=redis_prefix)
    batch = [
        FeatureInput(f"t{i}", "u", T0 + i, "10", "FR", "d", "m", "5411", "pos") for i in range(5)
    ]
    try:
        first = await store.update(batch)
        replayed = await store.update(batch)
        after = await store.update(
            [FeatureInput("t9", "u", T0 + 9, "10", "FR", "d", "m", "5411", "pos")]
        )
    finally:
        await client.aclose()
    assert replayed == first
    count_1h = STATEFUL_FEATURES.index("count_1h")
    assert after[0][count_1h] == 6.0  # five earlier + this one: the replay did not count


async def test_peek_computes_without_changing_state(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = OnlineFeatureStore(client, prefix=redis_prefix)
    tx = FeatureInput("p1", "u", T0, "10", "FR", "d", "m", "5411", "pos")
    try:
        peeked = await store.peek([tx])
        assert await client.keys(f"{redis_prefix}*") == []
        updated = await store.update([tx])
    finally:
        await client.aclose()
    assert peeked == updated


def test_vectors_follow_the_feature_names() -> None:
    tx = FeatureInput("t", "u", T0, "12.50", "FR", "d", "m", "7995", "ecom")
    vector = assemble(tx, OfflineFeatureStore().process(tx))
    named = dict(zip(FEATURE_NAMES, vector, strict=True))
    assert named["amount"] == 12.5
    assert named["mcc_risk"] == 0.8
    assert named["channel_ecom"] == 1.0
    assert named["count_24h"] == 1.0
    assert named["new_device"] == 1.0
    assert named["home_country_mismatch"] == 0.0


async def test_a_batch_costs_one_redis_round_trip(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = OnlineFeatureStore(client, prefix=redis_prefix)
    batch = [
        FeatureInput(f"r{i}", f"u{i % 7}", T0 + i, "10", "FR", "d", "m", "5411", "pos")
        for i in range(200)
    ]
    calls: list[object] = []
    original = client.execute_command

    async def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[0])
        return await original(*args, **kwargs)

    try:
        await store.update(batch[:1])  # loads the script once
        client.execute_command = counting  # type: ignore[method-assign]
        values = await store.update(batch[1:])
    finally:
        await client.aclose()
    assert len(values) == 199
    assert calls == ["EVALSHA"]


_TO_FIRST_LAYOUT = """
local s = cmsgpack.unpack(redis.call('GET', KEYS[1]))
local merchants = s.merchants
s.merchants, s.devices = {m1 = 1, m2 = 1}, {d1 = 1, d2 = 1}
redis.call('SET', KEYS[1], cmsgpack.pack(s))
return merchants
"""


async def test_a_user_state_of_the_first_layout_is_read(redis_url: str, redis_prefix: str) -> None:
    """States written before devices and merchants became NUL-delimited strings (tables of
    id: 1) still answer "seen before" exactly, and are rewritten in the new layout."""
    client = aioredis.Redis.from_url(redis_url)
    store = OnlineFeatureStore(client, prefix=redis_prefix)
    earlier = [
        FeatureInput("o1", "u", T0, "10", "FR", "d1", "m1", "5411", "pos"),
        FeatureInput("o2", "u", T0 + 1, "10", "FR", "d2", "m2", "5411", "pos"),
    ]
    offline = OfflineFeatureStore()
    for tx in earlier:
        offline.process(tx)
    key = f"{redis_prefix}u:{{u}}"
    try:
        await store.update(earlier)
        # Back to the first layout, through Redis's own MessagePack (as the script sees it).
        merchants = await client.eval(_TO_FIRST_LAYOUT, 1, key)
        assert merchants == b"\0m1\0m2\0"  # what the new layout had written
        probes = [
            FeatureInput("o3", "u", T0 + 2, "10", "FR", "d2", "m1", "5411", "pos"),
            FeatureInput("o4", "u", T0 + 3, "10", "FR", "d3", "m3", "5411", "pos"),
            FeatureInput("o5", "u", T0 + 4, "10", "FR", "d3", "m2", "5411", "pos"),
        ]
        online = await store.update(probes)
    finally:
        await client.aclose()
    assert online == [offline.process(tx) for tx in probes]
