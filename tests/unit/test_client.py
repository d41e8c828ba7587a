"""The sync SDK's choice of submit path: the blocking one where the queue has it, else the async one."""

from __future__ import annotations

from typing import Any

import jobpool
from jobpool import client as client_module
from jobpool.queue import Queue, RedisStreamsQueue
from jobpool.queue.base import BlockingSubmit


def test_blocking_submit_is_a_capability_of_the_redis_queue_not_of_the_protocol():
    assert issubclass(RedisStreamsQueue, BlockingSubmit)
    assert not issubclass(Queue, BlockingSubmit) and not hasattr(Queue, "submit_blocking")


class AsyncOnlyQueue:
    """A queue without the blocking submit: what `submit` is given is recorded."""

    def __init__(self) -> None:
        self.submitted: list[tuple[Any, str | None, str | None, str]] = []

    async def submit(
        self, payload: Any, id: str | None = None, *, task=None, options=None, due="", wait=True
    ):
        self.submitted.append((payload, id, task, due))
        return id or "generated"

    async def close(self) -> None:
        pass


def test_a_queue_without_the_blocking_submit_is_given_the_job_through_the_async_path(monkeypatch):
    queue = AsyncOnlyQueue()
    monkeypatch.setattr(client_module, "open_queue", lambda *args, **kwargs: queue)
    with jobpool.Client("redis://localhost:1/0", "default", "thumbs") as client:
        assert client.submit({"n": 1}) == "generated"
        assert client.submit({"n": 2}, id="fixed", task="resize", delay=2) == "fixed"
    assert queue.submitted == [({"n": 1}, None, None, ""), ({"n": 2}, "fixed", "resize", "+2000")]


class BlockingQueue(AsyncOnlyQueue, BlockingSubmit):
    """A queue whose blocking submit succeeds for ids it is told to take, and leaves the rest."""

    def submit_blocking(self, payload, id=None, *, task=None, options=None, due="", wait=True):
        return (id, True) if id == "taken" else ("chosen", False)


def test_the_blocking_submit_is_used_where_the_queue_has_it_and_its_id_kept_otherwise(monkeypatch):
    queue = BlockingQueue()
    monkeypatch.setattr(client_module, "open_queue", lambda *args, **kwargs: queue)
    with jobpool.Client("redis://localhost:1/0", "default", "thumbs") as client:
        assert client.submit(1, id="taken") == "taken"
        assert client.submit(2) == "chosen"  # left to the async path with the id it chose
    assert queue.submitted == [(2, "chosen", None, "")]
