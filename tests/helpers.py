"""The helpers every test layer shares: one poll with a deadline, one free port, one way to run
and stop a real `jobpool worker` process, the async queue driven from synchronous code."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobpool.queue import open_queue

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_HANDLERS = ROOT / "examples" / "01-minimal"  # tasks:square, tasks:slow, ...


def wait_until(
    check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy and return that; a failing kubectl counts
    as "not yet". Fails naming `what` and the last value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = check()
        except subprocess.CalledProcessError as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}"[:3000])
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Signal a process and wait for it; SIGKILL it when it has not exited within `timeout`."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class WorkerProcess:
    """One `jobpool worker` subprocess; `flags` become `--flag value` (metrics off unless given),
    its stderr goes to `log_path` when given. Handlers resolve from the repository and from
    examples/01-minimal. A test that stands a worker in for a pod passes `worker_id=<pod>`."""

    def __init__(
        self,
        url: str,
        namespace: str,
        pool: str,
        handler: str | None = None,
        *,
        command: list[str] | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        **flags: Any,
    ):
        self.name = flags.get("worker_id")
        self.log_path = log_path
        argv = [
            sys.executable,
            "-m",
            "jobpool.cli",
            "worker",
            "--queue",
            url,
            "--namespace",
            namespace,
            "--pool",
            pool,
        ]
        flags.setdefault("metrics_port", 0)
        for flag, value in flags.items():
            argv += [f"--{flag.replace('_', '-')}", str(value)]
        if handler:
            argv += ["--handler", handler]
        if command:
            argv += ["--command", "--", *command]
        full_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(EXAMPLE_HANDLERS)]),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        stderr = log_path.open("w") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (the drain), then SIGKILL after `timeout`."""
        stop_process(self.process, timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


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
