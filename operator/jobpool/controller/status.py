"""Pure status and conditions: what the operator observed, in the JobPool's status.

Conditions follow the Kubernetes API conventions: `lastTransitionTime` moves only when
a condition's status flips, and every flip is returned so the caller can post an Event.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from ..queue.base import QueueStats
from . import reasons
from .builders import selector
from .problems import Problem
from .reasons import COMPLETE, DEGRADED, PROGRESSING, READY

KUEUE_GATE = "kueue.x-k8s.io/admission"  # Kueue's scheduling gate on a pod it has not admitted
NO_WORKLOAD_YET = "waiting for Kueue to admit it"


@dataclasses.dataclass(frozen=True)
class Observation:
    """Everything one reconcile read from the world."""

    pool: str
    generation: int
    replicas: int  # worker pods that exist
    ready_replicas: int
    desired_replicas: int  # what the operator decided this round
    stats: QueueStats | None  # None: the queue could not be read
    problem: Problem | None
    batch_total: int | None  # None: no spec.jobs
    batch_fed: int = 0
    batch_swept: int | None = None  # spec.jobs.cancel: how many of its ids the cancel went through
    unschedulable: tuple[str, ...] = ()  # the scheduler's message for each worker pod no node can hold
    overridden: tuple[str, ...] = ()  # the user's fields the operator's own values override
    waiting_for_quota: tuple[str, ...] = ()  # Kueue's message for each worker pod it has not admitted


@dataclasses.dataclass(frozen=True)
class Transition:
    """A condition whose status changed; posted as an Event."""

    type: str
    status: str
    reason: str
    message: str

    @property
    def warning(self) -> bool:
        return (self.type == DEGRADED and self.status == "True") or (
            self.type == READY and self.status == "False"
        )


def rfc3339(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def desired_conditions(obs: Observation) -> list[dict[str, str]]:
    """Ready, Progressing, Degraded and (for a batch) Complete, without timestamps."""
    conditions = []
    if obs.problem is not None:
        conditions.append(_cond(READY, False, obs.problem.reason, obs.problem.message))
    elif obs.ready_replicas >= obs.desired_replicas and obs.replicas <= obs.desired_replicas:
        message = (
            f"{obs.ready_replicas}/{obs.desired_replicas} worker pods ready"
            if obs.desired_replicas
            else "scaled to zero worker pods"
        )
        conditions.append(_cond(READY, True, reasons.WORKERS_READY, message))
    else:
        conditions.append(
            _cond(
                READY,
                False,
                reasons.WORKERS_NOT_READY,
                f"{obs.ready_replicas}/{obs.desired_replicas} worker pods ready",
            )
        )
    if obs.waiting_for_quota:
        # Kueue admits them as quota frees (another team's pods finish, or its cohort lends).
        conditions.append(
            _cond(
                PROGRESSING,
                True,
                reasons.WAITING_FOR_QUOTA,
                f"{len(obs.waiting_for_quota)} of {obs.replicas} worker pods wait for quota (Kueue): "
                f"{obs.waiting_for_quota[0]}",
            )
        )
    elif obs.unschedulable:
        # A cluster autoscaler (Karpenter, Cluster Autoscaler) may be adding nodes for them.
        conditions.append(
            _cond(
                PROGRESSING,
                True,
                reasons.WAITING_FOR_CAPACITY,
                f"{len(obs.unschedulable)} of {obs.replicas} worker pods wait for node capacity: "
                f"{obs.unschedulable[0]}",
            )
        )
    elif obs.replicas != obs.desired_replicas or obs.ready_replicas < obs.desired_replicas:
        conditions.append(
            _cond(
                PROGRESSING,
                True,
                reasons.SCALING_WORKERS,
                f"{obs.replicas} worker pods, {obs.desired_replicas} desired",
            )
        )
    else:
        conditions.append(_cond(PROGRESSING, False, reasons.STABLE, f"{obs.desired_replicas} worker pods"))
    if obs.problem is not None:
        conditions.append(_cond(DEGRADED, True, obs.problem.reason, obs.problem.message))
    else:
        conditions.append(_cond(DEGRADED, False, reasons.AS_EXPECTED, "queue reachable, spec valid"))
    if obs.batch_total is not None:
        conditions.append(_complete(obs))
    return conditions


def unschedulable(pods: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The scheduler's messages for the live pods it found no node for (PodScheduled False, Unschedulable)."""
    return tuple(
        cond.get("message") or "no node can hold the pod"
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp")
        for cond in (pod.get("status") or {}).get("conditions") or []
        if cond.get("type") == "PodScheduled"
        and cond.get("status") == "False"
        and cond.get("reason") == "Unschedulable"
    )


def waiting_for_quota(pods: Iterable[Mapping[str, Any]], quota: Mapping[str, str]) -> tuple[str, ...]:
    """Kueue's message for each live pod it still gates (its Workload's, once Kueue has made one), Kueue's first."""
    messages = [
        quota.get(pod["metadata"]["name"]) or NO_WORKLOAD_YET
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp")
        and any(
            gate.get("name") == KUEUE_GATE for gate in (pod.get("spec") or {}).get("schedulingGates") or []
        )
    ]
    return tuple(sorted(messages, key=lambda message: message == NO_WORKLOAD_YET))


def _complete(obs: Observation) -> dict[str, str]:
    total, stats = obs.batch_total or 0, obs.stats
    if stats is None:
        return _cond(COMPLETE, False, reasons.QUEUE_UNKNOWN, "the queue could not be read")
    dead = stats.dead_lettered + stats.permanent
    done = stats.succeeded + dead + stats.cancelled
    if obs.batch_swept is not None:
        # cancelled: complete once every job of it was withdrawn or asked to stop, and none runs
        counts = f"{stats.succeeded} succeeded, {dead} dead-lettered, {stats.cancelled} cancelled"
        if obs.batch_swept >= total and stats.in_flight == 0:
            return _cond(
                COMPLETE, True, reasons.CANCELLED, f"the batch was cancelled (spec.jobs.cancel): {counts}"
            )
        if obs.batch_swept >= total:
            return _cond(
                COMPLETE,
                False,
                reasons.CANCELLING,
                f"the batch is cancelled; waiting for {stats.in_flight} running jobs to stop",
            )
        return _cond(COMPLETE, False, reasons.CANCELLING, f"cancelling the batch's {total} jobs")
    if obs.batch_fed >= total and stats.backlog == 0 and done >= total:
        # finished is not succeeded: dead letters show in the reason, for `kubectl wait` and alerts
        return _cond(
            COMPLETE,
            True,
            reasons.COMPLETED_WITH_FAILURES if dead else reasons.BATCH_FINISHED,
            f"{total} jobs: {stats.succeeded} succeeded, {dead} dead-lettered"
            + (f", {stats.cancelled} cancelled" if stats.cancelled else ""),
        )
    # No live counters here: they are in status.batch and status.jobs, written at most every interval.
    if obs.batch_fed < total:
        return _cond(
            COMPLETE, False, reasons.BATCH_RUNNING, f"feeding {total} jobs (progress in status.batch)"
        )
    return _cond(COMPLETE, False, reasons.BATCH_RUNNING, f"all {total} jobs fed, waiting for them to finish")


def _cond(type_: str, status: bool, reason: str, message: str) -> dict[str, str]:
    return {"type": type_, "status": "True" if status else "False", "reason": reason, "message": message}


def merge_conditions(
    previous: list[dict[str, Any]], desired: list[dict[str, str]], *, generation: int, now: float
) -> tuple[list[dict[str, Any]], list[Transition]]:
    """Keep lastTransitionTime unless the status flips; report the flips."""
    before = {c.get("type"): c for c in previous or []}
    merged, transitions = [], []
    for cond in desired:
        old = before.get(cond["type"])
        flipped = old is None or old.get("status") != cond["status"]
        merged.append(
            {
                **cond,
                "observedGeneration": generation,
                "lastTransitionTime": rfc3339(now)
                if flipped or old is None
                else old.get("lastTransitionTime", rfc3339(now)),
            }
        )
        if flipped:
            transitions.append(Transition(cond["type"], cond["status"], cond["reason"], cond["message"]))
    return merged, transitions


def build_status(
    obs: Observation, previous: dict[str, Any], now: float, batch: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[Transition]]:
    """The whole status; counters keep their last values while the queue is unreachable."""
    conditions, transitions = merge_conditions(
        previous.get("conditions", []), desired_conditions(obs), generation=obs.generation, now=now
    )
    status: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "replicas": obs.replicas,
        "readyReplicas": obs.ready_replicas,
        "desiredReplicas": obs.desired_replicas,
        "selector": selector(obs.pool),
    }
    if obs.stats is not None:
        counts = obs.stats.as_status()
        status["queue"] = {
            k: counts[k]
            for k in ("waiting", "inFlight", "delayed", "scheduled", "deadLetter", "waitingByPriority")
        }
        status["jobs"] = {
            k: counts[k]
            for k in ("submitted", "succeeded", "retried", "deadLettered", "permanent", "cancelled")
        }
        status["saturation"] = counts["saturation"]
    else:
        for key, empty in (("queue", {}), ("jobs", {}), ("saturation", 0.0)):
            status[key] = previous.get(key, empty)
    if batch is not None:
        status["batch"] = batch
    status["overriddenFields"] = list(obs.overridden) or None  # None: removed by the merge patch
    status["conditions"] = conditions
    return status, transitions


def status_changed(previous: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a status write would change anything (kopf's own keys are ignored)."""
    return any(previous.get(key) != value for key, value in new.items())


COUNTERS = ("queue", "jobs", "saturation", "batch")


def only_counters_changed(previous: dict[str, Any], new: dict[str, Any]) -> bool:
    """Counter-only changes can be batched; replicas and conditions are written at once."""
    return all(previous.get(key) == value for key, value in new.items() if key not in COUNTERS)
