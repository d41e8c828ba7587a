"""What one pool's credentials can still do to the queue, on a real redis-server: no INFO, no
SELECT; the operator's pass (queue.upkeep, with the admin's connection) stores the memory
sample submits check (the library's sample_memory), bounds what it reads, and undoes the wedges
a pool's user could cause. Each test of "what a producer can still do" shows that and no more
(README, "Security and tenancy")."""

from __future__ import annotations

import time

import pytest
import redis as redis_sync
from redis.exceptions import NoPermissionError

from jobpool.queue import QueueError, QueueFull, acl, connection
from jobpool.queue.keys import GROUP, PoolKeys
from jobpool.queue.redis.fields import MEMORY
from jobpool.queue.upkeep import MAX_WORKERS
from tests.helpers import SyncQueue
from tests.integration.queue.test_acl import users  # noqa: F401 (the fixture)

MAX_ID = "18446744073709551615-18446744073709551615"


@pytest.fixture
def producer(users):
    q = SyncQueue(users.url(acl.PRODUCER), "it", users.pool)
    yield q
    q.close()


@pytest.mark.parametrize("role", acl.ROLES)
def test_tenants_run_no_info_and_no_select(users, role):
    client = users.client(role)
    for command in (
        ("INFO",),
        ("INFO", "memory"),
        ("INFO", "memory", "everything"),
        ("INFO", "server"),
        ("SELECT", "1"),
        ("SELECT", "0"),
    ):
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)
    # a URL that names another db: its users may SELECT (and deletion then scans every db)
    rules = acl.user_rules("it", users.pool, role, ("pw",), select=True)
    assert "+select" in rules and rules.index("+select") > rules.index("-@all")
    assert connection.names_a_db("redis://h:6379/2") and not connection.names_a_db("redis://h:6379/0")
    assert not connection.names_a_db("redis://h:6379") and connection.names_a_db(
        "redis+sentinel://s:26379/m/3"
    )


def test_on_a_url_naming_a_db_users_may_select_and_deletion_scans_every_db(redis_server, pool_name):
    url = connection.with_db(redis_server.url, 2)
    assert connection.names_a_db(url) and connection.with_db(url, 0).endswith("/0")
    name = acl.user_name("it", pool_name, acl.WORKER)
    admin = SyncQueue(url, "it", pool_name)
    admin.loop.run_until_complete(
        acl.apply_user(admin.queue.redis, acl.PoolUser("it", pool_name, acl.WORKER, ("pw",)), select=True)
    )
    try:
        worker = SyncQueue(acl.user_url(url, name, "pw"), "it", pool_name)
        worker.submit_many([{"n": 1}])  # connects with SELECT 2
        worker.close()
        client = redis_sync.Redis.from_url(acl.user_url(url, name, "pw"))
        client.execute_command("SELECT", "5")
        client.set(PoolKeys("it", pool_name).key("hidden"), "x")  # its own tag, another db
        admin.delete_all()
        server = redis_sync.Redis.from_url(redis_server.url)
        for db in (2, 5):
            server.execute_command("SELECT", db)
            assert server.keys(PoolKeys("it", pool_name).scan_pattern) == [], db
    finally:
        admin.loop.run_until_complete(acl.delete_users(admin.queue.redis, "it", pool_name))
        admin.close()


def test_submits_are_refused_near_maxmemory_by_the_operators_sample(users, queue, producer):
    admin = redis_sync.Redis.from_url(users.server.url)
    queue.stats(), producer.stats()  # their connections count as used memory
    used = int(admin.info("memory")["used_memory"])
    try:
        admin.config_set("maxmemory", int(used / 0.93))  # above 90%: submits stop, writes do not
        assert queue.upkeep() == ()  # the operator's pass publishes the sample
        with pytest.raises(QueueFull, match="memory is nearly full"):
            producer.submit_many([{"n": 1}])
        admin.config_set("maxmemory", 8 * 2**30)
        queue.upkeep()
        assert len(producer.submit_many([{"n": n} for n in range(3)])) == 3
        # between two samples the submits' own estimate is added
        assert int(admin.hget(PoolKeys("it", users.pool).memory, MEMORY.added)) > 3 * 200
        assert users.denials() == []  # the producer never tried INFO
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()


def test_a_forged_maximal_stream_id_is_undone_by_the_operators_pass(users, queue, producer):
    """A producer can: XADD an entry of any id and fields to the pool's stream. The largest id
    stops every later submit until the operator's next pass removes it."""
    k = PoolKeys("it", users.pool)
    producer.submit_many([{"n": 1}], ["before"])
    users.client(acl.PRODUCER).execute_command("XADD", k.stream, MAX_ID, "id", "wedge", "p", "{}")
    with pytest.raises(QueueError, match="exhausted the last possible ID"):
        producer.submit_many([{"n": 2}])
    (repaired,) = queue.upkeep()
    assert "ids the queue never makes" in repaired
    producer.submit_many([{"n": 2}], ["after"])
    assert sorted(job.id for job in queue.fetch("w", 10, 0)) == ["after", "before"]


@pytest.mark.parametrize("position", ["$", "9999999999999-0"])
def test_a_consumer_group_moved_past_waiting_jobs_is_undone_by_the_operators_pass(
    users, queue, producer, position
):
    """A producer can: create the pool's consumer group before the first worker, at any position.
    Jobs it skipped reach the workers after the operator's next pass."""
    k = PoolKeys("it", users.pool)
    client = users.client(acl.PRODUCER)
    client.execute_command("XADD", k.stream, "*", "id", "early", "p", "{}", "a", "0", "t", "0", "r", "0")
    client.execute_command("XGROUP", "CREATE", k.stream, GROUP, position)
    producer.submit_many([{"n": 1}], ["later"])
    skipped = {"early"} if position == "$" else {"early", "later"}
    assert {job.id for job in queue.fetch("w", 10, 0)} == {"later"} - skipped
    assert queue.upkeep()
    assert {job.id for job in queue.fetch("w", 10, 0)} == skipped
    assert queue.upkeep() == ()  # nothing left to repair


def test_a_forged_worker_registry_is_cleared_and_other_pools_are_not_slowed(users, queue, redis_server):
    """A worker's user can fill its pool's worker registry; the operator's pass clears it before
    the stats read walks it (HLEN first), so neither this pool's tick nor another's waits on it."""
    k = PoolKeys("it", users.pool)
    worker = users.client(acl.WORKER)
    other = SyncQueue(redis_server.url, "it", f"calm-{users.pool}"[:63])
    try:
        other.submit_many([{"n": 1}])

        def other_tick() -> float:
            started = time.perf_counter()
            other.upkeep()
            other.stats()
            return time.perf_counter() - started

        calm = sorted(other_tick() for _ in range(20))[10]
        forged = 200_000
        pipe = worker.pipeline(transaction=False)
        for start in range(0, forged, 10_000):
            pipe.hset(
                k.workers,
                mapping={
                    f"w{i}": '{"slots":1,"busy":1,"expiresAt":9999999999}'
                    for i in range(start, start + 10_000)
                },
            )
        pipe.execute()
        started = time.perf_counter()
        (cleared,) = queue.upkeep(full=False)  # what the operator runs before every stats read
        stats = queue.stats()
        tick = time.perf_counter() - started
        assert f"{forged} entries (more than {MAX_WORKERS})" in cleared and stats.workers == ()
        loaded = sorted(other_tick() for _ in range(20))[10]
        print(
            f"\nforged {forged} workers: the pool's tick {tick * 1000:.1f} ms; another pool's tick "
            f"{calm * 1000:.2f} ms before, {loaded * 1000:.2f} ms after (medians of 20)"
        )
    finally:
        other.delete_all()
        other.close()


# -- What a producer can still do inside its pool (README, "Security and tenancy"), one test a line.


def test_a_producer_can_add_stream_entries_and_trim_the_waiting_jobs_with_them(users, queue, producer):
    k = PoolKeys("it", users.pool)
    producer.submit_many([{"n": n} for n in range(3)])
    client = users.client(acl.PRODUCER)
    client.execute_command(
        "XADD", k.stream, "MAXLEN", "0", "*", "id", "x", "p", "{}"
    )  # ACLs see no arguments
    assert queue.stats().waiting == 0
    for command in (
        ("XTRIM", k.stream, "MAXLEN", "0"),
        ("XDEL", k.stream, "0-1"),
        ("DEL", k.stream),
        ("XGROUP", "DESTROY", k.stream, GROUP),
        ("XGROUP", "SETID", k.stream, GROUP, "$"),
    ):
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)


def test_a_producer_can_mark_ids_as_known_so_their_submit_is_skipped(users, queue, producer):
    k = PoolKeys("it", users.pool)
    client = users.client(acl.PRODUCER)
    client.execute_command("SADD", k.live, "batch-0")
    assert producer.submit_many([{"n": 0}], ["batch-0"]) == ["batch-0"]
    assert queue.stats().waiting == 0  # a duplicate as far as the queue knows
    for command in (("SREM", k.live, "batch-0"), ("SMEMBERS", k.live), ("DEL", k.live)):
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)


def test_a_producer_can_raise_the_pools_counters(users, queue):
    k = PoolKeys("it", users.pool)
    client = users.client(acl.PRODUCER)
    client.execute_command("HINCRBY", k.counters, "succeeded", "1000")
    assert queue.stats().succeeded == 1000
    for command in (
        ("HSET", k.counters, "succeeded", "0"),
        ("HDEL", k.counters, "succeeded"),
        ("DEL", k.counters),
    ):
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)


def test_a_producer_can_remove_a_worker_registration_until_its_next_heartbeat(users, queue):
    k = PoolKeys("it", users.pool)
    queue.heartbeat("w-1", [], 4, 0)
    client = users.client(acl.PRODUCER)
    client.execute_command("HDEL", k.workers, "w-1")
    assert queue.stats().workers == ()
    queue.heartbeat("w-1", [], 4, 0)
    assert [w.id for w in queue.stats().workers] == ["w-1"]
    for command in (("HSET", k.workers, "forged", "{}"), ("DEL", k.workers)):
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)


def test_a_producer_can_lower_only_its_own_submits_memory_estimate(users, queue, producer):
    k = PoolKeys("it", users.pool)
    admin = redis_sync.Redis.from_url(users.server.url)
    queue.stats(), producer.stats()
    try:
        admin.config_set("maxmemory", int(int(admin.info("memory")["used_memory"]) / 0.93))
        queue.upkeep()
        client = users.client(acl.PRODUCER)
        client.execute_command("HINCRBY", k.memory, MEMORY.added, str(-(2**40)))
        assert producer.submit_many([{"n": 1}])  # past the check, as its own XADD would be
        queue.upkeep()  # the operator's next sample undoes it
        with pytest.raises(QueueFull, match="memory is nearly full"):
            producer.submit_many([{"n": 2}])
        for command in (
            ("HSET", k.memory, MEMORY.sample, "0:0:0"),
            ("HDEL", k.memory, MEMORY.sample),
            ("DEL", k.memory),
        ):
            with pytest.raises(NoPermissionError):
                client.execute_command(*command)
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()


def test_a_producer_reads_results_and_counts_but_no_payloads_or_errors(users, queue, producer):
    k = PoolKeys("it", users.pool)
    _done, _dead = producer.submit_many([{"n": 1}, {"n": 2}], ["done", "dead"])
    first, second = sorted(queue.fetch("w", 2, 0), key=lambda job: job.id != "done")
    queue.ack_many([(first, {"ok": True})])
    queue.fail(second, "secret error text", max_attempts=1, backoff=0, max_backoff=0)
    producer.submit_many([{"secret": "payload"}], ["waiting"])
    client = users.client(acl.PRODUCER)
    assert client.execute_command("XREAD", "STREAMS", k.results, "0")  # results, and result:<id>
    assert producer.result("done").result == {"ok": True}
    stats = producer.stats()
    assert (stats.waiting, stats.dead_letter, stats.succeeded) == (1, 1, 1)
    for command in (
        ("XREAD", "STREAMS", k.stream, "0"),
        ("XRANGE", k.stream, "-", "+"),
        ("XREAD", "STREAMS", k.dead, "0"),
        ("XRANGE", k.dead, "-", "+"),
        ("XREADGROUP", "GROUP", GROUP, "thief", "STREAMS", k.stream, ">"),
        ("HGET", k.delayed_jobs, "x"),
        ("XADD", k.results, "*", "id", "forged", "r", "1", "a", "1"),
    ):
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)
