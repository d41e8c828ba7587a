"""The table of kinds the operator touches is the chart's RBAC: neither grants nor uses more."""

import re

import yaml

from jobpool.controller import kinds
from jobpool.controller.kube import object_path
from tests.helpers import ROOT

RBAC = ROOT / "charts/jobpool/templates/rbac.yaml"


def chart_rules() -> set[tuple[str, str, str]]:
    """(api group, resource, verb) granted by the pool Role and the leader Role of the chart."""
    text = RBAC.read_text()
    rules = re.search(r'define "jobpool.rules" -}}\n(.*?)\{\{- end -}}', text, re.S).group(1)
    # every rule, the conditional ones (kueue.enabled) included
    pool_rules = yaml.safe_load("\n".join(line for line in rules.splitlines() if not line.startswith("{{")))
    leader = yaml.safe_load(re.search(r"name: .*-leader\n.*?\nrules:\n(.*?)\n---", text, re.S).group(1))
    return {
        (group, resource, verb)
        for rule in [*pool_rules, *leader]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_chart_grants_exactly_the_verbs_of_the_kinds_table():
    granted, needed = chart_rules(), kinds.rbac_rules(kueue=True)
    assert granted - needed == set(), "the chart grants what the operator does not use"
    assert needed - granted == set(), "the operator uses what the chart does not grant"


def test_paths_follow_the_table():
    assert (
        object_path("apps/v1", "Deployment", "ns", "p-workers")
        == "/apis/apps/v1/namespaces/ns/deployments/p-workers"
    )
    assert object_path("v1", "Secret", "ns") == "/api/v1/namespaces/ns/secrets"
    assert (
        object_path("jobpool.dev/v1alpha1", "JobPool", "ns", "p")
        == "/apis/jobpool.dev/v1alpha1/namespaces/ns/jobpools/p"
    )
