"""What the operator does to one pool's keys on each pass, with its own (admin) connection
(besides storing the memory sample tenants' submits check: the library's sample_memory): keep the
structures it reads each tick bounded, and undo what a pool's own credentials could do to wedge
its queue (a forged maximal stream id, a consumer group moved past waiting entries).

Each step is plain commands on the pool's keys (one hash tag, so one shard of a cluster); the
decisions are pure functions below, the reads and writes are in `upkeep`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..contract import QUEUE_COUNTERS
from .keys import GROUP, RELEASED_CONSUMER, PoolKeys

# Per-pool structures the operator reads every tick (the stats function walks them whole): more
# than any real pool has. A pool of 1,000 pods registers 1,000 workers and a handful of counters.
MAX_WORKERS = 10_000
MAX_COUNTERS = 64
MAX_CONSUMERS = 10_000
# A stream id more than this ahead of the server's clock was never made by the queue (its ids
# are "*": the server's time); the largest one wedges every later submit.
FUTURE_ID_MS = 24 * 3600 * 1000
REPAIR_CHUNK = 1000  # entries looked at per pass; the next pass goes on


@dataclasses.dataclass(frozen=True)
class Upkeep:
    """What one pass found and did; `problems` are one-line messages for a log and an Event."""

    problems: tuple[str, ...] = ()


def oversized(workers: int, counters: int, consumers: int) -> list[str]:
    """Which bounded structures are over their bound (pure)."""
    found = []
    if workers > MAX_WORKERS:
        found.append(
            f"its worker registry has {workers} entries (more than {MAX_WORKERS}): cleared, "
            f"live workers register again within a heartbeat"
        )
    if counters > MAX_COUNTERS:
        found.append(
            f"its counters hash has {counters} fields (more than {MAX_COUNTERS}): "
            f"only the queue's own counters kept"
        )
    if consumers > MAX_CONSUMERS:
        found.append(
            f"its consumer group has {consumers} consumers (more than {MAX_CONSUMERS}): "
            f"consumers holding no job removed"
        )
    return found


def forged_top(last_id: str, now_ms: int) -> bool:
    """Whether the stream's last id is one the queue never makes (far ahead of the clock)."""
    ms = int(last_id.split("-")[0])
    return ms > now_ms + FUTURE_ID_MS


def id_after(a: str, b: str) -> bool:
    """Whether stream id `a` comes after `b`."""
    (am, _, an), (bm, _, bn) = a.partition("-"), b.partition("-")
    return (int(am), int(an)) > (int(bm), int(bn or 0))


async def upkeep(client: Any, keys: PoolKeys, *, full: bool = True) -> Upkeep:
    """One pass over the pool's keys (a decode_responses client with the rights to repair them).
    Not `full`: only the bounds of what the stats read walks (two HLENs, before every read).
    The memory sample is the library's sample_memory function (RedisStreamsQueue.upkeep)."""
    problems = await _bound(client, keys, consumers=full)
    if full:
        problems += await _repair_stream(client, keys)
    return Upkeep(tuple(problems))


async def _bound(client: Any, keys: PoolKeys, *, consumers: bool) -> list[str]:
    async with client.pipeline(transaction=False) as pipe:
        pipe.hlen(keys.workers)
        pipe.hlen(keys.counters)
        workers, counters = await pipe.execute()
    group = None
    if consumers and await client.exists(keys.stream):
        group = next((g for g in await client.xinfo_groups(keys.stream) if g["name"] == GROUP), None)
    consumer_count = int(group["consumers"]) if group else 0
    found = oversized(workers, counters, consumer_count)
    if workers > MAX_WORKERS:
        await client.unlink(keys.workers)
    if counters > MAX_COUNTERS:
        kept = dict(zip(QUEUE_COUNTERS, await client.hmget(keys.counters, list(QUEUE_COUNTERS))))
        async with client.pipeline(transaction=True) as pipe:
            pipe.unlink(keys.counters)
            if any(v is not None for v in kept.values()):
                pipe.hset(keys.counters, mapping={k: v for k, v in kept.items() if v is not None})
            await pipe.execute()
    if consumer_count > MAX_CONSUMERS:
        for consumer in await client.xinfo_consumers(keys.stream, GROUP):
            if int(consumer["pending"]) == 0:
                await client.xgroup_delconsumer(keys.stream, GROUP, consumer["name"])
    return found


async def _repair_stream(client: Any, keys: PoolKeys) -> list[str]:
    if not await client.exists(keys.stream):
        return []
    problems = []
    info = await client.xinfo_stream(keys.stream)
    seconds, micros = await client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    if forged_top(info["last-generated-id"], now_ms):
        problems.append(await _drop_future_entries(client, keys, info, now_ms))
    groups = await client.xinfo_groups(keys.stream)
    group = next((g for g in groups if g["name"] == GROUP), None)
    if group is None:  # made at 0 as the queue makes it, so every entry is delivered
        await client.xgroup_create(keys.stream, GROUP, id="0")
        return problems
    top = (await client.xinfo_stream(keys.stream))["last-generated-id"]
    if id_after(group["last-delivered-id"], top):
        # a group made ahead of the stream would skip every later submit
        await client.xgroup_setid(keys.stream, GROUP, top)
        problems.append(f"the consumer group's position was ahead of the stream's last id: set back to {top}")
        group = next(g for g in await client.xinfo_groups(keys.stream) if g["name"] == GROUP)
    # every entry is pending, or after the group's position (lag), unless the group was moved
    length = await client.xlen(keys.stream)
    lag = group.get("lag")
    if lag is not None and length <= int(group["pending"]) + int(lag):
        return problems
    skipped = await _skipped_entries(client, keys, group["last-delivered-id"])
    if skipped:
        # the group was moved past entries no worker has (XGROUP CREATE ... $ or SETID by a pool's
        # user): they go to the released consumer, which the next fetch of any worker takes from
        await client.xclaim(
            keys.stream,
            GROUP,
            RELEASED_CONSUMER,
            0,
            skipped,
            idle=10**12,
            retrycount=0,
            force=True,
            justid=True,
        )
        problems.append(
            f"{len(skipped)} waiting jobs were behind the consumer group's position (moved by "
            f"someone with the pool's credentials): given back to the workers"
        )
    return problems


async def _drop_future_entries(client: Any, keys: PoolKeys, info: dict[str, Any], now_ms: int) -> str:
    """Remove entries with ids the queue never makes, and set the stream's last id back to its
    newest real entry, so submits (ids "*") work again."""
    limit = f"{now_ms + FUTURE_ID_MS}-0"
    forged = [
        entry_id
        for entry_id, _ in await client.xrange(keys.stream, min="(" + limit, max="+", count=REPAIR_CHUNK)
    ]
    if forged:
        await client.xdel(keys.stream, *forged)
    newest = await client.xrevrange(keys.stream, max="+", min="-", count=1)
    top = newest[0][0] if newest else "0-1"
    await client.execute_command(
        "XSETID", keys.stream, top, "ENTRIESADDED", int(info["entries-added"]), "MAXDELETEDID", top
    )
    for group in await client.xinfo_groups(keys.stream):
        if id_after(group["last-delivered-id"], top):
            await client.xgroup_setid(keys.stream, group["name"], top)
    return (
        f"{len(forged)} stream entries had ids the queue never makes (ahead of the server clock, "
        f"which stops every later submit): removed, and the stream's last id set back to {top}"
    )


async def _skipped_entries(client: Any, keys: PoolKeys, last_delivered: str) -> list[str]:
    """Entries at or before the group's position that no consumer holds: in this queue every such
    entry is pending (an acknowledged one is deleted), unless the group was moved past it."""
    oldest = await client.xrange(keys.stream, min="-", max="+", count=1)
    if not oldest or id_after(oldest[0][0], last_delivered):
        return []
    entries = [
        entry_id
        for entry_id, _ in await client.xrange(keys.stream, min="-", max=last_delivered, count=REPAIR_CHUNK)
    ]
    if not entries:
        return []
    pending = await client.xpending_range(
        keys.stream, GROUP, min=entries[0], max=entries[-1], count=len(entries)
    )
    held = {p["message_id"] for p in pending}
    return [entry for entry in entries if entry not in held]
