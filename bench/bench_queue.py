"""`make bench`: the data plane's figures on this machine, against a real redis-server.

- bulk submit: 20,000 no-op jobs through `submit_many` (jobs/s)
- processing: 20,000 waiting no-op jobs through one `jobpool worker` process with
  concurrency 50, then through two such processes (jobs/s, first to last acknowledgement)
- enqueue -> start latency at low load: single submits 5 ms apart to an idle worker (p50/p99)

Usage: python bench/bench_queue.py [--jobs N] [--concurrency C] [--latency-samples N]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobpool.queue import open_queue  # noqa: E402
from tests.fixtures.redis import RedisServer  # noqa: E402


def start_workers(url: str, pool: str, count: int, concurrency: int, handler: str,
                  logs: Path) -> list[subprocess.Popen]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return [subprocess.Popen(
        [sys.executable, "-m", "jobpool.cli", "worker", "--queue", url, "--namespace", "bench",
         "--pool", pool,
         "--concurrency", str(concurrency), "--handler", handler, "--metrics-port", "0",
         "--worker-id", f"bench-{pool}-{i}"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(logs / f"{pool}-{i}.log", "w"))
        for i in range(count)]


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(timeout=30)


async def wait_for_workers(queue, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len((await queue.stats()).workers) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not register; see their logs")
        await asyncio.sleep(0.05)


async def bulk_submit(url: str, jobs: int) -> float:
    queue = open_queue(url, "bench", "submit")
    payloads = list(range(jobs))
    started = time.perf_counter()
    await queue.submit_many(payloads)
    elapsed = time.perf_counter() - started
    await queue.delete_all()
    await queue.close()
    return jobs / elapsed


async def processing(url: str, jobs: int, processes: int, concurrency: int, logs: Path) -> float:
    pool = f"process-{processes}"
    queue = open_queue(url, "bench", pool)
    await queue.submit_many(list(range(jobs)))
    workers = start_workers(url, pool, processes, concurrency,
                            "tests.integration.handlers:noop", logs)
    try:
        first_seen, started = None, time.perf_counter()
        while True:
            stats = await queue.stats()
            now = time.perf_counter()
            if stats.succeeded and first_seen is None:
                first_seen, first_count = now, stats.succeeded
            if stats.succeeded >= jobs:
                break
            if any(w.poll() is not None for w in workers) or now - started > 600:
                raise RuntimeError("a worker exited; see its log in " + str(logs))
            await asyncio.sleep(0.02)
        rate = (jobs - first_count) / (now - first_seen)
    finally:
        stop_workers(workers)
        await queue.delete_all()
        await queue.close()
    return rate


async def latency(url: str, samples: int, logs: Path) -> tuple[float, float]:
    pool = "latency"
    queue = open_queue(url, "bench", pool)
    workers = start_workers(url, pool, 1, 50, "tests.integration.handlers:started_at", logs)
    try:
        await wait_for_workers(queue, 1)
        await queue.submit(0)   # warm up the worker's connections
        delays = []
        for _ in range(samples):
            submitted = time.time()
            job_id = await queue.submit(0)
            result = await queue.result(job_id, timeout=10)
            delays.append((result.result - submitted) * 1000)
            await asyncio.sleep(0.005)
    finally:
        stop_workers(workers)
        await queue.delete_all()
        await queue.close()
    delays.sort()
    return statistics.median(delays), delays[int(len(delays) * 0.99) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency-samples", type=int, default=500)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="jobpool-bench-"))
    server = RedisServer(directory)
    server.start()
    try:
        print(f"redis-server 127.0.0.1:{server.port} (AOF on, everysec); {os.cpu_count()} CPUs")
        rate = await bulk_submit(server.url, args.jobs)
        print(f"bulk submit        {args.jobs:,} jobs: {rate:,.0f} jobs/s")
        for processes in (1, 2):
            rate = await processing(server.url, args.jobs, processes, args.concurrency, directory)
            print(f"processing         {args.jobs:,} no-op jobs, {processes} worker "
                  f"process{'es' if processes > 1 else ''} x concurrency {args.concurrency}: "
                  f"{rate:,.0f} jobs/s")
        p50, p99 = await latency(server.url, args.latency_samples, directory)
        print(f"enqueue -> start   {args.latency_samples} single jobs at low load: "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
