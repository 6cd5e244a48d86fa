"""The chart's PrometheusRule, judged by Prometheus's own promtool: the rules load, and each alert fires
(and stays quiet) as tests/chart/prometheus/alerts_test.yaml says, with the annotations it renders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import NAMESPACE, RELEASE, Rendered, run, tool

HERE = Path(__file__).resolve().parent
RULE_TESTS = HERE / "prometheus" / "alerts_test.yaml"


def _rules_dir(rendered: Rendered, tmp_path: Path) -> Path:
    rule = rendered.one("PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return tmp_path


@pytest.fixture
def rules_dir(rendered: dict[str, Rendered], tmp_path: Path) -> Path:
    return _rules_dir(rendered["monitoring"], tmp_path)


def test_rules_load(rules_dir: Path) -> None:
    checked = run(tool("promtool"), "check", "rules", str(rules_dir / "rules.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout


def test_alerts_fire_as_specified(rules_dir: Path) -> None:
    tested = run(tool("promtool"), "test", "rules", str(rules_dir / RULE_TESTS.name))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_rule_test(rules_dir: Path) -> None:
    rules = yaml.safe_load((rules_dir / "rules.yaml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    spec = yaml.safe_load(RULE_TESTS.read_text())
    tested = {case["alertname"] for test in spec["tests"] for case in test["alert_rule_test"]}
    fired = {case["alertname"] for test in spec["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert alerts == tested == fired
    assert RELEASE in (rules_dir / "rules.yaml").read_text()
