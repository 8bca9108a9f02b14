"""The alert rules: promtool check + unit tests, their shape, and the metric names they rely on.

promtool comes from the Debian package `prometheus` (scripts/setup.sh installs it); without it these
tests fail, they never skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART, METRICS, ROOT, find, render

RULES = CHART / "files" / "prometheus-rules.yaml"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
RULE_TESTS = sorted(Path(__file__).parent.glob("*.test.yaml"))
REQUIRED_ALERTS = {
    "ClmReconcileErrorsSustained",
    "ClmTrainingJobFailures",
    "ClmModelWithoutProductionVersion",
    "ClmTrainingStale",
}
METRIC_TOKEN = re.compile(r"\b(clm_[a-z0-9_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, (
        "promtool is missing: install the Debian package `prometheus` (apt-get install -y prometheus; "
        "scripts/setup.sh does it)"
    )
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _metric_names(text: str) -> set[str]:
    names = set()
    for token in METRIC_TOKEN.findall(text):
        for suffix in HISTOGRAM_SUFFIXES:
            if token.endswith(suffix) and token[: -len(suffix)] in METRICS:
                token = token[: -len(suffix)]
        names.add(token)
    return names


def _expressions(path: Path) -> str:
    """The PromQL of the rules file (expr fields) or of the dashboard (targets and variables)."""
    if path.suffix == ".json":
        dashboard = json.loads(path.read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
        return "\n".join(exprs)
    return "\n".join(rule["expr"] for rule in _rules())


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no tests/alerts/*.test.yaml"
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_cover_every_alert() -> None:
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert tested == {rule["alert"] for rule in _rules() if "alert" in rule}


def test_the_required_alerts_exist_with_severity_summary_and_runbook() -> None:
    alerts = {rule["alert"]: rule for rule in _rules() if "alert" in rule}
    assert REQUIRED_ALERTS <= alerts.keys()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"].strip(), name
        description = rule["annotations"]["description"]
        assert "kubectl" in description and "1." in description, f"{name}: the description is no runbook"


@pytest.mark.parametrize("path", [RULES, DASHBOARD], ids=["rules", "dashboard"])
def test_only_contract_metrics_are_used(path: Path) -> None:
    names = _metric_names(_expressions(path))
    assert names, f"{path.name} uses no clm_ metric"
    assert names <= METRICS.keys(), f"{path.name} uses unknown metrics {sorted(names - METRICS.keys())}"


def test_operator_exports_every_contract_metric() -> None:
    """The operator's metrics module declares each name the rules and the dashboard rely on."""
    source = (ROOT / "operator" / "clm_operator" / "observability" / "metrics.py").read_text()
    declared = set(re.findall(r"(?:Counter|Gauge|Histogram)\(\s*\"(clm_[a-z0-9_]+)\"", source))
    used = _metric_names(_expressions(RULES)) | _metric_names(_expressions(DASHBOARD))
    assert used <= declared, f"not exported by the operator: {sorted(used - declared)}"
    assert METRICS.keys() <= declared, f"contract metrics missing: {sorted(METRICS.keys() - declared)}"


def test_dashboard_is_a_grafana_dashboard_over_the_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "clm-operator" and dashboard["schemaVersion"] >= 36
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    used = _metric_names(_expressions(DASHBOARD))
    assert used == METRICS.keys(), f"not on the dashboard: {sorted(METRICS.keys() - used)}"


def test_chart_prometheus_rule_is_the_rules_file() -> None:
    """One source of truth: the PrometheusRule the chart renders is exactly the tested file."""
    (rule,) = find(
        render("prometheusRule.enabled=true", "prometheusRule.labels.release=kube-prometheus"),
        "PrometheusRule",
    )
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"


def test_rendered_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    (rule,) = find(render("prometheusRule.enabled=true"), "PrometheusRule")
    rendered = tmp_path / "rendered-rules.yaml"
    rendered.write_text(yaml.safe_dump(rule["spec"]))
    result = promtool("check", "rules", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr
