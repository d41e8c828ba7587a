"""The contract (jobpool/contract.py) against what spells its facts outside Python: the chart's
values and templates, the alerts and the dashboard, the queue's Lua library and the CRD. Each
test fails when one side drifts from the other."""

from __future__ import annotations

import ast
import json
import re

import pytest
import yaml
from prometheus_client import CollectorRegistry

from jobpool import contract
from jobpool.api import AutoscalingSpec, QueueSpec, RetrySpec, WorkerSpec
from jobpool.api.crd import NAME_RULE
from jobpool.api.v1alpha1 import PodTemplatePodSpec
from jobpool.controller import builders, external_metrics
from jobpool.controller.metrics import OperatorMetrics
from jobpool.queue.redis import library
from jobpool.worker.metrics import WorkerMetrics
from tests.helpers import ROOT

CHART = ROOT / "charts/jobpool"
TEMPLATES = CHART / "templates"
MONITORING = CHART / "monitoring"
RULE_FILES = (MONITORING / "prometheus-rules.yaml", ROOT / "tests/monitoring/prometheus-rules.test.yaml")
DASHBOARD = MONITORING / "dashboard.json"
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


# -- the module itself ---------------------------------------------------------------------------
def test_the_contract_imports_nothing_but_typing():
    """The worker imports it at start-up: no pydantic, no kubernetes, nothing that costs."""
    tree = ast.parse((ROOT / "operator/jobpool/contract.py").read_text())
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "typing"}


# -- the chart -----------------------------------------------------------------------------------
def template(name: str) -> str:
    return (TEMPLATES / name).read_text()


def test_the_chart_values_use_the_contract_ports():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["metricsPort"] == contract.OPERATOR_METRICS_PORT


def test_the_chart_labels_the_operator_by_the_contract_names():
    defines = dict(re.findall(r'{{- define "([^"]+)" -}}\n(.*?){{- end -}}', template("_helpers.tpl"), re.S))
    for name in ("jobpool.labels", "jobpool.selectorLabels"):  # the operator's objects and pods
        assert f"app.kubernetes.io/name: {contract.OPERATOR_NAME}\n" in defines[name], name
    assert f"app.kubernetes.io/part-of: {contract.PART_OF}\n" in defines["jobpool.commonLabels"]


def test_the_pod_monitor_selects_the_worker_pods_the_operator_labels():
    """monitoring.yaml's PodMonitor matchLabels are labels that every worker pod carries."""
    monitoring = template("monitoring.yaml")
    pod_monitor = monitoring[monitoring.index("kind: PodMonitor") :]
    block = re.search(r"selector:\n    matchLabels:\n((?:      \S+: \S+\n)+)", pod_monitor)
    assert block, "the PodMonitor has no matchLabels"
    selected = dict(line.strip().split(": ") for line in block.group(1).splitlines())
    worker_labels = builders.pool_labels("p")
    assert selected == {key: worker_labels[key] for key in selected}
    assert selected["app.kubernetes.io/name"] == contract.WORKER_NAME
    assert selected["app.kubernetes.io/managed-by"] == contract.OPERATOR_NAME
    # the jobs the rules expect are named by app.kubernetes.io/name
    assert f'job="{contract.OPERATOR_NAME}"' in monitoring
    assert f'job="{contract.WORKER_NAME}"' in monitoring


def test_the_admission_policy_knows_the_worker_objects_by_the_contract_labels():
    policy = template("admission-policy.yaml")
    managed_by = re.findall(r"\[\?'app\.kubernetes\.io/managed-by'\] == optional\.of\('([^']+)'\)", policy)
    assert managed_by and set(managed_by) == {contract.OPERATOR_NAME}
    pool_keys = re.findall(r"\[\?'([^']+)'\] == optional\.of\(variables\.pool\)", policy)
    pool_keys += re.findall(r"\{'([^']+)': variables\.pool\}", policy)
    pool_keys += re.findall(r"'([^']+)' in variables\.labels", policy)
    assert pool_keys and set(pool_keys) == {contract.LABEL_POOL}
    assert f"app.kubernetes.io/managed-by={contract.OPERATOR_NAME}" in policy
    assert f"{contract.LABEL_POOL}=<pool>" in policy


# -- metrics: the alerts and the dashboard name only metrics the code exports ---------------------
def promql() -> dict[str, list[str]]:
    """Every PromQL expression of the rule files and the dashboard, by file."""
    found: dict[str, list[str]] = {}
    for path in RULE_FILES:
        data = yaml.safe_load(path.read_text())
        groups = data.get("groups", []) if path.name == "prometheus-rules.yaml" else []
        exprs = [rule["expr"] for group in groups for rule in group["rules"]]
        for test in data.get("tests", []):
            exprs += [series["series"] for series in test.get("input_series", [])]
            exprs += [case["expr"] for case in test.get("promql_expr_test", [])]
        found[path.name] = exprs

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    found[DASHBOARD.name] = list(walk(json.loads(DASHBOARD.read_text())))
    return found


def metric_names(expr: str) -> set[str]:
    """The jobpool_* series an expression reads, a histogram's by its own name."""
    names = set()
    for name in re.findall(r"\bjobpool_[a-z_]+", expr):
        for suffix in HISTOGRAM_SERIES:
            if name.endswith(suffix) and name.removesuffix(suffix) in contract.METRIC_NAMES:
                name = name.removesuffix(suffix)
        names.add(name)
    return names


@pytest.mark.parametrize("source", [path.name for path in RULE_FILES] + [DASHBOARD.name])
def test_the_alerts_and_the_dashboard_name_only_contract_metrics(source):
    exprs = promql()[source]
    used = set().union(*map(metric_names, exprs))
    assert used, f"{source}: no jobpool metric found"
    assert used <= contract.METRIC_NAMES, f"{source} names metrics the code does not export"


@pytest.mark.parametrize("source", [path.name for path in RULE_FILES] + [DASHBOARD.name])
def test_the_alerts_and_the_dashboard_name_only_contract_outcomes(source):
    outcomes = {
        outcome
        for expr in promql()[source]
        for matcher in re.findall(r'outcome=~?\\?"([^"\\]+)', expr)
        for outcome in matcher.split("|")
    }
    assert outcomes <= set(contract.ATTEMPT_OUTCOMES)


def family_names(registry: CollectorRegistry) -> set[str]:
    """The metric names as PromQL reads them: a counter's with its _total."""
    return {
        metric.name + "_total" if metric.type == "counter" else metric.name for metric in registry.collect()
    }


def test_the_code_exports_exactly_the_contract_metrics():
    assert family_names(OperatorMetrics().registry) == set(contract.OPERATOR_METRICS)
    assert family_names(WorkerMetrics("ns", "p", 1).registry) == set(contract.WORKER_METRICS)
    assert set(external_metrics.METRICS) <= contract.METRIC_NAMES


# -- outcomes: the Lua library counts and returns the contract's ---------------------------------
def lua() -> dict[str, str]:
    return library.sources()


def test_the_lua_library_counts_only_the_contract_counters():
    counted = {
        name
        for source in lua().values()
        for name in re.findall(r"'HINCRBY', k\.counters, '([a-z_]+)'", source)
    }
    assert counted == set(contract.QUEUE_COUNTERS) - {
        contract.OUTCOME_DEAD_LETTERED,
        contract.OUTCOME_PERMANENT,
    }
    # fail counts a dead letter under its outcome's name: dead_lettered or permanent
    fail = lua()["fail"]
    assert "redis.call('HINCRBY', k.counters, outcome, 1)" in fail


def test_the_lua_fail_function_speaks_the_contract_outcomes():
    fail = lua()["fail"]
    spoken = set(re.findall(r"\breturn '([a-z_ ]+)'", fail))
    spoken |= set(re.findall(r"outcome [~=]= '([a-z_ ]+)'", fail))
    spoken |= set(re.findall(r"outcome = '([a-z_ ]+)'", fail))
    assert spoken <= set(contract.ATTEMPT_OUTCOMES)
    # the outcomes a worker hands to fail, each one handled by name
    assert {contract.OUTCOME_RETRIED, contract.OUTCOME_PERMANENT, contract.OUTCOME_CANCELLED} <= spoken
    assert {contract.OUTCOME_DEAD_LETTERED, contract.OUTCOME_DUPLICATE} <= spoken
    ended = {
        name for source in lua().values() for name in re.findall(r"record_ended\([^)]*'([a-z_]+)'\)", source)
    }
    assert ended <= set(contract.ATTEMPT_OUTCOMES)


# -- the JobPool's cross-field rules: one declaration, in the CRD and in the model ----------------
RULES = {
    contract.QUEUE_ONE_URL_SOURCE: (
        QueueSpec,
        {"url": "redis://q:6379/0", "urlSecretRef": {"name": "s", "key": "k"}},
    ),
    contract.ONLY_THE_WORKER_CONTAINER: (PodTemplatePodSpec, {"containers": [{"name": "sidecar"}]}),
    contract.WORKER_ONE_RUNNER: (WorkerSpec, {"image": "i"}),
    contract.RETRY_BACKOFF_BOUNDED: (RetrySpec, {"backoffSeconds": 10, "maxBackoffSeconds": 1}),
    contract.AUTOSCALING_BOUNDS_ORDERED: (AutoscalingSpec, {"minWorkers": 5, "maxWorkers": 1}),
}


def test_the_crd_carries_every_rule_once_as_the_contract_declares_it():
    """Besides metadata.name's rule, which the CRD generator adds (no model field holds the name)."""
    crd = yaml.safe_load((CHART / "crds/jobpool.dev_jobpools.yaml").read_text())

    def validations(node):
        if isinstance(node, dict):
            for entry in node.get("x-kubernetes-validations", []):
                yield contract.Rule(entry["rule"], entry["message"])
            for value in node.values():
                yield from validations(value)
        elif isinstance(node, list):
            for item in node:
                yield from validations(item)

    declared = [
        rule for rule in validations(crd) if rule != contract.Rule(NAME_RULE["rule"], NAME_RULE["message"])
    ]
    assert sorted(declared, key=str) == sorted(RULES, key=str)


@pytest.mark.parametrize("rule", list(RULES), ids=lambda rule: rule.message.split(":")[0])
def test_the_model_refuses_with_the_rule_message(rule):
    model, breaking = RULES[rule]
    with pytest.raises(ValueError, match=re.escape(rule.message)):
        model.model_validate(breaking)
