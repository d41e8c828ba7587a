"""Generate the JobPool CustomResourceDefinition from the pydantic models.

`python -m jobpool.api.crd > charts/jobpool/crds/jobpool.dev_jobpools.yaml` writes the
committed CRD; a unit test fails when that file and the models drift apart.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml
from pydantic import BaseModel

from .v1alpha1 import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERBATIM,
    VERSION,
    JobPoolSpec,
    JobPoolStatus,
)

CRD_NAME = f"{PLURAL}.{GROUP}"

# A pool's name is part of its Redis keys, ACL user names (dot-separated) and object names, so it
# is a DNS-1123 label (the API server's own default allows dots, which a worker would refuse).
NAME_RULE = {
    "rule": "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63",
    "message": "metadata.name: a JobPool's name must be a DNS-1123 label (at most 63 lowercase "
    "letters, digits and '-', starting and ending with a letter or digit; no dots)",
}

# Pydantic's JSON-Schema keywords that are not part of a structural OpenAPI v3 schema
# (additionalProperties is kept when it is a schema: a map's values).
_DROPPED_KEYWORDS = {"title", "$defs"}

PRINTER_COLUMNS = [
    {
        "name": "Desired",
        "type": "integer",
        "jsonPath": ".status.desiredReplicas",
        "description": "Worker pods the operator decided on.",
    },
    {
        "name": "Ready",
        "type": "integer",
        "jsonPath": ".status.readyReplicas",
        "description": "Worker pods that are ready.",
    },
    {
        "name": "Waiting",
        "type": "integer",
        "jsonPath": ".status.queue.waiting",
        "description": "Jobs waiting for a worker slot.",
    },
    {
        "name": "InFlight",
        "type": "integer",
        "jsonPath": ".status.queue.inFlight",
        "description": "Jobs running on a worker slot.",
    },
    {
        "name": "Saturation",
        "type": "number",
        "jsonPath": ".status.saturation",
        "description": "Busy slots / total slots.",
    },
    {
        "name": "Succeeded",
        "type": "integer",
        "jsonPath": ".status.jobs.succeeded",
        "description": "Jobs that succeeded.",
    },
    {
        "name": "Status",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "The Ready condition.",
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "description": "Why the pool is (not) ready.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
# `kubectl get all` lists the pools with their Deployments and pods.
CATEGORIES = ["all"]
LABELS = {"app.kubernetes.io/name": "jobpool", "app.kubernetes.io/part-of": "jobpool"}


def _structural(node: dict[str, Any], defs: dict[str, Any], *, keep_defaults: bool) -> dict[str, Any]:
    """Turn one pydantic JSON-Schema node into a structural OpenAPI v3 schema node."""
    node = copy.deepcopy(node)
    if node.get(VERBATIM):
        # A Kubernetes type's schema, structural already (jobpool.api.kube_schemas); the marker stays
        # until the end (`_unmarked`), as this runs again over what it returned.
        return {key: value for key, value in node.items() if key not in _DROPPED_KEYWORDS}
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**copy.deepcopy(target), **node}
    if "anyOf" in node:
        # `X | None`: Kubernetes expresses "optional" by absence, not by null.
        variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express union {variants} in a structural schema")
        node = {**_structural(variants[0], defs, keep_defaults=keep_defaults), **node}
        if node.get("default", ...) is None:
            node.pop("default")
        if node.get(VERBATIM):  # only this field's own description is added to a Kubernetes type's schema
            return {key: value for key, value in node.items() if key not in _DROPPED_KEYWORDS}
    out: dict[str, Any] = {}
    optional: set[str] = set()
    for key, value in node.items():
        if (
            key in _DROPPED_KEYWORDS
            or (key == "default" and not keep_defaults)
            or (key == "additionalProperties" and not isinstance(value, dict))
        ):
            continue
        if key == "properties":
            out[key] = {
                name: _structural(sub, defs, keep_defaults=keep_defaults) for name, sub in value.items()
            }
            optional = {name for name, sub in value.items() if "anyOf" in sub}
        elif key == "items":
            out[key] = _structural(value, defs, keep_defaults=keep_defaults)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = _structural(value, defs, keep_defaults=keep_defaults)  # a map, e.g. dict[str, str]
        else:
            out[key] = value
    if node.get("additionalProperties") is True or ("type" not in out and "properties" not in out):
        # Free-form JSON (payloads, pass-through Kubernetes objects) is kept as written.
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "properties" in out:
        out.setdefault("type", "object")
        if keep_defaults:
            for name, sub in out["properties"].items():
                # A nested object defaults to its fields' defaults (CEL rules check the default too).
                if (
                    name not in out.get("required", [])
                    and name not in optional
                    and not sub.get(VERBATIM)
                    and "default" not in sub
                    and "properties" in sub
                    and "required" not in sub
                ):
                    sub["default"] = {k: v["default"] for k, v in sub["properties"].items() if "default" in v}
    return out


def _unmarked(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _unmarked(value) for key, value in node.items() if key != VERBATIM}
    if isinstance(node, list):
        return [_unmarked(value) for value in node]
    return node


def _model_schema(model: type[BaseModel], *, keep_defaults: bool) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _unmarked(_structural(raw, raw.get("$defs", {}), keep_defaults=keep_defaults))


def spec_schema() -> dict[str, Any]:
    return _model_schema(JobPoolSpec, keep_defaults=True)


def status_schema() -> dict[str, Any]:
    schema = _model_schema(JobPoolStatus, keep_defaults=False)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition object."""
    spec = spec_schema()
    spec["description"] = JobPoolSpec.__doc__
    status = status_schema()
    status["description"] = JobPoolStatus.__doc__
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": dict(LABELS)},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "description": "A pool of workers fed by a queue.",
                            "type": "object",
                            "required": ["spec"],
                            "x-kubernetes-validations": [NAME_RULE],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "jobpool.dev/v1alpha1"},
                                "kind": {"type": "string", "description": "JobPool"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.parallelism",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `python -m jobpool.api.crd` from jobpool/api/v1alpha1.py; do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
