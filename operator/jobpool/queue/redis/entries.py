"""Stream entries, results and the stats reply as the Redis queue decodes them: entries are
read as bytes (any producer may have written them); one that cannot be run still becomes a Job."""

from __future__ import annotations

import json
from typing import Any

from ...contract import QUEUE_COUNTERS
from ..base import Job, JobState, QueueStats, WorkerInfo
from ..codec import RawJSON, decode_options
from .fields import ENTRY


def readable(value: bytes) -> str:
    """Bytes as text; what is not UTF-8 shows as \\x escapes."""
    return value.decode("utf-8", "backslashreplace")


def stream_entries(reply: Any) -> list:
    """The entries of a one-stream XREAD/XREADGROUP reply (a list in RESP2, a dict in RESP3)."""
    if not reply:
        return []
    return reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]


def streams_entries(reply: Any) -> dict[Any, list]:
    """The entries of a several-stream XREAD reply by stream name (a list in RESP2, a dict in RESP3)."""
    if not reply:
        return {}
    if isinstance(reply, dict):
        return {name: entries[0] for name, entries in reply.items()}
    return dict(reply)


# entries are read as bytes: the same NamedTuple, of the names encoded (its fields are typed str)
_ENTRY_BYTES = type(ENTRY)(*(name.encode() for name in ENTRY))  # type: ignore[arg-type]


def job_from_entry(entry_id: bytes, fields: Any, deliveries: int, consumer: str) -> Job:
    """A stream entry, read as bytes, as a Job. An entry that cannot be run (whoever wrote it)
    still becomes a Job, marked with `payload_error`, so the worker dead-letters it with that
    error; its payload bytes travel on unchanged (`payload_text` decodes them losslessly)."""
    entry = entry_id.decode()
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2]))
    job_id, id_error = job_id_of(entry, fields.get(_ENTRY_BYTES.id))
    text, payload, payload_error = payload_of(fields.get(_ENTRY_BYTES.payload))
    try:
        used = int(fields.get(_ENTRY_BYTES.attempts, 0))
    except ValueError:
        used = 0
    try:
        enqueued_at = int(fields.get(_ENTRY_BYTES.time, 0)) / 1000
    except ValueError:
        enqueued_at = 0.0
    return Job(
        id=job_id,
        payload=payload,
        attempts=used + deliveries,
        enqueued_at=enqueued_at,
        token=entry,
        payload_text=RawJSON(text),
        payload_error=id_error or payload_error,
        replayed=fields.get(_ENTRY_BYTES.replayed) == b"1",
        consumer=consumer,
        task=task_of(fields.get(_ENTRY_BYTES.task)),
        options=decode_options(readable(fields.get(_ENTRY_BYTES.options) or b"")),
    )


def is_express(fields: Any) -> bool:
    """Whether a stream entry (read as bytes) was delivered past unread entries (fetch.lua)."""
    if isinstance(fields, list):
        return _ENTRY_BYTES.express in fields[::2]
    return _ENTRY_BYTES.express in fields


def unpack_delayed(packed: str) -> tuple[int, str, str, str]:
    """A retry as the delayed set keeps it (prelude.lua's pack_delayed):
    -> (attempts, task, options, payload text)."""
    attempts, _, rest = packed.partition(":")
    _replayed, _, rest = rest.partition(":")
    task = options = ""
    if rest.startswith("="):
        task, _, rest = rest[1:].partition(":")
    if rest.startswith("~"):
        options, _, rest = rest[1:].partition(":")
    try:
        return int(attempts), task, options, rest
    except ValueError:
        return 0, task, options, rest


def task_of(raw: bytes | None) -> str:
    """An entry's task name; "" when it has none (or one no worker could serve: not UTF-8)."""
    return raw.decode("utf-8", "backslashreplace") if raw else ""


def job_id_of(entry: str, raw: bytes | None) -> tuple[str, str | None]:
    """The job id of an entry and what is wrong with it; the entry id stands in for an id
    that is missing or unusable."""
    if not raw:
        return entry, None
    try:
        job_id = raw.decode()
    except UnicodeDecodeError:
        return entry, (f"queue entry {entry}: its id {raw!r} is not valid UTF-8; the entry id stands for it")
    if "\0" in job_id:  # only a foreign producer could write this; NUL separates ack fields
        return entry, None
    return job_id, None


def payload_of(raw: bytes | None) -> tuple[str, Any, str | None]:
    """(the payload text as stored, the payload, what is wrong with it)."""
    if raw is None:
        return "", None, f"the queue entry has no payload field {ENTRY.payload!r}"
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        return (
            raw.decode("utf-8", "surrogateescape"),
            None,
            f"payload is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start}): {exc.reason}",
        )
    try:
        return text, json.loads(text), None
    except ValueError as exc:
        return text, None, f"payload is not valid JSON: {exc}"
    except RecursionError:
        return text, None, "payload is nested too deeply to decode"


def stats_from_reply(
    length: int,
    pending: int,
    delayed: int,
    dead: int,
    counters: list[str],
    workers: list[str],
    held: list[str],
    scheduled: int = 0,
    delayed_due: int = 0,
    scheduled_due: int = 0,
    progress: list[str] | None = None,
    outside: list[str] | None = None,
) -> QueueStats:
    """A worker's busy slots are at least the jobs it holds unacknowledged, read with the in-flight
    count: its own published count lags behind a burst by up to a publish interval. The stream's
    waiting entries are level 0's; `outside` (flat: level, jobs) those waiting outside it."""
    count = dict(zip(counters[::2], counters[1::2]))
    by_level = {
        int(level): int(n) for level, n in zip((outside or [])[::2], (outside or [])[1::2]) if int(n) > 0
    }
    by_level[0] = by_level.get(0, 0) + max(0, length - pending)
    unacknowledged = {name: int(n) for name, n in zip(held[::2], held[1::2])}
    infos = []
    for name, text in zip(workers[::2], workers[1::2]):
        info = json.loads(text)
        slots = int(info.get("slots", 0))
        # the published count also covers a slot whose timed-out sync thread still runs (its job is
        # acknowledged); a restarted worker may hold its former life's jobs until they are reclaimed
        busy = max(int(info.get("busy", 0)), unacknowledged.get(name, 0))
        infos.append(WorkerInfo(name, slots, min(busy, slots), float(info.get("lastSeen", 0))))
    return QueueStats(
        waiting=sum(by_level.values()),
        in_flight=pending,
        delayed=delayed,
        dead_letter=dead,
        workers=tuple(sorted(infos, key=lambda w: w.id)),
        # the counters, named like QueueStats' fields
        **{counter: int(count.get(counter, 0)) for counter in QUEUE_COUNTERS},
        scheduled=int(scheduled),
        delayed_due=int(delayed_due),
        scheduled_due=int(scheduled_due),
        progress={
            job_id: _json_or_text(value)
            for job_id, value in zip((progress or [])[::2], (progress or [])[1::2])
        },
        waiting_by_priority={str(level): n for level, n in sorted(by_level.items(), reverse=True) if n},
    )


def job_state(id: str, reply: Any) -> JobState | None:
    """The job function's reply (functions.JobReply) as a JobState; None for an unknown id.
    Times are unix ms there, seconds here; "" is a fact the state has not."""
    if not reply.state:
        return None

    def seconds(ms: str) -> float | None:
        return int(float(ms)) / 1000 if ms else None

    return JobState(
        id=id,
        state=reply.state,
        task=reply.task,
        attempts=int(reply.attempts) if reply.attempts else None,
        worker=reply.worker or None,
        enqueued_at=seconds(reply.enqueued_ms),
        due_at=seconds(reply.due_ms),
        finished_at=seconds(reply.finished_ms),
        error=reply.error or None,
        progress=_json_or_text(reply.progress) if reply.progress else None,
        result=_json_or_text(reply.result) if reply.state == "succeeded" else None,
        priority=int(reply.priority or 0),
        fairness_key=reply.fairness_key or None,
    )


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
