"""The Redis server settings that bound what one client can do to the others on a shared Redis.
The bundled Redis sets them (charts/jobpool values `redis.clientBounds`, checked against these by
tests/e2e/test_chart.py), and docs/operations.md ("A production Redis") names them."""

from __future__ import annotations

from ...contract import MAX_PAYLOAD_BYTES_ALLOWED

# A bulk string's bytes: the largest payload spec.queue.maxPayloadBytes allows, with headroom for
# the job's id and the separators of a submit (a submit of several jobs is split well below it).
PROTO_MAX_BULK_LEN = MAX_PAYLOAD_BYTES_ALLOWED + (8 << 20)

CLIENT_BOUNDS = {
    # the buffers of all clients together; past it, the client using most is disconnected, not
    # counted against every pool's maxmemory (one socket announcing a 512 MB bulk preallocates it)
    "maxmemory-clients": "10%",
    "proto-max-bulk-len": str(PROTO_MAX_BULK_LEN),
    # idle connections close after 5 minutes (a blocked read is not idle; clients reconnect)
    "timeout": "300",
    # the library's functions are the only server-side code and each step is short: a function
    # running this long is a bug, and other clients get BUSY from then on instead of waiting
    "busy-reply-threshold": "5000",
}


def command_line() -> list[str]:
    """CLIENT_BOUNDS as redis-server arguments."""
    return [part for name, value in CLIENT_BOUNDS.items() for part in (f"--{name}", value)]
