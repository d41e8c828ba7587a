"""`make bench-memory`: the Redis memory one waiting job, one result and one dead letter take.

Against its own redis-server (AOF on, as in the chart), through the queue's own scripts (the
ones `jobpool submit` and `jobpool worker` run): `used_memory` (INFO memory) before and after
N items, divided by N, for a small payload and for one of 1 KiB.

Usage: python bench/bench_memory.py [--items N]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobpool.queue import open_queue  # noqa: E402
from tests.fixtures.redis import RedisServer  # noqa: E402

ERROR = "ValueError: cannot handle this payload"  # a short error, as a one-line exception gives


async def used_memory(queue) -> int:
    return (await queue.redis.info("memory"))["used_memory"]


async def run_through(queue, items: int, *, fail: bool) -> None:
    """Fetch every waiting job and acknowledge it (its result = its payload) or dead-letter it."""
    jobs = await queue.fetch("bench", items, 0)
    assert len(jobs) == items, f"fetched {len(jobs)} of {items}"
    if fail:
        for job in jobs:
            await queue.fail(job, ERROR, max_attempts=1, backoff=0, max_backoff=0)
    else:
        await queue.ack_many([(job, job.payload) for job in jobs])


async def measure(url: str, items: int, label: str, payload_of) -> dict[str, float]:
    """Bytes per waiting job, per result and per dead letter for payloads `payload_of(n)`."""
    queue = open_queue(url, "bench", f"memory-{label}", results_cap=items * 2, dead_letter_cap=items * 2)
    await queue.delete_all()
    figures = {}
    before = await used_memory(queue)
    await queue.submit_many([payload_of(n) for n in range(items)])
    figures["waiting job"] = (await used_memory(queue) - before) / items
    await run_through(queue, items, fail=False)
    figures["result"] = (await used_memory(queue) - before) / items

    before = await used_memory(queue)
    await queue.submit_many([payload_of(n) for n in range(items)])
    await run_through(queue, items, fail=True)
    figures["dead letter"] = (await used_memory(queue) - before) / items
    await queue.delete_all()
    await queue.close()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="jobpool-bench-memory-"))
    server = RedisServer(directory)
    server.start()
    try:
        small = await measure(server.url, args.items, "small", lambda n: {"n": n})
        large = await measure(server.url, args.items, "1k", lambda n: {"n": n, "pad": "x" * 1000})
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"Redis used_memory per item, {args.items:,} items each (redis-server, AOF on):")
    print(f"  {'':<12} {'payload ~10 B':>14} {'payload ~1 KiB':>15}")
    for what in ("waiting job", "result", "dead letter"):
        print(f"  {what:<12} {small[what]:>12,.0f} B {large[what]:>13,.0f} B")
    print(
        "  (result = the payload echoed back; dead letter error: "
        f"{len(ERROR)} characters; generated job ids, 26-28 characters)"
    )


if __name__ == "__main__":
    asyncio.run(main())
