"""`-o json|yaml` for the CLI's data commands, with no YAML library in the base install.

The YAML is kubectl's block style: mappings and lists indented by two, every string double-quoted
with YAML's escapes, so a value never changes type on the way back.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

STRUCTURED = ("json", "yaml")


def to_yaml(value: Any) -> str:
    """A JSON-like value as a YAML document (ends with a newline)."""
    return "\n".join(_yaml_lines(value, 0)) + "\n"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return json.dumps(value)
    if isinstance(value, float):  # YAML 1.1 reads 1e-05 as a string: it wants 1.0e-05
        text = json.dumps(value)
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    return _quote(str(value))


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(text: str) -> str:
    """A YAML double-quoted scalar: printable characters as they are, the rest escaped."""
    out = []
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif (
            0x20 <= code <= 0x7E
            or (0xA0 <= code <= 0xD7FF and code not in (0x2028, 0x2029))
            or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
            or code >= 0x10000
        ):  # 2028/9: YAML line breaks
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}")
    return '"' + "".join(out) + '"'


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        lines = []
        for key, item in value.items():
            head = f"{pad}{_scalar(key) if not _plain_key(key) else key}:"
            lines += _nested(head, item, indent)
        return lines
    if isinstance(value, (list, tuple)):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            if isinstance(item, dict) and item:
                inner = _yaml_lines(item, indent + 2)
                lines.append(pad + "- " + inner[0][indent + 2 :])
                lines += inner[1:]
            else:
                lines += _nested(pad + "-", item, indent)
        return lines
    return [pad + _scalar(value)]


def _nested(head: str, item: Any, indent: int) -> list[str]:
    if isinstance(item, (list, tuple)) and item:  # kubectl's lists sit under their key
        return [head, *_yaml_lines(item, indent if head.endswith(":") else indent + 2)]
    if isinstance(item, dict) and item:
        return [head, *_yaml_lines(item, indent + 2)]
    return [f"{head} {_yaml_lines(item, 0)[0]}"]


def _plain_key(key: Any) -> bool:
    """Keys like `inFlight` need no quotes; anything YAML could read as another type does."""
    text = str(key)
    return (
        isinstance(key, str)
        and text.replace("_", "").replace("-", "").isalnum()
        and text[0].isalpha()
        and text.lower() not in ("true", "false", "null", "yes", "no", "on", "off", "y", "n")
    )


def write(stdout: TextIO, value: Any, output: str) -> None:
    """One value as JSON (one line) or YAML."""
    stdout.write(json.dumps(value) + "\n" if output == "json" else to_yaml(value))
