"""The decision of one reconcile, as one pure function: `plan(Gathered) -> Plan`.

`Gathered` is everything one tick read (the spec or what is wrong with it, the queue's stats,
the worker objects and pods, the status, the time) plus the `Memory` the previous tick left;
`Plan` is everything to do (objects to apply or delete, pod annotation patches, the status to
write, Events) plus the `Memory` for the next tick. The loop only gathers and acts, so every
decision is tested here without a cluster, a queue or a clock.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..api import JobPoolSpec
from ..queue.base import QueueStats
from . import autoscaler, builders, kinds, status as pool_status
from .credentials import CredentialsRead, CredentialsWrite, digest as credentials_digest, plan_writes
from .problems import Problem, first_problem


@dataclasses.dataclass(frozen=True)
class Batch:
    """spec.jobs being fed: `digest` says which batch to which queue, `fed` how far; `swept`: how far
    its cancel (spec.jobs.cancel) has gone through the batch's ids, None while it is not cancelled."""

    total: int
    fed: int
    digest: str
    swept: int | None = None

    @property
    def cancelled(self) -> bool:
        return self.swept is not None

    def as_status(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "fed": self.fed,
            "digest": self.digest,
            **({"swept": self.swept} if self.swept is not None else {}),
        }


@dataclasses.dataclass(frozen=True)
class Memory:
    """What one tick hands the next; it lives only in the operator (a restart starts afresh)."""

    decided: int | None = None  # the replicas decided last tick
    lower_demand_since: float | None = None  # the autoscaler's scale-down clock
    batch: Batch | None = None
    status: Mapping[str, Any] | None = None  # the status as last written (None: read the object's)
    status_written_at: float = 0.0
    # The inputs of the worker objects when they were last found current: the same inputs (and the
    # same observed resourceVersions) skip building and comparing them.
    objects_current_for: tuple[Any, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Settings:
    """The operator's own settings that decisions depend on."""

    default_queue: str | None
    status_min_interval: float = 1.0  # counter-only status changes are written at most this often


@dataclasses.dataclass(frozen=True)
class Gathered:
    pool: builders.PoolRef
    generation: int
    spec: JobPoolSpec | None  # None: unreadable (then `spec_problem` says why)
    stats: QueueStats | None  # None: the queue was not read or did not answer
    queue_moved: bool  # the URL changed since last tick: a batch is fed again there
    feeder_progress: int | None  # how far the running feeder got with memory.batch
    managed: bool  # on the queue the operator administers
    credentials: str | None  # a managed pool's password digest; None until its Secret exists
    observed: Mapping[str, Mapping[str, Any] | None]  # worker objects by kind
    pods: Mapping[str, Mapping[str, Any]]
    stored_status: Mapping[str, Any]  # the JobPool's status as read
    now: float
    memory: Memory
    settings: Settings
    overridden: tuple[str, ...] = ()  # the user's fields the operator's own values override (builders)
    quota: Mapping[str, str] = dataclasses.field(
        default_factory=dict
    )  # Kueue's message per pod it has not admitted
    sweeper_progress: int | None = None  # how far the running cancel of memory.batch got (spec.jobs.cancel)
    # What each read found wrong (None: nothing, or not read because an earlier one did); which of
    # them the pool reports is `problems.first_problem`'s to say, in the order of `problems.CHAIN`.
    spec_problem: Problem | None = None  # the spec is unreadable or needs what the operator lacks
    refused: Problem | None = None  # the API server refused this generation's worker Deployment
    queue_problem: Problem | None = None  # the queue URL cannot be read or opened
    stats_problem: Problem | None = None  # the queue did not answer
    credentials_problem: Problem | None = None  # a managed pool's users or Secrets cannot be set up
    queue_open: bool = False  # connected this tick to the queue the spec names
    queue_configured: Mapping[str, Any] | None = None  # the pool-wide settings last stored in it
    credentials_read: CredentialsRead | None = None  # a managed pool's, read this tick (None: not read)

    @property
    def problem(self) -> Problem | None:
        """What the pool reports as wrong: the first of the chain's checks that finds something."""
        return first_problem(self)


class Action(enum.Enum):
    """What to do with the pool's feeder (or sweeper) of spec.jobs."""

    START = "start"  # run it for the plan's batch (one already running for that batch goes on)
    CONTINUE = "continue"  # leave it be: running, paused or done
    STOP = "stop"  # stop it (and wait until it has)


@dataclasses.dataclass(frozen=True)
class Plan:
    apply: tuple[dict[str, Any], ...]  # server-side apply, in this order
    delete: tuple[kinds.Kind, ...]  # the pool's object of these kinds
    pod_patches: Mapping[str, Mapping[str, str | None]]
    status: dict[str, Any] | None  # the status merge patch; None: nothing to write now
    events: tuple[pool_status.Transition, ...]
    memory: Memory
    desired: int
    scaled: str | None  # why the autoscaler changed the size (logged)
    replicas_changed: bool  # the applied Deployment changes spec.replicas
    feed: Batch | None  # the batch to feed from index feed.fed on, when `feeder` is START
    sweep: Batch | None  # the cancelled batch whose jobs to cancel from sweep.swept on (`sweeper` START)
    idle: bool  # no job anywhere and nothing to do: the next tick may wait longer
    # Written before anything they serve (act): the settings before feeding, the credentials before
    # the Deployment that mounts them.
    configure: Mapping[str, Any] | None = None  # the pool-wide settings to store in the queue
    credentials: tuple[CredentialsWrite, ...] = ()  # a managed pool's users and Secrets, in order
    # The feeder stops without a batch or once it is cancelled; the sweeper without a cancelled batch.
    feeder: Action = Action.CONTINUE
    sweeper: Action = Action.CONTINUE


def batch_digest(spec: JobPoolSpec) -> str:
    """Identifies what was fed where: a batch moved to another queue (as spec.queue names it) is fed again."""
    assert spec.jobs is not None
    source = spec.queue.model_dump(by_alias=True, exclude_none=True, include={"url", "url_secret_ref"})
    # cancel is not part of it: a cancelled batch is the same batch, not one to feed again
    jobs = spec.jobs.model_dump(by_alias=True, exclude_none=True, exclude={"cancel"})
    raw = json.dumps({"jobs": jobs, "queue": source}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def queue_settings(spec: JobPoolSpec) -> dict[str, Any]:
    """The pool-wide settings stored in its queue, which every submit and worker reads there."""
    return {
        "max_length": spec.queue.max_length,
        "max_payload_bytes": spec.queue.max_payload_bytes,
        "durability": spec.queue.durability,
    }


def to_configure(g: Gathered) -> dict[str, Any] | None:
    """The settings to store: on a queue connected this tick whose stored settings differ (tried
    again every tick until stored; an unreachable queue does not stop the attempt)."""
    if g.spec is None or not g.queue_open or g.spec_problem or g.refused or g.queue_problem:
        return None
    settings = queue_settings(g.spec)
    return settings if g.queue_configured != settings else None


def credentials_to_write(
    g: Gathered, problem: Problem | None
) -> tuple[tuple[CredentialsWrite, ...], str | None]:
    """A managed pool's credential writes and the worker password digest its Deployment carries
    (None: no worker Secret yet, so no workers)."""
    if g.credentials_read is None or problem is not None:
        return (), g.credentials
    writes, worker = plan_writes(g.credentials_read, g.pods)
    return writes, credentials_digest(worker) if worker is not None else None


def current_replicas(
    memory: Memory, deployment: Mapping[str, Any] | None, previous: Mapping[str, Any]
) -> int:
    if memory.decided is not None:
        return memory.decided
    if deployment is not None:
        return int((deployment.get("spec") or {}).get("replicas") or 0)
    return int(previous.get("desiredReplicas") or 0)


def desired_replicas(
    spec: JobPoolSpec, stats: QueueStats | None, current: int, now: float, lower_demand_since: float | None
) -> tuple[int, float | None, str | None]:
    """(replicas, the scale-down clock, why the size changed)."""
    if not spec.autoscaling.enabled:
        return autoscaler.static_replicas(spec), None, None
    if stats is None:
        return (
            min(max(current, spec.autoscaling.min_workers), spec.autoscaling.max_workers),
            lower_demand_since,
            None,
        )
    decision = autoscaler.decide_replicas(
        backlog=stats.backlog,
        in_flight=stats.in_flight,
        current=current,
        policy=spec.autoscaling,
        concurrency=spec.concurrency,
        lower_demand_since=lower_demand_since,
        now=now,
    )
    scaled = (
        f"{decision.reason}, {current} -> {decision.replicas} worker pods (backlog {stats.backlog})"
        if decision.replicas != current
        else None
    )
    return decision.replicas, decision.lower_demand_since, scaled


def next_batch(
    spec: JobPoolSpec | None,
    remembered: Batch | None,
    previous: Mapping[str, Any],
    queue_moved: bool,
    feeder_progress: int | None,
    sweeper_progress: int | None = None,
) -> Batch | None:
    if spec is None or spec.jobs is None:
        return None
    digest = batch_digest(spec)
    batch = remembered
    if batch is None:
        stored = previous.get("batch") or {}
        swept = stored.get("swept")
        batch = Batch(
            spec.jobs.total,
            int(stored.get("fed") or 0),
            stored.get("digest", ""),
            int(swept) if swept is not None else None,
        )
    if batch.digest != digest:
        # A changed batch is fed again from the start; known ids are not enqueued twice.
        batch = Batch(spec.jobs.total, 0, digest)
    elif queue_moved:
        batch = dataclasses.replace(batch, fed=0, swept=None)  # the progress was made in the old queue
    elif feeder_progress is not None:
        batch = dataclasses.replace(batch, fed=max(batch.fed, feeder_progress))
    if not spec.jobs.cancel:
        return dataclasses.replace(batch, swept=None)
    return dataclasses.replace(batch, swept=max(batch.swept or 0, sweeper_progress or 0))


def worker_objects(g: Gathered, spec: JobPoolSpec, replicas: int) -> dict[kinds.Kind, dict[str, Any] | None]:
    return {
        kinds.DEPLOYMENT: builders.build_deployment(
            g.pool, spec, replicas, g.settings.default_queue, g.credentials
        ),
        kinds.SERVICE: builders.build_service(g.pool),
        kinds.PDB: builders.build_pdb(g.pool, spec),
    }


def worker_changes(
    g: Gathered, spec: JobPoolSpec, desired: int
) -> tuple[list[dict[str, Any]], list[kinds.Kind], bool]:
    """The worker objects to apply and to delete, and whether the Deployment's replicas change."""
    apply, delete, replicas_changed = [], [], False
    for kind, obj in worker_objects(g, spec, desired).items():
        observed = g.observed.get(kind.kind)
        if obj is None:
            if observed is not None:
                delete.append(kind)
        elif builders.needs_write(obj, dict(observed) if observed is not None else None):
            apply.append(obj)
            if kind is kinds.DEPLOYMENT and observed is not None:
                replicas_changed = (observed.get("spec") or {}).get("replicas") != desired
    return apply, delete, replicas_changed


def live_pod_annotations(pods: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        name: dict(pod["metadata"].get("annotations") or {})
        for name, pod in pods.items()
        if not pod["metadata"].get("deletionTimestamp")
    }


def status_to_write(
    previous: Mapping[str, Any], new: dict[str, Any], memory: Memory, now: float, min_interval: float
) -> bool:
    if not pool_status.status_changed(dict(previous), new):
        return False
    return not (
        pool_status.only_counters_changed(dict(previous), new)
        and now - memory.status_written_at < min_interval
    )


def next_memory(previous: Memory, decided: Plan, status_written: bool) -> Memory:
    """What the next tick starts from once `decided` was acted on: its memory, except that the
    status as last written stays `previous`'s unless the status patch was written (or there was none)."""
    if status_written:
        return decided.memory
    return dataclasses.replace(
        decided.memory, status=previous.status, status_written_at=previous.status_written_at
    )


def plan(g: Gathered) -> Plan:
    memory = g.memory
    previous = memory.status if memory.status is not None else g.stored_status
    deployment = g.observed.get(kinds.DEPLOYMENT.kind)
    spec, stats = g.spec, g.stats
    current = current_replicas(memory, deployment, previous)
    problem = g.problem
    spec_ok = spec is not None and (problem is None or problem.spec_ok)
    credential_writes, worker_digest = credentials_to_write(g, problem)
    if worker_digest != g.credentials:
        g = dataclasses.replace(g, credentials=worker_digest)  # the Deployment mounts what act writes first

    desired, lower_demand_since, scaled = current, memory.lower_demand_since, None
    if spec is not None and spec_ok:
        desired, lower_demand_since, scaled = desired_replicas(
            spec, stats, current, g.now, lower_demand_since
        )
    batch = next_batch(spec, memory.batch, previous, g.queue_moved, g.feeder_progress, g.sweeper_progress)

    apply: list[dict[str, Any]] = []
    delete: list[kinds.Kind] = []
    patches: dict[str, dict[str, str | None]] = {}
    feed = sweep = None
    replicas_changed = False
    # a managed pool's workers start once their Secret exists
    objects_inputs = (
        g.generation,
        desired,
        g.credentials,
        tuple(
            ((g.observed.get(kind.kind) or {}).get("metadata") or {}).get("resourceVersion")
            for kind in kinds.WORKER_OBJECTS
        ),
    )
    if spec is not None and spec_ok and not (g.managed and g.credentials is None):
        if objects_inputs != memory.objects_current_for:
            apply, delete, replicas_changed = worker_changes(g, spec, desired)
        if stats is not None:
            patches = builders.pod_annotation_patches(
                {w.id: w.busy for w in stats.workers}, live_pod_annotations(g.pods)
            )
            if batch is not None and batch.cancelled:
                sweep = batch if batch.swept < batch.total else None  # type: ignore[operator]
            elif batch is not None and batch.fed < batch.total:
                feed = batch

    dstatus = (deployment or {}).get("status") or {}
    observation = pool_status.Observation(
        pool=g.pool.name,
        generation=g.generation,
        replicas=int(dstatus.get("replicas") or 0),
        ready_replicas=int(dstatus.get("readyReplicas") or 0),
        desired_replicas=desired,
        stats=stats,
        problem=problem,
        batch_total=batch.total if batch else None,
        batch_fed=batch.fed if batch else 0,
        batch_swept=batch.swept if batch else None,
        unschedulable=pool_status.unschedulable(g.pods.values()),
        overridden=g.overridden,
        waiting_for_quota=pool_status.waiting_for_quota(g.pods.values(), g.quota),
    )
    new_status, transitions = pool_status.build_status(
        observation, dict(previous), g.now, batch=batch.as_status() if batch else None
    )
    if batch is None and previous.get("batch"):
        new_status["batch"] = None
    elif batch is not None and not batch.cancelled and "swept" in (previous.get("batch") or {}):
        new_status["batch"] = {
            **new_status["batch"],
            "swept": None,
        }  # cancel undone: removed by the merge patch
    if new_status.get("overriddenFields", ...) is None and not previous.get("overriddenFields"):
        new_status.pop("overriddenFields", None)
    write = status_to_write(previous, new_status, memory, g.now, g.settings.status_min_interval)
    written = memory.status, memory.status_written_at
    if write:
        merged = {**previous, **{k: v for k, v in new_status.items() if v is not None}}
        for key in ("batch", "overriddenFields"):
            if new_status.get(key, ...) is None:
                merged.pop(key, None)
        if merged.get("batch"):
            merged["batch"] = {k: v for k, v in merged["batch"].items() if v is not None}
        written = merged, g.now
    return Plan(
        apply=tuple(apply),
        delete=tuple(delete),
        pod_patches=patches,
        status=new_status if write else None,
        events=tuple(transitions),
        memory=Memory(
            decided=desired if spec_ok else memory.decided,
            lower_demand_since=lower_demand_since,
            batch=batch,
            status=written[0],
            status_written_at=written[1],
            objects_current_for=objects_inputs if spec_ok and not apply and not delete else None,
        ),
        desired=desired,
        scaled=scaled,
        replicas_changed=replicas_changed,
        feed=feed,
        sweep=sweep,
        feeder=(
            Action.STOP
            if batch is None or batch.cancelled
            else Action.START
            if feed is not None
            else Action.CONTINUE
        ),
        sweeper=(
            Action.STOP
            if batch is None or not batch.cancelled
            else Action.START
            if sweep is not None
            else Action.CONTINUE
        ),
        configure=to_configure(g),
        credentials=credential_writes,
        idle=(
            stats is not None
            and stats.backlog == 0
            and stats.in_flight == 0
            and not apply
            and not delete
            and not patches
            and not write
            and feed is None
            and sweep is None
        ),
    )
