"""The reads of one tick, and nothing else: one frozen `Gathered` for the pure `plan()`.

What a pool's queue and credentials need written (its settings, its users and Secrets) is the
plan's to say and act's to write; which of the problems read the pool reports is `problems.CHAIN`'s.
Reading may open (or, when the spec names another queue, drop) the pool's queue connection, and
notes the URL it resolved for the finalizer (`OperatorContext.remember_queue_url`, in memory). The stats
read runs the queue's upkeep first (`PoolQueue.stats`), as before.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import builders, kinds
from .credentials import ANNOTATION_ROTATE
from .plan import Gathered
from .problems import Problem, uses_default_queue, validate_spec

if TYPE_CHECKING:
    from .reconcile import PoolController


async def gather(pool: PoolController, body: Any) -> Gathered:
    """Every read of one tick, and nothing else: what the queue and credentials need written
    is the plan's to say and act's to write."""
    meta = body["metadata"]
    generation = int(meta.get("generation", 0))
    if pool.validated is None or pool.validated[0] != generation:  # a new spec has a new generation
        pool.validated = (
            generation,
            validate_spec(
                body["spec"], pool.ctx.config.default_queue, administered=pool.ctx.admin is not None
            ),
        )
        valid = pool.validated[1][0]
        pool.overridden = builders.overridden_fields(pool.ref, valid) if valid is not None else ()
    spec, spec_problem = pool.validated[1]
    refused = pool.refused[1] if pool.refused is not None and pool.refused[0] == generation else None
    # Which problem the pool reports is the chain's (problems.CHAIN); here, only which reads an
    # earlier problem makes moot.
    blocked = spec is None or spec_problem is not None or refused is not None
    queue_problem = stats_problem = credentials_problem = None
    stats, moved, queue_open = None, False, False
    if spec is not None and not blocked:
        queue_problem, moved = await pool.queue.connect(spec)
        if pool.queue.resolved is not None:  # the finalizer's, in memory (not a write to the cluster)
            pool.ctx.remember_queue_url(pool.ref.uid, pool.queue.resolved)
        blocked = queue_problem is not None
        queue_open = not blocked and pool.queue.queue is not None
    if spec is not None and not blocked and pool.queue.queue is not None:
        read = await pool.queue.stats(spec)
        stats, stats_problem = (None, read) if isinstance(read, Problem) else (read, None)
        blocked = stats_problem is not None
    pods = pool.ctx.cache.pods.get((pool.ref.namespace, pool.ref.name), {})
    credentials = pool.credentials if spec is not None and uses_default_queue(spec) else None
    managed = credentials is not None
    credentials_read = None
    if credentials is not None and not blocked:
        rotation = (meta.get("annotations") or {}).get(ANNOTATION_ROTATE, "")
        found = await credentials.read(rotation, pods)
        credentials_problem, credentials_read = (found, None) if isinstance(found, Problem) else (None, found)
    batch = pool.memory.batch
    name = builders.workers_name(pool.ref.name)
    return Gathered(
        pool=pool.ref,
        generation=generation,
        spec=spec,
        stats=stats,
        queue_moved=moved,
        feeder_progress=pool.queue.progress(batch.digest) if batch else None,
        managed=managed,
        credentials=credentials.digest if credentials is not None else None,
        observed={
            kind.kind: pool.ctx.cache.get(kind.kind, pool.ref.namespace, name)
            for kind in kinds.WORKER_OBJECTS
        },
        sweeper_progress=pool.queue.sweep_progress(batch.digest) if batch else None,
        pods=dict(pods),
        stored_status=dict(body.get("status") or {}),
        now=time.time(),
        memory=pool.memory,
        settings=pool.settings,
        overridden=pool.overridden,
        quota={
            pod: message
            for pod in pods
            if (message := pool.ctx.cache.quota.get((pool.ref.namespace, pod))) is not None
        },
        spec_problem=spec_problem,
        refused=refused,
        queue_problem=queue_problem,
        stats_problem=stats_problem,
        credentials_problem=credentials_problem,
        queue_open=queue_open,
        queue_configured=pool.queue.configured,
        credentials_read=credentials_read,
    )
