"""Fixtures of the end-to-end tests: the CRDs installed once, an operator per test."""
from __future__ import annotations

import pytest

from tests.e2e.operator_harness import install_crds, start_operator


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
        jobpool_crds.kubectl("delete", "jobpools", "--all", "-n", kube_namespace, "--timeout=60s", check=False)
        op.stop()
        print("---- operator log (tail) ----\n" + op.logs()[-6000:])
