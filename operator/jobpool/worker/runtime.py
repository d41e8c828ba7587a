"""The worker: `concurrency` slots fed from the queue, never holding more jobs than free slots.

Completed jobs are acknowledged in batches by one task (one round trip for many jobs), and a
slot counts as busy until its job is acknowledged, so "held" == "unacknowledged" <= slots.
A sync handler's thread that outlives its job's timeout cannot be killed: its job is failed at
the deadline, but its slot stays occupied until the thread returns, so no more than
`concurrency` handlers ever run. When every slot stays occupied like that for another timeout
(at least a second), the worker exits with status 3 so that it is restarted.

Its loops run in one task group: an unexpected error in any of them, or in a job's task,
turns /healthz unhealthy and the worker exits with status 4 for a restart, instead of going
on with a dead loop. Its jobs are then left to the visibility timeout, so each redelivery
counts an attempt and a job that breaks every worker is dead-lettered after maxAttempts.
Waits use asyncio.timeout, never wait_for, which on Python 3.11 can swallow a cancellation.
Per-job deadlines are kept by one sweeping loop, not a timer per job (a timer each costs more
than a no-op job), so a job times out up to DEADLINE_TICK late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any, cast

from .._metrics_server import serve_metrics
from ..contract import (
    ERROR_TEXT_LIMIT,
    OUTCOME_CANCELLED,
    OUTCOME_DEAD_LETTERED,
    OUTCOME_DUPLICATE,
    OUTCOME_PERMANENT,
    OUTCOME_RETRIED,
    OUTCOME_SUCCEEDED,
)
from ..queue import Job, Queue, QueueError
from ..queue.codec import RawJSON, encode_json, encode_result
from ..queue.urls import redact_url
from .config import JobSettings, WorkerConfig
from .metrics import WorkerMetrics
from .runners import CANCEL_GRACE, JobContext, JobFailed, Permanent, Runner

log = logging.getLogger("jobpool.worker")
EXIT_ALL_SLOTS_OVERRUN = 3
EXIT_UNEXPECTED_ERROR = 4
ACK_GRACE = 10.0  # seconds a drain waits for the last acknowledgements
BUSY_PUBLISH_INTERVAL = 0.5  # seconds between busy-count updates while the count changes
IDLE_PUBLISH_INTERVAL = 0.05  # an idle worker is reported almost at once (scale-down picks it)
DEADLINE_TICK = 0.05  # seconds between deadline checks: a job times out at most this late
PROGRESS_INTERVAL = 0.2  # seconds between a job's progress writes (the latest one goes)


def busy_publish_delay(busy: int, published: int | None, since_published: float) -> float | None:
    """Seconds until the busy count should be published again; None when the published one is
    current. Rate-limited, so a stream of short jobs costs a few writes a second, not one each."""
    if busy == published:
        return None
    interval = IDLE_PUBLISH_INTERVAL if busy == 0 else BUSY_PUBLISH_INTERVAL
    return max(0.0, interval - since_published)


def reconnect_delay(failures: int, cap: float = 10.0) -> float:
    """Seconds to wait after `failures` consecutive failures to reach the queue."""
    return min(cap, 0.25 * (2 ** min(max(failures - 1, 0), 10)))


def error_text(exc: BaseException) -> str:
    """The error recorded for a failed attempt: the exception line first, then the traceback."""
    if isinstance(exc, JobFailed):
        with contextlib.suppress(Exception):  # its __str__ may fail: then the headline
            return str(exc)[:ERROR_TEXT_LIMIT]
    headline = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{headline}\n{trace}"[:ERROR_TEXT_LIMIT]


def is_permanent(exc: BaseException) -> bool:
    """Whether a handler's error rules out every retry (`jobpool.Permanent`, or a command's
    permanent exit status)."""
    return isinstance(exc, Permanent) or (isinstance(exc, JobFailed) and exc.permanent)


def lost_job_error(job: Job, max_attempts: int) -> str | None:
    """A job delivered more times than allowed (its workers died or were cut off each time)."""
    if job.attempts > max_attempts:
        return (
            f"delivered {job.attempts} times without finishing (maxAttempts {max_attempts}): "
            f"the workers running it stopped or lost the queue"
        )
    return None


class HandlerExit(Exception):
    """A handler tried to end the process: an unexpected error of the worker, not of the job."""


async def stop_task(task: asyncio.Task) -> None:
    """Cancel a loop task until it is done: a cancel that meets a result being set can be
    swallowed on Python 3.11 (inside asyncio.wait_for, also in libraries), and the loop lives on.
    Its outcome is left to whoever owns it (the task group)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)


class Worker:
    def __init__(
        self,
        queue: Queue,
        runner: Runner,
        config: WorkerConfig,
        metrics: WorkerMetrics | None = None,
        on_exit: Callable[[], None] = lambda: None,
        tasks: tuple[str, ...] = (),
    ):
        self.queue = queue
        self.tasks_served = tasks  # published with each heartbeat
        self.runner = runner
        self.config = config
        self.metrics = metrics or WorkerMetrics(config.namespace, config.pool, config.concurrency)
        self.metrics.busy_slots.set_function(lambda: self.occupied)  # read when scraped
        self.on_exit = on_exit
        self.held: dict[str, Job] = {}  # token -> unacknowledged job
        self.overrun: dict[str, Job] = {}  # token -> failed job whose thread runs on
        self.tasks: set[asyncio.Task] = set()  # every job task, also while failing
        self.deadlines: dict[asyncio.Task, float] = {}  # running handler -> loop time it times out
        self.expired: set[asyncio.Task] = set()  # handlers cancelled by their deadline
        self.running: dict[str, tuple[asyncio.Task, JobContext]] = {}  # token -> its handler's
        self.cancel_requested: set[asyncio.Task] = set()  # handlers cancelled by `jobpool cancel`
        self.ack_buffer: list[tuple[Job, Any]] = []
        self.progress: dict[str, tuple[Job, Any]] = {}  # token -> (job, latest unsent progress)
        self.progress_wanted = asyncio.Event()
        self.claiming = 0  # slots a fetch under way may fill
        self.stopping = asyncio.Event()
        self.slot_freed = asyncio.Event()
        self.busy_changed = asyncio.Event()
        self.went_idle = asyncio.Event()
        self.ack_wanted = asyncio.Event()
        self.acks_idle = asyncio.Event()
        self.acks_idle.set()
        self.queue_reachable = True
        self.failure: asyncio.Future[None] | None = None  # a job task's unexpected error
        self.failed = ""  # why the worker stopped, if it did
        self.signals = 0
        self.finished = 0
        self.released = 0

    # -- lifecycle -------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        server = None
        if self.config.metrics_port:
            try:
                server = await serve_metrics(self.metrics.registry, self.config.metrics_port, self._health)
            except OSError as exc:
                log.error(
                    "cannot serve /metrics on port %d: %s; choose another --metrics-port (0 = none)",
                    self.config.metrics_port,
                    exc.strerror or exc,
                )
                await self.queue.close()
                return 1
        log.info(
            "worker %s started: pool %s/%s, %d slots, handler %s, queue %s",
            self.config.worker_id,
            self.config.namespace,
            self.config.pool,
            self.config.concurrency,
            self.config.handler_description,
            redact_url(self.config.queue_url),
        )
        code = await self._serve()
        if server:
            await server.cleanup()
        await self.queue.close()
        self.on_exit()
        return code

    async def _serve(self) -> int:
        """Fetch and run jobs until told to stop, then drain; the exit status."""
        self.failure = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.TaskGroup() as group:
                loops = [
                    group.create_task(loop())
                    for loop in (
                        self._ack_loop,
                        self._heartbeat_loop,
                        self._overrun_watch_loop,
                        self._deadline_loop,
                        self._job_failures,
                        self._progress_loop,
                    )
                ]
                await self._fetch_loop()
                await self._drain()
                for task in loops:
                    await stop_task(task)
        except BaseExceptionGroup as errors:
            return await self._stop_failed(errors.exceptions[0])
        await self._release(list(self.held.values()))
        log.info(
            "drained: %d jobs finished, %d released for immediate redelivery", self.finished, self.released
        )
        await self._unregister()
        return 0

    async def _job_failures(self) -> None:
        """Raise, inside the task group, the unexpected error of a job's task."""
        assert self.failure is not None  # made by run() before the task group starts
        await self.failure

    def _job_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        failure = cast("asyncio.Future[None]", self.failure)  # made by run() before any job task
        if not task.cancelled() and task.exception() is not None and not failure.done():
            failure.set_exception(cast(BaseException, task.exception()))

    async def _stop_failed(self, error: BaseException) -> int:
        """After an unexpected error: unhealthy, jobs cancelled and left to the visibility
        timeout (a redelivery counts an attempt, a release would not), exit status 4."""
        text = error_text(error)
        self.failed = text.splitlines()[0]
        log.error(
            "unexpected error, exiting with status %d so that the worker is restarted; "
            "its %d jobs are redelivered after the visibility timeout:\n%s",
            EXIT_UNEXPECTED_ERROR,
            len(self.held),
            text,
        )
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=CANCEL_GRACE)
        await self._unregister()
        return EXIT_UNEXPECTED_ERROR

    async def _unregister(self) -> None:
        with contextlib.suppress(QueueError, TimeoutError):
            async with asyncio.timeout(5):
                await self.queue.unregister(self.config.worker_id)

    def _on_signal(self, signum: int) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals > 1:
            log.warning(
                "%s again: exiting at once; %d unfinished jobs stay pending and are "
                "redelivered after the visibility timeout",
                name,
                len(self.held),
            )
            logging.shutdown()
            os._exit(1)
        log.info(
            "%s: no new jobs; draining %d in-flight jobs for up to %ss",
            name,
            len(self.tasks),
            self.config.drain_seconds,
        )
        self.stopping.set()

    def _health(self) -> dict[str, Any]:
        health = {
            "status": "failed" if self.failed else "ok",
            "queueReachable": self.queue_reachable,
            "slots": self.config.concurrency,
            "busy": self.occupied,
            "overrun": len(self.overrun),
            "stopping": self.stopping.is_set(),
        }
        if self.failed:
            health["error"] = self.failed
        return health

    @property
    def occupied(self) -> int:
        """Slots holding a job, or a thread still running the handler of a timed-out job."""
        return len(self.held) + len(self.overrun)

    # -- fetching --------------------------------------------------------
    async def _fetch_loop(self) -> None:
        """Fetch at most the free slots until told to stop; jobs of a fetch still under way
        when the stop comes are given back at once (the fetch is bounded by `block_ms`)."""
        failures = 0
        while not self.stopping.is_set():
            free = self.config.concurrency - self.occupied - self.claiming
            if free <= 0:
                self.slot_freed.clear()
                await wait_for_any(self.stopping, self.slot_freed)
                continue
            # not cancelled when the stop comes: a cancelled read could lose the jobs it
            # claimed until the visibility timeout, so they are awaited and given back
            self.claiming += free
            try:
                jobs = await self.queue.fetch(self.config.worker_id, free, self.config.block_ms)
            except QueueError as exc:
                failures += 1
                self._queue_down(exc, failures)
                await wait_for_any(self.stopping, timeout=reconnect_delay(failures))
                continue
            finally:
                self.claiming -= free
            if failures:
                log.info("queue reachable again after %d failed attempts", failures)
                failures = 0
                self.queue_reachable = True
            if self.stopping.is_set():
                await self._release(jobs)
                break
            for job in jobs:
                self._start(job)

    def _queue_down(self, exc: QueueError, failures: int) -> None:
        self.queue_reachable = False
        delay = reconnect_delay(failures)
        if failures == 1 or delay >= 10:
            log.warning("%s; retrying in %gs (attempt %d); jobs in flight are kept", exc, delay, failures)

    def _start(self, job: Job) -> None:
        self.held[job.token] = job
        self._busy_changed()
        task = asyncio.create_task(self._run(job))
        self.tasks.add(task)
        task.add_done_callback(self._job_done)

    # -- running ---------------------------------------------------------
    async def _run(self, job: Job) -> None:
        started = time.time()
        if job.enqueued_at:
            self.metrics.wait.observe(max(0.0, started - job.enqueued_at))
        settings = self.config.job_settings(job.options)
        error = job.payload_error or lost_job_error(job, settings.max_attempts)
        result: Any = None
        permanent = False
        overran: list[asyncio.Future] = []
        if error is None:
            task = asyncio.current_task()
            assert task is not None  # a job runs in its own task
            if settings.timeout:
                self.deadlines[task] = asyncio.get_running_loop().time() + settings.timeout
            loop = asyncio.get_running_loop()
            context = JobContext(
                job.id,
                job.task,
                job.attempts,
                settings.max_attempts,
                started + settings.timeout if settings.timeout else None,
                job.enqueued_at,
                lambda value: loop.call_soon_threadsafe(self._report_progress, job, value),
            )
            self.running[job.token] = (task, context)
            try:
                result = await self.runner(job, context, overran.append)
                result = RawJSON(encode_result(result))
            except asyncio.CancelledError:
                if task in self.cancel_requested:
                    reason = CANCELLED
                elif task in self.expired:
                    reason = timed_out(settings)
                else:
                    raise
                if task.uncancel() > 0:  # a drain's cancel too
                    raise
                error = reason
            except Exception as exc:  # the handler's own TimeoutError is an error like others
                if task in self.cancel_requested:
                    error = CANCELLED
                elif task in self.expired:
                    error = timed_out(settings)
                else:
                    error, permanent = error_text(exc), is_permanent(exc)
            except (SystemExit, KeyboardInterrupt) as exc:  # would stop the loop, not fail
                raise HandlerExit(f"the handler of job {job.id} raised {type(exc).__name__}") from exc
            finally:
                self.running.pop(job.token, None)
                self.deadlines.pop(task, None)
                self.expired.discard(task)
                self.cancel_requested.discard(task)
        self.metrics.duration.observe(time.time() - started)
        if overran:
            # taken before the job's failure frees its slot, so the slot never looks free
            self.overrun[job.token] = job
            log.warning(
                "job %s timed out after %gs but its handler thread is still running (a "
                "thread cannot be stopped): the job is failed now, its slot stays "
                "occupied until the thread returns",
                job.id,
                settings.timeout,
            )
        if error is None:
            self.ack_buffer.append((job, result))
            self.acks_idle.clear()
            self.ack_wanted.set()
        else:
            await self._fail(job, error, settings, permanent=permanent, cancelled=error == CANCELLED)
        if overran:
            await self._wait_for_overrun(job, overran[0], started)

    def _cancel(self, token: str) -> None:
        """A running job asked to be cancelled: its context says so (a sync handler may look) and
        its handler task is cancelled (a command's process group gets SIGTERM)."""
        running = self.running.get(token)
        if running is None or running[0] in self.cancel_requested:
            return
        task, context = running
        log.info(
            "job %s: cancel requested, cancelling its handler",
            self.held[token].id if token in self.held else token,
        )
        self.cancel_requested.add(task)
        context.cancel_requested.set()
        task.cancel()

    def _report_progress(self, job: Job, value: Any) -> None:
        if job.token in self.held:
            self.progress[job.token] = (job, value)
            self.progress_wanted.set()

    async def _progress_loop(self) -> None:
        """Send each running job's latest progress, at most every PROGRESS_INTERVAL; a failure to
        send is dropped (progress is advisory), the job goes on."""
        while True:
            await self.progress_wanted.wait()
            self.progress_wanted.clear()
            batch, self.progress = self.progress, {}
            for job, value in batch.values():
                if job.token not in self.held:
                    continue
                with contextlib.suppress(QueueError):
                    await self.queue.progress(job, encode_json(value))
            await asyncio.sleep(PROGRESS_INTERVAL)

    async def _wait_for_overrun(self, job: Job, thread_end: asyncio.Future, started: float) -> None:
        try:
            with contextlib.suppress(Exception):
                await thread_end
            log.info(
                "job %s: its handler thread returned after %.1fs; the slot is free again",
                job.id,
                time.time() - started,
            )
        finally:
            self.overrun.pop(job.token, None)
            self._busy_changed()
            self.slot_freed.set()

    async def _deadline_loop(self) -> None:
        """Cancel the handlers that ran past their deadline (`--timeout`, or a job's own)."""
        loop = asyncio.get_running_loop()
        tick = min(DEADLINE_TICK, self.config.timeout / 10) if self.config.timeout else DEADLINE_TICK
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for task in overdue(self.deadlines, self.expired, now):
                self.expired.add(task)
                task.cancel()

    async def _overrun_watch_loop(self) -> None:
        """Exit when every slot is occupied by an overrunning thread for another timeout."""
        if not self.config.timeout:
            return
        grace = max(self.config.timeout, 1.0)
        loop = asyncio.get_running_loop()
        since: float | None = None
        while True:
            await asyncio.sleep(min(grace / 4, 1.0))
            if len(self.overrun) < self.config.concurrency:
                since = None
                continue
            since = since if since is not None else loop.time()
            if loop.time() - since >= grace:
                break
        log.error(
            "all %d slots are occupied by handler threads that overran the %gs timeout "
            "(jobs %s, already failed) for %gs more: exiting with status %d so the worker "
            "is restarted",
            self.config.concurrency,
            self.config.timeout,
            ", ".join(sorted(j.id for j in self.overrun.values())),
            grace,
            EXIT_ALL_SLOTS_OVERRUN,
        )
        await self._unregister()
        logging.shutdown()
        os._exit(EXIT_ALL_SLOTS_OVERRUN)  # the stuck threads cannot be joined

    async def _fail(
        self, job: Job, error: str, settings: JobSettings, *, permanent: bool = False, cancelled: bool = False
    ) -> None:
        failures = 0
        while True:
            try:
                outcome = await self.queue.fail(
                    job,
                    error,
                    max_attempts=settings.max_attempts,
                    backoff=settings.backoff,
                    max_backoff=self.config.max_backoff,
                    permanent=permanent,
                    cancelled=cancelled,
                )
                break
            except QueueError as exc:
                failures += 1
                if self.stopping.is_set() and failures > 3:
                    log.warning(
                        "job %s: cannot record its failure (%s); it stays pending and is redelivered",
                        job.id,
                        exc,
                    )
                    self._free(job)
                    return
                self._queue_down(exc, failures)
                await asyncio.sleep(reconnect_delay(failures))
        first_line = error.splitlines()[0] if error else ""
        if outcome == OUTCOME_DEAD_LETTERED:
            log.warning(
                "job %s dead-lettered after attempt %d/%d: %s",
                job.id,
                job.attempts,
                settings.max_attempts,
                first_line,
            )
        elif outcome == OUTCOME_PERMANENT:
            log.warning(
                "job %s dead-lettered at once by a permanent error in attempt %d: %s",
                job.id,
                job.attempts,
                first_line,
            )
        elif outcome == OUTCOME_CANCELLED:
            log.info("job %s cancelled in attempt %d", job.id, job.attempts)
        elif outcome == OUTCOME_RETRIED:
            log.info(
                "job %s failed attempt %d/%d, retrying: %s",
                job.id,
                job.attempts,
                settings.max_attempts,
                first_line,
            )
        self.metrics.jobs[outcome].inc()
        self._free(job)

    def _free(self, job: Job) -> None:
        self.held.pop(job.token, None)
        self.finished += 1
        self._busy_changed()
        self.slot_freed.set()

    def _busy_changed(self) -> None:
        self.busy_changed.set()
        if not self.occupied:
            self.went_idle.set()

    async def _ack_loop(self) -> None:
        failures = 0
        while True:
            await self.ack_wanted.wait()
            self.ack_wanted.clear()
            batch, self.ack_buffer = self.ack_buffer, []
            jobs: list[Job] = []
            while batch:
                # the slots this ack frees are fetched into in the same round trip
                count = (
                    0
                    if self.stopping.is_set()
                    else max(0, self.config.concurrency - self.occupied + len(batch) - self.claiming)
                )
                self.claiming += count
                try:
                    succeeded, duplicates, jobs = await self.queue.ack_then_fetch(
                        batch, self.config.worker_id, count
                    )
                    break
                except QueueError as exc:
                    failures += 1
                    self._queue_down(exc, failures)
                    await asyncio.sleep(reconnect_delay(failures))
                finally:
                    self.claiming -= count
            if failures:
                failures = 0
            if batch:
                self.metrics.jobs[OUTCOME_SUCCEEDED].inc(succeeded)
                if duplicates:
                    self.metrics.jobs[OUTCOME_DUPLICATE].inc(duplicates)
                for job, _ in batch:
                    self._free(job)
            if self.stopping.is_set():
                await self._release(jobs)
            else:
                for job in jobs:
                    self._start(job)
            if not self.ack_buffer:
                self.acks_idle.set()

    async def _heartbeat_loop(self) -> None:
        """Heartbeats keep held jobs and the registration alive; between them, a changed busy
        count is published on its own (no job ids: one small write)."""
        loop = asyncio.get_running_loop()
        next_beat = loop.time()
        published: int | None = None
        published_at = loop.time()
        while True:
            now = loop.time()
            beat = now >= next_beat
            delay = None if beat else busy_publish_delay(self.occupied, published, now - published_at)
            if beat or delay == 0:
                busy = self.occupied
                held = list(self.held.values()) if beat else []
                try:
                    to_cancel = await self.queue.heartbeat(
                        self.config.worker_id, held, self.config.concurrency, busy, self.tasks_served
                    )
                    for token in to_cancel or ():
                        self._cancel(token)
                    published, published_at = busy, loop.time()
                except QueueError:
                    # the fetch loop reports the queue being down; retry no faster than busy
                    published_at = loop.time() + BUSY_PUBLISH_INTERVAL
                if beat:
                    next_beat = now + self.config.heartbeat_interval
                continue
            if delay is None:  # the published count is current: wait for a change
                self.busy_changed.clear()
                await wait_for_any(self.busy_changed, timeout=next_beat - now)
            else:  # until it is due; only becoming idle is reported sooner
                self.went_idle.clear()
                await wait_for_any(self.went_idle, timeout=min(delay, next_beat - now))

    # -- draining --------------------------------------------------------
    async def _drain(self) -> None:
        """Let running jobs finish for `drain_seconds`, cancel the rest (a handler that ignores
        its cancellation is left behind after a grace), then wait for the last acks."""
        pending: set[asyncio.Task] = set()
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=self.config.drain_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_GRACE)
        await wait_for_any(self.acks_idle, timeout=ACK_GRACE)

    async def _release(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        for attempt in range(1, 4):
            try:
                self.released += await self.queue.release(self.config.worker_id, jobs)
                break
            except QueueError as exc:
                log.warning("cannot release %d jobs (%s); attempt %d/3", len(jobs), exc, attempt)
                await asyncio.sleep(reconnect_delay(attempt))
        for job in jobs:
            self.held.pop(job.token, None)


CANCELLED = "cancelled"  # the error of an attempt that a cancel ended


def timed_out(settings: JobSettings) -> str:
    return f"timed out after {settings.timeout:g}s"


def overdue(deadlines: dict[Any, float], expired: set, now: float) -> list:
    """The running handlers past their deadline that were not cancelled yet."""
    return [task for task, deadline in deadlines.items() if deadline <= now and task not in expired]


async def wait_for_any(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Until one of `events` is set or `timeout` seconds passed; a cancellation always ends it."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
