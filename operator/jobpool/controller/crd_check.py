"""The operator refuses to start against an installed CRD older than it: Helm never upgrades
`crds/`, and a field the API server does not know is pruned from every JobPool (spec) or from
what the operator writes (status) without an error.

The installed schema is read from the API server's OpenAPI v3 document of the group, which every
authenticated client may read (no RBAC on CustomResourceDefinitions needed).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..api.crd import build_crd
from .kube import KubeApi, KubeError

GROUP_VERSION = "jobpool.dev/v1alpha1"
OPENAPI_PATH = f"/openapi/v3/apis/{GROUP_VERSION}"
PUBLISH_SECONDS = 5.0
APPLY_CRD = (
    "apply the CRD of this version first: kubectl apply --server-side -f "
    'charts/jobpool/crds/ (docs/operations.md, "Upgrading")'
)


def field_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Pure: every field a structural schema declares, as dotted paths (`[]` for list items)."""
    paths: set[str] = set()
    for name, child in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        paths.add(path)
        paths |= field_paths(child, path)
    if isinstance(schema.get("items"), dict):
        paths |= field_paths(schema["items"], prefix + "[]")
    return paths


def missing_fields(installed: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Pure: the spec and status fields this operator needs that the installed schema lacks."""
    have, need = set(), set()
    for part in ("spec", "status"):
        have |= field_paths((installed.get("properties") or {}).get(part) or {}, part)
        need |= field_paths((wanted.get("properties") or {}).get(part) or {}, part)
    return sorted(need - have)


def problem(installed: dict[str, Any] | None, wanted: dict[str, Any]) -> str | None:
    """Pure: why the operator must not start, or None."""
    if installed is None:
        return f"the API server serves no {GROUP_VERSION} JobPool: the CRD is not installed; {APPLY_CRD}"
    missing = missing_fields(installed, wanted)
    if not missing:
        return None
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return (
        f"the installed CRD jobpools.jobpool.dev is older than this operator (it lacks {shown}); {APPLY_CRD}"
    )


def wanted_schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def installed_schema(document: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JobPool schema of the group's OpenAPI v3 document."""
    schemas = ((document or {}).get("components") or {}).get("schemas") or {}
    return next((schema for name, schema in schemas.items() if name.endswith(".v1alpha1.JobPool")), None)


async def check_once(kube: KubeApi) -> str | None:
    try:
        document = await kube.request("GET", OPENAPI_PATH)
    except KubeError as exc:
        return f"cannot read the installed CRD's schema ({OPENAPI_PATH}): {exc}"
    return problem(installed_schema(document), wanted_schema())


async def check(kube: KubeApi, patience: float = PUBLISH_SECONDS) -> str | None:
    """Why the operator must not start, asked again for `patience` seconds: the API server
    publishes a CRD's schema shortly after the CRD is applied."""
    deadline = time.monotonic() + patience
    while True:
        found = await check_once(kube)
        if found is None or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(0.5)
