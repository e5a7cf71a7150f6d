"""The shipped rules in a real Prometheus, scraping a real scorer (with a canary), API and
producer on the local stack: every recording rule returns data, every series the rules and the
dashboard query is in the live /metrics output, and driven faults fire their alerts (a flood of
bad messages: FraudPipeDLQRateHigh; the scorer stopped: FraudPipeScorerDown).

The rules are rendered by the operator's own function for a pipeline named `obs` whose targets
carry the labels a ServiceMonitor would give them (`namespace`, `service`). Only the alerts'
`for:` is shortened (to 5 s), so that the test waits seconds instead of minutes; the real
durations are exercised by promtool in test_monitoring_rules.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fraudpipe_operator import metrics as _operator_metrics  # noqa: F401 (in REGISTRY)
from fraudpipe_operator.builders import monitoring
from fraudpipe_operator.canary.analysis import TrackStats
from fraudpipe_operator.canary.stats import PodMetrics, PrometheusSource, sides
from fraudpipe_testing import toolchain
from fraudpipe_testing.dashboard_png import render_png
from fraudpipe_testing.plugin import PrometheusSettings
from fraudpipe_testing.stack.process import run_async
from fraudpipe_testing.waiting import wait_for

from .pipelines import pipeline

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.prometheus,
    pytest.mark.timeout(900),
]
BIN = Path(sys.executable).parent
DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "fraudpipe" / "dashboards"
PIPELINE = "obs"
WAIT_S = 300  # generous: two cores shared with other work


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


@dataclass
class Live:
    prometheus: str
    namespace: str
    topic: str
    kafka: str
    scorer: Process
    metrics_urls: dict[str, str]
    rules: list[dict[str, Any]]
    database_url: str
    started_at: float = field(default_factory=time.time)

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def firing(self, alert: str) -> list[dict[str, Any]]:
        return self.query(
            f'ALERTS{{alertname="{alert}", namespace="{self.namespace}", alertstate="firing"}}'
        )


async def _create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, n, 1) for name, n in topics.items()])
    finally:
        await admin.close()


async def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


async def _sql(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _produce_garbage(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, b"{not json", key=f"bad-{i % 7}".encode())
        await producer.flush()
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def live(
    kafka_bootstrap: str,
    redis_url: str,
    postgres_server_url: str,
    prometheus: PrometheusSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    if prometheus.targets_dir is None or prometheus.rules_dir is None:
        raise AssertionError(
            "this test needs a Prometheus it can give targets and rules to: the stack's own "
            "(hack/stack env sets PROMETHEUS_TARGETS_DIR and PROMETHEUS_RULES_DIR)"
        )
    work = tmp_path_factory.mktemp("monitoring-live")
    suffix = uuid.uuid4().hex[:8]
    namespace = f"obs-{suffix}"
    tx, decisions, dlq = f"obs-tx-{suffix}", f"obs-decisions-{suffix}", f"obs-dlq-{suffix}"
    run_async(_create_topics(kafka_bootstrap, {tx: 3, decisions: 3, dlq: 1}))
    database = f"obs_{suffix}"
    parts = urlsplit(postgres_server_url)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    run_async(_sql(admin_url, f'CREATE DATABASE "{database}"'))
    database_url = urlunsplit(parts._replace(path=f"/{database}"))
    prefix = f"obs-{suffix}:"
    started: list[Process] = []
    target_file = prometheus.targets_dir / f"{namespace}.json"
    rules_file = prometheus.rules_dir / f"{namespace}.yml"
    try:
        subprocess.run(
            [str(BIN / "fraudpipe-scorer"), "migrate"],
            env={**os.environ, "DATABASE_URL": database_url},
            check=True,
            capture_output=True,
            timeout=120,
        )
        model = work / "gbt"
        subprocess.run(
            [
                str(BIN / "fraudpipe-model"),
                "train",
                "--rows",
                "20000",
                "--threads",
                "1",
                "--out",
                str(model),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        ports = {"scorer": free_port(), "api": free_port(), "producer": free_port()}
        scorer = Process(
            "scorer",
            [str(BIN / "fraudpipe-scorer")],
            {
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "TRANSACTIONS_TOPIC": tx,
                "DECISIONS_TOPIC": decisions,
                "DLQ_TOPIC": dlq,
                "REDIS_URL": redis_url,
                "REDIS_KEY_PREFIX": prefix,
                "DATABASE_URL": database_url,
                "MODEL_REF": str(model),
                # The same model as candidate: canary-track series exist, alike by design.
                "CANARY_MODEL_REF": str(model),
                "CANARY_WEIGHT": "50",
                "CONSUMER_GROUP": f"obs-scorer-{suffix}",
                "METRICS_PORT": str(ports["scorer"]),
                "LOG_LEVEL": "INFO",
            },
            work / "scorer.log",
        )
        started.append(scorer)
        api = Process(
            "api",
            [str(BIN / "fraudpipe-api")],
            {
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "TRANSACTIONS_TOPIC": tx,
                "REDIS_URL": redis_url,
                "REDIS_KEY_PREFIX": prefix,
                "DATABASE_URL": database_url,
                "API_KEYS": "",
                "API_HOST": "127.0.0.1",
                "API_PORT": str(ports["api"]),
                "METRICS_PORT": "0",
            },
            work / "api.log",
        )
        started.append(api)
        producer = Process(
            "producer",
            [
                str(BIN / "fraudpipe-produce"),
                "--topic",
                tx,
                "--rps",
                "40",
                "--duration",
                "3600",
                "--users",
                "3000",
                "--metrics-port",
                str(ports["producer"]),
            ],
            {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PRODUCER_METRICS_HOST": "127.0.0.1"},
            work / "producer.log",
        )
        started.append(producer)
        metrics_urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}

        def serving(name: str) -> bool:
            process = {"scorer": scorer, "api": api, "producer": producer}[name]
            assert process.running(), f"{name} exited:\n{process.tail()}"
            try:
                return httpx.get(metrics_urls[name], timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        for name in metrics_urls:
            wait_for(lambda name=name: serving(name), f"{name} serving /metrics", WAIT_S)  # type: ignore[misc]

        # The labels a ServiceMonitor gives the scraped series.
        target_file.write_text(
            json.dumps(
                [
                    {
                        "targets": [f"127.0.0.1:{port}"],
                        "labels": {"namespace": namespace, "service": f"{PIPELINE}-{name}"},
                    }
                    for name, port in ports.items()
                ]
            )
        )
        values = monitoring.rule_values(pipeline(name=PIPELINE)) | {
            "namespace": namespace,
            "scorer": f'namespace="{namespace}", service="{PIPELINE}-scorer"',
            "api": f'namespace="{namespace}", service="{PIPELINE}-api"',
            "recorded": f'namespace="{namespace}", pipeline="{PIPELINE}"',
        }
        groups = monitoring.render_rule_groups(values, for_override="5s")
        live = Live(
            prometheus.url,
            namespace,
            tx,
            kafka_bootstrap,
            scorer,
            metrics_urls,
            [rule for group in groups for rule in group["rules"]],
            database_url,
        )
        wait_for(
            lambda: len(live.query(f'up{{namespace="{namespace}"}} == 1')) == 3,
            "Prometheus scraping all three targets",
            WAIT_S,
        )
        rules_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        httpx.post(f"{prometheus.url}/-/reload", timeout=30).raise_for_status()
        yield live
    finally:
        for process in reversed(started):
            process.stop()
        for path in (target_file, rules_file):
            path.unlink(missing_ok=True)
        httpx.post(f"{prometheus.url}/-/reload", timeout=30)
        run_async(_delete_topics(kafka_bootstrap, [tx, decisions, dlq]))
        run_async(_sql(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def _flood(live: Live, waves: int = 8, per_wave: int = 150) -> None:
    # In waves, so that Prometheus sees the DLQ counter move after its first scrape.
    for _ in range(waves):
        run_async(_produce_garbage(live.kafka, live.topic, per_wave))
        time.sleep(1)


def _exercise_api(live: Live) -> None:
    api = live.metrics_urls["api"].removesuffix("/metrics")
    for _ in range(5):
        httpx.get(f"{api}/healthz", timeout=10)
        httpx.get(f"{api}/readyz", timeout=10)


def test_the_dlq_alert_is_quiet_until_a_flood_of_bad_messages_fires_it(live: Live) -> None:
    wait_for(
        lambda: live.query(f'fraudpipe:transactions:rate5m{{namespace="{live.namespace}"}} > 0'),
        "decisions counted by the recording rules",
        WAIT_S,
    )
    assert live.firing("FraudPipeDLQRateHigh") == []
    # Rendering the dashboard for docs/: a few minutes of traffic first, so that it shows some.
    time.sleep(float(os.environ.get("FRAUDPIPE_DASHBOARD_WARMUP_S", "0")))
    _flood(live)
    (alert,) = wait_for(
        lambda: live.firing("FraudPipeDLQRateHigh"), "FraudPipeDLQRateHigh firing", WAIT_S
    )
    assert alert["metric"]["pipeline"] == PIPELINE
    assert alert["metric"]["severity"] == "warning"


def test_every_recording_rule_returns_data(live: Live) -> None:
    records = [rule["record"] for rule in live.rules if "record" in rule]
    assert len(records) >= 15

    def missing() -> list[str]:
        _exercise_api(live)
        return [
            name
            for name in records
            if not live.query(f'{name}{{namespace="{live.namespace}", pipeline="{PIPELINE}"}}')
        ]

    left: list[str] = []

    def none_missing() -> bool:
        nonlocal left
        left = missing()
        return not left

    wait_for(none_missing, f"data for every recording rule (missing: {left})", WAIT_S)
    # The canary runs the stable model, so both tracks are seen and compared.
    tracks = live.query(f'fraudpipe:decisions_by_track:rate10m{{namespace="{live.namespace}"}}')
    assert {r["metric"]["track"] for r in tracks} == {"stable", "canary"}


def _series_in(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, keywords or label names)."""
    without_matchers = re.sub(r"\{[^}]*\}", "{}", expr)
    without_strings = re.sub(r'"[^"]*"', '""', without_matchers)
    names = set(re.findall(r"\b(fraudpipe_[a-z0-9_]+|up)\b(?!\s*\()", without_strings))
    return names


def _exported(text: str) -> set[str]:
    """Every series name a /metrics page declares, sampled yet or not (a labelled counter
    with no child yet is declared, and its series will be named like this)."""
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_sum", "_count"],
        "gauge": [""],
        "info": ["_info"],
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in suffixes.get(family.type, [""])}
        names |= {sample.name for sample in family.samples}
    return names


def test_every_series_the_rules_and_the_dashboard_query_is_in_live_metrics(live: Live) -> None:
    exported = {"up"}
    for url in live.metrics_urls.values():
        exported |= _exported(httpx.get(url, timeout=10).text)
    # The operator's own metrics (FraudPipeScheduledJobFailed): no operator runs in this stack,
    # so its page as this process, which imports the same module, declares it.
    exported |= _exported(generate_latest(REGISTRY).decode())
    queried: dict[str, set[str]] = {}
    for rule in live.rules:
        for name in _series_in(rule["expr"]):
            queried.setdefault(name, set()).add(rule.get("record") or rule["alert"])
    records = {rule["record"] for rule in live.rules if "record" in rule}
    recorded_in_dashboards: dict[str, set[str]] = {}
    dashboards = sorted(DASHBOARD.glob("*.json"))
    assert dashboards, f"no dashboard under {DASHBOARD}"
    for path in dashboards:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                where = f"{path.name}: {panel['title']}"
                for name in _series_in(target["expr"]):
                    queried.setdefault(name, set()).add(where)
                for name in re.findall(r"fraudpipe:[a-z0-9_:]+", target["expr"]):
                    recorded_in_dashboards.setdefault(name, set()).add(where)
    assert {"fraudpipe_scorer_decisions_total", "up"} <= set(queried)
    missing = {name: sorted(users) for name, users in queried.items() if name not in exported}
    assert not missing, f"queried but exported by no service: {missing}"
    unrecorded = set(recorded_in_dashboards) - records
    assert not unrecorded, f"dashboard queries series no rule records: {unrecorded}"
    # Every panel shows data from the live pipeline (a typo in a matcher would not).
    for path in dashboards:
        for panel in json.loads(path.read_text())["panels"]:
            exprs = [t["expr"] for t in panel.get("targets", [])]
            filled = [
                e.replace("$namespace", live.namespace).replace("$pipeline", PIPELINE)
                for e in exprs
            ]
            assert any(live.query(e) for e in filled), f"no data: {panel['title']}"


def test_the_dashboard_renders_from_the_live_prometheus(live: Live, tmp_path: Path) -> None:
    """The PNG in docs/ is this test's output: FRAUDPIPE_DASHBOARD_PNG=docs/dashboard.png."""
    out = Path(os.environ.get("FRAUDPIPE_DASHBOARD_PNG") or tmp_path / "dashboard.png")
    render_png(
        DASHBOARD / "fraudpipe-pipeline.json",
        live.prometheus,
        {"namespace": live.namespace, "pipeline": PIPELINE},
        (live.started_at, time.time()),
        out,
        caption="drawn from the live test's Prometheus: one scorer at 40 tx/s with a 50 % "
        "canary (the same model), then a flood of bad messages",
        chromium=str(toolchain.find("chromium")),
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000


def test_the_daily_report_counts_this_pipelines_decisions_with_prometheus(live: Live) -> None:
    """`fraudpipe-api report` as the operator's CronJob runs it: APPROVE counts from the
    Prometheus that scrapes this scorer, selected as the operator selects it."""
    selector = f'namespace="{live.namespace}", service="{PIPELINE}-scorer"'
    done = subprocess.run(
        [str(BIN / "fraudpipe-api"), "report", "--date", "today"],
        env={
            **os.environ,
            "DATABASE_URL": live.database_url,
            "PROMETHEUS_URL": live.prometheus,
            "PROMETHEUS_SELECTOR": selector,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    decisions = report["decisions"]
    approved = live.query(
        f'sum(fraudpipe_scorer_decisions_total{{{selector}, decision="APPROVE", track!="shadow"}})'
    )
    assert decisions["APPROVE"] > 0
    # increase() over the day misses what was counted before the first scrape: at most all.
    assert decisions["APPROVE"] <= float(approved[0]["value"][1]) * 1.1
    assert decisions["total"] == decisions["APPROVE"] + decisions["FLAG"] + decisions["BLOCK"]
    assert 0 <= report["alert_rate"] <= 1


def test_the_canary_analysis_reads_each_model_of_this_pipeline_from_prometheus(
    live: Live,
) -> None:
    """The canary's Prometheus source (analysis.prometheusUrl, docs/canary.md) against the
    real thing: its queries select this pipeline's scorer, split it by model and track, and
    return the inference histogram the latency check reads."""
    pod = PodMetrics.parse(httpx.get(live.metrics_urls["scorer"], timeout=10).text)
    assert pod.candidate_digest  # a canary at weight 50, the same model under both tracks
    candidate, stable = sides(pod.candidate_digest, pod.candidate_digest)
    selector = f'namespace="{live.namespace}", service="{PIPELINE}-scorer"'

    async def read(chosen: str) -> tuple[TrackStats, TrackStats]:
        async with httpx.AsyncClient() as http:
            source = PrometheusSource(live.prometheus, chosen, http)
            return await source.track(candidate, 600), await source.track(stable, 600)

    def both_seen() -> tuple[TrackStats, TrackStats] | None:
        found = run_async(read(selector))
        return found if all(t.decisions > 0 and t.latency for t in found) else None

    mine, theirs = wait_for(both_seen, "both models' statistics in Prometheus", WAIT_S)
    for stats in (mine, theirs):
        # increase() extrapolates each series alike: as many scores as decisions, about.
        assert stats.scores[-1][1] == pytest.approx(stats.decisions, rel=0.15)
        assert stats.latency[-1][1] > 0
        assert 0 <= stats.alerts <= stats.decisions
    # Users split by CRC-32 at weight 50: neither model has all of them.
    share = mine.decisions / (mine.decisions + theirs.decisions)
    assert 0.2 < share < 0.8, (mine, theirs)
    # Another pipeline's selector sees nothing of this one.
    elsewhere = run_async(read(f'namespace="{live.namespace}-other", service="x"'))
    assert [t.decisions for t in elsewhere] == [0, 0]


def test_stopping_the_scorer_fires_scorer_down(live: Live) -> None:
    assert live.firing("FraudPipeScorerDown") == []
    live.scorer.stop()
    (alert,) = wait_for(
        lambda: live.firing("FraudPipeScorerDown"), "FraudPipeScorerDown firing", WAIT_S
    )
    assert alert["metric"]["severity"] == "critical"
    assert alert["metric"]["pipeline"] == PIPELINE
