"""The queue on a Sentinel-watched master (a master, a replica and three real sentinels,
password-protected; tests/fixtures/redis_ha.py).

The queue suite runs here a second time, on the sentinel URL (the tests of
tests/integration/queue/test_streams.py that talk to Redis only through the queue); then a failover during a
batch, and the per-pool users on master and replica.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import pytest

from jobpool import AsyncClient, Client
from jobpool.controller.credentials import QueueAdmin
from jobpool.queue import QueueUnavailable, acl
from jobpool.queue.redis import library
from tests.helpers import ROOT, SyncQueue, wait_until
from tests.integration.queue import test_streams as test_queue_redis

from .test_redis_cluster import _through_the_queue_only

# a second Redis topology started once per session, and its suites run again on it
pytestmark = pytest.mark.slow

for _name, _test in vars(test_queue_redis).items():
    if _name.startswith("test_") and callable(_test) and _through_the_queue_only(_test):
        globals()[_name] = _test


@pytest.fixture
def redis_server(redis_sentinel):
    """The suite's session server, here the sentinel group: the suite uses only its `url`."""
    return redis_sentinel


def _submit_or_none(sdk: Client, payloads: list) -> list[str] | None:
    try:
        return sdk.submit_many(payloads)
    except QueueUnavailable:
        return None


def test_a_failover_during_a_batch_loses_no_acknowledged_job(
    redis_sentinel, pool_name, spawn_worker, tmp_path
):
    """The master dies while a batch runs; the sentinels promote the replica, and workers, the
    SDK, the CLI and a long-lived queue (the operator's) find it and finish every job."""
    operator_queue = SyncQueue(redis_sentinel.url, "it", pool_name)
    killed = redis_sentinel.current_master()
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
        with Client(redis_sentinel.url, "it", pool_name) as sdk:
            batch = sdk.submit_many([{"seconds": 0.05, "n": i} for i in range(600)])
            wait_until(lambda: 50 <= operator_queue.stats().succeeded < 500, what="the batch to run")
            redis_sentinel.fail_over()
            after = wait_until(
                lambda: _submit_or_none(sdk, [{"seconds": 0, "n": -1}] * 50),
                timeout=30,
                what="a submit after the failover",
            )
            done = [sdk.result(job_id, timeout=60) for job_id in batch + after]
        assert all(done), f"{sum(1 for r in done if r is None)} jobs have no result"
        assert all(worker.alive() for worker in workers)
        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "jobpool.cli",
                "status",
                pool_name,
                "--queue",
                redis_sentinel.url,
                "--namespace",
                "it",
                "--output",
                "json",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["succeeded"] >= 650
    finally:
        redis_sentinel.rejoin(killed)
        operator_queue.delete_all()
        operator_queue.close()


def test_a_pools_users_are_set_on_master_and_replica_and_survive_a_failover(
    redis_sentinel, pool_name, spawn_worker
):
    """ACL users are not replicated: the operator sets them on every server, so the promoted
    replica knows the pool's users."""
    admin_loop = SyncQueue(redis_sentinel.url, "it", pool_name)
    admin = QueueAdmin(redis_sentinel.url)  # the operator's connection to the queue it administers
    users = {role: acl.PoolUser("it", pool_name, role, (f"{role}-pw",)) for role in acl.ROLES}
    killed = redis_sentinel.current_master()
    try:
        for user in users.values():
            admin_loop.loop.run_until_complete(admin.apply(user))
        for node in (redis_sentinel.master, redis_sentinel.replica):
            assert {u.name for u in users.values()} <= set(redis_sentinel._client(node).acl_users())
        urls = {
            role: acl.user_url(redis_sentinel.url, user.name, f"{role}-pw") for role, user in users.items()
        }
        redis_sentinel.fail_over()
        # the promoted replica has the functions library the operator loaded on the master
        assert redis_sentinel._client(redis_sentinel.current_master()).function_list(library=library.name())
        spawn_worker(url=urls[acl.WORKER], handler="tests.integration.handlers:echo")
        with Client(urls[acl.PRODUCER], "it", pool_name) as producer:
            ids = producer.submit_many([{"n": i} for i in range(10)])
            assert [producer.result(i, timeout=20).result for i in ids] == [
                {"echo": {"n": i}} for i in range(10)
            ]
    finally:
        admin_loop.loop.run_until_complete(admin.delete_users("it", pool_name))
        admin_loop.loop.run_until_complete(admin.close())
        redis_sentinel.rejoin(killed)
        admin_loop.delete_all()
        admin_loop.close()


def _queued_ids(queue: SyncQueue) -> set[str]:
    """The ids of every job waiting in the pool now."""
    ids: set[str] = set()
    while jobs := queue.fetch("audit", 1000, 10):
        ids.update(job.id for job in jobs)
    return ids


def test_replicated_durability_keeps_every_acknowledged_submit_through_a_failover(redis_sentinel, pool_name):
    q = SyncQueue(redis_sentinel.url, "it", pool_name)
    killed = redis_sentinel.current_master()
    try:
        q.configure(max_length=None, durability="replicated")
        acknowledged = [
            job_id for i in range(20) for job_id in q.submit_many([{"n": i, "k": k} for k in range(50)])
        ]
        redis_sentinel.fail_over()
        assert _queued_ids(q) == set(acknowledged)
    finally:
        redis_sentinel.rejoin(killed)
        q.delete_all()
        q.close()


@pytest.mark.parametrize("durability", ["async", "replicated"])
def test_a_submit_the_replica_has_not_got_is_acknowledged_only_without_replicated_durability(
    redis_sentinel, pool_name, durability
):
    """The replica stops taking the replication stream (SIGSTOP) and the master dies: with async
    durability the submits acknowledged meanwhile are lost with it (the loss window); with
    replicated durability they are refused, never acknowledged, and nothing acknowledged is lost."""
    q = SyncQueue(redis_sentinel.url, "it", pool_name)
    killed, replica = redis_sentinel.current_master(), redis_sentinel.current_replica()
    payload = "x" * 2000  # 40 MB in all: more than the kernel buffers of the replication link hold
    try:
        q.configure(max_length=None, durability=durability)
        acknowledged = q.submit_many([{"before": i} for i in range(100)])
        replica.process.send_signal(signal.SIGSTOP)
        try:
            for chunk in range(20):
                acknowledged += q.submit_many([{"p": payload, "chunk": chunk}] * 1000)
        except QueueUnavailable as refused:
            assert durability == "replicated" and "no replica confirmed" in str(refused)
        redis_sentinel.fail_over(while_down=lambda: replica.process.send_signal(signal.SIGCONT))
        found = _queued_ids(q)
        if durability == "replicated":
            assert set(acknowledged) <= found
        else:
            assert set(acknowledged) - found, "the master's last writes should have died with it"
    finally:
        if replica.process:
            replica.process.send_signal(signal.SIGCONT)
        redis_sentinel.rejoin(killed)
        q.delete_all()
        q.close()


def test_under_replicated_durability_an_ack_waits_for_the_replica(redis_sentinel, pool_name):
    q = SyncQueue(redis_sentinel.url, "it", pool_name)
    replica = redis_sentinel.current_replica()
    try:
        q.configure(max_length=None, durability="replicated")
        job_id = q.submit({"n": 1})
        job = q.fetch("c", 1, 100)[0]
        replica.process.send_signal(signal.SIGSTOP)
        with pytest.raises(QueueUnavailable, match="no replica confirmed"):
            q.ack_many([(job, "done")])
        replica.process.send_signal(signal.SIGCONT)
        assert q.ack_many([(job, "done")]) == (1, 0)  # the ack sent again is the same completion
        assert q.result(job_id).result == "done"
    finally:
        replica.process.send_signal(signal.SIGCONT)
        q.delete_all()
        q.close()


def test_under_replicated_durability_an_ack_with_the_next_fetch_waits_for_the_replica(
    redis_sentinel, pool_name
):
    q = SyncQueue(redis_sentinel.url, "it", pool_name)
    replica = redis_sentinel.current_replica()
    try:
        q.configure(max_length=None, durability="replicated")
        job_id, next_id = q.submit_many([{"n": 1}, {"n": 2}])
        job = q.fetch("c", 1, 100)[0]
        replica.process.send_signal(signal.SIGSTOP)
        with pytest.raises(QueueUnavailable, match="no replica confirmed"):
            q.ack_then_fetch([(job, "done")], "c", 1)
        replica.process.send_signal(signal.SIGCONT)
        first, again, fetched = q.ack_then_fetch([(job, "done")], "c", 1)
        assert (first, again) == (1, 0)  # the same completion
        # the refused ack fetched nothing: the next job comes now, on its first delivery
        assert [(next_job.id, next_job.attempts) for next_job in fetched] == [(next_id, 1)]
        assert q.result(job_id).result == "done"
    finally:
        replica.process.send_signal(signal.SIGCONT)
        q.delete_all()
        q.close()


def test_under_replicated_durability_every_sdk_submit_waits_for_the_replica(redis_sentinel, pool_name):
    """Client.submit (its sync path too, on a plain redis:// URL of the master) and AsyncClient
    submits sent together are refused while the replica takes nothing."""
    q = SyncQueue(redis_sentinel.url, "it", pool_name)
    master, replica = redis_sentinel.current_master(), redis_sentinel.current_replica()
    plain_url = f"redis://:{redis_sentinel.password}@{master.host}:{master.port}"

    async def submit_together() -> list:
        async with AsyncClient(redis_sentinel.url, "it", pool_name) as sdk:
            return await asyncio.gather(*(sdk.submit({"n": n}) for n in range(10)), return_exceptions=True)

    try:
        q.configure(max_length=None, durability="replicated")
        replica.process.send_signal(signal.SIGSTOP)
        for url in (plain_url, redis_sentinel.url):
            with Client(url, "it", pool_name) as sdk:
                for n in range(2):  # the second once the client knows the pool's durability
                    with pytest.raises(QueueUnavailable, match="no replica confirmed"):
                        sdk.submit({"n": n})
        outcomes = asyncio.run(submit_together())
        assert all(
            isinstance(outcome, QueueUnavailable) and "no replica confirmed" in str(outcome)
            for outcome in outcomes
        ), outcomes
    finally:
        replica.process.send_signal(signal.SIGCONT)
        q.delete_all()
        q.close()
