"""Queue URLs: whether one is a usable Redis URL, and how to show or quote one without its
passwords."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from ..contract import QUEUE_URL_SCHEMES
from . import connection
from .base import QueueError

# redis-py takes the password from the userinfo or from a `password=` query parameter.
_QUERY_SECRETS = frozenset({"password", "sentinel_password"})
EXPECTED_QUEUE_URL = (
    "expected redis://[:password@]host[:port][/db], rediss://..., unix:///path, "
    "redis+sentinel://[:password@]host:port[,host:port...]/<master>[/db] or "
    "redis+cluster://[:password@]host:port[,host:port...]"
)


def redact_url(url: Any) -> str:
    """The URL with every password masked, fit for messages and logs. A value without
    `scheme://` is not shown at all: it may be a secret put where a URL belongs."""
    if not isinstance(url, str) or "://" not in url:
        return "<not a URL: value not shown>"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL: value not shown>"
    # Split the netloc by hand: `parts.port` raises on a bad port and `parts.hostname` drops
    # the brackets of an IPv6 address; the host and port are shown exactly as written.
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if colon else f"***@{hostport}"
    query = "&".join(_redact_query_field(field) for field in parts.query.split("&")) if parts.query else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_query_field(field: str) -> str:
    name, equals, _value = field.partition("=")
    if equals and urllib.parse.unquote_plus(name).strip().lower() in _QUERY_SECRETS:
        return f"{name}=***"
    return field


def scrub_url(text: str, url: str, replacement: str) -> str:
    """`text` with every way an error may quote `url` (as given, redacted, its host:port or
    socket path) replaced, for messages that must not reveal a URL read from a Secret."""
    if not url:
        return text
    forms = {url, redact_url(url)}
    try:
        parts = urllib.parse.urlsplit(url)
        hostport = parts.netloc.rpartition("@")[2]
        forms.add(hostport)
        if connection.topology(url) != connection.SINGLE:  # each sentinel or cluster node
            forms.update(f"{host}:{port}" for host, port in connection.parse_address(url).nodes)
            forms.update(hostport.split(","))
        if parts.hostname:
            port = parts.port or 6379
            forms.add(f"{parts.hostname}:{port}")
            # asyncio quotes the resolved address as a tuple: "Connect call failed ('10.0.0.7', 6379)".
            text = re.sub(rf"\('[^']*', {port}(, \d+, \d+)?\)", replacement, text)
        if parts.scheme == "unix" and parts.path:
            forms.add(parts.path)
    except ValueError:
        pass
    for form in sorted((f for f in forms if len(f) > 1), key=len, reverse=True):
        text = text.replace(form, replacement)
    return text


def queue_url_problem(url: Any, *, quote: bool = False) -> str | None:
    """What is wrong with a queue URL, or None if it is a usable Redis URL. The words quote no
    part of it (safe even when the value came from a Secret) unless `quote` asks for the scheme
    or database that `redact_url` shows anyway."""
    if not isinstance(url, str) or not url.strip():
        return "no queue URL given"
    if "://" not in url:
        return "it is not a URL (no scheme://)"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "it cannot be parsed as a URL"
    if parts.scheme not in QUEUE_URL_SCHEMES:
        return f"unknown scheme {parts.scheme!r}" if quote else "unknown scheme"
    if connection.topology(url) != connection.SINGLE:
        return connection.address_problem(url)
    if parts.scheme == "unix":
        return None if parts.path else "no socket path"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number from 1 to 65535"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        return f"database {db!r} is not a number" if quote else "the database is not a number"
    return None


def check_queue_url(url: Any) -> str:
    """Refuse what cannot be a Redis URL with a one-line message that says what is expected."""
    if not isinstance(url, str) or not url.strip():
        raise QueueError(f"no queue URL given: set --queue or JOBPOOL_QUEUE_URL ({EXPECTED_QUEUE_URL})")
    problem = queue_url_problem(url, quote=True)
    if problem is not None:
        shown = redact_url(url)
        shown = repr(shown) if "://" in url and not shown.startswith("<") else "(value not shown)"
        raise QueueError(f"invalid queue URL {shown}: {problem} ({EXPECTED_QUEUE_URL})")
    return url
