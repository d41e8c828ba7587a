"""`jobpool operator ensure-redis-secret`: what the chart's pre-install/pre-upgrade hook runs to
make the bundled Redis's password once, in the cluster, instead of in a template.

A password made while rendering (`randAlphaNum`, found again by `lookup`) changes on every
`helm template`, so Argo CD or Flux would rotate it on every sync. The chart's manifests stay the
same from render to render; this hook creates the Secret when it is missing and otherwise only
keeps its `url` in step with the Service's address. The Secret is no manifest of the release
(`helm.sh/resource-policy: keep` on one an older chart made): it outlives an uninstall together
with the data it protects, and a reinstall finds it again.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import sys
from collections.abc import Callable
from typing import Any

from . import kinds
from .kube import KubeApi, KubeError

KEEP = {"helm.sh/resource-policy": "keep"}


def new_password() -> str:
    return secrets.token_hex(24)  # URL-safe as it is: it goes into redis://:<password>@...


def redis_url(password: str, address: str) -> str:
    return f"redis://:{password}@{address}"


def _decoded(secret: dict[str, Any], key: str) -> str | None:
    value = (secret.get("data") or {}).get(key)
    return base64.b64decode(value).decode() if value else None


def desired(
    existing: dict[str, Any] | None,
    name: str,
    namespace: str,
    address: str,
    labels: dict[str, str],
    make_password: Callable[[], str] = new_password,
) -> tuple[str, dict[str, Any]] | None:
    """Pure: ("create", Secret) or ("patch", merge patch), or None when the Secret is right."""
    password = _decoded(existing, "password") if existing else None
    if password is None:
        password = make_password()
        data = {"password": password, "url": redis_url(password, address)}
        secret = {
            "apiVersion": kinds.SECRET.api_version,
            "kind": kinds.SECRET.kind,
            "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": dict(KEEP)},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        if existing is None:
            return "create", secret
        return "patch", {"metadata": {"annotations": dict(KEEP)}, "data": secret["data"]}
    assert existing is not None  # the password was read from it
    patch: dict[str, Any] = {}
    if ((existing.get("metadata") or {}).get("annotations") or {}).get("helm.sh/resource-policy") != "keep":
        patch["metadata"] = {"annotations": dict(KEEP)}  # an older chart's Secret: Helm must not delete it
    url = redis_url(password, address)
    if _decoded(existing, "url") != url:
        patch["data"] = {"url": base64.b64encode(url.encode()).decode()}
    return ("patch", patch) if patch else None


async def ensure(kube: KubeApi, name: str, namespace: str, address: str, labels: dict[str, str]) -> str:
    existing = await kube.get(kinds.SECRET, namespace, name)
    action = desired(existing, name, namespace, address, labels)
    if action is None:
        return f"Secret {namespace}/{name} is up to date"
    verb, body = action
    if verb == "create":
        await kube.create(body)
        return f"created Secret {namespace}/{name} with a new password"
    await kube.merge_patch(kinds.SECRET, namespace, name, body)
    return f"updated Secret {namespace}/{name} (password kept)"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jobpool operator ensure-redis-secret",
        description="Create the bundled Redis's password Secret once.",
    )
    parser.add_argument("--name", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--address", required=True, help="host:port/db of the Redis Service")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    labels = dict(label.split("=", 1) for label in args.label)
    kube = KubeApi.from_environment()
    try:
        print(
            f"jobpool operator ensure-redis-secret: "
            f"{await ensure(kube, args.name, args.namespace, args.address, labels)}"
        )
        return 0
    except KubeError as exc:
        print(
            f"jobpool operator ensure-redis-secret: error: Secret {args.namespace}/{args.name}: {exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        await kube.close()


def main(argv: list[str]) -> int:
    return asyncio.run(run(parse_args(argv)))
