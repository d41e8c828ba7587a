"""The SDK, `jobpool.Client(queue_url, namespace, pool)`, with a real worker process."""
from __future__ import annotations

import asyncio

import jobpool


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
