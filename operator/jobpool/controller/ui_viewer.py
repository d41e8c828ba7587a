"""The web page's Redis user (chart value `ui.enabled`), kept by the operator on the queue it
administers: applied at start and again every few seconds (ACL users live in memory, not in the
AOF, so a restarted Redis has lost it). The password comes from the chart's Secret through
JOBPOOL_UI_VIEWER_PASSWORD; JOBPOOL_UI_ACTIONS=1 lets the page replay and purge dead letters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from redis.exceptions import RedisError

from ..queue import connection, viewer
from ..queue.urls import redact_url
from .credentials import CHECK_SECONDS, QueueAdmin

log = logging.getLogger("jobpool.operator")


async def keep_viewer(
    admin: QueueAdmin,
    namespaces: Sequence[str] | None,
    password: str,
    actions: bool,
    interval: float = CHECK_SECONDS,
) -> None:
    """Runs until cancelled; a refusal is logged once per change, and tried again."""
    failing = False
    while True:
        try:
            await viewer.apply_viewer(admin.redis, namespaces, [password], actions)
            if failing:
                log.info("the web page's queue user %s is set again", viewer.USER)
            failing = False
        except (RedisError, *connection.UNAVAILABLE) as exc:
            if not failing:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning(
                    "cannot set the web page's queue user %s on %s: %s",
                    viewer.USER,
                    redact_url(admin.url),
                    reason,
                )
            failing = True
        await asyncio.sleep(interval)
