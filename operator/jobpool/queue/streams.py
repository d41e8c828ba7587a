"""The Redis Streams implementation of `Queue`: one stream and one consumer group per pool.

Every step that must be atomic is one Lua script (see `scripts.py`); this module only
encodes arguments, decodes replies and turns Redis errors into `QueueError`s.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, AsyncIterator, Callable, Iterable, Sequence

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, NoScriptError, OutOfMemoryError, RedisError, ResponseError
from redis.retry import Retry

from . import connection, scripts, upkeep
from .base import (DeadJob, Job, PayloadTooLarge, Queue, QueueError, QueueFull, QueueStats,
                   QueueUnavailable, Result, WorkerInfo)
from .codec import (DEFAULT_MAX_PAYLOAD_BYTES, RawJSON, check_job_id, check_queue_url,
                    decode_json, encode_json, new_job_ids, outcome_of_failure, payload_size,
                    redact_url, retry_delay, storable_text)
from .keys import GROUP, RELEASED_CONSUMER, PoolKeys

SUBMIT_CHUNK = 1000          # jobs per submit script call
LARGE_PAYLOAD = DEFAULT_MAX_PAYLOAD_BYTES // 4   # characters that may be over the default limit
ACK_CHUNK = 500
DEFAULT_VISIBILITY_TIMEOUT = 30.0
DEFAULT_RESULT_TTL = 24 * 3600.0
DEFAULT_RESULTS_CAP = 100_000
DEFAULT_DEAD_LETTER_CAP = 10_000
# Submits stop when Redis memory would pass this share of its maxmemory: the rest is kept for
# what workers write (results, dead letters, retries) while submits are refused.
SUBMIT_MEMORY_SHARE = 0.9
# spec.queue.durability: replicated makes submit and ack wait this long for one replica; the
# setting is read from the pool's config at most this often.
REPLICA_WAIT_MS = 1000
DURABILITY_REFRESH_SECONDS = 5.0
REPLICATED = "replicated"


def open_queue(url: str, namespace: str, pool: str, **options: Any) -> "RedisStreamsQueue":
    """The queue of pool `namespace/pool` at `url`; raises QueueError for a bad URL.
    No connection is made until the first operation."""
    check_queue_url(url)
    return RedisStreamsQueue(url, namespace, pool, **options)


class RedisStreamsQueue(Queue):
    def __init__(self, url: str, namespace: str, pool: str, *,
                 visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
                 result_ttl: float = DEFAULT_RESULT_TTL, results_cap: int = DEFAULT_RESULTS_CAP,
                 dead_letter_cap: int = DEFAULT_DEAD_LETTER_CAP, connect_timeout: float = 5.0):
        if not namespace or not pool:
            raise QueueError("namespace and pool must be non-empty")
        self.url = url
        self.namespace = namespace
        self.pool = pool
        self.keys = PoolKeys(namespace, pool)
        self.visibility_timeout = visibility_timeout
        self.result_ttl = result_ttl
        self.results_cap = results_cap
        options = dict(socket_connect_timeout=connect_timeout,
                       socket_timeout=max(10.0, connect_timeout))
        if connection.topology(url) != connection.CLUSTER:   # a cluster client retries by itself
            options.update(retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self.dead_letter_cap = dead_letter_cap
        self._options = options
        self._blocking: Any = None        # the sync client of submit_blocking, made on first use
        self._direct_submits = 0          # one-job submits under way on their own
        self._gathered: list[tuple[Any, str | None, asyncio.Future]] = []
        self._gatherer: asyncio.Task | None = None
        try:
            self.redis = connection.connect(url, decode_responses=True, **options)
            # stream entries as bytes: any producer may have written them, valid UTF-8 or not
            self.entries = connection.connect(url, decode_responses=False, **options)
        except ValueError as exc:
            raise QueueError(f"invalid queue URL {redact_url(url)!r}: {exc}") from None
        self._submit = self.redis.register_script(scripts.SUBMIT)
        self._fetch = self.entries.register_script(scripts.FETCH)
        self._ack = self.redis.register_script(scripts.ACK)
        self._ack_then_fetch = self.entries.register_script(scripts.ACK_THEN_FETCH)
        self._fail = self.redis.register_script(scripts.FAIL)
        self._release = self.redis.register_script(scripts.RELEASE)
        self._heartbeat = self.redis.register_script(scripts.HEARTBEAT)
        self._unregister = self.redis.register_script(scripts.UNREGISTER)
        self._stats = self.redis.register_script(scripts.STATS)
        self._replay = self.redis.register_script(scripts.REPLAY)
        self._purge = self.redis.register_script(scripts.PURGE)
        self._trim_results = self.redis.register_script(scripts.TRIM_RESULTS)
        self._durability: tuple[float, bool] | None = None   # (read at, replicated)

    def __repr__(self) -> str:
        return f"RedisStreamsQueue({redact_url(self.url)!r}, {self.namespace!r}, {self.pool!r})"

    @contextlib.contextmanager
    def _errors(self):
        """Redis errors as one-line QueueErrors that say where and what."""
        try:
            yield
        except connection.UNAVAILABLE as exc:
            reason = str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__
            raise QueueUnavailable(
                f"cannot reach the queue at {redact_url(self.url)}: {reason}") from None
        except OutOfMemoryError:
            raise QueueFull(f"queue {redact_url(self.url)} is out of memory: Redis refused a "
                            f"write on pool {self.namespace}/{self.pool} because its used memory "
                            f"is above its maxmemory; let the workers catch up, shorten result "
                            f"retention (spec.results) or raise the Redis maxmemory") from None
        except RedisError as exc:
            raise QueueError(f"queue {redact_url(self.url)} refused an operation on pool "
                             f"{self.namespace}/{self.pool}: {exc}") from None

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one command in a task of its own, so that cancelling the caller ends its wait at
        once: redis-py wraps socket writes in asyncio.wait_for, which on Python 3.11 swallows a
        cancellation that arrives as the write completes. An abandoned command runs to its end."""
        command = asyncio.ensure_future(self._command(function, *args, **kwargs))
        command.add_done_callback(_consume_outcome)
        return await asyncio.shield(command)

    async def _command(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one command, once more on a fresh connection if a pooled one went stale (the
        server restarted); a second failure means the queue is down."""
        try:
            return await function(*args, **kwargs)
        except ConnectionError:
            await self._drop_connections()
            return await function(*args, **kwargs)

    async def _drop_connections(self) -> None:
        await connection.drop_connections(self.redis)
        await connection.drop_connections(self.entries)

    # -- configuration ---------------------------------------------------
    async def configure(self, *, max_length: int | None, max_payload_bytes: int | None = None,
                        durability: str | None = None) -> None:
        settings = {"max_length": max_length, "max_payload_bytes": max_payload_bytes,
                    "durability": durability if durability == REPLICATED else None}
        with self._errors():
            for field, value in settings.items():
                if value:
                    await self._call(self.redis.hset, self.keys.config, field,
                                     value if isinstance(value, str) else int(value))
                else:
                    await self._call(self.redis.hdel, self.keys.config, field)

    async def _replicated(self) -> bool:
        """Whether the pool asks for replicated writes (spec.queue.durability), as recently read."""
        known = self._durability_known()
        if known is None:
            stored = await self._call(self.redis.hget, self.keys.config, "durability")
            self._durability = (time.monotonic(), stored == REPLICATED)
            return self._durability[1]
        return known

    def _durability_known(self) -> bool | None:
        """Whether the pool's writes are replicated, if read recently; None: read it again."""
        if self._durability is None or time.monotonic() - self._durability[0] > DURABILITY_REFRESH_SECONDS:
            return None
        return self._durability[1]

    async def _write(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a script that a producer or a worker is told succeeded; under replicated durability
        only once one replica has its writes, so a failover cannot take them back."""
        if not await self._replicated():
            return await script(keys=keys, args=args)
        reply, replicas = await connection.run_replicated(script, keys, args, REPLICA_WAIT_MS)
        if replicas < 1:
            raise QueueUnavailable(
                f"queue {redact_url(self.url)}: no replica confirmed a write of pool "
                f"{self.namespace}/{self.pool} within {REPLICA_WAIT_MS} ms (spec.queue.durability: "
                f"replicated); it may be done: retrying it with the same job ids is safe")
        return reply

    async def _max_payload_bytes(self) -> int:
        with self._errors():
            stored = await self._call(self.redis.hget, self.keys.config, "max_payload_bytes")
        return int(stored) if stored else DEFAULT_MAX_PAYLOAD_BYTES

    # -- producers -------------------------------------------------------
    async def submit_many(self, payloads: Sequence[Any], ids: Sequence[str | None] | None = None,
                          *, wait: bool = True, timeout: float | None = None,
                          progress: Callable[[int], None] | None = None) -> list[str]:
        if ids is not None and len(ids) != len(payloads):
            raise QueueError(f"{len(payloads)} payloads but {len(ids)} ids")
        job_ids = new_job_ids(len(payloads))
        given = ["0"] * len(payloads)
        if ids is not None:
            for index, job_id in enumerate(ids):
                if job_id is not None:
                    job_ids[index] = check_job_id(job_id, index)
                    given[index] = "1"
        encode = encode_json
        try:
            encoded = [encode(payload) for payload in payloads]
        except QueueError:
            for index, payload in enumerate(payloads):
                try:
                    encode(payload)
                except QueueError as exc:
                    raise QueueError(f"job {index}: {exc}") from None
            raise
        if len(encoded) > SUBMIT_CHUNK or any(len(text) > LARGE_PAYLOAD for text in encoded):
            # the script checks one chunk: a later chunk's refusal would come after earlier
            # ones, and a payload far over the limit need not travel to Redis to be refused
            check_payload_sizes(encoded, await self._max_payload_bytes())
        deadline = None if timeout is None else time.monotonic() + timeout
        start = 0
        pause = 0.01
        while start < len(job_ids):
            end = min(start + SUBMIT_CHUNK, len(job_ids))
            blob = "\0".join([x for triple in zip(job_ids[start:end], given[start:end],
                                                   encoded[start:end]) for x in triple])
            args = [GROUP, "1" if wait else "0", blob, DEFAULT_MAX_PAYLOAD_BYTES,
                    SUBMIT_MEMORY_SHARE]
            keys = self._submit_keys(job_ids[start:end], given[start:end])
            with self._errors():
                try:
                    processed, _enqueued, room, *refusal = await self._write(self._submit, keys, args)
                except ConnectionError:
                    # the chunk may have run before the connection dropped: the re-send
                    # dedups every id, generated ones too (they were made here, not in Redis)
                    await connection.drop_connections(self.redis)
                    args[2] = "\0".join([x for job_id, payload in zip(job_ids[start:end],
                                                                        encoded[start:end])
                                          for x in (job_id, "1", payload)])
                    keys = self._submit_keys(job_ids[start:end], ["1"] * (end - start))
                    processed, _enqueued, room, *refusal = await self._write(self._submit, keys, args)
            if refusal:
                raise self._refusal(refusal, start, job_ids)
            start += processed
            if progress is not None and processed:
                progress(processed)
            if start < end:
                if not wait:
                    raise QueueFull(
                        f"queue {self.namespace}/{self.pool} is full: its maxLength of waiting "
                        f"jobs is reached ({room} free for {end - start} more); submitted "
                        f"{start} of {len(job_ids)}; retry later or submit with waiting",
                        job_ids[:start])
                if deadline is not None and time.monotonic() > deadline:
                    raise QueueFull(
                        f"queue {self.namespace}/{self.pool} stayed full for {timeout}s "
                        f"(maxLength reached); submitted {start} of {len(job_ids)}",
                        job_ids[:start])
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.25)
            else:
                pause = 0.01
        return job_ids

    def _refusal(self, refusal: list[Any], start: int, job_ids: list[str]) -> QueueError:
        """The error of a chunk the submit script refused as a whole."""
        kind, *figures = refusal
        if kind == "payload":
            index, size, limit = figures
            return PayloadTooLarge(start + index, size, limit, job_ids[:start])
        used, max_memory = figures
        return QueueFull(
            f"queue {self.namespace}/{self.pool} refused the submit: Redis memory is nearly "
            f"full ({used / 2**20:.1f} MiB used of its maxmemory {max_memory / 2**20:.1f} MiB; "
            f"submits stop at {SUBMIT_MEMORY_SHARE:.0%}, the rest is kept for the workers' "
            f"results); submitted {start} of {len(job_ids)}; let the workers catch up, shorten "
            f"result retention (spec.results) or raise the Redis maxmemory", job_ids[:start])

    def _submit_keys(self, job_ids: Sequence[str], given: Sequence[str]) -> list[str]:
        """The script's keys: the pool's, then the result key of each caller-given id."""
        k = self.keys
        return [k.stream, k.live, k.dead_ids, k.config, k.counters, k.memory,
                *(k.result(job_id) for job_id, flag in zip(job_ids, given) if flag == "1")]

    async def submit(self, payload: Any, id: str | None = None, *, wait: bool = True) -> str:
        """One job. Submits that overlap (concurrent tasks) travel together: while one is under
        way on its own, the next ones gather and go as one script call (up to SUBMIT_CHUNK)."""
        if not wait or (self._direct_submits == 0 and self._gatherer is None):
            self._direct_submits += 1
            try:
                return (await self.submit_many([payload], [id], wait=wait))[0]
            finally:
                self._direct_submits -= 1
        try:
            text = encode_json(payload)
            if id is not None:
                check_job_id(id, 0)
        except QueueError as exc:
            raise QueueError(f"job 0: {exc}") from None
        if len(text) > LARGE_PAYLOAD:     # checked against the pool's limit before it travels
            return (await self.submit_many([payload], [id]))[0]
        submitted = asyncio.get_running_loop().create_future()
        self._gathered.append((RawJSON(text), id, submitted))
        if self._gatherer is None:
            self._gatherer = asyncio.ensure_future(self._submit_gathered())
        return await submitted

    async def _submit_gathered(self) -> None:
        batch: list[tuple[Any, str | None, asyncio.Future]] = []
        try:
            while self._gathered:
                batch = self._gathered[:SUBMIT_CHUNK]
                del self._gathered[:SUBMIT_CHUNK]
                await self._submit_batch(batch)
        finally:
            self._gatherer = None
            for _, _, submitted in batch + self._gathered:   # unsettled only if this was cancelled
                submitted.cancel()

    async def _submit_batch(self, batch: list[tuple[Any, str | None, asyncio.Future]]) -> None:
        """Submit gathered jobs; each caller gets its id or the error its own submit would get."""
        try:
            job_ids = await self.submit_many([job[0] for job in batch], [job[1] for job in batch])
        except PayloadTooLarge as exc:   # the chunk was refused: that job fails, the rest go again
            settle(batch[exc.index][2], error=PayloadTooLarge(0, exc.size, exc.limit))
            self._gathered[:0] = batch[:exc.index] + batch[exc.index + 1:]
            return
        except QueueFull as exc:         # memory: each one alone, for its own error
            for job_id, (_, _, submitted) in zip(exc.submitted_ids, batch):
                settle(submitted, job_id)
            for payload, id, submitted in batch[len(exc.submitted_ids):]:
                try:
                    settle(submitted, (await self.submit_many([payload], [id]))[0])
                except QueueError as error:
                    settle(submitted, error=error)
            return
        except QueueError as exc:        # unreachable or refused: the same for every one
            for _, _, submitted in batch:
                settle(submitted, error=type(exc)(str(exc)))
            return
        except Exception as exc:         # a bug: every caller sees it, none waits forever
            for _, _, submitted in batch:
                settle(submitted, error=exc)
            return
        for job_id, (_, _, submitted) in zip(job_ids, batch):
            settle(submitted, job_id)

    def submit_blocking(self, payload: Any, id: str | None = None, *,
                        wait: bool = True) -> tuple[str | None, bool]:
        """The sync SDK's one-job submit over a sync connection: an event loop's round trip
        costs the client three times the CPU. Anything but a plain success (a bad payload or
        id, a full queue, a refusal, a lost connection) is left to `submit`, which reports it."""
        try:
            text = encode_json(payload)
            job_id = new_job_ids(1)[0] if id is None else check_job_id(id, 0)
        except QueueError:
            return id, False
        # cluster and sentinel URLs and replicated pools take the async path, which routes and WAITs
        if connection.topology(self.url) != connection.SINGLE or self._durability_known() is not False:
            return id, False
        if len(text) > LARGE_PAYLOAD:
            return job_id, False
        given = "0" if id is None else "1"
        args = [GROUP, "1" if wait else "0", f"{job_id}\0{given}\0{text}",
                DEFAULT_MAX_PAYLOAD_BYTES, SUBMIT_MEMORY_SHARE]
        keys = self._submit_keys([job_id], [given])
        try:
            if self._blocking is None:
                self._blocking = redis.Redis.from_url(self.url, decode_responses=True,
                                                      **self._options)
            # EVALSHA by hand: redis-py's Script wrapper costs a sixth of the call
            call = ("EVALSHA", self._submit.sha, len(keys), *keys, *args)
            try:
                reply = self._blocking.execute_command(*call)
            except NoScriptError:
                self._blocking.script_load(scripts.SUBMIT)
                reply = self._blocking.execute_command(*call)
            processed, _enqueued, _room, *refusal = reply
        except (redis.RedisError, OSError, ValueError):
            return job_id, False
        return job_id, processed == 1 and not refusal

    # -- workers ---------------------------------------------------------
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
            jobs = await self._read_blocking(consumer, count, min(block or remaining_ms,
                                                                  remaining_ms))
            if jobs or not waits_for_retry:
                return jobs

    async def _fetch_now(self, consumer: str, count: int, block_ms: int) -> tuple[list[Job], int | None]:
        k = self.keys
        with self._errors():
            reply = await self._call(self._fetch,
                keys=[k.stream, k.delayed, k.delayed_jobs, k.reclaim_gate, k.reclaim_cursor],
                args=[GROUP, consumer, count, int(self.visibility_timeout * 1000),
                      self._reclaim_interval_ms])
        return self._fetched(reply, consumer)

    @property
    def _reclaim_interval_ms(self) -> int:
        return max(50, min(1000, int(self.visibility_timeout * 250)))

    def _fetched(self, reply: list, consumer: str) -> tuple[list[Job], int]:
        """The jobs of a fetch script's reply, and the ms until the next thing to fetch is due."""
        now_ms, next_due, reclaimed, fresh = reply
        jobs = [job_from_entry(entry_id, fields, int(deliveries), consumer)
                for entry_id, fields, deliveries in reclaimed]
        jobs += [job_from_entry(entry_id, fields, 1, consumer) for entry_id, fields in fresh]
        # the next reclaim pass matters too: stale entries of dead workers wait for it
        interval = self._reclaim_interval_ms
        next_event = interval if next_due < 0 else min(interval, max(1, int(next_due) - int(now_ms)))
        return jobs, next_event

    async def _read_blocking(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        k = self.keys
        with self._errors():
            try:
                reply = await self._call(self.entries.xreadgroup, GROUP, consumer,
                                         {k.stream: ">"}, count=count, block=max(1, block_ms))
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                with contextlib.suppress(ResponseError):
                    await self._call(self.redis.xgroup_create, k.stream, GROUP, id="0", mkstream=True)
                return []
        return [job_from_entry(entry_id, fields, 1, consumer)
                for entry_id, fields in stream_entries(reply)]

    async def ack_many(self, done: Sequence[tuple[Job, Any]]) -> tuple[int, int]:
        """Returns (first completions, duplicate completions)."""
        succeeded = duplicates = 0
        for start in range(0, len(done), ACK_CHUNK):
            batch = done[start:start + ACK_CHUNK]
            with self._errors():
                first, again, excess = await self._call(self._write, self._ack, self._ack_keys(batch),
                                                        self._ack_args(batch))
                await self._trim_over_cap(excess)
            succeeded += first
            duplicates += again
        return succeeded, duplicates

    async def ack_then_fetch(self, done: Sequence[tuple[Job, Any]], consumer: str,
                             count: int) -> tuple[int, int, list[Job]]:
        with self._errors():
            # replicated: fetch once the ack is confirmed; jobs fetched with an ack refused after
            # the script ran would be lost to the worker until the visibility timeout, a delivery burnt
            separate = count <= 0 or len(done) > ACK_CHUNK or await self._replicated()
        if separate:
            return await super().ack_then_fetch(done, consumer, count)
        k = self.keys
        ack_keys = self._ack_keys(done)
        with self._errors():
            (first, again, excess), fetched = await self._call(
                self._write, self._ack_then_fetch,
                [*ack_keys[:4], k.delayed, k.delayed_jobs, k.reclaim_gate, k.reclaim_cursor,
                 *ack_keys[4:]],
                [*self._ack_args(done), consumer, count, int(self.visibility_timeout * 1000),
                 self._reclaim_interval_ms])
            await self._trim_over_cap(excess)
        return first, again, self._fetched(fetched, consumer)[0]

    def _ack_keys(self, done: Sequence[tuple[Job, Any]]) -> list[str]:
        """The ACK script's keys: the pool's, then the result key of each job."""
        k = self.keys
        return [k.stream, k.live, k.counters, k.results, *(k.result(job.id) for job, _ in done)]

    def _ack_args(self, done: Sequence[tuple[Job, Any]]) -> list[Any]:
        fields: list[str] = []
        for job, result in done:
            fields += (job.token, job.consumer, job.id, str(job.attempts),
                       encode_json(result, "result"))
        return [GROUP, int(self.result_ttl * 1000), self.results_cap, "\0".join(fields)]

    async def _trim_over_cap(self, excess: int) -> None:
        if excess > 0:
            await self._call(self._trim_oldest_results, excess)

    async def _trim_oldest_results(self, excess: int) -> None:
        """Remove the oldest results over the cap with their result keys (a bounded step)."""
        oldest = await self.redis.xrange(self.keys.results, count=min(excess, 1000))
        if oldest:
            await self._trim_results(
                keys=[self.keys.results, *(self.keys.result(fields["id"]) for _, fields in oldest)],
                args=[entry_id for entry_id, _ in oldest])

    async def fail(self, job: Job, error: str, *, max_attempts: int, backoff: float,
                   max_backoff: float) -> str:
        outcome = outcome_of_failure(job.attempts, max_attempts)
        delay_ms = int(retry_delay(job.attempts, backoff, max_backoff) * 1000)
        k = self.keys
        with self._errors():
            return await self._call(self._fail, 
                keys=[k.stream, k.live, k.delayed, k.delayed_jobs, k.dead, k.dead_ids,
                      k.counters, k.result(job.id)],
                args=[GROUP, job.token, job.consumer, job.id, job.attempts,
                      job.payload_text.encode("utf-8", "surrogateescape"),   # bytes as fetched
                      storable_text(error[:8000]), outcome, delay_ms,
                      "1" if job.replayed else "0", self.dead_letter_cap])

    async def release(self, consumer: str, jobs: Iterable[Job]) -> int:
        tokens = [job.token for job in jobs]
        if not tokens:
            return 0
        k = self.keys
        with self._errors():
            return await self._call(self._release,
                                    keys=[k.stream, k.reclaim_gate, k.reclaim_cursor],
                                    args=[GROUP, RELEASED_CONSUMER, consumer, *tokens])

    async def heartbeat(self, consumer: str, jobs: Iterable[Job], slots: int, busy: int) -> None:
        now = time.time()
        info = json.dumps({"slots": slots, "busy": busy, "lastSeen": round(now, 3),
                           "expiresAt": round(now + self.visibility_timeout, 3)})
        with self._errors():
            await self._call(self._heartbeat, keys=[self.keys.stream, self.keys.workers],
                                  args=[GROUP, consumer, info, *(job.token for job in jobs)])

    async def unregister(self, consumer: str) -> None:
        with self._errors():
            await self._call(self._unregister, keys=[self.keys.stream, self.keys.workers],
                                   args=[GROUP, consumer])

    # -- results, dead letters, status, lifecycle ------------------------
    async def result(self, id: str, timeout: float | None = None) -> Result | None:
        key = self.keys.result(id)
        deadline = time.monotonic() + (timeout or 0)
        pause = 0.005
        while True:
            with self._errors():
                stored = await self._call(self.redis.get, key)
            if stored is not None:
                attempts, _, text = stored.partition(":")
                return Result(id, decode_json(text), int(attempts))
            if timeout is None or time.monotonic() >= deadline:
                return None
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.1)

    async def results(self, follow: bool = False) -> AsyncIterator[Result]:
        last = "0-0"
        while True:
            with self._errors():
                reply = await self._call(self.redis.xread, {self.keys.results: last}, count=1000,
                                               block=1000 if follow else None)
            entries = stream_entries(reply)
            for entry_id, fields in entries:
                last = entry_id
                yield Result(fields["id"], decode_json(fields["r"]), int(fields["a"]))
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
                payload = decode_json(f.get("p"))
            except (ValueError, RecursionError):
                payload = f.get("p")
            dead.append(DeadJob(f.get("id", ""), payload, int(f.get("a", 0)), f.get("e", ""),
                                int(f.get("t", 0)) / 1000))
        return dead

    async def replay(self, ids: Sequence[str] | None = None) -> int:
        k = self.keys
        with self._errors():
            return await self._call(self._replay, keys=[k.stream, k.live, k.dead, k.dead_ids],
                                    args=[GROUP, "1" if ids is None else "0", *(ids or ())])

    async def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        with self._errors():
            return await self._call(self._purge, keys=[self.keys.dead, self.keys.dead_ids],
                                     args=["1" if ids is None else "0", *(ids or ())])

    async def stats(self) -> QueueStats:
        k = self.keys
        with self._errors():
            length, pending, delayed, dead, counters, workers, held = await self._call(self._stats,
                keys=[k.stream, k.delayed, k.dead, k.counters, k.workers],
                args=[GROUP, int(time.time() * 1000)])
        return stats_from_reply(length, pending, delayed, dead, counters, workers, held)

    async def upkeep(self, *, full: bool = True) -> tuple[str, ...]:
        with self._errors():
            return (await self._call(upkeep.upkeep, self.redis, self.keys, self.url, full=full)).problems

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
        except RedisError:   # not the admin's URL: its users got no SELECT from the operator
            return
        for db in range(databases):
            other = connection.connect(connection.with_db(self.url, db), decode_responses=True, **self._options)
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


def readable(value: bytes) -> str:
    """Bytes as text; what is not UTF-8 shows as \\x escapes."""
    return value.decode("utf-8", "backslashreplace")


def settle(submitted: asyncio.Future, job_id: str | None = None, *,
           error: BaseException | None = None) -> None:
    """Give a gathered submit its outcome, unless its caller stopped waiting."""
    if submitted.done():
        return
    if error is not None:
        submitted.set_exception(error)
    else:
        submitted.set_result(job_id)


def _consume_outcome(command: asyncio.Future) -> None:
    """Retrieve the error of a command whose caller was cancelled: it is nobody's to report."""
    if not command.cancelled():
        command.exception()


def check_payload_sizes(encoded: Sequence[str], limit: int) -> None:
    """Raise PayloadTooLarge for the first encoded payload over `limit` bytes."""
    for index, text in enumerate(encoded):
        if len(text) > limit // 4 and payload_size(text) > limit:
            raise PayloadTooLarge(index, payload_size(text), limit)


def stream_entries(reply: Any) -> list:
    """The entries of a one-stream XREAD/XREADGROUP reply (a list in RESP2, a dict in RESP3)."""
    if not reply:
        return []
    return reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]


def job_from_entry(entry_id: bytes, fields: Any, deliveries: int, consumer: str) -> Job:
    """A stream entry, read as bytes, as a Job. An entry that cannot be run (whoever wrote it)
    still becomes a Job, marked with `payload_error`, so the worker dead-letters it with that
    error; its payload bytes travel on unchanged (`payload_text` decodes them losslessly)."""
    entry = entry_id.decode()
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2]))
    job_id, id_error = job_id_of(entry, fields.get(b"id"))
    text, payload, payload_error = payload_of(fields.get(b"p"))
    try:
        used = int(fields.get(b"a", 0))
    except ValueError:
        used = 0
    try:
        enqueued_at = int(fields.get(b"t", 0)) / 1000
    except ValueError:
        enqueued_at = 0.0
    return Job(id=job_id, payload=payload, attempts=used + deliveries,
               enqueued_at=enqueued_at, token=entry, payload_text=RawJSON(text),
               payload_error=id_error or payload_error, replayed=fields.get(b"r") == b"1",
               consumer=consumer)


def job_id_of(entry: str, raw: bytes | None) -> tuple[str, str | None]:
    """The job id of an entry and what is wrong with it; the entry id stands in for an id
    that is missing or unusable."""
    if not raw:
        return entry, None
    try:
        job_id = raw.decode()
    except UnicodeDecodeError:
        return entry, (f"queue entry {entry}: its id {raw!r} is not valid UTF-8; the entry id "
                       f"stands for it")
    if "\0" in job_id:   # only a foreign producer could write this; NUL separates ack fields
        return entry, None
    return job_id, None


def payload_of(raw: bytes | None) -> tuple[str, Any, str | None]:
    """(the payload text as stored, the payload, what is wrong with it)."""
    if raw is None:
        return "", None, "the queue entry has no payload field 'p'"
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        return (raw.decode("utf-8", "surrogateescape"), None,
                f"payload is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at position "
                f"{exc.start}): {exc.reason}")
    try:
        return text, json.loads(text), None
    except ValueError as exc:
        return text, None, f"payload is not valid JSON: {exc}"
    except RecursionError:
        return text, None, "payload is nested too deeply to decode"


def stats_from_reply(length: int, pending: int, delayed: int, dead: int,
                     counters: list[str], workers: list[str], held: list[str]) -> QueueStats:
    """A worker's busy slots are at least the jobs it holds unacknowledged, read with the in-flight
    count: its own published count lags behind a burst by up to a publish interval."""
    count = dict(zip(counters[::2], counters[1::2]))
    unacknowledged = {name: int(n) for name, n in zip(held[::2], held[1::2])}
    infos = []
    for name, text in zip(workers[::2], workers[1::2]):
        info = json.loads(text)
        slots = int(info.get("slots", 0))
        # the published count also covers a slot whose timed-out sync thread still runs (its job is
        # acknowledged); a restarted worker may hold its former life's jobs until they are reclaimed
        busy = max(int(info.get("busy", 0)), unacknowledged.get(name, 0))
        infos.append(WorkerInfo(name, slots, min(busy, slots), float(info.get("lastSeen", 0))))
    return QueueStats(
        waiting=max(0, length - pending), in_flight=pending, delayed=delayed, dead_letter=dead,
        submitted=int(count.get("submitted", 0)), succeeded=int(count.get("succeeded", 0)),
        retried=int(count.get("retried", 0)), dead_lettered=int(count.get("dead_lettered", 0)),
        workers=tuple(sorted(infos, key=lambda w: w.id)),
        duplicates=int(count.get("duplicates", 0)))
