"""The Redis user of the in-cluster web page (`jobpool ui`, chart value `ui.enabled`): it reads every
pool of the namespaces the operator watches and, only when the chart enables actions, replays and
purges dead letters and cancels jobs. One user for the page, not one per pool: the page shows many pools, and
Kubernetes RBAC (who may reach its Service) decides who sees it.

Read commands and the library's status function only, on pool keys only, plus the two writes
that function makes (it prunes expired workers and creates the consumer group of a pool that has
none), each confined by a selector to its one key; SCAN to find the pools (it lists key names,
not values)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import connection
from .acl import script_commands
from .redis import library

USER = "jobpool.ui-viewer"  # pool users have four dot-separated parts: no pool user has this name

# what the page reads outside functions (queue/browse.py, ui/discovery.py) and what a client sends
_READS = (
    "xread",
    "xpending",
    "xlen",
    "get",
    "hget",
    "hgetall",
    "hmget",
    "sismember",
    "zcard",
    "zrange",
    "zmscore",
    "zscore",
    "lrange",
    "exists",
    "time",
    "scan",
    "ping",
    "select",
    "fcall",
    "cluster|slots",
    "command",
    "command|getkeys",
)
_STATUS_WRITES = {"workers": ("hdel",), "stream": ("xgroup|create",)}


def key_prefixes(namespaces: Sequence[str] | None) -> list[str]:
    """The key patterns of the pools of these namespaces (None: of every namespace)."""
    if not namespaces:
        return ["{jobpool:*"]
    return ["{jobpool:%s/*" % namespace for namespace in namespaces]


def function_commands(*names: str) -> frozenset[str]:
    """The commands the library's functions `names` (and its shared prelude) call."""
    sources = library.sources()
    found = set(script_commands(sources[library.PRELUDE]))
    for name in names:
        found |= script_commands(sources[name])
    return frozenset(found)


def action_commands() -> tuple[str, ...]:
    """What replay, purge and cancel run (and the page's check that it may: XDEL); replay puts a
    job with a priority back as submit does, with submit's helpers (submit.lua's `shared`)."""
    return tuple(sorted(function_commands("replay", "purge", "cancel", "submit") | {"xdel"}))


def viewer_rules(namespaces: Sequence[str] | None, passwords: Sequence[str], actions: bool) -> list[str]:
    prefixes = key_prefixes(namespaces)
    status = function_commands("stats")
    writes = {command for commands in _STATUS_WRITES.values() for command in commands}
    # no server INFO for any user but the admin (the prelude's memory check asks before it reads)
    commands = sorted((set(_READS) | status) - writes - {"info|memory"})
    rules = [
        "reset",
        "on",
        *(f">{p}" for p in passwords),
        "resetchannels",
        *(f"~{prefix}" for prefix in prefixes),
        "-@all",
        *(f"+{c}" for c in commands),
    ]
    if actions:
        return [*rules, *(f"+{c}" for c in action_commands() if c not in commands)]
    for key, allowed in _STATUS_WRITES.items():
        for prefix in prefixes:
            rules.append(f"(~{prefix}}}:{key} {' '.join('+' + c for c in allowed)})")
    return rules


async def apply_viewer(
    admin: Any, namespaces: Sequence[str] | None, passwords: Sequence[str], actions: bool
) -> None:
    """Create or update the page's user on every server of the queue (ACL users are not replicated)."""
    await connection.on_every_server(
        admin, "ACL", "SETUSER", USER, *viewer_rules(namespaces, passwords, actions)
    )


async def delete_viewer(admin: Any) -> None:
    await connection.on_every_server(admin, "ACL", "DELUSER", USER)
