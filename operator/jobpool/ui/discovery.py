"""Which pools there are: the pools that have counters in the queue (every pool that ever had a
job), found with SCAN, which needs a credential that may SCAN (the UI's viewer user, an admin)."""

from __future__ import annotations

from collections.abc import Sequence

from ..queue import connection
from ..queue.keys import PoolKeys


def counters_pattern(namespace: str | None) -> str:
    """The SCAN pattern of the counters keys of one namespace's pools, or of every namespace's."""
    escaped = PoolKeys(namespace or "*", "*").scan_pattern  # "\\{jobpool:ns/\\*}:*" escapes the stars
    return escaped.replace("\\*", "*")[:-1] + "counters"


def pool_of(key: str) -> tuple[str, str] | None:
    """(namespace, pool) of a `{jobpool:<ns>/<pool>}:counters` key."""
    if not key.startswith("{jobpool:") or "}" not in key:
        return None
    namespace, slash, pool = key[len("{jobpool:") : key.index("}")].partition("/")
    return (namespace, pool) if slash and namespace and pool else None


async def discover_pools(url: str, namespaces: Sequence[str] | None) -> list[tuple[str, str]]:
    client = connection.connect(url, decode_responses=True, socket_connect_timeout=5.0, socket_timeout=10.0)
    found: set[tuple[str, str]] = set()
    try:
        wanted: Sequence[str | None] = namespaces or [None]
        for namespace in wanted:
            async for key in client.scan_iter(match=counters_pattern(namespace), count=1000):
                pool = pool_of(key)
                if pool is not None:
                    found.add(pool)
    finally:
        await client.aclose()
    return sorted(found)
