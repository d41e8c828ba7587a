"""Memory is bounded by design: against a redis-server of its own with `maxmemory` and
`noeviction`, a submit is refused with QueueFull naming the limit before Redis refuses writes,
workers keep acknowledging, and real workers keep at most `--max-results` results and
`--max-dead-letters` dead letters."""

from __future__ import annotations

import pytest
import redis

from jobpool.queue import QueueFull
from jobpool.queue.redis.submit import SUBMIT_MEMORY_SHARE
from tests.fixtures.redis import running_redis
from tests.helpers import SyncQueue, wait_until

MAXMEMORY = 20 * 2**20


@pytest.fixture(scope="module")
def small_redis():
    """A redis-server limited to 20 MiB that refuses writes beyond it (noeviction)."""
    with running_redis("jobpool-small-redis-") as server:
        client = redis.Redis.from_url(server.url)
        client.config_set("maxmemory", MAXMEMORY)
        client.config_set("maxmemory-policy", "noeviction")
        client.close()
        yield server


@pytest.fixture
def small_queue(small_redis, pool_name):
    q = SyncQueue(small_redis.url, "it", pool_name)
    yield q
    q.delete_all()
    q.close()


def memory(url: str) -> tuple[int, int]:
    client = redis.Redis.from_url(url)
    try:
        info = client.info("memory")
    finally:
        client.close()
    return info["used_memory"], info["maxmemory"]


def submit_until_full(queue: SyncQueue) -> tuple[list[str], QueueFull]:
    """Chunks of 1,000 payloads of ~1 KiB until the queue refuses one."""
    accepted: list[str] = []
    for chunk in range(200):
        try:
            accepted += queue.submit_many(
                [{"n": chunk * 1000 + i, "pad": "x" * 1000} for i in range(1000)], wait=False
            )
        except QueueFull as exc:
            accepted += exc.submitted_ids
            return accepted, exc
    raise AssertionError(f"200,000 jobs fitted in maxmemory {MAXMEMORY}")


def test_a_full_redis_refuses_submits_naming_maxmemory_and_workers_still_finish_every_job(
    small_redis, small_queue, spawn_worker
):
    accepted, refused = submit_until_full(small_queue)
    message = str(refused)
    assert "maxmemory" in message and "\n" not in message, message
    assert "submitted 0 of 1000" in message
    used, limit = memory(small_redis.url)
    assert used < limit, "the submit was refused only after Redis itself was full"
    assert len(accepted) > 10_000
    assert small_queue.stats().waiting == len(accepted)

    # Redis itself past its maxmemory: its own refusal is a QueueFull naming the limit too
    client = redis.Redis.from_url(small_redis.url)
    client.config_set("maxmemory", used - 2**20)
    try:
        with pytest.raises(QueueFull, match="maxmemory"):
            small_queue.configure(max_length=5)
        # ... and workers still fetch and acknowledge (acks start with XACK, which frees)
        spawn_worker(url=small_redis.url, handler="tests.integration.handlers:noop", concurrency=50)
        wait_until(
            lambda: small_queue.stats().succeeded == len(accepted),
            timeout=60,
            what=f"{len(accepted)} jobs to succeed on a Redis past its maxmemory",
        )
    finally:
        client.config_set("maxmemory", MAXMEMORY)
        client.close()
    stats = small_queue.stats()
    assert (stats.waiting, stats.in_flight, stats.delayed, stats.dead_letter) == (0, 0, 0, 0)
    assert {r.id for r in small_queue.collect(small_queue.results())} == set(accepted)
    assert len(small_queue.submit_many([1, 2, 3], wait=False)) == 3


def test_submits_stop_at_the_documented_share_of_maxmemory(small_redis, small_queue):
    _, refused = submit_until_full(small_queue)
    used, limit = memory(small_redis.url)
    assert used <= limit * SUBMIT_MEMORY_SHARE < used + 1100 * 1000 + 2**20, (used, limit)
    assert f"{SUBMIT_MEMORY_SHARE:.0%}" in str(refused)


def test_a_worker_keeps_at_most_max_results_dropping_the_oldest(queue, spawn_worker, redis_server):
    ids = queue.submit_many(list(range(300)), [f"job-{n}" for n in range(300)])
    spawn_worker(handler="tests.integration.handlers:echo", concurrency=1, max_results=40)
    wait_until(lambda: queue.stats().succeeded == 300, what="300 jobs to succeed")
    kept = [r.id for r in queue.collect(queue.results())]
    assert len(kept) == 40 and kept == ids[-40:]
    assert queue.result(ids[-1]).result == {"echo": 299}
    assert queue.result(ids[0]) is None
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert len(list(client.scan_iter(match=queue.keys.result_prefix + "*"))) == 40
    finally:
        client.close()


def test_a_worker_keeps_at_most_max_dead_letters_dropping_the_oldest(queue, spawn_worker):
    ids = queue.submit_many(list(range(30)), [f"bad-{n}" for n in range(30)])
    spawn_worker(
        handler="tests.integration.handlers:poison", concurrency=1, max_attempts=1, max_dead_letters=7
    )
    wait_until(lambda: queue.stats().dead_lettered == 30, what="30 jobs to be dead-lettered")
    stats = queue.stats()
    assert stats.dead_letter == 7
    assert [d.id for d in queue.dead_letters()] == ids[-7:]
    assert queue.replay([ids[0]]) == 0  # dropped: nothing left of it to replay
    assert queue.replay([ids[-1]]) == 1
