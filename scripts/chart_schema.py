"""Kubernetes' own schemas for the pod settings of charts/jobpool/values.schema.json.

`resources`, `tolerations`, `affinity`, `topologySpreadConstraints` and `imagePullSecrets` are
validated against the definitions of the Kubernetes version the project builds (the OpenAPI v3
documents in the k8s.io/kubernetes module of tools/kubernetes/go.mod), closed with
`additionalProperties: false` so that a typo (`resources.requets.cpu`) is refused by Helm.

    python scripts/chart_schema.py           # write the definitions into values.schema.json
    python scripts/chart_schema.py --check   # exit 1 when they differ (a test runs this)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "charts" / "jobpool" / "values.schema.json"
GO_MOD = ROOT / "tools" / "kubernetes" / "go.mod"
ROOTS = (
    "io.k8s.api.core.v1.ResourceRequirements",
    "io.k8s.api.core.v1.Toleration",
    "io.k8s.api.core.v1.Affinity",
    "io.k8s.api.core.v1.TopologySpreadConstraint",
    "io.k8s.api.core.v1.LocalObjectReference",
)
PREFIX = "io.k8s."
KEPT = {
    "type",
    "properties",
    "items",
    "required",
    "enum",
    "additionalProperties",
    "$ref",
    "allOf",
    "oneOf",
    "anyOf",
    "format",
}
# YAML reads `cpu: 1` as a number; the API server takes both
QUANTITY = {
    "anyOf": [
        {
            "type": "string",
            "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[mkMGTPE])?$",
        },
        {"type": "number"},
    ]
}


def openapi_document() -> dict[str, Any]:
    version = re.search(r"k8s\.io/kubernetes (v\S+)", GO_MOD.read_text()).group(1)
    cache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    path = Path(cache) / f"k8s.io/kubernetes@{version}" / "api/openapi-spec/v3/api__v1_openapi.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `make tools` (it downloads k8s.io/kubernetes {version})")
    return json.loads(path.read_text())


def clean(node: Any) -> Any:
    """Only what validates, references to #/definitions, objects closed to unknown fields."""
    if isinstance(node, list):
        return [clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: clean(value) for key, value in node.items() if key in KEPT}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/definitions/")
    if "properties" in out:
        out["properties"] = {name: clean(value) for name, value in node["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


def definitions(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    found: dict[str, Any] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found[name] = QUANTITY if name.endswith(".Quantity") else clean(schemas[name])
        todo += re.findall(r'"#/definitions/([^"]+)"', json.dumps(found[name]))
    return dict(sorted(found.items()))


def updated(schema: dict[str, Any], generated: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in schema.get("definitions", {}).items() if not k.startswith(PREFIX)}
    return {**schema, "definitions": {**kept, **generated}}


def main(argv: list[str]) -> int:
    text = SCHEMA.read_text()
    schema = json.loads(text)
    start = text.index('  "definitions": {')
    end = text.index("\n  },\n", start) + len("\n  },\n")
    new = updated(schema, definitions(openapi_document()))["definitions"]
    # the hand-written definitions keep their layout; the generated ones are one line each
    lines = []
    for name, value in new.items():
        if not name.startswith(PREFIX):
            continue
        lines.append(f"    {json.dumps(name)}: {json.dumps(value, sort_keys=True)}")
    own = text[start:end]
    own_body = own[own.index("{") + 1 : own.rindex("}")].rstrip()
    own_body = "\n".join(line for line in own_body.splitlines() if not line.startswith(f'    "{PREFIX}'))
    own_body = own_body.rstrip().rstrip(",")
    block = (
        '  "definitions": {'
        + own_body
        + (",\n" if own_body.strip() else "\n")
        + ",\n".join(lines)
        + "\n  },\n"
    )
    result = text[:start] + block + text[end:]
    json.loads(result)
    if "--check" in argv:
        if result != text:
            print(
                "charts/jobpool/values.schema.json: the Kubernetes definitions are stale: "
                "run python scripts/chart_schema.py",
                file=sys.stderr,
            )
            return 1
        return 0
    SCHEMA.write_text(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
