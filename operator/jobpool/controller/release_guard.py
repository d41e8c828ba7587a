"""`jobpool operator guard-pools`: what the chart's pre-delete hook runs, so that `helm uninstall`
never strands a JobPool behind its finalizer (the operator that would run it is going away).

Policies (value `uninstall.pools`): `refuse` fails the uninstall while a pool carries the
finalizer, naming them; `delete` deletes them and waits while the operator, still running, stops
their workers and removes their queue keys; `orphan` removes the finalizer on purpose, leaving the
pools and their queue keys (a later install adopts them again).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import kinds
from .handlers import FINALIZER
from .kube import KubeApi, KubeError

log = logging.getLogger("jobpool.guard")

POLICIES = ("refuse", "delete", "orphan")
NAMED = 5  # pools named in a refusal; the rest are counted


@dataclasses.dataclass(frozen=True)
class GuardedPool:
    namespace: str
    name: str
    finalizers: tuple[str, ...]
    deleting: bool

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Decision:
    refusal: str | None = None
    delete: tuple[GuardedPool, ...] = ()
    orphan: tuple[GuardedPool, ...] = ()


def pool_of(obj: dict[str, Any]) -> GuardedPool:
    meta = obj["metadata"]
    return GuardedPool(
        meta["namespace"],
        meta["name"],
        tuple(meta.get("finalizers") or ()),
        bool(meta.get("deletionTimestamp")),
    )


def stranded(pools: Sequence[GuardedPool]) -> list[GuardedPool]:
    """The pools whose deletion needs the operator."""
    return sorted((p for p in pools if FINALIZER in p.finalizers), key=lambda p: p.ref)


def refusal(pools: Sequence[GuardedPool]) -> str:
    names = ", ".join(p.ref for p in pools[:NAMED])
    if len(pools) > NAMED:
        names += f" and {len(pools) - NAMED} more"
    return (
        f"{len(pools)} JobPool(s) still carry the finalizer {FINALIZER} ({names}): without the "
        f"operator their deletion, and their namespace's, would hang. Delete them first "
        f"(kubectl delete jobpools --all -n NS) and uninstall again, or set uninstall.pools=delete "
        f"(this hook deletes them and waits for their cleanup) or uninstall.pools=orphan (it "
        f"removes the finalizer; their queue keys stay in Redis) with helm upgrade --reuse-values"
    )


def decide(pools: Sequence[GuardedPool], policy: str) -> Decision:
    """Pure: what the hook does about the pools it found."""
    guarded = stranded(pools)
    if not guarded:
        return Decision()
    if policy == "refuse":
        return Decision(refusal=refusal(guarded))
    if policy == "delete":
        return Decision(delete=tuple(p for p in guarded if not p.deleting))
    return Decision(orphan=tuple(guarded))


async def list_pools(kube: KubeApi, namespaces: Sequence[str]) -> list[GuardedPool]:
    """The JobPools of the namespaces (none given: of every namespace)."""
    paths = [kinds.JOBPOOL.path(ns) for ns in namespaces] or [
        f"/apis/{kinds.JOBPOOL.api_version}/{kinds.JOBPOOL.plural}"
    ]
    found: list[dict[str, Any]] = []
    for path in paths:
        found += ((await kube.request("GET", path)) or {}).get("items") or []
    return [pool_of(obj) for obj in found]


async def stop_operator(kube: KubeApi, deployment: tuple[str, str], deadline: float) -> str | None:
    """Scale the operator to zero and wait for its pods: a running operator puts back every
    finalizer it finds missing. Returns why it could not, or None."""
    namespace, name = deployment
    await kube.merge_patch(kinds.DEPLOYMENT, namespace, name, {"spec": {"replicas": 0}})
    while True:
        current = await kube.get(kinds.DEPLOYMENT, namespace, name)
        if current is None or not (current.get("status") or {}).get("replicas"):
            log.info("scaled the operator %s/%s to zero before removing finalizers", namespace, name)
            return None
        if time.monotonic() > deadline:
            return f"the operator {namespace}/{name} still has pods after scaling it to zero"
        await asyncio.sleep(1.0)


async def guard(
    kube: KubeApi,
    namespaces: Sequence[str],
    policy: str,
    timeout: float,
    operator: tuple[str, str] | None = None,
) -> str | None:
    """Carries out the policy; returns why the uninstall must stop, or None. `operator`: the
    (namespace, name) of the operator's Deployment, stopped before finalizers are removed."""
    decision = decide(await list_pools(kube, namespaces), policy)
    if decision.refusal:
        return decision.refusal
    if decision.orphan and operator is not None:
        stuck = await stop_operator(kube, operator, time.monotonic() + timeout)
        if stuck:
            return stuck
        decision = decide(await list_pools(kube, namespaces), policy)  # as the operator left them
    for pool in decision.orphan:
        kept = [f for f in pool.finalizers if f != FINALIZER]
        await kube.merge_patch(kinds.JOBPOOL, pool.namespace, pool.name, {"metadata": {"finalizers": kept}})
        log.info("removed the finalizer of JobPool %s: its queue keys stay in Redis", pool.ref)
    for pool in decision.delete:
        try:
            await kube.delete(kinds.JOBPOOL, pool.namespace, pool.name)
        except KubeError as exc:
            if exc.status != 404:
                raise
        log.info("deleted JobPool %s; waiting for the operator to clean its queue", pool.ref)
    deadline = time.monotonic() + timeout
    while decision.delete:
        left = stranded(await list_pools(kube, namespaces))
        if not left:
            break
        if time.monotonic() > deadline:
            return (
                f"{len(left)} JobPool(s) still finalizing after {timeout:.0f}s "
                f"({', '.join(p.ref for p in left[:NAMED])}): is the operator running? "
                f"`kubectl describe jobpool` shows what the finalizer waits for"
            )
        await asyncio.sleep(1.0)
    return None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jobpool operator guard-pools",
        description="Before the operator goes: refuse, delete or orphan the JobPools its finalizer guards.",
    )
    parser.add_argument("--policy", choices=POLICIES, required=True)
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--namespace", "-n", action="append", default=[], metavar="NS")
    scope.add_argument("--all-namespaces", "-A", action="store_true")
    parser.add_argument(
        "--timeout",
        type=float,
        default=240.0,
        metavar="S",
        help="how long `delete` waits for the pools' cleanup (default 240)",
    )
    parser.add_argument(
        "--operator-deployment",
        metavar="NS/NAME",
        help="the operator's Deployment, scaled to zero before `orphan` removes finalizers",
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    kube = KubeApi.from_environment()
    try:
        operator = tuple(args.operator_deployment.split("/", 1)) if args.operator_deployment else None
        problem = await guard(kube, args.namespace, args.policy, args.timeout, operator)
    except KubeError as exc:
        problem = f"cannot read or change JobPools: {exc}"
    finally:
        await kube.close()
    if problem:
        print(f"jobpool operator guard-pools: error: {problem}", file=sys.stderr)
        return 1
    print(f"jobpool operator guard-pools: no JobPool left behind (policy {args.policy})")
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    return asyncio.run(run(args))
