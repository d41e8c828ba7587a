"""The user's `spec.worker.podTemplate`, merged into the worker pod template the operator builds.

A pure function of both: the user's labels, annotations, placement, identity, volumes, security
context and extra containers are added; where the user names a field the operator writes (the
pool's labels, its annotations, the worker container's image, command, ports, probes and JOBPOOL_*
variables) the operator's value wins, and the merge says so, naming the user's field and the value
kept, for `status.overriddenFields`. Every container, the user's init containers and sidecars too,
gets the restricted security context under the user's own (the user's may only narrow it: the
schema admits no value the restricted Pod Security Standard forbids).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

from ..api.v1alpha1 import DEFAULT_WORKER_RESOURCES, PodTemplate

FIELD = "spec.worker.podTemplate"
# Pod-level fields copied as the user wrote them (the schema admits only what the restricted profile allows).
POD_FIELDS = (
    "serviceAccountName",
    "automountServiceAccountToken",
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
    "runtimeClassName",
    "imagePullSecrets",
)
# What the operator writes in the worker container: the user's value of these never reaches the pod.
WORKER_OWNED = (
    "image",
    "command",
    "args",
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "restartPolicy",
)


@dataclasses.dataclass(frozen=True)
class Merged:
    template: dict[str, Any]  # the Deployment's spec.template
    overridden: tuple[str, ...]  # "<the user's field>: <what the operator keeps>"


def _shown(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else json.dumps(value)


def container_security(
    baseline: dict[str, Any], user: dict[str, Any] | None, where: str, overridden: list[str]
) -> dict[str, Any]:
    """The operator's (restricted) baseline under the user's container security context; every capability
    stays dropped."""
    merged = {**copy.deepcopy(baseline), **copy.deepcopy(user or {})}
    capabilities = dict(merged.get("capabilities") or {})
    if capabilities.get("drop") not in (None, ["ALL"]):
        overridden.append(f'{where}.securityContext.capabilities.drop: the operator keeps ["ALL"]')
    capabilities["drop"] = ["ALL"]
    merged["capabilities"] = capabilities
    return merged


def _merge_map(
    ours: dict[str, str],
    theirs: dict[str, str] | None,
    where: str,
    reserved: tuple[str, ...],
    overridden: list[str],
) -> dict[str, str]:
    """Their keys, then ours over them; `reserved` keys (or prefixes ending in "/") are the operator's alone."""
    merged: dict[str, str] = {}
    for key, value in (theirs or {}).items():
        if key in ours and ours[key] != value:
            overridden.append(f"{where}[{key}]: the operator keeps {_shown(ours[key])}")
        elif key not in ours and any(key == r or (r.endswith("/") and key.startswith(r)) for r in reserved):
            overridden.append(f"{where}[{key}]: the operator sets it itself")
            continue
        merged[key] = value
    merged.update(ours)
    return merged


def _merge_named(
    ours: list[dict[str, Any]],
    theirs: list[dict[str, Any]] | None,
    where: str,
    key: str,
    overridden: list[str],
) -> list[dict[str, Any]]:
    """Ours first, then theirs; one of theirs that shares a key with ours is dropped."""
    taken = {item.get(key) for item in ours}
    merged = list(ours)
    for item in theirs or []:
        if item.get(key) in taken:
            overridden.append(f"{where}[{item.get(key)}]: the operator keeps its own")
            continue
        merged.append(copy.deepcopy(item))
    return merged


def _merge_worker(ours: dict[str, Any], theirs: dict[str, Any], overridden: list[str]) -> dict[str, Any]:
    where = f"{FIELD}.spec.containers[worker]"
    merged = copy.deepcopy(theirs)
    for field in WORKER_OWNED:
        if field in theirs and theirs[field] != ours.get(field):
            kept = _shown(ours[field]) if field in ours else "it unset"
            overridden.append(f"{where}.{field}: the operator keeps {kept}")
            merged.pop(field)
    merged.update(
        {
            key: value
            for key, value in ours.items()
            if key not in ("env", "volumeMounts", "securityContext", "resources")
        }
    )
    merged["env"] = _merge_named(ours.get("env", []), theirs.get("env"), f"{where}.env", "name", overridden)
    mounts = _merge_named(
        ours.get("volumeMounts", []),
        theirs.get("volumeMounts"),
        f"{where}.volumeMounts",
        "mountPath",
        overridden,
    )
    if mounts:
        merged["volumeMounts"] = mounts
    # spec.worker.resources, unless it is only the CRD's default and the template gives its own
    if "resources" in ours and not ("resources" in theirs and ours["resources"] == DEFAULT_WORKER_RESOURCES):
        if "resources" in theirs and theirs["resources"] != ours["resources"]:
            overridden.append(f"{where}.resources: spec.worker.resources wins")
        merged["resources"] = ours["resources"]
    merged["securityContext"] = container_security(
        ours.get("securityContext", {}), theirs.get("securityContext"), where, overridden
    )
    return merged


def merge(
    ours: dict[str, Any], user: PodTemplate | None, *, reserved_annotations: tuple[str, ...] = ()
) -> Merged:
    """`ours`: the template the operator builds (the worker container first, its securityContext the baseline
    of every container); `user`: spec.worker.podTemplate. `reserved_annotations`: annotation keys (or
    "prefix/") the operator sets on pods itself."""
    template = copy.deepcopy(ours)
    overridden: list[str] = []
    if user is None:
        return Merged(template, ())
    raw = user.model_dump(by_alias=True, exclude_none=True)
    meta, spec = raw.get("metadata", {}), raw.get("spec", {})
    tmeta, tspec = template.setdefault("metadata", {}), template["spec"]
    tmeta["labels"] = _merge_map(
        tmeta.get("labels", {}), meta.get("labels"), f"{FIELD}.metadata.labels", (), overridden
    )
    annotations = _merge_map(
        tmeta.get("annotations", {}),
        meta.get("annotations"),
        f"{FIELD}.metadata.annotations",
        reserved_annotations,
        overridden,
    )
    if annotations:
        tmeta["annotations"] = annotations
    for field in POD_FIELDS:
        if field in spec:
            tspec[field] = copy.deepcopy(spec[field])
    if "securityContext" in spec:
        tspec["securityContext"] = {
            **tspec.get("securityContext", {}),
            **copy.deepcopy(spec["securityContext"]),
        }
    volumes = _merge_named(
        tspec.get("volumes", []), spec.get("volumes"), f"{FIELD}.spec.volumes", "name", overridden
    )
    if volumes:
        tspec["volumes"] = volumes
    worker, *others = tspec["containers"]
    baseline = worker.get("securityContext", {})
    if "initContainers" in spec:
        tspec["initContainers"] = [
            {
                **container,
                "securityContext": container_security(
                    baseline,
                    container.get("securityContext"),
                    f"{FIELD}.spec.initContainers[{container['name']}]",
                    overridden,
                ),
            }
            for container in copy.deepcopy(spec["initContainers"])
        ]
    for theirs in spec.get("containers", []):
        if theirs.get("name") == worker["name"]:
            worker = _merge_worker(worker, theirs, overridden)
    tspec["containers"] = [worker, *others]
    return Merged(template, tuple(overridden))
