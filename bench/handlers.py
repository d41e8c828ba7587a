"""Handlers that `make bench` runs in real `jobpool worker` processes."""

from __future__ import annotations

import asyncio
import time


async def noop(payload):
    return None


async def sleep_1ms(payload):
    await asyncio.sleep(0.001)


async def sleep_10ms(payload):
    await asyncio.sleep(0.01)


def sync_noop(payload):
    """A sync handler: each job goes through the worker's thread pool."""
    return None


async def started_at(payload):
    """The wall-clock time the job started (enqueue -> start latency)."""
    return time.time()
