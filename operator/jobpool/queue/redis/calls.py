"""How the Redis queue talks to Redis: one function call at a time, sent again after a dropped
connection as the function's resend rule allows, the library loaded where it is missing, writes
confirmed by a replica under replicated durability, and Redis errors as one-line QueueErrors."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from redis.exceptions import ConnectionError, NoPermissionError, OutOfMemoryError, RedisError, ResponseError

from .. import connection
from ..base import QueueError, QueueFull, QueueUnavailable
from ..keys import PoolKeys
from ..urls import redact_url
from . import library
from .functions import WITH_GIVEN_IDS, Function

# spec.queue.durability: replicated makes submit and ack wait this long for one replica; the
# setting is read from the pool's config at most this often.
REPLICA_WAIT_MS = 1000
DURABILITY_REFRESH_SECONDS = 5.0
REPLICATED = "replicated"


class RedisCalls:
    """The clients of one pool's queue and the way every call goes through them."""

    url: str
    namespace: str
    pool: str
    keys: PoolKeys
    redis: Any  # replies decoded as text
    entries: Any  # replies as bytes: stream entries any producer may have written
    _durability: tuple[float, bool] | None  # (read at, replicated)

    @contextlib.contextmanager
    def _errors(self):
        """Redis errors as one-line QueueErrors that say where and what."""
        try:
            yield
        except connection.UNAVAILABLE as exc:
            reason = str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__
            raise QueueUnavailable(f"cannot reach the queue at {redact_url(self.url)}: {reason}") from None
        except OutOfMemoryError:
            raise QueueFull(
                f"queue {redact_url(self.url)} is out of memory: Redis refused a "
                f"write on pool {self.namespace}/{self.pool} because its used memory "
                f"is above its maxmemory; let the workers catch up, shorten result "
                f"retention (spec.results) or raise the Redis maxmemory"
            ) from None
        except RedisError as exc:
            raise QueueError(
                f"queue {redact_url(self.url)} refused an operation on pool "
                f"{self.namespace}/{self.pool}: {exc}"
            ) from None

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one command in a task of its own, so that cancelling the caller ends its wait at
        once: redis-py wraps socket writes in asyncio.wait_for, which on Python 3.11 swallows a
        cancellation that arrives as the write completes. An abandoned command runs to its end."""
        command = asyncio.ensure_future(self._command(function, *args, **kwargs))
        command.add_done_callback(_consume_outcome)
        return await asyncio.shield(command)

    async def _command(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one command, once more on a fresh connection if a pooled one went stale (the
        server restarted); a second failure means the queue is down."""
        try:
            return await function(*args, **kwargs)
        except ConnectionError:
            await self._drop_connections()
            return await function(*args, **kwargs)

    async def _drop_connections(self) -> None:
        await connection.drop_connections(self.redis)
        await connection.drop_connections(self.entries)

    async def _replicated(self) -> bool:
        """Whether the pool asks for replicated writes (spec.queue.durability), as recently read."""
        known = self._durability_known()
        if known is None:
            stored = await self._call(self.redis.hget, self.keys.config, "durability")
            self._durability = (time.monotonic(), stored == REPLICATED)
            return self._durability[1]
        return known

    def _durability_known(self) -> bool | None:
        """Whether the pool's writes are replicated, if read recently; None: read it again."""
        if self._durability is None or time.monotonic() - self._durability[0] > DURABILITY_REFRESH_SECONDS:
            return None
        return self._durability[1]

    async def _function(
        self, function: type[Function], command: tuple, *, client: Any = None, write: bool = False
    ) -> Any:
        """Run one of the library's functions and parse its reply; sent again on a fresh connection
        after a dropped one as its resend rule allows (submit resends by itself)."""
        client = self.redis if client is None else client
        run = self._write if write else self._fcall
        if function.RESEND == WITH_GIVEN_IDS:
            return function.parse(await run(client, command))
        return function.parse(await self._call(run, client, command))

    async def _fcall(self, client: Any, command: tuple) -> Any:
        """FCALL; on a server without this release's library, load it (if this user may) and call
        again. Never EVAL: a pool's user may run only the library's functions."""
        try:
            return await client.execute_command(*command)
        except ResponseError as exc:
            if not library.is_missing(exc):
                raise
        await self._load_library(client)
        return await client.execute_command(*command)

    async def _load_library(self, client: Any) -> None:
        try:
            await client.function_load(library.code(), replace=True)
        except NoPermissionError:
            raise QueueUnavailable(
                f"queue {redact_url(self.url)} has no jobpool functions library {library.name()} "
                f"and this URL's user may not load it (FUNCTION LOAD): the operator loads it with "
                f"its admin queue URL on every master; waiting for it"
            ) from None

    async def _write(self, client: Any, command: tuple) -> Any:
        """Run a function that a producer or a worker is told succeeded; under replicated durability
        only once one replica has its writes, so a failover cannot take them back."""
        if not await self._replicated():
            return await self._fcall(client, command)
        reply, replicas = await connection.run_replicated(
            client, command, REPLICA_WAIT_MS, self._fcall, self._load_library
        )
        if replicas < 1:
            raise QueueUnavailable(
                f"queue {redact_url(self.url)}: no replica confirmed a write of pool "
                f"{self.namespace}/{self.pool} within {REPLICA_WAIT_MS} ms (spec.queue.durability: "
                f"replicated); it may be done: retrying it with the same job ids is safe"
            )
        return reply


def _consume_outcome(command: asyncio.Future) -> None:
    """Retrieve the error of a command whose caller was cancelled: it is nobody's to report."""
    if not command.cancelled():
        command.exception()
