"""One pool's queue: where its URL comes from, the connection, the pool-wide settings stored in
it, and the feeder of spec.jobs. The reconcile loop asks it for stats and tells it what to feed;
everything about the queue's lifecycle (including letting go of it) is here."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..api import JobPoolSpec
from ..queue.base import Queue, QueueStats
from . import kinds, reasons
from .builders import PoolRef
from .kube import KubeApi
from .problems import Problem, invalid_queue_url, queue_message, queue_unavailable

log = logging.getLogger("jobpool.operator")

FEED_CHUNK = 500
SWEEP_CHUNK = 1000  # ids of a cancelled batch per cancel call
QUEUE_TIMEOUT_SECONDS = 2.0
SECRET_TTL_SECONDS = 10.0
UPKEEP_INTERVAL_SECONDS = 1.0  # the memory sample tenants' submits check is at most this old

OpenQueue = Callable[[str, str, str], Queue]


@dataclasses.dataclass(frozen=True)
class SecretRead:
    """What reading spec.queue.urlSecretRef gave: a URL or the problem, and when."""

    key: tuple[str, str]  # (Secret name, key)
    url: str | None
    problem: Problem | None
    read_at: float  # monotonic seconds


async def read_queue_url(
    kube: KubeApi, namespace: str, spec: JobPoolSpec, default_queue: str | None
) -> SecretRead:
    """The pool's queue URL: spec.queue.url, the URL in its Secret, or the operator's default."""
    ref = spec.queue.url_secret_ref
    if ref is None:
        return SecretRead(("", ""), spec.queue.url or default_queue, None, time.monotonic())
    key = (ref.name, ref.key)
    secret = await kube.get(kinds.SECRET, namespace, ref.name)
    if secret is None:
        return SecretRead(
            key,
            None,
            Problem(
                reasons.SECRET_NOT_FOUND,
                f'spec.queue.urlSecretRef: Secret "{ref.name}" not found in namespace "{namespace}"',
            ),
            time.monotonic(),
        )
    if ref.key not in (secret.get("data") or {}):
        return SecretRead(
            key,
            None,
            Problem(
                reasons.SECRET_KEY_NOT_FOUND,
                f'spec.queue.urlSecretRef: Secret "{ref.name}" has no key "{ref.key}"',
            ),
            time.monotonic(),
        )
    try:
        url = base64.b64decode(secret["data"][ref.key]).decode().strip()
    except ValueError:  # binary data: said without quoting it
        return SecretRead(
            key,
            None,
            Problem(
                reasons.INVALID_QUEUE_URL,
                f'spec.queue.urlSecretRef: the value of Secret "{ref.name}" key "{ref.key}" is not text',
            ),
            time.monotonic(),
        )
    return SecretRead(key, url, None, time.monotonic())


class PoolQueue:
    def __init__(
        self,
        kube: KubeApi,
        pool: PoolRef,
        open_queue: OpenQueue,
        default_queue: str | None,
        on_progress: Callable[[], None],
    ):
        self.kube, self.pool, self.open_queue, self.default_queue = kube, pool, open_queue, default_queue
        self.on_progress = on_progress  # wakes the loop when a chunk was fed
        self.queue: Queue | None = None
        self.url: str | None = None  # the queue connected to
        self.resolved: str | None = None  # the URL last read (the finalizer's, too)
        self.configured: dict[str, Any] | None = None  # the pool-wide settings stored in the queue
        self.configure_failed = False  # storing them failed (and was logged) since the last success
        self.secret: SecretRead | None = None  # read again after SECRET_TTL_SECONDS
        self.feeder: asyncio.Task[None] | None = None
        self.feeding: str | None = None  # digest of the batch the feeder feeds
        self.fed = 0  # its progress
        self.sweeper: asyncio.Task[None] | None = None  # cancels a cancelled batch's jobs
        self.sweeping: str | None = None  # digest of the batch it cancels
        self.swept = 0  # its progress
        self.closed = False
        self.upkept = float("-inf")  # when queue.upkeep last ran
        self.repairs: list[str] = []  # what it found, for Events

    async def _url(self, spec: JobPoolSpec) -> SecretRead:
        ref = spec.queue.url_secret_ref
        cached = self.secret
        if (
            ref is not None
            and cached is not None
            and cached.key == (ref.name, ref.key)
            and time.monotonic() - cached.read_at < SECRET_TTL_SECONDS
        ):
            return cached
        self.secret = await read_queue_url(self.kube, self.pool.namespace, spec, self.default_queue)
        return self.secret

    async def connect(self, spec: JobPoolSpec) -> tuple[Problem | None, bool]:
        """Open (or keep) the connection to the queue the spec names; (problem, whether it moved
        from another queue since the last call). Nothing is written to the queue: its settings are
        stored by `configure`, as the plan says."""
        read = await self._url(spec)
        if read.problem is not None or read.url is None or self.closed:
            return read.problem, False
        self.resolved = read.url
        moved = False
        if read.url != self.url:
            moved = self.url is not None
            await self._drop()
            try:
                self.queue = self.open_queue(read.url, self.pool.namespace, self.pool.name)
            except Exception:  # the message may quote the value: say what is wrong without it
                return invalid_queue_url(spec, read.url), moved
            self.url = read.url
        return None, moved

    async def configure(self, spec: JobPoolSpec, settings: Mapping[str, Any]) -> None:
        """Store the pool-wide settings (`plan.queue_settings`) in the queue; a failure is logged
        once until it succeeds or the queue changes, and tried again while they differ."""
        if self.queue is None:
            return
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT_SECONDS):
                await self.queue.configure(**settings)
            self.configured, self.configure_failed = dict(settings), False
        except Exception as exc:  # stats() reports an unreachable queue; a refusal (NOPERM) is said here
            if not self.configure_failed:
                log.warning(
                    "%s/%s: cannot store the pool's settings (spec.queue: maxLength, maxPayloadBytes, "
                    "durability) in the queue: %s",
                    self.pool.namespace,
                    self.pool.name,
                    queue_message(spec, self.url or "", exc),
                )
            self.configure_failed = True  # warned once, until it succeeds or the queue changes

    async def stats(self, spec: JobPoolSpec) -> QueueStats | Problem:
        assert self.queue is not None
        await self._upkeep(full=time.monotonic() - self.upkept >= UPKEEP_INTERVAL_SECONDS)
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT_SECONDS):
                return await self.queue.stats()
        except Exception as exc:  # any backend failure means "unreachable" for the pool
            return queue_unavailable(spec, self.url or "", exc)

    async def _upkeep(self, full: bool) -> None:
        """Before every stats read, the bounds of what it walks; every UPKEEP_INTERVAL_SECONDS, also
        the memory sample and the wedges undone (queue.upkeep)."""
        assert self.queue is not None
        if full:
            self.upkept = time.monotonic()
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT_SECONDS):
                found = await self.queue.upkeep(full=full)
        except Exception as exc:  # a URL without the rights (a user's own queue): stats still runs
            log.debug("%s/%s: no upkeep of the queue: %s", self.pool.namespace, self.pool.name, exc)
            return
        for message in found:
            log.warning("%s/%s: queue repaired: %s", self.pool.namespace, self.pool.name, message)
        self.repairs += found

    def take_repairs(self) -> list[str]:
        """What the last upkeep found and repaired, once (for the pool's Events)."""
        taken, self.repairs = self.repairs, []
        return taken

    def progress(self, digest: str) -> int | None:
        """How far the feeder got with the batch `digest` (None: it is not feeding that one)."""
        return self.fed if self.feeding == digest else None

    async def feed(self, spec: JobPoolSpec, digest: str, start: int, total: int) -> None:
        """Feed batch `digest` from `start` unless a feeder runs for it already (one of another
        batch is stopped)."""
        running = self.feeder is not None and not self.feeder.done()
        if running and self.feeding == digest:
            return
        if running:
            await self.stop_feeding()
        if self.queue is None or start >= total:
            return
        self.feeding, self.fed = digest, start
        self.feeder = asyncio.create_task(self._feed(self.queue, spec, start, total))

    async def _feed(self, queue: Queue, spec: JobPoolSpec, start: int, total: int) -> None:
        """Enqueue spec.jobs in chunks with ids <pool>-<index>; waits while the queue is full."""
        assert spec.jobs is not None
        chunk = max(1, min(FEED_CHUNK, spec.queue.max_length))
        log.info(
            "%s/%s: feeding spec.jobs from index %d of %d", self.pool.namespace, self.pool.name, start, total
        )
        try:
            while self.fed < total:
                stop = min(self.fed + chunk, total)
                ids = [f"{self.pool.name}-{index}" for index in range(self.fed, stop)]
                await queue.submit_many(spec.jobs.payloads(self.fed, stop), ids, wait=True)
                self.fed = stop
                self.on_progress()
        except Exception as exc:
            log.warning(
                "%s/%s: feeding spec.jobs paused: %s",
                self.pool.namespace,
                self.pool.name,
                queue_message(spec, self.url or "", exc),
            )

    def sweep_progress(self, digest: str) -> int | None:
        """How far the cancel of the batch `digest` got (None: it is not cancelling that one)."""
        return self.swept if self.sweeping == digest else None

    async def sweep(self, digest: str, start: int, total: int) -> None:
        """Cancel the jobs of batch `digest` from index `start` on, once its feeder has stopped (so
        no job of it is enqueued behind the cancel), unless a sweeper runs for it already."""
        await self.stop_feeding()
        running = self.sweeper is not None and not self.sweeper.done()
        if running and self.sweeping == digest:
            return
        if running:
            await self.stop_sweeping()
        if self.queue is None or start >= total:
            return
        self.sweeping, self.swept = digest, start
        self.sweeper = asyncio.create_task(self._sweep(self.queue, start, total))

    async def _sweep(self, queue: Queue, start: int, total: int) -> None:
        """Cancel ids <pool>-<index> in chunks: waiting, scheduled and retrying jobs are withdrawn,
        running ones asked to stop; ids never fed are unknown to the queue and cost little."""
        log.info(
            "%s/%s: spec.jobs.cancel: cancelling the batch's jobs from index %d of %d",
            self.pool.namespace,
            self.pool.name,
            start,
            total,
        )
        outcomes: dict[str, int] = {}
        try:
            while self.swept < total:
                stop = min(self.swept + SWEEP_CHUNK, total)
                done = await queue.cancel([f"{self.pool.name}-{index}" for index in range(self.swept, stop)])
                for outcome in done.values():
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                self.swept = stop
                self.on_progress()
            log.info(
                "%s/%s: spec.jobs.cancel: %s",
                self.pool.namespace,
                self.pool.name,
                ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items())),
            )
        except Exception as exc:
            log.warning("%s/%s: cancelling spec.jobs paused: %s", self.pool.namespace, self.pool.name, exc)

    async def stop_sweeping(self) -> None:
        await stopped(self.sweeper)
        self.sweeper, self.sweeping = None, None

    async def stop_feeding(self) -> None:
        await stopped(self.feeder)
        self.feeder, self.feeding = None, None

    async def _drop(self) -> None:
        """Stop the feeder first: it must not go on feeding a queue the pool has left."""
        await self.stop_feeding()
        await self.stop_sweeping()
        queue, self.queue, self.url, self.configured = self.queue, None, None, None
        self.configure_failed = False
        if queue is not None:
            try:
                await queue.close()
            except Exception:
                pass

    async def close(self) -> None:
        """Let go of the queue for good (before the finalizer deletes its keys)."""
        self.closed = True
        await self._drop()


async def stopped(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` and wait until it has ended, however it ends; the caller's own cancellation
    while it waits is not swallowed."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except BaseException:
        pass
