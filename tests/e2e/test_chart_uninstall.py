"""`helm uninstall` strands no JobPool: the chart's pre-delete hook, run here as the chart renders
it (its command, its ServiceAccount's token), refuses while pools carry the finalizer, deletes
them and waits for the operator's cleanup, or removes the finalizer on purpose. The same hook
under a real `helm uninstall` with the operator in a pod is in tests/e2e/test_real_node.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from jobpool import Client
from jobpool.controller.handlers import FINALIZER
from tests.e2e.operator_harness import apply, get, kubeconfig_for_token, pool_manifest, start_operator, unique
from tests.e2e.test_chart import CHART, helm
from tests.helpers import ROOT, wait_until

pytestmark = pytest.mark.cluster


def hook_args(cluster, release: str, namespace: str) -> list[str]:
    hooks = [
        d for d in yaml.safe_load_all(helm(cluster, "get", "hooks", release, "-n", namespace).stdout) if d
    ]
    (job,) = [d for d in hooks if d["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container["args"]


def run_hook(args: list[str], kubeconfig: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    return subprocess.run(
        [sys.executable, "-m", "jobpool.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_uninstall_hook_refuses_then_deletes_or_orphans_the_pools(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster, ns = jobpool_crds, kube_namespace
    release = unique("jp")
    helm(
        cluster,
        "install",
        release,
        str(CHART),
        "--namespace",
        ns,
        "--wait=false",
        "--set",
        f"watchNamespaces={{{ns}}}",
        "--set",
        "redis.enabled=false",
        "--set",
        f"defaultQueueUrl={redis_server.url}",
    )
    try:
        token = cluster.kubectl("create", "token", f"{release}-guard-pools", "-n", ns).stdout.strip()
        scoped = kubeconfig_for_token(cluster, token, tmp_path / "guard.kubeconfig")
        operator = start_operator(cluster, ns, redis_server.url, tmp_path / "operator.log")
        try:
            kept, orphaned = unique("kept"), unique("orphaned")
            for name in (kept, orphaned):
                apply(cluster, ns, pool_manifest(name, parallelism=0, queue={"url": redis_server.url}))
                wait_until(
                    lambda: (
                        FINALIZER
                        in (get(cluster, ns, "jobpool", name) or {}).get("metadata", {}).get("finalizers", [])
                    ),
                    timeout=60,
                    what=f"{name}'s finalizer",
                )
            with Client(redis_server.url, ns, kept) as client:
                client.submit("left in the queue")

            args = hook_args(cluster, release, ns)
            assert args[:3] == ["operator", "guard-pools", "--policy=refuse"]
            done = run_hook(args, scoped)
            assert done.returncode == 1, done.stderr
            assert (
                f"jobpool operator guard-pools: error: 2 JobPool(s) still carry the finalizer "
                f"{FINALIZER} ({ns}/{kept}, {ns}/{orphaned})"
            ) in done.stderr
            assert get(cluster, ns, "jobpool", kept) is not None

            # orphan: the operator stopped (the hook scales the chart's Deployment to zero; this
            # test's operator process is stopped by hand), the finalizer goes, the deletion goes through
            operator.stop()
            helm(
                cluster,
                "upgrade",
                release,
                str(CHART),
                "-n",
                ns,
                "--reuse-values",
                "--set",
                "uninstall.pools=orphan",
            )
            cluster.kubectl("delete", "jobpool", kept, "-n", ns, "--wait=false")
            done = run_hook(hook_args(cluster, release, ns), scoped)
            assert done.returncode == 0, done.stderr
            wait_until(
                lambda: get(cluster, ns, "jobpool", kept) is None,
                timeout=30,
                what="the orphaned pool deleted without its operator",
            )
            assert FINALIZER not in get(cluster, ns, "jobpool", orphaned)["metadata"].get("finalizers", [])
            # a running operator would put the finalizers back: the hook scaled the chart's to zero first
            assert get(cluster, ns, "deployment", f"{release}-operator")["spec"]["replicas"] == 0
            with Client(redis_server.url, ns, kept) as client:
                assert client.status().waiting == 1, "an orphaned pool's queue keys stay"

            # delete, with the operator running: the pool goes after its finalizer ran
            operator = start_operator(cluster, ns, redis_server.url, tmp_path / "operator.log")
            wait_until(
                lambda: FINALIZER in get(cluster, ns, "jobpool", orphaned)["metadata"].get("finalizers", []),
                timeout=60,
                what="the operator adopting the orphaned pool again",
            )
            with Client(redis_server.url, ns, orphaned) as client:
                client.submit("cleaned")
            helm(
                cluster,
                "upgrade",
                release,
                str(CHART),
                "-n",
                ns,
                "--reuse-values",
                "--set",
                "uninstall.pools=delete",
            )
            done = run_hook(hook_args(cluster, release, ns), scoped)
            assert done.returncode == 0, done.stderr + operator.logs()[-3000:]
            assert get(cluster, ns, "jobpool", orphaned) is None
            with Client(redis_server.url, ns, orphaned) as client:
                assert client.status().submitted == 0, "the finalizer deleted the queue keys"
        finally:
            operator.stop()
    finally:
        helm(cluster, "uninstall", release, "--namespace", ns, "--no-hooks", check=False)
