"""Redis ACL users of one pool: what a worker and a producer may run, and on which keys.

The commands come from the library's functions themselves (Redis checks ACLs inside
functions too, against the caller's user) plus the few commands `redis/queue.py` sends outside
them, so a function that starts calling a new command extends the users with it. A user runs the
library's functions (FCALL) and no code of its own: no EVAL, EVALSHA, SCRIPT or FUNCTION.
Key patterns are the pool's hash tag, so one pool's credentials reach no other pool's keys and
no server-wide command (FLUSHALL, CONFIG, KEYS, SCAN, MONITOR, ACL, ...).
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from typing import Any

from . import connection
from .keys import FAIR, READY, PoolKeys
from .redis import functions, library

WORKER, PRODUCER = "worker", "producer"
ROLES = (WORKER, PRODUCER)

# Commands whose first argument names what runs (ACL rules name it as "command|subcommand").
_CONTAINERS = {"XGROUP", "XINFO", "INFO", "SCRIPT", "CLIENT"}
_CALL = re.compile(r"redis\.call,?\s*\(?\s*'(\w+)'(?:,\s*'(\w+)')?")

# FCALL of the library's functions; a cluster client reads the slot map and the command table
# (to find keys) when it connects. SELECT only for a URL naming a db other than 0 (user_rules).
_CLIENT = ("fcall", "ping", "cluster|slots", "command", "command|getkeys")
# Tenants get no INFO (any section shows the whole server): submit.lua reads INFO only when its
# caller may (redis.acl_check_cmd), else the sample the operator stores each pass (sample_memory).
_NOT_FOR_TENANTS = frozenset({"info|memory"})
# What redis/queue.py sends outside functions, by role.
_DIRECT = {
    # the blocking read of fetch and its group repair; result, results and dead letters to read
    WORKER: (
        "xreadgroup",
        "xgroup|create",
        "get",
        "xread",
        "xrange",
        "xrevrange",
        "hget",
        "hexists",
        "zscore",
        "wait",
    ),
    # the payload limit before a large submit; result (its blocking read of the results and ended
    # streams, whether the job is dead or cancelled) and results; WAIT for replicated durability
    PRODUCER: ("hget", "get", "hexists", "xread", "xrevrange", "zscore", "wait"),
}
_FUNCTIONS = {WORKER: functions.WORKER_FUNCTIONS, PRODUCER: functions.PRODUCER_FUNCTIONS}
# Redis checks every key a function is given as one it may read and write, so a producer holds
# the keys its functions name; the commands that write are each confined (by an ACL selector) to
# the one key they must write: a producer submits and reads, it cannot fetch, ack or delete.
# The submit function is given the result key of every caller-given id (also of a submit sent
# again after a dropped connection), so the producer holds `result:*` as well.
_PRODUCER_KEYS = (
    "stream",
    "live",
    "counters",
    "workers",
    "config",
    "dead-ids",
    "delayed",
    "dead",
    "result:*",
    "memory",
    "tasks",
    "scheduled",
    "progress",
    "priorities",
    "express",
)
# Keys a producer's function is given but the producer may not read: a scheduled job's entry waits
# in delayed-jobs with the retries' payloads. A selector lets FCALL name them (with the keys above),
# and the write selector below lets the function HSET there; nothing else reaches them.
_PRODUCER_FUNCTION_ONLY_KEYS = ("delayed-jobs",)
# Read only through a selector of their own (one for keys one command reads together): XREAD is for
# the results and ended streams alone, so neither the waiting jobs' payloads nor the dead letters'
# errors reach a producer; ZSCORE is for the cancelled ids alone.
_PRODUCER_READS = {("results", "ended"): ("xread", "xrevrange"), ("cancelled",): ("zscore",)}
_PRODUCER_WRITES = {
    "stream": ("xadd", "xgroup|create"),
    "live": ("sadd",),
    "counters": ("hincrby",),
    "workers": ("hdel",),  # status prunes workers whose registration expired
    "memory": ("hincrby",),  # what its submits added since the operator's memory sample
    "scheduled": ("zadd",),
    "delayed-jobs": ("hset",),  # a job submitted to run later
    # a job with a priority or a fairness key waits in its level's lists (keys.py)
    "priorities": ("hincrby",),
    f"{READY}*": ("rpush",),
    f"{FAIR}*": ("rpush",),
    "express": ("hset",),
}  # the wake entry of a worker blocked on the stream
# submit.lua HSETs the memory hash only for a sample of its own, which needs INFO: never a tenant's.
_PRODUCER_UNUSED = ("hset",)


def script_commands(source: str) -> frozenset[str]:
    """The commands Lua source calls, as ACL rules name them (lower case, `cmd|sub`)."""
    found = set()
    for command, first in _CALL.findall(source):
        name = command.lower()
        if command.upper() in _CONTAINERS and first:
            name += "|" + first.lower()
        found.add(name)
    return frozenset(found)


def role_commands(role: str) -> tuple[str, ...]:
    used = set(_CLIENT) | set(_DIRECT[role]) | script_commands(library.sources()[library.PRELUDE])
    for function in _FUNCTIONS[role]:
        used |= script_commands(library.sources()[function.NAME])
    return tuple(sorted(used - _NOT_FOR_TENANTS))


def user_name(namespace: str, pool: str, role: str) -> str:
    """Names and namespaces are DNS-1123 labels (no dots), so the dots separate unambiguously."""
    return f"jobpool.{namespace}.{pool}.{role}"


def user_rules(
    namespace: str, pool: str, role: str, passwords: tuple[str, ...], *, select: bool = False
) -> list[str]:
    """The whole ACL SETUSER rule list: `reset` first, so applying it again is idempotent and
    the result never depends on what the user held before. `select`: the queue's URL names a
    db other than 0, which the client SELECTs on connecting (ACLs cannot pin one db: deletion
    then scans every db for the pool's keys)."""
    prefix = PoolKeys(namespace, pool).scan_pattern[:-1]  # the escaped "{jobpool:<ns>/<pool>}:"
    rules = ["reset", "on", *(f">{password}" for password in passwords), "resetchannels"]
    db = ["+select"] if select else []
    if role == WORKER:
        return [*rules, f"~{prefix}*", "-@all", *(f"+{c}" for c in role_commands(role)), *db]
    own = {
        command
        for commands in (*_PRODUCER_WRITES.values(), *_PRODUCER_READS.values())
        for command in commands
    }
    return [
        *rules,
        *(f"~{prefix}{key}" for key in _PRODUCER_KEYS),
        "-@all",
        *(f"+{c}" for c in role_commands(role) if c not in own and c not in _PRODUCER_UNUSED),
        *db,
        "("
        + " ".join(f"~{prefix}{key}" for key in (*_PRODUCER_KEYS, *_PRODUCER_FUNCTION_ONLY_KEYS))
        + " +fcall)",
        *(
            f"(~{prefix}{key} {' '.join('+' + c for c in commands)})"
            for key, commands in _PRODUCER_WRITES.items()
        ),
        *(
            f"({' '.join(f'%R~{prefix}{key}' for key in keys)} {' '.join('+' + c for c in commands)})"
            for keys, commands in _PRODUCER_READS.items()
        ),
    ]


@dataclasses.dataclass(frozen=True)
class PoolUser:
    namespace: str
    pool: str
    role: str
    passwords: tuple[str, ...]  # the current one first; a second one while a rotation rolls

    @property
    def name(self) -> str:
        return user_name(self.namespace, self.pool, self.role)


def user_url(admin_url: str, name: str, password: str) -> str:
    """The administered queue's URL (same scheme, host, port, db) with this user's credentials."""
    parts = urllib.parse.urlsplit(admin_url)
    hostport = parts.netloc.rpartition("@")[2]
    userinfo = f"{urllib.parse.quote(name, safe='')}:{urllib.parse.quote(password, safe='')}"
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("username", "password")]
    )
    return urllib.parse.urlunsplit((parts.scheme, f"{userinfo}@{hostport}", parts.path, query, ""))


async def apply_user(admin: Any, user: PoolUser, *, select: bool = False) -> None:
    """Create or update the user on every server of the queue `admin` (a redis client with ACL
    rights): Redis does not replicate ACL users, and a failover may promote any replica.
    `select`: the queue's URL names a db other than 0 (connection.names_a_db)."""
    await connection.on_every_server(
        admin,
        "ACL",
        "SETUSER",
        user.name,
        *user_rules(user.namespace, user.pool, user.role, user.passwords, select=select),
    )


async def delete_users(admin: Any, namespace: str, pool: str) -> int:
    """Remove the pool's users from every server; Redis closes their connections. Returns how
    many existed."""
    replies = await connection.on_every_server(
        admin, "ACL", "DELUSER", *(user_name(namespace, pool, role) for role in ROLES)
    )
    return max(int(reply) for reply in replies)
