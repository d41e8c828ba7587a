"""Fixtures of the end-to-end tests: the CRDs installed once, an operator per test."""

from __future__ import annotations

import json
import secrets

import pytest

from tests.e2e.operator_harness import install_crds, start_operator
from tests.fixtures.cluster import localcluster

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@pytest.fixture(scope="session")
def jobpool_crds(kube_cluster):
    install_crds(kube_cluster)
    return kube_cluster


@pytest.fixture
def operator(jobpool_crds, kube_namespace, redis_server, tmp_path):
    """A running operator for the test's namespace; its pools are deleted (finalizer run) after."""
    op = start_operator(jobpool_crds, kube_namespace, redis_server.url, tmp_path / "operator.log")
    try:
        yield op
    finally:
        if not op.alive():
            op = start_operator(jobpool_crds, kube_namespace, redis_server.url, tmp_path / "operator.log")
        jobpool_crds.kubectl(
            "delete", "jobpools", "--all", "-n", kube_namespace, "--timeout=60s", check=False
        )
        op.stop()
        print("---- operator log (tail) ----\n" + op.logs()[-6000:])


@pytest.fixture
def gpu_node(jobpool_crds):
    """A kwok node as a GPU node pool's: tainted nvidia.com/gpu:NoSchedule, labelled, with GPUs. Ask for it
    before `operator`, so it goes after the pools (kwok deletes the pods of the nodes it runs)."""
    name = f"gpu-{secrets.token_hex(3)}"
    node = localcluster.fake_node(name)
    node["metadata"]["labels"]["node.kubernetes.io/instance-family"] = "gpu"
    node["spec"] = {"taints": [GPU_TAINT]}
    for key in ("allocatable", "capacity"):
        node["status"][key]["nvidia.com/gpu"] = "4"
    jobpool_crds.kubectl("apply", "-f", "-", input=json.dumps(node))
    try:
        yield name
    finally:
        jobpool_crds.kubectl("delete", "node", name, "--wait=false", check=False)
