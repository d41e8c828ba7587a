"""Live figures of the pools: one stats read per pool per refresh interval, however many pages
are open, shared with every viewer over Server-Sent Events (server-side fan-out).

`PoolHistory` and `summary` are pure (what a page shows from the snapshots read so far);
`Refresher` is the one loop that reads and the one place that talks to the queues for figures."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..queue import QueueError, QueueStats


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float
    backlog: int
    succeeded: int
    failed: int  # attempts that failed: retried + dead-lettered


@dataclasses.dataclass
class PoolHistory:
    """The samples of the last `window` seconds and the latest stats (or why there are none)."""

    window: float
    samples: collections.deque = dataclasses.field(default_factory=collections.deque)
    stats: QueueStats | None = None
    error: str | None = None
    read_at: float = 0.0

    def record(self, at: float, stats: QueueStats) -> None:
        self.stats, self.error, self.read_at = stats, None, at
        self.samples.append(
            Sample(at, stats.backlog, stats.succeeded, stats.retried + stats.dead_lettered + stats.permanent)
        )
        while self.samples and self.samples[0].at < at - self.window:
            self.samples.popleft()

    def failed(self, at: float, error: str) -> None:
        self.error, self.read_at = error, at


def rates(samples: list[Sample]) -> list[tuple[float, float]]:
    """(succeeded per second, failed per second) between consecutive samples; a counter that went
    down (the pool's keys were deleted and made again) counts as zero."""
    out = []
    for before, after in itertools.pairwise(samples):
        span = max(after.at - before.at, 1e-6)
        out.append(
            (max(0, after.succeeded - before.succeeded) / span, max(0, after.failed - before.failed) / span)
        )
    return out


def summary(history: PoolHistory) -> dict[str, Any]:
    """What the pages show of one pool, as JSON: the figures, the workers, the series."""
    samples = list(history.samples)
    series = rates(samples)
    recent = series[-5:]  # the rates over the last few intervals, less jumpy than the last one
    view: dict[str, Any] = {
        "error": history.error,
        "readAt": history.read_at,
        "history": {
            "backlog": [s.backlog for s in samples],
            "throughput": [round(ok, 3) for ok, _ in series],
        },
        "succeededPerSecond": round(sum(ok for ok, _ in recent) / len(recent), 2) if recent else 0.0,
        "failedPerSecond": round(sum(bad for _, bad in recent) / len(recent), 2) if recent else 0.0,
    }
    if history.stats is not None:
        stats = history.stats
        view.update(stats.as_status())
        view["backlog"] = stats.backlog
        view["workerList"] = [
            {"id": w.id, "slots": w.slots, "busy": w.busy, "lastSeen": w.last_seen} for w in stats.workers
        ]
    return view


class Refresher:
    """Reads every pool's stats once per `interval` and tells every subscriber (one SSE stream
    each) the new figures; a slow subscriber only ever misses figures that were replaced."""

    def __init__(
        self,
        queues: Mapping[str, Any],
        interval: float,
        window: float = 300.0,
        before: Callable[[], Awaitable[None]] | None = None,
    ):
        self.interval = interval
        self.window = window
        self.before = before  # run before each refresh: the pools may have changed
        self.queues: dict[str, Any] = {}
        self.histories: dict[str, PoolHistory] = {}
        self.show(queues)
        self.reads = 0
        self._subscribers: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None
        self._first = asyncio.Event()

    def show(self, queues: Mapping[str, Any]) -> None:
        """Read these pools from now on; a pool no longer shown loses its history."""
        self.queues = dict(queues)
        self.histories = {name: self.histories.get(name) or PoolHistory(self.window) for name in self.queues}

    async def refresh(self) -> None:
        if self.before is not None:
            await self.before()
        names = list(self.queues)
        outcomes = await asyncio.gather(*(self.queues[n].stats() for n in names), return_exceptions=True)
        now = time.time()
        self.reads += len(names)
        for name, outcome in zip(names, outcomes):
            if name not in self.histories:
                continue
            if isinstance(outcome, QueueError):
                self.histories[name].failed(now, str(outcome))
            elif isinstance(outcome, BaseException):
                self.histories[name].failed(now, f"{type(outcome).__name__}: {outcome}")
            else:
                self.histories[name].record(now, outcome)
        self._first.set()
        self.publish()

    def view(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "streams": len(self._subscribers),
            "pools": {name: summary(history) for name, history in self.histories.items()},
        }

    def publish(self) -> None:
        event = json.dumps(self.view())
        for subscriber in self._subscribers:
            if subscriber.full():
                subscriber.get_nowait()
            subscriber.put_nowait(event)

    def subscribe(self) -> asyncio.Queue:
        subscriber: asyncio.Queue = asyncio.Queue(maxsize=1)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: asyncio.Queue) -> None:
        self._subscribers.discard(subscriber)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def ready(self) -> None:
        """Wait for the first read, so the first page already has figures."""
        await self._first.wait()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await self.refresh()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for subscriber in self._subscribers:  # each stream ends on the None
            if subscriber.full():
                subscriber.get_nowait()
            subscriber.put_nowait(None)
