"""One typed wrapper per function of the library: its keys (from the pool's key set, by the
names the `.lua` file declares), its arguments, a parse of its reply into a named tuple, and its
resend rule. `tests/unit/queue/test_library.py` fails when a `.lua` file and its wrapper drift.

Resend rules (what `RedisStreamsQueue` may do when a connection drops before the reply):
- IDEMPOTENT: send it again as it is; a second run changes nothing the first did not
  (ack and fail recognise their own resend by the attempt number).
- REDELIVERED: send it again; what the lost reply delivered stays pending until the visibility
  timeout redelivers it (at least once, one attempt more).
- WITH_GIVEN_IDS: send it again only with every id marked as given, so none is enqueued twice.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from ..keys import PoolKeys
from . import library

IDEMPOTENT, REDELIVERED, WITH_GIVEN_IDS = "idempotent", "redelivered", "with given ids"


@functools.lru_cache(maxsize=4096)
def _pool_keys(names: tuple[str, ...], pool: PoolKeys) -> tuple[str, ...]:
    return tuple(getattr(pool, name) for name in names)


class Function:
    """FCALL of `library.qualified(NAME)`. KEYS and ARGS are the `.lua` contract, in order: the
    leading keys are the pool's keys of those names, the rest (per job) the caller gives; a name
    ending in `...` is a list."""

    NAME: ClassVar[str]
    KEYS: ClassVar[tuple[str, ...]]
    ARGS: ClassVar[tuple[str, ...]]
    RESEND: ClassVar[str] = IDEMPOTENT
    _POOL_KEYS: ClassVar[tuple[str, ...]]
    _GIVEN_KEYS: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        pool_keys = []
        for name in cls.KEYS:
            if name.endswith("...") or not hasattr(PoolKeys, name):
                break
            pool_keys.append(name)
        cls._POOL_KEYS, cls._GIVEN_KEYS = tuple(pool_keys), cls.KEYS[len(pool_keys) :]

    @staticmethod
    def parse(reply: Any) -> Any:
        """The function's reply, parsed (each function defines its own)."""
        raise NotImplementedError

    @classmethod
    def _command(cls, pool: PoolKeys, **values: Any) -> tuple:
        keys: list[Any] = [*_pool_keys(cls._POOL_KEYS, pool)]  # built once per pool
        args: list[Any] = []
        for name in cls._GIVEN_KEYS:
            if name.endswith("..."):
                keys += values.pop(name[:-3])
            else:
                keys.append(values.pop(name))
        for name in cls.ARGS:
            if name.endswith("..."):
                args += values.pop(name[:-3])
            else:
                args.append(values.pop(name))
        if values:
            raise TypeError(f"{cls.NAME} takes no {', '.join(values)}")
        return ("FCALL", library.qualified(cls.NAME), len(keys), *keys, *args)


def _result_keys(pool: PoolKeys, job_ids: Sequence[str]) -> list[str]:
    prefix = pool.result_prefix
    return [prefix + job_id for job_id in job_ids]


# -- producers ---------------------------------------------------------------
class SubmitReply(NamedTuple):
    processed: int
    enqueued: int
    room: int
    refusal: tuple  # () or ('payload', index, size, limit) or ('memory', used, maxmemory)
    # or ('task', index, task, the tasks served space-separated)


class Submit(Function):
    NAME = "submit"
    KEYS = (
        "stream",
        "live",
        "dead_ids",
        "config",
        "counters",
        "memory",
        "tasks",
        "scheduled",
        "delayed_jobs",
        "priorities",
        "express",
        "given_results...",
    )
    ARGS = ("partial", "blob", "default_max_payload_bytes", "memory_share")
    RESEND = WITH_GIVEN_IDS

    @classmethod
    def command(
        cls,
        pool: PoolKeys,
        *,
        blob: str,
        given_ids: Sequence[str],
        partial: bool,
        default_max_payload_bytes: int,
        memory_share: float,
    ) -> tuple:
        """`blob`: (id, given 1|0, task, options, due, payload) per job, NUL-separated; `given_ids`
        in its order. `due`: "" (now), unix ms or "+ms" from now."""
        return cls._command(
            pool,
            given_results=_result_keys(pool, given_ids),
            partial="1" if partial else "0",
            blob=blob,
            default_max_payload_bytes=default_max_payload_bytes,
            memory_share=memory_share,
        )

    @staticmethod
    def parse(reply: list) -> SubmitReply:
        processed, enqueued, room, *refusal = reply
        return SubmitReply(int(processed), int(enqueued), int(room), tuple(refusal))


class StatsReply(NamedTuple):
    length: int
    in_flight: int
    delayed: int
    dead: int
    counters: list  # flat: name, value, ...
    workers: list  # flat: consumer, registration JSON (live ones)
    held: list  # flat: consumer, entries it has not acknowledged
    scheduled: int
    delayed_due: int  # retries due within the horizon
    scheduled_due: int  # scheduled jobs due within the horizon
    progress: list  # flat: job id, its last progress (JSON)
    outside: list  # flat: level, jobs waiting outside the stream at that level


class Stats(Function):
    NAME = "stats"
    KEYS = (
        "stream",
        "delayed",
        "dead",
        "counters",
        "workers",
        "scheduled",
        "progress",
        "priorities",
        "express",
    )
    ARGS = ("now_ms", "horizon_ms")

    @classmethod
    def command(cls, pool: PoolKeys, *, now_ms: int, horizon_ms: int) -> tuple:
        return cls._command(pool, now_ms=now_ms, horizon_ms=horizon_ms)

    @staticmethod
    def parse(reply: list) -> StatsReply:
        return StatsReply(*reply)


class MemorySample(NamedTuple):
    used: int
    max_memory: int


class SampleMemory(Function):
    """For a user that may read INFO (the operator's): its sample serves the pool's submits."""

    NAME = "sample_memory"
    KEYS = ("memory",)
    ARGS = ()

    @classmethod
    def command(cls, pool: PoolKeys) -> tuple:
        return cls._command(pool)

    @staticmethod
    def parse(reply: list) -> MemorySample:
        return MemorySample(int(reply[0]), int(reply[1]))


# -- workers -----------------------------------------------------------------
class FetchReply(NamedTuple):
    now_ms: int
    next_due: int  # ms timestamp of the next delayed job, -1: none
    reclaimed: list  # [entry_id, fields, deliveries] ...
    fresh: list  # [entry_id, fields] ...


class Fetch(Function):
    NAME = "fetch"
    KEYS = (
        "stream",
        "delayed",
        "delayed_jobs",
        "reclaim_gate",
        "reclaim_cursor",
        "scheduled",
        "priorities",
        "express",
    )
    ARGS = ("consumer", "count", "visibility_ms", "reclaim_interval_ms")
    RESEND = REDELIVERED

    @classmethod
    def command(
        cls, pool: PoolKeys, *, consumer: str, count: int, visibility_ms: int, reclaim_interval_ms: int
    ) -> tuple:
        return cls._command(
            pool,
            consumer=consumer,
            count=count,
            visibility_ms=visibility_ms,
            reclaim_interval_ms=reclaim_interval_ms,
        )

    @staticmethod
    def parse(reply: list) -> FetchReply:
        now_ms, next_due, reclaimed, fresh = reply
        return FetchReply(int(now_ms), int(next_due), reclaimed, fresh)


class AckReply(NamedTuple):
    succeeded: int  # first completions, and this same ack's own resend
    duplicates: int
    excess: int  # results over the cap, for TrimResults


class Ack(Function):
    NAME = "ack"
    KEYS = (
        "stream",
        "live",
        "counters",
        "results",
        "progress",
        "errors",
        "cancel_requests",
        "express",
        "job_results...",
    )
    ARGS = ("result_ttl_ms", "results_cap", "blob")

    @classmethod
    def command(
        cls,
        pool: PoolKeys,
        *,
        job_ids: Sequence[str],
        blob: bytes | str,
        result_ttl_ms: int,
        results_cap: int,
    ) -> tuple:
        """`blob`: (entry_id, consumer, id, attempts, result) per job, NUL-separated."""
        return cls._command(
            pool,
            job_results=_result_keys(pool, job_ids),
            result_ttl_ms=result_ttl_ms,
            results_cap=results_cap,
            blob=blob,
        )

    @staticmethod
    def parse(reply: list) -> AckReply:
        return AckReply(*(int(n) for n in reply))


class AckThenFetch(Function):
    """Ack's keys and arguments, then Fetch's: one call that frees slots and fills them."""

    NAME = "ack_then_fetch"
    KEYS = (
        "stream",
        "live",
        "counters",
        "results",
        "progress",
        "errors",
        "cancel_requests",
        "express",
        "delayed",
        "delayed_jobs",
        "reclaim_gate",
        "reclaim_cursor",
        "scheduled",
        "priorities",
        "job_results...",
    )
    ARGS = (
        "result_ttl_ms",
        "results_cap",
        "blob",
        "consumer",
        "count",
        "visibility_ms",
        "reclaim_interval_ms",
    )
    RESEND = REDELIVERED

    @classmethod
    def command(
        cls,
        pool: PoolKeys,
        *,
        job_ids: Sequence[str],
        blob: bytes | str,
        result_ttl_ms: int,
        results_cap: int,
        consumer: str,
        count: int,
        visibility_ms: int,
        reclaim_interval_ms: int,
    ) -> tuple:
        return cls._command(
            pool,
            job_results=_result_keys(pool, job_ids),
            result_ttl_ms=result_ttl_ms,
            results_cap=results_cap,
            blob=blob,
            consumer=consumer,
            count=count,
            visibility_ms=visibility_ms,
            reclaim_interval_ms=reclaim_interval_ms,
        )

    @staticmethod
    def parse(reply: list) -> tuple[AckReply, FetchReply]:
        acked, fetched = reply
        return Ack.parse(acked), Fetch.parse(fetched)


class TrimResults(Function):
    NAME = "trim_results"
    KEYS = ("results", "job_results...")
    ARGS = ("entry_ids...",)

    @classmethod
    def command(cls, pool: PoolKeys, *, oldest: Sequence[tuple[str, str]]) -> tuple:
        """`oldest`: (entry id, job id) of the results to remove."""
        return cls._command(
            pool,
            job_results=_result_keys(pool, [job_id for _, job_id in oldest]),
            entry_ids=[entry_id for entry_id, _ in oldest],
        )

    @staticmethod
    def parse(reply: int) -> int:
        return int(reply)


class FailReply(NamedTuple):
    outcome: str  # retried | dead_lettered | permanent | cancelled | duplicate


class Fail(Function):
    NAME = "fail"
    KEYS = (
        "stream",
        "live",
        "delayed",
        "delayed_jobs",
        "dead",
        "dead_ids",
        "counters",
        "progress",
        "errors",
        "cancelled",
        "cancel_requests",
        "express",
        "ended",
        "job_result",
    )
    ARGS = (
        "entry_id",
        "consumer",
        "id",
        "attempts",
        "payload",
        "error",
        "outcome",
        "delay_ms",
        "replayed",
        "dead_letter_cap",
        "task",
        "options",
    )

    @classmethod
    def command(
        cls,
        pool: PoolKeys,
        *,
        entry_id: str,
        consumer: str,
        id: str,
        attempts: int,
        payload: bytes,
        error: str,
        outcome: str,
        delay_ms: int,
        replayed: bool,
        dead_letter_cap: int,
        task: str,
        options: str,
    ) -> tuple:
        return cls._command(
            pool,
            job_result=pool.result(id),
            entry_id=entry_id,
            consumer=consumer,
            id=id,
            attempts=attempts,
            payload=payload,
            error=error,
            outcome=outcome,
            delay_ms=delay_ms,
            replayed="1" if replayed else "0",
            dead_letter_cap=dead_letter_cap,
            task=task,
            options=options,
        )

    @staticmethod
    def parse(reply: str) -> FailReply:
        return FailReply(reply)


class Progress(Function):
    NAME = "progress"
    KEYS = ("stream", "progress", "express")
    ARGS = ("consumer", "entry_id", "id", "value")

    @classmethod
    def command(cls, pool: PoolKeys, *, consumer: str, entry_id: str, id: str, value: str) -> tuple:
        return cls._command(pool, consumer=consumer, entry_id=entry_id, id=id, value=value)

    @staticmethod
    def parse(reply: int) -> bool:
        return bool(int(reply))


class JobReply(NamedTuple):
    state: str  # succeeded | dead | cancelled | scheduled | retrying | running | waiting | ""
    task: str
    attempts: str  # attempts used ("" when not known); a running job's include its own
    worker: str  # the consumer running it
    enqueued_ms: str  # when it was enqueued or became due again
    due_ms: str  # when a scheduled job or a retry is due
    finished_ms: str  # when it was dead-lettered or cancelled
    error: str  # the last error (a retry's, a dead letter's)
    progress: str  # the last progress (JSON) of a running job
    result: str  # a succeeded job's result (JSON)
    priority: str  # its level, "0" when it has none (or is not known)
    fairness_key: str  # "" for none


class JobLookup(Function):
    NAME = "job"
    KEYS = (
        "stream",
        "live",
        "delayed",
        "delayed_jobs",
        "scheduled",
        "dead",
        "dead_ids",
        "progress",
        "errors",
        "cancelled",
        "priorities",
        "express",
        "job_result",
    )
    ARGS = ("id", "scan_limit")

    @classmethod
    def command(cls, pool: PoolKeys, *, id: str, scan_limit: int) -> tuple:
        return cls._command(pool, job_result=pool.result(id), id=id, scan_limit=scan_limit)

    @staticmethod
    def parse(reply: list) -> JobReply:
        return JobReply(*reply)


class Cancel(Function):
    NAME = "cancel"
    KEYS = (
        "stream",
        "live",
        "delayed",
        "delayed_jobs",
        "scheduled",
        "dead_ids",
        "counters",
        "errors",
        "progress",
        "cancelled",
        "cancel_requests",
        "priorities",
        "express",
        "ended",
        "job_results...",
    )
    ARGS = ("scan_limit", "ids...")

    @classmethod
    def command(cls, pool: PoolKeys, *, ids: Sequence[str], scan_limit: int) -> tuple:
        return cls._command(pool, job_results=_result_keys(pool, ids), scan_limit=scan_limit, ids=ids)

    @staticmethod
    def parse(reply: list) -> list[str]:
        """One outcome per id: cancelled | cancelling | succeeded | dead | was cancelled | unknown."""
        return list(reply)


class Release(Function):
    NAME = "release"
    KEYS = ("stream", "reclaim_gate", "reclaim_cursor", "express")
    ARGS = ("consumer", "entry_ids...")

    @classmethod
    def command(cls, pool: PoolKeys, *, consumer: str, entry_ids: Sequence[str]) -> tuple:
        return cls._command(pool, consumer=consumer, entry_ids=entry_ids)

    @staticmethod
    def parse(reply: int) -> int:
        return int(reply)


class Heartbeat(Function):
    NAME = "heartbeat"
    KEYS = ("stream", "workers", "tasks", "cancel_requests", "express")
    ARGS = ("consumer", "info", "tasks", "expires_ms", "entry_ids...")

    @classmethod
    def command(
        cls,
        pool: PoolKeys,
        *,
        consumer: str,
        info: str,
        tasks: Sequence[str],
        expires_ms: int,
        entry_ids: Sequence[str],
    ) -> tuple:
        """`tasks`: the task names the worker serves, published until `expires_ms`."""
        return cls._command(
            pool,
            consumer=consumer,
            info=info,
            tasks=" ".join(tasks),
            expires_ms=expires_ms,
            entry_ids=entry_ids,
        )

    @staticmethod
    def parse(reply: list) -> list[str]:
        """The entry ids of the worker's jobs asked to be cancelled."""
        return list(reply)


class Unregister(Function):
    NAME = "unregister"
    KEYS = ("stream", "workers")
    ARGS = ("consumer",)

    @classmethod
    def command(cls, pool: PoolKeys, *, consumer: str) -> tuple:
        return cls._command(pool, consumer=consumer)

    @staticmethod
    def parse(reply: int) -> None:
        return None


class Replay(Function):
    NAME = "replay"
    KEYS = ("stream", "live", "dead", "dead_ids", "priorities", "express")
    ARGS = ("all", "ids...")

    @classmethod
    def command(cls, pool: PoolKeys, *, ids: Sequence[str] | None) -> tuple:
        """`ids` None: every dead letter."""
        return cls._command(pool, all="1" if ids is None else "0", ids=list(ids or ()))

    @staticmethod
    def parse(reply: int) -> int:
        return int(reply)


class Purge(Function):
    NAME = "purge"
    KEYS = ("dead", "dead_ids")
    ARGS = ("all", "ids...")

    @classmethod
    def command(cls, pool: PoolKeys, *, ids: Sequence[str] | None) -> tuple:
        return cls._command(pool, all="1" if ids is None else "0", ids=list(ids or ()))

    @staticmethod
    def parse(reply: int) -> int:
        return int(reply)


ALL: tuple[type[Function], ...] = (
    Submit,
    Stats,
    SampleMemory,
    Fetch,
    Ack,
    AckThenFetch,
    TrimResults,
    Fail,
    Progress,
    JobLookup,
    Cancel,
    Release,
    Heartbeat,
    Unregister,
    Replay,
    Purge,
)
# What each role runs; the ACL users' commands are read from these functions' files.
PRODUCER_FUNCTIONS = (Submit, Stats)
WORKER_FUNCTIONS = (
    Submit,
    Stats,
    Fetch,
    Ack,
    AckThenFetch,
    TrimResults,
    Fail,
    Progress,
    JobLookup,
    Cancel,
    Release,
    Heartbeat,
    Unregister,
    Replay,
    Purge,
)
