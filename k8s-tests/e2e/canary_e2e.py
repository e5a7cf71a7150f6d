"""The canary scenarios' machinery (docs/canary.md): the candidates pushed into the cluster's
registry, a short rollout spec, each scorer pod's routing read through the API server's pod
proxy, and a watcher that follows status.canary and checks that every weight it reports has
reached every scorer pod within 5 s."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from e2e_checks import PIPELINE, component, pipeline_pods, ready
from operator_harness import Pipelines, wait_for

SCORER_HTTP_PORT = 9000
PROPAGATION_S = 5.0  # the bound: a weight change reaches every scorer pod within it


def rollout_spec(ref: str, shadow_seconds: int, failure_threshold: int = 1) -> dict[str, Any]:
    """Short and few: shadow (if any), then 50% and 100% for 20 s each; `failure_threshold`
    failed checks roll back. At 20 tx/s a 20 s step at 50% gives about 200 candidate
    decisions, over the 150 needed; the thresholds leave room for the noise of such small
    samples (an identical model scores disjoint users at 50%), far below what the bad
    candidates produce (docs/canary.md)."""
    return {
        "ref": ref,
        "shadowSeconds": shadow_seconds,
        "steps": [50, 100],
        "intervalSeconds": 20,
        "failureThreshold": failure_threshold,
        "analysis": {
            "minSampleSize": 150,
            "thresholds": {"maxP99LatencyMs": 30, "maxAlertRateRatio": 4, "maxPsi": 0.5},
        },
    }


def canary_status(pipelines: Pipelines) -> dict[str, Any] | None:
    found = pipelines.get(PIPELINE).get("status", {}).get("canary")
    return dict(found) if found else None


def expected_routing(canary: dict[str, Any] | None) -> tuple[int, bool]:
    """What the operator must have pushed, by phase (canary.machine.routing)."""
    if canary is None:
        return 0, False
    if canary["phase"] == "Shadow":
        return 0, True
    if canary["phase"] in ("Progressing", "Promoted"):
        return int(canary.get("weight", 0)), False
    return 0, False


def scorers(core: client.CoreV1Api, namespace: str) -> list[Any]:
    return [p for p in pipeline_pods(core, namespace) if component(p) == "scorer" and ready(p)]


def pod_routing(core: client.CoreV1Api, namespace: str, pod: str) -> tuple[int, bool] | None:
    """GET /routing of one scorer pod, through the API server's pod proxy."""
    try:
        response = core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{SCORER_HTTP_PORT}", namespace, "routing", _preload_content=False
        )
        body = json.loads(response.data)
    except (client.ApiException, ValueError):
        return None
    return int(body["weight"]), bool(body["shadow"])


def scorer_env(apps: client.AppsV1Api, namespace: str) -> dict[str, str]:
    deployment = apps.read_namespaced_deployment(f"{PIPELINE}-scorer", namespace)
    (container,) = deployment.spec.template.spec.containers
    return {e.name: e.value or "" for e in container.env}


def events(core: client.CoreV1Api, namespace: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about the pipeline, oldest first."""
    found = core.list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.name={PIPELINE},involvedObject.kind=FraudPipeline",
    ).items
    found.sort(key=lambda e: e.metadata.creation_timestamp)
    return [(e.type, e.reason, e.message or "") for e in found]


def follow(
    core: client.CoreV1Api,
    pipelines: Pipelines,
    namespace: str,
    ref: str,
    until: set[str],
    within_s: float,
    on_change: Callable[[tuple[str, int]], None] | None = None,
) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """Follow status.canary of candidate `ref` until its phase is one of `until`; each
    (phase, weight) it passes through must be on every ready scorer pod within PROPAGATION_S,
    and is handed to `on_change` (a fault to inject at that point). Returns the last status and
    the (phase, weight) sequence seen."""
    deadline = time.monotonic() + within_s
    seen: list[tuple[str, int]] = []
    while time.monotonic() < deadline:
        canary = canary_status(pipelines)
        if canary is not None and canary.get("ref") == ref:
            state = (canary["phase"], int(canary.get("weight", 0)))
            if not seen and canary["phase"] in ("Validating", "Loading"):
                # A new rollout starts clean, not with the previous candidate's analysis.
                assert "lastAnalysis" not in canary, canary
            if not seen or seen[-1] != state:
                seen.append(state)
                if canary["phase"] in ("Shadow", "Progressing", "Promoted", "Failed"):
                    check_propagated(core, namespace, canary)
                if on_change is not None:
                    on_change(state)
            if canary["phase"] in until:
                return canary, seen
        time.sleep(0.5)
    raise AssertionError(f"canary never reached {until} in {within_s} s; saw {seen}")


def check_propagated(core: client.CoreV1Api, namespace: str, canary: dict[str, Any]) -> None:
    """Every ready scorer pod has the routing of `canary` within PROPAGATION_S of the status
    saying so (the operator pushes before it writes the status). Pods created after the change
    (a promotion rolls the Deployment) start without the candidate and are left out."""
    want = expected_routing(canary)
    changed_at = time.time()
    started = time.monotonic()
    pods = [
        p.metadata.name
        for p in scorers(core, namespace)
        if p.metadata.creation_timestamp.timestamp() < changed_at - 1
    ]

    def everywhere() -> bool:
        return all(pod_routing(core, namespace, pod) == want for pod in pods)

    wait_for(everywhere, f"routing {want} on scorers {pods}", PROPAGATION_S)
    assert time.monotonic() - started <= PROPAGATION_S + 1


def wait_phase(pipelines: Pipelines, ref: str, phases: set[str], within_s: float) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        canary = canary_status(pipelines)
        ours = canary is not None and canary["ref"] == ref
        return canary if ours and canary["phase"] in phases else None  # type: ignore[index]

    found: dict[str, Any] = wait_for(reached, f"canary of {ref} in {phases}", within_s)
    return found


def wait_degraded(pipelines: Pipelines, reason: str, ref: str, within_s: float = 30) -> None:
    """Degraded=True for this candidate (not a previous one's left-over condition)."""

    def degraded() -> bool:
        found = pipelines.condition(PIPELINE, "Degraded")
        return bool(
            found
            and found["status"] == "True"
            and found["reason"] == reason
            and ref in found["message"]
        )

    wait_for(degraded, f"Degraded=True ({reason}) for {ref}", within_s)
