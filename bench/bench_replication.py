"""`make bench-replication`: what spec.queue.durability: replicated costs, and what one Redis
shard carries (the sizing figures of docs/queue.md), against a real master with one replica.

For each durability (async, replicated), one pool:
- submit latency: single `submit` calls one after another (p50/p99 ms)
- bulk submit: `submit_many` of N no-op jobs (jobs/s)
- fetch + ack: the N jobs taken 100 at a time and acknowledged in batches of 100 (jobs/s)
- master CPU per job over submit + fetch + ack (INFO used_cpu_sys + used_cpu_user), and the
  ceiling it implies for one pool on one shard (one core / CPU per job): batched as above, and
  unbatched (the single submits, each fetched and acknowledged alone: the worst case)

Usage: python bench/bench_replication.py [--jobs N] [--latency-samples N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobpool.queue import open_queue  # noqa: E402
from tests.fixtures.redis_ha import Node, wait_for  # noqa: E402


def start_pair(directory: Path) -> tuple[Node, Node]:
    master = Node(directory / "master")
    master.start()
    replica = Node(directory / "replica", f"replicaof {master.host} {master.port}")
    replica.start()
    wait_for(
        lambda: replica.client().info("replication")["master_link_status"] == "up", 30, "the replica to sync"
    )
    return master, replica


def cpu_seconds(node: Node) -> float:
    info = node.client().info("cpu")
    return info["used_cpu_sys"] + info["used_cpu_user"]


async def measure(url: str, master: Node, durability: str, jobs: int, samples: int) -> dict[str, float]:
    queue = open_queue(url, "bench", f"replication-{durability}")
    try:
        await queue.configure(max_length=None, durability=durability)
        latencies = []
        cpu_before = cpu_seconds(master)
        for i in range(samples):
            started = time.perf_counter()
            await queue.submit(i)
            latencies.append((time.perf_counter() - started) * 1000)
        for _ in range(samples):
            await queue.ack_many([(job, None) for job in await queue.fetch("bench", 1, 100)])
        cpu_unbatched = (cpu_seconds(master) - cpu_before) / samples
        await queue.delete_all()
        await queue.configure(max_length=None, durability=durability)
        cpu_before = cpu_seconds(master)
        started = time.perf_counter()
        await queue.submit_many(list(range(jobs)))
        submit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        done = 0
        while done < jobs:
            batch = await queue.fetch("bench", 100, 100)
            await queue.ack_many([(job, None) for job in batch])
            done += len(batch)
        ack_seconds = time.perf_counter() - started
        cpu_per_job = (cpu_seconds(master) - cpu_before) / jobs
        return {
            "p50": statistics.median(latencies),
            "p99": statistics.quantiles(latencies, n=100)[98],
            "submit": jobs / submit_seconds,
            "ack": jobs / ack_seconds,
            "cpu_us": cpu_per_job * 1e6,
            "ceiling": 1 / cpu_per_job,
            "cpu_single_us": cpu_unbatched * 1e6,
            "ceiling_single": 1 / cpu_unbatched,
        }
    finally:
        await queue.delete_all()
        await queue.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--latency-samples", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2, help="each durability this often, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobpool-bench-replication-") as directory:
        master, replica = start_pair(Path(directory))
        try:
            url = f"redis://{master.host}:{master.port}/0"
            rows = [
                (durability, asyncio.run(measure(url, master, durability, args.jobs, args.latency_samples)))
                for _ in range(args.rounds)
                for durability in ("async", "replicated")
            ]
        finally:
            replica.stop()
            master.stop()
    print(
        f"{args.jobs} jobs, {args.latency_samples} single submits, one pool, master + 1 replica (AOF everysec)"
    )
    print(
        f"{'durability':<11} {'submit p50':>11} {'submit p99':>11} {'bulk submit':>13} "
        f"{'fetch+ack':>11} {'CPU/job batched':>16} {'ceiling':>11} {'CPU/job single':>15} {'ceiling':>11}"
    )
    for durability, row in rows:
        print(
            f"{durability:<11} {row['p50']:>8.2f} ms {row['p99']:>8.2f} ms {row['submit']:>8,.0f} j/s "
            f"{row['ack']:>6,.0f} j/s {row['cpu_us']:>13.1f} us {row['ceiling']:>7,.0f} j/s "
            f"{row['cpu_single_us']:>12.1f} us {row['ceiling_single']:>7,.0f} j/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
