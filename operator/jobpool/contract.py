"""jobpool's user-facing contract, each fact defined once: the JobPool's defaults and limits and
its cross-field rules, the queue's limits, the names of environment variables, labels, ports,
job outcomes and metrics.

The CRD model, the queue, the worker, the operator and the CLI import these instead of spelling
them out; tests/unit/test_contract.py holds the chart (values, labels), the alerts, the dashboard
and the queue's Lua library to them. Pure constants and immutable records (NamedTuples: a frozen
dataclass costs ten times as much to create) with nothing imported but `typing.NamedTuple`, so the
worker imports this at start-up for next to nothing.
"""

from __future__ import annotations

from typing import NamedTuple

# -- Kubernetes names, labels and ports --------------------------------------------------------
DEFAULT_NAMESPACE = "default"  # a pool's namespace when none is given or found
# The operator's name: app.kubernetes.io/name of its pods (the Prometheus job of its metrics),
# app.kubernetes.io/managed-by of the worker objects it writes, its field manager, its leader Lease.
OPERATOR_NAME = "jobpool-operator"
WORKER_NAME = "jobpool-worker"  # app.kubernetes.io/name of worker pods (the Prometheus job of theirs)
PART_OF = "jobpool"  # app.kubernetes.io/part-of
LABEL_POOL = "jobpool.dev/pool"  # the label of a pool's worker objects: the pool's name
WORKER_CONTAINER = "worker"  # the name of the worker pods' container
WORKER_METRICS_PORT = 9100  # a worker's /metrics and /healthz
OPERATOR_METRICS_PORT = 8080  # the operator's /metrics and /healthz (the chart's metricsPort)

# -- environment variables of the clients (CLI, SDK, web page) and of the worker ----------------
ENV_QUEUE_URL = "JOBPOOL_QUEUE_URL"
ENV_NAMESPACE = "JOBPOOL_NAMESPACE"
ENV_POOL = "JOBPOOL_POOL"

# -- the queue ----------------------------------------------------------------------------------
QUEUE_URL_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
# Every key of a pool carries this hash tag (`.format(namespace=..., pool=...)`): one Redis Cluster
# shard per pool, and a pool's keys can be found (and deleted by hand) by it.
HASH_TAG = "{{jobpool:{namespace}/{pool}}}"
DEFAULT_MAX_LENGTH = 100_000  # spec.queue.maxLength: jobs that may wait
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20  # spec.queue.maxPayloadBytes, and a queue's limit when none is set
MAX_PAYLOAD_BYTES_ALLOWED = 512 << 20  # the largest spec.queue.maxPayloadBytes (Redis's bulk sizes)
DEFAULT_RESULT_TTL_SECONDS = 86400  # spec.results.ttlSeconds: how long a result (and its id's dedup) stays
DEFAULT_RESULTS_CAP = 100_000  # spec.results.maxCount
DEFAULT_DEAD_LETTER_CAP = 10_000  # spec.deadLetter.maxLength
DEFAULT_VISIBILITY_TIMEOUT_SECONDS = 30.0  # a job held by a silent worker is redelivered after this
ERROR_TEXT_LIMIT = 8000  # characters of a failed attempt's error that are kept
MAX_PRIORITY = 9  # priorities are 0..MAX_PRIORITY, a higher one served first
MAX_BATCH_ITEMS = 10_000  # spec.jobs.items
MAX_RANGE_COUNT = 10_000_000  # spec.jobs.range.count

# -- running jobs: the pool's defaults (spec) and the worker's ----------------------------------
DEFAULT_CONCURRENCY = 1  # job slots per worker
MAX_CONCURRENCY = 1024
DEFAULT_PARALLELISM = 1  # worker pods when autoscaling is off
DEFAULT_TIMEOUT_SECONDS = 600  # spec.timeoutSeconds (a worker run by hand has none: 0)
DEFAULT_MAX_ATTEMPTS = 3  # spec.retry.maxAttempts
MAX_ATTEMPTS_LIMIT = 1000  # the most spec.retry.maxAttempts and spec.jobLimits.maxAttempts allow
DEFAULT_BACKOFF_SECONDS = 1.0  # spec.retry.backoffSeconds
DEFAULT_MAX_BACKOFF_SECONDS = 300.0  # spec.retry.maxBackoffSeconds
DEFAULT_MAX_JOB_TIMEOUT_SECONDS = 86400  # spec.jobLimits.maxTimeoutSeconds
DEFAULT_MAX_JOB_ATTEMPTS = 100  # spec.jobLimits.maxAttempts
DEFAULT_DRAIN_SECONDS = 60  # spec.drainSeconds
MAX_DRAIN_SECONDS = 86400
DEFAULT_MAX_WORKERS = 10  # spec.autoscaling.maxWorkers
MAX_WORKERS_LIMIT = 10_000  # the most spec.autoscaling.minWorkers and maxWorkers allow
DEFAULT_SCALE_DOWN_DELAY_SECONDS = 30  # spec.autoscaling.scaleDownDelaySeconds
DEFAULT_POLL_INTERVAL_SECONDS = 0.5  # the operator's --poll-interval: between two reconciles of a pool

# -- job outcomes: what a finished attempt became ----------------------------------------------
OUTCOME_SUCCEEDED = "succeeded"
OUTCOME_RETRIED = "retried"
OUTCOME_DEAD_LETTERED = "dead_lettered"  # after the last attempt
OUTCOME_PERMANENT = "permanent"  # dead-lettered at once by a permanent error
OUTCOME_CANCELLED = "cancelled"
OUTCOME_DUPLICATE = "duplicate"  # a delivery that no longer counted (at-least-once)
# The queue's counters of distinct jobs, jobpool_jobs_total{outcome} (QueueStats' fields).
JOB_OUTCOMES = (
    OUTCOME_SUCCEEDED,
    OUTCOME_RETRIED,
    OUTCOME_DEAD_LETTERED,
    OUTCOME_PERMANENT,
    OUTCOME_CANCELLED,
)
# The finished attempts a worker counts, jobpool_worker_jobs_total{outcome}.
ATTEMPT_OUTCOMES = (*JOB_OUTCOMES, OUTCOME_DUPLICATE)
# Every counter of a pool's queue (the Lua library increments them, QueueStats reads them).
QUEUE_COUNTERS = ("submitted", *JOB_OUTCOMES, "duplicates")


# -- metric names (as PromQL names them: a counter with its _total) ----------------------------
class OperatorMetricNames(NamedTuple):
    """The operator's /metrics, by the attribute of `OperatorMetrics` that holds each."""

    waiting: str = "jobpool_queue_waiting"
    waiting_priority: str = "jobpool_queue_waiting_priority"
    inflight: str = "jobpool_queue_inflight"
    delayed: str = "jobpool_queue_delayed"
    scheduled: str = "jobpool_queue_scheduled"
    dead_letter: str = "jobpool_queue_dead_letter"
    max_length: str = "jobpool_queue_max_length"
    queue_up: str = "jobpool_queue_up"
    workers_desired: str = "jobpool_workers_desired"
    workers_max: str = "jobpool_workers_max"
    workers_ready: str = "jobpool_workers_ready"
    slots_busy: str = "jobpool_slots_busy"
    slots_total: str = "jobpool_slots_total"
    saturation: str = "jobpool_saturation"
    jobs: str = "jobpool_jobs_total"
    reconcile_seconds: str = "jobpool_reconcile_seconds"
    reconcile_errors: str = "jobpool_reconcile_errors_total"
    scale_events: str = "jobpool_scale_events_total"
    redis_up: str = "jobpool_redis_up"
    redis_memory: str = "jobpool_redis_memory_used_bytes"
    redis_maxmemory: str = "jobpool_redis_maxmemory_bytes"


class WorkerMetricNames(NamedTuple):
    """A worker's /metrics, by the attribute of `WorkerMetrics` that holds each."""

    slots: str = "jobpool_worker_slots"
    busy_slots: str = "jobpool_worker_busy_slots"
    jobs: str = "jobpool_worker_jobs_total"
    duration: str = "jobpool_job_duration_seconds"
    wait: str = "jobpool_job_wait_seconds"


OPERATOR_METRICS = OperatorMetricNames()
WORKER_METRICS = WorkerMetricNames()
# The metric only the external metrics API (external.metrics.k8s.io, for HPAs) serves; it serves
# some queue gauges of OPERATOR_METRICS by their names too.
BACKLOG_METRIC = "jobpool_backlog"
METRIC_NAMES = frozenset((*OPERATOR_METRICS, *WORKER_METRICS, BACKLOG_METRIC))


# -- the JobPool's cross-field rules -----------------------------------------------------------
class Rule(NamedTuple):
    """A rule over several fields: the CEL the API server checks (the CRD's x-kubernetes-validations,
    over the object it is declared on) and the message that both it and the operator's model give."""

    expression: str
    message: str


QUEUE_ONE_URL_SOURCE = Rule(
    "!(has(self.url) && has(self.urlSecretRef))", "spec.queue: set at most one of url and urlSecretRef"
)
ONLY_THE_WORKER_CONTAINER = Rule(
    f"!has(self.containers) || self.containers.all(c, c.name == '{WORKER_CONTAINER}')",
    f"spec.worker.podTemplate.spec.containers: only the worker container (name: {WORKER_CONTAINER}) may be "
    "set; add sidecars as initContainers with restartPolicy: Always",
)
WORKER_ONE_RUNNER = Rule(
    "has(self.handler) != has(self.command)", "spec.worker: set exactly one of handler and command"
)
RETRY_BACKOFF_BOUNDED = Rule(
    "self.backoffSeconds <= self.maxBackoffSeconds", "spec.retry: backoffSeconds must be <= maxBackoffSeconds"
)
AUTOSCALING_BOUNDS_ORDERED = Rule(
    "self.minWorkers <= self.maxWorkers", "spec.autoscaling: minWorkers must be <= maxWorkers"
)
# CEL cannot see spec.jobs.items (free-form JSON): the schema says this one with oneOf.
JOBS_ONE_SOURCE_MESSAGE = "spec.jobs: set exactly one of items and range"
