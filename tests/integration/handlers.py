"""Job handlers the integration tests run in real `jobpool worker` processes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path


async def noop(payload):
    return None


async def echo(payload):
    return {"echo": payload}


async def started_at(payload):
    """The wall-clock time the job started (the benchmark measures enqueue -> start)."""
    return time.time()


def square(payload):
    """A sync handler: runs in the worker's thread pool."""
    return payload * payload


async def poison(payload):
    raise ValueError(f"cannot handle {payload!r}")


async def sleepy(payload):
    """Sleeps `payload["seconds"]`; records start and end in JOBPOOL_TEST_LOG (one line each),
    so a test sees which jobs started and which finished, and how many ran at once."""
    log = Path(os.environ["JOBPOOL_TEST_LOG"])
    with log.open("a") as out:
        out.write(f"start {payload['n']} {os.getpid()} {time.time()}\n")
    await asyncio.sleep(payload.get("seconds", 0))
    with log.open("a") as out:
        out.write(f"end {payload['n']} {os.getpid()} {time.time()}\n")
    return payload["n"]


def events(log: Path) -> list[tuple[str, int, int]]:
    """(start|end, job number, worker pid) of the lines `sleepy` wrote, for the tests to read."""
    if not log.exists():
        return []
    return [
        (kind, int(n), int(pid))
        for kind, n, pid, _ in (line.split() for line in log.read_text().splitlines() if line)
    ]


def slow_sync(payload):
    """A sync handler that outlives any drain: it blocks its thread for `payload` seconds."""
    time.sleep(payload)
    return payload


def stuck_sync(payload):
    """A sync handler that blocks its thread for `payload["seconds"]`, whatever the timeout;
    records start and end in JOBPOOL_TEST_LOG like `sleepy`."""
    log = Path(os.environ["JOBPOOL_TEST_LOG"])
    with log.open("a") as out:
        out.write(f"start {payload['n']} {os.getpid()} {time.time()}\n")
    time.sleep(payload.get("seconds", 0))
    with log.open("a") as out:
        out.write(f"end {payload['n']} {os.getpid()} {time.time()}\n")
    return payload["n"]


async def held(payload):
    """Like `sleepy`, but sleeps JOBPOOL_TEST_HOLD_SECONDS of the worker's environment, so
    the same job holds one worker and finishes at once on another."""
    log = Path(os.environ["JOBPOOL_TEST_LOG"])
    with log.open("a") as out:
        out.write(f"start {payload['n']} {os.getpid()} {time.time()}\n")
    await asyncio.sleep(float(os.environ.get("JOBPOOL_TEST_HOLD_SECONDS", "0")))
    with log.open("a") as out:
        out.write(f"end {payload['n']} {os.getpid()} {time.time()}\n")
    return payload["n"]


class Abort(BaseException):
    """Not an Exception: a handler raising it breaks its worker, not only its job."""


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("this error cannot be shown")


class Unserializable:
    def __str__(self):
        raise RuntimeError("nor can this result")


def _text(recipe) -> str:
    """The recipe's text, given as code points so that lone surrogates can travel in JSON."""
    return "".join(map(chr, recipe.get("text", [])))


async def scripted(payload):
    """Does what a payload {"do": ..., "text": [code points], ...} says; echoes anything else.
    The hardening and property tests drive odd results and errors through a worker with it."""
    if not isinstance(payload, dict) or "do" not in payload:
        return payload
    do, text = payload["do"], _text(payload)
    if do == "return":
        return {"text": text, "also": [text]}
    if do == "return_huge":
        return text + "x" * payload["size"]
    if do == "return_nested":
        nested: list = []
        for _ in range(payload["depth"]):
            nested = [nested]
        return nested
    if do == "return_unserializable":
        return {"value": Unserializable()}
    if do == "return_nan":
        return [float("nan")]
    if do == "raise":
        raise ValueError(text)
    if do == "raise_unprintable":
        raise UnprintableError()
    if do == "fail":
        from jobpool.worker import JobFailed

        raise JobFailed(text)
    if do == "abort":
        raise Abort()
    if do == "exit":
        raise SystemExit(0)
    if do == "ignore_cancel":
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(payload["seconds"])
            raise
    raise AssertionError(f"unknown recipe {do!r}")


async def sleepy_or_fail(payload):
    """`sleepy` for {"n", "seconds"} payloads; any other payload fails its attempt."""
    if not isinstance(payload, dict):
        raise ValueError(f"cannot handle {payload!r}")
    await asyncio.sleep(payload.get("seconds", 0))
    return payload["n"]


async def refuse(payload):
    """Refuses a payload for good: no retry can make it valid."""
    import jobpool

    raise jobpool.Permanent(f"cannot resize {payload!r}: not an image")


async def context_echo(payload, job):
    """Takes the job's context as a second parameter: returns what it says, after reporting
    progress twice (the last one stays with the job)."""
    job.progress(0.5)
    job.progress({"done": 2, "of": 4})
    return {
        "id": job.id,
        "task": job.task,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "deadline": job.deadline,
        "enqueued_at": job.enqueued_at,
    }


def context_sync(payload, job):
    """A sync handler gets the context too; it fails its first attempt."""
    if job.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"attempt": job.attempt, "id": job.id}


def sync_until_cancelled(payload, job):
    """A sync handler that runs for payload seconds unless its job is cancelled first."""
    end = time.monotonic() + payload
    while time.monotonic() < end:
        if job.cancelled:
            return "stopped early"
        time.sleep(0.02)
    return "ran to its end"


async def progress_then_wait(payload, job):
    """Reports progress, then holds its slot for payload seconds."""
    job.progress({"step": "resizing"})
    await asyncio.sleep(payload)
    return "done"
