"""kopf wiring only: events in, `PoolController` (the loop), `finalizer.clean_up` and the cache
do the work."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf

from ..api import GROUP, PLURAL, VERSION
from ..contract import LABEL_POOL
from . import kinds
from .finalizer import CLEANUP_POLL_SECONDS, clean_up
from .reconcile import OperatorContext, PoolController

FINALIZER = "jobpool.dev/queue-cleanup"
DAEMON_BACKOFF_SECONDS = 1.0


def build_registry(ctx: OperatorContext) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        # Progress and diff-base go to annotations: the status schema is structural.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        # Without spec.jobs.items: a large batch would take the annotations past the API server's 256 KiB.
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration", ignored_fields=["spec.jobs.items"]
        )
        settings.posting.loggers = False
        settings.posting.level = logging.INFO
        settings.peering.standalone = True
        # Exact namespaces and a CRD installed before the operator: no need to list
        # namespaces or CRDs cluster-wide, which least-privilege RBAC does not grant.
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60

    # kopf's watches use the credentials the operator loaded once (KubeApi.from_environment).
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(ctx.kube.configuration)

    # The loop checks `stopped` every poll interval, so it exits within the graceful backoff.
    # Should the loop still end with an error, it restarts after DAEMON_BACKOFF_SECONDS, not kopf's 60 s.
    @kopf.daemon(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        cancellation_backoff=2.0,
        cancellation_timeout=10.0,
        backoff=DAEMON_BACKOFF_SECONDS,
    )
    async def run_pool(
        name: str, namespace: str, uid: str, body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any
    ) -> None:
        await PoolController(ctx, name, namespace, uid).run(body, stopped)

    # No retry limit: `finalize_pool` bounds the wait by the pool's drainSeconds, so it ends.
    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, backoff=CLEANUP_POLL_SECONDS, retries=None)
    async def clean_up_queue(
        name: str,
        namespace: str,
        uid: str,
        spec: kopf.Spec,
        retry: int,
        runtime: datetime.timedelta,
        body: kopf.Body,
        **_: Any,
    ) -> None:
        step = await clean_up(
            ctx, body, name, namespace, uid, dict(spec), runtime.total_seconds(), retry == 0
        )
        if not step.done:
            raise kopf.TemporaryError(step.message, delay=CLEANUP_POLL_SECONDS)

    def watch(kind: kinds.Kind) -> None:
        @kopf.on.event(
            kind.group, kind.version, kind.plural, registry=registry, labels={LABEL_POOL: kopf.PRESENT}
        )
        def cache_worker_object(event: dict[str, Any], **_: Any) -> None:
            obj = event.get("object")
            if obj:
                ctx.cache.on_object_event(kind.kind, event.get("type"), obj)

    for kind in kinds.WATCHED:
        watch(kind)
    if ctx.config.kueue:
        # Workloads carry no pool label: each names its pod as owner, which the cache matches.
        @kopf.on.event(kinds.WORKLOAD.group, kinds.WORKLOAD.version, kinds.WORKLOAD.plural, registry=registry)
        def cache_workload(event: dict[str, Any], **_: Any) -> None:
            obj = event.get("object")
            if obj:
                ctx.cache.on_workload_event(event.get("type"), obj)

    return registry


def connection_info(configuration: Any) -> kopf.ConnectionInfo:
    """kopf's connection from a kubernetes-client Configuration; a pod's rotated token is read again
    (the client's refresh hook) each time kopf logs in anew after a 401."""
    authorization = configuration.get_api_key_with_prefix("BearerToken", alias="authorization") or ""
    scheme, _, token = authorization.partition(" ") if " " in authorization else ("Bearer", "", authorization)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme if token else None,
        token=token or None,
        username=configuration.username or None,
        password=configuration.password or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def post_event(body: Any, type_: str, reason: str, message: str) -> None:
    kopf.event(body, type=type_, reason=reason, message=message)
