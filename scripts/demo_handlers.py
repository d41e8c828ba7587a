"""The job the demo runs: a checksum of the payload after a few milliseconds of "work"."""

import asyncio
import hashlib
import json
import random


async def checksum(payload):
    await asyncio.sleep(random.uniform(0.005, 0.02))
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]
