"""Helpers for tests that run real `jobpool worker` processes against the session redis."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import SyncQueue, WorkerProcess, free_port


@pytest.fixture
def spawn_worker(redis_server, pool_name, tmp_path):
    """Start workers of this test's pool: `spawn_worker(handler=..., concurrency=...)`."""
    started: list[WorkerProcess] = []

    def spawn(**options: Any) -> WorkerProcess:
        options.setdefault("namespace", "it")
        options.setdefault("pool", pool_name)
        options.setdefault("url", redis_server.url)
        name = f"w{len(started)}-{pool_name}"[:60]
        worker = WorkerProcess(
            options.pop("url"),
            options.pop("namespace"),
            options.pop("pool"),
            log_path=tmp_path / f"{name}.log",
            worker_id=name,
            **options,
        )
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.kill()


@pytest.fixture
def queue(redis_server, pool_name):
    q = SyncQueue(redis_server.url, "it", pool_name)
    yield q
    q.delete_all()
    q.close()


@pytest.fixture
def metrics_port() -> int:
    return free_port()
