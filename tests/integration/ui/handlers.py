"""Job handlers the web UI's tests run in real `jobpool worker` processes."""

from __future__ import annotations

import asyncio
from pathlib import Path


async def work_or_fail(payload):
    """Sleeps `seconds`; with {"fail": TEXT, "unless": PATH} raises TEXT until PATH exists, so a
    dead job succeeds once it is replayed after the test makes PATH."""
    await asyncio.sleep(payload.get("seconds", 0))
    if "fail" in payload and not Path(payload["unless"]).exists():
        raise ValueError(payload["fail"])
    return {"done": payload.get("n")}
