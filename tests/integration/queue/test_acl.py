"""Per-pool Redis ACL users (jobpool.queue.acl) on a real redis-server: the whole worker and
producer flow runs under them with no denial, and everything else is refused with NOPERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError, ResponseError

import jobpool
from jobpool.queue import QueueError, acl
from jobpool.queue.keys import GROUP, PoolKeys
from jobpool.queue.redis import functions, library
from jobpool.queue.redis.fields import MEMORY
from tests.helpers import ROOT, SyncQueue, wait_until
from tests.integration.handlers import events

SLEEPY = "tests.integration.handlers:sleepy"
# Redis's words for an ACL denial: NOPERM at the top level, and inside a script
DENIED = "no permissions|can't run this command|can't access"


class PoolUsers:
    """The worker and producer users of one pool, made with the session server's admin user."""

    def __init__(self, server, namespace: str, pool: str, load_library: bool = True):
        self.server, self.namespace, self.pool = server, namespace, pool
        self.passwords = {role: f"{role}-{pool}-pw" for role in acl.ROLES}
        if load_library:  # as the operator does: the library, then the users
            self._admin(library.load_everywhere)
        self._admin(
            lambda admin: asyncio.gather(
                *(
                    acl.apply_user(admin, acl.PoolUser(namespace, pool, role, (password,)))
                    for role, password in self.passwords.items()
                )
            )
        )

    def _admin(self, action):
        async def run():
            admin = aioredis.from_url(self.server.url)
            try:
                return await action(admin)
            finally:
                await admin.aclose()

        return asyncio.run(run())

    def url(self, role: str) -> str:
        return acl.user_url(
            self.server.url, acl.user_name(self.namespace, self.pool, role), self.passwords[role]
        )

    def client(self, role: str) -> redis_sync.Redis:
        return redis_sync.Redis.from_url(self.url(role))

    def denials(self) -> list[dict]:
        """ACL LOG entries of these users: a denial inside a script's pcall shows here too."""
        log = redis_sync.Redis.from_url(self.server.url, decode_responses=True).acl_log(count=1000)
        names = {acl.user_name(self.namespace, self.pool, role) for role in acl.ROLES}
        return [entry for entry in log if entry["username"] in names]

    def delete(self) -> int:
        return self._admin(lambda admin: acl.delete_users(admin, self.namespace, self.pool))


@pytest.fixture
def users(redis_server, pool_name):
    created = PoolUsers(redis_server, "it", pool_name)
    yield created
    created.delete()


@pytest.fixture
def other_pool(redis_server, pool_name):
    """Pool B, with keys that pool A's credentials must not reach."""
    other = SyncQueue(redis_server.url, "it", f"other-{pool_name}"[:63])
    other.submit_many([{"secret": 1}], ["b-1"])
    yield other
    other.delete_all()
    other.close()


def test_a_pool_runs_its_whole_life_under_its_worker_and_producer_users(users, queue, spawn_worker, tmp_path):
    # `queue` (the admin's view) deletes the pool's keys afterwards; its pass publishes the memory
    # sample, as the operator's does before it makes the users (tenants run no INFO)
    queue.upkeep()
    log = tmp_path / "jobs.log"
    producer = SyncQueue(users.url(acl.PRODUCER), "it", users.pool)
    team = SyncQueue(users.url(acl.WORKER), "it", users.pool)
    try:
        options = dict(
            url=users.url(acl.WORKER),
            handler=SLEEPY,
            concurrency=2,
            visibility_timeout=1.5,
            heartbeat_interval=0.3,
            max_attempts=2,
            backoff=0.05,
            max_backoff=0.1,
            drain_seconds=0.5,
            env={"JOBPOOL_TEST_LOG": str(log)},
        )
        first = spawn_worker(**options)
        # submit (SDK), fetch, ack, fail -> retry -> dead letter (no "n": a KeyError)
        ids = producer.submit_many([{"n": n} for n in range(5)] + [{"broken": True}])
        for job_id, n in zip(ids, range(5)):
            assert producer.result(job_id, timeout=20).result == n
        wait_until(lambda: producer.stats().dead_letter == 1, what="the broken job dead-lettered")
        # a job longer than the visibility timeout stays with its worker (heartbeat), and a
        # drain releases it to the next worker at once
        [long_id] = producer.submit_many([{"n": 99, "seconds": 2.5}])
        wait_until(lambda: ("start", 99, first.pid) in events(log), what="the long job to start")
        first.send(signal.SIGTERM)
        assert first.wait(timeout=20) == 0
        assert "released for immediate redelivery" in first.log()
        second = spawn_worker(**options)
        long_result = producer.result(long_id, timeout=20)
        # one attempt: released without counting one, and never stolen while it ran 2.5 s
        assert (long_result.result, long_result.attempts) == (99, 1)
        assert ("end", 99, second.pid) in events(log)
        # replay (with the pool's worker credentials) dead-letters the broken job again
        assert team.replay() == 1
        wait_until(
            lambda: (
                producer.stats().dead_lettered == 1
                and producer.stats().dead_letter == 1
                and producer.stats().backlog == 0
            ),
            what="the replayed job dead-lettered again",
        )
        assert [d.id for d in team.dead_letters()] == [ids[5]]
        # results and status as a producer reads them, through the SDK and the CLI
        assert {r.id for r in producer.collect(producer.results())} == {*ids[:5], long_id}
        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "jobpool.cli",
                "status",
                users.pool,
                "--queue",
                users.url(acl.PRODUCER),
                "--namespace",
                "it",
                "--output",
                "json",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["succeeded"] == 6
        assert team.purge_dead_letters() == 1
        second.send(signal.SIGTERM)
        assert second.wait(timeout=20) == 0
        assert users.denials() == []
    finally:
        producer.close()
        team.close()


SERVER_COMMANDS = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("MONITOR",),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "x"),
    ("SCRIPT", "FLUSH"),
    ("INFO",),
    ("INFO", "keyspace"),
    ("CLIENT", "LIST"),
    ("EVAL", "return 1", "0"),
    ("SCRIPT", "LOAD", "return 1"),
    ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"),
    ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', function() end)"),
    ("FUNCTION", "DELETE", library.name()),
    ("FUNCTION", "FLUSH"),
]
# Asked of the ACL without running them: DEBUG is refused by this server's config before any ACL
# check, and SHUTDOWN must not be tried for real.
DRY_RUN_ONLY = [("DEBUG", "SLEEP", "0"), ("DEBUG", "OBJECT", "x"), ("SHUTDOWN", "NOSAVE")]


@pytest.mark.parametrize("role", acl.ROLES)
def test_a_pools_users_cannot_touch_another_pool_or_the_server(users, other_pool, role):
    client = users.client(role)
    b = PoolKeys("it", other_pool.pool)
    attempts = [
        ("GET", b.result("b-1")),
        ("SET", b.config, "x"),
        ("DEL", b.stream),
        ("UNLINK", b.stream),
        ("XRANGE", b.stream, "-", "+"),
        ("XLEN", b.stream),
        ("HGETALL", b.counters),
        ("XREADGROUP", "GROUP", GROUP, "thief", "STREAMS", b.stream, ">"),
        ("SCAN", "0", "MATCH", b.scan_pattern),
        ("EXISTS", b.live),
        *SERVER_COMMANDS,
    ]
    for command in attempts:
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)
    admin = redis_sync.Redis.from_url(users.server.url, decode_responses=True)
    for command in DRY_RUN_ONLY:
        answer = admin.execute_command("ACL", "DRYRUN", acl.user_name("it", users.pool, role), *command)
        assert "no permissions" in answer, (command, answer)
    # the library's functions given pool B's keys (test_functions.py: no code of its own runs)
    for function, call in (
        (functions.Stats, dict(now_ms=0, horizon_ms=0)),
        (functions.Purge, dict(ids=None)),
    ):
        with pytest.raises(ResponseError, match=DENIED):
            client.execute_command(*function.command(b, **call))
    # pool B is as it was
    assert other_pool.stats().waiting == 1
    with pytest.raises(QueueError, match=DENIED):
        asyncio.run(_submit_to(users.url(role), other_pool.pool))


async def _submit_to(url: str, pool: str) -> None:
    from jobpool.queue import open_queue

    queue = open_queue(url, "it", pool)
    try:
        await queue.submit_many([{"stolen": True}])
    finally:
        await queue.close()


def test_a_producer_cannot_fetch_ack_or_delete(users, queue):
    producer = SyncQueue(users.url(acl.PRODUCER), "it", users.pool)
    k = PoolKeys("it", users.pool)
    try:
        job_id, _ = producer.submit_many([{"n": 1}, {"n": 2}])
        # a worker with full rights holds one job and dead-letters the other
        job, dead = sorted(queue.fetch("real-worker", 2, 0), key=lambda j: j.id != job_id)
        assert queue.fail(dead, "boom", max_attempts=1, backoff=0, max_backoff=0) == "dead_lettered"
        producer.submit_many([{"n": 3}])
        for denied in (
            lambda: producer.fetch("thief", 1, 0),
            lambda: producer.ack_many([(job, "forged")]),
            lambda: producer.fail(job, "forged", max_attempts=1, backoff=0, max_backoff=0),
            lambda: producer.release("real-worker", [job]),
            lambda: producer.purge_dead_letters(),
            lambda: producer.replay(),
            lambda: producer.delete_all(),
            lambda: producer.configure(max_length=1),
        ):
            with pytest.raises(QueueError, match=DENIED):
                denied()
        client = users.client(acl.PRODUCER)
        for command in (
            ("XREADGROUP", "GROUP", GROUP, "thief", "STREAMS", k.stream, ">"),
            ("XACK", k.stream, GROUP, job.token),
            ("XDEL", k.stream, job.token),
            ("DEL", k.stream),
            ("UNLINK", k.stream),
            ("XTRIM", k.stream, "MAXLEN", "0"),
            ("XCLAIM", k.stream, GROUP, "thief", "0", job.token),
            ("XAUTOCLAIM", k.stream, GROUP, "thief", "0", "0"),
            ("SREM", k.live, job_id),
            ("SET", k.result(job_id), "forged"),
            ("HSET", k.config, "max_length", "1"),
        ):
            with pytest.raises(NoPermissionError):
                client.execute_command(*command)
        stats = queue.stats()
        assert (stats.waiting, stats.in_flight, stats.dead_letter, stats.succeeded) == (1, 1, 1, 0)
    finally:
        producer.close()


def test_deleting_the_users_ends_their_access(users, redis_server):
    client = users.client(acl.WORKER)
    assert client.ping()
    assert users.delete() == 2
    with pytest.raises(redis_sync.exceptions.RedisError):
        redis_sync.Redis.from_url(users.url(acl.WORKER)).ping()
    names = redis_sync.Redis.from_url(redis_server.url, decode_responses=True).acl_users()
    assert not [name for name in names if users.pool in name]


def test_applying_a_user_again_is_idempotent_and_a_second_password_works_until_removed(users, redis_server):
    user = acl.PoolUser("it", users.pool, acl.WORKER, ("new-pw", users.passwords[acl.WORKER]))
    admin = aioredis.from_url(redis_server.url)

    async def apply(u):
        await acl.apply_user(admin, u)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(apply(user))
        loop.run_until_complete(apply(user))
        name = acl.user_name("it", users.pool, acl.WORKER)
        for password in ("new-pw", users.passwords[acl.WORKER]):
            assert redis_sync.Redis.from_url(acl.user_url(redis_server.url, name, password)).ping()
        loop.run_until_complete(apply(acl.PoolUser("it", users.pool, acl.WORKER, ("new-pw",))))
        with pytest.raises(redis_sync.exceptions.AuthenticationError):
            redis_sync.Redis.from_url(
                acl.user_url(redis_server.url, name, users.passwords[acl.WORKER])
            ).ping()
    finally:
        loop.run_until_complete(admin.aclose())
        loop.close()


def test_a_producer_submits_one_job_at_a_time_to_a_redis_with_a_maxmemory(users, redis_server, queue):
    admin = redis_sync.Redis.from_url(redis_server.url)
    admin.config_set("maxmemory", 8 * 2**30)  # far above use: the submit function checks memory
    queue.upkeep()  # by the sample the operator's pass publishes
    try:
        with jobpool.Client(users.url(acl.PRODUCER), "it", users.pool) as client:
            ids = [client.submit({"n": n}) for n in range(5)]
            assert len(set(ids)) == 5 and client.status().submitted == 5
        # the sample and what the producer's submits added to it since
        assert int(admin.hget(PoolKeys("it", users.pool).memory, MEMORY.added)) > 5 * 200
        assert users.denials() == []
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()


def test_a_producer_submits_jobs_with_ids_of_its_own(users, queue):
    """A given id's result key is among the submit script's keys (so a done job is not run
    again); a submit sent again after a dropped connection, as in a failover, gives every id."""
    queue.upkeep()  # the operator's memory sample: tenants run no INFO
    producer = SyncQueue(users.url(acl.PRODUCER), "it", users.pool)
    try:
        assert producer.submit_many([{"n": 1}, {"n": 2}], ["mine-1", "mine-2"]) == ["mine-1", "mine-2"]
        with jobpool.Client(users.url(acl.PRODUCER), "it", users.pool) as client:
            assert client.submit({"n": 3}, id="mine-3") == "mine-3"
        assert producer.submit_many([{"n": 1}], ["mine-1"]) == ["mine-1"]  # the same job, sent again
        assert queue.stats().submitted == 3
        assert users.denials() == []
    finally:
        producer.close()


def test_a_worker_user_publishes_its_tasks_and_a_producer_user_submits_by_them(users, queue, spawn_worker):
    """The heartbeat writes the pool's task list with the worker's user; the submit reads it with
    the producer's, which may not write it."""
    queue.upkeep()
    spawn_worker(url=users.url(acl.WORKER), handler="tests.integration.tasks")
    with jobpool.Client(users.url(acl.PRODUCER), "it", users.pool) as client:
        wait_until(lambda: client.status().workers, timeout=15, what="the worker's registration")
        assert client.result(client.submit(2, task="resize"), timeout=15).result == {"resized": 2}
        with pytest.raises(jobpool.UnknownTask):
            client.submit(1, task="nope")
    with pytest.raises(NoPermissionError):
        users.client(acl.PRODUCER).hset(PoolKeys("it", users.pool).tasks, "nope", 2**50)
    assert [entry for entry in users.denials() if entry["context"] != "toplevel"] == []


def test_a_producer_user_schedules_jobs_it_cannot_read_back(users, queue):
    """A scheduled job's entry waits in delayed-jobs, which the producer's submit writes and the
    producer may not read (retries' payloads wait there too)."""
    queue.upkeep()
    with jobpool.Client(users.url(acl.PRODUCER), "it", users.pool) as client:
        assert client.submit({"secret": 1}, id="later", delay=600) == "later"
        assert client.status().scheduled == 1
    with pytest.raises(NoPermissionError):
        users.client(acl.PRODUCER).hget(PoolKeys("it", users.pool).delayed_jobs, "later")
    assert [entry for entry in users.denials() if entry["context"] != "toplevel"] == []


def test_a_worker_user_reads_a_jobs_state_and_a_producer_user_may_not(users, queue):
    # job state holds a retry's error and a dead letter's, which a producer may not read
    producer = SyncQueue(users.url(acl.PRODUCER), "it", users.pool)
    worker = SyncQueue(users.url(acl.WORKER), "it", users.pool)
    try:
        producer.submit_many([{"n": 1}, {"n": 2}], ["fails", "held"])
        [job] = [j for j in queue.fetch("real-worker", 2, 0) if j.id == "fails"] or [None]
        assert queue.fail(job, "boom", max_attempts=3, backoff=60, max_backoff=60) == "retried"
        retrying, held = worker.job("fails"), worker.job("held")
        assert (retrying.state, retrying.error, held.state, held.worker) == (
            "retrying",
            "boom",
            "running",
            "real-worker",
        )
        with pytest.raises(QueueError, match=DENIED):
            producer.job("fails")
        assert not [entry for entry in users.denials() if entry["username"].endswith(".worker")]
    finally:
        producer.close()
        worker.close()


def test_a_worker_user_cancels_a_job_and_a_producer_user_may_not(users, queue):
    # cancel removes waiting entries, which a producer may not: it is the worker user's
    producer = SyncQueue(users.url(acl.PRODUCER), "it", users.pool)
    worker = SyncQueue(users.url(acl.WORKER), "it", users.pool)
    try:
        producer.submit_many([{"n": 1}, {"n": 2}], ["kept", "withdrawn"])
        with pytest.raises(QueueError, match=DENIED):
            producer.cancel(["kept"])
        assert worker.cancel(["withdrawn"]) == {"withdrawn": "cancelled"}
        assert (queue.stats().waiting, queue.stats().cancelled) == (1, 1)
        assert not [entry for entry in users.denials() if entry["username"].endswith(".worker")]
    finally:
        producer.close()
        worker.close()


def test_a_producer_user_submits_with_priorities_it_cannot_read_back_and_a_worker_user_fetches(users, queue):
    """Jobs with a priority or a fairness key wait in their level's lists: the producer's submit
    writes them (and may not read them), the worker's fetch and cancel take them."""
    queue.upkeep()
    keys = PoolKeys("it", users.pool)
    producer = SyncQueue(users.url(acl.PRODUCER), "it", users.pool)
    worker = SyncQueue(users.url(acl.WORKER), "it", users.pool)
    try:
        producer.submit_many([{"n": 0}], ["plain"])
        producer.submit_many(
            [{"n": 1}, {"n": 2}],
            ["urgent", "withdrawn"],
            options=jobpool.JobOptions(priority=9, fairness_key="tenant-a"),
        )
        assert producer.stats().waiting_by_priority == {"9": 2, "0": 1}
        with pytest.raises(NoPermissionError):
            users.client(acl.PRODUCER).lrange(keys.fair(9, "tenant-a"), 0, -1)
        assert worker.job("withdrawn").priority == 9
        assert worker.cancel(["withdrawn"]) == {"withdrawn": "cancelled"}
        assert [job.id for job in worker.fetch("w1", 5, 0)] == ["urgent", "plain"]
        assert not [entry for entry in users.denials() if entry["username"].endswith(".worker")]
        assert [entry for entry in users.denials() if entry["context"] != "toplevel"] == []
    finally:
        producer.close()
        worker.close()


def test_the_operator_samples_the_memory_of_the_queue_it_administers(redis_server, pool_name):
    """jobpool_redis_* (the alerts on Redis memory and Redis down) come from QueueAdmin.memory."""
    from jobpool.controller.credentials import QueueAdmin

    async def sample(url: str):
        admin = QueueAdmin(url)
        try:
            return await admin.memory()
        finally:
            await admin.close()

    plain = redis_sync.Redis.from_url(redis_server.url)
    before = plain.config_get("maxmemory")["maxmemory"]
    plain.config_set("maxmemory", 512 * 2**20)
    try:
        reachable, (used, maximum) = asyncio.run(sample(redis_server.url))
        assert reachable and 0 < used < maximum == 512 * 2**20
    finally:
        plain.config_set("maxmemory", before)
    assert asyncio.run(sample("redis://127.0.0.1:1/0")) == (False, None)
    # an admin user allowed ACL SETUSER but not INFO: reachable, memory unknown (no false "down")
    plain.execute_command("ACL", "SETUSER", f"admin-{pool_name}", "on", ">pw", "+acl", "+ping")
    try:
        host = redis_server.url.split("://", 1)[1]
        assert asyncio.run(sample(f"redis://admin-{pool_name}:pw@{host}")) == (True, None)
    finally:
        plain.execute_command("ACL", "DELUSER", f"admin-{pool_name}")
        plain.close()
