"""Deleting a pool stops its workers first, so no live worker recreates the keys the finalizer
deletes: nothing of the pool is left in Redis once the JobPool is gone."""
import asyncio
import json

from jobpool.queue import open_queue
from tests.e2e.operator_harness import (WorkerProcess, apply, eventually, get, jobpool_crds,  # noqa: F401
                                        operator, pool_manifest, unique)
from tests.e2e.test_operator_batch import pool_keys


def registered_workers(redis_url, ns, name):
    async def read():
        queue = open_queue(redis_url, ns, name)
        try:
            return [worker.id for worker in (await queue.stats()).workers]
        finally:
            await queue.close()
    return asyncio.run(read())


def test_deleting_a_pool_waits_for_its_live_workers_then_leaves_no_key(operator, jobpool_crds, kube_namespace,
                                                                       redis_server):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("live")
    apply(cluster, ns, pool_manifest(name, parallelism=1, drainSeconds=5))
    eventually(lambda: get(cluster, ns, "deployment", f"{name}-workers"), message="the worker Deployment")
    # A worker that is not a pod (kwok pods run nothing): only its queue registration shows it.
    worker = WorkerProcess(redis_server.url, ns, name, "tasks:square", worker_id=f"{name}-local")
    try:
        eventually(lambda: registered_workers(redis_server.url, ns, name) == [f"{name}-local"], timeout=30,
                   message="the local worker registered in the pool's queue")

        cluster.kubectl("delete", "jobpool", name, "-n", ns, "--wait=false")
        # The ReplicaSet would stop the worker once the Deployment is scaled to zero (or gone).
        eventually(lambda: get(cluster, ns, "jobpool", name) is None
                   or (d := get(cluster, ns, "deployment", f"{name}-workers")) is None
                   or d["spec"]["replicas"] == 0, timeout=60, message="the workers stopped by the finalizer")
        waited_for_the_worker = get(cluster, ns, "jobpool", name) is not None
    finally:
        worker.stop()
    eventually(lambda: get(cluster, ns, "jobpool", name) is None, timeout=60, message="the JobPool gone")
    assert pool_keys(redis_server.url, ns, name) == []
    assert waited_for_the_worker, "the finalizer must not delete the keys while a worker is registered"

    events = json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json",
                                        f"--field-selector=involvedObject.name={name}").stdout)["items"]
    messages = {e["reason"]: e["message"] for e in events}
    assert f"1 registered worker(s) ({name}-local)" in messages.get("WaitingForWorkers", ""), messages
    assert "deleted the queue keys" in messages.get("QueueCleaned", ""), messages
