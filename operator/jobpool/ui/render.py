"""HTML from templates shipped in the package: every value is escaped unless it is `Markup`
(HTML this module built), so a payload or an error text with markup renders as text."""

from __future__ import annotations

import datetime
import functools
import html
import importlib.resources
import json
import string
import urllib.parse
from collections.abc import Sequence
from typing import Any


class Markup(str):
    """HTML that is safe as it is: built here from escaped parts."""


def escape(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def fragment(template: str, **values: Any) -> Markup:
    """A piece of HTML: `$name` placeholders filled with escaped values."""
    return Markup(string.Template(template).substitute({k: escape(v) for k, v in values.items()}))


def join(parts: Sequence[Markup]) -> Markup:
    return Markup("".join(escape(part) for part in parts))


@functools.cache
def _template(name: str) -> string.Template:
    return string.Template((importlib.resources.files(__package__) / "templates" / name).read_text("utf-8"))


def page(name: str, **values: Any) -> str:
    """A whole page: templates/<name> filled in; `base.html` wraps it."""
    body = Markup(_template(name).substitute({k: escape(v) for k, v in values.items()}))
    return _template("base.html").substitute(
        {
            k: escape(v)
            for k, v in {
                "title": values.get("title", "jobpool"),
                "root": values["root"],
                "heading": values.get("heading", ""),
                "credential": values.get("credential", ""),
                "body": body,
            }.items()
        }
    )


def static_file(name: str) -> bytes:
    return (importlib.resources.files(__package__) / "static" / name).read_bytes()


def quote(value: str) -> str:
    """A value for a URL path segment or query value."""
    return urllib.parse.quote(value, safe="")


def pretty_json(value: Any) -> str:
    """A payload or result for reading: indented JSON, or the text itself when it is not JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def short_json(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def timestamp(seconds: float | None) -> str:
    if not seconds:
        return "—"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(seconds: float | None, now: float) -> str:
    if not seconds:
        return "—"
    return duration(max(0.0, now - seconds)) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def sparkline_points(values: Sequence[float], width: float = 120, height: float = 24) -> str:
    """The `points` of an SVG polyline drawing `values` left to right, scaled to the box (the same
    sum as ui.js draws on each update)."""
    if not values:
        return ""
    top = max(values) or 1
    step = width / max(1, len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, v in enumerate(values)
    )
