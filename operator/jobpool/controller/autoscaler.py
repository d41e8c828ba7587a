"""The autoscaler's policy: a pure function from demand and time to worker pods.

Scale up at once; scale down only after demand stayed below the current size for
`scaleDownDelaySeconds`; to zero when idle and minWorkers is 0, never with work in
flight; from zero as soon as one job waits.
"""

from __future__ import annotations

import dataclasses
import math

from ..api import AutoscalingSpec, JobPoolSpec
from . import reasons


@dataclasses.dataclass(frozen=True)
class ScaleDecision:
    replicas: int
    # Since when demand has been below the current size (None: it is not).
    lower_demand_since: float | None
    reason: str


def max_workers(spec: JobPoolSpec) -> int:
    """The most worker pods a pool may have: maxWorkers when autoscaling, else parallelism."""
    return spec.autoscaling.max_workers if spec.autoscaling.enabled else spec.parallelism


def demanded_replicas(backlog: int, in_flight: int, policy: AutoscalingSpec, concurrency: int) -> int:
    """Worker pods the backlog asks for, within [minWorkers, maxWorkers]."""
    per_worker = policy.target_backlog_per_worker or concurrency
    wanted = math.ceil(max(backlog, 0) / per_worker)
    if in_flight > 0:
        wanted = max(wanted, 1)
    return min(max(wanted, policy.min_workers), policy.max_workers)


def decide_replicas(
    *,
    backlog: int,
    in_flight: int,
    current: int,
    policy: AutoscalingSpec,
    concurrency: int,
    lower_demand_since: float | None,
    now: float,
) -> ScaleDecision:
    """backlog = waiting + in-flight + delayed jobs; current = replicas decided last time."""
    wanted = demanded_replicas(backlog, in_flight, policy, concurrency)
    clamped = min(max(current, policy.min_workers), policy.max_workers)
    if clamped != current:
        return ScaleDecision(max(wanted, clamped), None, reasons.OUT_OF_BOUNDS)
    if wanted > current:
        return ScaleDecision(wanted, None, reasons.BACKLOG_GREW)
    if wanted == current:
        return ScaleDecision(current, None, reasons.STEADY)
    since = now if lower_demand_since is None else lower_demand_since
    if now - since >= policy.scale_down_delay_seconds:
        return ScaleDecision(wanted, None, reasons.BACKLOG_SHRANK)
    return ScaleDecision(current, since, reasons.WAITING_FOR_SCALE_DOWN_DELAY)


def static_replicas(spec: JobPoolSpec) -> int:
    """Without autoscaling, spec.parallelism (set by the user, kubectl scale, HPA or KEDA)."""
    return spec.parallelism
