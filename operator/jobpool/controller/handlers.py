"""kopf wiring, kept thin: events in, `PoolController` and the cache do the work."""
from __future__ import annotations

import logging
from typing import Any

import kopf

from ..api import GROUP, PLURAL, VERSION
from .builders import LABEL_POOL
from .reconcile import OperatorContext, PoolController, delete_queue_keys

log = logging.getLogger("jobpool.operator")

FINALIZER = "jobpool.dev/queue-cleanup"
# Give up on an unreachable queue after this many attempts so deletion never hangs forever.
CLEANUP_ATTEMPTS = 12


def build_registry(ctx: OperatorContext) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        # Progress and diff-base go to annotations: the status schema is structural.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration")
        settings.posting.loggers = False
        settings.posting.level = logging.INFO
        settings.peering.standalone = True
        # Exact namespaces and a CRD installed before the operator: no need to list
        # namespaces or CRDs cluster-wide, which least-privilege RBAC does not grant.
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    # The loop checks `stopped` every poll interval, so it exits within the graceful backoff.
    @kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, cancellation_backoff=2.0, cancellation_timeout=10.0)
    async def run_pool(name: str, namespace: str, uid: str, body: kopf.Body, stopped: kopf.DaemonStopped,
                       **_: Any) -> None:
        await PoolController(ctx, name, namespace, uid).run(body, stopped)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, backoff=5, retries=CLEANUP_ATTEMPTS)
    async def clean_up_queue(name: str, namespace: str, spec: kopf.Spec, retry: int, body: kopf.Body,
                             **_: Any) -> None:
        ctx.metrics.forget_pool(namespace, name)
        ctx.cache.forget_pool(namespace, name)
        try:
            outcome = await delete_queue_keys(ctx, name, namespace, dict(spec))
        except Exception as exc:
            if retry + 1 < CLEANUP_ATTEMPTS:
                raise kopf.TemporaryError(f"deleting the queue keys failed: {exc}", delay=5)
            outcome = f"gave up deleting the queue keys after {CLEANUP_ATTEMPTS} attempts: {exc}"
            ctx.post_event(body, "Warning", "QueueCleanupFailed", outcome)
        log.info("%s/%s: %s", namespace, name, outcome)

    def watch(group: str, version: str, plural: str, kind: str) -> None:
        @kopf.on.event(group, version, plural, registry=registry, labels={LABEL_POOL: kopf.PRESENT})
        def cache_worker_object(event: dict[str, Any], **_: Any) -> None:
            obj = event.get("object")
            if obj:
                ctx.cache.on_object_event(kind, event.get("type"), obj)

    watch("apps", "v1", "deployments", "Deployment")
    watch("", "v1", "services", "Service")
    watch("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
    watch("", "v1", "pods", "Pod")
    return registry


def post_event(body: Any, type_: str, reason: str, message: str) -> None:
    kopf.event(body, type=type_, reason=reason, message=message)
