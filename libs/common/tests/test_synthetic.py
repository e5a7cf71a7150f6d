"""The synthetic world: deterministic per seed, ordered in time, fraud at the asked rate."""

from __future__ import annotations

import itertools
from collections import Counter

from fraudpipe_common.synthetic import PopulationConfig, TrafficConfig, generate
from fraudpipe_common.synthetic.generator import SCENARIOS


def take(config: TrafficConfig, n: int) -> list[object]:
    return list(itertools.islice(generate(config), n))


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    config = TrafficConfig(population=PopulationConfig(users=500, seed=3), seed=3)
    assert take(config, 3000) == take(config, 3000)
    other = TrafficConfig(population=PopulationConfig(users=500, seed=4), seed=4)
    assert take(other, 100) != take(config, 100)


def test_stream_is_time_ordered_with_unique_ids() -> None:
    stream = list(itertools.islice(generate(TrafficConfig(fraud_rate=0.05)), 20_000))
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(stream))
    assert all(type(g.ts) is float for g in stream)
    assert len({g.tx_id for g in stream}) == len(stream)


def test_fraud_rate_and_every_scenario_show_up() -> None:
    stream = list(itertools.islice(generate(TrafficConfig(fraud_rate=0.02)), 100_000))
    frauds = [g for g in stream if g.is_fraud]
    assert 0.012 < len(frauds) / len(stream) < 0.03
    assert set(Counter(g.scenario for g in frauds)) == set(SCENARIOS)
    assert all(g.scenario is None for g in stream if not g.is_fraud)


def test_card_testing_is_a_burst_of_tiny_amounts_on_a_new_device() -> None:
    stream = list(itertools.islice(generate(TrafficConfig(fraud_rate=0.05)), 50_000))
    bursts: dict[str, list[object]] = {}
    for g in stream:
        if g.scenario == "card_testing":
            bursts.setdefault(g.tx_id.rsplit("-f", 1)[0], []).append(g)
    end = stream[-1].ts  # type: ignore[attr-defined]
    complete = [e for e in bursts.values() if e[0].ts < end - 1000]  # type: ignore[attr-defined]
    assert complete
    for events in complete:
        tiny = [e for e in events if float(e.amount_text) <= 3.0]  # type: ignore[attr-defined]
        assert len(tiny) >= 8
        assert len({e.device_id for e in events}) == 1  # type: ignore[attr-defined]
        assert events[-1].ts - events[0].ts < 900  # type: ignore[attr-defined]
