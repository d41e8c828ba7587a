"""`make bench`: the data plane's figures on this machine, against a real redis-server, each
printed as a ratio to a floor that bare redis-py reaches in the same run.

Floors (bare redis-py with hiredis, no jobpool code):
- XADD one at a time (sync client); XADD pipelined 1,000 per round trip; XADD from asyncio
  with 100 in flight; a consumer draining with XREADGROUP COUNT 100 + one pipelined XACK and
  XDEL per batch (jobs/s and its CPU-seconds per 1,000 entries); the hand-off of one entry
  from XADD to a consumer blocked in XREADGROUP (p50/p99)
jobpool:
- submit: `submit_many` (20,000 jobs), `Client.submit()` one at a time, `AsyncClient.submit()`
  with 100 in flight
- processing: waiting jobs through one `jobpool worker` process with concurrency 50: a no-op
  async handler (jobs/s and worker CPU-seconds per 1,000 jobs), 1 ms and 10 ms async handlers
  (the ceiling is slots / duration), a no-op sync handler; then two processes, no-op; then the
  no-op handler with priorities in use: 10 levels x 10 fairness keys (one level in use, no key,
  is the first no-op figure)
- enqueue -> start latency at low load: single submits 5 ms apart to an idle worker

Each figure is the median of `--runs` runs.

Usage: python bench/bench_queue.py [--jobs N] [--concurrency C] [--runs R] [--latency-samples N]
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
from collections.abc import Callable
from pathlib import Path

import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobpool import AsyncClient, Client, JobOptions  # noqa: E402
from jobpool.queue import open_queue  # noqa: E402
from tests.fixtures.redis import RedisServer  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FLOOR_STREAM = "bench-floor"


# -- floors: bare redis-py --------------------------------------------------
def floor_xadd_one(url: str, jobs: int) -> float:
    r = redis.Redis.from_url(url)
    started = time.perf_counter()
    for n in range(jobs):
        r.xadd(FLOOR_STREAM, {"id": f"job-{n}", "p": str(n)})
    rate = jobs / (time.perf_counter() - started)
    r.delete(FLOOR_STREAM)
    r.close()
    return rate


def floor_xadd_pipelined(url: str, jobs: int) -> float:
    r = redis.Redis.from_url(url)
    started = time.perf_counter()
    fill_floor_stream(r, jobs)
    rate = jobs / (time.perf_counter() - started)
    r.delete(FLOOR_STREAM)
    r.close()
    return rate


def fill_floor_stream(r: redis.Redis, jobs: int) -> None:
    for start in range(0, jobs, 1000):
        pipe = r.pipeline(transaction=False)
        for n in range(start, min(start + 1000, jobs)):
            pipe.xadd(FLOOR_STREAM, {"id": f"job-{n}", "p": str(n)})
        pipe.execute()


async def floor_xadd_in_flight(url: str, jobs: int, in_flight: int = 100) -> float:
    r = aioredis.Redis.from_url(url, max_connections=in_flight)

    async def producer(first: int) -> None:
        for n in range(first, jobs, in_flight):
            await r.xadd(FLOOR_STREAM, {"id": f"job-{n}", "p": str(n)})

    started = time.perf_counter()
    await asyncio.gather(*(producer(i) for i in range(in_flight)))
    rate = jobs / (time.perf_counter() - started)
    await r.delete(FLOOR_STREAM)
    await r.aclose()
    return rate


def floor_drain(url: str, jobs: int) -> tuple[float, float]:
    """(entries/s, CPU-seconds per 1,000 entries) of a bare consumer."""
    r = redis.Redis.from_url(url)
    fill_floor_stream(r, jobs)
    r.xgroup_create(FLOOR_STREAM, "g", id="0")
    cpu, started = time.process_time(), time.perf_counter()
    done = 0
    while done < jobs:
        reply = r.xreadgroup("g", "c", {FLOOR_STREAM: ">"}, count=100)
        ids = [entry_id for entry_id, _fields in reply[0][1]]
        pipe = r.pipeline(transaction=False)
        pipe.xack(FLOOR_STREAM, "g", *ids)
        pipe.xdel(FLOOR_STREAM, *ids)
        pipe.execute()
        done += len(ids)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    r.delete(FLOOR_STREAM)
    r.close()
    return jobs / elapsed, cpu / jobs * 1000


async def floor_handoff(url: str, samples: int) -> tuple[float, float]:
    """XADD -> a consumer blocked in XREADGROUP has the entry (ms, p50 and p99)."""
    producer, consumer = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    await producer.xgroup_create(FLOOR_STREAM, "g", id="$", mkstream=True)
    delays = []
    for _ in range(samples):
        read = asyncio.ensure_future(consumer.xreadgroup("g", "c", {FLOOR_STREAM: ">"}, count=1, block=5000))
        await asyncio.sleep(0.005)
        sent = time.time()
        await producer.xadd(FLOOR_STREAM, {"p": "0"})
        await read
        delays.append((time.time() - sent) * 1000)
    await producer.delete(FLOOR_STREAM)
    await producer.aclose()
    await consumer.aclose()
    return percentiles(delays)


# -- jobpool ----------------------------------------------------------------
async def bulk_submit(url: str, jobs: int) -> float:
    queue = open_queue(url, "bench", "submit")
    started = time.perf_counter()
    await queue.submit_many(list(range(jobs)))
    elapsed = time.perf_counter() - started
    await queue.delete_all()
    await queue.close()
    return jobs / elapsed


def client_submit_one(url: str, jobs: int) -> float:
    client = Client(url, "bench", "submit-one")
    client.submit(0)  # the connection is made before the clock starts, as for the floor
    started = time.perf_counter()
    for n in range(jobs):
        client.submit(n)
    rate = jobs / (time.perf_counter() - started)
    client._run(client._async.queue.delete_all())
    client.close()
    return rate


async def async_client_submit(url: str, jobs: int, in_flight: int = 100) -> float:
    async with AsyncClient(url, "bench", "submit-async") as client:
        await client.submit(0)

        async def producer(first: int) -> None:
            for n in range(first, jobs, in_flight):
                await client.submit(n)

        started = time.perf_counter()
        await asyncio.gather(*(producer(i) for i in range(in_flight)))
        rate = jobs / (time.perf_counter() - started)
        await client.queue.delete_all()
    return rate


def start_workers(
    url: str, pool: str, count: int, concurrency: int, handler: str, logs: Path
) -> list[subprocess.Popen]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobpool.cli",
                "worker",
                "--queue",
                url,
                "--namespace",
                "bench",
                "--pool",
                pool,
                "--concurrency",
                str(concurrency),
                "--handler",
                handler,
                "--metrics-port",
                "0",
                "--worker-id",
                f"bench-{pool}-{i}",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(logs / f"{pool}-{i}.log", "w"),
        )
        for i in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(timeout=30)


def cpu_seconds(processes: list[subprocess.Popen]) -> float:
    """User + system CPU time of the processes so far."""
    total = 0
    for process in processes:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


async def wait_for_workers(queue, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len((await queue.stats()).workers) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not register; see their logs")
        await asyncio.sleep(0.05)


async def processing(
    url: str, jobs: int, processes: int, concurrency: int, handler: str, logs: Path, levels: int = 0
) -> tuple[float, float]:
    """(jobs/s from the first to the last acknowledgement, worker CPU-seconds per 1,000 jobs).
    `levels`: spread the jobs over that many priority levels x that many fairness keys."""
    pool = f"process-{processes}-{handler.rpartition(':')[2].replace('_', '-')}-{levels}"
    queue = open_queue(url, "bench", pool)
    options = [
        JobOptions(priority=n % levels, fairness_key=f"k{n // levels % levels}") if levels else JobOptions()
        for n in range(jobs)
    ]
    await queue.submit_many(list(range(jobs)), options=options)
    workers = start_workers(url, pool, processes, concurrency, f"bench.handlers:{handler}", logs)
    try:
        first_seen, started = None, time.perf_counter()
        while True:
            stats = await queue.stats()
            now = time.perf_counter()
            if stats.succeeded and first_seen is None:
                first_seen, first_count, first_cpu = now, stats.succeeded, cpu_seconds(workers)
            if stats.succeeded >= jobs:
                cpu = cpu_seconds(workers) - first_cpu
                break
            if any(w.poll() is not None for w in workers) or now - started > 600:
                raise RuntimeError("a worker exited; see its log in " + str(logs))
            await asyncio.sleep(0.02)
        done = jobs - first_count
        rate = done / (now - first_seen)
    finally:
        stop_workers(workers)
        await queue.delete_all()
        await queue.close()
    return rate, cpu / done * 1000


async def latency(url: str, samples: int, logs: Path) -> tuple[float, float]:
    pool = "latency"
    queue = open_queue(url, "bench", pool)
    workers = start_workers(url, pool, 1, 50, "bench.handlers:started_at", logs)
    try:
        await wait_for_workers(queue, 1)
        await queue.submit(0)  # warm up the worker's connections
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
    return percentiles(delays)


def percentiles(delays: list[float]) -> tuple[float, float]:
    delays = sorted(delays)
    return statistics.median(delays), delays[max(0, int(len(delays) * 0.99) - 1)]


def median_of(runs: int, measure: Callable[[], object]) -> object:
    """The median run of `measure` (per figure, when it returns a tuple)."""
    results = [measure() for _ in range(runs)]
    if isinstance(results[0], tuple):
        return tuple(statistics.median(column) for column in zip(*results))
    return statistics.median(results)


def line(what: str, figure: str, ratio: float, floor: str, target: str = "") -> None:
    print(f"  {what:<44} {figure:>22}  {ratio:6.2f} x {floor}" + (f"   [{target}]" if target else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--single-jobs", type=int, default=5_000, help="jobs submitted one at a time")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=500)
    args = parser.parse_args()
    jobs, runs, slots = args.jobs, args.runs, args.concurrency
    directory = Path(tempfile.mkdtemp(prefix="jobpool-bench-"))
    server = RedisServer(directory)
    server.start()
    url = server.url
    try:
        print(
            f"redis-server 127.0.0.1:{server.port} (AOF on, everysec); {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}; median of {runs} runs"
        )
        one = median_of(runs, lambda: floor_xadd_one(url, args.single_jobs))
        piped = median_of(runs, lambda: floor_xadd_pipelined(url, jobs))
        in_flight = median_of(runs, lambda: asyncio.run(floor_xadd_in_flight(url, jobs)))
        drain, drain_cpu = median_of(runs, lambda: floor_drain(url, jobs))
        hand_p50, hand_p99 = asyncio.run(floor_handoff(url, args.latency_samples))
        print("floors (bare redis-py):")
        print(
            f"  XADD one at a time {one:,.0f}/s; pipelined {piped:,.0f}/s; asyncio 100 in "
            f"flight {in_flight:,.0f}/s"
        )
        print(
            f"  XREADGROUP COUNT 100 + pipelined XACK/XDEL {drain:,.0f}/s at "
            f"{drain_cpu:.4f} CPU-s/1k; XADD -> blocked XREADGROUP p50 {hand_p50:.2f} ms, "
            f"p99 {hand_p99:.2f} ms"
        )

        print("submit:")
        rate = median_of(runs, lambda: asyncio.run(bulk_submit(url, jobs)))
        line(f"submit_many ({jobs:,} jobs)", f"{rate:,.0f} jobs/s", rate / piped, "pipelined XADD")
        rate = median_of(runs, lambda: client_submit_one(url, args.single_jobs))
        line(
            "Client.submit() one at a time",
            f"{rate:,.0f} jobs/s",
            rate / one,
            "XADD one at a time",
            ">= 8,000/s, >= 0.80 x",
        )
        rate = median_of(runs, lambda: asyncio.run(async_client_submit(url, jobs)))
        line(
            "AsyncClient.submit(), 100 in flight",
            f"{rate:,.0f} jobs/s",
            rate / in_flight,
            "XADD 100 in flight",
            ">= 40,000/s",
        )

        print(f"processing, {jobs:,} waiting jobs, 1 worker process x concurrency {slots}:")
        for handler, ceiling, name, target in (
            ("noop", None, "no-op async handler", ">= 20,000/s"),
            ("sleep_1ms", slots * 1000, "1 ms async handler", ""),
            ("sleep_10ms", slots * 100, "10 ms async handler", ""),
            ("sync_noop", None, "no-op sync handler", ""),
        ):
            rate, cpu = median_of(
                runs, lambda: asyncio.run(processing(url, jobs, 1, slots, handler, directory))
            )
            if ceiling:
                line(name, f"{rate:,.0f} jobs/s", rate / ceiling, f"ceiling {ceiling:,}/s")
            else:
                line(name, f"{rate:,.0f} jobs/s", rate / drain, "bare drain", target)
            line(
                "  worker CPU",
                f"{cpu:.4f} CPU-s/1k",
                cpu / drain_cpu,
                "bare drain's CPU",
                "<= 0.05 CPU-s/1k" if handler == "noop" else "",
            )
        rate, cpu = median_of(runs, lambda: asyncio.run(processing(url, jobs, 2, slots, "noop", directory)))
        line("2 worker processes, no-op", f"{rate:,.0f} jobs/s", rate / drain, "bare drain")
        rate, cpu = median_of(
            runs, lambda: asyncio.run(processing(url, jobs, 1, slots, "noop", directory, levels=10))
        )
        line("no-op, 10 levels x 10 fairness keys", f"{rate:,.0f} jobs/s", rate / drain, "bare drain")
        line("  worker CPU", f"{cpu:.4f} CPU-s/1k", cpu / drain_cpu, "bare drain's CPU")

        p50, p99 = median_of(runs, lambda: asyncio.run(latency(url, args.latency_samples, directory)))
        print(f"enqueue -> start, {args.latency_samples} single jobs at low load:")
        line("p50", f"{p50:.2f} ms", p50 / hand_p50, "bare hand-off p50", "< 1 ms")
        line("p99", f"{p99:.2f} ms", p99 / hand_p99, "bare hand-off p99", "< 5 ms")
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
