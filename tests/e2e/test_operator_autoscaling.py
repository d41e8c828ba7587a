"""The autoscaler on a real cluster: backlog up -> pods up, drained -> back to zero;
busy pods get a higher pod-deletion-cost so idle pods go first."""
import jobpool
from tests.e2e.operator_harness import apply, condition, get, items, pool_manifest, unique
from tests.helpers import wait_until, WorkerProcess


def replicas(cluster, ns, pool):
    deployment = get(cluster, ns, "deployment", f"{pool}-workers")
    return None if deployment is None else deployment["spec"]["replicas"]


def test_scales_up_on_backlog_and_down_to_zero_when_drained(operator, jobpool_crds, kube_namespace, redis_server):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("auto")
    apply(cluster, ns, pool_manifest(name, concurrency=2, autoscaling={
        "enabled": True, "minWorkers": 0, "maxWorkers": 4, "targetBacklogPerWorker": 2,
        "scaleDownDelaySeconds": 1}))
    wait_until(lambda: replicas(cluster, ns, name) == 0, what="an idle pool at zero pods")
    wait_until(lambda: condition(get(cluster, ns, "jobpool", name), "Ready").get("status") == "True")

    client = jobpool.Client(redis_server.url, ns, name)
    client.submit_many(list(range(6)))
    wait_until(lambda: replicas(cluster, ns, name) == 3, timeout=10, what="3 pods for 6 jobs at 2 per pod")
    client.submit_many(list(range(6, 20)))
    wait_until(lambda: replicas(cluster, ns, name) == 4, timeout=10, what="capped at maxWorkers=4")
    assert get(cluster, ns, "jobpool", name)["status"]["desiredReplicas"] == 4

    worker = WorkerProcess(redis_server.url, ns, name, "tasks:square", concurrency=4, drain_seconds=5)
    try:
        pool = wait_until(lambda: (p := get(cluster, ns, "jobpool", name)) and
                          p["status"].get("jobs", {}).get("succeeded") == 20 and p, timeout=60,
                          what="20 jobs drained by a local worker")
        wait_until(lambda: replicas(cluster, ns, name) == 0, timeout=30, what="back to zero pods")
    finally:
        worker.stop()
    assert pool["status"]["jobs"]["submitted"] == 20
    assert "jobpool_scale_events_total" in operator.metrics()


def test_busy_pods_get_a_higher_deletion_cost(operator, jobpool_crds, kube_namespace, redis_server):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("cost")
    apply(cluster, ns, pool_manifest(name, parallelism=2))
    pods = wait_until(lambda: (found := items(cluster, ns, "pods", f"jobpool.dev/pool={name}")) and len(found) == 2
                      and sorted(p["metadata"]["name"] for p in found), timeout=60, what="2 worker pods")
    busy_pod, idle_pod = pods
    # A local worker stands in for the first pod's container (same worker id as the pod name).
    worker = WorkerProcess(redis_server.url, ns, name, "tasks:slow", concurrency=2, worker_id=busy_pod,
                           drain_seconds=5)
    try:
        jobpool.Client(redis_server.url, ns, name).submit_many([30, 30])

        def costs():
            pods_now = items(cluster, ns, "pods", f"jobpool.dev/pool={name}")
            return {p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(
                "controller.kubernetes.io/pod-deletion-cost") for p in pods_now}
        wait_until(lambda: costs().get(busy_pod) == "200", timeout=30, what="busy pod cost 200")
        assert costs().get(idle_pod) in (None, "0")
    finally:
        worker.stop()
    wait_until(lambda: costs().get(busy_pod) == "0", timeout=30, what="cost back to 0 once idle")
