"""The finalizer's steps (kopf retries them until one is done): stop the workers, wait until
none is left, then delete the pool's queue keys and its queue users, and forget the pool. The
policy is `cleanup.decide_cleanup`; handlers.py only hands kopf's delete events to `clean_up`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from ..api import JobPoolSpec
from . import builders, cleanup, kinds, reasons
from .kube import API_FAILURES
from .pool_queue import QUEUE_TIMEOUT_SECONDS, read_queue_url
from .problems import Problem, invalid_queue_url, queue_message, shown_queue
from .reconcile import OperatorContext

log = logging.getLogger("jobpool.operator")

# How often the finalizer looks again whether the workers of a deleted pool are gone.
CLEANUP_POLL_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class CleanupStep:
    done: bool
    message: str
    warning: bool = False


async def stop_workers(ctx: OperatorContext, name: str, namespace: str) -> tuple[str, ...]:
    """Scale the worker Deployment to zero; returns the worker pods still there."""
    workers = builders.workers_name(name)
    deployment = await ctx.kube.get(kinds.DEPLOYMENT, namespace, workers)
    if deployment is not None and (deployment.get("spec") or {}).get("replicas") != 0:
        await ctx.kube.merge_patch(kinds.DEPLOYMENT, namespace, workers, {"spec": {"replicas": 0}})
    pods = await ctx.kube.list(kinds.POD, namespace, builders.selector(name))
    return tuple(sorted(pod["metadata"]["name"] for pod in pods))


async def finalize_pool(
    ctx: OperatorContext, name: str, namespace: str, uid: str, spec_raw: dict[str, Any], waited: float
) -> CleanupStep:
    """One attempt of the finalizer: stop the workers, and once none is left delete the pool's keys."""
    running = ctx.controllers.get((namespace, name))
    if running is not None:
        await running.close()
    try:
        spec = JobPoolSpec.model_validate(spec_raw)
    except ValueError:
        return CleanupStep(True, "spec unreadable; no queue keys to delete")
    limit = cleanup.wait_limit(spec)
    try:
        pods = await stop_workers(ctx, name, namespace)
    except API_FAILURES as exc:
        if waited < limit:
            return CleanupStep(False, f"cannot stop the worker pods yet: {exc}")
        pods = ()
    url, problem = ctx.queue_url(uid), None
    if url is None:  # never resolved by this operator (it restarted): the Secret must still be there
        try:
            read = await read_queue_url(ctx.kube, namespace, spec, ctx.config.default_queue)
            url, problem = read.url, read.problem
        except API_FAILURES as exc:
            if not cleanup.give_up_on_queue(waited, spec, reachable=True):
                return CleanupStep(False, f"cannot read spec.queue.urlSecretRef yet: {exc}")
            url, problem = None, Problem(reasons.SECRET_UNREADABLE, f"spec.queue.urlSecretRef: {exc}")
    if problem is not None:
        return CleanupStep(True, cleanup.keys_left_behind(namespace, name, problem.message), warning=True)
    if url is None:
        return CleanupStep(True, "queue keys not deleted: no queue URL")
    try:
        queue = ctx.open_queue(url, namespace, name)
    except Exception:  # the message may quote the value: say what is wrong without it
        return CleanupStep(
            True, f"queue keys not deleted: {invalid_queue_url(spec, url).message}", warning=True
        )
    try:
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT_SECONDS):
                stats = await queue.stats()
            registered: tuple[str, ...] | None = tuple(worker.id for worker in stats.workers)
        except Exception:  # an unreachable queue: only the pods can be waited for
            registered = None
        decision = cleanup.decide_cleanup(cleanup.CleanupObservation(pods, registered, waited, limit))
        if not decision.delete_keys:
            return CleanupStep(False, decision.message)
        try:
            async with asyncio.timeout(10):
                await queue.delete_all()
        except Exception as exc:
            reason = queue_message(spec, url, exc)
            if cleanup.give_up_on_queue(waited, spec, reachable=registered is not None):
                return CleanupStep(
                    True,
                    f"gave up deleting the queue keys at {shown_queue(spec, url)} after "
                    f"{waited:.0f}s: {reason}",
                    warning=True,
                )
            return CleanupStep(False, f"deleting the queue keys at {shown_queue(spec, url)} failed: {reason}")
    finally:
        await queue.close()
    return CleanupStep(
        True,
        f"deleted the queue keys of {namespace}/{name} at {shown_queue(spec, url)}; {decision.message}",
        warning=decision.gave_up,
    )


async def clean_up(
    ctx: OperatorContext,
    body: Any,
    name: str,
    namespace: str,
    uid: str,
    spec_raw: dict[str, Any],
    waited: float,
    first_attempt: bool,
) -> CleanupStep:
    """One attempt of the finalizer (the caller retries it until it is done): `finalize_pool`,
    then the pool's queue users (its Secrets go with it, owner references), and the pool is forgotten."""
    step = await finalize_pool(ctx, name, namespace, uid, spec_raw, waited)
    if not step.done:
        log.info("%s/%s: %s", namespace, name, step.message)
        if first_attempt:
            ctx.post_event(body, "Normal", reasons.WAITING_FOR_WORKERS, step.message)
        return step
    if ctx.admin is not None:
        try:
            await asyncio.wait_for(ctx.admin.delete_users(namespace, name), CLEANUP_POLL_SECONDS * 5)
        except Exception as exc:
            step = CleanupStep(True, f"{step.message}; its queue users were not removed: {exc}", warning=True)
    ctx.forget_pool(namespace, name, uid)
    ctx.post_event(
        body,
        "Warning" if step.warning else "Normal",
        reasons.QUEUE_CLEANUP_INCOMPLETE if step.warning else reasons.QUEUE_CLEANED,
        step.message,
    )
    log.log(logging.WARNING if step.warning else logging.INFO, "%s/%s: %s", namespace, name, step.message)
    return step
