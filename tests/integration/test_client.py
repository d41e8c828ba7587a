"""The SDK, `jobpool.Client(queue_url, namespace, pool)`, with a real worker process."""
from __future__ import annotations

import asyncio

import pytest
import redis

import jobpool
from jobpool import PayloadTooLarge, QueueError, QueueFull


def test_submit_result_and_status_through_the_sdk(redis_server, pool_name, spawn_worker):
    spawn_worker(handler="tests.integration.handlers:echo", concurrency=4)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        job_id = client.submit({"n": 1})
        assert client.submit({"n": 1}, id="fixed") == "fixed"
        assert client.submit({"n": 2}, id="fixed") == "fixed"      # known id: not enqueued again
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


def test_overlapping_async_submits_travel_together_and_each_gets_its_own_id(redis_server,
                                                                            pool_name):
    async def scenario():
        async with jobpool.AsyncClient(redis_server.url, "it", pool_name) as client:
            await client.submit(0)
            calls = function_calls(redis_server.url)
            ids = await asyncio.gather(*(client.submit(n) for n in range(100)),
                                       client.submit("given", id="fixed"),
                                       client.submit("again", id="fixed"))
            round_trips = function_calls(redis_server.url) - calls
            assert round_trips <= 5, f"{round_trips} function calls for 102 overlapping submits"
            assert len(set(ids[:100])) == 100 and ids[100:] == ["fixed", "fixed"]
            assert (await client.status()).submitted == 1 + 100 + 1   # a known id: once
            await client.queue.delete_all()
    asyncio.run(scenario())


def test_an_overlapping_submit_over_the_limit_fails_alone(redis_server, pool_name, queue):
    queue.configure(max_length=None, max_payload_bytes=64)

    async def scenario():
        async with jobpool.AsyncClient(redis_server.url, "it", pool_name) as client:
            outcomes = await asyncio.gather(
                *(client.submit("z" * 70 if n == 5 else n) for n in range(20)),
                client.submit({"n": float("nan")}), return_exceptions=True)
            refused = outcomes.pop(5)
            assert isinstance(refused, PayloadTooLarge)
            assert str(refused) == ("job 0: the payload is 72 bytes, over the pool's limit of 64 "
                                    "bytes (spec.queue.maxPayloadBytes); nothing was submitted")
            assert isinstance(outcomes[-1], QueueError) and "not JSON" in str(outcomes[-1])
            assert all(isinstance(job_id, str) for job_id in outcomes[:-1])
            assert (await client.status()).submitted == 19
            await client.queue.delete_all()
    asyncio.run(scenario())


def test_the_sync_client_reports_a_full_queue_and_a_payload_over_the_limit(redis_server,
                                                                          pool_name, queue):
    queue.configure(max_length=2, max_payload_bytes=64)
    with jobpool.Client(redis_server.url, "it", pool_name) as client:
        assert client.submit(1, id="a") == "a"
        assert client.submit(1, id="a") == "a"          # known: not enqueued again
        with pytest.raises(PayloadTooLarge, match="^job 0: the payload is 72 bytes"):
            client.submit("z" * 70)
        redis.Redis.from_url(redis_server.url).script_flush()   # as after a Redis restart
        client.submit(2)
        with pytest.raises(QueueFull, match="maxLength"):
            client.submit(3, wait=False)
        with pytest.raises(QueueError, match="^job 0: id must be a non-empty string"):
            client.submit(4, id="")
        assert client.status().submitted == 2
        client._run(client._async.queue.delete_all())
