"""The Redis Streams implementation of `Queue`: one stream and one consumer group per pool.

Every step that must be atomic is one function of the queue's Redis Functions library (see
`library/`, called through the typed wrappers of `functions.py`); the submit path is in
`submit.py`, decoding in `entries.py`, calls, retries and error mapping in `calls.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from ...contract import (
    DEFAULT_DEAD_LETTER_CAP,
    DEFAULT_RESULT_TTL_SECONDS,
    DEFAULT_RESULTS_CAP,
    DEFAULT_VISIBILITY_TIMEOUT_SECONDS,
    ERROR_TEXT_LIMIT,
    OUTCOME_CANCELLED,
)
from .. import connection, upkeep
from ..base import (
    SCALE_UP_HORIZON_SECONDS,
    BlockingSubmit,
    DeadJob,
    Job,
    JobState,
    Queue,
    QueueError,
    QueueStats,
    Result,
)
from ..codec import (
    decode_json,
    decode_options,
    encode_json,
    encode_options,
    outcome_of_failure,
    retry_delay,
    storable_text,
)
from ..keys import GROUP, PoolKeys
from ..urls import check_queue_url, redact_url
from .calls import REPLICATED
from .entries import (
    is_express,
    job_from_entry,
    job_state,
    readable,
    stats_from_reply,
    stream_entries,
    streams_entries,
)
from .fields import DEAD, ENDED, RESULT
from .functions import (
    Ack,
    AckThenFetch,
    Cancel,
    Fail,
    Fetch,
    FetchReply,
    Heartbeat,
    JobLookup,
    MemorySample,
    Progress,
    Purge,
    Release,
    Replay,
    SampleMemory,
    Stats,
    TrimResults,
    Unregister,
)
from .submit import SubmitPath

ACK_CHUNK = 500
RESULT_BLOCK_SECONDS = 5.0  # result()'s blocking read is renewed this often, within the socket timeout


def open_queue(url: str, namespace: str, pool: str, **options: Any) -> RedisStreamsQueue:
    """The queue of pool `namespace/pool` at `url`; raises QueueError for a bad URL.
    No connection is made until the first operation."""
    check_queue_url(url)
    return RedisStreamsQueue(url, namespace, pool, **options)


# `job` and `cancel` look for a waiting or running job among this many stream entries (one read-only function
# call); a live job further back is reported waiting without its task or attempts.
JOB_SCAN_LIMIT = 10_000
# Ids per cancel call: one call walks the stream once for all of them, so a batch's thousands of
# ids cost a few bounded calls, none holding Redis for long.
CANCEL_CHUNK = 1000


class RedisStreamsQueue(SubmitPath, Queue, BlockingSubmit):
    def __init__(
        self,
        url: str,
        namespace: str,
        pool: str,
        *,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT_SECONDS,
        result_ttl: float = DEFAULT_RESULT_TTL_SECONDS,
        results_cap: int = DEFAULT_RESULTS_CAP,
        dead_letter_cap: int = DEFAULT_DEAD_LETTER_CAP,
        connect_timeout: float = 5.0,
    ):
        if not namespace or not pool:
            raise QueueError("namespace and pool must be non-empty")
        self.url = url
        self.namespace = namespace
        self.pool = pool
        self.keys = PoolKeys(namespace, pool)
        self.visibility_timeout = visibility_timeout
        self.result_ttl = result_ttl
        self.results_cap = results_cap
        options: dict[str, Any] = dict(
            socket_connect_timeout=connect_timeout, socket_timeout=max(10.0, connect_timeout)
        )
        if connection.topology(url) != connection.CLUSTER:  # a cluster client retries by itself
            # no retries of its own: the queue's callers back off (an asyncio client takes
            # redis.asyncio's Retry; the sync Retry makes redis-py 8 warn on every command)
            options.update(retry=AsyncRetry(NoBackoff(), 0), health_check_interval=0)
        self.dead_letter_cap = dead_letter_cap
        self._options = options
        self._blocking: Any = None  # the sync client of submit_blocking, made on first use
        self._direct_submits = 0  # one-job submits under way on their own
        self._gathered = []
        self._gatherer: asyncio.Task | None = None
        try:
            self.redis = connection.connect(url, decode_responses=True, **options)
            # stream entries as bytes: any producer may have written them, valid UTF-8 or not
            self.entries = connection.connect(url, decode_responses=False, **options)
        except ValueError as exc:
            raise QueueError(f"invalid queue URL {redact_url(url)!r}: {exc}") from None
        self._durability: tuple[float, bool] | None = None  # (read at, replicated)

    def __repr__(self) -> str:
        return f"RedisStreamsQueue({redact_url(self.url)!r}, {self.namespace!r}, {self.pool!r})"

    # -- configuration ---------------------------------------------------
    async def configure(
        self, *, max_length: int | None, max_payload_bytes: int | None = None, durability: str | None = None
    ) -> None:
        settings = {
            "max_length": max_length,
            "max_payload_bytes": max_payload_bytes,
            "durability": durability if durability == REPLICATED else None,
        }
        with self._errors():
            for field, value in settings.items():
                if value:
                    await self._call(
                        self.redis.hset,
                        self.keys.config,
                        field,
                        value if isinstance(value, str) else int(value),
                    )
                else:
                    await self._call(self.redis.hdel, self.keys.config, field)

    async def fetch(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        """Reclaim stale entries, promote due retries and read new entries (one script); when
        there are none, block for new ones, but only until the next retry is due."""
        if count <= 0:
            return []
        deadline = time.monotonic() + block_ms / 1000
        while True:
            jobs, block = await self._fetch_now(consumer, count, block_ms)
            if jobs:
                return jobs
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return []
            waits_for_retry = block is not None and block < remaining_ms
            jobs, woken = await self._read_blocking(consumer, count, min(block or remaining_ms, remaining_ms))
            if jobs or not (waits_for_retry or woken):
                return jobs

    async def _fetch_now(self, consumer: str, count: int, block_ms: int) -> tuple[list[Job], int | None]:
        command = Fetch.command(
            self.keys,
            consumer=consumer,
            count=count,
            visibility_ms=int(self.visibility_timeout * 1000),
            reclaim_interval_ms=self._reclaim_interval_ms,
        )
        with self._errors():
            reply = await self._function(Fetch, command, client=self.entries)
        return self._fetched(reply, consumer)

    @property
    def _reclaim_interval_ms(self) -> int:
        return max(50, min(1000, int(self.visibility_timeout * 250)))

    def _fetched(self, reply: FetchReply, consumer: str) -> tuple[list[Job], int]:
        """The jobs of a fetch's reply, and the ms until the next thing to fetch is due."""
        now_ms, next_due, reclaimed, fresh = reply
        jobs = [
            job_from_entry(entry_id, fields, int(deliveries), consumer)
            for entry_id, fields, deliveries in reclaimed
        ]
        jobs += [job_from_entry(entry_id, fields, 1, consumer) for entry_id, fields in fresh]
        # the next reclaim pass matters too: stale entries of dead workers wait for it
        interval = self._reclaim_interval_ms
        next_event = interval if next_due < 0 else min(interval, max(1, int(next_due) - int(now_ms)))
        return jobs, next_event

    async def _read_blocking(self, consumer: str, count: int, block_ms: int) -> tuple[list[Job], bool]:
        """-> the jobs read, and whether an entry was skipped: a job waiting outside the stream
        woke the read (submit.lua), or a job another worker holds (fetch.lua); a fetch serves them."""
        k = self.keys
        with self._errors():
            try:
                reply = await self._call(
                    self.entries.xreadgroup,
                    GROUP,
                    consumer,
                    {k.stream: ">"},
                    count=count,
                    block=max(1, block_ms),
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                with contextlib.suppress(ResponseError):
                    await self._call(self.redis.xgroup_create, k.stream, GROUP, id="0", mkstream=True)
                return [], False
        entries = stream_entries(reply)
        jobs = [
            job_from_entry(entry_id, fields, 1, consumer)
            for entry_id, fields in entries
            if not is_express(fields)
        ]
        return jobs, len(jobs) < len(entries)

    async def ack_many(self, done: Sequence[tuple[Job, Any]]) -> tuple[int, int]:
        """Returns (first completions, duplicate completions)."""
        succeeded = duplicates = 0
        for start in range(0, len(done), ACK_CHUNK):
            batch = done[start : start + ACK_CHUNK]
            command = Ack.command(
                self.keys,
                job_ids=[job.id for job, _ in batch],
                blob=self._ack_blob(batch),
                result_ttl_ms=int(self.result_ttl * 1000),
                results_cap=self.results_cap,
            )
            with self._errors():
                first, again, excess = await self._function(Ack, command, write=True)
                await self._trim_over_cap(excess)
            succeeded += first
            duplicates += again
        return succeeded, duplicates

    async def ack_then_fetch(
        self, done: Sequence[tuple[Job, Any]], consumer: str, count: int
    ) -> tuple[int, int, list[Job]]:
        with self._errors():
            # replicated: fetch once the ack is confirmed; jobs fetched with an ack refused after
            # the script ran would be lost to the worker until the visibility timeout, a delivery burnt
            separate = count <= 0 or len(done) > ACK_CHUNK or await self._replicated()
        if separate:
            return await super().ack_then_fetch(done, consumer, count)
        command = AckThenFetch.command(
            self.keys,
            job_ids=[job.id for job, _ in done],
            blob=self._ack_blob(done),
            result_ttl_ms=int(self.result_ttl * 1000),
            results_cap=self.results_cap,
            consumer=consumer,
            count=count,
            visibility_ms=int(self.visibility_timeout * 1000),
            reclaim_interval_ms=self._reclaim_interval_ms,
        )
        with self._errors():
            (first, again, excess), fetched = await self._function(
                AckThenFetch, command, client=self.entries, write=True
            )
            await self._trim_over_cap(excess)
        return first, again, self._fetched(fetched, consumer)[0]

    @staticmethod
    def _ack_blob(done: Sequence[tuple[Job, Any]]) -> str:
        fields: list[str] = []
        for job, result in done:
            fields += (job.token, job.consumer, job.id, str(job.attempts), encode_json(result, "result"))
        return "\0".join(fields)

    async def _trim_over_cap(self, excess: int) -> None:
        if excess > 0:
            await self._call(self._trim_oldest_results, excess)

    async def _trim_oldest_results(self, excess: int) -> None:
        """Remove the oldest results over the cap with their result keys (a bounded step)."""
        oldest = await self.redis.xrange(self.keys.results, count=min(excess, 1000))
        if oldest:
            await self._fcall(
                self.redis,
                TrimResults.command(
                    self.keys, oldest=[(entry_id, fields[RESULT.id]) for entry_id, fields in oldest]
                ),
            )

    async def fail(
        self,
        job: Job,
        error: str,
        *,
        max_attempts: int,
        backoff: float,
        max_backoff: float,
        permanent: bool = False,
        cancelled: bool = False,
    ) -> str:
        outcome = (
            OUTCOME_CANCELLED if cancelled else outcome_of_failure(job.attempts, max_attempts, permanent)
        )
        delay_ms = int(retry_delay(job.attempts, backoff, max_backoff) * 1000)
        command = Fail.command(
            self.keys,
            entry_id=job.token,
            consumer=job.consumer,
            id=job.id,
            attempts=job.attempts,
            payload=job.payload_text.encode("utf-8", "surrogateescape"),  # bytes as fetched
            error=storable_text(error[:ERROR_TEXT_LIMIT]),
            outcome=outcome,
            delay_ms=delay_ms,
            replayed=job.replayed,
            dead_letter_cap=self.dead_letter_cap,
            task=job.task,
            options=encode_options(job.options),
        )
        with self._errors():
            return (await self._function(Fail, command)).outcome

    async def progress(self, job: Job, value: str) -> bool:
        command = Progress.command(
            self.keys, consumer=job.consumer, entry_id=job.token, id=job.id, value=value
        )
        with self._errors():
            return await self._function(Progress, command)

    async def release(self, consumer: str, jobs: Iterable[Job]) -> int:
        tokens = [job.token for job in jobs]
        if not tokens:
            return 0
        with self._errors():
            return await self._function(
                Release, Release.command(self.keys, consumer=consumer, entry_ids=tokens)
            )

    async def heartbeat(
        self, consumer: str, jobs: Iterable[Job], slots: int, busy: int, tasks: Sequence[str] = ()
    ) -> list[str]:
        now = time.time()
        expires = now + self.visibility_timeout
        info = json.dumps(
            {"slots": slots, "busy": busy, "lastSeen": round(now, 3), "expiresAt": round(expires, 3)}
        )
        command = Heartbeat.command(
            self.keys,
            consumer=consumer,
            info=info,
            tasks=tasks,
            expires_ms=int(expires * 1000),
            entry_ids=[job.token for job in jobs],
        )
        with self._errors():
            return await self._function(Heartbeat, command)

    async def unregister(self, consumer: str) -> None:
        with self._errors():
            await self._function(Unregister, Unregister.command(self.keys, consumer=consumer))

    # -- results, dead letters, status, lifecycle ------------------------
    async def result(self, id: str, timeout: float | None = None) -> Result | None:
        """The job's result; with a `timeout`, waits for it without polling: the last entries of the
        pool's results and ended streams are noted before the result key is read, so one blocking
        XREAD of both from there sees the job's completion whenever it comes. None at once for a job
        that is (or becomes) dead-lettered or cancelled, or when the timeout passes."""
        if timeout is None or timeout <= 0:
            return await self._stored_result(id)
        deadline = time.monotonic() + timeout
        k = self.keys
        with self._errors():
            marks: dict[str, str] = {}
            for stream in (k.results, k.ended):
                last = await self._call(self.redis.xrevrange, stream, count=1)
                marks[stream] = last[0][0] if last else "0-0"
            found = await self._stored_result(id)
            if found is not None or await self._ended_without_result(id):
                return found
            while (remaining := deadline - time.monotonic()) > 0:
                # each read blocks within the client's socket timeout
                block_ms = max(1, int(min(remaining, RESULT_BLOCK_SECONDS) * 1000))
                reply = await self._call(self.redis.xread, marks, count=1000, block=block_ms)
                for stream, entries in streams_entries(reply).items():
                    for entry_id, fields in entries:
                        marks[stream] = entry_id
                        if stream == k.results and fields.get(RESULT.id) == id:
                            return Result(
                                id, decode_json(fields[RESULT.result]), int(fields[RESULT.attempts])
                            )
                        if stream == k.ended and fields.get(ENDED.id) == id:
                            return None
        # its entry may have been trimmed (the results cap) before it was read
        return await self._stored_result(id)

    async def _stored_result(self, id: str) -> Result | None:
        with self._errors():
            stored = await self._call(self.redis.get, self.keys.result(id))
        if stored is None:
            return None
        attempts, _, text = stored.partition(":")
        return Result(id, decode_json(text), int(attempts))

    async def _ended_without_result(self, id: str) -> bool:
        """Whether the job was dead-lettered or cancelled (among the pool's last cancelled ones)."""
        return bool(
            await self._call(self.redis.hexists, self.keys.dead_ids, id)
            or await self._call(self.redis.zscore, self.keys.cancelled, id) is not None
        )

    async def results(self, follow: bool = False) -> AsyncIterator[Result]:
        last = "0-0"
        while True:
            with self._errors():
                reply = await self._call(
                    self.redis.xread, {self.keys.results: last}, count=1000, block=1000 if follow else None
                )
            entries = stream_entries(reply)
            for entry_id, fields in entries:
                last = entry_id
                yield Result(
                    fields[RESULT.id], decode_json(fields[RESULT.result]), int(fields[RESULT.attempts])
                )
            if not entries and not follow:
                return

    async def dead_letters(self) -> list[DeadJob]:
        with self._errors():
            entries = await self._call(self.entries.xrange, self.keys.dead)
        dead = []
        for _entry_id, raw in entries:
            # a payload that was not UTF-8 was dead-lettered as it was: shown with \x escapes
            f = {readable(name): readable(value) for name, value in raw.items()}
            try:
                payload = decode_json(f.get(DEAD.payload))
            except (ValueError, RecursionError):
                payload = f.get(DEAD.payload)
            dead.append(
                DeadJob(
                    f.get(DEAD.id, ""),
                    payload,
                    int(f.get(DEAD.attempts, 0)),
                    f.get(DEAD.error, ""),
                    int(f.get(DEAD.time, 0)) / 1000,
                    f.get(DEAD.task, ""),
                    decode_options(f.get(DEAD.options)),
                )
            )
        return dead

    async def job(self, id: str) -> JobState | None:
        with self._errors():
            reply = await self._function(
                JobLookup, JobLookup.command(self.keys, id=id, scan_limit=JOB_SCAN_LIMIT)
            )
        return job_state(id, reply)

    async def cancel(self, ids: Sequence[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(ids))
        outcomes: list[str] = []
        for start in range(0, len(wanted), CANCEL_CHUNK):
            with self._errors():
                outcomes += await self._function(
                    Cancel,
                    Cancel.command(
                        self.keys, ids=wanted[start : start + CANCEL_CHUNK], scan_limit=JOB_SCAN_LIMIT
                    ),
                    write=True,
                )
        return dict(zip(wanted, outcomes))

    async def replay(self, ids: Sequence[str] | None = None) -> int:
        with self._errors():
            return await self._function(Replay, Replay.command(self.keys, ids=ids))

    async def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        with self._errors():
            return await self._function(Purge, Purge.command(self.keys, ids=ids))

    async def stats(self) -> QueueStats:
        with self._errors():
            reply = await self._function(
                Stats,
                Stats.command(
                    self.keys, now_ms=int(time.time() * 1000), horizon_ms=int(SCALE_UP_HORIZON_SECONDS * 1000)
                ),
            )
        return stats_from_reply(*reply)

    async def sample_memory(self) -> MemorySample:
        """Store Redis's memory figures in the pool's memory hash, for the submits of users that
        may not read INFO themselves; needs a user that may (the operator's)."""
        with self._errors():
            return await self._function(SampleMemory, SampleMemory.command(self.keys))

    async def upkeep(self, *, full: bool = True) -> tuple[str, ...]:
        with self._errors():
            if full:
                try:  # the sample tenants' submits go by (they may not read INFO themselves)
                    await self._function(SampleMemory, SampleMemory.command(self.keys))
                except NoPermissionError:  # a URL of the user's own without INFO: submits go by Redis's limit
                    pass
            return (await self._call(upkeep.upkeep, self.redis, self.keys, full=full)).problems

    async def delete_all(self) -> None:
        with self._errors():
            await self._call(self._unlink_pool_keys)

    async def _unlink_pool_keys(self) -> None:
        """Scan (every master of a cluster) for the pool's keys and unlink them; idempotent, so
        `_call` may run it again on fresh connections. A URL naming a db other than 0 gave the
        pool's users SELECT, so every db is scanned (where this URL's user may list them)."""
        await self._unlink_in(self.redis)
        if not connection.names_a_db(self.url):
            return
        try:
            databases = int((await self.redis.config_get("databases"))["databases"])
        except RedisError:  # not the admin's URL: its users got no SELECT from the operator
            return
        for db in range(databases):
            other = connection.connect(
                connection.with_db(self.url, db), decode_responses=True, **self._options
            )
            try:
                await self._unlink_in(other)
            finally:
                await other.aclose()

    async def _unlink_in(self, client: Any) -> None:
        batch: list[str] = []
        async for key in client.scan_iter(match=self.keys.scan_pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)

    async def close(self) -> None:
        for client in (self.redis, self.entries):
            with contextlib.suppress(Exception):
                await client.aclose()
        if self._blocking is not None:
            self._blocking.close()
