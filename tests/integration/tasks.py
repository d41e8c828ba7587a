"""A module of tasks, as `jobpool worker --handler tests.integration.tasks` serves them."""

from __future__ import annotations

import os
from pathlib import Path

import jobpool


@jobpool.task
async def resize(payload):
    return {"resized": payload}


@jobpool.task(name="crop.square")
def crop(payload):
    """A sync task under a name of its own."""
    return {"cropped": payload}


@jobpool.task
def flaky(payload):
    """Fails its first attempt (a marker file in JOBPOOL_TEST_LOG's folder), then succeeds."""
    marker = Path(os.environ["JOBPOOL_TEST_LOG"]).with_name(f"flaky-{payload}")
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("first attempt fails")
    return {"flaky": payload}


def helper(payload):
    """Not a task: a module's plain functions are not routed to."""
    return "never"


# the explicit form: `--handler tests.integration.tasks:TASKS`
TASKS = {"upper": lambda payload: payload.upper(), "lower": lambda payload: payload.lower()}
