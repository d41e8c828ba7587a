"""The operator's Prometheus metrics (served by `jobpool._metrics_server`)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..contract import JOB_OUTCOMES, OPERATOR_METRICS
from ..queue.base import QueueStats

LABELS = ("namespace", "pool")


class OperatorMetrics:
    def __init__(self) -> None:
        # (namespace, pool) -> (stats of its last reconcile, when): read by the external metrics API
        self.latest: dict[tuple[str, str], tuple[QueueStats, float]] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.waiting = Gauge(OPERATOR_METRICS.waiting, "Jobs waiting for a worker slot.", LABELS, registry=r)
        self.waiting_priority = Gauge(
            OPERATOR_METRICS.waiting_priority,
            "Jobs waiting for a worker slot at one priority level (only levels with jobs).",
            (*LABELS, "priority"),
            registry=r,
        )
        self._levels: dict[tuple[str, str], set[str]] = {}  # the levels each pool's gauge shows
        self.inflight = Gauge(OPERATOR_METRICS.inflight, "Jobs running on a worker slot.", LABELS, registry=r)
        self.delayed = Gauge(
            OPERATOR_METRICS.delayed, "Failed jobs waiting for their retry.", LABELS, registry=r
        )
        self.scheduled = Gauge(
            OPERATOR_METRICS.scheduled,
            "Jobs submitted to run later (delay, run-at), not due yet.",
            LABELS,
            registry=r,
        )
        self.dead_letter = Gauge(
            OPERATOR_METRICS.dead_letter, "Jobs in the dead-letter stream.", LABELS, registry=r
        )
        self.workers_desired = Gauge(
            OPERATOR_METRICS.workers_desired, "Worker pods the operator decided on.", LABELS, registry=r
        )
        self.workers_max = Gauge(
            OPERATOR_METRICS.workers_max,
            "Most worker pods the pool may have: autoscaling.maxWorkers, else parallelism.",
            LABELS,
            registry=r,
        )
        self.queue_up = Gauge(
            OPERATOR_METRICS.queue_up,
            "1 when the operator reached the pool's queue at its last reconcile, 0 when it could not.",
            LABELS,
            registry=r,
        )
        self.workers_ready = Gauge(
            OPERATOR_METRICS.workers_ready, "Worker pods that are ready.", LABELS, registry=r
        )
        self.slots_busy = Gauge(
            OPERATOR_METRICS.slots_busy, "Busy job slots over live workers.", LABELS, registry=r
        )
        self.slots_total = Gauge(
            OPERATOR_METRICS.slots_total, "Job slots over live workers.", LABELS, registry=r
        )
        self.saturation = Gauge(OPERATOR_METRICS.saturation, "Busy slots / total slots.", LABELS, registry=r)
        # Queue counters are absolute, so they are exported as gauges named like counters.
        self.jobs = Gauge(
            OPERATOR_METRICS.jobs, "Jobs by outcome (distinct ids).", (*LABELS, "outcome"), registry=r
        )
        self.reconcile_seconds = Histogram(
            OPERATOR_METRICS.reconcile_seconds,
            "Duration of one pool reconcile.",
            LABELS,
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.reconcile_errors = Counter(
            OPERATOR_METRICS.reconcile_errors, "Reconciles of a pool that failed.", LABELS, registry=r
        )
        self.scale_events = Counter(
            OPERATOR_METRICS.scale_events, "Replica changes the operator made.", LABELS, registry=r
        )
        self.max_length = Gauge(
            OPERATOR_METRICS.max_length,
            "spec.queue.maxLength: submitters wait once this many jobs wait.",
            LABELS,
            registry=r,
        )
        # The queue the operator administers (the bundled Redis, or adminQueue), sampled by the leader.
        self.redis_up = Gauge(
            OPERATOR_METRICS.redis_up,
            "1 when the operator reached its administered queue at its last sample.",
            registry=r,
        )
        self.redis_memory = Gauge(
            OPERATOR_METRICS.redis_memory,
            "used_memory of the administered queue (the largest of its masters).",
            registry=r,
        )
        self.redis_maxmemory = Gauge(
            OPERATOR_METRICS.redis_maxmemory, "maxmemory of the administered queue (0: none).", registry=r
        )

    def observe_pool(
        self,
        namespace: str,
        pool: str,
        stats: QueueStats | None,
        desired: int,
        ready: int,
        maximum: int | None = None,
        queue_up: bool | None = None,
        max_length: int | None = None,
    ) -> None:
        """`queue_up` None: the queue was not tried (the spec or its Secret is the problem)."""
        labels = (namespace, pool)
        if max_length is not None:
            self.max_length.labels(*labels).set(max_length)
        self.workers_desired.labels(*labels).set(desired)
        self.workers_ready.labels(*labels).set(ready)
        if maximum is not None:
            self.workers_max.labels(*labels).set(maximum)
        if queue_up is not None:
            self.queue_up.labels(*labels).set(1 if queue_up else 0)
        if stats is None:
            return
        self.latest[labels] = (stats, time.time())
        self.waiting.labels(*labels).set(stats.waiting)
        for level in self._levels.get(labels, set()) - set(stats.waiting_by_priority):
            self.waiting_priority.remove(*labels, level)
        for level, count in stats.waiting_by_priority.items():
            self.waiting_priority.labels(*labels, level).set(count)
        self._levels[labels] = set(stats.waiting_by_priority)
        self.inflight.labels(*labels).set(stats.in_flight)
        self.delayed.labels(*labels).set(stats.delayed)
        self.scheduled.labels(*labels).set(stats.scheduled)
        self.dead_letter.labels(*labels).set(stats.dead_letter)
        self.slots_busy.labels(*labels).set(stats.busy_slots)
        self.slots_total.labels(*labels).set(stats.total_slots)
        self.saturation.labels(*labels).set(stats.saturation)
        for outcome in JOB_OUTCOMES:
            self.jobs.labels(*labels, outcome).set(getattr(stats, outcome))

    def forget_pool(self, namespace: str, pool: str) -> None:
        self.latest.pop((namespace, pool), None)
        for level in self._levels.pop((namespace, pool), set()):
            self.waiting_priority.remove(namespace, pool, level)
        for gauge in (
            self.waiting,
            self.inflight,
            self.delayed,
            self.scheduled,
            self.dead_letter,
            self.workers_desired,
            self.workers_max,
            self.queue_up,
            self.reconcile_errors,
            self.workers_ready,
            self.slots_busy,
            self.slots_total,
            self.saturation,
            self.scale_events,
            self.reconcile_seconds,
            self.max_length,
        ):
            try:
                gauge.remove(namespace, pool)
            except KeyError:
                pass
        for outcome in JOB_OUTCOMES:
            try:
                self.jobs.remove(namespace, pool, outcome)
            except KeyError:
                pass

    def observe_redis(self, reachable: bool, memory: tuple[int, int] | None) -> None:
        """The administered queue: reachable, and its (used_memory, maxmemory) when readable."""
        self.redis_up.set(1 if reachable else 0)
        if memory is not None:
            self.redis_memory.set(memory[0])
            self.redis_maxmemory.set(memory[1])
