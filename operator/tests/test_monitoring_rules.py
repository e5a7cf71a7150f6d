"""The PrometheusRule the operator ships, checked by the real promtool: syntax
(`promtool check rules`) and behaviour (`promtool test rules` on the fixtures in
monitoring/rules_test.yaml), and every alert documented in docs/runbooks.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fraudpipe_operator.builders import monitoring
from fraudpipe_testing import toolchain

from .pipelines import pipeline

HERE = Path(__file__).parent
RUNBOOKS = HERE.parents[1] / "docs" / "runbooks.md"
# What issue 9 asks the rules to alert on, by the alert that does it.
REQUIRED_ALERTS = {
    "FraudPipeConsumerLagHigh",  # consumer lag high and growing
    "FraudPipeScorerDown",
    "FraudPipeDLQRateHigh",
    "FraudPipeScorerDependencyErrors",  # error rate (scorer)
    "FraudPipeApiErrorRate",  # error rate (API)
    "FraudPipeLatencyAboveSLO",  # end-to-end p99 above the SLO
    "FraudPipeAlertRateSpike",
    "FraudPipeCanaryFailing",
    "FraudPipeModelNotReady",
}


def rules_of(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"]]


def write_rules(folder: Path) -> Path:
    groups = monitoring.build_pipeline_prometheusrule(pipeline())["spec"]["groups"]
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(toolchain.find("promtool")), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_promtool_accepts_the_rendered_rules(tmp_path: Path) -> None:
    rules = write_rules(tmp_path)
    checked = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules_of(yaml.safe_load(rules.read_text())['groups']))} rules found" in (
        checked.stdout
    )


def test_each_alert_fires_on_its_fault_and_only_after_its_for(tmp_path: Path) -> None:
    write_rules(tmp_path)
    shutil.copy(HERE / "monitoring" / "rules_test.yaml", tmp_path / "rules_test.yaml")
    tested = promtool("test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    fixtures = yaml.safe_load((HERE / "monitoring" / "rules_test.yaml").read_text())
    exercised = {
        case["alertname"]
        for test in fixtures["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {
        r["alert"] for r in rules_of(monitoring.render_rule_groups(_values())) if "alert" in r
    }
    assert exercised == alerts, "every alert needs a fixture in which it fires"


def _values() -> dict[str, str]:
    return monitoring.rule_values(pipeline())


def test_the_issue_alerts_exist_with_summary_description_and_a_runbook_section() -> None:
    alerts = [r for r in rules_of(monitoring.render_rule_groups(_values())) if "alert" in r]
    assert {a["alert"] for a in alerts} >= REQUIRED_ALERTS
    sections = set(re.findall(r"^## (\w+)$", RUNBOOKS.read_text(), re.M))
    assert sections == {a["alert"] for a in alerts}, "one runbook section per alert, no more"
    for alert in alerts:
        annotations = alert["annotations"]
        assert annotations["summary"]
        assert annotations["description"]
        anchor = annotations["runbook_url"].rpartition("#")[2]
        assert anchor == alert["alert"].lower()
        assert alert["labels"]["severity"] in {"warning", "critical"}


def test_two_pipelines_never_record_the_same_series() -> None:
    first = rules_of(monitoring.render_rule_groups(_values()))
    other = monitoring.rule_values(pipeline(name="cards"))
    second = rules_of(monitoring.render_rule_groups(other))
    for a, b in zip(first, second, strict=True):
        assert (a["labels"]["namespace"], a["labels"]["pipeline"]) == ("fraud", "payments")
        assert b["labels"]["pipeline"] == "cards"
        assert 'service="cards-scorer"' in b["expr"] or "cards" in b["expr"]


def test_every_placeholder_is_filled_and_an_unknown_one_is_an_error() -> None:
    rendered = yaml.safe_dump(monitoring.render_rule_groups(_values()))
    assert "$(" not in rendered
    with pytest.raises(KeyError, match=r"\$\(nope\)"):
        monitoring.render_rule_groups(
            _values(), "groups: [{name: x, rules: [{record: a, expr: '$(nope)'}]}]"
        )


def test_lag_threshold_follows_the_spec() -> None:
    p = pipeline({"scorer": {"autoscaling": {"lagPerReplica": 250}}})
    (lag,) = [
        r
        for r in monitoring.build_pipeline_prometheusrule(p)["spec"]["groups"][0]["rules"]
        if r.get("alert") == "FraudPipeConsumerLagHigh"
    ]
    assert "> 2500" in lag["expr"]
