"""One active operator: a second replica waits on the Lease and takes over when the first stops;
an operator whose RBAC is not in effect yet keeps trying for the Lease instead of exiting."""

import json
import urllib.error
import urllib.request

from tests.e2e.operator_harness import (
    OperatorProcess,
    apply,
    get,
    kubeconfig_for_token,
    pool_manifest,
    start_operator,
    unique,
)
from tests.helpers import wait_until


def test_second_operator_waits_then_takes_over(
    operator, jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster, ns = jobpool_crds, kube_namespace
    standby = OperatorProcess(cluster, ns, redis_server.url, tmp_path / "standby.log").start()
    try:
        wait_until(standby.serves_healthz, timeout=60, what="the standby up")
        assert operator.holds_lease() and not standby.holds_lease()
        holder = get(cluster, ns, "lease", "jobpool-operator")["spec"]["holderIdentity"]

        first = unique("first")
        apply(cluster, ns, pool_manifest(first))
        wait_until(lambda: get(cluster, ns, "deployment", f"{first}-workers"), what="the active operator")
        assert standby.alive() and not standby.holds_lease()

        operator.stop()
        wait_until(standby.holds_lease, timeout=30, what="the takeover")
        assert get(cluster, ns, "lease", "jobpool-operator")["spec"]["holderIdentity"] != holder
        second = unique("second")
        apply(cluster, ns, pool_manifest(second, parallelism=2))
        wait_until(
            lambda: (d := get(cluster, ns, "deployment", f"{second}-workers")) and d["spec"]["replicas"] == 2,
            timeout=30,
            what="the new leader reconciling",
        )
        cluster.kubectl("delete", "jobpools", "--all", "-n", ns, "--timeout=60s")
    finally:
        standby.stop()


def test_operator_started_before_its_rbac_takes_the_lease_once_granted(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    # Right after `helm install` (or on a loaded API server) the first Lease calls can fail.
    cluster, ns = jobpool_crds, kube_namespace
    cluster.kubectl("create", "serviceaccount", "late-rbac", "-n", ns)
    token = cluster.kubectl("create", "token", "late-rbac", "-n", ns, "--duration=1h").stdout.strip()
    scoped = kubeconfig_for_token(cluster, token, tmp_path / "late-rbac.kubeconfig")
    operator = OperatorProcess(
        cluster, ns, redis_server.url, tmp_path / "operator.log", kubeconfig=scoped
    ).start()
    try:
        # No object records a refused read: the operator's own report of it is what is awaited.
        wait_until(
            lambda: "cannot take the leader lease" in operator.logs() or not operator.alive(),
            timeout=60,
            what="the Forbidden lease read",
        )
        assert operator.alive(), operator.logs()[-3000:]
        assert "Forbidden" in operator.logs() or "403" in operator.logs(), operator.logs()[-3000:]

        cluster.kubectl(
            "create",
            "role",
            "lease",
            "-n",
            ns,
            "--verb=get,create,update",
            "--resource=leases.coordination.k8s.io",
        )
        cluster.kubectl(
            "create", "rolebinding", "lease", "-n", ns, "--role=lease", f"--serviceaccount={ns}:late-rbac"
        )
        wait_until(
            lambda: operator.holds_lease() or not operator.alive(),
            timeout=60,
            what="the lease once the RoleBinding is in effect",
        )
        assert operator.alive(), operator.logs()[-3000:]
        assert get(cluster, ns, "lease", "jobpool-operator")["spec"]["holderIdentity"]
    finally:
        operator.stop()


def healthz_body(operator) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/healthz", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthz_fails_while_the_leader_cannot_renew_its_lease(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    """The Lease's namespace deleted under a running leader: its renewals fail, /healthz turns 503
    naming the Lease before the renew deadline stops the operator."""
    cluster = jobpool_crds
    lease_namespace = unique("lease")
    cluster.kubectl("create", "namespace", lease_namespace)
    operator = start_operator(
        cluster, kube_namespace, redis_server.url, tmp_path / "operator.log", lease_namespace=lease_namespace
    )
    try:
        wait_until(
            lambda: healthz_body(operator) == (200, {"status": "ok", "role": "leader", "watching": True}),
            timeout=30,
            what="a healthy leader, watching",
        )
        cluster.kubectl("delete", "namespace", lease_namespace, "--wait=false")
        _status, body = wait_until(
            lambda: (r := healthz_body(operator))[0] == 503 and r,
            timeout=15,
            interval=0.2,
            what="/healthz failing",
        )
        assert body["role"] == "leader" and body["problems"][0].startswith(
            "the leader Lease was last renewed"
        )
    finally:
        operator.stop()
        cluster.kubectl(
            "delete", "namespace", lease_namespace, "--ignore-not-found", "--wait=false", check=False
        )
