"""Helpers for tests that run real `jobpool worker` processes against the session redis."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from jobpool.queue import open_queue
from tests.fixtures.redis import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02,
               what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class WorkerProcess:
    """One `jobpool worker` subprocess with its stderr in a log file."""

    def __init__(self, url: str, namespace: str, pool: str, directory: Path, name: str,
                 handler: str | None = None, command: list[str] | None = None,
                 env: dict[str, str] | None = None, **flags: Any):
        self.name = name
        self.log_path = directory / f"{name}.log"
        argv = [sys.executable, "-m", "jobpool.cli", "worker", "--queue", url,
                "--namespace", namespace, "--pool", pool, "--worker-id", name]
        flags.setdefault("metrics_port", 0)
        for flag, value in flags.items():
            argv += [f"--{flag.replace('_', '-')}", str(value)]
        if handler:
            argv += ["--handler", handler]
        if command:
            argv += ["--command", "--", *command]
        full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        self.process = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL,
                                        stderr=self.log_path.open("w"))

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.process.poll() is None


@pytest.fixture
def spawn_worker(redis_server, pool_name, tmp_path):
    """Start workers of this test's pool: `spawn_worker(handler=..., concurrency=...)`."""
    started: list[WorkerProcess] = []

    def spawn(**options: Any) -> WorkerProcess:
        options.setdefault("namespace", "it")
        options.setdefault("pool", pool_name)
        options.setdefault("url", redis_server.url)
        worker = WorkerProcess(directory=tmp_path, name=f"w{len(started)}-{pool_name}"[:60],
                               **options)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.kill()


class SyncQueue:
    """The async queue driven from a synchronous test, one private event loop."""

    def __init__(self, url: str, namespace: str, pool: str, **options: Any):
        self.loop = asyncio.new_event_loop()
        self.queue = open_queue(url, namespace, pool, **options)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.queue, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            value = attribute(*args, **kwargs)
            return self.loop.run_until_complete(value) if asyncio.iscoroutine(value) else value
        return call

    def collect(self, iterator: Any) -> list[Any]:
        async def gather() -> list[Any]:
            return [item async for item in iterator]
        return self.loop.run_until_complete(gather())

    def close(self) -> None:
        self.loop.run_until_complete(self.queue.close())
        self.loop.close()


@pytest.fixture
def queue(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name)
    yield q
    q.delete_all()
    q.close()


@pytest.fixture
def metrics_port() -> int:
    return free_port()
