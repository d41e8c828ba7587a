"""One active operator: a second replica waits on the Lease and takes over when the first stops;
an operator whose RBAC is not in effect yet keeps trying for the Lease instead of exiting."""
from tests.e2e.operator_harness import (OperatorProcess, apply, eventually, get, jobpool_crds,  # noqa: F401
                                        kubeconfig_for_token, operator, pool_manifest, unique)


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


def test_operator_started_before_its_rbac_takes_the_lease_once_granted(jobpool_crds, kube_namespace, redis_server,
                                                                        tmp_path):
    # Right after `helm install` (or on a loaded API server) the first Lease calls can fail.
    cluster, ns = jobpool_crds, kube_namespace
    cluster.kubectl("create", "serviceaccount", "late-rbac", "-n", ns)
    token = cluster.kubectl("create", "token", "late-rbac", "-n", ns, "--duration=1h").stdout.strip()
    scoped = kubeconfig_for_token(cluster, token, tmp_path / "late-rbac.kubeconfig")
    operator = OperatorProcess(cluster, ns, redis_server.url, tmp_path / "operator.log", kubeconfig=scoped).start()
    try:
        eventually(lambda: "cannot take the leader lease" in operator.logs() or not operator.alive(), timeout=60,
                   message="the Forbidden lease read")
        assert operator.alive(), operator.logs()[-3000:]
        assert "Forbidden" in operator.logs() or "403" in operator.logs(), operator.logs()[-3000:]

        cluster.kubectl("create", "role", "lease", "-n", ns, "--verb=get,create,update",
                        "--resource=leases.coordination.k8s.io")
        cluster.kubectl("create", "rolebinding", "lease", "-n", ns, "--role=lease",
                        f"--serviceaccount={ns}:late-rbac")
        eventually(lambda: "holding the leader lease" in operator.logs() or not operator.alive(), timeout=60,
                   message="the lease once the RoleBinding is in effect")
        assert operator.alive(), operator.logs()[-3000:]
        assert get(cluster, ns, "lease", "jobpool-operator")["spec"]["holderIdentity"]
    finally:
        operator.stop()
