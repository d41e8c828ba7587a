"""Per-pool queue credentials on the queue the operator administers (`--admin-queue`), with
the real operator, the local control plane and a real redis-server: a pool with no spec.queue
is Ready with no manual Secret, its workers and producers hold users of their own, a Redis
restart loses nothing, and deleting the pool (or its namespace) removes users and Secrets."""

from __future__ import annotations

import asyncio
import base64

import pytest
import redis as redis_lib
import yaml

from jobpool.controller.builders import ANNOTATION_CREDENTIALS
from jobpool.queue import QueueFull, acl, open_queue
from jobpool.queue.keys import PoolKeys
from jobpool.queue.redis.fields import MEMORY
from tests.e2e.operator_harness import apply, condition, get, items, pool_manifest, start_operator
from tests.e2e.test_operator_finalizer import create_namespace
from tests.helpers import ROOT, WorkerProcess, wait_until

EXAMPLE = ROOT / "examples/01-minimal/jobpool.yaml"


def secret_values(cluster, ns, name):
    secret = get(cluster, ns, "secret", name)
    return None if secret is None else {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def users_of(redis_url, ns, pool):
    names = set(redis_lib.Redis.from_url(redis_url, decode_responses=True).acl_users())
    return {role for role in acl.ROLES if acl.user_name(ns, pool, role) in names}


def submit_and_wait(url, ns, pool, payload, timeout=30.0):
    async def run():
        queue = open_queue(url, ns, pool)
        try:
            [job_id] = await queue.submit_many([payload])
            return await queue.result(job_id, timeout=timeout)
        finally:
            await queue.close()

    return asyncio.run(run())


def ready(cluster, ns, name):
    return condition(get(cluster, ns, "jobpool", name), "Ready").get("status") == "True"


def test_the_minimal_example_is_ready_on_its_own_users_and_they_go_with_it(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster, ns = jobpool_crds, kube_namespace
    operator = start_operator(
        cluster, ns, None, tmp_path / "operator.log", extra_args=("--admin-queue", redis_server.url)
    )
    pool = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
    worker = None
    try:
        cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLE))
        wait_until(
            lambda: ready(cluster, ns, pool), timeout=60, what="the example Ready with no manual Secret"
        )
        jobpool = get(cluster, ns, "jobpool", pool)
        owner = {
            "apiVersion": "jobpool.dev/v1alpha1",
            "kind": "JobPool",
            "name": pool,
            "uid": jobpool["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        urls = {}
        for role, name in ((acl.WORKER, f"{pool}-queue"), (acl.PRODUCER, f"{pool}-queue-producer")):
            assert get(cluster, ns, "secret", name)["metadata"]["ownerReferences"] == [owner]
            urls[role] = secret_values(cluster, ns, name)["url"]
            assert urls[role].startswith(f"redis://{acl.user_name(ns, pool, role)}:")
            assert urls[role].endswith(f"@{redis_server.host}:{redis_server.port}/0")
        assert users_of(redis_server.url, ns, pool) == set(acl.ROLES)
        (env,) = [
            e
            for e in get(cluster, ns, "deployment", f"{pool}-workers")["spec"]["template"]["spec"][
                "containers"
            ][0]["env"]
            if e["name"] == "JOBPOOL_QUEUE_URL"
        ]
        assert env["valueFrom"] == {"secretKeyRef": {"name": f"{pool}-queue", "key": "url"}}

        # The Secret's worker URL runs the example's handler; a producer submits with its own.
        worker = WorkerProcess(urls[acl.WORKER], ns, pool, "tasks:square", drain_seconds=5)
        assert submit_and_wait(urls[acl.PRODUCER], ns, pool, 7).result == 49

        # Tenants run no INFO: the operator's memory sample refuses their submits at 90% of maxmemory.
        admin = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
        # above 90%, with room below maxmemory (past it Redis itself refuses the submit function)
        maxmemory = int(int(admin.info("memory")["used_memory"]) / 0.93)
        admin.config_set("maxmemory", maxmemory)
        try:
            wait_until(
                lambda: (
                    (admin.hget(PoolKeys(ns, pool).memory, MEMORY.sample) or "").split(":")[1:2]
                    == [str(maxmemory)]
                ),
                timeout=10,
                what="the operator's sample of the new maxmemory",
            )
            with pytest.raises(QueueFull, match="memory is nearly full"):
                submit_and_wait(urls[acl.PRODUCER], ns, pool, 9)
        finally:
            admin.config_set("maxmemory", 0)
        assert not [
            e for e in admin.acl_log(count=1000) if e["username"] == acl.user_name(ns, pool, acl.PRODUCER)
        ]

        # ACL users are not in the AOF: after a restart the operator puts them back from its Secrets.
        redis_server.restart()
        wait_until(
            lambda: users_of(redis_server.url, ns, pool) == set(acl.ROLES),
            timeout=30,
            what="the users re-created after the Redis restart",
        )
        assert submit_and_wait(urls[acl.PRODUCER], ns, pool, 8).result == 64
        worker.stop()
        worker = None

        cluster.kubectl("delete", "jobpool", pool, "-n", ns, "--timeout=60s")
        assert users_of(redis_server.url, ns, pool) == set(), operator.logs()[-3000:]
        for name in (f"{pool}-queue", f"{pool}-queue-producer"):
            wait_until(
                lambda: get(cluster, ns, "secret", name) is None,
                timeout=60,
                what=f"the Secret {name} collected with its pool",
            )
        with pytest.raises(redis_lib.exceptions.AuthenticationError):
            redis_lib.Redis.from_url(urls[acl.WORKER]).ping()
    finally:
        if worker is not None:
            worker.stop()
        cluster.kubectl("delete", "jobpools", "--all", "-n", ns, "--timeout=60s", check=False)
        operator.stop()
        print("---- operator log (tail) ----\n" + operator.logs()[-6000:])


def test_deleting_the_namespace_removes_the_pools_users(jobpool_crds, kube_namespace, redis_server, tmp_path):
    cluster, ns = jobpool_crds, f"{kube_namespace[:50]}-doomed"
    operator = start_operator(
        cluster,
        ns,
        None,
        tmp_path / "operator.log",
        lease_namespace=kube_namespace,
        extra_args=("--admin-queue", redis_server.url),
    )
    try:
        create_namespace(cluster, ns)
        cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLE))
        pool = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
        wait_until(lambda: ready(cluster, ns, pool), timeout=60, what="the example Ready")
        assert users_of(redis_server.url, ns, pool) == set(acl.ROLES)
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
        wait_until(
            lambda: cluster.kubectl("get", "namespace", ns, check=False).returncode != 0,
            timeout=90,
            what="the namespace gone",
        )
        assert users_of(redis_server.url, ns, pool) == set(), operator.logs()[-3000:]
    finally:
        operator.stop()
        print("---- operator log (tail) ----\n" + operator.logs()[-6000:])
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def submit_many(url, ns, pool, payloads):
    async def run():
        queue = open_queue(url, ns, pool)
        try:
            return await queue.submit_many(payloads)
        finally:
            await queue.close()

    return asyncio.run(run())


def results_of(url, ns, pool, ids):
    async def run():
        queue = open_queue(url, ns, pool)
        try:
            return [await queue.result(job_id) for job_id in ids]
        finally:
            await queue.close()

    return asyncio.run(run())


def authenticates(url):
    try:
        return redis_lib.Redis.from_url(url).ping()
    except redis_lib.exceptions.AuthenticationError:
        return False


def test_rotating_the_credentials_rolls_the_workers_and_loses_no_job(
    jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster, ns, pool = jobpool_crds, kube_namespace, "rotated"
    operator = start_operator(
        cluster, ns, None, tmp_path / "operator.log", extra_args=("--admin-queue", redis_server.url)
    )
    workers = []
    try:
        apply(cluster, ns, pool_manifest(pool, parallelism=2))
        wait_until(lambda: ready(cluster, ns, pool), timeout=60, what="Ready")
        before = {
            role: secret_values(cluster, ns, name)
            for role, name in ((acl.WORKER, f"{pool}-queue"), (acl.PRODUCER, f"{pool}-queue-producer"))
        }
        old_digest = get(cluster, ns, "deployment", f"{pool}-workers")["spec"]["template"]["metadata"][
            "annotations"
        ][ANNOTATION_CREDENTIALS]
        workers.append(
            WorkerProcess(before[acl.WORKER]["url"], ns, pool, "tasks:square", concurrency=4, drain_seconds=5)
        )
        first = submit_many(before[acl.PRODUCER]["url"], ns, pool, list(range(50)))

        # Paused, the Deployment keeps its old pods: the rotation must wait for them.
        cluster.kubectl("rollout", "pause", "deployment", f"{pool}-workers", "-n", ns)
        cluster.kubectl("annotate", "jobpool", pool, "-n", ns, "jobpool.dev/rotate-credentials=first")
        during = wait_until(
            lambda: (
                (v := secret_values(cluster, ns, f"{pool}-queue"))
                and v["password"] != before[acl.WORKER]["password"]
                and v
            ),
            timeout=30,
            what="a new worker password",
        )
        producer = secret_values(cluster, ns, f"{pool}-queue-producer")
        assert producer["password"] != before[acl.PRODUCER]["password"]
        # While old pods may hold it, the old password stays valid: old workers and producers go on.
        assert during["previous-password"] == before[acl.WORKER]["password"]
        assert producer["previous-password"] == before[acl.PRODUCER]["password"]
        for url in (before[acl.WORKER]["url"], before[acl.PRODUCER]["url"], during["url"], producer["url"]):
            assert authenticates(url)
        workers.append(WorkerProcess(during["url"], ns, pool, "tasks:square", concurrency=4, drain_seconds=5))
        second = submit_many(before[acl.PRODUCER]["url"], ns, pool, list(range(50, 75)))
        second += submit_many(producer["url"], ns, pool, list(range(75, 100)))
        workers[0].stop()
        assert "previous-password" in secret_values(cluster, ns, f"{pool}-queue")
        cluster.kubectl("rollout", "resume", "deployment", f"{pool}-workers", "-n", ns)

        # The pods roll to the new password; then the previous one goes.
        def rolled():
            pods = items(cluster, ns, "pods", f"jobpool.dev/pool={pool}")
            digests = {p["metadata"].get("annotations", {}).get(ANNOTATION_CREDENTIALS) for p in pods}
            return len(pods) == 2 and old_digest not in digests and digests

        wait_until(rolled, timeout=60, what="the worker pods rolled")
        wait_until(
            lambda: "previous-password" not in secret_values(cluster, ns, f"{pool}-queue"),
            timeout=60,
            what="the previous password dropped",
        )
        assert not authenticates(before[acl.WORKER]["url"]) and not authenticates(before[acl.PRODUCER]["url"])
        assert authenticates(during["url"]) and authenticates(producer["url"])

        done = wait_until(
            lambda: (
                all(results_of(producer["url"], ns, pool, first + second))
                and results_of(producer["url"], ns, pool, first + second)
            ),
            timeout=60,
            what="every job of before and during the rotation done",
        )
        assert [r.result for r in done] == [n * n for n in range(100)]
    finally:
        for worker in workers:
            worker.stop()
        cluster.kubectl("delete", "jobpools", "--all", "-n", ns, "--timeout=60s", check=False)
        operator.stop()
        print("---- operator log (tail) ----\n" + operator.logs()[-6000:])
