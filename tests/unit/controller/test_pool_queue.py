"""One pool's queue in the operator: connecting (no writes), storing its settings, stopping its
feeder and sweeper."""

from __future__ import annotations

import asyncio
import logging

import pytest

from jobpool.controller.builders import PoolRef
from jobpool.controller.plan import queue_settings
from jobpool.controller.pool_queue import PoolQueue
from jobpool.queue import QueueError
from tests.unit.factories import spec

POOL = PoolRef("thumbnails", "media", "uid-1")


def pool_queue(open_queue=None) -> PoolQueue:
    return PoolQueue(None, POOL, open_queue, None, lambda: None)  # type: ignore[arg-type]


class RefusingQueue:
    """A queue whose user may not write the pool's settings (an ACL without HSET)."""

    def __init__(self, url: str = "") -> None:
        self.url, self.configures = url, 0

    async def configure(self, **settings):
        self.configures += 1
        raise QueueError(f"NOPERM User producer has no permissions to run the 'hset' command at {self.url}")

    async def close(self) -> None:
        pass


def test_a_refused_configure_is_logged_once_with_the_pool_and_without_the_password(caplog):
    url = "redis://:s3cret@cache.internal:6379/0"
    queue = RefusingQueue(url)
    pool = pool_queue(lambda url, namespace, name: queue)

    async def scenario():
        for _ in range(3):
            assert await pool.connect(spec(queue={"url": url})) == (None, False)
            await pool.configure(spec(queue={"url": url}), queue_settings(spec(queue={"url": url})))

    with caplog.at_level(logging.WARNING, logger="jobpool.operator"):
        asyncio.run(scenario())
    assert queue.configures == 3  # tried again on every pass, said once
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("media/thumbnails: cannot store the pool's settings")
    assert "NOPERM" in warnings[0] and "s3cret" not in warnings[0]
    assert warnings[0].endswith("at redis://:***@cache.internal:6379/0")


def test_a_configure_that_fails_again_after_succeeding_is_logged_again(caplog):
    class FlakyQueue(RefusingQueue):
        async def configure(self, **settings):
            self.configures += 1
            if self.configures != 2:
                raise QueueError("NOPERM")

    pool = pool_queue(lambda url, namespace, name: FlakyQueue())

    async def connect_and_configure(pool_spec):
        await pool.connect(pool_spec)
        await pool.configure(pool_spec, queue_settings(pool_spec))

    async def scenario():
        await connect_and_configure(spec(queue={"url": "redis://q:6379/0"}))
        await connect_and_configure(spec(queue={"url": "redis://q:6379/0"}))  # stored
        await connect_and_configure(spec(queue={"url": "redis://q:6379/0", "maxLength": 5}))  # new, refused

    with caplog.at_level(logging.WARNING, logger="jobpool.operator"):
        asyncio.run(scenario())
    assert sum("cannot store the pool's settings" in r.getMessage() for r in caplog.records) == 2


async def slow_to_stop() -> None:
    """A feeder or sweeper that takes a moment to end once cancelled."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(0.2)
        raise


@pytest.mark.parametrize("task, stop", [("feeder", "stop_feeding"), ("sweeper", "stop_sweeping")])
def test_stopping_the_feeder_or_sweeper_waits_for_it_and_forgets_it(task, stop):
    async def scenario():
        pool = pool_queue()
        running = asyncio.create_task(slow_to_stop())
        setattr(pool, task, running)
        await asyncio.sleep(0)
        await getattr(pool, stop)()
        assert running.cancelled() and getattr(pool, task) is None

    asyncio.run(scenario())


@pytest.mark.parametrize("task, stop", [("feeder", "stop_feeding"), ("sweeper", "stop_sweeping")])
def test_a_caller_cancelled_while_it_waits_for_the_feeder_or_sweeper_is_cancelled(task, stop):
    async def scenario():
        pool = pool_queue()
        setattr(pool, task, asyncio.create_task(slow_to_stop()))
        await asyncio.sleep(0)
        stopping = asyncio.create_task(getattr(pool, stop)())
        await asyncio.sleep(0.05)  # it waits for the task to end
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        assert stopping.cancelled()

    asyncio.run(scenario())
