"""The per-pool reconcile loop: observe -> decide (pure) -> act (only what changed).

One `PoolController` runs per JobPool (as a kopf daemon). Every `poll_interval` it
reads the queue's stats and the cached worker objects, lets the pure builders, the
autoscaler policy and the status functions decide, and then writes only the objects
that differ. Watches (kopf `on.event`) keep `ClusterCache` current, so an unchanged pool
costs one Redis round trip per tick and no API calls.
"""
from __future__ import annotations

import asyncio
import contextlib
import base64
import dataclasses
import hashlib
import json
import logging
import time
import traceback
from typing import Any, Callable

import aiohttp
from pydantic import ValidationError

from ..api import API_VERSION, KIND, JobPoolSpec
from ..queue.base import Queue, QueueStats
from ..queue.codec import EXPECTED_QUEUE_URL, queue_url_problem, redact_url, scrub_url
from . import autoscaler, builders, cleanup, status as pool_status
from .credentials import ANNOTATION_ROTATE, PoolCredentials, QueueAdmin
from .kube import KubeApi, KubeError
from .metrics import OperatorMetrics

log = logging.getLogger("jobpool.operator")

FEED_CHUNK = 500
QUEUE_TIMEOUT_SECONDS = 2.0
SECRET_TTL_SECONDS = 10.0
# Pod annotation PATCHes sent at once: a tick with many changed tiers stays short, the API unflooded.
POD_PATCHES_IN_FLIGHT = 8

KINDS = {"Deployment": "apps/v1", "Service": "v1", "PodDisruptionBudget": "policy/v1"}


@dataclasses.dataclass
class OperatorConfig:
    default_queue: str | None
    poll_interval: float = 0.5
    # Counter-only status changes are written at most this often; conditions at once.
    status_min_interval: float = 1.0


class ClusterCache:
    """Worker objects and pods by pool, kept current by kopf watch events."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
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
        pool = (meta.get("labels") or {}).get(builders.LABEL_POOL)
        if kind == "Pod":
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
        if pool and kind == "Deployment" and (namespace, pool) in self._wakers:
            self._wakers[(namespace, pool)].set()

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))


def slim(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Only what the loop reads: the cache holds every worker object and pod of every pool."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    if kind == "Pod":
        keep = ("name", "namespace", "labels", "annotations", "deletionTimestamp")
        scheduled = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"]
        return {"metadata": {k: meta[k] for k in keep if k in meta}, "status": {"conditions": scheduled}}
    return {**obj, "metadata": meta}


def queue_field(spec: JobPoolSpec) -> str:
    return "spec.queue.urlSecretRef" if spec.queue.url_secret_ref else "spec.queue.url"


def shown_queue(spec: JobPoolSpec, url: str) -> str:
    """How messages name the queue: a URL read from a Secret is never quoted, only its Secret key
    (whoever may create a JobPool must not read Secret values through its status)."""
    ref = spec.queue.url_secret_ref
    return f'the URL in Secret "{ref.name}" key "{ref.key}"' if ref is not None else redact_url(url)


def queue_message(spec: JobPoolSpec, url: str, exc: BaseException) -> str:
    """The first line of a queue error, with the queue named as `shown_queue` names it."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if spec.queue.url_secret_ref is not None:
        return scrub_url(text, url, "<hidden>")
    return text.replace(url, redact_url(url)) if url else text


def invalid_queue_url(spec: JobPoolSpec, url: str) -> pool_status.Problem:
    """An unusable queue URL, described without quoting any part of it."""
    problem = queue_url_problem(url) or "the queue refused it"
    return pool_status.Problem("InvalidQueueURL", f"{queue_field(spec)}: {shown_queue(spec, url)} is not a "
                                                  f"valid queue URL: {problem} ({EXPECTED_QUEUE_URL})")


def batch_digest(spec: JobPoolSpec) -> str:
    """Identifies what was fed where: a batch moved to another queue (as spec.queue names it) is fed again."""
    assert spec.jobs is not None
    source = spec.queue.model_dump(by_alias=True, exclude_none=True, include={"url", "url_secret_ref"})
    raw = json.dumps({"jobs": spec.jobs.model_dump(by_alias=True, exclude_none=True), "queue": source},
                     sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class OperatorContext:
    """What every pool's controller shares."""

    def __init__(self, kube: KubeApi, config: OperatorConfig, metrics: OperatorMetrics,
                 open_queue: Callable[[str, str, str], Queue],
                 post_event: Callable[[Any, str, str, str], None], admin: QueueAdmin | None = None):
        self.kube = kube
        self.config = config
        self.metrics = metrics
        self.cache = ClusterCache()
        self.controllers: dict[tuple[str, str], "PoolController"] = {}
        # The queue URL each pool (by uid) last resolved, kept only in memory: its finalizer deletes
        # the keys there even when the urlSecretRef Secret is gone (deleted with the namespace).
        self.queue_urls: dict[str, str] = {}
        self.open_queue = open_queue
        self.post_event = post_event
        self.admin = admin      # the default queue, when the operator administers it (per-pool users)


class PoolController:
    def __init__(self, ctx: OperatorContext, name: str, namespace: str, uid: str):
        self.ctx = ctx
        self.ref = builders.PoolRef(name=name, namespace=namespace, uid=uid)
        self.decided: int | None = None
        self.lower_demand_since: float | None = None
        self.last_status: dict[str, Any] | None = None
        self.last_status_write = 0.0
        self.batch: dict[str, Any] | None = None
        self.feeder: asyncio.Task[None] | None = None
        self.queue: Queue | None = None
        self.queue_url: str | None = None
        self.configured: dict[str, int] | None = None    # the pool-wide settings in the queue
        self.stopping = False
        self._secret_cache: tuple[float, tuple[str, str], str | None, pool_status.Problem | None] | None = None
        self.credentials = PoolCredentials(ctx.admin, ctx.kube, self.ref) if ctx.admin is not None else None

    # -- the loop --------------------------------------------------------------
    async def run(self, body: Any, stopped: Any) -> None:
        waker = self.ctx.cache.waker(self.ref.namespace, self.ref.name)
        key = (self.ref.namespace, self.ref.name)
        self.ctx.controllers[key] = self
        self.ctx.metrics.reconcile_errors.labels(*key)   # exported as 0 from the start, so alerts see it
        try:
            while not stopped and not self.stopping:
                started = time.perf_counter()
                try:
                    await self.reconcile(body)
                except (KubeError, OSError, asyncio.TimeoutError) as exc:
                    self.ctx.metrics.reconcile_errors.labels(*key).inc()
                    log.warning("%s/%s: reconcile failed, retrying: %s", self.ref.namespace, self.ref.name, exc)
                except Exception as exc:  # one bad tick must not stop the pool's loop
                    self.ctx.metrics.reconcile_errors.labels(*key).inc()
                    log.error("%s/%s: reconcile failed unexpectedly, retrying:\n%s", self.ref.namespace,
                              self.ref.name, self._scrubbed_traceback(exc))
                self.ctx.metrics.reconcile_seconds.labels(*key).observe(time.perf_counter() - started)
                waker.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.ctx.config.poll_interval):
                        await waker.wait()
        finally:
            if self.ctx.controllers.get(key) is self:
                del self.ctx.controllers[key]
            await self.close()

    def _scrubbed_traceback(self, exc: BaseException) -> str:
        """The traceback, with the queue URL (which may carry a password) never quoted."""
        text = "".join(traceback.format_exception(exc)).rstrip()
        return scrub_url(text, self.queue_url, "<queue URL>") if self.queue_url else text

    async def close(self) -> None:
        """Stop feeding and let go of the queue (before the finalizer deletes its keys)."""
        self.stopping = True
        await self._drop_queue()

    async def reconcile(self, body: Any) -> None:
        now = time.time()
        meta = body["metadata"]
        generation = int(meta.get("generation", 0))
        previous = self.last_status if self.last_status is not None else dict(body.get("status") or {})

        # observe
        problem: pool_status.Problem | None = None
        stats: QueueStats | None = None
        spec: JobPoolSpec | None = None
        try:
            spec = JobPoolSpec.model_validate(body["spec"])
            builders.check_spec(spec, self.ctx.config.default_queue, administered=self.ctx.admin is not None)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = "spec." + ".".join(str(p) for p in first["loc"])
            problem = pool_status.Problem("InvalidSpec", f"{field}: {first['msg']}")
        except builders.SpecProblem as exc:
            problem = pool_status.Problem(exc.reason, exc.message)
        if spec is not None and problem is None:
            problem = await self._ensure_queue(spec)
        if self.queue is not None and problem is None:
            try:
                async with asyncio.timeout(QUEUE_TIMEOUT_SECONDS):
                    stats = await self.queue.stats()
            except Exception as exc:  # any backend failure means "unreachable" for the pool
                problem = pool_status.Problem(
                    "QueueUnavailable",
                    f"spec.queue: cannot reach the queue at {shown_queue(spec, self.queue_url or '')}: "
                    f"{queue_message(spec, self.queue_url or '', exc)}")
        managed = self.credentials is not None and spec is not None and builders.uses_default_queue(spec)
        if managed and problem is None:
            problem = await self.credentials.ensure((meta.get("annotations") or {}).get(ANNOTATION_ROTATE, ""),
                                                    self.ctx.cache.pods.get((self.ref.namespace, self.ref.name), {}))
        deployment = self.ctx.cache.get("Deployment", self.ref.namespace, builders.workers_name(self.ref.name))

        # decide
        current = self._current_replicas(deployment, previous)
        desired = current
        spec_ok = spec is not None and (problem is None or problem.reason == "QueueUnavailable")
        if spec is not None and spec_ok:
            desired = self._decide_replicas(spec, stats, current, now)
        if spec is not None and spec.jobs is not None:
            self._track_batch(spec, previous)
        else:
            self.batch = None

        # act
        # a managed pool's workers start once their Secret exists
        if spec is not None and spec_ok and not (managed and self.credentials.digest is None):
            await self._apply_workers(spec, desired, deployment)
            if stats is not None:
                await self._update_pod_annotations(stats)
            if spec.jobs is not None and stats is not None:
                self._ensure_feeding(spec)
        if spec is not None and spec_ok:
            self.decided = desired
        deployment = self.ctx.cache.get("Deployment", self.ref.namespace, builders.workers_name(self.ref.name))
        dstatus = (deployment or {}).get("status") or {}
        observation = pool_status.Observation(
            pool=self.ref.name, generation=generation,
            replicas=int(dstatus.get("replicas") or 0), ready_replicas=int(dstatus.get("readyReplicas") or 0),
            desired_replicas=desired, stats=stats, problem=problem,
            batch_total=self.batch["total"] if self.batch else None,
            batch_fed=self.batch["fed"] if self.batch else 0,
            unschedulable=pool_status.unschedulable(
                self.ctx.cache.pods.get((self.ref.namespace, self.ref.name), {}).values()))
        queue_tried = problem is None or problem.reason == "QueueUnavailable"
        self.ctx.metrics.observe_pool(self.ref.namespace, self.ref.name, stats, desired,
                                      observation.ready_replicas,
                                      maximum=autoscaler.max_workers(spec) if spec is not None else None,
                                      queue_up=stats is not None if queue_tried else None)
        new_status, transitions = pool_status.build_status(observation, previous, now,
                                                           batch=dict(self.batch) if self.batch else None)
        if self.batch is None and previous.get("batch"):
            new_status["batch"] = None
        await self._write_status(previous, new_status, now)
        for transition in transitions:
            self.ctx.post_event(body, "Warning" if transition.warning else "Normal", transition.reason,
                                f"{transition.type} is {transition.status}: {transition.message}")

    # -- observe helpers -------------------------------------------------------
    def _current_replicas(self, deployment: dict[str, Any] | None, previous: dict[str, Any]) -> int:
        if self.decided is not None:
            return self.decided
        if deployment is not None:
            return int(deployment.get("spec", {}).get("replicas") or 0)
        return int(previous.get("desiredReplicas") or 0)

    async def _queue_url(self, spec: JobPoolSpec) -> tuple[str | None, pool_status.Problem | None]:
        ref = spec.queue.url_secret_ref
        if ref is None:
            return spec.queue.url or self.ctx.config.default_queue, None
        key = (ref.name, ref.key)
        cached = self._secret_cache
        if cached and cached[1] == key and time.monotonic() - cached[0] < SECRET_TTL_SECONDS:
            return cached[2], cached[3]
        url: str | None = None
        problem: pool_status.Problem | None = None
        secret = await self.ctx.kube.get("v1", "Secret", self.ref.namespace, ref.name)
        if secret is None:
            problem = pool_status.Problem(
                "SecretNotFound", f'spec.queue.urlSecretRef: Secret "{ref.name}" not found in namespace '
                                  f'"{self.ref.namespace}"')
        elif ref.key not in (secret.get("data") or {}):
            problem = pool_status.Problem(
                "SecretKeyNotFound", f'spec.queue.urlSecretRef: Secret "{ref.name}" has no key "{ref.key}"')
        else:
            try:
                url = base64.b64decode(secret["data"][ref.key]).decode().strip()
            except ValueError:  # binary data: said without quoting it
                problem = pool_status.Problem(
                    "InvalidQueueURL", f'spec.queue.urlSecretRef: the value of Secret "{ref.name}" key '
                                       f'"{ref.key}" is not text')
        self._secret_cache = (time.monotonic(), key, url, problem)
        return url, problem

    async def _ensure_queue(self, spec: JobPoolSpec) -> pool_status.Problem | None:
        url, problem = await self._queue_url(spec)
        if problem is not None or url is None or self.stopping:
            return problem
        self.ctx.queue_urls[self.ref.uid] = url
        if url != self.queue_url:
            if self.queue_url is not None and self.batch is not None:
                self.batch["fed"] = 0  # the progress was made in the old queue; known ids are not enqueued twice
            await self._drop_queue()
            try:
                self.queue = self.ctx.open_queue(url, self.ref.namespace, self.ref.name)
            except Exception:  # the message may quote the value: say what is wrong without it
                return invalid_queue_url(spec, url)
            self.queue_url = url
        settings = {"max_length": spec.queue.max_length,
                    "max_payload_bytes": spec.queue.max_payload_bytes,
                    "durability": spec.queue.durability}
        if self.configured != settings and self.queue is not None:
            try:
                async with asyncio.timeout(QUEUE_TIMEOUT_SECONDS):
                    await self.queue.configure(**settings)
                self.configured = settings
            except Exception:
                pass  # stats() reports the queue as unreachable with the reason
        return None

    async def _drop_queue(self) -> None:
        """Stop the feeder first: it must not go on feeding a queue the pool has left."""
        if self.feeder is not None:
            self.feeder.cancel()
            try:
                await self.feeder
            except BaseException:
                pass
            self.feeder = None
        queue, self.queue, self.queue_url, self.configured = self.queue, None, None, None
        if queue is not None:
            try:
                await queue.close()
            except Exception:
                pass

    # -- decide helpers --------------------------------------------------------
    def _decide_replicas(self, spec: JobPoolSpec, stats: QueueStats | None, current: int, now: float) -> int:
        if not spec.autoscaling.enabled:
            self.lower_demand_since = None
            return autoscaler.static_replicas(spec)
        if stats is None:
            return min(max(current, spec.autoscaling.min_workers), spec.autoscaling.max_workers)
        decision = autoscaler.decide_replicas(
            backlog=stats.backlog, in_flight=stats.in_flight, current=current, policy=spec.autoscaling,
            concurrency=spec.concurrency, lower_demand_since=self.lower_demand_since, now=now)
        self.lower_demand_since = decision.lower_demand_since
        if decision.replicas != current:
            log.info("%s/%s: %s, %d -> %d worker pods (backlog %d)", self.ref.namespace, self.ref.name,
                     decision.reason, current, decision.replicas, stats.backlog)
        return decision.replicas

    def _track_batch(self, spec: JobPoolSpec, previous: dict[str, Any]) -> None:
        digest = batch_digest(spec)
        if self.batch is None:
            stored = previous.get("batch") or {}
            self.batch = {"total": spec.jobs.total, "fed": int(stored.get("fed") or 0),  # type: ignore[union-attr]
                          "digest": stored.get("digest", "")}
        if self.batch["digest"] != digest:
            # A changed batch is fed again from the start; known ids are not enqueued twice.
            self.batch = {"total": spec.jobs.total, "fed": 0, "digest": digest}  # type: ignore[union-attr]

    # -- act helpers -----------------------------------------------------------
    async def _apply_workers(self, spec: JobPoolSpec, replicas: int, observed: dict[str, Any] | None) -> None:
        kube, cache, ns = self.ctx.kube, self.ctx.cache, self.ref.namespace
        name = builders.workers_name(self.ref.name)
        desired = {
            "Deployment": builders.build_deployment(self.ref, spec, replicas, self.ctx.config.default_queue,
                                                    self.credentials.digest if self.credentials else None),
            "Service": builders.build_service(self.ref),
            "PodDisruptionBudget": builders.build_pdb(self.ref, spec),
        }
        for kind, obj in desired.items():
            current = observed if kind == "Deployment" else cache.get(kind, ns, name)
            if obj is None:
                if current is not None:
                    await kube.delete(KINDS[kind], kind, ns, name)
                    cache.on_object_event(kind, "DELETED", current)
                continue
            if builders.needs_write(obj, current):
                applied = await kube.apply(obj)
                if applied is not None:
                    cache.on_object_event(kind, "MODIFIED", applied)
                if kind == "Deployment" and current is not None:
                    old = current.get("spec", {}).get("replicas")
                    if old != replicas:
                        self.ctx.metrics.scale_events.labels(ns, self.ref.name).inc()

    async def _update_pod_annotations(self, stats: QueueStats) -> None:
        """Busy pods: a higher deletion cost and the autoscalers' do-not-disrupt marks; idle pods lose them."""
        pods = self.ctx.cache.pods.get((self.ref.namespace, self.ref.name), {})
        live = {name: pod["metadata"].get("annotations") or {}
                for name, pod in pods.items() if not pod["metadata"].get("deletionTimestamp")}
        busy = {w.id: w.busy for w in stats.workers}
        changed = builders.pod_annotation_patches(busy, live)
        if not changed:
            return
        bound = asyncio.Semaphore(POD_PATCHES_IN_FLIGHT)

        async def patch(pod: str, annotations: dict[str, str | None]) -> None:
            async with bound:
                try:
                    patched = await self.ctx.kube.merge_patch(
                        "v1", "Pod", self.ref.namespace, pod, {"metadata": {"annotations": annotations}})
                except KubeError as exc:
                    if exc.status == 404:  # the pod is already gone
                        return
                    raise
            if patched is not None:
                self.ctx.cache.on_object_event("Pod", "MODIFIED", patched)

        outcomes = await asyncio.gather(*(patch(pod, annotations) for pod, annotations in changed.items()),
                                        return_exceptions=True)
        failed = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if failed is not None:
            raise failed

    def _ensure_feeding(self, spec: JobPoolSpec) -> None:
        if self.batch is None or self.batch["fed"] >= self.batch["total"]:
            return
        if self.feeder is not None and not self.feeder.done():
            return
        self.feeder = asyncio.create_task(self._feed(spec, self.batch["digest"]))

    async def _feed(self, spec: JobPoolSpec, digest: str) -> None:
        """Enqueue spec.jobs in chunks with ids <pool>-<index>; waits while the queue is full."""
        assert spec.jobs is not None and self.queue is not None
        queue, url = self.queue, self.queue_url or ""
        chunk = max(1, min(FEED_CHUNK, spec.queue.max_length))
        log.info("%s/%s: feeding spec.jobs from index %d of %d", self.ref.namespace, self.ref.name,
                 self.batch["fed"] if self.batch else 0, spec.jobs.total)
        try:
            while self.batch is not None and self.batch["digest"] == digest and self.batch["fed"] < self.batch["total"]:
                start = self.batch["fed"]
                stop = min(start + chunk, self.batch["total"])
                ids = [f"{self.ref.name}-{index}" for index in range(start, stop)]
                await queue.submit_many(spec.jobs.payloads(start, stop), ids, wait=True)
                if self.batch is not None and self.batch["digest"] == digest:
                    self.batch["fed"] = stop
                self.ctx.cache.waker(self.ref.namespace, self.ref.name).set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s/%s: feeding spec.jobs paused: %s", self.ref.namespace, self.ref.name,
                        queue_message(spec, url, exc))

    async def _write_status(self, previous: dict[str, Any], new: dict[str, Any], now: float) -> None:
        if not pool_status.status_changed(previous, new):
            return
        if (pool_status.only_counters_changed(previous, new)
                and now - self.last_status_write < self.ctx.config.status_min_interval):
            return
        try:
            await self.ctx.kube.merge_patch(API_VERSION, KIND, self.ref.namespace, self.ref.name,
                                            {"status": new}, subresource="status")
        except KubeError as exc:
            if exc.status == 404:
                return
            raise
        self.last_status = {**previous, **{k: v for k, v in new.items() if v is not None}}
        if new.get("batch", ...) is None:
            self.last_status.pop("batch", None)
        self.last_status_write = now


@dataclasses.dataclass(frozen=True)
class CleanupStep:
    done: bool
    message: str
    warning: bool = False


async def _stop_workers(ctx: OperatorContext, name: str, namespace: str) -> tuple[str, ...]:
    """Scale the worker Deployment to zero; returns the worker pods still there."""
    workers = builders.workers_name(name)
    deployment = await ctx.kube.get("apps/v1", "Deployment", namespace, workers)
    if deployment is not None and (deployment.get("spec") or {}).get("replicas") != 0:
        await ctx.kube.merge_patch("apps/v1", "Deployment", namespace, workers, {"spec": {"replicas": 0}})
    pods = await ctx.kube.list("v1", "Pod", namespace, f"{builders.LABEL_POOL}={name}")
    return tuple(sorted(pod["metadata"]["name"] for pod in pods))


async def finalize_pool(ctx: OperatorContext, name: str, namespace: str, uid: str, spec_raw: dict[str, Any],
                        waited: float) -> CleanupStep:
    """One attempt of the finalizer: stop the workers, and once none is left delete the pool's keys."""
    running = ctx.controllers.get((namespace, name))
    if running is not None:
        await running.close()
    try:
        spec = JobPoolSpec.model_validate(spec_raw)
    except ValidationError:
        return CleanupStep(True, "spec unreadable; no queue keys to delete")
    limit = cleanup.wait_limit(spec.drain_seconds)
    try:
        pods = await _stop_workers(ctx, name, namespace)
    except (KubeError, OSError, asyncio.TimeoutError, aiohttp.ClientError) as exc:
        if waited < limit:
            return CleanupStep(False, f"cannot stop the worker pods yet: {exc}")
        pods = ()
    url, problem = ctx.queue_urls.get(uid), None
    if url is None:  # never resolved by this operator (it restarted): the Secret must still be there
        try:
            url, problem = await PoolController(ctx, name, namespace, uid)._queue_url(spec)
        except (KubeError, OSError, asyncio.TimeoutError, aiohttp.ClientError) as exc:
            if not cleanup.give_up_on_queue(waited, spec.drain_seconds, reachable=True):
                return CleanupStep(False, f"cannot read spec.queue.urlSecretRef yet: {exc}")
            url, problem = None, pool_status.Problem("SecretUnreadable", f"spec.queue.urlSecretRef: {exc}")
    if problem is not None:
        return CleanupStep(True, cleanup.keys_left_behind(namespace, name, problem.message), warning=True)
    if url is None:
        return CleanupStep(True, "queue keys not deleted: no queue URL")
    try:
        queue = ctx.open_queue(url, namespace, name)
    except Exception:  # the message may quote the value: say what is wrong without it
        return CleanupStep(True, f"queue keys not deleted: {invalid_queue_url(spec, url).message}", warning=True)
    try:
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT_SECONDS):
                stats = await queue.stats()
            registered: tuple[str, ...] | None = tuple(worker.id for worker in stats.workers)
        except Exception:  # an unreachable queue: only the pods can be waited for
            registered = None
        decision = cleanup.decide_cleanup(cleanup.CleanupObservation(pods, registered, waited, spec.drain_seconds))
        if not decision.delete_keys:
            return CleanupStep(False, decision.message)
        try:
            async with asyncio.timeout(10):
                await queue.delete_all()
        except Exception as exc:
            reason = queue_message(spec, url, exc)
            if cleanup.give_up_on_queue(waited, spec.drain_seconds, reachable=registered is not None):
                return CleanupStep(True, f"gave up deleting the queue keys at {shown_queue(spec, url)} after "
                                         f"{waited:.0f}s: {reason}", warning=True)
            return CleanupStep(False, f"deleting the queue keys at {shown_queue(spec, url)} failed: {reason}")
    finally:
        await queue.close()
    return CleanupStep(True, f"deleted the queue keys of {namespace}/{name} at {shown_queue(spec, url)}; "
                             f"{decision.message}", warning=decision.gave_up)
