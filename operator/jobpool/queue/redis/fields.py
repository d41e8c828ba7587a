"""The field names of the pool's stream entries and memory hash, one home for Python and the library's prelude.

Three records share short names: `r` is `replayed` in a waiting entry and `result` in a
results entry; the names below say which.
"""

from __future__ import annotations

from typing import NamedTuple


class EntryFields(NamedTuple):
    """A waiting or in-flight job in the pool's stream."""

    id: str = "id"
    payload: str = "p"  # the payload JSON
    attempts: str = "a"  # attempts already used
    time: str = "t"  # enqueued or due, unix ms
    replayed: str = "r"  # "1" once replayed from the dead letters (counted dead once)
    task: str = "k"  # the task name; absent for a job without one
    options: str = "o"  # the job's own options (codec.encode_options); absent: none
    express: str = "x"  # "1": held since written (delivered past unread entries, the
    # `express` hash names its holder); a read that meets it skips it


class ResultFields(NamedTuple):
    """A finished job in the results stream."""

    id: str = "id"
    result: str = "r"  # the result JSON
    attempts: str = "a"


class EndedFields(NamedTuple):
    """A job that ended without a result (dead-lettered or cancelled) in the ended stream."""

    id: str = "id"
    outcome: str = "o"  # dead_lettered | permanent | cancelled


class DeadFields(NamedTuple):
    """A job in the dead-letter stream."""

    id: str = "id"
    payload: str = "p"
    attempts: str = "a"
    error: str = "e"
    time: str = "t"  # dead-lettered at, unix ms
    task: str = "k"  # the task name, "" for a job without one
    options: str = "o"  # the job's own options, "" for none


class MemoryFields(NamedTuple):
    """A pool's memory hash: the Redis memory sample its submits check."""

    sample: str = "sample"  # used:maxmemory:unix ms, from INFO (submit, or the operator's sample_memory)
    added: str = "added"  # the submits' estimate of what they added since


ENTRY, RESULT, DEAD, MEMORY, ENDED = (
    EntryFields(),
    ResultFields(),
    DeadFields(),
    MemoryFields(),
    EndedFields(),
)
# The express field of a submit's wake entry (no job: it wakes a worker blocked on the stream for a
# job that waits outside it), and its field in the `express` hash.
WAKE = "wake"
