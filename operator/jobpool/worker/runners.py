"""What runs a job: a Python callable (async on the loop, sync in a thread) or a command
(payload JSON on stdin, result JSON on stdout, non-zero exit = failure with stderr)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import importlib
import inspect
import json
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..names import check_task, handler_problem
from ..queue.base import Job, QueueError
from ..queue.codec import RawJSON

STDERR_TAIL = 4000
# A `--command` that exits with this status failed for good: dead-lettered at once, no retry
# (64..78 are sysexits(3)'s, 75 "try again" among them; 100 is free of them and of signals').
PERMANENT_EXIT_STATUS = 100
# A `--command` reports progress with stderr lines "jobpool-progress: <JSON>" (a number from 0 to 1
# or an object), kept as a Python handler's progress() is; they are not part of the error text.
PROGRESS_PREFIX = b"jobpool-progress: "
STDERR_CHUNK = 65536


class Permanent(Exception):
    """Raised by a handler: this job can never succeed (a bad payload, a missing object), so it
    is dead-lettered at once with this error instead of spending its remaining attempts."""


Permanent.__module__ = "jobpool"  # its error text reads `jobpool.Permanent: ...`, as users raise it


class JobFailed(Exception):
    """A failed attempt with the error text that goes to the dead letters; `permanent`: no retry."""

    def __init__(self, text: str, *, permanent: bool = False):
        super().__init__(text)
        self.permanent = permanent


class HandlerError(ValueError):
    """The handler cannot be loaded; the message names it."""


@dataclasses.dataclass(frozen=True)
class JobContext:
    """What a handler that takes a second parameter learns of its job."""

    id: str
    task: str  # "" for a job without one
    attempt: int  # 1 on the first delivery
    max_attempts: int  # the job's own, within the pool's cap, else the pool's
    deadline: float | None  # unix seconds when the job times out; None: no timeout
    enqueued_at: float  # unix seconds when it was submitted (or became due again)
    report: Callable[[Any], object] = dataclasses.field(repr=False, compare=False, default=lambda _: None)
    cancel_requested: threading.Event = dataclasses.field(
        repr=False, compare=False, default_factory=threading.Event
    )

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled (`jobpool cancel`): a sync handler, which cannot be
        stopped, may check it and return early; an async one is cancelled."""
        return self.cancel_requested.is_set()

    def progress(self, value: Any) -> None:
        """Report progress: a fraction from 0 to 1, or a JSON object; the last one is kept with
        the running job (`jobpool status`). Cheap to call often: the worker sends the latest one
        at most every PROGRESS_INTERVAL. Callable from a sync handler's thread too."""
        if isinstance(value, bool) or not (
            isinstance(value, dict) or (isinstance(value, (int, float)) and 0 <= value <= 1)
        ):
            raise ValueError(f"progress must be a fraction from 0 to 1 or a dict, got {value!r}")
        self.report(value)


# (job, context, overrun) -> result; a runner whose job is cancelled while its handler goes on
# running (a thread cannot be killed) calls overrun(a future of its end)
Overrun = Callable[["asyncio.Future[Any]"], None]
Runner = Callable[[Job, JobContext, Overrun], Awaitable[Any]]
TASK_ATTRIBUTE = "__jobpool_task__"
CANCEL_GRACE = 5.0  # seconds a cancelled job gets to end (a handler may linger; a command's SIGTERM)


def task(function: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Mark a function of a module as one of its tasks, under its own name or `name`:
    `@jobpool.task` or `@jobpool.task(name="crop.square")`; `jobpool worker --handler module`
    routes each job to the task its submit named."""

    def mark(target: Callable[..., Any]) -> Callable[..., Any]:
        setattr(target, TASK_ATTRIBUTE, check_task(name or target.__name__))
        return target

    return mark if function is None else mark(function)


def load_tasks(spec: str) -> dict[str, Callable[..., Any]]:
    """The handler's tasks by name: "module" (its functions marked with @jobpool.task),
    "module:MAPPING" (a dict of task name -> callable) or "module:function" (one task under the
    function's name; it also serves jobs that name no task, under "")."""
    module_name, _, attribute = spec.partition(":")
    target = _resolve(spec)
    if not attribute:
        tasks = {
            getattr(value, TASK_ATTRIBUTE): value
            for value in vars(target).values()
            if callable(value) and isinstance(getattr(value, TASK_ATTRIBUTE, None), str)
        }
        if not tasks:
            raise HandlerError(
                f"handler {spec!r}: module {module_name!r} has no tasks: mark its "
                f"functions with @jobpool.task, or name one as module:function"
            )
        return tasks
    if isinstance(target, Mapping):
        tasks = {}
        for name, value in target.items():
            try:
                tasks[check_task(name)] = value
            except QueueError as exc:
                raise HandlerError(f"handler {spec!r}: {exc}") from None
            if not name or not callable(value):
                raise HandlerError(f"handler {spec!r}: task {name!r} is not a callable")
        return tasks
    if not callable(target):
        raise HandlerError(f"handler {spec!r} is not callable")
    return {"": target, attribute.rpartition(".")[2]: target}


def load_callable(spec: str) -> Callable[..., Any]:
    target = _resolve(spec)
    if not callable(target):
        raise HandlerError(f"handler {spec!r} is not callable")
    return target


def _resolve(spec: str) -> Any:
    problem = handler_problem(spec)
    if problem is not None:
        raise HandlerError(f"handler {problem}")
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # handlers next to where the worker starts, as uvicorn does
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerError(
            f"handler {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    for part in attribute.split(".") if attribute else ():
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerError(f"handler {spec!r}: {module_name!r} has no attribute {attribute!r}") from None
    return target


def served(tasks: Mapping[str, Any]) -> tuple[str, ...]:
    """The task names a worker publishes (a job without a task is always accepted)."""
    return tuple(sorted(name for name in tasks if name))


def unknown_task(job: Job, tasks: Mapping[str, Any]) -> JobFailed:
    """Permanent: no retry on this worker can run a task it does not serve."""
    what = f"unknown task {job.task!r}" if job.task else "the job names no task"
    return JobFailed(
        f"{what}: this worker serves {', '.join(served(tasks))} (a job without a "
        f"task needs a module:function handler)",
        permanent=True,
    )


def takes_context(function: Callable[..., Any]) -> bool:
    """Whether a handler takes the job's context: a second positional parameter without a default
    (or *args)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    required = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) >= 2


def python_runner(tasks: Mapping[str, Callable[..., Any]], threads: int) -> tuple[Runner, Callable[[], None]]:
    """A runner that calls `tasks[job.task](payload)` (async on the loop, sync in a thread), and
    a function that shuts its thread pool down."""
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="job")
    is_async = {name: inspect.iscoroutinefunction(function) for name, function in tasks.items()}
    with_context = {name: takes_context(function) for name, function in tasks.items()}

    async def run(job: Job, context: JobContext, overrun: Overrun) -> Any:
        function = tasks.get(job.task)
        if function is None:
            raise unknown_task(job, tasks)
        args = (job.payload, context) if with_context[job.task] else (job.payload,)
        if is_async[job.task]:
            return await function(*args)
        thread_run = executor.submit(function, *args)
        thread_end = asyncio.wrap_future(thread_run)
        try:
            result = await asyncio.shield(thread_end)
        except asyncio.CancelledError:
            if not thread_run.cancel():  # already running: only its end can be awaited
                overrun(thread_end)
            raise
        if inspect.isawaitable(result):
            result = await result
        return result

    return run, lambda: executor.shutdown(wait=False, cancel_futures=True)


def command_runner(argv: tuple[str, ...]) -> Runner:
    async def run_command(job: Job, context: JobContext, _overrun: Overrun) -> Any:
        text = job.payload_text
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env={
                    **os.environ,
                    "JOBPOOL_TASK": job.task,
                    "JOBPOOL_JOB_ID": job.id,
                    "JOBPOOL_ATTEMPT": str(context.attempt),
                    "JOBPOOL_MAX_ATTEMPTS": str(context.max_attempts),
                },
            )
        except OSError as exc:
            raise JobFailed(f"cannot start command {argv[0]!r}: {exc}") from None
        try:
            out, err = await _communicate(process, text.encode() + b"\n", context)
        except BaseException:
            # a timeout or a drain cancels the job: its whole process group goes with it; a
            # cancelled job's gets SIGTERM first and CANCEL_GRACE to end
            if context.cancelled:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGTERM)
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CANCEL_GRACE):
                        await asyncio.shield(process.wait())
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            detail = err.decode(errors="replace").strip()[-STDERR_TAIL:] or "(no stderr)"
            permanent = process.returncode == PERMANENT_EXIT_STATUS
            raise JobFailed(
                f"command exited with status {process.returncode}"
                f"{' (permanent)' if permanent else ''}: {detail}",
                permanent=permanent,
            )
        output = out.decode(errors="replace").strip()
        if not output:
            return None
        try:
            json.loads(output)
        except ValueError as exc:
            raise JobFailed(
                f"command printed something that is not JSON on stdout ({exc}): {output[:200]!r}"
            ) from None
        return RawJSON(output)

    return run_command


async def _communicate(
    process: asyncio.subprocess.Process, stdin: bytes, context: JobContext
) -> tuple[bytes, bytes]:
    """Like `process.communicate(stdin)`, but stderr is read line by line as it comes: progress
    lines are reported (context.progress) and left out; the rest is kept, its last
    4 * STDERR_TAIL bytes."""

    async def write() -> None:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it need not read it all
            process.stdin.write(stdin)
            await process.stdin.drain()
        process.stdin.close()

    async def read_stderr() -> bytes:
        assert process.stderr is not None
        kept, pending = bytearray(), b""
        while chunk := await process.stderr.read(STDERR_CHUNK):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > STDERR_CHUNK:  # no line: plain text
                lines.append(pending)
                pending = b""
            for line in lines:
                if not _reported(line, context):
                    kept += line + b"\n"
            del kept[: -4 * STDERR_TAIL]
        if pending and not _reported(pending, context):
            kept += pending
        return bytes(kept[-4 * STDERR_TAIL :])

    assert process.stdout is not None
    _, out, err = await asyncio.gather(write(), process.stdout.read(), read_stderr())
    await process.wait()
    return out, err


def _reported(line: bytes, context: JobContext) -> bool:
    """Whether `line` was a valid progress line, now reported."""
    if not line.startswith(PROGRESS_PREFIX):
        return False
    try:
        context.progress(json.loads(line[len(PROGRESS_PREFIX) :]))
    except (ValueError, RecursionError):  # not JSON, or no fraction nor object: kept as plain stderr
        return False
    return True
