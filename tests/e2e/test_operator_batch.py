"""Batch pools: spec.jobs fed once with stable ids, across an operator restart; Complete;
and the finalizer leaves nothing of the pool in Redis."""
import re
import signal

import redis as redis_lib

from tests.e2e.operator_harness import (WorkerProcess, apply, condition, eventually, get, jobpool_crds,  # noqa: F401
                                        operator, pool_manifest, start_operator, unique)


def pool_keys(redis_url, ns, name):
    client = redis_lib.Redis.from_url(redis_url)
    try:
        return [k for k in client.scan_iter(match="*", count=1000) if f"{{jobpool:{ns}/{name}}}".encode() in k]
    finally:
        client.close()


def test_batch_survives_an_operator_restart_without_double_feeding(operator, jobpool_crds, kube_namespace,
                                                                   redis_server, tmp_path):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("batch")
    # maxLength 10 and no worker yet: feeding stops after the first chunks.
    apply(cluster, ns, pool_manifest(name, jobs={"range": {"start": 100, "count": 100}}, queue={"maxLength": 10}))
    pool = eventually(lambda: (p := get(cluster, ns, "jobpool", name)) and
                      (p.get("status") or {}).get("batch", {}).get("fed", 0) >= 10 and p, timeout=30,
                      message="the first chunk fed")
    fed_before = pool["status"]["batch"]["fed"]
    assert fed_before < 100 and condition(pool, "Complete")["status"] == "False"

    operator.stop(signal.SIGKILL)
    restarted = start_operator(cluster, ns, redis_server.url, tmp_path / "operator-2.log")
    worker = WorkerProcess(redis_server.url, ns, name, "tasks:square", concurrency=4)
    try:
        done = eventually(lambda: (p := get(cluster, ns, "jobpool", name)) and
                          condition(p, "Complete").get("status") == "True" and p, timeout=90,
                          message="Complete=True")
    finally:
        worker.stop()
    resumed = [int(i) for i in re.findall(r"feeding spec.jobs from index (\d+)", restarted.logs())]
    assert resumed and min(resumed) >= fed_before, restarted.logs()[-2000:]
    status = done["status"]
    assert status["batch"]["fed"] == 100 and status["jobs"]["submitted"] == 100
    assert status["jobs"]["succeeded"] == 100 and status["jobs"]["deadLettered"] == 0
    assert "100 succeeded" in condition(done, "Complete")["message"]
    restarted.stop()


def test_deleting_a_pool_removes_its_queue_keys_and_workers(operator, jobpool_crds, kube_namespace, redis_server):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("gone")
    apply(cluster, ns, pool_manifest(name, jobs={"items": [{"n": 1}, {"n": 2}, {"n": 3}]}))
    eventually(lambda: get(cluster, ns, "deployment", f"{name}-workers"), message="the worker Deployment")
    eventually(lambda: len(pool_keys(redis_server.url, ns, name)) > 0, message="the pool's keys in Redis")
    assert "jobpool.dev/queue-cleanup" in get(cluster, ns, "jobpool", name)["metadata"]["finalizers"]

    cluster.kubectl("delete", "jobpool", name, "-n", ns, "--timeout=60s")
    assert pool_keys(redis_server.url, ns, name) == []
    eventually(lambda: get(cluster, ns, "deployment", f"{name}-workers") is None, timeout=60,
               message="the Deployment garbage-collected")


def test_an_autoscaled_batch_completes_with_dead_letters_and_scales_to_min(operator, jobpool_crds, kube_namespace,
                                                                          redis_server):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("mixed")
    payloads = [n if n % 5 else "not a number" for n in range(1, 21)]  # 4 of 20 fail in tasks:square
    apply(cluster, ns, pool_manifest(name, jobs={"items": payloads}, retry={"maxAttempts": 1},
                                     autoscaling={"enabled": True, "minWorkers": 0, "maxWorkers": 3,
                                                  "targetBacklogPerWorker": 5, "scaleDownDelaySeconds": 0}))
    eventually(lambda: (d := get(cluster, ns, "deployment", f"{name}-workers")) and d["spec"]["replicas"] == 3,
               timeout=30, message="3 pods for 20 jobs at 5 per pod")
    worker = WorkerProcess(redis_server.url, ns, name, "tasks:square", concurrency=4)
    try:
        done = eventually(lambda: (p := get(cluster, ns, "jobpool", name)) and
                          condition(p, "Complete").get("status") == "True" and p, timeout=60, message="Complete")
    finally:
        worker.stop()
    assert done["status"]["jobs"]["succeeded"] == 16 and done["status"]["jobs"]["deadLettered"] == 4
    assert "16 succeeded, 4 dead-lettered" in condition(done, "Complete")["message"]
    eventually(lambda: get(cluster, ns, "deployment", f"{name}-workers")["spec"]["replicas"] == 0, timeout=30,
               message="minWorkers once the batch is complete")
