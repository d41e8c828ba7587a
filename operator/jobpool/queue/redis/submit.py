"""The submit path of the Redis queue: jobs encoded here and sent in chunks to the library's
submit function; one-job submits that overlap travel together; the sync SDK's one-job submit."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError
from redis.retry import Retry

from ...contract import DEFAULT_MAX_PAYLOAD_BYTES
from ...names import check_task
from .. import connection
from ..base import JobOptions, PayloadTooLarge, QueueError, QueueFull, UnknownTask
from ..codec import (
    RawJSON,
    check_job_id,
    check_options,
    encode_json,
    encode_options,
    new_job_ids,
    payload_size,
)
from .calls import RedisCalls
from .functions import Submit

SUBMIT_CHUNK = 1000  # jobs per submit function call
# and at most this many characters of payloads (one larger payload goes alone): the blob is one
# Redis bulk string, held in the submitter's buffer, which maxmemory-clients bounds (redis/server.py)
SUBMIT_CHUNK_CHARACTERS = 1 << 20
LARGE_PAYLOAD = DEFAULT_MAX_PAYLOAD_BYTES // 4  # characters that may be over the default limit
# Submits stop when Redis memory would pass this share of its maxmemory: the rest is kept for
# what workers write (results, dead letters, retries) while submits are refused.
SUBMIT_MEMORY_SHARE = 0.9


class SubmitPath(RedisCalls):
    """The producer's side of `RedisStreamsQueue`."""

    _options: dict[str, Any]
    _blocking: Any  # the sync client of submit_blocking, made on first use
    _direct_submits: int  # one-job submits under way on their own
    _gathered: list[tuple[Any, str | None, str, JobOptions, str, asyncio.Future]]
    _gatherer: asyncio.Task | None

    async def _max_payload_bytes(self) -> int:
        with self._errors():
            stored = await self._call(self.redis.hget, self.keys.config, "max_payload_bytes")
        return int(stored) if stored else DEFAULT_MAX_PAYLOAD_BYTES

    # -- producers -------------------------------------------------------
    async def submit_many(
        self,
        payloads: Sequence[Any],
        ids: Sequence[str | None] | None = None,
        *,
        task: str | None = None,
        tasks: Sequence[str | None] | None = None,
        options: JobOptions | Sequence[JobOptions] = JobOptions(),
        due: str | Sequence[str] = "",
        wait: bool = True,
        timeout: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """`task`: every job's task name; `tasks`: one per job instead. `options`: every job's
        own options, or one per job; `due` (codec.due_of) the same."""
        if ids is not None and len(ids) != len(payloads):
            raise QueueError(f"{len(payloads)} payloads but {len(ids)} ids")
        if tasks is not None and len(tasks) != len(payloads):
            raise QueueError(f"{len(payloads)} payloads but {len(tasks)} tasks")
        if tasks is None:
            task_names = [check_task(task)] * len(payloads)
        else:
            task_names = [check_task(name, index) for index, name in enumerate(tasks)]
        if isinstance(options, JobOptions):
            encoded_options = [encode_options(checked_options(options))] * len(payloads)
        else:
            encoded_options = [
                encode_options(checked_options(each, index)) for index, each in enumerate(options)
            ]
        dues = [due] * len(payloads) if isinstance(due, str) else list(due)
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
        ends = list(itertools.accumulate((len(text) for text in encoded), initial=0))
        if (
            len(encoded) > SUBMIT_CHUNK
            or ends[-1] > SUBMIT_CHUNK_CHARACTERS
            or any(len(text) > LARGE_PAYLOAD for text in encoded)
        ):
            # the script checks one chunk: a later chunk's refusal would come after earlier
            # ones, and a payload far over the limit need not travel to Redis to be refused
            check_payload_sizes(encoded, await self._max_payload_bytes())
        deadline = None if timeout is None else time.monotonic() + timeout
        start = 0
        pause = 0.01
        while start < len(job_ids):
            end = chunk_end(ends, start)
            blob = "\0".join(
                [
                    x
                    for job in zip(
                        job_ids[start:end],
                        given[start:end],
                        task_names[start:end],
                        encoded_options[start:end],
                        dues[start:end],
                        encoded[start:end],
                    )
                    for x in job
                ]
            )
            chunk = job_ids[start:end]
            command = self._submit_command(
                blob, [job_id for job_id, flag in zip(chunk, given[start:end]) if flag == "1"], partial=wait
            )
            with self._errors():
                try:
                    processed, _enqueued, room, refusal = await self._function(Submit, command, write=True)
                except ConnectionError:
                    # the chunk may have run before the connection dropped: the re-send
                    # dedups every id, generated ones too (they were made here, not in Redis)
                    await connection.drop_connections(self.redis)
                    blob = "\0".join(
                        [
                            x
                            for job_id, name, settings, when, payload in zip(
                                chunk,
                                task_names[start:end],
                                encoded_options[start:end],
                                dues[start:end],
                                encoded[start:end],
                            )
                            for x in (job_id, "1", name, settings, when, payload)
                        ]
                    )
                    command = self._submit_command(blob, chunk, partial=wait)
                    processed, _enqueued, room, refusal = await self._function(Submit, command, write=True)
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
                        job_ids[:start],
                    )
                if deadline is not None and time.monotonic() > deadline:
                    raise QueueFull(
                        f"queue {self.namespace}/{self.pool} stayed full for {timeout}s "
                        f"(maxLength reached); submitted {start} of {len(job_ids)}",
                        job_ids[:start],
                    )
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
        if kind == "task":
            index, task, known = figures
            return UnknownTask(
                self.namespace, self.pool, start + int(index), task, known.split(), job_ids[:start]
            )
        used, max_memory = figures
        return QueueFull(
            f"queue {self.namespace}/{self.pool} refused the submit: Redis memory is nearly "
            f"full ({used / 2**20:.1f} MiB used of its maxmemory {max_memory / 2**20:.1f} MiB; "
            f"submits stop at {SUBMIT_MEMORY_SHARE:.0%}, the rest is kept for the workers' "
            f"results); submitted {start} of {len(job_ids)}; let the workers catch up, shorten "
            f"result retention (spec.results) or raise the Redis maxmemory",
            job_ids[:start],
        )

    def _submit_command(self, blob: str, given_ids: Sequence[str], *, partial: bool) -> tuple:
        return Submit.command(
            self.keys,
            blob=blob,
            given_ids=given_ids,
            partial=partial,
            default_max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES,
            memory_share=SUBMIT_MEMORY_SHARE,
        )

    async def submit(
        self,
        payload: Any,
        id: str | None = None,
        *,
        task: str | None = None,
        options: JobOptions = JobOptions(),
        due: str = "",
        wait: bool = True,
    ) -> str:
        """One job. Submits that overlap (concurrent tasks) travel together: while one is under
        way on its own, the next ones gather and go as one script call (up to SUBMIT_CHUNK)."""
        if not wait or (self._direct_submits == 0 and self._gatherer is None):
            self._direct_submits += 1
            try:
                return (
                    await self.submit_many([payload], [id], task=task, options=options, due=due, wait=wait)
                )[0]
            finally:
                self._direct_submits -= 1
        try:
            text = encode_json(payload)
            if id is not None:
                check_job_id(id, 0)
            task = check_task(task)
            checked_options(options)
        except QueueError as exc:
            raise QueueError(f"job 0: {exc}") from None
        if len(text) > LARGE_PAYLOAD:  # checked against the pool's limit before it travels
            return (await self.submit_many([payload], [id], task=task, options=options, due=due))[0]
        submitted = asyncio.get_running_loop().create_future()
        self._gathered.append((RawJSON(text), id, task, options, due, submitted))
        if self._gatherer is None:
            self._gatherer = asyncio.ensure_future(self._submit_gathered())
        return await submitted

    async def _submit_gathered(self) -> None:
        batch: list[tuple[Any, str | None, str, JobOptions, str, asyncio.Future]] = []
        try:
            while self._gathered:
                batch = self._gathered[:SUBMIT_CHUNK]
                del self._gathered[:SUBMIT_CHUNK]
                await self._submit_batch(batch)
        finally:
            self._gatherer = None
            for *_, submitted in batch + self._gathered:  # unsettled only if this was cancelled
                submitted.cancel()

    async def _submit_batch(
        self, batch: list[tuple[Any, str | None, str, JobOptions, str, asyncio.Future]]
    ) -> None:
        """Submit gathered jobs; each caller gets its id or the error its own submit would get."""
        try:
            job_ids = await self.submit_many(
                [job[0] for job in batch],
                [job[1] for job in batch],
                tasks=[job[2] for job in batch],
                options=[job[3] for job in batch],
                due=[job[4] for job in batch],
            )
        except PayloadTooLarge as exc:  # the chunk was refused: that job fails, the rest go again
            settle(batch[exc.index][-1], error=PayloadTooLarge(0, exc.size, exc.limit))
            self._gathered[:0] = batch[: exc.index] + batch[exc.index + 1 :]
            return
        except UnknownTask as exc:  # the same: that job fails, the rest go again
            settle(batch[exc.index][-1], error=UnknownTask(self.namespace, self.pool, 0, exc.task, exc.known))
            self._gathered[:0] = batch[: exc.index] + batch[exc.index + 1 :]
            return
        except QueueFull as exc:  # memory: each one alone, for its own error
            for job_id, (*_, submitted) in zip(exc.submitted_ids, batch):
                settle(submitted, job_id)
            for payload, id, task, options, due, submitted in batch[len(exc.submitted_ids) :]:
                try:
                    settle(
                        submitted,
                        (await self.submit_many([payload], [id], task=task, options=options, due=due))[0],
                    )
                except QueueError as error:
                    settle(submitted, error=error)
            return
        except QueueError as exc:  # unreachable or refused: the same for every one
            for *_, submitted in batch:
                settle(submitted, error=type(exc)(str(exc)))
            return
        except Exception as exc:  # a bug: every caller sees it, none waits forever
            for *_, submitted in batch:
                settle(submitted, error=exc)
            return
        for job_id, (*_, submitted) in zip(job_ids, batch):
            settle(submitted, job_id)

    def submit_blocking(
        self,
        payload: Any,
        id: str | None = None,
        *,
        task: str | None = None,
        options: JobOptions = JobOptions(),
        due: str = "",
        wait: bool = True,
    ) -> tuple[str | None, bool]:
        """The sync SDK's one-job submit over a sync connection: an event loop's round trip
        costs the client three times the CPU. Anything but a plain success (a bad payload or
        id, a full queue, a refusal, a lost connection) is left to `submit`, which reports it."""
        try:
            text = encode_json(payload)
            job_id = new_job_ids(1)[0] if id is None else check_job_id(id, 0)
            task = check_task(task)
            settings = encode_options(checked_options(options))
        except QueueError:
            return id, False
        # cluster and sentinel URLs and replicated pools take the async path, which routes and WAITs
        if connection.topology(self.url) != connection.SINGLE or self._durability_known() is not False:
            return id, False
        if len(text) > LARGE_PAYLOAD:
            return job_id, False
        given = "0" if id is None else "1"
        command = self._submit_command(
            f"{job_id}\0{given}\0{task}\0{settings}\0{due}\0{text}",
            [] if id is None else [job_id],
            partial=wait,
        )
        try:
            if self._blocking is None:
                self._blocking = redis.Redis.from_url(
                    self.url, decode_responses=True, **{**self._options, "retry": Retry(NoBackoff(), 0)}
                )
            # a missing library is the async path's to load (or to wait for)
            processed, _enqueued, _room, refusal = Submit.parse(self._blocking.execute_command(*command))
        except (redis.RedisError, OSError, ValueError):
            return job_id, False
        return job_id, processed == 1 and not refusal

    # -- workers ---------------------------------------------------------


def settle(
    submitted: asyncio.Future, job_id: str | None = None, *, error: BaseException | None = None
) -> None:
    """Give a gathered submit its outcome, unless its caller stopped waiting."""
    if submitted.done():
        return
    if error is not None:
        submitted.set_exception(error)
    else:
        submitted.set_result(job_id)


def checked_options(options: JobOptions, index: int | None = None) -> JobOptions:
    return check_options(
        options.timeout,
        options.max_attempts,
        options.backoff,
        index,
        priority=options.priority,
        fairness_key=options.fairness_key,
    )


def chunk_end(ends: list[int], start: int) -> int:
    """Where the submit chunk from `start` ends: SUBMIT_CHUNK jobs, or SUBMIT_CHUNK_CHARACTERS of
    payloads, at least one job. `ends`: the payloads' cumulative lengths, from 0."""
    end = bisect.bisect_right(ends, ends[start] + SUBMIT_CHUNK_CHARACTERS, lo=start + 1) - 1
    return min(max(end, start + 1), start + SUBMIT_CHUNK, len(ends) - 1)


def check_payload_sizes(encoded: Sequence[str], limit: int) -> None:
    """Raise PayloadTooLarge for the first encoded payload over `limit` bytes."""
    for index, text in enumerate(encoded):
        if len(text) > limit // 4 and payload_size(text) > limit:
            raise PayloadTooLarge(index, payload_size(text), limit)
