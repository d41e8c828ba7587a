"""The values table of charts/jobpool/README.md, generated from values.yaml (defaults and the
comments above each key) and values.schema.json (types, allowed values).

    python scripts/chart_readme.py           # rewrite the table
    python scripts/chart_readme.py --check   # exit 1 when it is stale (a unit test runs this)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "jobpool"
README = CHART / "README.md"
BEGIN, END = "<!-- values table: python scripts/chart_readme.py -->", "<!-- end of values table -->"
KEY = re.compile(r"^( *)([A-Za-z][A-Za-z0-9]*):(.*)$")


def commented_keys(text: str) -> list[tuple[str, str]]:
    """(dotted path, the comment lines above it and after it on its line), in file order."""
    found, stack, comment = [], [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("# ").strip())
            continue
        match = KEY.match(line)
        if not match:
            comment = []
            continue
        indent, name, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, name))
        trailing = rest.split(" #", 1)[1].strip() if " #" in rest else ""
        found.append((".".join(n for _, n in stack), " ".join(comment + ([trailing] if trailing else []))))
        comment = []
    return found


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A node with the chart's own definitions followed (Kubernetes' are named, not opened)."""
    while "$ref" in node and not node["$ref"].rsplit("/", 1)[1].startswith("io.k8s."):
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def schema_node(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The node of `path`, or None when a parent is a map or a Kubernetes type (no own rows)."""
    node = schema
    for part in path.split("."):
        node = resolve(schema, node)
        if "properties" not in node:
            return None
        node = node["properties"].get(part) or {}
    return resolve(schema, node)


def type_of(node: dict[str, Any]) -> str:
    if "$ref" in node:
        return f"Kubernetes {node['$ref'].rsplit('.', 1)[1]}"
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    kind = node.get("type", "")
    if kind == "array":
        return f"list of {type_of(node.get('items') or {})}"
    if kind == "object" and "properties" not in node and isinstance(node.get("additionalProperties"), dict):
        return f"map of {type_of(node['additionalProperties'])}s"
    return kind or "object"


def default_of(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        node = node[part]
    return node


def table() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for path, comment in commented_keys((CHART / "values.yaml").read_text()):
        default = default_of(values, path)
        node = schema_node(schema, path)
        if node is None:
            continue  # inside a map or a Kubernetes object: its parent's row shows it
        if isinstance(default, dict) and default and "properties" in node:
            if comment:
                rows.append(f"| `{path}` | object | | {comment} |")
            continue  # its keys have rows of their own
        shown = json.dumps(default).replace("|", "\\|")
        rows.append(f"| `{path}` | {type_of(node)} | `{shown}` | {comment.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    text = README.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    result = f"{head}{BEGIN}\n{table()}\n{END}{tail}"
    if "--check" in argv:
        if result != text:
            print(
                "charts/jobpool/README.md: the values table is stale: run python scripts/chart_readme.py",
                file=sys.stderr,
            )
            return 1
        return 0
    README.write_text(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
