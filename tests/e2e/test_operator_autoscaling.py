"""The autoscaler on a real cluster: backlog up -> pods up, drained -> back to zero;
busy pods get a higher pod-deletion-cost so idle pods go first."""

import time

import jobpool
from jobpool.queue.base import SCALE_UP_HORIZON_SECONDS
from tests.e2e.operator_harness import apply, condition, get, items, pool_manifest, unique
from tests.helpers import WorkerProcess, wait_until


def replicas(cluster, ns, pool):
    deployment = get(cluster, ns, "deployment", f"{pool}-workers")
    return None if deployment is None else deployment["spec"]["replicas"]


def test_scales_up_on_backlog_and_down_to_zero_when_drained(
    operator, jobpool_crds, kube_namespace, redis_server
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("auto")
    apply(
        cluster,
        ns,
        pool_manifest(
            name,
            concurrency=2,
            autoscaling={
                "enabled": True,
                "minWorkers": 0,
                "maxWorkers": 4,
                "targetBacklogPerWorker": 2,
                "scaleDownDelaySeconds": 1,
            },
        ),
    )
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
        pool = wait_until(
            lambda: (
                (p := get(cluster, ns, "jobpool", name))
                and p["status"].get("jobs", {}).get("succeeded") == 20
                and p
            ),
            timeout=60,
            what="20 jobs drained by a local worker",
        )
        wait_until(lambda: replicas(cluster, ns, name) == 0, timeout=30, what="back to zero pods")
    finally:
        worker.stop()
    assert pool["status"]["jobs"]["submitted"] == 20
    assert "jobpool_scale_events_total" in operator.metrics()


def test_scheduled_jobs_keep_the_pool_at_zero_until_they_are_due_within_the_horizon(
    operator, jobpool_crds, kube_namespace, redis_server
):
    """1,000 jobs scheduled past the scale-up horizon keep a pool at zero pods; once they are due
    within it, the pool scales up before they come due."""
    cluster, ns, name = jobpool_crds, kube_namespace, unique("sched")
    apply(
        cluster,
        ns,
        pool_manifest(
            name,
            concurrency=2,
            autoscaling={"enabled": True, "minWorkers": 0, "maxWorkers": 3, "targetBacklogPerWorker": 2},
        ),
    )
    wait_until(lambda: replicas(cluster, ns, name) == 0, what="an idle pool at zero pods")
    ahead = 12.0
    with jobpool.Client(redis_server.url, ns, name) as client:
        client.submit_many(list(range(1000)), delay=SCALE_UP_HORIZON_SECONDS + ahead)
    submitted = time.monotonic()
    wait_until(
        lambda: (get(cluster, ns, "jobpool", name)["status"].get("queue") or {}).get("scheduled") == 1000,
        timeout=ahead / 2,
        interval=0.2,
        what="the operator counting 1,000 scheduled jobs",
    )
    assert replicas(cluster, ns, name) == 0, "jobs due past the horizon start no pod"
    assert get(cluster, ns, "jobpool", name)["status"]["desiredReplicas"] == 0
    wait_until(
        lambda: replicas(cluster, ns, name) == 3,
        timeout=ahead + 30,
        interval=0.2,
        what="3 pods once the jobs are due within the horizon",
    )
    waited = time.monotonic() - submitted
    assert ahead - 1 <= waited < SCALE_UP_HORIZON_SECONDS + ahead, (
        f"scaled up {waited:.1f}s after the submit: within the horizon, before the jobs came due"
    )


def test_busy_pods_get_a_higher_deletion_cost(operator, jobpool_crds, kube_namespace, redis_server):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("cost")
    apply(cluster, ns, pool_manifest(name, parallelism=2))
    pods = wait_until(
        lambda: (
            (found := items(cluster, ns, "pods", f"jobpool.dev/pool={name}"))
            and len(found) == 2
            and sorted(p["metadata"]["name"] for p in found)
        ),
        timeout=60,
        what="2 worker pods",
    )
    busy_pod, idle_pod = pods
    # A local worker stands in for the first pod's container (same worker id as the pod name).
    worker = WorkerProcess(
        redis_server.url, ns, name, "tasks:slow", concurrency=2, worker_id=busy_pod, drain_seconds=5
    )
    try:
        jobpool.Client(redis_server.url, ns, name).submit_many([30, 30])

        def costs():
            pods_now = items(cluster, ns, "pods", f"jobpool.dev/pool={name}")
            return {
                p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(
                    "controller.kubernetes.io/pod-deletion-cost"
                )
                for p in pods_now
            }

        wait_until(lambda: costs().get(busy_pod) == "200", timeout=30, what="busy pod cost 200")
        assert costs().get(idle_pod) in (None, "0")
    finally:
        worker.stop()
    wait_until(lambda: costs().get(busy_pod) == "0", timeout=30, what="cost back to 0 once idle")
