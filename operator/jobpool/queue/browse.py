"""Read-only views of one pool's jobs for people (the web UI): pages of queued, delayed, dead and
succeeded jobs, one job's state, whether the credential may change dead letters.

Only plain read commands a pool's producer user already holds (XREAD, XPENDING, GET, HGET,
SISMEMBER), so the page works with the least credential; what a user may not read raises
`NotPermitted` and the page says so. No Lua: a read is never atomic with anything, and a job may
move on between two reads, which the page shows as it is a moment later."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

from .base import QueueError
from .codec import decode_options
from .keys import GROUP, STREAM_TURN
from .redis.entries import payload_of, readable, unpack_delayed
from .redis.fields import DEAD as DEAD_FIELDS, ENTRY, WAKE
from .redis.queue import RedisStreamsQueue

WAITING, RUNNING, DELAYED, SUCCEEDED, DEAD, CANCELLED = (
    "waiting",
    "running",
    "delayed",
    "succeeded",
    "dead",
    "cancelled",
)
SCAN_LIMIT = 10_000  # entries one filtered page or one search reads at most
READ_CHUNK = 500


class NotPermitted(QueueError):
    """The credential may not read (or change) this; the message says what."""


@dataclasses.dataclass(frozen=True)
class JobView:
    id: str
    state: str
    payload: Any = None
    payload_text: str = ""
    attempts: int = 0
    enqueued_at: float | None = None  # unix seconds, when submitted or due again
    worker: str | None = None  # the worker running it
    running_for: float | None = None  # seconds since its delivery
    due_at: float | None = None  # a delayed retry's due time
    failed_at: float | None = None
    finished_at: float | None = None  # when a succeeded job's result was stored, or it was cancelled
    error: str | None = None  # a dead job's last error, traceback included
    result: Any = None
    has_result: bool = False
    task: str | None = None  # the job model's task name, where an entry carries one
    priority: int = 0  # its level, 0-9
    fairness_key: str | None = None
    progress: Any = None
    cursor: str = ""  # the entry id that pages go on from


@dataclasses.dataclass(frozen=True)
class JobPage:
    jobs: list[JobView]
    next_after: str | None  # give as `after` for the next page; None: the last page
    scanned: int = 0  # entries read to find these (a filtered page reads more)


class Browse(abc.ABC):
    """Reads of one pool's jobs for the web UI (read-only)."""

    @abc.abstractmethod
    async def queued(self, after: str = "0-0", count: int = 50, match: str = "") -> JobPage:
        """Waiting and running jobs, oldest first, after entry `after`; `match` keeps jobs whose
        id, task or payload text contains it. The first page starts with the jobs waiting with a
        priority or a fairness key (the highest level first), where the credential may read them."""

    @abc.abstractmethod
    async def delayed(self, offset: int = 0, count: int = 50) -> JobPage:
        """Retries waiting for their backoff, the earliest due first."""

    @abc.abstractmethod
    async def dead(
        self, after: str = "0-0", count: int = 50, error_contains: str = "", match: str = ""
    ) -> JobPage:
        """Dead letters, oldest first; `error_contains` filters by error text (case-insensitive)."""

    @abc.abstractmethod
    async def succeeded(self, after: str = "0-0", count: int = 50, match: str = "") -> JobPage:
        """Finished jobs with their results, oldest retained first."""

    @abc.abstractmethod
    async def job(self, job_id: str) -> JobView | None:
        """One job wherever it is now; None when the queue knows no such id."""

    @abc.abstractmethod
    async def may_change_dead_letters(self) -> bool:
        """Whether this credential may replay and purge dead letters (both delete dead entries)."""

    @abc.abstractmethod
    async def may_cancel(self) -> bool:
        """Whether this credential may cancel jobs (it removes waiting entries)."""


def open_browse(queue: Any) -> Browse:
    if isinstance(queue, RedisStreamsQueue):
        return RedisBrowse(queue)
    raise QueueError(f"no job browser for a {type(queue).__name__}")


class RedisBrowse(Browse):
    def __init__(self, queue: RedisStreamsQueue):
        self.queue = queue
        self.keys = queue.keys

    async def _read(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            with self.queue._errors():
                return await self.queue._call(function, *args, **kwargs)
        except QueueError as exc:
            if "NOPERM" in str(exc) or "no permissions" in str(exc):
                raise NotPermitted(
                    f"this credential may not read {what} of pool {self.queue.namespace}/{self.queue.pool}"
                ) from None
            raise

    async def _entries(
        self, key: str, what: str, after: str, count: int
    ) -> list[tuple[str, dict[str, str], dict[bytes, bytes]]]:
        """Up to `count` entries of stream `key` after entry id `after`, by XREAD (which a
        producer may run, unlike XRANGE)."""
        reply = await self._read(what, self.queue.entries.xread, {key: after}, count=count)
        if not reply:
            return []
        raw = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        return [
            (entry.decode(), {readable(k): readable(v) for k, v in fields.items()}, fields)
            for entry, fields in raw
        ]

    async def _scan(
        self,
        key: str,
        what: str,
        after: str,
        count: int,
        view: Callable[[str, dict[str, str], dict[bytes, bytes]], JobView | None],
        keep: Callable[[JobView], bool],
    ) -> JobPage:
        jobs: list[JobView] = []
        scanned = 0
        cursor = after
        while len(jobs) < count and scanned < SCAN_LIMIT:
            chunk = await self._entries(key, what, cursor, min(READ_CHUNK, SCAN_LIMIT - scanned))
            if not chunk:
                return JobPage(jobs, None, scanned)
            for entry, fields, raw in chunk:
                scanned += 1
                cursor = entry
                job = view(entry, fields, raw)
                if job is not None and keep(job):
                    jobs.append(job)
                    if len(jobs) == count:
                        break
        more = await self._entries(key, what, cursor, 1)
        return JobPage(jobs, cursor if more else None, scanned)

    async def queued(self, after: str = "0-0", count: int = 50, match: str = "") -> JobPage:
        page = await self._queued(after or "0-0", count, lambda job: matches(job, match))
        if (after or "0-0") != "0-0":
            return page
        try:
            outside = [job for job in await self._outside(SCAN_LIMIT) if matches(job, match)]
        except NotPermitted:  # a producer's credential: the stream's jobs only
            return page
        return dataclasses.replace(page, jobs=outside[:count] + page.jobs)

    async def _outside(self, limit: int) -> list[JobView]:
        """Up to `limit` jobs waiting outside the stream (keys.py: a priority or a fairness key),
        by level from the highest, each level's keys in ring order."""
        k, redis = self.keys, self.queue.entries
        levels = await self._read("the prioritized jobs", redis.hgetall, k.priorities)
        jobs: list[JobView] = []
        for level in sorted((int(name) for name in levels), reverse=True):
            for key in await self._read("the prioritized jobs", redis.lrange, k.ready(level), 0, -1):
                fairness_key = readable(key)
                if level == 0 and fairness_key == STREAM_TURN:
                    continue
                for element in await self._read(
                    "the prioritized jobs",
                    redis.lrange,
                    k.fair(level, fairness_key),
                    0,
                    limit - len(jobs) - 1,
                ):
                    jobs.append(_outside_view(element, level, fairness_key))
                if len(jobs) >= limit:
                    return jobs
        return jobs

    async def _queued(self, after: str, count: int, keep: Callable[[JobView], bool]) -> JobPage:
        page = await self._scan(self.keys.stream, "the waiting jobs", after, count, _queued_view, keep)
        if not page.jobs:
            return page
        first, last = page.jobs[0].cursor, page.jobs[-1].cursor
        pending = await self._read(
            "the running jobs",
            self.queue.redis.xpending_range,
            self.keys.stream,
            GROUP,
            min=first,
            max=last,
            count=page.scanned + 1,
        )
        held = {p["message_id"]: p for p in pending}
        jobs = []
        for job in page.jobs:
            delivery = held.get(job.cursor)
            if delivery is not None:
                job = dataclasses.replace(
                    job,
                    state=RUNNING,
                    worker=delivery["consumer"],
                    running_for=delivery["time_since_delivered"] / 1000,
                    attempts=job.attempts + delivery["times_delivered"],
                )
            jobs.append(job)
        return dataclasses.replace(page, jobs=jobs)

    async def delayed(self, offset: int = 0, count: int = 50) -> JobPage:
        due = await self._read(
            "the delayed jobs",
            self.queue.redis.zrange,
            self.keys.delayed,
            offset,
            offset + count,
            withscores=True,
        )
        if not due:
            return JobPage([], None)
        shown = due[:count]
        stored = await self._read(
            "the delayed jobs",
            self.queue.redis.hmget,
            self.keys.delayed_jobs,
            [job_id for job_id, _ in shown],
        )
        jobs = [_delayed_view(job_id, score, text) for (job_id, score), text in zip(shown, stored)]
        return JobPage(jobs, str(offset + count) if len(due) > count else None, len(shown))

    async def dead(
        self, after: str = "0-0", count: int = 50, error_contains: str = "", match: str = ""
    ) -> JobPage:
        needle = error_contains.lower()
        return await self._scan(
            self.keys.dead,
            "the dead letters",
            after or "0-0",
            count,
            _dead_view,
            lambda job: needle in (job.error or "").lower() and matches(job, match),
        )

    async def succeeded(self, after: str = "0-0", count: int = 50, match: str = "") -> JobPage:
        return await self._scan(
            self.keys.results,
            "the results",
            after or "0-0",
            count,
            _result_view,
            lambda job: matches(job, match),
        )

    async def job(self, job_id: str) -> JobView | None:
        k = self.keys
        dead_entry = await self._read("the dead letters", self.queue.redis.hget, k.dead_ids, job_id)
        if dead_entry:
            found = await self._entries(k.dead, "the dead letters", entry_before(dead_entry), 1)
            if found and found[0][0] == dead_entry:
                return _dead_view(*found[0])
        try:
            delayed = await self._read("the delayed jobs", self.queue.redis.hget, k.delayed_jobs, job_id)
        except NotPermitted:
            delayed = None
        if delayed is not None:
            due = await self._delay_of(job_id)
            return _delayed_view(job_id, due, delayed)
        if await self._read("the live jobs", self.queue.redis.sismember, k.live, job_id):
            try:
                outside = [job for job in await self._outside(SCAN_LIMIT) if job.id == job_id]
            except NotPermitted:
                outside = []
            if outside:
                return outside[0]
            page = await self._queued("0-0", 1, lambda job: job.id == job_id)
            if page.jobs:
                return page.jobs[0]
            # live but not in the stream: a retry waiting for its backoff (which a producer may not
            # read), unless the search stopped at SCAN_LIMIT entries before the end
            return JobView(job_id, DELAYED if page.next_after is None else WAITING)
        stored = await self._read("the results", self.queue.redis.get, k.result(job_id))
        if stored is not None:
            attempts, _, text = stored.partition(":")
            _, result, _ = payload_of(text.encode())
            return JobView(job_id, SUCCEEDED, attempts=int(attempts or 0), result=result, has_result=True)
        cancelled_at = await self._read("the cancelled jobs", self.queue.redis.zscore, k.cancelled, job_id)
        if cancelled_at is not None:
            return JobView(job_id, CANCELLED, finished_at=float(cancelled_at) / 1000)
        return None

    async def _delay_of(self, job_id: str) -> float:
        """A delayed job's due time (ms): ZMSCORE where the user may, else a bounded ZRANGE walk
        (a pool's users hold ZRANGE, not ZSCORE); 0 when unknown."""
        try:
            scores = await self._read(
                "the delayed jobs", self.queue.redis.zmscore, self.keys.delayed, [job_id]
            )
            return float(scores[0] or 0)
        except NotPermitted:
            pass
        for start in range(0, SCAN_LIMIT, READ_CHUNK):
            try:
                chunk = await self._read(
                    "the delayed jobs",
                    self.queue.redis.zrange,
                    self.keys.delayed,
                    start,
                    start + READ_CHUNK - 1,
                    withscores=True,
                )
            except NotPermitted:
                return 0.0
            for member, score in chunk:
                if member == job_id:
                    return float(score)
            if len(chunk) < READ_CHUNK:
                break
        return 0.0

    async def may_change_dead_letters(self) -> bool:
        """Tried, not guessed: XDEL of entry 0-0 (no entry has that id) on the dead-letter stream
        changes nothing, and Redis refuses it exactly when the user may not delete dead entries."""
        try:
            await self._read("the dead letters", self.queue.redis.xdel, self.keys.dead, "0-0")
        except NotPermitted:
            return False
        return True

    async def may_cancel(self) -> bool:
        """Tried, not guessed, as the cancel function itself checks: XDEL of entry 0-0 of the stream."""
        try:
            await self._read("the waiting jobs", self.queue.redis.xdel, self.keys.stream, "0-0")
        except NotPermitted:
            return False
        return True


def matches(job: JobView, needle: str) -> bool:
    if not needle:
        return True
    return needle in job.id or (job.task is not None and needle in job.task) or needle in job.payload_text


def entry_before(entry_id: str) -> str:
    """The stream id just before `entry_id`: XREAD reads after an id, so this reads that entry."""
    ms, _, seq = entry_id.partition("-")
    if int(seq or 0) > 0:
        return f"{ms}-{int(seq) - 1}"
    return f"{int(ms) - 1}-18446744073709551615" if int(ms) > 0 else "0-0"


def _payload(raw: bytes | None) -> tuple[str, Any]:
    text, payload, problem = payload_of(raw)
    return readable(raw or b"") if problem else text, payload if problem is None else readable(raw or b"")


def _number(fields: dict[str, str], name: str) -> int:
    try:
        return int(fields.get(name, 0))
    except ValueError:
        return 0


def _queued_view(entry: str, fields: dict[str, str], raw: dict[bytes, bytes]) -> JobView | None:
    if fields.get(ENTRY.express) == WAKE:  # a submit's wake entry: no job (submit.lua)
        return None
    text, payload = _payload(raw.get(b"p"))
    stamp = _number(fields, "t")
    options = decode_options(fields.get(ENTRY.options))
    return JobView(
        fields.get("id") or entry,
        WAITING,
        payload,
        text,
        _number(fields, "a"),
        enqueued_at=stamp / 1000 if stamp else None,
        task=fields.get(ENTRY.task),
        priority=options.priority or 0,
        fairness_key=options.fairness_key,
        progress=fields.get("progress"),
        cursor=entry,
    )


def _outside_view(element: bytes, level: int, fairness_key: str) -> JobView:
    """A job waiting outside the stream: "<id>\\0<enqueued ms>\\0<packed as a retry>"."""
    job_id, _, rest = readable(element).partition("\0")
    stamp, _, packed = rest.partition("\0")
    attempts, task, _options, text = unpack_delayed(packed)
    _, payload = _payload(text.encode("utf-8", "surrogateescape"))
    return JobView(
        job_id,
        WAITING,
        payload,
        text,
        attempts,
        task=task or None,
        priority=level,
        fairness_key=fairness_key or None,
        enqueued_at=int(stamp) / 1000 if stamp.isdigit() else None,
    )


def _dead_view(entry: str, fields: dict[str, str], raw: dict[bytes, bytes]) -> JobView:
    text, payload = _payload(raw.get(b"p"))
    return JobView(
        fields.get("id") or entry,
        DEAD,
        payload,
        text,
        _number(fields, "a"),
        failed_at=_number(fields, "t") / 1000 or None,
        error=fields.get("e", ""),
        task=fields.get(DEAD_FIELDS.task),
        cursor=entry,
    )


def _result_view(entry: str, fields: dict[str, str], raw: dict[bytes, bytes]) -> JobView:
    text, result = _payload(raw.get(b"r"))
    finished_ms = int(entry.partition("-")[0] or 0)  # the results entry's id is when it was stored
    return JobView(
        fields.get("id") or entry,
        SUCCEEDED,
        attempts=_number(fields, "a"),
        result=result,
        has_result=True,
        payload_text=text,
        task=fields.get("task"),
        finished_at=finished_ms / 1000 or None,
        cursor=entry,
    )


def _delayed_view(job_id: str, due_ms: float, stored: str | None) -> JobView:
    attempts, task, _options, text = unpack_delayed(stored or "")
    _, payload = _payload(text.encode("utf-8", "surrogateescape"))
    return JobView(
        job_id, DELAYED, payload, text, attempts, task=task or None, due_at=due_ms / 1000 if due_ms else None
    )
