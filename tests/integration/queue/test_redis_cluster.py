"""The queue on a real Redis Cluster (three masters, a replica each; tests/fixtures/redis_ha.py).

The queue and worker suites run here a second time, on the cluster: every test of
tests/integration/queue/test_streams.py and
tests/integration/worker/test_runtime.py that talks to Redis only through the queue
(the others inspect one server's keys, restart it or proxy its port). Then what only a cluster
has: pools spread over the masters, `delete_all` across nodes, per-pool users on every node,
and a master killed while jobs flow.
"""

from __future__ import annotations

import inspect
import json
import signal
import subprocess
import sys

import pytest
import redis as redis_sync

from jobpool import Client
from jobpool.controller.credentials import QueueAdmin
from jobpool.queue import QueueUnavailable, acl
from jobpool.queue.keys import PoolKeys
from jobpool.queue.redis import library
from jobpool.queue.redis.fields import MEMORY
from tests.helpers import ROOT, SyncQueue, wait_until
from tests.integration.queue import test_streams as test_queue_redis
from tests.integration.worker import test_runtime as test_worker_process

# a second Redis topology started once per session, and its suites run again on it
pytestmark = pytest.mark.slow

# What a test needs that a cluster URL cannot give: one server's client, its port, a restart.
_SINGLE_SERVER_ONLY = (
    "redis_sync.",
    "ReplyDroppingProxy",
    ".restart(",
    ".stop()",
    ".start()",
    "redis_server.port",
)


def _through_the_queue_only(function) -> bool:
    source = inspect.getsource(function)
    return not any(marker in source for marker in _SINGLE_SERVER_ONLY)


for _module in (test_queue_redis, test_worker_process):
    for _name, _test in vars(_module).items():
        if _name.startswith("test_") and callable(_test) and _through_the_queue_only(_test):
            globals()[_name] = _test


@pytest.fixture
def redis_server(redis_cluster):
    """The suites' session server, here the cluster: they use only its `url`."""
    return redis_cluster


def cluster_client(cluster) -> redis_sync.RedisCluster:
    return redis_sync.RedisCluster(
        host=cluster.nodes[0].host, port=cluster.live()[0].port, decode_responses=True
    )


def pool_on(cluster, master, prefix: str) -> str:
    """A pool name whose keys live on `master`."""
    return next(
        name
        for name in (f"{prefix}-{i}" for i in range(1000))
        if cluster.master_of(PoolKeys("it", name).stream) is master
    )


def test_pools_spread_over_every_master(redis_cluster):
    homes = {redis_cluster.master_of(PoolKeys("it", f"pool-{i}").stream).port for i in range(30)}
    assert homes == {master.port for master in redis_cluster.masters()}


def test_delete_all_removes_the_pools_keys_on_its_node_and_no_other_pools(redis_cluster, pool_name):
    first, second = redis_cluster.masters()[:2]
    mine, neighbour = pool_on(redis_cluster, first, pool_name), pool_on(redis_cluster, second, pool_name)
    queues = [SyncQueue(redis_cluster.url, "it", name) for name in (mine, neighbour)]
    raw = cluster_client(redis_cluster)
    try:
        for q in queues:
            ids = q.submit_many([1, 2, 3])
            job = q.fetch("c", 1, 100)[0]
            q.ack_many([(job, "ok")])
            q.fail(q.fetch("c", 1, 100)[0], "boom", max_attempts=1, backoff=0, max_backoff=0)
            assert q.result(ids[0]) is not None
        queues[0].delete_all()
        assert list(raw.scan_iter(match=PoolKeys("it", mine).scan_pattern)) == []
        assert len(list(raw.scan_iter(match=PoolKeys("it", neighbour).scan_pattern))) >= 5
        assert queues[1].stats().dead_letter == 1
    finally:
        queues[1].delete_all()
        for q in queues:
            q.close()
        raw.close()


def test_results_over_the_cap_go_with_their_result_keys(redis_cluster, pool_name):
    q = SyncQueue(redis_cluster.url, "it", pool_name, results_cap=3)
    try:
        ids = q.submit_many(list(range(5)))
        for _ in ids:
            q.ack_many([(job, job.payload) for job in q.fetch("c", 1, 100)])
        assert [r.id for r in q.collect(q.results())] == ids[2:]
        assert [q.result(job_id) for job_id in ids[:2]] == [None, None]
        assert q.result(ids[4]).result == 4
    finally:
        q.delete_all()
        q.close()


def test_priorities_and_fairness_keys_live_on_the_pools_shard(redis_cluster, pool_name):
    """The level lists are named by the library from the pool's hash tag: one slot, as the rest."""
    from jobpool.queue import JobOptions

    q = SyncQueue(redis_cluster.url, "it", pool_name)
    try:
        q.submit_many([0, 1], ["low-0", "low-1"])
        q.submit_many(
            [2, 3],
            ["a", "b"],
            options=[JobOptions(priority=9, fairness_key="t1"), JobOptions(priority=9, fairness_key="t2")],
        )
        assert q.stats().waiting_by_priority == {"9": 2, "0": 2}
        assert q.job("a").priority == 9
        assert [job.id for job in q.fetch("c", 1, 100)] == ["a"]
        assert sorted(job.id for job in q.fetch("c", 3, 100)) == ["b", "low-0", "low-1"]
        assert q.stats().waiting_by_priority == {}
    finally:
        q.delete_all()
        q.close()


def test_a_pools_users_are_set_on_every_node_and_run_the_pool(redis_cluster, pool_name, spawn_worker):
    admin = SyncQueue(redis_cluster.url, "it", pool_name)  # for its loop; the admin is the default user
    client = QueueAdmin(redis_cluster.url)  # the operator's connection to the queue it administers
    users = {role: acl.PoolUser("it", pool_name, role, (f"{role}-pw",)) for role in acl.ROLES}
    try:
        for user in users.values():
            admin.loop.run_until_complete(client.apply(user))
        for node in redis_cluster.live():
            assert set(node.client().acl_users()) >= {user.name for user in users.values()}
            # the library, loaded on every master with the users, replicated to every replica
            wait_until(
                lambda: node.client().function_list(library=library.name()),
                what=f"the functions library on node {node.port}",
            )
        urls = {
            role: acl.user_url(redis_cluster.url, user.name, f"{role}-pw") for role, user in users.items()
        }
        spawn_worker(url=urls[acl.WORKER], handler="tests.integration.handlers:echo")
        with Client(urls[acl.PRODUCER], "it", pool_name) as producer:
            ids = producer.submit_many([{"n": i} for i in range(20)])
            assert [producer.result(job_id, timeout=20).result for job_id in ids] == [
                {"echo": {"n": i}} for i in range(20)
            ]
        assert admin.loop.run_until_complete(client.delete_users("it", pool_name)) == 2
        for node in redis_cluster.live():
            assert not {user.name for user in users.values()} & set(node.client().acl_users())
    finally:
        admin.loop.run_until_complete(client.close())
        admin.delete_all()
        admin.close()


def test_the_operator_publishes_the_pools_memory_sample_on_its_shard(redis_cluster, pool_name):
    """The operator's pass reads INFO memory of the master of the pool's slot into the pool's
    memory hash; a producer's one-job submits (no INFO of their own) add to it."""
    admin = SyncQueue(redis_cluster.url, "it", pool_name)
    client = QueueAdmin(redis_cluster.url)
    user = acl.PoolUser("it", pool_name, acl.PRODUCER, ("producer-pw",))
    master = redis_cluster.master_of(PoolKeys("it", pool_name).memory).client()
    master.config_set("maxmemory", 8 * 2**30)  # far above use: the submit script samples memory
    try:
        admin.loop.run_until_complete(client.apply(user))
        assert admin.upkeep() == ()
        with Client(acl.user_url(redis_cluster.url, user.name, "producer-pw"), "it", pool_name) as producer:
            ids = [producer.submit({"n": n}) for n in range(5)]
            assert len(set(ids)) == 5 and producer.status().submitted == 5
        sample, added = master.hmget(PoolKeys("it", pool_name).memory, MEMORY.sample, MEMORY.added)
        assert sample.split(":")[1] == str(8 * 2**30)
        assert int(added) > 200  # what the submits added since the operator's sample
    finally:
        master.config_set("maxmemory", 0)
        admin.loop.run_until_complete(client.delete_users("it", pool_name))
        admin.loop.run_until_complete(client.close())
        admin.delete_all()
        admin.close()


def jobpool_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobpool.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_a_master_killed_while_jobs_flow_loses_no_acknowledged_job(
    redis_cluster, pool_name, spawn_worker, tmp_path
):
    """Workers, the CLI, the SDK and a long-lived queue (as the operator holds one) go on after
    the pool's master dies and its replica takes over. Submits finished before the kill are
    replicated by then (the loss window is the last replication round trip), so every job ends
    with a result; acks lost with the master make duplicates, never losses."""
    operator_queue = SyncQueue(redis_cluster.url, "it", pool_name)
    master = redis_cluster.master_of(PoolKeys("it", pool_name).stream)
    workers = [
        spawn_worker(
            handler="tests.integration.handlers:sleepy",
            concurrency=4,
            visibility_timeout=2,
            env={"JOBPOOL_TEST_LOG": str(tmp_path / "jobs.log")},
        )
        for _ in range(2)
    ]
    try:
        with Client(redis_cluster.url, "it", pool_name) as sdk:
            before = sdk.submit_many([{"seconds": 0.05, "n": i} for i in range(600)])
            wait_until(lambda: 50 <= operator_queue.stats().succeeded < 500, what="jobs to flow")
            redis_cluster.fail_over(master)
            after = wait_until(
                lambda: _submit_or_none(sdk, 100), timeout=30, what="a submit after the failover"
            )
            assert operator_queue.stats().waiting >= 0
            done = [sdk.result(job_id, timeout=60) for job_id in before + after]
        assert all(done), f"{sum(1 for r in done if r is None)} jobs have no result"
        assert all(worker.alive() for worker in workers)
        status = jobpool_cli(
            "status", pool_name, "--queue", redis_cluster.url, "--namespace", "it", "--output", "json"
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["succeeded"] >= 700
    finally:
        redis_cluster.rejoin(master)
        operator_queue.delete_all()
        operator_queue.close()


def _submit_or_none(sdk: Client, count: int) -> list[str] | None:
    try:
        return sdk.submit_many([{"seconds": 0.01, "n": -1} for _ in range(count)])
    except QueueUnavailable:
        return None


def test_replicated_durability_waits_for_the_replica_of_the_pools_own_shard(redis_cluster, pool_name):
    q = SyncQueue(redis_cluster.url, "it", pool_name)
    master = redis_cluster.master_of(PoolKeys("it", pool_name).stream)
    replica = next(
        node
        for node in redis_cluster.live()
        if node.client().info("replication").get("master_port") == master.port
    )
    try:
        q.configure(max_length=None, durability="replicated")
        job_id = q.submit({"n": 1})
        q.ack_many([(q.fetch("c", 1, 100)[0], "done")])
        assert q.result(job_id).result == "done"
        replica.process.send_signal(signal.SIGSTOP)
        with pytest.raises(QueueUnavailable, match="no replica confirmed"):
            q.submit({"n": 2})
    finally:
        replica.process.send_signal(signal.SIGCONT)
        q.delete_all()
        q.close()
