"""The per-pool reconcile loop, in three steps: gather -> plan -> act.

One `PoolController` runs per JobPool (as a kopf daemon). Every `poll_interval` it gathers
one frozen `Gathered` (the spec or what is wrong with it, the queue's stats, the cached worker
objects and pods, the status, the time and the memory of the previous tick), lets the pure
`plan()` decide, and acts: the only writes. Watches (kopf `on.event`) keep `ClusterCache`
current, so an unchanged pool costs one Redis round trip per tick and no API calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..api import JobPoolSpec
from ..contract import DEFAULT_POLL_INTERVAL_SECONDS, LABEL_POOL
from ..queue.base import Queue
from ..queue.urls import scrub_url
from . import autoscaler, builders, kinds, reasons
from .credentials import PoolCredentials, QueueAdmin
from .gather import gather
from .kube import KubeApi, KubeError
from .metrics import OperatorMetrics
from .plan import Action, Gathered, Memory, Plan, Settings, next_memory, plan
from .pool_queue import PoolQueue
from .problems import Problem, refused_deployment

log = logging.getLogger("jobpool.operator")

# Pod annotation PATCHes sent at once: a tick with many changed tiers stays short, the API unflooded.
POD_PATCHES_IN_FLIGHT = 8


@dataclasses.dataclass
class OperatorConfig:
    default_queue: str | None
    poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS
    # An idle pool (no job waiting, delayed or running) is read this often: one Redis round trip per
    # second at most; a submit is still seen within it, and Deployment events wake the loop at once.
    idle_interval: float = 1.0
    # Counter-only status changes are written at most this often; conditions at once.
    status_min_interval: float = 1.0
    kueue: bool = False  # read Kueue's Workloads: why worker pods wait for quota


class ClusterCache:
    """Worker objects and pods by pool, kept current by kopf watch events."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        # Kueue's message for each pod it has not admitted yet, by (namespace, pod name).
        self.quota: dict[tuple[str, str], str] = {}
        self._wakers: dict[tuple[str, str], asyncio.Event] = {}

    def waker(self, namespace: str, pool: str) -> asyncio.Event:
        return self._wakers.setdefault((namespace, pool), asyncio.Event())

    def forget_pool(self, namespace: str, pool: str) -> None:
        self._wakers.pop((namespace, pool), None)
        self.pods.pop((namespace, pool), None)

    def on_object_event(self, kind: str, event_type: str | None, obj: dict[str, Any]) -> None:
        obj = slim(kind, obj)
        meta = obj.get("metadata", {})
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        pool = (meta.get("labels") or {}).get(LABEL_POOL)
        if kind == kinds.POD.kind:
            pods = self.pods.setdefault((namespace, pool or ""), {})
            if event_type == "DELETED":
                pods.pop(name, None)
            else:
                pods[name] = obj
            return
        if event_type == "DELETED":
            self.objects.pop((kind, namespace, name), None)
        else:
            self.objects[(kind, namespace, name)] = obj
        if pool and kind == kinds.DEPLOYMENT.kind and (namespace, pool) in self._wakers:
            self._wakers[(namespace, pool)].set()

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def on_workload_event(self, event_type: str | None, workload: dict[str, Any]) -> None:
        """Kueue's Workload of a pod: its QuotaReserved message while not admitted, forgotten once it is."""
        meta = workload.get("metadata") or {}
        namespace = meta.get("namespace", "")
        pods = [
            ref.get("name", "")
            for ref in meta.get("ownerReferences") or []
            if ref.get("kind") == kinds.POD.kind
        ]
        message = quota_message(workload) if event_type != "DELETED" else None
        for pod in pods:
            if message is None:
                self.quota.pop((namespace, pod), None)
            else:
                self.quota[(namespace, pod)] = message


def quota_message(workload: dict[str, Any]) -> str | None:
    """Why Kueue has not admitted a Workload yet (its QuotaReserved condition); None once it has."""
    conditions = {c.get("type"): c for c in (workload.get("status") or {}).get("conditions") or []}
    if (conditions.get("QuotaReserved") or {}).get("status") == "True":
        return None
    reserved = conditions.get("QuotaReserved") or {}
    return reserved.get("message") or "waiting for Kueue to reserve quota"


def slim(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Only what the loop reads: the cache holds every worker object and pod of every pool."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    if kind == kinds.POD.kind:
        keep = ("name", "namespace", "labels", "annotations", "deletionTimestamp")
        scheduled = [
            c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"
        ]
        gates = list((obj.get("spec") or {}).get("schedulingGates") or [])
        return {
            "metadata": {k: meta[k] for k in keep if k in meta},
            "status": {"conditions": scheduled},
            **({"spec": {"schedulingGates": gates}} if gates else {}),
        }
    return {**obj, "metadata": meta}


class OperatorContext:
    """What every pool's controller shares."""

    def __init__(
        self,
        kube: KubeApi,
        config: OperatorConfig,
        metrics: OperatorMetrics,
        open_queue: Callable[[str, str, str], Queue],
        post_event: Callable[[Any, str, str, str], None],
        admin: QueueAdmin | None = None,
    ):
        self.kube = kube
        self.config = config
        self.metrics = metrics
        self.cache = ClusterCache()
        self.controllers: dict[tuple[str, str], PoolController] = {}
        # The queue URL each pool (by uid) last resolved, kept only in memory: its finalizer deletes
        # the keys there even when the urlSecretRef Secret is gone (deleted with the namespace).
        self._queue_urls: dict[str, str] = {}
        self.open_queue = open_queue
        self.post_event = post_event
        self.admin = admin  # the default queue, when the operator administers it (per-pool users)

    def remember_queue_url(self, uid: str, url: str) -> None:
        """The URL a pool's loop resolved, for its finalizer."""
        self._queue_urls[uid] = url

    def queue_url(self, uid: str) -> str | None:
        """The URL the pool's loop last resolved; None when this operator never did (it restarted)."""
        return self._queue_urls.get(uid)

    def forget_pool(self, namespace: str, name: str, uid: str) -> None:
        """A pool is gone: its metrics, its cached objects and pods and its queue URL with it."""
        self.metrics.forget_pool(namespace, name)
        self.cache.forget_pool(namespace, name)
        self._queue_urls.pop(uid, None)


class PoolController:
    def __init__(self, ctx: OperatorContext, name: str, namespace: str, uid: str):
        self.ctx = ctx
        self.ref = builders.PoolRef(name=name, namespace=namespace, uid=uid)
        self.memory = Memory()
        self.validated: tuple[int, tuple[JobPoolSpec | None, Problem | None]] | None = None
        self.overridden: tuple[str, ...] = ()
        # The API server refused the worker Deployment of this generation (what a schema cannot check).
        self.refused: tuple[int, Problem] | None = None
        self.settings = Settings(ctx.config.default_queue, ctx.config.status_min_interval)
        self.queue = PoolQueue(
            ctx.kube,
            self.ref,
            ctx.open_queue,
            ctx.config.default_queue,
            on_progress=ctx.cache.waker(namespace, name).set,
        )
        self.credentials = PoolCredentials(ctx.admin, ctx.kube, self.ref) if ctx.admin is not None else None

    async def run(self, body: Any, stopped: Any) -> None:
        waker = self.ctx.cache.waker(self.ref.namespace, self.ref.name)
        key = (self.ref.namespace, self.ref.name)
        self.ctx.controllers[key] = self
        self.ctx.metrics.reconcile_errors.labels(*key)  # exported as 0 from the start, so alerts see it
        try:
            while not stopped and not self.queue.closed:
                started = time.perf_counter()
                idle = False
                try:
                    idle = await self.reconcile(body)
                except (TimeoutError, KubeError, OSError) as exc:
                    self.ctx.metrics.reconcile_errors.labels(*key).inc()
                    log.warning(
                        "%s/%s: reconcile failed, retrying: %s", self.ref.namespace, self.ref.name, exc
                    )
                except Exception as exc:  # one bad tick must not stop the pool's loop
                    self.ctx.metrics.reconcile_errors.labels(*key).inc()
                    log.error(
                        "%s/%s: reconcile failed unexpectedly, retrying:\n%s",
                        self.ref.namespace,
                        self.ref.name,
                        self._scrubbed_traceback(exc),
                    )
                self.ctx.metrics.reconcile_seconds.labels(*key).observe(time.perf_counter() - started)
                waker.clear()
                with contextlib.suppress(TimeoutError):
                    config = self.ctx.config
                    async with asyncio.timeout(
                        max(config.poll_interval, config.idle_interval) if idle else config.poll_interval
                    ):
                        await waker.wait()
        finally:
            if self.ctx.controllers.get(key) is self:
                del self.ctx.controllers[key]
            await self.close()

    def _scrubbed_traceback(self, exc: BaseException) -> str:
        """The traceback, with the queue URL (which may carry a password) never quoted."""
        text = "".join(traceback.format_exception(exc)).rstrip()
        url = self.queue.resolved
        return scrub_url(text, url, "<queue URL>") if url else text

    async def close(self) -> None:
        """Stop feeding and let go of the queue (before the finalizer deletes its keys)."""
        await self.queue.close()

    async def reconcile(self, body: Any) -> bool:
        """One tick; whether the pool is idle."""
        gathered = await self.gather(body)
        decided = await self.act(body, gathered, plan(gathered))
        return decided.idle

    async def gather(self, body: Any) -> Gathered:
        """Every read of one tick, and nothing else (gather.py)."""
        return await gather(self, body)

    async def act(self, body: Any, gathered: Gathered, decided: Plan) -> Plan:
        """The only writes: the queue's settings and a managed pool's credentials first (before the
        feeder and the Deployment that need them), then worker objects, pod annotations, the
        feeder, metrics, status, Events. Returns the plan acted on: should the credentials fail,
        the one decided with that problem."""
        if decided.configure is not None and gathered.spec is not None:
            await self.queue.configure(gathered.spec, decided.configure)
        if decided.credentials and self.credentials is not None:
            failed = await self.credentials.write(decided.credentials)
            if failed is not None:
                # Said at once, as any problem is: this tick's plan is decided again with it.
                gathered = dataclasses.replace(
                    gathered,
                    credentials_problem=failed,
                    credentials_read=None,
                    credentials=self.credentials.digest,
                    queue_configured=self.queue.configured,
                )
                decided = dataclasses.replace(plan(gathered), configure=None)
        await self._act(body, gathered, decided)
        return decided

    async def _act(self, body: Any, gathered: Gathered, decided: Plan) -> None:
        ns, name = self.ref.namespace, builders.workers_name(self.ref.name)
        if decided.scaled:
            log.info("%s/%s: %s", ns, self.ref.name, decided.scaled)
        for obj in decided.apply:
            try:
                applied = await self.ctx.kube.apply(obj)
            except KubeError as exc:
                if exc.status != 422 or obj["kind"] != kinds.DEPLOYMENT.kind:
                    raise
                # Invalid (e.g. a volumeMount of no volume): said in the status until the spec changes.
                self.refused = (gathered.generation, refused_deployment(exc))
                log.warning("%s/%s: %s", ns, self.ref.name, self.refused[1].message)
                return
            if applied is not None:
                self.ctx.cache.on_object_event(obj["kind"], "MODIFIED", applied)
        if decided.replicas_changed:
            self.ctx.metrics.scale_events.labels(ns, self.ref.name).inc()
        for kind in decided.delete:
            observed = self.ctx.cache.get(kind.kind, ns, name)
            await self.ctx.kube.delete(kind, ns, name)
            if observed is not None:
                self.ctx.cache.on_object_event(kind.kind, "DELETED", observed)
        await self._patch_pods(decided.pod_patches)
        if decided.feeder is Action.STOP:
            await self.queue.stop_feeding()
        if decided.sweeper is Action.STOP:
            await self.queue.stop_sweeping()
        if decided.sweeper is Action.START and decided.sweep is not None:
            await self.queue.sweep(decided.sweep.digest, decided.sweep.swept or 0, decided.sweep.total)
        elif decided.feeder is Action.START and decided.feed is not None and gathered.spec is not None:
            await self.queue.feed(gathered.spec, decided.feed.digest, decided.feed.fed, decided.feed.total)
        spec, problem = gathered.spec, gathered.problem
        self.ctx.metrics.observe_pool(
            ns,
            self.ref.name,
            gathered.stats,
            decided.desired,
            int(
                ((gathered.observed.get(kinds.DEPLOYMENT.kind) or {}).get("status") or {}).get(
                    "readyReplicas"
                )
                or 0
            ),
            maximum=autoscaler.max_workers(spec) if spec is not None else None,
            queue_up=gathered.stats is not None if problem is None or problem.spec_ok else None,
            max_length=spec.queue.max_length if spec is not None else None,
        )
        written = False
        try:
            written = await self._write_status(decided.status)
        finally:  # should the write fail, the next tick still starts from what this one did
            self.memory = next_memory(self.memory, decided, written)
        for transition in decided.events:
            self.ctx.post_event(
                body,
                "Warning" if transition.warning else "Normal",
                transition.reason,
                f"{transition.type} is {transition.status}: {transition.message}",
            )
        for message in self.queue.take_repairs():
            self.ctx.post_event(body, "Warning", reasons.QUEUE_REPAIRED, message)

    async def _write_status(self, status: dict[str, Any] | None) -> bool:
        """Write the status patch (None: nothing to write); whether it is written, or was not needed."""
        if status is None:
            return True
        try:
            await self.ctx.kube.merge_patch(
                kinds.JOBPOOL, self.ref.namespace, self.ref.name, {"status": status}, subresource="status"
            )
        except KubeError as exc:
            if exc.status != 404:  # 404: the pool is gone
                raise
            return False
        return True

    async def _patch_pods(self, patches: Any) -> None:
        """Busy pods: a higher deletion cost and the autoscalers' do-not-disrupt marks; idle pods lose them."""
        if not patches:
            return
        bound = asyncio.Semaphore(POD_PATCHES_IN_FLIGHT)

        async def patch(pod: str, annotations: dict[str, str | None]) -> None:
            async with bound:
                try:
                    patched = await self.ctx.kube.merge_patch(
                        kinds.POD, self.ref.namespace, pod, {"metadata": {"annotations": annotations}}
                    )
                except KubeError as exc:
                    if exc.status == 404:  # the pod is already gone
                        return
                    raise
            if patched is not None:
                self.ctx.cache.on_object_event(kinds.POD.kind, "MODIFIED", patched)

        outcomes = await asyncio.gather(
            *(patch(pod, dict(annotations)) for pod, annotations in patches.items()), return_exceptions=True
        )
        failed = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if failed is not None:
            raise failed
