"""Handlers of the examples: plain functions of one JSON payload."""

import asyncio
import hashlib
import time


def square(payload):
    """The result of a job is its return value."""
    return payload * payload


def resize(payload):
    """Stands in for real work on {"src": ...} payloads."""
    time.sleep(float(payload.get("seconds", 0.01)))
    return {"src": payload["src"], "thumbnail": payload["src"].rsplit(".", 1)[0] + "-small.png"}


def slow(payload):
    """Holds a job slot for `payload` seconds (used to watch saturation and scaling)."""
    time.sleep(float(payload))
    return payload


async def render_frame(frame):
    """The job of `make demo-cluster`: "render" frame n for a fifth of a second, return its checksum
    (an async handler: a worker's slots wait together, with no thread each)."""
    await asyncio.sleep(0.2)
    return hashlib.sha256(f"frame-{frame}".encode()).hexdigest()[:16]
