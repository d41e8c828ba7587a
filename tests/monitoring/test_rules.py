"""The chart's alert and recording rules: valid for Prometheus, unit-tested with promtool,
and each alert ready for an on-call engineer (severity, summary, description, a runbook in
docs/runbooks.md)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts/jobpool/monitoring/prometheus-rules.yaml"
RULE_TESTS = Path(__file__).with_name("prometheus-rules.test.yaml")
RUNBOOKS = ROOT / "docs/runbooks.md"
# The one home of the runbooks' address: the chart's default, which the plain rule file spells out.
RUNBOOK_BASE = (
    yaml.safe_load((ROOT / "charts/jobpool/values.yaml").read_text())["monitoring"]["prometheusRule"][
        "runbookBaseUrl"
    ]
    + "#"
)


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: run `make prometheus` (Debian's prometheus package)", pytrace=False)
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=RULE_TESTS.parent)


def alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_are_valid_for_prometheus():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_promtool_unit_tests():
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing():
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        check["alertname"]
        for case in cases
        for check in case.get("alert_rule_test", [])
        if check.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alerts()} <= fired


def test_the_runbook_base_is_docs_runbooks_md_on_github():
    assert RUNBOOK_BASE == "https://github.com/jobpool/jobpool/blob/main/docs/runbooks.md#"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_has_severity_text_and_a_runbook(rule):
    name = rule["alert"]
    assert re.fullmatch(r"JobPool(?:[A-Z][a-z]+)+", name), f"{name}: alert names are CamelCase JobPool*"
    assert rule["labels"]["severity"] in ("warning", "critical")
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()
    runbooks = RUNBOOKS.read_text()
    assert re.search(rf"^## {name}$", runbooks, re.M), f"docs/runbooks.md has no runbook heading '## {name}'"


def test_every_runbook_is_an_alert():
    headings = set(re.findall(r"^## (JobPool\w+)$", RUNBOOKS.read_text(), re.M))
    assert headings == {rule["alert"] for rule in alerts()}


def test_the_rule_tests_expect_the_rules_runbook_urls():
    urls = {
        check_alert["exp_annotations"]["runbook_url"]
        for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for check in case.get("alert_rule_test", [])
        for check_alert in check.get("exp_alerts", [])
        if "runbook_url" in check_alert.get("exp_annotations", {})
    }
    assert urls and urls <= {rule["annotations"]["runbook_url"] for rule in alerts()}
