"""The job of `make demo-cluster`: "render" frame n for a fifth of a second, return its checksum."""
import asyncio
import hashlib

FRAME_SECONDS = 0.2


async def render_frame(frame):
    await asyncio.sleep(FRAME_SECONDS)
    return hashlib.sha256(f"frame-{frame}".encode()).hexdigest()[:16]
