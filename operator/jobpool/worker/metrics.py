"""The worker's Prometheus metrics (served by `jobpool._metrics_server`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from ..contract import ATTEMPT_OUTCOMES, WORKER_METRICS

disable_created_metrics()  # the *_created series double the output for no use here

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)
WAIT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 3600)


class WorkerMetrics:
    def __init__(self, namespace: str, pool: str, slots: int):
        self.registry = CollectorRegistry()
        labels = ("namespace", "pool")
        values = (namespace, pool)
        self.slots = Gauge(
            WORKER_METRICS.slots, "Job slots of this worker", labels, registry=self.registry
        ).labels(*values)
        self.busy_slots = Gauge(
            WORKER_METRICS.busy_slots, "Slots holding a job", labels, registry=self.registry
        ).labels(*values)
        jobs = Counter(
            WORKER_METRICS.jobs,
            "Finished attempts by outcome",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.jobs = {outcome: jobs.labels(*values, outcome) for outcome in ATTEMPT_OUTCOMES}
        self.duration = Histogram(
            WORKER_METRICS.duration,
            "Run time of an attempt",
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        ).labels(*values)
        self.wait = Histogram(
            WORKER_METRICS.wait,
            "From enqueue (or due) to start",
            labels,
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        ).labels(*values)
        self.slots.set(slots)
