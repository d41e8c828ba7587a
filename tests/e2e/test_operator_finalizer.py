"""Deleting a pool stops its workers first, so no live worker recreates the keys the finalizer
deletes: nothing of the pool is left in Redis once the JobPool is gone."""

import asyncio
import json

from jobpool.queue import open_queue
from tests.e2e.operator_harness import apply, condition, get, pool_manifest, start_operator, unique
from tests.e2e.test_operator_batch import delete_queue, pool_keys
from tests.helpers import WorkerProcess, wait_until


def registered_workers(redis_url, ns, name):
    async def read():
        queue = open_queue(redis_url, ns, name)
        try:
            return [worker.id for worker in (await queue.stats()).workers]
        finally:
            await queue.close()

    return asyncio.run(read())


def test_deleting_a_pool_waits_for_its_live_workers_then_leaves_no_key(
    operator, jobpool_crds, kube_namespace, redis_server
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("live")
    apply(cluster, ns, pool_manifest(name, parallelism=1, drainSeconds=5))
    wait_until(lambda: get(cluster, ns, "deployment", f"{name}-workers"), what="the worker Deployment")
    # A worker that is not a pod (kwok pods run nothing): only its queue registration shows it.
    worker = WorkerProcess(
        redis_server.url, ns, name, "tasks:square", worker_id=f"{name}-local", drain_seconds=5
    )
    try:
        wait_until(
            lambda: registered_workers(redis_server.url, ns, name) == [f"{name}-local"],
            timeout=30,
            what="the local worker registered in the pool's queue",
        )

        cluster.kubectl("delete", "jobpool", name, "-n", ns, "--wait=false")
        # The ReplicaSet would stop the worker once the Deployment is scaled to zero (or gone).
        wait_until(
            lambda: (
                get(cluster, ns, "jobpool", name) is None
                or (d := get(cluster, ns, "deployment", f"{name}-workers")) is None
                or d["spec"]["replicas"] == 0
            ),
            timeout=60,
            what="the workers stopped by the finalizer",
        )
        waited_for_the_worker = get(cluster, ns, "jobpool", name) is not None
    finally:
        worker.stop()
    wait_until(lambda: get(cluster, ns, "jobpool", name) is None, timeout=60, what="the JobPool gone")
    assert pool_keys(redis_server.url, ns, name) == []
    assert waited_for_the_worker, "the finalizer must not delete the keys while a worker is registered"

    events = json.loads(
        cluster.kubectl(
            "get", "events", "-n", ns, "-o", "json", f"--field-selector=involvedObject.name={name}"
        ).stdout
    )["items"]
    messages = {e["reason"]: e["message"] for e in events}
    assert f"1 registered worker(s) ({name}-local)" in messages.get("WaitingForWorkers", ""), messages
    assert "deleted the queue keys" in messages.get("QueueCleaned", ""), messages


def create_namespace(cluster, ns):
    cluster.kubectl("create", "namespace", ns)
    wait_until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0,
        timeout=30,
        what=f"namespace {ns}'s default service account",
    )


def test_deleting_the_namespace_deletes_the_pools_keys_though_its_secret_goes_with_it(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    # The operator watches a namespace of its own that the test deletes; its Lease lives elsewhere.
    cluster, ns, name = jobpool_crds, f"{kube_namespace[:50]}-doomed", "batch"
    operator = start_operator(cluster, ns, None, tmp_path / "operator.log", lease_namespace=kube_namespace)
    pool = pool_manifest(
        name,
        parallelism=1,
        drainSeconds=0,
        jobs={"items": [1, 2, 3]},
        queue={"urlSecretRef": {"name": "queue", "key": "url"}},
    )
    try:
        create_namespace(cluster, ns)
        cluster.kubectl(
            "-n", ns, "create", "secret", "generic", "queue", f"--from-literal=url={redis_server.url}"
        )
        apply(cluster, ns, pool)
        worker = WorkerProcess(redis_server.url, ns, name, "tasks:square", drain_seconds=5)
        try:
            wait_until(
                lambda: condition(get(cluster, ns, "jobpool", name), "Complete").get("status") == "True",
                timeout=60,
                what="the first batch Complete",
            )
            assert pool_keys(redis_server.url, ns, name)
            # The namespace controller deletes the Secret at once; the JobPool waits for its finalizer,
            # which waits for the registered worker, so the Secret is surely gone before the keys go.
            cluster.kubectl("delete", "namespace", ns, "--wait=false")
            wait_until(
                lambda: cluster.kubectl("-n", ns, "get", "secret", "queue", check=False).returncode != 0,
                timeout=30,
                what="the Secret deleted with the namespace",
            )
            assert get(cluster, ns, "jobpool", name) is not None
        finally:
            worker.stop()
        wait_until(
            lambda: cluster.kubectl("get", "namespace", ns, check=False).returncode != 0,
            timeout=90,
            what="the namespace gone",
        )
        assert pool_keys(redis_server.url, ns, name) == [], operator.logs()[-3000:]

        # The same pool again: its batch runs, it does not inherit the old one's dedup ids and counters.
        create_namespace(cluster, ns)
        cluster.kubectl(
            "-n", ns, "create", "secret", "generic", "queue", f"--from-literal=url={redis_server.url}"
        )
        apply(cluster, ns, pool)
        fed = wait_until(
            lambda: (
                (p := get(cluster, ns, "jobpool", name))
                and (p.get("status") or {}).get("batch", {}).get("fed") == 3
                and p
            ),
            timeout=30,
            what="the second batch fed",
        )
        assert fed["status"]["jobs"]["submitted"] == 3 and fed["status"]["jobs"]["succeeded"] == 0
        assert condition(fed, "Complete")["status"] == "False"
        worker = WorkerProcess(redis_server.url, ns, name, "tasks:square", drain_seconds=5)
        try:
            done = wait_until(
                lambda: (
                    (p := get(cluster, ns, "jobpool", name))
                    and condition(p, "Complete").get("status") == "True"
                    and p
                ),
                timeout=60,
                what="the second batch Complete",
            )
        finally:
            worker.stop()
        assert done["status"]["jobs"]["succeeded"] == 3
    finally:
        cluster.kubectl("delete", "jobpools", "--all", "-n", ns, "--timeout=60s", check=False)
        operator.stop()
        print("---- operator log (tail) ----\n" + operator.logs()[-6000:])
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def test_an_operator_that_never_saw_the_secret_names_the_keys_it_could_not_delete(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster, ns, name = jobpool_crds, f"{kube_namespace[:50]}-doomed", "batch"
    operator = start_operator(cluster, ns, None, tmp_path / "operator.log", lease_namespace=kube_namespace)
    try:
        create_namespace(cluster, ns)
        cluster.kubectl(
            "-n", ns, "create", "secret", "generic", "queue", f"--from-literal=url={redis_server.url}"
        )
        apply(
            cluster,
            ns,
            pool_manifest(
                name,
                parallelism=0,
                jobs={"items": [1]},
                queue={"urlSecretRef": {"name": "queue", "key": "url"}},
            ),
        )
        wait_until(
            lambda: (get(cluster, ns, "jobpool", name).get("status") or {}).get("batch", {}).get("fed") == 1,
            timeout=30,
            what="the batch fed",
        )
        operator.stop()
        # The namespace goes while no operator runs: the Secret is deleted, the JobPool waits for its finalizer.
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
        wait_until(
            lambda: cluster.kubectl("-n", ns, "get", "secret", "queue", check=False).returncode != 0,
            timeout=30,
            what="the Secret deleted with the namespace",
        )
        operator = start_operator(
            cluster, ns, None, tmp_path / "operator-2.log", lease_namespace=kube_namespace
        )
        wait_until(
            lambda: cluster.kubectl("get", "namespace", ns, check=False).returncode != 0,
            timeout=90,
            what="the namespace gone",
        )
        warning = [line for line in operator.logs().splitlines() if "queue keys of" in line]
        assert warning and "WARNING" in warning[0], operator.logs()[-3000:]
        assert f"{{jobpool:{ns}/{name}}}" in warning[0] and "by hand" in warning[0]
        assert pool_keys(redis_server.url, ns, name), "the keys it names are there to delete"
    finally:
        delete_queue(redis_server.url, ns, name)
        operator.stop()
        print("---- operator log (tail) ----\n" + operator.logs()[-6000:])
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
