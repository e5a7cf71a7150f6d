"""The canary driver's I/O decisions against a fake API server and fake scorer pods: what it
pushes, when it validates, what it writes (docs/canary.md)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fraudpipe_common.model_artifact import IncompatibleModelError
from fraudpipe_common.oci import (
    DigestMismatchError,
    RegistryStatusError,
    RegistryUnreachableError,
)
from fraudpipe_operator.canary import driver as driver_module
from fraudpipe_operator.canary import machine, validate
from fraudpipe_operator.canary.driver import CanaryDriver
from fraudpipe_operator.canary.validate import CannotCheckYet, candidate_problem
from fraudpipe_operator.kube import KubeError
from fraudpipe_operator.models import FraudPipeline

STABLE = "registry.example.com/models/gbt@sha256:" + "a" * 64
CANDIDATE = "registry.example.com/models/gbt@sha256:" + "b" * 64
STABLE_DIGEST = "sha256:" + "a" * 64
CANDIDATE_DIGEST = "sha256:" + "b" * 64
PROMETHEUS_HOST = "prometheus.test"


class FakeKube:
    """One FraudPipeline and its scorer pods; status patches are merge patches, checked
    against the resourceVersion when they carry one."""

    def __init__(self, spec: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        self.body: dict[str, Any] = {
            "apiVersion": "fraudpipe.io/v1alpha1",
            "kind": "FraudPipeline",
            "metadata": {
                "name": "p",
                "namespace": "ns",
                "uid": "uid-1",
                "generation": 1,
                "resourceVersion": "1",
            },
            "spec": spec,
            "status": status or {},
        }
        self.pods: list[dict[str, Any]] = []
        self.patches: list[dict[str, Any]] = []
        self.meanwhile: list[Callable[[dict[str, Any]], None]] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert kind == "FraudPipeline"
        read = copy.deepcopy(self.body)
        if self.meanwhile:  # someone changes the object once this read is done
            spec_before = copy.deepcopy(self.body["spec"])
            self.meanwhile.pop(0)(self.body)
            meta = self.body["metadata"]
            meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
            if self.body["spec"] != spec_before:
                meta["generation"] += 1
        return read

    async def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        assert kind == "Pod"
        return copy.deepcopy(self.pods)

    async def patch_status(
        self,
        group_version: str,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> None:
        meta = self.body["metadata"]
        if resource_version is not None and resource_version != meta["resourceVersion"]:
            raise KubeError(409, "the object has been modified")
        self.patches.append(copy.deepcopy(status))
        merge(self.body.setdefault("status", {}), status)
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    def add_pod(
        self,
        name: str,
        ip: str,
        *,
        ready: bool = True,
        candidate: bool = True,
        started: str = "2026-01-01T00:00:00Z",
    ) -> None:
        env = [{"name": "MODEL_REF", "value": STABLE}]
        if candidate:
            env.append({"name": "CANARY_MODEL_REF", "value": CANDIDATE})
        self.pods.append(
            {
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "scorer", "env": env}]},
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "startTime": started,
                    "containerStatuses": [
                        {"name": "scorer", "state": {"running": {"startedAt": started}}}
                    ],
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                },
            }
        )


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeScorer:
    """A scorer pod's /metrics and PUT /routing."""

    def __init__(self, candidate: str = CANDIDATE_DIGEST, weight: int = 0) -> None:
        self.candidate = candidate
        self.stable = STABLE_DIGEST
        self.weight = weight
        self.shadow = False
        self.fail_puts = 0
        self.puts: list[dict[str, Any]] = []
        self.decisions: dict[tuple[str, str, str], float] = {}

    def metrics(self) -> str:
        lines = [
            f"fraudpipe_scorer_canary_weight_percent {self.weight}",
            f"fraudpipe_scorer_shadow_mode {1 if self.shadow else 0}",
            f'fraudpipe_scorer_model_info{{track="stable",digest="{self.stable}"}} 1',
        ]
        if self.candidate:
            lines.append(
                f'fraudpipe_scorer_model_info{{track="candidate",digest="{self.candidate}"}} 1'
            )
        for (decision, digest, track), count in self.decisions.items():
            lines.append(
                f'fraudpipe_scorer_decisions_total{{decision="{decision}",model_digest="{digest}",'
                f'track="{track}"}} {count}'
            )
        return "\n".join(lines) + "\n"


class Pods:
    """Routes the driver's HTTP calls to the fake scorers by IP."""

    def __init__(self) -> None:
        self.by_ip: dict[str, FakeScorer] = {}
        self.unreachable: set[str] = set()
        self.log: list[str] = []  # "PUT <ip>" and "prometheus", in order
        self.prometheus_status = 503

    def __call__(self, request: httpx.Request) -> httpx.Response:
        ip = request.url.host
        if ip == PROMETHEUS_HOST:
            self.log.append("prometheus")
            return httpx.Response(self.prometheus_status, text="unavailable")
        if request.method == "PUT":
            self.log.append(f"PUT {ip}")
        if ip in self.unreachable:
            raise httpx.ConnectError("unreachable", request=request)
        scorer = self.by_ip[ip]
        if request.method == "GET" and request.url.path == "/metrics":
            return httpx.Response(200, text=scorer.metrics())
        if request.method == "PUT" and request.url.path == "/routing":
            if scorer.fail_puts > 0:
                scorer.fail_puts -= 1
                return httpx.Response(503)
            body = json.loads(request.content)
            scorer.puts.append(body)
            scorer.weight, scorer.shadow = body["weight"], body["shadow"]
            return httpx.Response(200, json=body)
        return httpx.Response(404)


def spec(canary: dict[str, Any] | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {"ref": STABLE}
    if canary is not None:
        model["canary"] = {"ref": CANDIDATE, **canary}
    return {"model": model}


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_driver(kube: FakeKube, pods: Pods, clock: Clock | None = None) -> CanaryDriver:
    http = httpx.AsyncClient(transport=httpx.MockTransport(pods))
    return CanaryDriver(kube, http, clock or Clock())  # type: ignore[arg-type]


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        RegistryUnreachableError("cannot reach the OCI registry at registry.example.com"),
        RegistryStatusError("pull manifest: registry answered 503: busy", 503),
        RegistryStatusError("pull manifest: registry answered 429: slow down", 429),
        httpx.ReadTimeout("timed out"),
        OSError("connection reset"),
    ],
)
async def test_a_registry_that_cannot_be_asked_is_not_a_verdict_on_the_candidate(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    async def pull(*_: Any, **__: Any) -> Any:
        raise error

    monkeypatch.setattr(validate, "pull_model", pull)
    with pytest.raises(CannotCheckYet):
        await candidate_problem(CANDIDATE, plain_http=False)


@pytest.mark.parametrize(
    "error",
    [
        DigestMismatchError("manifest hashes to sha256:ffff"),
        RegistryStatusError("pull manifest: registry answered 404: manifest unknown", 404),
        IncompatibleModelError("the model needs features that are not computed: ['x']"),
    ],
)
async def test_what_is_wrong_with_the_artifact_itself_refuses_it(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    async def pull(*_: Any, **__: Any) -> Any:
        raise error

    monkeypatch.setattr(validate, "pull_model", pull)
    assert await candidate_problem(CANDIDATE, plain_http=False) == str(error)


async def test_an_unreachable_registry_keeps_validating_and_retries_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    answers: list[str | Exception | None] = [CannotCheckYet("registry down"), None]

    async def check(ref: str, *, plain_http: bool) -> str | None:
        calls.append(ref)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = Clock()
    monkeypatch.setattr(driver_module, "candidate_problem", check)
    kube = FakeKube(spec({}))
    driver = make_driver(kube, Pods(), clock)
    await driver.tick("ns", "p")  # saves Validating: no pull before that
    assert kube.body["status"]["canary"]["phase"] == "Validating"
    assert calls == []
    first = await driver.tick("ns", "p")
    canary = kube.body["status"]["canary"]
    assert canary["phase"] == "Validating"
    assert "registry down" in canary["message"]
    assert [e.reason for e in first.events] == ["CandidateUnchecked"]
    # Not hammered: the next tick within the retry delay asks nothing.
    clock.now += 1
    await driver.tick("ns", "p")
    assert len(calls) == 1
    clock.now += 10
    second = await driver.tick("ns", "p")
    assert len(calls) == 2
    assert kube.body["status"]["canary"]["phase"] == "Loading"
    assert [e.reason for e in second.events] == ["CandidateValid"]


# -- promotion ----------------------------------------------------------------------------------
async def test_a_promotion_ends_once_the_spec_names_another_stable_model() -> None:
    """C promoted over Y; the user sets spec.model.ref to C (GitOps), later back to Y: Y is
    what they get, not C again."""
    promoted = {"ref": CANDIDATE, "replaces": STABLE}
    kube = FakeKube({"model": {"ref": STABLE}}, {"promoted": promoted})
    driver = make_driver(kube, Pods())
    await driver.tick("ns", "p")
    assert kube.body["status"]["promoted"] == promoted  # still in force: spec.model.ref is Y
    kube.body["spec"]["model"]["ref"] = CANDIDATE
    await driver.tick("ns", "p")
    assert "promoted" not in kube.body["status"]
    kube.body["spec"]["model"]["ref"] = STABLE
    pipeline = FraudPipeline.from_body(kube.body)
    assert machine.stable_ref(pipeline.spec.model, pipeline.status.promoted) == STABLE


# -- loading ------------------------------------------------------------------------------------
async def test_loading_waits_for_every_pod_to_hold_both_models_of_the_rollout() -> None:
    other_stable = "sha256:" + "c" * 64
    loading = {
        "phase": "Loading",
        "ref": CANDIDATE,
        "candidateDigest": CANDIDATE_DIGEST,
        "stableDigest": other_stable,
        "phaseStartedAt": 1000.0,
    }
    kube = FakeKube(spec({"shadowSeconds": 30}), {"canary": loading})
    kube.body["spec"]["model"]["ref"] = "registry.example.com/models/gbt@" + other_stable
    kube.add_pod("a", "10.0.0.1")
    pods = Pods()
    pods.by_ip["10.0.0.1"] = FakeScorer()  # candidate loaded, but the old stable model
    driver = make_driver(kube, pods, Clock(1001.0))
    await driver.tick("ns", "p")
    assert kube.body["status"]["canary"]["phase"] == "Loading"
    pods.by_ip["10.0.0.1"].stable = other_stable
    await driver.tick("ns", "p")
    assert kube.body["status"]["canary"]["phase"] == "Shadow"


# -- aborting -----------------------------------------------------------------------------------
def progressing(weight: int = 50) -> dict[str, Any]:
    return {
        "phase": "Progressing",
        "ref": CANDIDATE,
        "candidateDigest": CANDIDATE_DIGEST,
        "stableDigest": STABLE_DIGEST,
        "weight": weight,
        "step": 1,
        "loadedAt": 900.0,
        "phaseStartedAt": 950.0,
        "windowStartedAt": 950.0,
        "nextCheckAt": 5000.0,
    }


async def test_an_abort_lasts_until_every_pod_holding_the_candidate_reports_weight_zero() -> None:
    kube = FakeKube(spec(), {"canary": progressing()})
    pods = Pods()
    for name, ip in (("a", "10.0.0.1"), ("b", "10.0.0.2")):
        kube.add_pod(name, ip)
        pods.by_ip[ip] = FakeScorer(weight=50)
    pods.by_ip["10.0.0.2"].fail_puts = 1  # its first push fails
    driver = make_driver(kube, pods, Clock(1000.0))
    first = await driver.tick("ns", "p")
    assert [e.reason for e in first.events] == ["CanaryAborted"]
    assert kube.body["status"]["canary"]["phase"] == "Aborting"
    assert pods.by_ip["10.0.0.1"].weight == 0
    assert pods.by_ip["10.0.0.2"].weight == 50
    assert first.next_tick_s == driver_module.ACTIVE_TICK_S
    await driver.tick("ns", "p")  # pushed again; b reports 50 still in this tick's scrape
    assert pods.by_ip["10.0.0.2"].weight == 0
    assert kube.body["status"]["canary"]["phase"] == "Aborting"
    # An unscrapable pod that may hold the candidate keeps the abort going.
    pods.unreachable.add("10.0.0.2")
    await driver.tick("ns", "p")
    assert kube.body["status"]["canary"]["phase"] == "Aborting"
    pods.unreachable.clear()
    done = await driver.tick("ns", "p")
    assert "canary" not in kube.body["status"]
    assert done.phase_changed
    assert done.next_tick_s == driver_module.IDLE_TICK_S


async def test_pods_whose_spec_holds_no_candidate_need_not_answer_for_the_abort_to_end() -> None:
    kube = FakeKube(spec(), {"canary": progressing()})
    kube.add_pod("new", "10.0.0.3", candidate=False)
    pods = Pods()
    pods.unreachable.add("10.0.0.3")
    driver = make_driver(kube, pods, Clock(1000.0))
    await driver.tick("ns", "p")
    assert "canary" not in kube.body["status"]


# -- routing ------------------------------------------------------------------------------------
async def test_a_pod_not_ready_yet_gets_the_weight_once_it_reports_the_candidate() -> None:
    kube = FakeKube(spec({"steps": [50, 100]}), {"canary": progressing()})
    kube.add_pod("starting", "10.0.0.4", ready=False)
    pods = Pods()
    pods.by_ip["10.0.0.4"] = FakeScorer(weight=0)
    driver = make_driver(kube, pods, Clock(1000.0))
    await driver.tick("ns", "p")
    assert pods.by_ip["10.0.0.4"].puts == [{"weight": 50, "shadow": False}]


async def test_a_changed_candidate_takes_the_old_ones_weight_away_before_it_is_pulled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pushed_before_pull: list[int] = []
    pods = Pods()

    async def check(ref: str, *, plain_http: bool) -> str | None:
        pushed_before_pull.append(pods.by_ip["10.0.0.1"].weight)
        return None

    monkeypatch.setattr(driver_module, "candidate_problem", check)
    other = "registry.example.com/models/gbt@sha256:" + "d" * 64
    kube = FakeKube(spec({"steps": [50, 100]}), {"canary": progressing()})
    kube.body["spec"]["model"]["canary"]["ref"] = other
    kube.add_pod("a", "10.0.0.1")
    pods.by_ip["10.0.0.1"] = FakeScorer(weight=50)
    driver = make_driver(kube, pods, Clock(1000.0))
    restarted = await driver.tick("ns", "p")
    assert [e.reason for e in restarted.events] == ["CanaryRestarted"]
    assert kube.body["status"]["canary"]["phase"] == "Validating"
    assert pods.by_ip["10.0.0.1"].weight == 0
    assert pushed_before_pull == []
    await driver.tick("ns", "p")
    assert pushed_before_pull == [0]
    assert kube.body["status"]["canary"]["phase"] == "Loading"


# -- analysis at 100 % ---------------------------------------------------------------------------
async def test_the_last_step_at_100_compares_with_what_the_pods_counted_after_a_restart() -> None:
    """The operator restarted during the 100 % step: no memory of the stable side, and the
    stable model decides nothing now. The pods' own counters still hold what it decided."""
    canary = {"steps": [50, 100], "intervalSeconds": 30, "analysis": {"minSampleSize": 200}}
    state = progressing(100) | {"step": 2, "windowStartedAt": 1000.0, "nextCheckAt": 1030.0}
    kube = FakeKube(spec(canary), {"canary": state})
    kube.add_pod("a", "10.0.0.1")
    scorer = FakeScorer(weight=100)
    scorer.decisions = {
        ("APPROVE", STABLE_DIGEST, "stable"): 900,
        ("FLAG", STABLE_DIGEST, "stable"): 10,
        ("APPROVE", CANDIDATE_DIGEST, "canary"): 400,
    }
    pods = Pods()
    pods.by_ip["10.0.0.1"] = scorer
    clock = Clock(1001.0)
    driver = make_driver(kube, pods, clock)  # a fresh driver: an operator just started
    await driver.tick("ns", "p")  # opens the window it has no counters for
    window_end = kube.body["status"]["canary"]["nextCheckAt"]
    scorer.decisions[("APPROVE", CANDIDATE_DIGEST, "canary")] += 300
    scorer.decisions[("FLAG", CANDIDATE_DIGEST, "canary")] = 4
    clock.now = window_end
    result = await driver.tick("ns", "p")
    status = kube.body["status"]
    assert status["canary"]["phase"] == "Promoted", status["canary"]["message"]
    assert status["canary"]["lastAnalysis"]["stableSamples"] == 910
    assert status["promoted"] == {"ref": CANDIDATE, "replaces": STABLE}
    assert [e.reason for e in result.events] == ["CanaryPromoted"]


async def test_a_100_step_with_nothing_to_compare_with_rolls_back_instead_of_waiting() -> None:
    canary = {"shadowSeconds": 0, "steps": [100], "analysis": {"minSampleSize": 200}}
    state = progressing(100) | {"windowStartedAt": 1000.0, "nextCheckAt": 1030.0}
    kube = FakeKube(spec(canary), {"canary": state})
    kube.add_pod("a", "10.0.0.1")
    scorer = FakeScorer(weight=100)
    scorer.decisions = {("APPROVE", STABLE_DIGEST, "stable"): 12}
    pods = Pods()
    pods.by_ip["10.0.0.1"] = scorer
    clock = Clock(1001.0)
    driver = make_driver(kube, pods, clock)
    await driver.tick("ns", "p")
    scorer.decisions[("APPROVE", CANDIDATE_DIGEST, "canary")] = 500
    clock.now = kube.body["status"]["canary"]["nextCheckAt"]
    result = await driver.tick("ns", "p")
    canary_status = kube.body["status"]["canary"]
    assert (canary_status["phase"], canary_status["weight"]) == ("Failed", 0)
    assert "shadow phase" in canary_status["message"]
    assert [e.reason for e in result.events] == ["CanaryFailed"]
    assert scorer.weight == 0


# -- concurrency ---------------------------------------------------------------------------------
async def test_a_promotion_decided_on_a_stale_read_never_overwrites_a_concurrent_abort() -> None:
    canary = {"steps": [50, 100], "intervalSeconds": 30, "analysis": {"minSampleSize": 200}}
    state = progressing(100) | {"step": 2, "windowStartedAt": 1000.0, "nextCheckAt": 1030.0}
    kube = FakeKube(spec(canary), {"canary": state})
    kube.add_pod("a", "10.0.0.1")
    scorer = FakeScorer(weight=100)
    scorer.decisions = {("APPROVE", STABLE_DIGEST, "stable"): 900}
    pods = Pods()
    pods.by_ip["10.0.0.1"] = scorer
    clock = Clock(1001.0)
    driver = make_driver(kube, pods, clock)
    await driver.tick("ns", "p")
    scorer.decisions[("APPROVE", CANDIDATE_DIGEST, "canary")] = 700
    clock.now = kube.body["status"]["canary"]["nextCheckAt"]

    def remove_canary(body: dict[str, Any]) -> None:
        del body["spec"]["model"]["canary"]

    kube.meanwhile.append(remove_canary)
    stale = await driver.tick("ns", "p")  # judged Promoted on what it read: refused
    assert stale.events == []
    assert kube.body["status"]["canary"]["phase"] == "Progressing"
    assert "promoted" not in kube.body["status"]
    aborted = await driver.tick("ns", "p")
    assert [e.reason for e in aborted.events] == ["CanaryAborted"]
    assert kube.body["status"]["canary"]["phase"] == "Aborting"
    assert "promoted" not in kube.body["status"]


async def test_a_status_write_refused_for_another_writers_change_goes_again() -> None:
    """The reconciler's conditions move the resourceVersion too: that is no reason to lose
    the tick (a validation can take a registry's timeouts)."""
    kube = FakeKube(spec(), {"canary": progressing()})
    kube.add_pod("a", "10.0.0.1")
    pods = Pods()
    pods.by_ip["10.0.0.1"] = FakeScorer(weight=50)

    def reconciler_writes(body: dict[str, Any]) -> None:
        body["status"]["phase"] = "Ready"

    kube.meanwhile.append(reconciler_writes)
    result = await make_driver(kube, pods, Clock(1000.0)).tick("ns", "p")
    assert [e.reason for e in result.events] == ["CanaryAborted"]
    assert kube.body["status"]["canary"]["phase"] == "Aborting"


# -- Prometheus -------------------------------------------------------------------------------
async def test_with_prometheus_the_routing_goes_first_and_a_failure_backs_off() -> None:
    canary = {
        "steps": [50, 100],
        "intervalSeconds": 30,
        "analysis": {"prometheusUrl": f"http://{PROMETHEUS_HOST}:9090"},
    }
    state = progressing(50) | {"windowStartedAt": 1000.0, "nextCheckAt": 1030.0}
    kube = FakeKube(spec(canary), {"canary": state})
    kube.add_pod("new", "10.0.0.5")
    pods = Pods()
    pods.by_ip["10.0.0.5"] = FakeScorer(weight=0)  # just started: weight 0
    clock = Clock(1030.0)
    driver = make_driver(kube, pods, clock)
    await driver.tick("ns", "p")
    assert pods.log[0] == "PUT 10.0.0.5"
    queries = pods.log.count("prometheus")
    assert queries >= 1
    # The check failed: not asked again at every tick, but after a while.
    clock.now += 1
    await driver.tick("ns", "p")
    assert pods.log.count("prometheus") == queries
    clock.now += 15
    await driver.tick("ns", "p")
    assert pods.log.count("prometheus") > queries
    assert kube.body["status"]["canary"]["phase"] == "Progressing"


# -- windows ------------------------------------------------------------------------------------
async def test_a_pod_first_read_late_counts_from_then_unless_it_started_in_the_window() -> None:
    canary = {"steps": [50, 100], "intervalSeconds": 30, "analysis": {"minSampleSize": 200}}
    kube = FakeKube(spec(canary), {"canary": progressing(50)})
    # Unix 1000 is 1970-01-01T00:16:40Z: "old" ran long before, "fresh" starts later.
    kube.add_pod("a", "10.0.0.1", started="1970-01-01T00:00:00Z")
    kube.add_pod("old", "10.0.0.2", started="1970-01-01T00:00:00Z")
    pods = Pods()
    history = {("APPROVE", CANDIDATE_DIGEST, "canary"): 5000.0}
    for ip in ("10.0.0.1", "10.0.0.2"):
        pods.by_ip[ip] = FakeScorer(weight=50)
        pods.by_ip[ip].decisions = {
            **history,
            ("APPROVE", STABLE_DIGEST, "stable"): 5000.0,
        }
    pods.unreachable.add("10.0.0.2")  # not read when the window opens
    clock = Clock(1000.0)
    driver = make_driver(kube, pods, clock)
    await driver.tick("ns", "p")  # the window opens (the driver has no counters for it)
    opened_at = kube.body["status"]["canary"]["windowStartedAt"]
    pods.unreachable.clear()
    clock.now += 5
    await driver.tick("ns", "p")  # "old" read for the first time: it opens at its counters
    kube.add_pod("fresh", "10.0.0.3", started="1970-01-01T00:16:50Z")  # after the opening
    pods.by_ip["10.0.0.3"] = FakeScorer(weight=50)
    pods.by_ip["10.0.0.3"].decisions = {("APPROVE", CANDIDATE_DIGEST, "canary"): 30.0}
    for ip, more in (("10.0.0.1", 100.0), ("10.0.0.2", 70.0)):
        pods.by_ip[ip].decisions[("APPROVE", CANDIDATE_DIGEST, "canary")] += more
        pods.by_ip[ip].decisions[("APPROVE", STABLE_DIGEST, "stable")] += more
    clock.now = opened_at + 30
    await driver.tick("ns", "p")
    analysis = kube.body["status"]["canary"]["lastAnalysis"]
    assert analysis["samples"] == 100 + 70 + 30


async def test_a_candidate_named_again_while_aborting_is_pulled_only_after_validating_is_saved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pulls: list[str] = []

    async def check(ref: str, *, plain_http: bool) -> str | None:
        pulls.append(ref)
        return None

    monkeypatch.setattr(driver_module, "candidate_problem", check)
    aborting = progressing() | {"phase": "Aborting", "weight": 0}
    kube = FakeKube(spec({}), {"canary": aborting})
    driver = make_driver(kube, Pods(), Clock(1000.0))
    await driver.tick("ns", "p")
    assert (kube.body["status"]["canary"]["phase"], pulls) == ("Validating", [])
    await driver.tick("ns", "p")
    assert (kube.body["status"]["canary"]["phase"], pulls) == ("Loading", [CANDIDATE])
