"""Two models in one scorer: shadow runs, then a canary weight changed at run time."""

from __future__ import annotations

import asyncio
import collections
import json
import urllib.request

import pytest

from fraudpipe_common.contracts.decisions import Track, Verdict
from fraudpipe_scorer.routing import bucket

from .harness import (
    ScorerProcess,
    free_port,
    produce,
    read_committed,
    traffic,
    transaction_messages,
)
from .test_pipeline import StartScorer, alert_rows

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(180)]


def put_routing(
    scorer: ScorerProcess, body: object, port: int | None = None
) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port or scorer.port}/routing",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body.startswith(b"{") else {}


async def test_shadow_then_canary_weight_changes_without_restart(
    pipeline_env: dict[str, str], start_scorer: StartScorer
) -> None:
    env = pipeline_env
    bootstrap, decisions_topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["DECISIONS_TOPIC"]
    txs = traffic(4_000, fraud_rate=0.02)
    shadow_phase, canary_phase = txs[:2_000], txs[2_000:]
    scorer = start_scorer(CANARY_MODEL_REF=env["MODEL_REF"], SHADOW="true")
    await scorer.wait_ready()

    await produce(bootstrap, env["TRANSACTIONS_TOPIC"], transaction_messages(shadow_phase))
    seen = await read_committed(
        bootstrap, decisions_topic, at_least=2 * len(shadow_phase), timeout_s=60
    )
    tracks = collections.Counter((d.tx_id, d.track) for d in seen.decisions())
    # Every transaction: one stable decision that acts, one shadow decision beside it.
    assert set(tracks.values()) == {1}
    assert {t for t, _ in tracks} == {tx.tx_id for tx in shadow_phase}
    assert collections.Counter(track for _, track in tracks) == {
        Track.STABLE: len(shadow_phase),
        Track.SHADOW: len(shadow_phase),
    }
    alerts = await alert_rows(env["DATABASE_URL"])
    stable_alerts = {
        d.tx_id
        for d in seen.decisions()
        if d.track is Track.STABLE and d.decision is not Verdict.APPROVE
    }
    assert set(alerts) == stable_alerts  # shadow decisions never raise alerts

    assert put_routing(scorer, {"weight": 101, "shadow": False})[0] == 400
    assert put_routing(scorer, {"weight": "half"})[0] == 400
    status, state = put_routing(scorer, {"weight": 30, "shadow": False})
    assert (status, state) == (200, {"weight": 30, "shadow": False})
    assert scorer.metric("fraudpipe_scorer_canary_weight_percent") == 30

    await produce(bootstrap, env["TRANSACTIONS_TOPIC"], transaction_messages(canary_phase))
    seen = await read_committed(
        bootstrap,
        decisions_topic,
        at_least=2 * len(shadow_phase) + len(canary_phase),
        timeout_s=60,
        settle_s=1,
    )
    later = {tx.tx_id: tx for tx in canary_phase}
    routed = [(later[d.tx_id], d.track) for d in seen.decisions() if d.tx_id in later]
    assert len(routed) == len(canary_phase)  # no more shadow decisions
    for tx, track in routed:
        assert track is (Track.CANARY if bucket(tx.user_id) < 30 else Track.STABLE)
    share = sum(track is Track.CANARY for _, track in routed) / len(routed)
    assert 0.2 < share < 0.4
    assert scorer.terminate() == 0


async def test_routing_cannot_be_turned_on_without_a_candidate(
    pipeline_env: dict[str, str], start_scorer: StartScorer
) -> None:
    scorer = start_scorer()
    await scorer.wait_ready()
    status, body = await asyncio.to_thread(put_routing, scorer, {"weight": 10, "shadow": False})
    assert status == 400
    assert "CANARY_MODEL_REF" in str(body["error"])
    assert scorer.terminate() == 0


async def test_with_a_control_port_routing_changes_only_through_it(
    pipeline_env: dict[str, str], start_scorer: StartScorer
) -> None:
    """The operator sets CONTROL_PORT and opens it only to itself (NetworkPolicy): the
    metrics port, open to any Prometheus, then reads the routing but cannot change it."""
    control = free_port()
    scorer = start_scorer(CANARY_MODEL_REF=pipeline_env["MODEL_REF"], CONTROL_PORT=str(control))
    await scorer.wait_ready()
    refused, _ = await asyncio.to_thread(put_routing, scorer, {"weight": 40, "shadow": False})
    assert refused == 405
    changed = await asyncio.to_thread(put_routing, scorer, {"weight": 40, "shadow": False}, control)
    assert changed == (200, {"weight": 40, "shadow": False})
    status, body = scorer.get("/routing")
    assert (status, json.loads(body)) == (200, {"weight": 40, "shadow": False})
    assert scorer.terminate() == 0
