"""The operator refuses to start, saying what to apply, when the installed CRD is older than it
(Helm never upgrades `crds/`); once the CRD is applied it starts."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest
import yaml

from tests.e2e.operator_harness import CRD_DIR, install_crds, jobpool_command
from tests.helpers import wait_until

pytestmark = pytest.mark.cluster


def served_spec_fields(cluster) -> set[str]:
    status, body = cluster.cluster.request("GET", "/openapi/v3/apis/jobpool.dev/v1alpha1")
    if status != 200:
        return set()
    schemas = json.loads(body)["components"]["schemas"]
    (pool,) = [s for name, s in schemas.items() if name.endswith(".v1alpha1.JobPool")]
    return set(pool["properties"]["spec"]["properties"])


def test_an_operator_newer_than_the_installed_crd_refuses_to_start(
    jobpool_crds, kube_namespace, redis_server
):
    cluster = jobpool_crds
    (crd,) = [d for d in yaml.safe_load_all((CRD_DIR / "jobpool.dev_jobpools.yaml").read_text()) if d]
    older = copy.deepcopy(crd)
    del older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "drainSeconds"
    ]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(older))
    try:
        wait_until(
            lambda: "drainSeconds" not in served_spec_fields(cluster),
            timeout=30,
            what="the older schema published",
        )
        started = subprocess.run(
            [
                *jobpool_command(),
                "operator",
                "--namespace",
                kube_namespace,
                "--default-queue",
                redis_server.url,
                "--metrics-port",
                "0",
            ],
            env={**cluster.env, "KUBECONFIG": cluster.kubeconfig},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert started.returncode == 1
        assert started.stderr.strip().splitlines()[-1] == (
            "jobpool operator: error: the installed CRD jobpools.jobpool.dev is older than this operator "
            "(it lacks spec.drainSeconds); apply the CRD of this version first: kubectl apply "
            '--server-side -f charts/jobpool/crds/ (docs/operations.md, "Upgrading")'
        )
    finally:
        install_crds(cluster)
        wait_until(
            lambda: "drainSeconds" in served_spec_fields(cluster),
            timeout=30,
            what="the current schema published again",
        )
