"""Pure helpers of the job encoding: ids, JSON payloads and results, options, the retry policy."""

from __future__ import annotations

import datetime
import json
import random
import re
import uuid
from typing import Any

from ..contract import (
    MAX_PRIORITY,
    OUTCOME_DEAD_LETTERED,
    OUTCOME_PERMANENT,
    OUTCOME_RETRIED,
)
from .base import JobOptions, QueueError

MAX_ID_LENGTH = 256


class RawJSON(str):
    """Text that is already JSON: stored as it is, not encoded again."""


def new_job_ids(count: int) -> list[str]:
    """`count` unique ids at once: a random 96-bit prefix shared by one batch, then the index."""
    prefix = uuid.uuid4().hex[:24]
    return [f"{prefix}{index:x}" for index in range(count)]


def check_job_id(job_id: Any, index: int | None = None) -> str:
    """A caller-given id: a non-empty string of printable characters, at most 256 long."""
    where = f"job {index}: " if index is not None else ""
    if not isinstance(job_id, str) or not job_id:
        raise QueueError(f"{where}id must be a non-empty string, got {job_id!r}")
    if len(job_id) > MAX_ID_LENGTH:
        raise QueueError(f"{where}id is longer than {MAX_ID_LENGTH} characters")
    if not job_id.isprintable():
        raise QueueError(f"{where}id {job_id!r} contains non-printable characters")
    return job_id


FAIRNESS_KEY_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"  # no ',' or ':': how the queue stores options


def check_options(
    timeout: Any = None,
    max_attempts: Any = None,
    backoff: Any = None,
    index: int | None = None,
    *,
    priority: Any = None,
    fairness_key: Any = None,
) -> JobOptions:
    """A job's own options as given to submit; the error names the option."""
    where = f"job {index}: " if index is not None else ""
    number = (int, float)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, number) or not 0 < timeout < float("inf")
    ):
        raise QueueError(f"{where}timeout must be a number of seconds > 0, got {timeout!r}")
    if max_attempts is not None and (
        isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
    ):
        raise QueueError(f"{where}max_attempts must be an integer >= 1, got {max_attempts!r}")
    if backoff is not None and (
        isinstance(backoff, bool) or not isinstance(backoff, number) or not 0 <= backoff < float("inf")
    ):
        raise QueueError(f"{where}backoff must be a number of seconds >= 0, got {backoff!r}")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY
    ):
        raise QueueError(
            f"{where}priority must be an integer from 0 to {MAX_PRIORITY} (higher is served "
            f"first), got {priority!r}"
        )
    if fairness_key is not None and (
        not isinstance(fairness_key, str) or not re.match(FAIRNESS_KEY_PATTERN, fairness_key)
    ):
        raise QueueError(
            f"{where}fairness_key {fairness_key!r} is not a fairness key: 1 to 64 letters, "
            f"digits, '.', '_' or '-'"
        )
    return JobOptions(timeout, max_attempts, backoff, priority or None, fairness_key)


def due_of(delay: Any = None, run_at: Any = None, index: int | None = None) -> str:
    """When a job is due, as the submit function takes it: "" (now), "+ms" after Redis's now
    (`delay` seconds), or unix ms (`run_at`: an aware datetime, or unix seconds)."""
    where = f"job {index}: " if index is not None else ""
    if delay is not None and run_at is not None:
        raise QueueError(f"{where}give delay or run_at, not both")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay < 10**10:
            raise QueueError(f"{where}delay must be a number of seconds >= 0, got {delay!r}")
        return f"+{int(delay * 1000)}" if delay else ""
    if run_at is None:
        return ""
    if isinstance(run_at, datetime.datetime):
        if run_at.tzinfo is None:
            raise QueueError(
                f"{where}run_at {run_at.isoformat()} has no time zone: give an aware "
                f"datetime (e.g. with tzinfo=datetime.timezone.utc)"
            )
        run_at = run_at.timestamp()
    if isinstance(run_at, bool) or not isinstance(run_at, (int, float)) or not 0 <= run_at < 10**11:
        raise QueueError(f"{where}run_at must be an aware datetime or unix seconds, got {run_at!r}")
    return str(int(run_at * 1000))


def encode_options(options: JobOptions) -> str:
    """How the queue stores a job's options: "timeout,max_attempts,backoff", then
    ",priority,fairness_key" for a job with either (the library's prelude reads those two), an
    empty part for the pool's; "" for none."""
    if options == JobOptions():
        return ""
    values: tuple = (options.timeout, options.max_attempts, options.backoff)
    if options.priority or options.fairness_key:
        values += (options.priority or 0, options.fairness_key or "")
    return ",".join(
        "" if value is None else format(value, "g") if isinstance(value, float) else str(value)
        for value in values
    )


def decode_options(text: str | None) -> JobOptions:
    """The options a job was stored with; what cannot be read counts as the pool's."""
    parts = (text or "").split(",")
    if len(parts) not in (3, 5):
        return JobOptions()

    def read(part: str, kind: type) -> Any:
        try:
            return kind(part) if part else None
        except ValueError:
            return None

    priority, fairness_key = (read(parts[3], int), parts[4] or None) if len(parts) == 5 else (None, None)
    return JobOptions(
        read(parts[0], float), read(parts[1], int), read(parts[2], float), priority or None, fairness_key
    )


def payload_size(text: str) -> int:
    """Bytes of an encoded payload as Redis stores it (UTF-8)."""
    return len(text) if text.isascii() else len(text.encode())


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_json(value: Any, what: str = "payload") -> str:
    if isinstance(value, RawJSON):
        return str(value)
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise QueueError(f"{what} is not JSON-serializable: {exc}") from None


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def encode_result(value: Any) -> str:
    """A handler's result as JSON that Redis can store (UTF-8): a lone surrogate, as
    `os.fsdecode` makes of bytes that are not UTF-8, is written as a \\u escape, which JSON
    decodes back to the same string."""
    text = encode_json(value, "the handler's result")
    if text.isascii():  # the common case, and no surrogate is ASCII
        return text
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def storable_text(text: str) -> str:
    """Text fit for Redis (UTF-8), e.g. an error message: a lone surrogate shows as \\udcff."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def decode_json(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)


def retry_delay(attempt: int, backoff: float, max_backoff: float, rand: float | None = None) -> float:
    """Seconds before retry number `attempt` (1 = after the first failure): the delay doubles
    from `backoff`, is capped at `max_backoff`, and is jittered into [half, full]."""
    if rand is None:
        rand = random.random()
    try:
        ceiling = min(max_backoff, backoff * 2.0 ** max(attempt - 1, 0))
    except OverflowError:
        ceiling = max_backoff
    return max(0.0, ceiling * (0.5 + 0.5 * rand))


def outcome_of_failure(attempts: int, max_attempts: int, permanent: bool = False) -> str:
    """After a failed attempt: "permanent" for an error no retry can mend (dead-lettered at
    once), else "retried" while attempts remain, else "dead_lettered"."""
    if permanent:
        return OUTCOME_PERMANENT
    return OUTCOME_RETRIED if attempts < max_attempts else OUTCOME_DEAD_LETTERED
