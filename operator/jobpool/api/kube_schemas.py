"""Structural schemas of the Kubernetes types `spec.worker.podTemplate` passes through.

`kubernetes-schemas.json` (next to this file) is generated from the Kubernetes OpenAPI v3 spec
of the pinned release (`api/openapi-spec/v3/api__v1_openapi.json` of the `k8s.io/kubernetes`
module that tools/kubernetes builds): each type keeps only the fields listed in `FIELDS`, so
what the restricted Pod Security Standard forbids (privileged, hostPath and the other volume
types, host namespaces, added capabilities other than NET_BIND_SERVICE, root) has no field and
is refused by the API server as an unknown field, and `RESTRICTED` narrows a few values more.
Descriptions are Kubernetes' own (first paragraph), so `kubectl explain` documents every field.

    python operator/jobpool/api/kube_schemas.py [OPENAPI_JSON] > operator/jobpool/api/kubernetes-schemas.json

(run as a file, not `-m`: the package reads this file when it is imported).
"""

from __future__ import annotations

import copy
import functools
import json
import pathlib
import subprocess
import sys
from typing import Any

CORE = "io.k8s.api.core.v1."
SCHEMAS_FILE = pathlib.Path(__file__).with_name("kubernetes-schemas.json")
# The types podTemplate names directly (the rest are reached through them).
ROOTS = (
    "Toleration",
    "Affinity",
    "TopologySpreadConstraint",
    "LocalObjectReference",
    "Volume",
    "Container",
    "PodSecurityContext",
)
# Types that keep only these fields (any other type keeps all of its own).
FIELDS = {
    "Container": (
        "name",
        "image",
        "imagePullPolicy",
        "command",
        "args",
        "workingDir",
        "env",
        "envFrom",
        "ports",
        "resources",
        "volumeMounts",
        "securityContext",
        "restartPolicy",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
    ),
    # The restricted profile's volume types.
    "Volume": (
        "name",
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ),
    "SecurityContext": (
        "allowPrivilegeEscalation",
        "appArmorProfile",
        "capabilities",
        "readOnlyRootFilesystem",
        "runAsGroup",
        "runAsNonRoot",
        "runAsUser",
        "seccompProfile",
    ),
    "PodSecurityContext": (
        "appArmorProfile",
        "fsGroup",
        "fsGroupChangePolicy",
        "runAsGroup",
        "runAsNonRoot",
        "runAsUser",
        "seccompProfile",
        "supplementalGroups",
        "supplementalGroupsPolicy",
    ),
    "ResourceRequirements": ("limits", "requests"),
    # No host ports (the baseline profile), no probe or hook aimed at another host.
    "ContainerPort": ("containerPort", "name", "protocol"),
    "HTTPGetAction": ("httpHeaders", "path", "port", "scheme"),
    "TCPSocketAction": ("port",),
    # An ephemeral volume's claim template carries only labels and annotations.
    "ObjectMeta": ("labels", "annotations"),
}
# Values the restricted Pod Security Standard allows, as schema keywords: (type, field) -> keywords.
RESTRICTED: dict[tuple[str, str], dict[str, Any]] = {
    ("SecurityContext", "allowPrivilegeEscalation"): {"enum": [False]},
    ("SecurityContext", "runAsNonRoot"): {"enum": [True]},
    ("SecurityContext", "runAsUser"): {"minimum": 1},
    ("PodSecurityContext", "runAsNonRoot"): {"enum": [True]},
    ("PodSecurityContext", "runAsUser"): {"minimum": 1},
    ("SeccompProfile", "type"): {"enum": ["RuntimeDefault", "Localhost"]},
    ("AppArmorProfile", "type"): {"enum": ["RuntimeDefault", "Localhost"]},
    ("Capabilities", "add"): {"items": {"type": "string", "enum": ["NET_BIND_SERVICE"]}},
    # Only a native sidecar (an init container that keeps running) sets a restart policy.
    ("Container", "restartPolicy"): {"enum": ["Always"]},
}
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_KEPT = (
    "type",
    "format",
    "enum",
    "required",
    "minimum",
    "maximum",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
)
MAX_DESCRIPTION = 300


def describe(text: str) -> str:
    """Kubernetes' description, first paragraph, cut at a sentence within MAX_DESCRIPTION."""
    first = text.strip().split("\n\n", 1)[0].replace("\n", " ").strip()
    if len(first) <= MAX_DESCRIPTION:
        return first
    cut = first[:MAX_DESCRIPTION]
    return cut[: cut.rfind(". ") + 1] if ". " in cut else cut.rstrip() + "..."


class Converter:
    """OpenAPI v3 components -> self-contained structural schemas (refs inlined, fields kept)."""

    def __init__(self, components: dict[str, Any]):
        self.components = components

    def type_schema(self, name: str) -> dict[str, Any]:
        return self._node({"$ref": f"#/components/schemas/{name}"}, owner=None, field=None)

    def _node(self, node: dict[str, Any], owner: str | None, field: str | None) -> dict[str, Any]:
        description = node.get("description")
        ref = node.get("$ref") or next((s["$ref"] for s in node.get("allOf", []) if "$ref" in s), None)
        if ref is not None:
            name = ref.rsplit("/", 1)[-1]
            if name in (QUANTITY, INT_OR_STRING):
                out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
                if name == QUANTITY:
                    out["pattern"] = (
                        r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
                        r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
                    )
            else:
                out = self._object(name)
            if description:
                out["description"] = describe(description)
            return self._restricted(out, owner, field)
        out = {key: copy.deepcopy(node[key]) for key in _KEPT if key in node}
        if description:
            out["description"] = describe(description)
        if "items" in node:
            out["items"] = self._node(node["items"], None, None)
            keys = node.get("x-kubernetes-list-map-keys") or []
            for key in keys:  # a list-map key must be required or defaulted: keep its default
                sub = (node["items"].get("$ref") or "").rsplit("/", 1)[-1]
                default = self.components.get(sub, {}).get("properties", {}).get(key, {}).get("default")
                item = out["items"]
                if (
                    default not in (None, "")
                    and key in item.get("properties", {})
                    and key not in item.get("required", [])
                ):
                    item["properties"][key]["default"] = default
        if isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = self._node(node["additionalProperties"], None, None)
        return self._restricted(out, owner, field)

    def _object(self, name: str) -> dict[str, Any]:
        source = self.components[name]
        short = name.rsplit(".", 1)[-1]
        keep = FIELDS.get(short)
        props = {
            key: value for key, value in source.get("properties", {}).items() if keep is None or key in keep
        }
        out: dict[str, Any] = {"type": "object"}
        out["properties"] = {key: self._node(value, short, key) for key, value in sorted(props.items())}
        required = [key for key in source.get("required", []) if key in props]
        if required:
            out["required"] = required
        for key in ("x-kubernetes-map-type",):
            if key in source:
                out[key] = source[key]
        return out

    @staticmethod
    def _restricted(out: dict[str, Any], owner: str | None, field: str | None) -> dict[str, Any]:
        extra = RESTRICTED.get((owner or "", field or ""))
        if extra:
            for key, value in extra.items():
                out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
        return out


def generate(openapi: dict[str, Any]) -> dict[str, Any]:
    converter = Converter(openapi["components"]["schemas"])
    return {name: converter.type_schema(CORE + name) for name in ROOTS}


def openapi_path() -> pathlib.Path:
    """The pinned Kubernetes module's OpenAPI spec (downloaded by `make tools`)."""
    tools = pathlib.Path(__file__).resolve().parents[3] / "tools" / "kubernetes"
    out = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"],
        cwd=tools,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return pathlib.Path(out) / "api" / "openapi-spec" / "v3" / "api__v1_openapi.json"


def render(openapi: dict[str, Any]) -> str:
    return json.dumps(generate(openapi), indent=1, sort_keys=True) + "\n"


@functools.cache
def _committed() -> dict[str, Any]:
    return json.loads(SCHEMAS_FILE.read_text())


def schema(name: str) -> dict[str, Any]:
    """A copy of one type's structural schema, e.g. schema("Toleration")."""
    return copy.deepcopy(_committed()[name])


def main(argv: list[str]) -> int:
    path = pathlib.Path(argv[0]) if argv else openapi_path()
    sys.stdout.write(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
