"""The SDK, `jobpool.Client(queue_url, namespace, pool)`, with a real worker process."""

from __future__ import annotations

import asyncio
import itertools

import pytest
import redis

import jobpool
from jobpool import PayloadTooLarge, QueueError, QueueFull


def test_submit_result_and_status_through_the_sdk(redis_server, pool_name, spawn_worker):
    spawn_worker(handler="tests.integration.handlers:echo", concurrency=4)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        job_id = client.submit({"n": 1})
        assert client.submit({"n": 1}, id="fixed") == "fixed"
        assert client.submit({"n": 2}, id="fixed") == "fixed"  # known id: not enqueued again
        ids = client.submit_many([{"n": n} for n in range(10)])
        result = client.result(job_id, timeout=15)
        assert (result.id, result.result, result.attempts) == (job_id, {"echo": {"n": 1}}, 1)
        assert client.result("fixed", timeout=15).result == {"echo": {"n": 1}}
        assert [client.result(i, timeout=15).result["echo"]["n"] for i in ids] == list(range(10))
        status = client.status()
        assert (status.submitted, status.succeeded, status.backlog) == (12, 12, 0)
        assert len(client.results()) == 12
        assert client.result("never-submitted") is None
        client.status()  # still usable


def test_the_sync_client_follows_results_as_jobs_finish(redis_server, pool_name, spawn_worker):
    spawn_worker(handler="tests.integration.handlers:echo", concurrency=2)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        first = client.submit({"n": 0})
        assert client.result(first, timeout=15) is not None
        following = client.results(follow=True)
        assert next(following).id == first  # the results kept, then the new ones
        later = client.submit_many([{"n": 1}, {"n": 2}])
        followed = list(itertools.islice(following, 2))  # waits for them
        assert sorted(r.id for r in followed) == sorted(later)
        assert {r.result["echo"]["n"] for r in followed} == {1, 2}
        following.close()
        assert [r.id for r in client.results()] == [first, *(r.id for r in followed)]
        assert client.status().submitted == 3  # still usable


def test_the_async_client(redis_server, pool_name):
    async def scenario():
        async with jobpool.AsyncClient(redis_server.url, "it", pool_name) as client:
            ids = await client.submit_many([1, 2])
            assert (await client.status()).waiting == 2
            assert await client.result(ids[0], timeout=0.05) is None
            await client.queue.delete_all()

    asyncio.run(scenario())


def function_calls(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return client.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0)
    finally:
        client.close()


def test_overlapping_async_submits_travel_together_and_each_gets_its_own_id(redis_server, pool_name):
    async def scenario():
        async with jobpool.AsyncClient(redis_server.url, "it", pool_name) as client:
            await client.submit(0)
            calls = function_calls(redis_server.url)
            ids = await asyncio.gather(
                *(client.submit(n) for n in range(100)),
                client.submit("given", id="fixed"),
                client.submit("again", id="fixed"),
            )
            round_trips = function_calls(redis_server.url) - calls
            assert round_trips <= 5, f"{round_trips} function calls for 102 overlapping submits"
            assert len(set(ids[:100])) == 100 and ids[100:] == ["fixed", "fixed"]
            assert (await client.status()).submitted == 1 + 100 + 1  # a known id: once
            await client.queue.delete_all()

    asyncio.run(scenario())


def test_an_overlapping_submit_over_the_limit_fails_alone(redis_server, pool_name, queue):
    queue.configure(max_length=None, max_payload_bytes=64)

    async def scenario():
        async with jobpool.AsyncClient(redis_server.url, "it", pool_name) as client:
            outcomes = await asyncio.gather(
                *(client.submit("z" * 70 if n == 5 else n) for n in range(20)),
                client.submit({"n": float("nan")}),
                return_exceptions=True,
            )
            refused = outcomes.pop(5)
            assert isinstance(refused, PayloadTooLarge)
            assert str(refused) == (
                "job 0: the payload is 72 bytes, over the pool's limit of 64 "
                "bytes (spec.queue.maxPayloadBytes); nothing was submitted"
            )
            assert isinstance(outcomes[-1], QueueError) and "not JSON" in str(outcomes[-1])
            assert all(isinstance(job_id, str) for job_id in outcomes[:-1])
            assert (await client.status()).submitted == 19
            await client.queue.delete_all()

    asyncio.run(scenario())


def test_the_sync_client_reports_a_full_queue_and_a_payload_over_the_limit(redis_server, pool_name, queue):
    queue.configure(max_length=2, max_payload_bytes=64)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        assert client.submit(1, id="a") == "a"
        assert client.submit(1, id="a") == "a"  # known: not enqueued again
        with pytest.raises(PayloadTooLarge, match=r"^job 0: the payload is 72 bytes"):
            client.submit("z" * 70)
        redis.Redis.from_url(redis_server.url).script_flush()  # as after a Redis restart
        client.submit(2)
        with pytest.raises(QueueFull, match="maxLength"):
            client.submit(3, wait=False)
        with pytest.raises(QueueError, match=r"^job 0: id must be a non-empty string"):
            client.submit(4, id="")
        assert client.status().submitted == 2
        client._run(client._async.queue.delete_all())


class Monitor:
    """Every command Redis runs, as MONITOR reports it, with when it was seen (a thread of its own)."""

    def __init__(self, url: str):
        import threading
        import time

        self.lines: list[tuple[float, str]] = []
        self._client = redis.Redis.from_url(url)
        self._monitor = self._client.monitor().__enter__()
        self._clock = time.monotonic

        def read() -> None:
            try:
                while True:
                    command = self._monitor.next_command()
                    self.lines.append((self._clock(), f"{command['client_type']} {command['command']}"))
            except Exception:  # closed
                return

        self._thread = threading.Thread(target=read, daemon=True)
        self._thread.start()

    def since(self, at: float, about: str) -> list[str]:
        """The commands of clients (not of Lua) seen since `at` that name `about`."""
        return [
            line
            for seen, line in list(self.lines)
            if seen >= at and about in line and not line.startswith("lua")
        ]

    def close(self) -> None:
        self._monitor.connection.disconnect()
        self._client.close()


def test_a_waiting_result_blocks_without_polling_and_returns_as_the_job_completes(
    redis_server, pool_name, queue
):
    import threading
    import time

    from tests.helpers import wait_until

    job_id = queue.submit(7, "awaited")
    monitor = Monitor(redis_server.url)
    returned: list = []
    try:
        with jobpool.Client(redis_server.url, "it", pool_name) as client:
            waiter = threading.Thread(
                target=lambda: returned.append((client.result(job_id, timeout=20), time.monotonic()))
            )
            waiter.start()
            wait_until(lambda: monitor.since(0, "BLOCK"), timeout=10, what="the result's blocking read")
            blocked_at = time.monotonic()
            time.sleep(1.0)
            [job] = queue.fetch("a-worker", 1, 0)
            quiet = monitor.since(blocked_at, f"{{jobpool:it/{pool_name}}}")
            completed_at = time.monotonic()
            queue.ack_many([(job, "done")])
            waiter.join(timeout=10)
    finally:
        monitor.close()
    [(result, at)] = returned
    assert (result.id, result.result) == ("awaited", "done")
    assert at - completed_at < 0.1, f"result() returned {at - completed_at:.3f} s after the job completed"
    # the worker's fetch is the only command of a client naming the pool's keys while result() waits
    assert [line for line in quiet if "FCALL" not in line] == [], quiet


def test_a_waiting_result_returns_none_as_soon_as_the_job_is_dead_lettered_or_cancelled(
    redis_server, pool_name, queue
):
    import threading
    import time

    queue.submit(1, "dies")
    queue.submit(2, "withdrawn", due="+3600000")
    [job] = queue.fetch("a-worker", 1, 0)
    ended: dict[str, tuple] = {}

    def wait_for(job_id: str) -> None:  # a sync Client is for one thread
        with jobpool.Client(redis_server.url, "it", pool_name) as own:
            ended[job_id] = (own.result(job_id, timeout=20), time.monotonic())

    waiters = [threading.Thread(target=wait_for, args=(i,)) for i in ("dies", "withdrawn")]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.5)
    ended_at = time.monotonic()
    assert queue.fail(job, "bad input", max_attempts=1, backoff=0, max_backoff=0) == "dead_lettered"
    assert queue.cancel(["withdrawn"]) == {"withdrawn": "cancelled"}
    for waiter in waiters:
        waiter.join(timeout=10)
    assert {i: result for i, (result, _) in ended.items()} == {"dies": None, "withdrawn": None}
    assert all(at - ended_at < 1.0 for _, at in ended.values()), ended
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        started = time.monotonic()  # already ended: no wait at all
        assert (client.result("dies", timeout=20), client.result("withdrawn", timeout=20)) == (None, None)
        assert time.monotonic() - started < 1.0
