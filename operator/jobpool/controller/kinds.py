"""Every Kubernetes resource the operator touches, with what it does to it: one table that the
API client (paths), the reconcile loop (worker objects), the kopf wiring (watches) and the
chart's RBAC test all read, so a new kind or verb is added here once."""

from __future__ import annotations

import dataclasses

from ..api import GROUP, KIND, PLURAL, VERSION


@dataclasses.dataclass(frozen=True)
class Kind:
    kind: str
    group: str  # "" is the core group
    version: str
    plural: str
    verbs: tuple[str, ...]  # exactly what the chart's RBAC grants on it

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        base = f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{name}" if name else base


DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments", ("get", "list", "watch", "create", "patch"))
SERVICE = Kind("Service", "", "v1", "services", ("list", "watch", "create", "patch"))
PDB = Kind(
    "PodDisruptionBudget",
    "policy",
    "v1",
    "poddisruptionbudgets",
    ("list", "watch", "create", "patch", "delete"),
)
POD = Kind("Pod", "", "v1", "pods", ("list", "watch", "patch"))
SECRET = Kind("Secret", "", "v1", "secrets", ("get", "create", "patch"))
LEASE = Kind("Lease", "coordination.k8s.io", "v1", "leases", ("get", "create", "update"))
JOBPOOL = Kind(KIND, GROUP, VERSION, PLURAL, ("list", "watch", "patch"))

# Kueue's Workloads (one per worker pod it gates), read with --kueue only: say why pods wait for quota.
WORKLOAD = Kind("Workload", "kueue.x-k8s.io", "v1beta2", "workloads", ("list", "watch"))

# The objects the loop builds for each pool and applies (the Deployment first).
WORKER_OBJECTS = (DEPLOYMENT, SERVICE, PDB)
# What kopf watches (by the pool label) to keep the loop's cache current.
WATCHED = (*WORKER_OBJECTS, POD)
ALL = (*WATCHED, SECRET, LEASE, JOBPOOL)

# Grants that are not on a kind of the table: (api groups, resource, verbs).
OTHER_GRANTS = (
    ((GROUP,), f"{PLURAL}/status", ("patch",)),
    # the workers' owner references block the pool's deletion
    ((GROUP,), f"{PLURAL}/finalizers", ("update",)),
    (("", "events.k8s.io"), "events", ("create",)),
)


def rbac_rules(kueue: bool = False) -> set[tuple[str, str, str]]:
    """(api group, resource, verb) for everything the operator needs (with --kueue: Kueue's Workloads too)."""
    rules = {
        (kind.group, kind.plural, verb)
        for kind in (*ALL, *((WORKLOAD,) if kueue else ()))
        for verb in kind.verbs
    }
    rules |= {
        (group, resource, verb)
        for groups, resource, verbs in OTHER_GRANTS
        for group in groups
        for verb in verbs
    }
    return rules
