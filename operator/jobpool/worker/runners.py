"""What runs a job: a Python callable (async on the loop, sync in a thread) or a command
(payload JSON on stdin, result JSON on stdout, non-zero exit = failure with stderr)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import inspect
import json
import os
import signal
import sys
from typing import Any, Awaitable, Callable

from ..queue.codec import RawJSON, handler_problem

STDERR_TAIL = 4000
# A `--command` that exits with this status failed for good: dead-lettered at once, no retry
# (64..78 are sysexits(3)'s, 75 "try again" among them; 100 is free of them and of signals').
PERMANENT_EXIT_STATUS = 100


class Permanent(Exception):
    """Raised by a handler: this job can never succeed (a bad payload, a missing object), so it
    is dead-lettered at once with this error instead of spending its remaining attempts."""


Permanent.__module__ = "jobpool"    # its error text reads `jobpool.Permanent: ...`, as users raise it


class JobFailed(Exception):
    """A failed attempt with the error text that goes to the dead letters; `permanent`: no retry."""

    def __init__(self, text: str, *, permanent: bool = False):
        super().__init__(text)
        self.permanent = permanent


class HandlerError(ValueError):
    """The handler cannot be loaded; the message names it."""


# (payload, payload_text, overrun) -> result; a runner whose job is cancelled while its
# handler goes on running (a thread cannot be killed) calls overrun(a future of its end)
Overrun = Callable[["asyncio.Future[Any]"], None]
Runner = Callable[[Any, str, Overrun], Awaitable[Any]]


def load_callable(spec: str) -> Callable[..., Any]:
    problem = handler_problem(spec)
    if problem is not None:
        raise HandlerError(f"handler {problem}")
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())   # handlers next to where the worker starts, as uvicorn does
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerError(f"handler {spec!r}: cannot import {module_name!r}: "
                           f"{type(exc).__name__}: {exc}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerError(f"handler {spec!r}: {module_name!r} has no attribute "
                               f"{attribute!r}") from None
    if not callable(target):
        raise HandlerError(f"handler {spec!r} is not callable")
    return target


def python_runner(function: Callable[..., Any], threads: int) -> tuple[Runner, Callable[[], None]]:
    """A runner for `function(payload)` and a function that shuts its thread pool down."""
    if inspect.iscoroutinefunction(function):
        async def run_async(payload: Any, _text: str, _overrun: Overrun) -> Any:
            return await function(payload)
        return run_async, lambda: None

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=threads,
                                                     thread_name_prefix="job")

    async def run_in_thread(payload: Any, _text: str, overrun: Overrun) -> Any:
        thread_run = executor.submit(function, payload)
        thread_end = asyncio.wrap_future(thread_run)
        try:
            result = await asyncio.shield(thread_end)
        except asyncio.CancelledError:
            if not thread_run.cancel():      # already running: only its end can be awaited
                overrun(thread_end)
            raise
        if inspect.isawaitable(result):
            result = await result
        return result

    return run_in_thread, lambda: executor.shutdown(wait=False, cancel_futures=True)


def command_runner(argv: tuple[str, ...]) -> Runner:
    async def run_command(_payload: Any, text: str, _overrun: Overrun) -> Any:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise JobFailed(f"cannot start command {argv[0]!r}: {exc}") from None
        try:
            out, err = await process.communicate(text.encode() + b"\n")
        except BaseException:
            # a timeout or a drain cancels the job: its whole process group goes with it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            detail = err.decode(errors="replace").strip()[-STDERR_TAIL:] or "(no stderr)"
            permanent = process.returncode == PERMANENT_EXIT_STATUS
            raise JobFailed(f"command exited with status {process.returncode}"
                            f"{' (permanent)' if permanent else ''}: {detail}", permanent=permanent)
        output = out.decode(errors="replace").strip()
        if not output:
            return None
        try:
            json.loads(output)
        except ValueError as exc:
            raise JobFailed(f"command printed something that is not JSON on stdout ({exc}): "
                            f"{output[:200]!r}") from None
        return RawJSON(output)

    return run_command
