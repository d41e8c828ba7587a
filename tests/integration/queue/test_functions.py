"""The queue's server-side code is one Redis Functions library a tenant cannot replace: a pool's
users run its functions (FCALL) and nothing else server-side, a producer cannot run a worker's
function, and a client whose user may not load the library waits for the operator to."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

import jobpool
from jobpool.controller.credentials import CHECK_SECONDS, QueueAdmin
from jobpool.queue import QueueFull, QueueUnavailable, acl, open_queue
from jobpool.queue.keys import PoolKeys
from jobpool.queue.redis import functions, library
from tests.fixtures.redis import running_redis
from tests.helpers import SyncQueue, wait_until
from tests.integration.queue.test_acl import PoolUsers, users  # noqa: F401 (a fixture)

# The attacks measured on redis-server 7.0 with the users of today's release (issue #18): a busy
# loop that first writes (unkillable: every pool gets BUSY), and a script that fills memory past
# maxmemory (a script that has written is not stopped by it).
BUSY = "redis.call('SET', KEYS[1], 'x') while true do end"
FILL = "redis.call('DEL', KEYS[1]) for i = 1, 25 do redis.call('SET', KEYS[1] .. i, string.rep('x', 5242880)) end"
EVIL_LIBRARY = f"#!lua name=evil\nredis.register_function('evil', function(keys) {BUSY} end)"


def tenant_code_commands(own_key: str, dump: bytes) -> list[tuple]:
    """Every way to run or replace server-side code, each aimed at the pool's own keys."""
    commands = []
    for source in (BUSY, FILL, "redis.log(redis.LOG_WARNING, 'forged line')"):
        sha = hashlib.sha1(source.encode()).hexdigest()
        commands += [
            ("SCRIPT", "LOAD", source),
            ("EVAL", source, 1, own_key),
            ("EVALSHA", sha, 1, own_key),
            ("EVAL_RO", source, 1, own_key),
            ("EVALSHA_RO", sha, 1, own_key),
        ]
    return [
        *commands,
        ("FUNCTION", "LOAD", EVIL_LIBRARY),
        ("FUNCTION", "LOAD", "REPLACE", EVIL_LIBRARY),
        ("FUNCTION", "DELETE", library.name()),
        ("FUNCTION", "FLUSH"),
        ("FUNCTION", "RESTORE", dump),
        ("FUNCTION", "RESTORE", dump, "REPLACE"),
        ("FUNCTION", "KILL"),
        ("SCRIPT", "KILL"),
        ("SCRIPT", "FLUSH"),
        ("FUNCTION", "DUMP"),
        ("FUNCTION", "LIST", "WITHCODE"),
    ]


@pytest.mark.parametrize("role", acl.ROLES)
def test_a_pools_users_run_no_code_of_their_own_while_another_pool_runs_jobs(
    users, redis_server, role, spawn_worker, tmp_path
):
    """Fails on the release before the library: its users held SCRIPT LOAD and EVALSHA."""
    other = SyncQueue(redis_server.url, "it", f"b-{users.pool}"[:63])
    worker = spawn_worker(pool=other.pool, handler="tests.integration.handlers:echo", concurrency=4)
    admin = redis_sync.Redis.from_url(redis_server.url)
    client = users.client(role)
    own_key = PoolKeys("it", users.pool).stream
    try:
        before = other.submit_many([{"n": n} for n in range(20)])
        for command in tenant_code_commands(own_key, admin.function_dump()):
            with pytest.raises(NoPermissionError):
                client.execute_command(*command)
            other.submit_many([{"during": str(command[:2])}])
        after = other.submit_many([{"n": n} for n in range(20)])
        for job_id in before + after:
            assert other.result(job_id, timeout=20) is not None
        assert admin.function_list(library="evil") == [] and admin.function_list(library=library.name())
        assert "forged line" not in (redis_server.directory / "redis.log").read_text()
    finally:
        worker.send(15)
        worker.wait(timeout=20)
        other.delete_all()
        other.close()


WORKER_FUNCTIONS = {
    functions.Fetch: dict(consumer="thief", count=10, visibility_ms=0, reclaim_interval_ms=100),
    functions.Ack: dict(job_ids=["x"], blob="0-1\0thief\0x\01\0null", result_ttl_ms=1000, results_cap=10),
    functions.Fail: dict(
        entry_id="0-1",
        consumer="thief",
        id="x",
        attempts=1,
        payload=b"{}",
        error="e",
        outcome="dead_lettered",
        delay_ms=0,
        replayed=False,
        dead_letter_cap=10,
        task="",
        options="",
    ),
    functions.Progress: dict(consumer="real-worker", entry_id="0-1", id="x", value="1"),
    functions.Release: dict(consumer="real-worker", entry_ids=["0-1"]),
    functions.Heartbeat: dict(consumer="thief", info="{}", tasks=["forged"], expires_ms=2**50, entry_ids=[]),
    functions.Unregister: dict(consumer="real-worker"),
    functions.Replay: dict(ids=None),
    functions.Purge: dict(ids=None),
    functions.TrimResults: dict(oldest=[("0-1", "x")]),
    functions.JobLookup: dict(id="x", scan_limit=10),
    functions.Cancel: dict(ids=["x"], scan_limit=10),
}


def test_a_producer_cannot_run_a_workers_function_through_fcall(users, queue):
    """Key permissions refuse what they can (a worker's function names keys a producer does not
    hold); the functions refuse the rest before they write (an unregister names only keys a
    producer holds, for the status it reads)."""
    producer = users.client(acl.PRODUCER)
    pool = PoolKeys("it", users.pool)
    queue.submit_many([{"n": 1}])
    queue.heartbeat("real-worker", [], 1, 0)
    before = queue.stats()
    refused_by_function = []
    for function, call in WORKER_FUNCTIONS.items():
        with pytest.raises(NoPermissionError) as denied:
            producer.execute_command(*function.command(pool, **call))
        if "pool worker's function" in str(denied.value):
            refused_by_function.append(function.NAME)
    # fetch and heartbeat (cancel-requests): their keys are refused
    assert "unregister" in refused_by_function
    # the ACL refused the FCALLs themselves (the producer does not hold their keys), and the functions'
    # own checks refused before any command ran inside them
    assert users.denials() and all(entry["context"] == "toplevel" for entry in users.denials())
    after = queue.stats()
    assert (after.waiting, after.in_flight, after.dead_letter, [w.id for w in after.workers]) == (
        before.waiting,
        before.in_flight,
        before.dead_letter,
        ["real-worker"],
    )
    # what a producer may run, it runs
    assert producer.execute_command(*functions.Stats.command(pool, now_ms=0, horizon_ms=60000))


def test_a_client_whose_user_may_not_load_the_library_waits_for_it_and_never_evals(spawn_worker, pool_name):
    with running_redis() as server:
        tenants = PoolUsers(server, "it", pool_name, load_library=False)
        worker = spawn_worker(url=tenants.url(acl.WORKER), handler="tests.integration.handlers:echo")
        producer = open_queue(tenants.url(acl.PRODUCER), "it", pool_name)
        try:
            with pytest.raises(QueueUnavailable) as waiting:
                asyncio.run(producer.submit_many([{"n": 1}]))
            assert "\n" not in str(waiting.value)
            assert f"no jobpool functions library {library.name()}" in str(waiting.value)
            wait_until(lambda: "may not load it" in worker.log(), what="the worker to say why it waits")
            assert worker.alive()
            # the operator loads it: both go on, the worker without a restart
            assert asyncio.run(_load(server.url)) == 1
            with jobpool.Client(tenants.url(acl.PRODUCER), "it", pool_name) as client:
                job_id = client.submit({"n": 2})
                assert client.result(job_id, timeout=20) is not None
            stats = redis_sync.Redis.from_url(server.url).info("commandstats")
            assert not {"cmdstat_eval", "cmdstat_evalsha", "cmdstat_script|load"} & set(stats)
            assert worker.log().count("may not load it") <= 3  # backing off, not a line per try
        finally:
            asyncio.run(producer.close())
            worker.send(15)
            worker.wait(timeout=20)


def test_a_client_whose_user_may_load_the_library_loads_it(pool_name):
    """The single-user setups (make demo, the quick start) need no operator."""
    with running_redis() as server:
        with jobpool.Client(server.url, "it", pool_name) as client:
            client.submit({"n": 1})
            assert client.status().submitted == 1
        admin = redis_sync.Redis.from_url(server.url)
        assert [entry[1] for entry in admin.function_list()] == [library.name().encode()]


async def _load(url: str) -> int:
    admin = aioredis.from_url(url)
    try:
        return await library.load_everywhere(admin)
    finally:
        await admin.aclose()


def test_a_submitter_that_may_not_read_info_goes_by_the_pools_stored_memory_sample(
    users, redis_server, queue
):
    """Functions run with the caller's ACL: INFO inside submit is the submitter's to read. Without
    it, the sample a user that may read INFO stored (the operator, through sample_memory) decides."""
    admin = redis_sync.Redis.from_url(redis_server.url)
    name = acl.user_name("it", users.pool, acl.PRODUCER)
    admin.execute_command("ACL", "SETUSER", name, "-info")
    producer = SyncQueue(users.url(acl.PRODUCER), "it", users.pool)
    try:
        assert len(producer.submit_many([{"n": 1}])) == 1  # no sample yet: Redis's own limit
        assert queue.sample_memory().max_memory == 0
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", int(used * 1.05))  # past the 90% submits stop at
        sample = queue.sample_memory()
        assert sample.max_memory == int(used * 1.05)
        with pytest.raises(QueueFull, match="Redis memory is nearly full"):
            producer.submit_many([{"n": 2}])
        admin.config_set("maxmemory", 0)
        queue.sample_memory()
        assert len(producer.submit_many([{"n": 3}])) == 1
        assert users.denials() == []  # INFO was never tried
    finally:
        admin.config_set("maxmemory", 0)
        producer.close()


def test_the_operators_credential_pass_loads_the_library_again_where_it_is_missing(pool_name):
    """Functions are persisted (a restart keeps them), but a replaced server has none: the pass
    that applies the pools' users checks the library too, at most every CHECK_SECONDS."""
    with running_redis() as server:
        raw = redis_sync.Redis.from_url(server.url)

        async def passes():
            admin = QueueAdmin(server.url)
            user = acl.PoolUser("it", pool_name, acl.WORKER, ("pw",))
            try:
                await admin.apply(user)
                assert raw.function_list(library=library.name())
                server.restart()  # AOF: the library survives
                await admin.apply(user)  # (the users are re-applied)
                assert raw.function_list(library=library.name())
                raw.function_delete(library.name())  # as on a replaced server
                await admin.apply(user)
                assert raw.function_list(library=library.name()) == []  # checked a moment ago
                admin.library_checked_at -= CHECK_SECONDS
                await admin.apply(user)
                assert raw.function_list(library=library.name())
            finally:
                await admin.close()

        asyncio.run(passes())
