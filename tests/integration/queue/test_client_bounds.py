"""One pool's user cannot take another pool's memory through its connections: with the server
settings of redis/server.py (the bundled Redis's), a socket that announces a huge bulk string is
disconnected instead of counted against maxmemory, and the other pool's submits go on."""

from __future__ import annotations

import socket

import pytest
import redis as redis_sync

from jobpool.queue import QueueFull, acl
from jobpool.queue.redis import server as server_settings
from tests.fixtures.redis import running_redis
from tests.helpers import SyncQueue, wait_until
from tests.integration.queue.test_acl import PoolUsers

MAXMEMORY = ("--maxmemory", "64mb", "--maxmemory-policy", "noeviction")


def preallocate(server, user: str, password: str, sockets: int = 2) -> list[socket.socket]:
    """Sockets that each announce a 512 MB argument and send a little of it: Redis preallocates
    the buffer for the whole of it (measured: 1,025 MiB used_memory from two sockets)."""
    opened = []
    for _ in range(sockets):
        sock = socket.create_connection((server.host, server.port))
        auth = f"*3\r\n$4\r\nAUTH\r\n${len(user)}\r\n{user}\r\n${len(password)}\r\n{password}\r\n"
        sock.sendall(auth.encode())
        assert sock.recv(64).startswith(b"+OK")
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n" + b"x" * 200_000)
        opened.append(sock)
    return opened


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("bounded", [True, False], ids=["with-client-bounds", "without"])
def test_a_pools_user_preallocating_buffers_does_not_make_another_pools_submit_fail(bounded, pool_name):
    settings = (*MAXMEMORY, *(server_settings.command_line() if bounded else ()))
    with running_redis(settings=settings) as server:
        attacker = PoolUsers(server, "it", f"a-{pool_name}"[:63])
        victim = SyncQueue(server.url, "it", f"b-{pool_name}"[:63])
        admin = redis_sync.Redis.from_url(server.url)
        sockets = preallocate(
            server, acl.user_name("it", attacker.pool, acl.PRODUCER), attacker.passwords[acl.PRODUCER]
        )
        try:
            if bounded:
                wait_until(
                    lambda: admin.info("stats")["evicted_clients"] >= 2,
                    what="Redis to disconnect the preallocating clients",
                )
                assert admin.info("memory")["used_memory"] < 64 * 2**20
                assert len(victim.submit_many([{"n": n} for n in range(100)])) == 100
                assert all(closed_by_server(sock) for sock in sockets)
            else:  # today's Redis settings: the attack works
                wait_until(
                    lambda: admin.info("memory")["used_memory"] > 512 * 2**20,
                    what="the preallocation to count against maxmemory",
                )
                with pytest.raises(QueueFull):
                    victim.submit_many([{"n": 1}])
        finally:
            for sock in sockets:
                sock.close()
            victim.close()


def test_the_bounds_leave_a_submit_of_large_payloads_alone(pool_name):
    """A submit's blob is cut at SUBMIT_CHUNK_CHARACTERS, so a producer's buffers stay well below
    maxmemory-clients (10% of maxmemory)."""
    with running_redis(settings=(*MAXMEMORY, *server_settings.command_line())) as server:
        queue = SyncQueue(server.url, "it", pool_name)
        try:
            ids = queue.submit_many([{"blob": "x" * 900_000, "n": n} for n in range(12)])
            assert len(ids) == 12 and queue.stats().waiting == 12
            assert redis_sync.Redis.from_url(server.url).info("stats")["evicted_clients"] == 0
        finally:
            queue.close()
