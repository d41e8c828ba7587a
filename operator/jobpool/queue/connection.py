"""How a queue URL becomes a Redis client: one instance, a Sentinel-watched master, or a
Redis Cluster. This is the one place that reads the topology out of a URL.

    redis://[user:password@]host[:port][/db]          one instance (rediss:// with TLS, unix://)
    redis+sentinel://[user:password@]host[:port][,host[:port]...]/<master>[/db][?sentinel_password=...]
    redis+cluster://[user:password@]host[:port][,host[:port]...]

The user and password are the Redis ones (also for the per-pool ACL users); sentinels that
require a password of their own take it as `sentinel_password`. A pool's keys share one hash
tag, so on a cluster each pool lives on one shard and every function runs on one node.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

import redis.asyncio as aioredis
import redis.connection
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from ..contract import QUEUE_URL_SCHEMES

SINGLE, SENTINEL, CLUSTER = "single", "sentinel", "cluster"
# the scheme's topology; the schemes themselves are the contract's
_TOPOLOGIES = {
    scheme: {"redis+sentinel": SENTINEL, "redis+cluster": CLUSTER}.get(scheme, SINGLE)
    for scheme in QUEUE_URL_SCHEMES
}
_DEFAULT_PORTS = {SENTINEL: 26379, CLUSTER: 6379}

# Errors that mean "not reachable right now": a failover in progress, a node down, a stale
# connection to a demoted master. Callers back off and retry.
UNAVAILABLE = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    OSError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
)


@dataclasses.dataclass(frozen=True)
class QueueAddress:
    """Where a sentinel- or cluster-served queue is; the single-instance URL is left to redis-py."""

    topology: str
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    master: str = ""  # the Sentinel service name
    db: int = 0
    sentinel_password: str | None = None


def topology(url: str) -> str:
    return _TOPOLOGIES.get(urllib.parse.urlsplit(url).scheme, SINGLE)


def parse_address(url: str) -> QueueAddress:
    """The address of a redis+sentinel:// or redis+cluster:// URL; ValueError says what is
    wrong without quoting the URL (it may hold a password)."""
    parts = urllib.parse.urlsplit(url)
    kind = _TOPOLOGIES[parts.scheme]
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, colon, password = userinfo.partition(":")
    nodes = tuple(_host_port(item, _DEFAULT_PORTS[kind]) for item in hosts.split(","))
    path = [segment for segment in parts.path.split("/") if segment]
    query = dict(urllib.parse.parse_qsl(parts.query))
    address = QueueAddress(
        kind,
        nodes,
        urllib.parse.unquote(username) or None,
        urllib.parse.unquote(password) if colon else None,
        sentinel_password=query.get("sentinel_password"),
    )
    if kind == CLUSTER:
        if path not in ([], ["0"]):
            raise ValueError("a Redis Cluster has only database 0: give no path")
        return address
    if not path or len(path) > 2:
        raise ValueError("give the Sentinel master name as the path: /<master>[/db]")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError("the database is not a number")
    return dataclasses.replace(address, master=path[0], db=int(path[1]) if len(path) == 2 else 0)


def names_a_db(url: str) -> bool:
    """Whether a client of `url` SELECTs a db other than 0 when it connects."""
    if topology(url) == SINGLE:
        return bool(int(redis.connection.parse_url(url).get("db") or 0))
    return topology(url) == SENTINEL and parse_address(url).db != 0


def with_db(url: str, db: int) -> str:
    """`url` naming db `db` instead (one instance or Sentinel; a cluster has only db 0)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.urlencode([(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "db"])
    path = [segment for segment in parts.path.split("/") if segment]
    path = [path[0], str(db)] if topology(url) == SENTINEL else [str(db)]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + "/".join(path), query, ""))


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    host, colon, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
    if not colon:
        host, port = item, str(default_port)
    host = host.strip("[]")
    if not host:
        raise ValueError("a node has no host")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("a node's port is not a number from 1 to 65535")
    return host, int(port)


def address_problem(url: str) -> str | None:
    """What is wrong with a sentinel or cluster URL (quoting none of it), or None."""
    try:
        parse_address(url)
    except ValueError as exc:
        return str(exc)
    return None


def connect(
    url: str, *, decode_responses: bool, socket_connect_timeout: float, socket_timeout: float, **options: Any
) -> Any:
    """A redis-py asyncio client for the queue at `url`; no connection is made yet."""
    kind = topology(url)
    timeouts: dict[str, Any] = dict(
        socket_connect_timeout=socket_connect_timeout, socket_timeout=socket_timeout
    )
    if kind == SINGLE:
        return aioredis.from_url(url, decode_responses=decode_responses, **timeouts, **options)
    address = parse_address(url)
    credentials: dict[str, Any] = dict(username=address.username, password=address.password)
    if kind == CLUSTER:
        # a failover's errors reach the caller, who backs off: the client re-reads the slots then
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            decode_responses=decode_responses,
            **credentials,
            **timeouts,
        )
    sentinels = Sentinel(
        list(address.nodes), sentinel_kwargs=dict(password=address.sentinel_password, **timeouts)
    )
    return sentinels.master_for(
        address.master, db=address.db, decode_responses=decode_responses, **credentials, **timeouts, **options
    )


async def drop_connections(client: Any) -> None:
    """Close the pooled connections, so the next command connects afresh (to the master a
    failover promoted: Sentinel asks the sentinels, a cluster client re-reads the slots)."""
    if isinstance(client, RedisCluster):
        await client.aclose()
    else:
        await client.connection_pool.disconnect()


async def on_every_server(client: Any, *command: Any) -> list[Any]:
    """Run `command` on every server of the queue, replicas too, and return their replies:
    what replication does not carry (ACL users) must be on each node a failover may promote.
    A replica down now gets it from the operator's periodic re-apply."""
    if isinstance(client, RedisCluster):
        view = await _retried(client, _cluster_view)
        kwargs = client.connection_kwargs
        primaries = [
            tuple(address.rsplit(":", 1))
            for address, info in view.items()
            if "master" in info["flags"] and "fail" not in info["flags"]
        ]
        replicas = [
            tuple(address.rsplit(":", 1))
            for address, info in view.items()
            if "slave" in info["flags"] and "fail" not in info["flags"]
        ]
        return [
            *await _run_on(primaries, kwargs, command, required=True),
            *await _run_on(replicas, kwargs, command, required=False),
        ]
    replies = [await _retried(client, lambda c: c.execute_command(*command))]
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        replicas = await pool.sentinel_manager.discover_slaves(pool.service_name)
        replies += await _run_on(replicas, pool.connection_kwargs, command, required=False)
    return replies


async def on_every_master(client: Any, action: Any) -> list[Any]:
    """`action(server)` on every master of the queue (each master of a cluster, the one master
    otherwise): what replication carries (functions) needs only the masters."""
    if not isinstance(client, RedisCluster):
        return [await _retried(client, action)]
    view = await _retried(client, _cluster_view)
    kwargs = client.connection_kwargs
    replies = []
    for address, info in view.items():
        if "master" not in info["flags"] or "fail" in info["flags"]:
            continue
        host, port = address.rsplit(":", 1)
        server = aioredis.Redis(
            host=host, port=int(port), **{name: kwargs[name] for name in _REPLICA_KWARGS if name in kwargs}
        )
        try:
            replies.append(await action(server))
        finally:
            await server.aclose()
    return replies


async def _retried(client: Any, action: Any) -> Any:
    """`action(client)`, once more on fresh connections if a pooled one died in a failover."""
    try:
        return await action(client)
    except ConnectionError:
        await drop_connections(client)
        return await action(client)


async def _cluster_view(client: RedisCluster) -> dict[str, Any]:
    await client.initialize()  # a no-op once it knows the slot map
    return await client.execute_command("CLUSTER NODES", target_nodes=client.get_random_node())


async def _run_on(servers: Any, kwargs: dict[str, Any], command: Any, *, required: bool) -> list[Any]:
    """`command` on each server; one that cannot be reached is skipped unless `required`."""
    replies = []
    for host, port in servers:
        server = aioredis.Redis(
            host=host, port=int(port), **{name: kwargs[name] for name in _REPLICA_KWARGS if name in kwargs}
        )
        try:
            replies.append(await server.execute_command(*command))
        except UNAVAILABLE:
            if required:
                raise
        finally:
            await server.aclose()
    return replies


_REPLICA_KWARGS = ("username", "password", "socket_timeout", "socket_connect_timeout")


async def run_replicated(
    client: Any, command: tuple, wait_ms: int, call: Any, load_library: Any
) -> tuple[Any, int]:
    """Run a function (`call(client, command)`, FCALL), then `WAIT 1 wait_ms` on the same
    connection (WAIT counts the replicas that have this connection's writes). Returns (the
    function's reply, replicas that have it)."""
    if not isinstance(client, RedisCluster):
        async with client.client() as pinned:  # one connection for both commands
            reply = await call(pinned, command)
            return reply, await pinned.execute_command("WAIT", 1, wait_ms)
    reply, replicas = await _call_and_wait(client, command, wait_ms)
    if isinstance(reply, ResponseError) and "function not found" in str(reply).lower():
        await load_library(client)  # a node without the library: a fresh server
        reply, replicas = await _call_and_wait(client, command, wait_ms)
    for outcome in (reply, replicas):
        if isinstance(outcome, Exception):
            raise outcome
    return reply, replicas


async def _call_and_wait(client: RedisCluster, command: tuple, wait_ms: int) -> list[Any]:
    """One pipeline to the node of the keys' slot: it sends both commands on one connection."""
    await client.initialize()
    pipe = client.pipeline()
    pipe.execute_command(*command)
    pipe.execute_command("WAIT", 1, wait_ms, target_nodes=client.get_node_from_key(command[3]))
    return await pipe.execute(raise_on_error=False)
