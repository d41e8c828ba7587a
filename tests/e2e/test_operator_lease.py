"""One active operator: a second replica waits on the Lease and takes over when the first stops."""
from tests.e2e.operator_harness import (OperatorProcess, apply, eventually, get, jobpool_crds,  # noqa: F401
                                        operator, pool_manifest, unique)


def test_second_operator_waits_then_takes_over(operator, jobpool_crds, kube_namespace, redis_server, tmp_path):
    cluster, ns = jobpool_crds, kube_namespace
    standby = OperatorProcess(cluster, ns, redis_server.url, tmp_path / "standby.log").start()
    try:
        eventually(lambda: "waiting for the leader lease" in standby.logs(), timeout=60,
                   message="the standby to wait")
        assert standby.alive() and standby.healthz() == 200
        lease = get(cluster, ns, "lease", "jobpool-operator")
        holder = lease["spec"]["holderIdentity"]

        first = unique("first")
        apply(cluster, ns, pool_manifest(first))
        eventually(lambda: get(cluster, ns, "deployment", f"{first}-workers"), message="the active operator")
        assert "holding the leader lease" not in standby.logs()

        operator.stop()
        eventually(lambda: "holding the leader lease" in standby.logs(), timeout=30, message="the takeover")
        assert get(cluster, ns, "lease", "jobpool-operator")["spec"]["holderIdentity"] != holder
        second = unique("second")
        apply(cluster, ns, pool_manifest(second, parallelism=2))
        eventually(lambda: (d := get(cluster, ns, "deployment", f"{second}-workers")) and d["spec"]["replicas"] == 2,
                   timeout=30, message="the new leader reconciling")
        cluster.kubectl("delete", "jobpools", "--all", "-n", ns, "--timeout=60s")
    finally:
        standby.stop()
