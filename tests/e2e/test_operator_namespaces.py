"""`jobpool operator --all-namespaces`: one operator reconciles pools in every namespace, and
runs their finalizers there too."""

from tests.e2e.operator_harness import apply, condition, get, pool_manifest, start_operator, unique
from tests.e2e.test_operator_batch import pool_keys
from tests.helpers import wait_until


def test_all_namespaces_operator_reconciles_pools_in_two_namespaces(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster, first = jobpool_crds, kube_namespace
    second = f"{first[:54]}-second"
    cluster.kubectl("create", "namespace", second)
    operator = None
    try:
        wait_until(
            lambda: (
                cluster.kubectl("get", "serviceaccount", "default", "-n", second, check=False).returncode == 0
            ),
            timeout=30,
            what="the second namespace's default service account",
        )
        operator = start_operator(
            cluster, first, redis_server.url, tmp_path / "operator.log", all_namespaces=True
        )
        pools = {first: unique("alpha"), second: unique("beta")}
        for replicas, (ns, name) in enumerate(pools.items(), start=1):
            apply(cluster, ns, pool_manifest(name, parallelism=replicas, jobs={"items": [1, 2, 3]}))
        for replicas, (ns, name) in enumerate(pools.items(), start=1):
            # batch progress is a counter: written at most once a second, so it may follow Ready
            pool = wait_until(
                lambda: (
                    (p := get(cluster, ns, "jobpool", name))
                    and condition(p, "Ready").get("status") == "True"
                    and (p["status"].get("batch") or {}).get("fed") == 3
                    and p
                ),
                timeout=60,
                what=f"{ns}/{name} Ready with its batch fed",
            )
            assert pool["status"]["desiredReplicas"] == replicas
            assert get(cluster, ns, "deployment", f"{name}-workers")["spec"]["replicas"] == replicas
            assert pool_keys(redis_server.url, ns, name)

        for ns, name in pools.items():
            cluster.kubectl("delete", "jobpool", name, "-n", ns, "--timeout=60s")
            assert pool_keys(redis_server.url, ns, name) == []
        assert operator.alive(), operator.logs()[-3000:]
    finally:
        cluster.kubectl("delete", "jobpools", "--all", "-n", second, "--timeout=60s", check=False)
        if operator is not None:
            operator.stop()
            print("---- operator log (tail) ----\n" + operator.logs()[-6000:])
        cluster.kubectl("delete", "namespace", second, "--wait=false", "--ignore-not-found", check=False)
