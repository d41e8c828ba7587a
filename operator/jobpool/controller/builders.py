"""Pure builders: the desired worker Deployment, metrics Service and PodDisruptionBudget.

They take a JobPool's spec (and the replicas the operator decided) and return whole
Kubernetes objects; the reconcile loop only compares and applies them. A hash of each
desired object is stamped on it, so an unchanged JobPool causes no write.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from kubernetes.utils import parse_quantity

from ..api import JobPoolSpec
from ..contract import LABEL_POOL, OPERATOR_NAME, PART_OF, WORKER_CONTAINER, WORKER_METRICS_PORT, WORKER_NAME
from ..worker.config import SETTINGS
from . import kinds, pod_template
from .problems import carries_credentials, uses_default_queue

ANNOTATION_SPEC_HASH = "jobpool.dev/spec-hash"
ANNOTATION_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# What cluster autoscalers honour: a pod holding jobs keeps its node (Karpenter, Cluster Autoscaler).
BUSY_POD_ANNOTATIONS = {
    "karpenter.sh/do-not-disrupt": "true",
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
}
ANNOTATION_CREDENTIALS = "jobpool.dev/credentials"  # on worker pods: digest of their queue password
# Extra grace beyond drainSeconds so the worker can release leftovers after its drain.
DRAIN_MARGIN_SECONDS = 10


@dataclasses.dataclass(frozen=True)
class PoolRef:
    """The identity of one JobPool object (what owner references and labels need)."""

    name: str
    namespace: str
    uid: str


def workers_name(pool: str) -> str:
    return f"{pool}-workers"


def queue_secret_name(pool: str) -> str:
    """The workers' queue URL, on a queue the operator administers."""
    return f"{pool}-queue"


def producer_secret_name(pool: str) -> str:
    """A submit-only producer's queue URL, on a queue the operator administers."""
    return f"{pool}-queue-producer"


def selector(pool: str) -> str:
    return f"{LABEL_POOL}={pool}"


def pool_labels(pool: str) -> dict[str, str]:
    return {
        LABEL_POOL: pool,
        "app.kubernetes.io/name": WORKER_NAME,
        "app.kubernetes.io/instance": pool,
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": OPERATOR_NAME,
    }


def owner_reference(pool: PoolRef) -> dict[str, Any]:
    return {
        "apiVersion": kinds.JOBPOOL.api_version,
        "kind": kinds.JOBPOOL.kind,
        "name": pool.name,
        "uid": pool.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def queue_url_env(
    pool: PoolRef, spec: JobPoolSpec, default_queue: str | None, credentials: str | None = None
) -> dict[str, Any]:
    """JOBPOOL_QUEUE_URL: a secretKeyRef when the URL lives in a Secret (the user's, or the pool's
    own on a queue the operator administers: `credentials` is then its digest), never its value;
    the operator's default queue only inline when it carries no password."""
    ref = spec.queue.url_secret_ref
    if ref is not None:
        return {
            "name": _variable("queue_url"),
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        }
    if credentials is not None and uses_default_queue(spec):
        return {
            "name": _variable("queue_url"),
            "valueFrom": {"secretKeyRef": {"name": queue_secret_name(pool.name), "key": "url"}},
        }
    if spec.queue.url is None and default_queue and carries_credentials(default_queue):
        raise ValueError("the default queue URL carries a password: never inlined (validate_spec refuses it)")
    return {"name": _variable("queue_url"), "value": spec.queue.url or default_queue or ""}


def _variable(setting: str) -> str:
    """The worker's variable for a setting (one home: the worker's flag table)."""
    return SETTINGS[setting].variable


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def worker_env(
    pool: PoolRef, spec: JobPoolSpec, default_queue: str | None, credentials: str | None = None
) -> list[dict[str, Any]]:
    """The JOBPOOL_* variables mirroring `jobpool worker` flags, then the user's env."""
    runner = (
        {"name": _variable("handler"), "value": spec.worker.handler}
        if spec.worker.handler is not None
        else {"name": _variable("command"), "value": json.dumps(spec.worker.command)}
    )
    env = [
        queue_url_env(pool, spec, default_queue, credentials),
        {"name": _variable("namespace"), "value": pool.namespace},
        {"name": _variable("pool"), "value": pool.name},
        {"name": _variable("worker_id"), "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": _variable("concurrency"), "value": str(spec.concurrency)},
        runner,
        {"name": _variable("timeout"), "value": str(spec.timeout_seconds)},
        {"name": _variable("max_attempts"), "value": str(spec.retry.max_attempts)},
        {"name": _variable("backoff"), "value": _number(spec.retry.backoff_seconds)},
        {"name": _variable("max_backoff"), "value": _number(spec.retry.max_backoff_seconds)},
        {"name": _variable("max_job_timeout"), "value": str(spec.job_limits.max_timeout_seconds)},
        {"name": _variable("max_job_attempts"), "value": str(spec.job_limits.max_attempts)},
        {"name": _variable("drain_seconds"), "value": str(spec.drain_seconds)},
        {"name": _variable("result_ttl"), "value": str(spec.results.ttl_seconds)},
        {"name": _variable("max_results"), "value": str(spec.results.max_count)},
        {"name": _variable("max_dead_letters"), "value": str(spec.dead_letter.max_length)},
        {"name": _variable("metrics_port"), "value": str(WORKER_METRICS_PORT)},
    ]
    ours = {e["name"] for e in env}
    return env + [e for e in spec.worker.env if e.get("name") not in ours]


def env_overrides(spec: JobPoolSpec) -> tuple[str, ...]:
    """spec.worker.env entries whose name the operator writes itself (they never reach the pod)."""
    ours = {setting.variable for setting in SETTINGS.values()}
    return tuple(
        f"spec.worker.env[{e.get('name')}]: the operator sets it from the JobPool's spec"
        for e in spec.worker.env
        if e.get("name") in ours
    )


TMP_VOLUME = "tmp"


def restricted_container_security() -> dict[str, Any]:
    """The restricted Pod Security Standard for a container."""
    return {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_deployment(
    pool: PoolRef, spec: JobPoolSpec, replicas: int, default_queue: str | None, credentials: str | None = None
) -> dict[str, Any]:
    """`credentials`: the digest of the pool's own queue password, when the operator manages it."""
    return stamp(_deployment(pool, spec, replicas, default_queue, credentials)[0])


def overridden_fields(pool: PoolRef, spec: JobPoolSpec) -> tuple[str, ...]:
    """The user's fields (spec.worker.env, spec.worker.podTemplate) that the operator's own values override
    (the queue it uses changes none of them)."""
    return _deployment(pool, spec, 0, None)[1]


def _deployment(
    pool: PoolRef, spec: JobPoolSpec, replicas: int, default_queue: str | None, credentials: str | None = None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    labels = pool_labels(pool.name)
    probe = {
        "httpGet": {"path": "/healthz", "port": "metrics"},
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": spec.worker.image,
        "command": ["jobpool", "worker"],
        "env": worker_env(pool, spec, default_queue, credentials),
        "ports": [{"name": "metrics", "containerPort": WORKER_METRICS_PORT, "protocol": "TCP"}],
        "livenessProbe": probe,
        "readinessProbe": {**probe, "periodSeconds": 5},
        # read-only: a handler writes only /tmp, an emptyDir that goes with the pod
        "securityContext": {**restricted_container_security(), "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }
    if spec.worker.resources:
        container["resources"] = spec.worker.resources
    template_meta: dict[str, Any] = {"labels": labels}
    if credentials is not None and uses_default_queue(spec):
        template_meta["annotations"] = {ANNOTATION_CREDENTIALS: credentials}
    deployment: dict[str, Any] = {
        "apiVersion": kinds.DEPLOYMENT.api_version,
        "kind": kinds.DEPLOYMENT.kind,
        "metadata": {
            "name": workers_name(pool.name),
            "namespace": pool.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(pool)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {LABEL_POOL: pool.name}},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": spec.drain_seconds + DRAIN_MARGIN_SECONDS,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
                },
            },
        },
    }
    # Annotations the operator writes on pods itself: the user's never reach the template.
    reserved = ("jobpool.dev/", ANNOTATION_DELETION_COST, *BUSY_POD_ANNOTATIONS)
    merged = pod_template.merge(
        deployment["spec"]["template"], spec.worker.pod_template, reserved_annotations=reserved
    )
    deployment["spec"]["template"] = merged.template
    return deployment, env_overrides(spec) + merged.overridden


def build_service(pool: PoolRef) -> dict[str, Any]:
    """A headless Service over the worker pods' metrics port, for Prometheus discovery."""
    return stamp(
        {
            "apiVersion": kinds.SERVICE.api_version,
            "kind": kinds.SERVICE.kind,
            "metadata": {
                "name": workers_name(pool.name),
                "namespace": pool.namespace,
                "labels": pool_labels(pool.name),
                "ownerReferences": [owner_reference(pool)],
            },
            "spec": {
                "clusterIP": "None",
                "selector": {LABEL_POOL: pool.name},
                "ports": [
                    {
                        "name": "metrics",
                        "port": WORKER_METRICS_PORT,
                        "targetPort": "metrics",
                        "protocol": "TCP",
                    }
                ],
            },
        }
    )


def build_pdb(pool: PoolRef, spec: JobPoolSpec) -> dict[str, Any] | None:
    """Voluntary evictions take one worker pod at a time; none for a single-pod pool."""
    if spec.parallelism <= 1 and not (spec.autoscaling.enabled and spec.autoscaling.max_workers > 1):
        return None
    return stamp(
        {
            "apiVersion": kinds.PDB.api_version,
            "kind": kinds.PDB.kind,
            "metadata": {
                "name": workers_name(pool.name),
                "namespace": pool.namespace,
                "labels": pool_labels(pool.name),
                "ownerReferences": [owner_reference(pool)],
            },
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {LABEL_POOL: pool.name}}},
        }
    )


def spec_hash(obj: dict[str, Any]) -> str:
    """A digest of everything the operator manages in `obj` (its own stamp excluded)."""
    clean = json.loads(json.dumps(obj))
    clean.get("metadata", {}).get("annotations", {}).pop(ANNOTATION_SPEC_HASH, None)
    if not clean.get("metadata", {}).get("annotations", True):
        clean["metadata"].pop("annotations")
    canonical = json.dumps(clean, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def stamp(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].setdefault("annotations", {})[ANNOTATION_SPEC_HASH] = spec_hash(obj)
    return obj


def is_subset(desired: Any, observed: Any, *, quantities: bool = False) -> bool:
    """Whether every field the operator sets has that value in the observed object.

    The API server adds defaults (protocol, imagePullPolicy, ...), so extra observed
    fields are fine; a changed or missing managed field is drift to put back.
    """
    if isinstance(desired, dict):
        return isinstance(observed, dict) and all(
            key in observed
            and is_subset(value, observed[key], quantities=quantities or key in ("resources", "sizeLimit"))
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(desired) == len(observed)
            and all(is_subset(d, o, quantities=quantities) for d, o in zip(desired, observed))
        )
    if quantities and isinstance(desired, str) and isinstance(observed, str) and desired != observed:
        # The API server canonicalises quantities ("0.5" -> "500m", "1024Mi" -> "1Gi").
        try:
            return parse_quantity(desired) == parse_quantity(observed)
        except ValueError:
            return False
    return desired == observed


def needs_write(desired: dict[str, Any], observed: dict[str, Any] | None) -> bool:
    """No write when the stamped hash matches and nothing managed was edited by hand."""
    if observed is None:
        return True
    observed_hash = (observed.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_SPEC_HASH)
    if observed_hash != desired["metadata"]["annotations"][ANNOTATION_SPEC_HASH]:
        return True
    return not (
        is_subset(desired["spec"], observed.get("spec"))
        and is_subset(desired["metadata"].get("labels", {}), observed["metadata"].get("labels", {}))
    )


def deletion_cost(busy: int) -> str:
    """Idle pods cost 0 and go first; busy ones cost 100 x the bit length of their busy slots
    (1 -> 100, 2-3 -> 200, 4-7 -> 300, ...), so a cost changes only when the tier does."""
    return str(max(0, busy).bit_length() * 100)


def pod_annotations(busy: int) -> dict[str, str | None]:
    """The annotations a worker pod with `busy` jobs carries; None: the pod must not carry it."""
    return {
        ANNOTATION_DELETION_COST: deletion_cost(busy),
        **{key: value if busy > 0 else None for key, value in BUSY_POD_ANNOTATIONS.items()},
    }


def pod_annotation_patches(
    busy_by_pod: dict[str, int], current: dict[str, dict[str, str]]
) -> dict[str, dict[str, str | None]]:
    """Per pod whose annotations must change, the changed keys (a merge patch: None removes a key).
    An idle pod that never carried a cost is left as it is."""
    patches = {}
    for pod, present in current.items():
        wanted = pod_annotations(busy_by_pod.get(pod, 0))
        if wanted[ANNOTATION_DELETION_COST] == "0" and ANNOTATION_DELETION_COST not in present:
            del wanted[ANNOTATION_DELETION_COST]
        changed = {key: value for key, value in wanted.items() if present.get(key) != value}
        if changed:
            patches[pod] = changed
    return patches
