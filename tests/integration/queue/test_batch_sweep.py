"""The operator's edge of a batch's cancel (spec.jobs.cancel) against a real Redis: the feeder
stops first, then every job of the batch is withdrawn or asked to stop (the decision is
tests/unit/controller/test_plan.py's; the whole loop is tests/e2e/test_operator_batch.py's)."""

from __future__ import annotations

import asyncio

from jobpool.api import JobPoolSpec
from jobpool.controller.builders import PoolRef
from jobpool.controller.plan import queue_settings
from jobpool.controller.pool_queue import PoolQueue
from jobpool.queue import open_queue


def test_a_sweep_stops_the_feeder_and_cancels_every_fed_job_of_the_batch(redis_server, pool_name):
    spec = JobPoolSpec.model_validate(
        {
            "worker": {"image": "registry.example/w:1", "handler": "m:f"},
            "queue": {"maxLength": 30},
            "jobs": {"range": {"count": 2500}},
        }
    )

    async def scenario():
        pool = PoolQueue(
            None, PoolRef(pool_name, "it", "uid"), open_queue, redis_server.url, on_progress=lambda: None
        )
        assert (await pool.connect(spec)) == (None, False)
        await pool.configure(spec, queue_settings(spec))  # maxLength 30: the feeder waits for room
        queue = pool.queue
        try:
            await queue.submit(1, "not-of-the-batch")
            await pool.feed(spec, "digest", 0, 2500)
            while (await queue.stats()).waiting < 30:  # full: the feeder waits for room
                await asyncio.sleep(0.05)
            foreign, running = await queue.fetch("a-worker", 2, 0)
            assert (foreign.id, running.id) == ("not-of-the-batch", f"{pool_name}-0")
            await pool.sweep("digest", 0, 2500)
            assert pool.feeder is None, "the feeder stops before the sweep starts"
            while pool.sweep_progress("digest") < 2500:
                await asyncio.sleep(0.05)
            stats = await queue.stats()
            assert (stats.waiting, stats.in_flight, stats.cancelled) == (0, 2, stats.submitted - 2)
            assert (await queue.job(running.id)).state == "running"  # until its worker's heartbeat
            assert (await queue.heartbeat("a-worker", [foreign, running], 2, 2)) == [running.token]
            await asyncio.sleep(0.3)
            assert (await queue.stats()).submitted == stats.submitted, "nothing is fed after the sweep"
        finally:
            await pool.close()
            await queue.delete_all()
            await queue.close()

    asyncio.run(scenario())
