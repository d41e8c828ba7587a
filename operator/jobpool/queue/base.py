"""The queue protocol: the one seam between jobpool and its queue backend.

The worker, the operator, the CLI and the SDK all talk to a queue only through
`Queue`, so a second backend is one new class, and tests can run every caller
against the real Redis implementation.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any


class QueueError(Exception):
    """A queue operation failed; the message says what to do."""


class QueueUnavailable(QueueError):
    """The queue backend cannot be reached (callers back off and retry)."""


class QueueFull(QueueError):
    """`maxLength` jobs are already waiting and the submitter asked not to wait (or not that
    long), or the backend's memory is nearly full (never waited for). `submitted_ids` are the ids
    of the jobs that are in the queue nonetheless: the ones of earlier chunks, in submission order."""

    def __init__(self, message: str, submitted_ids: Sequence[str] = ()):
        super().__init__(message)
        self.submitted_ids = list(submitted_ids)


class UnknownTask(QueueError):
    """Job `index` of a submit names a task that no live worker of the pool serves, while the live
    workers published theirs (`known`); `submitted_ids` are the jobs enqueued before it."""

    def __init__(
        self,
        namespace: str,
        pool: str,
        index: int,
        task: str,
        known: Sequence[str],
        submitted_ids: Sequence[str] = (),
    ):
        done = (
            f"{len(submitted_ids)} jobs before it were submitted"
            if submitted_ids
            else "nothing was submitted"
        )
        super().__init__(
            f"job {index}: no worker of pool {namespace}/{pool} serves task {task!r}; "
            f"its tasks: {', '.join(known)}; check the task name or deploy workers "
            f"that serve it; {done}"
        )
        self.index, self.task, self.known = index, task, tuple(known)
        self.submitted_ids = list(submitted_ids)


class PayloadTooLarge(QueueError):
    """Job `index` of a submit has a payload over the pool's limit; `submitted_ids` are the
    jobs enqueued before it was refused (none, unless the limit changed during the submit)."""

    def __init__(self, index: int, size: int, limit: int, submitted_ids: Sequence[str] = ()):
        done = (
            f"{len(submitted_ids)} jobs before it were submitted"
            if submitted_ids
            else "nothing was submitted"
        )
        super().__init__(
            f"job {index}: the payload is {size} bytes, over the pool's limit of "
            f"{limit} bytes (spec.queue.maxPayloadBytes); {done}"
        )
        self.index, self.size, self.limit = index, size, limit
        self.submitted_ids = list(submitted_ids)

    def naming(self, where: str) -> str:
        """The message with the job named by `where` (e.g. a file and line) instead of its index."""
        return str(self).replace(f"job {self.index}:", f"{where}:", 1)


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """A job's own settings; None: the pool's. The worker holds them to the pool's caps."""

    timeout: float | None = None  # seconds, > 0
    max_attempts: int | None = None  # >= 1
    backoff: float | None = None  # first retry delay in seconds, >= 0
    priority: int | None = None  # 0-9, a higher level is served first; None: 0
    fairness_key: str | None = None  # within a level, keys share the slots round-robin


@dataclasses.dataclass(frozen=True)
class Job:
    """A job handed to a worker slot."""

    id: str
    payload: Any
    attempts: int  # 1 on first delivery
    enqueued_at: float  # unix seconds, when it was submitted (or became due again)
    token: str  # backend handle used to ack/fail/heartbeat this delivery
    payload_text: str = dataclasses.field(default="", compare=False, repr=False)  # as stored
    payload_error: str | None = None  # set when the stored entry cannot be run (the reason)
    replayed: bool = False  # re-run from the dead letters (counted there once)
    consumer: str = ""  # the worker this delivery belongs to: only it may finish it
    task: str = ""  # the task name; "" for a job without one
    options: JobOptions = JobOptions()  # its own timeout, attempts, backoff


@dataclasses.dataclass(frozen=True)
class Result:
    id: str
    result: Any
    attempts: int


@dataclasses.dataclass(frozen=True)
class DeadJob:
    id: str
    payload: Any
    attempts: int
    error: str
    failed_at: float
    task: str = ""
    options: JobOptions = JobOptions()


JOB_STATES = ("waiting", "scheduled", "running", "retrying", "succeeded", "dead", "cancelled")


@dataclasses.dataclass(frozen=True)
class JobState:
    """One job as `jobpool job` shows it; None where the state has no such fact."""

    id: str
    state: str  # one of JOB_STATES
    task: str = ""
    attempts: int | None = None  # attempts used; a running job's include the one it runs
    worker: str | None = None  # the worker running it
    enqueued_at: float | None = None  # unix seconds, when it was submitted or became due again
    due_at: float | None = None  # when a scheduled job or a retry is due
    finished_at: float | None = None  # when it was dead-lettered or cancelled
    error: str | None = None  # the last error: a retry's, a dead letter's
    progress: Any = None  # the last progress a running job reported
    result: Any = None  # a succeeded job's result
    priority: int = 0  # its level, 0-9
    fairness_key: str | None = None

    def as_record(self) -> dict[str, Any]:
        """The keys of `jobpool job --output json`."""
        return {
            "id": self.id,
            "state": self.state,
            "task": self.task,
            "attempts": self.attempts,
            "worker": self.worker,
            "enqueuedAt": self.enqueued_at,
            "dueAt": self.due_at,
            "finishedAt": self.finished_at,
            "error": self.error,
            "progress": self.progress,
            "result": self.result,
            "priority": self.priority,
            "fairnessKey": self.fairness_key,
        }


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    id: str  # the pod name in a cluster
    slots: int
    busy: int
    last_seen: float


# Retries and scheduled jobs due within this many seconds count in the backlog (the autoscaler's
# and the external metric's): about the time a new worker pod takes to start.
SCALE_UP_HORIZON_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class QueueStats:
    waiting: int = 0
    in_flight: int = 0
    delayed: int = 0
    dead_letter: int = 0
    submitted: int = 0
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0  # after their last attempt
    permanent: int = 0  # dead-lettered at once by a permanent error (not in dead_lettered)
    cancelled: int = 0  # withdrawn by a cancel
    workers: tuple[WorkerInfo, ...] = ()
    duplicates: int = 0  # outcomes of deliveries that no longer counted (at-least-once), not in succeeded
    scheduled: int = 0  # submitted to run later (delay, run_at), not due yet
    delayed_due: int = 0  # retries due within SCALE_UP_HORIZON_SECONDS
    scheduled_due: int = 0  # scheduled jobs due within SCALE_UP_HORIZON_SECONDS
    progress: dict = dataclasses.field(default_factory=dict)  # running job id -> its last progress
    # priority level ("0"-"9") -> jobs waiting at it (in `waiting`), only levels with jobs
    waiting_by_priority: dict = dataclasses.field(default_factory=dict)

    @property
    def busy_slots(self) -> int:
        return sum(w.busy for w in self.workers)

    @property
    def total_slots(self) -> int:
        return sum(w.slots for w in self.workers)

    @property
    def saturation(self) -> float:
        total = self.total_slots
        return round(self.busy_slots / total, 4) if total else 0.0

    @property
    def backlog(self) -> int:
        """What the autoscaler counts: waiting + in-flight + the retries and scheduled jobs due
        within the scale-up horizon (a job due tomorrow keeps no pod running today)."""
        return self.waiting + self.in_flight + self.delayed_due + self.scheduled_due

    def as_status(self) -> dict[str, Any]:
        """The keys of `jobpool status --output json`."""
        return {
            "waiting": self.waiting,
            "inFlight": self.in_flight,
            "delayed": self.delayed,
            "scheduled": self.scheduled,
            "deadLetter": self.dead_letter,
            # a list (replaced whole by a status merge patch), levels with jobs, the highest first
            "waitingByPriority": [
                {"priority": int(level), "waiting": n} for level, n in self.waiting_by_priority.items()
            ],
            "submitted": self.submitted,
            "succeeded": self.succeeded,
            "retried": self.retried,
            "deadLettered": self.dead_lettered,
            "permanent": self.permanent,
            "cancelled": self.cancelled,
            "workers": len(self.workers),
            "busySlots": self.busy_slots,
            "totalSlots": self.total_slots,
            "saturation": self.saturation,
            "progress": dict(self.progress),
        }


class Queue(abc.ABC):
    """One pool's queue. All methods are async; `jobpool.Client` is the sync facade."""

    namespace: str
    pool: str

    # -- configuration (written by the operator, seen by every submitter) --
    @abc.abstractmethod
    async def configure(
        self, *, max_length: int | None, max_payload_bytes: int | None = None, durability: str | None = None
    ) -> None:
        """Store pool-wide settings in the backend, seen by every submitter and worker: the
        `maxLength` bound, the payload limit (None: no bound / the default limit) and the
        durability ("replicated": submit and ack wait for a replica; None: they do not)."""

    # -- producers -------------------------------------------------------
    @abc.abstractmethod
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
        """Enqueue jobs (pipelined) of `task` (or one task name each: `tasks`) with their own
        `options` (the same for all, or one each); returns their ids. A task no live worker serves is
        refused (UnknownTask). A caller-given id that the queue still knows (waiting, in flight,
        delayed, finished or dead) is not enqueued twice.
        When `maxLength` jobs wait: wait for room (`wait=True`, at most `timeout` seconds)
        or raise QueueFull; when the backend's memory is nearly full, raise QueueFull at once.
        A payload over the pool's limit raises PayloadTooLarge, submitting none of them.
        `progress(n)` is told each time n more jobs were handled."""

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
        return (await self.submit_many([payload], [id], task=task, options=options, due=due, wait=wait))[0]

    # -- workers ---------------------------------------------------------
    @abc.abstractmethod
    async def fetch(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        """Claim up to `count` jobs for `consumer` (never more: no prefetch hoarding)."""

    @abc.abstractmethod
    async def ack_many(self, done: Sequence[tuple[Job, Any]]) -> tuple[int, int]:
        """The jobs succeeded: store their results and remove them from the queue, several at
        once (one round trip). Returns (first completions, duplicate completions); the late
        completion of a delivery its worker no longer holds is a duplicate and changes nothing."""

    async def ack_then_fetch(
        self, done: Sequence[tuple[Job, Any]], consumer: str, count: int
    ) -> tuple[int, int, list[Job]]:
        """`ack_many(done)`, then claim up to `count` jobs for `consumer` without waiting for
        any (one round trip where the backend can; nothing is fetched if the ack fails).
        Returns (first completions, duplicate completions, the jobs)."""
        succeeded, duplicates = await self.ack_many(done)
        return succeeded, duplicates, (await self.fetch(consumer, count, 0) if count > 0 else [])

    @abc.abstractmethod
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
        """A failed attempt: schedule a delayed retry or dead-letter it (at once when
        `permanent`); `cancelled`: the attempt ended by a cancel, never retried. Returns "retried",
        "dead_lettered", "permanent" or "cancelled" (also for a job asked to be cancelled,
        whatever `error`), or "duplicate" (nothing changed) when the delivery's
        worker no longer holds it: another worker reclaimed or finished the job."""

    async def progress(self, job: Job, value: str) -> bool:
        """Keep `value` (JSON) as the running job's last progress; False when its worker no
        longer holds it."""
        return False

    async def job(self, id: str) -> JobState | None:
        """The job's state; None for an id the pool does not know (never submitted, or its
        result expired)."""
        return None

    async def cancel(self, ids: Sequence[str]) -> dict[str, str]:
        """Withdraw jobs: the outcome of each id ("cancelled": removed now; "cancelling": its
        worker cancels it at its next heartbeat; "succeeded", "dead", "was cancelled": finished, nothing changed;
        "unknown")."""
        raise QueueError(f"{type(self).__name__} cannot cancel jobs")

    @abc.abstractmethod
    async def release(self, consumer: str, jobs: Iterable[Job]) -> int:
        """Give back the jobs `consumer` still holds, for immediate redelivery (drain on
        shutdown); a job another worker has reclaimed meanwhile stays theirs. Returns how many
        were given back."""

    @abc.abstractmethod
    async def heartbeat(
        self, consumer: str, jobs: Iterable[Job], slots: int, busy: int, tasks: Sequence[str] = ()
    ) -> list[str]:
        """Keep the worker registered and its running jobs from being redelivered; publish the
        task names it serves (none: it serves whatever comes, a --command)."""

    @abc.abstractmethod
    async def unregister(self, consumer: str) -> None:
        """The worker is leaving."""

    # -- results, dead letters, status, lifecycle ------------------------
    @abc.abstractmethod
    async def result(self, id: str, timeout: float | None = None) -> Result | None: ...

    @abc.abstractmethod
    def results(self, follow: bool = False) -> AsyncIterator[Result]: ...

    @abc.abstractmethod
    async def dead_letters(self) -> list[DeadJob]: ...

    @abc.abstractmethod
    async def replay(self, ids: Sequence[str] | None = None) -> int:
        """Re-enqueue dead jobs (all when `ids` is None); returns how many."""

    @abc.abstractmethod
    async def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int: ...

    @abc.abstractmethod
    async def stats(self) -> QueueStats: ...

    async def upkeep(self, *, full: bool = True) -> tuple[str, ...]:
        """The operator's pass over the pool's keys with its own connection: publish what tenants'
        submits check, bound what it reads, undo wedges (not `full`: only bound what the stats read
        walks); returns what it repaired, one line each."""
        return ()

    @abc.abstractmethod
    async def delete_all(self) -> None:
        """Remove every key of this pool (the operator's finalizer)."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class BlockingSubmit(abc.ABC):
    """A backend's capability beyond `Queue`: submitting one job from synchronous code without
    an event loop (the sync `jobpool.Client` uses it where the queue has it)."""

    @abc.abstractmethod
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
        """Submit one job where the backend can: (its id, True) once it is in the queue;
        otherwise (the id to `submit` it with, False): that id may be in the queue already, so
        it must be submitted as given."""
