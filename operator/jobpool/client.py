"""The Python SDK: `jobpool.Client(queue_url, namespace, pool)` and its async twin.

client = jobpool.Client("redis://localhost:6379/0", "default", "thumbnails")
job_id = client.submit({"src": "a.png"})
print(client.result(job_id, timeout=30))
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import Any, Literal, cast, overload

from .names import check_name
from .queue import DeadJob, JobOptions, JobState, Queue, QueueStats, Result, open_queue
from .queue.base import BlockingSubmit
from .queue.codec import due_of


class AsyncClient:
    """The SDK for asyncio code; every method is a coroutine."""

    def __init__(self, queue_url: str, namespace: str, pool: str, **options: Any):
        self.queue: Queue = open_queue(
            queue_url, check_name(namespace, "namespace"), check_name(pool, "pool"), **options
        )

    async def submit(
        self,
        payload: Any,
        id: str | None = None,
        *,
        task: str | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        backoff: float | None = None,
        delay: float | None = None,
        run_at: Any = None,
        wait: bool = True,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> str:
        """Enqueue one JSON payload for `task` (None: the pool's single handler); returns its id
        (the given one, or a generated one). `timeout`, `max_attempts`, `backoff`: the job's own,
        instead of the pool's, within the pool's caps. `delay` (seconds) or `run_at` (an aware
        datetime, or unix seconds): run it no sooner. `priority` 0-9 (default 0): a higher level
        is served first; `fairness_key` (a tenant, a customer): within a level, keys share the
        pool's slots round-robin. Submits from concurrent tasks that overlap go to Redis
        together, in one round trip. A task no live worker serves raises UnknownTask."""
        return await self.queue.submit(
            payload,
            id,
            task=task,
            wait=wait,
            options=JobOptions(timeout, max_attempts, backoff, priority, fairness_key),
            due=due_of(delay, run_at),
        )

    async def submit_many(
        self,
        payloads: Sequence[Any],
        ids: Sequence[str | None] | None = None,
        *,
        task: str | None = None,
        options: JobOptions = JobOptions(),
        delay: float | None = None,
        run_at: Any = None,
        wait: bool = True,
        timeout: float | None = None,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> list[str]:
        """Enqueue many payloads of one task, with the same `options` of their own
        (`jobpool.JobOptions(timeout, max_attempts, backoff, priority, fairness_key)`) and the same
        `delay` or `run_at`, in pipelined batches; returns their ids in order. `priority` and
        `fairness_key`, when given, stand for those of `options`. `timeout`: how long to wait for
        room in a full queue."""
        return await self.queue.submit_many(
            list(payloads),
            ids,
            task=task,
            options=with_priority(options, priority, fairness_key),
            due=due_of(delay, run_at),
            wait=wait,
            timeout=timeout,
        )

    async def result(self, id: str, timeout: float | None = None) -> Result | None:
        """The job's `Result(id, result, attempts)`, waiting up to `timeout` seconds for it;
        None when it has not finished (or failed: see `dead_letters`)."""
        return await self.queue.result(id, timeout)

    def results(self, follow: bool = False) -> AsyncIterator[Result]:
        return self.queue.results(follow)

    async def job(self, id: str) -> JobState | None:
        """The job's state (waiting, scheduled, running, retrying, succeeded, dead), task,
        attempts, worker, timestamps, last error, progress and result; None for an id the pool
        does not know. Needs the pool's worker user: a producer's may not read it."""
        return await self.queue.job(id)

    async def cancel(self, id: str) -> str:
        """Withdraw a job: "cancelled" (it was waiting, scheduled or a retry waiting for its
        backoff: removed now), "cancelling" (it runs: its worker cancels it at its next
        heartbeat, then it is cancelled, never retried), "succeeded", "dead" or "was cancelled"
        (finished: nothing changed), "unknown". Needs the pool's worker user."""
        return (await self.queue.cancel([id]))[id]

    async def status(self) -> QueueStats:
        return await self.queue.stats()

    async def dead_letters(self) -> list[DeadJob]:
        return await self.queue.dead_letters()

    async def replay(self, ids: Sequence[str] | None = None) -> int:
        return await self.queue.replay(ids)

    async def close(self) -> None:
        await self.queue.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class Client:
    """The synchronous SDK. It runs its own event loop, so use `AsyncClient` inside asyncio."""

    def __init__(self, queue_url: str, namespace: str, pool: str, **options: Any):
        self._async = AsyncClient(queue_url, namespace, pool, **options)
        self._loop = asyncio.new_event_loop()
        queue = self._async.queue
        # one job in one round trip without the event loop, where the queue can (Redis)
        self._submit_blocking = queue.submit_blocking if isinstance(queue, BlockingSubmit) else None

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    def submit(
        self,
        payload: Any,
        id: str | None = None,
        *,
        task: str | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        backoff: float | None = None,
        delay: float | None = None,
        run_at: Any = None,
        wait: bool = True,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> str:
        job_id = id
        if self._submit_blocking is not None:
            options = JobOptions(timeout, max_attempts, backoff, priority, fairness_key)
            job_id, submitted = self._submit_blocking(
                payload, id, task=task, options=options, due=due_of(delay, run_at), wait=wait
            )
            if submitted:
                return cast(str, job_id)
        return self._run(
            self._async.submit(
                payload,
                job_id,
                task=task,
                timeout=timeout,
                max_attempts=max_attempts,
                backoff=backoff,
                delay=delay,
                run_at=run_at,
                wait=wait,
                priority=priority,
                fairness_key=fairness_key,
            )
        )

    def submit_many(
        self,
        payloads: Sequence[Any],
        ids: Sequence[str | None] | None = None,
        *,
        task: str | None = None,
        options: JobOptions = JobOptions(),
        delay: float | None = None,
        run_at: Any = None,
        wait: bool = True,
        timeout: float | None = None,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> list[str]:
        return self._run(
            self._async.submit_many(
                payloads,
                ids,
                task=task,
                options=options,
                delay=delay,
                run_at=run_at,
                wait=wait,
                timeout=timeout,
                priority=priority,
                fairness_key=fairness_key,
            )
        )

    def result(self, id: str, timeout: float | None = None) -> Result | None:
        return self._run(self._async.result(id, timeout))

    @overload
    def results(self, follow: Literal[False] = False) -> list[Result]: ...

    @overload
    def results(self, follow: Literal[True]) -> Iterator[Result]: ...

    @overload
    def results(self, follow: bool) -> list[Result] | Iterator[Result]: ...

    def results(self, follow: bool = False) -> list[Result] | Iterator[Result]:
        """The results kept, oldest first: a list; with `follow`, an iterator that goes on
        yielding results as jobs finish, until it is closed (or the loop leaves it)."""
        if follow:
            return self._follow()

        async def collect() -> list[Result]:
            return [r async for r in self._async.results(follow=False)]

        return self._run(collect())

    def _follow(self) -> Iterator[Result]:
        results = self._async.results(follow=True)
        try:
            while True:
                try:
                    yield self._run(anext(results))
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed() and isinstance(results, AsyncGenerator):
                self._run(results.aclose())

    def job(self, id: str) -> JobState | None:
        return self._run(self._async.job(id))

    def cancel(self, id: str) -> str:
        return self._run(self._async.cancel(id))

    def status(self) -> QueueStats:
        return self._run(self._async.status())

    def dead_letters(self) -> list[DeadJob]:
        return self._run(self._async.dead_letters())

    def replay(self, ids: Sequence[str] | None = None) -> int:
        return self._run(self._async.replay(ids))

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._async.close())
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def with_priority(options: JobOptions, priority: int | None, fairness_key: str | None) -> JobOptions:
    """`options` with the priority and fairness key given beside them, where given."""
    if priority is not None:
        options = dataclasses.replace(options, priority=priority)
    if fairness_key is not None:
        options = dataclasses.replace(options, fairness_key=fairness_key)
    return options
