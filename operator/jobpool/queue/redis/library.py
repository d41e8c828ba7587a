"""The queue's server-side code: one Redis Functions library (Redis >= 7.0), kept as `.lua`
files beside this module, a shared prelude first.

Its name carries a digest of its source, so two releases whose functions differ load two
libraries side by side (every function's name starts with the library's), and a release's
clients never run another release's code. Who loads it: the operator with its admin URL on every
master (`load_everywhere`), and a client whose own user may (`FUNCTION LOAD` on the first
`Function not found`); a client that may not waits for the operator.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from typing import Any

from redis.exceptions import ResponseError

from .. import connection
from ..keys import FAIR, GROUP, PRIORITIES, READY, RELEASED_CONSUMER, STREAM_TURN
from .fields import DEAD, ENDED, ENTRY, MEMORY, RESULT, WAKE

PRELUDE = "prelude"


def _lua_table(record) -> str:
    return "{" + ", ".join(f"{name} = '{value}'" for name, value in record._asdict().items()) + "}"


@functools.cache
def sources() -> dict[str, str]:
    """The library's files by name (without `.lua`): the prelude, then one per function."""
    folder = importlib.resources.files(__package__) / "library"
    files = {
        entry.name[:-4]: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".lua")
    }
    return {PRELUDE: files.pop(PRELUDE), **dict(sorted(files.items()))}


def function_names() -> tuple[str, ...]:
    """The functions, as their files and the wrappers name them (without the library's prefix)."""
    return tuple(name for name in sources() if name != PRELUDE)


def _constants(name: str) -> str:
    return (
        f"local LIBRARY, GROUP, RELEASED_CONSUMER = '{name}', '{GROUP}', '{RELEASED_CONSUMER}'\n"
        f"local ENTRY, RESULT, DEAD = {_lua_table(ENTRY)}, {_lua_table(RESULT)}, {_lua_table(DEAD)}\n"
        f"local MEMORY, ENDED = {_lua_table(MEMORY)}, {_lua_table(ENDED)}\n"
        f"local PRIORITIES, READY, FAIR, STREAM_TURN = '{PRIORITIES}', '{READY}', '{FAIR}', "
        f"'{STREAM_TURN}'\nlocal WAKE = '{WAKE}'\n"
    )


@functools.cache
def name() -> str:
    """`jobpool_<digest>`: the same code has the same name, whichever release loads it."""
    body = _constants("") + "\n".join(sources().values())
    return "jobpool_" + hashlib.sha256(body.encode()).hexdigest()[:12]


@functools.cache
def code() -> str:
    """What `FUNCTION LOAD` takes."""
    return f"#!lua name={name()}\n" + _constants(name()) + "\n".join(sources().values())


def qualified(function: str) -> str:
    """The name FCALL takes for one of the library's functions."""
    return f"{name()}_{function}"


def is_missing(error: Exception) -> bool:
    """Whether Redis answered FCALL with "the function is not loaded" (a fresh server)."""
    return "function not found" in str(error).lower()


async def load(server: Any) -> bool:
    """Load the library on one server unless it has it; True if it was loaded now. A check
    first: a load is written to the AOF and replicated, and the operator checks every pass."""
    if await server.function_list(library=name()):
        return False
    try:
        await server.function_load(code())
    except ResponseError as exc:
        if "already exists" not in str(exc):
            raise
        return False
    return True


async def load_everywhere(admin: Any) -> int:
    """The library on every master of the queue `admin` (a client whose user may load functions;
    replicas get it from their master, a promoted one has it); returns on how many it was missing."""
    return sum(await connection.on_every_master(admin, load))
