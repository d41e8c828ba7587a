"""Pure helpers: job ids, JSON payloads, queue URLs and the retry policy."""
from __future__ import annotations

import json
import random
import urllib.parse
import uuid
from typing import Any

from .base import QueueError

MAX_ID_LENGTH = 256


class RawJSON(str):
    """Text that is already JSON: stored as it is, not encoded again."""


def new_job_id() -> str:
    return uuid.uuid4().hex


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


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_json(value: Any, what: str = "payload") -> str:
    if isinstance(value, RawJSON):
        return str(value)
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise QueueError(f"{what} is not JSON-serializable: {exc}") from None


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


def outcome_of_failure(attempts: int, max_attempts: int) -> str:
    """After a failed attempt: "retried" while attempts remain, else "dead_lettered"."""
    return "retried" if attempts < max_attempts else "dead_lettered"


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    else:
        netloc = f":***@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_queue_url(url: Any) -> str:
    """Refuse what cannot be a Redis URL with a one-line message that says what is expected."""
    expected = "expected redis://[:password@]host[:port][/db], rediss://... or unix:///path"
    if not isinstance(url, str) or not url.strip():
        raise QueueError(f"no queue URL given: set --queue or JOBPOOL_QUEUE_URL ({expected})")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise QueueError(f"invalid queue URL {redact_url(url)!r}: {exc} ({expected})") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise QueueError(f"invalid queue URL {redact_url(url)!r}: unknown scheme "
                         f"{parts.scheme or '(none)'!r} ({expected})")
    if parts.scheme == "unix":
        if not parts.path:
            raise QueueError(f"invalid queue URL {redact_url(url)!r}: no socket path ({expected})")
        return url
    if not parts.hostname:
        raise QueueError(f"invalid queue URL {redact_url(url)!r}: no host ({expected})")
    if port == 0:
        raise QueueError(f"invalid queue URL {redact_url(url)!r}: port 0 ({expected})")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise QueueError(f"invalid queue URL {redact_url(url)!r}: database {db!r} is not a "
                         f"number ({expected})")
    return url
