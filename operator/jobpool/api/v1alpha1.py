"""The `jobpool.dev/v1alpha1` JobPool resource as pydantic models.

These models are the single source of truth: the CRD's OpenAPI schema (with its
descriptions, defaults, bounds and CEL rules) is generated from them by
`jobpool.api.crd`, and the operator parses every JobPool it sees with them, so the
API server and the operator can never disagree about what a field means.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

from .. import contract as c
from ..contract import Rule
from ..names import HANDLER_PATTERN
from . import kube_schemas

GROUP = "jobpool.dev"
VERSION = "v1alpha1"
KIND = "JobPool"
PLURAL = "jobpools"
SINGULAR = "jobpool"
SHORT_NAMES = ["jp"]
API_VERSION = f"{GROUP}/{VERSION}"

QUEUE_URL_PATTERN = "^(" + "|".join(re.escape(scheme) for scheme in c.QUEUE_URL_SCHEMES) + ")://"


# Marks a schema that is structural already (a Kubernetes type's): the CRD generator keeps it as it is.
VERBATIM = "x-jobpool-verbatim"


def kubernetes_type(
    name: str, *, many: bool = False, map_keys: tuple[str, ...] = (), max_items: int | None = None
) -> Any:
    """A field holding the Kubernetes type `name` (a list of them with `many`), passed through as
    JSON; its schema is Kubernetes' own (the fields jobpool.api.kube_schemas keeps)."""
    schema = kube_schemas.schema(name)
    if many:
        # a list-map's keys must be required (or defaulted) in its items
        missing = [
            key
            for key in map_keys
            if key not in schema.get("required", []) and "default" not in schema["properties"][key]
        ]
        if missing:
            schema["required"] = [*schema.get("required", []), *missing]
        schema = {
            "type": "array",
            "items": schema,
            **(
                {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(map_keys)}
                if map_keys
                else {"x-kubernetes-list-type": "atomic"}
            ),
            **({"maxItems": max_items} if max_items is not None else {}),
        }
    return Annotated[
        list[dict[str, Any]] if many else dict[str, Any], WithJsonSchema({**schema, VERBATIM: True})
    ]


def cel(rule: Rule) -> ConfigDict:
    """A model's config declaring `rule` as its one `x-kubernetes-validations` entry (the message names
    the field it refuses); the model's validator raises the same message."""
    return ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [{"rule": rule.expression, "message": rule.message}]}
    )


class Model(BaseModel):
    """camelCase on the wire (as Kubernetes spells it), snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SecretKeyRef(Model):
    """Selects one key of a Secret in the JobPool's namespace."""

    name: str = Field(min_length=1, description="Name of the Secret in the JobPool's namespace.")
    key: str = Field(min_length=1, description="Key in the Secret whose value is the queue URL.")


class QueueSpec(Model):
    """Where the pool's jobs are queued."""

    model_config = cel(c.QUEUE_ONE_URL_SOURCE)

    url: str | None = Field(
        default=None,
        min_length=1,
        pattern=QUEUE_URL_PATTERN,
        description="Redis URL of the queue (redis://, rediss:// or unix://; redis+sentinel://host:port,.../<master> "
        "or redis+cluster://host:port,... for Sentinel or Redis Cluster), e.g. redis://jobpool-redis:6379/0. "
        "Unset (and no urlSecretRef): the operator's default queue.",
    )
    url_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Read the queue URL from a Secret key instead of url (use this when the "
        "URL holds a password); worker pods get it as a secretKeyRef.",
    )
    max_length: int = Field(
        default=c.DEFAULT_MAX_LENGTH,
        ge=1,
        description="Backpressure: at most this many jobs wait; submitters then wait or fail.",
    )
    max_payload_bytes: int = Field(
        default=c.DEFAULT_MAX_PAYLOAD_BYTES,
        ge=1,
        le=c.MAX_PAYLOAD_BYTES_ALLOWED,
        description="Largest payload (bytes of its JSON) a submit may enqueue; a larger one is "
        "refused, naming the job, and nothing of that submit is enqueued.",
    )
    durability: Literal["async", "replicated"] = Field(
        default="async",
        description="async: a submit or ack is acknowledged once the Redis master has it (a "
        "failover may lose the last moment of writes). replicated: submit and ack also "
        "wait (WAIT 1, up to 1s) until one replica has them, so an acknowledged submit "
        "survives a failover; this costs a replication round trip per call, and a "
        "queue without a reachable replica refuses writes as unavailable.",
    )

    @model_validator(mode="after")
    def _one_url_source(self) -> QueueSpec:
        if self.url is not None and self.url_secret_ref is not None:
            raise ValueError(c.QUEUE_ONE_URL_SOURCE.message)
        return self


# A worker pod with no requests is invisible to the scheduler and the cluster autoscaler.
DEFAULT_WORKER_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}}


class PodTemplateMetadata(Model):
    """Labels and annotations of the worker pods."""

    labels: dict[str, str] | None = Field(
        default=None,
        description="Labels added to every worker pod (e.g. kueue.x-k8s.io/queue-name, a mesh's or a cost "
        "tool's); the operator's own (jobpool.dev/pool, app.kubernetes.io/*) win.",
    )
    annotations: dict[str, str] | None = Field(
        default=None,
        description="Annotations added to every worker pod; the operator's own (jobpool.dev/*, the "
        "pod-deletion-cost and do-not-disrupt marks it sets per pod) win.",
    )


class PodTemplatePodSpec(Model):
    """The worker pods' placement, identity, volumes, security context and extra containers."""

    model_config = cel(c.ONLY_THE_WORKER_CONTAINER)

    service_account_name: str | None = Field(
        default=None,
        min_length=1,
        description="ServiceAccount the worker pods run as (e.g. one bound to a cloud identity); default: the "
        "namespace's default ServiceAccount.",
    )
    automount_service_account_token: bool | None = Field(
        default=None,
        description="Mount the ServiceAccount's API token into the pods; unset: false (the operator's default; "
        "a projected serviceAccountToken volume gives a token for another audience).",
    )
    node_selector: dict[str, str] | None = Field(
        default=None, description="Node labels the worker pods must be scheduled onto."
    )
    tolerations: kubernetes_type("Toleration", many=True) | None = Field(
        default=None, description="Taints the worker pods tolerate (e.g. GPU nodes' nvidia.com/gpu)."
    )
    affinity: kubernetes_type("Affinity") | None = Field(
        default=None, description="Node affinity and pod (anti-)affinity of the worker pods."
    )
    topology_spread_constraints: (
        kubernetes_type("TopologySpreadConstraint", many=True, map_keys=("topologyKey", "whenUnsatisfiable"))
        | None
    ) = Field(
        default=None, description="How the worker pods spread over zones, nodes or other topology domains."
    )
    priority_class_name: str | None = Field(
        default=None, min_length=1, description="PriorityClass of the worker pods."
    )
    runtime_class_name: str | None = Field(
        default=None, min_length=1, description="RuntimeClass of the worker pods (e.g. a GPU runtime)."
    )
    image_pull_secrets: kubernetes_type("LocalObjectReference", many=True, map_keys=("name",)) | None = Field(
        default=None, description="Secrets in the namespace for pulling the images from private registries."
    )
    volumes: kubernetes_type("Volume", many=True, map_keys=("name",)) | None = Field(
        default=None,
        description="Volumes of the worker pods (the restricted profile's types: configMap, csi, downwardAPI, "
        "emptyDir, ephemeral, persistentVolumeClaim, projected, secret); mount them with "
        "containers[worker].volumeMounts.",
    )
    security_context: kubernetes_type("PodSecurityContext") | None = Field(
        default=None,
        description="Pod security context within the restricted Pod Security Standard (non-root, "
        "RuntimeDefault or Localhost seccomp); merged over the operator's.",
    )
    init_containers: kubernetes_type("Container", many=True, map_keys=("name",)) | None = Field(
        default=None,
        description="Init containers, run before the worker; with restartPolicy: Always a native sidecar that "
        "runs beside it. Each gets the restricted security context under its own.",
    )
    containers: kubernetes_type("Container", many=True, map_keys=("name",), max_items=1) | None = Field(
        default=None,
        max_length=1,
        description="At most one entry, named worker: merged into the worker container (volumeMounts, "
        "securityContext, envFrom, env, resources, workingDir, lifecycle, imagePullPolicy). What "
        "the operator writes wins: image, command, args, ports, probes, its JOBPOOL_* variables "
        "(status.overriddenFields lists what it overrode).",
    )

    @model_validator(mode="after")
    def _only_the_worker_container(self) -> PodTemplatePodSpec:
        if any(container.get("name") != c.WORKER_CONTAINER for container in self.containers or []):
            raise ValueError(c.ONLY_THE_WORKER_CONTAINER.message)
        return self


class PodTemplate(Model):
    """Pod template fields passed through to the worker pods (a PodTemplateSpec subset)."""

    metadata: PodTemplateMetadata | None = Field(
        default=None, description="Labels and annotations of the worker pods."
    )
    spec: PodTemplatePodSpec | None = Field(
        default=None, description="Placement, identity, volumes, security context and extra containers."
    )


class WorkerSpec(Model):
    """The worker pods: what runs one job."""

    model_config = cel(c.WORKER_ONE_RUNNER)

    image: str = Field(min_length=1, description="Container image of the worker pods (required).")
    handler: str | None = Field(
        default=None,
        min_length=1,
        pattern=HANDLER_PATTERN,
        description='A Python callable "module:function" (sync or async) called with each '
        "job's payload; its return value is the job's result. Or a module of tasks "
        '("app.tasks": its functions marked @jobpool.task) or "module:MAPPING" (a dict '
        "of task name to callable): each job runs the task its submit named.",
    )
    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="A program run once per job: the payload JSON on stdin, the result JSON "
        "on stdout, a non-zero exit is a failed attempt.",
    )
    env: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra environment variables of the worker container (Kubernetes EnvVar list).",
    )
    resources: dict[str, Any] = Field(
        default=DEFAULT_WORKER_RESOURCES,
        description="Compute resources of the worker container (Kubernetes ResourceRequirements); "
        "default requests cpu 100m, memory 128Mi, so the scheduler and the cluster "
        "autoscaler count every worker pod. Giving resources replaces the default.",
    )
    pod_template: PodTemplate | None = Field(
        default=None,
        description="Pod template fields of the worker pods: labels, annotations, service account, placement "
        "(tolerations, nodeSelector, affinity, topology spread, priority), image pull secrets, "
        "volumes and mounts, security context (restricted profile), init and sidecar containers. "
        "The operator's own fields win; status.overriddenFields names what it overrode.",
    )

    @model_validator(mode="after")
    def _exactly_one_runner(self) -> WorkerSpec:
        if (self.handler is None) == (self.command is None):
            raise ValueError(c.WORKER_ONE_RUNNER.message)
        return self


class RangeSpec(Model):
    """A batch whose payloads are consecutive integers."""

    start: int = Field(default=0, description="The first payload.")
    count: int = Field(ge=0, le=c.MAX_RANGE_COUNT, description="How many payloads: start .. start+count-1.")


class JobsSpec(Model):
    """A finite batch the operator feeds into the queue once, with stable job ids."""

    # CEL cannot see `items` (its elements are free-form JSON), so the schema says it with oneOf.
    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["items"]}, {"required": ["range"]}]})

    items: list[Any] | None = Field(
        default=None,
        max_length=c.MAX_BATCH_ITEMS,
        description=f"The jobs' JSON payloads; job i gets the id <pool>-<i>. At most {c.MAX_BATCH_ITEMS:,} (the "
        "JobPool must also stay within the API server's object size limit, about 1.5 MiB); "
        "larger batches: range, or jobpool submit.",
    )
    range: RangeSpec | None = Field(
        default=None, description="Integer payloads start .. start+count-1; job i gets the id <pool>-<i>."
    )
    cancel: bool = Field(
        default=False,
        description="Cancel the batch: the operator stops feeding it, withdraws its waiting, scheduled and "
        "retrying jobs and has its running ones cancelled; Complete is then True with reason "
        "Cancelled once no job runs. Set back to false, it feeds the jobs not fed yet; cancelled "
        "jobs stay cancelled.",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> JobsSpec:
        if (self.items is None) == (self.range is None):
            raise ValueError(c.JOBS_ONE_SOURCE_MESSAGE)
        return self

    @property
    def total(self) -> int:
        return len(self.items) if self.items is not None else self.range.count  # type: ignore[union-attr]

    def payloads(self, start: int, stop: int) -> list[Any]:
        """Payloads of jobs start .. stop-1 (the batch is fed in chunks)."""
        if self.items is not None:
            return list(self.items[start:stop])
        first = self.range.start  # type: ignore[union-attr]
        return list(range(first + start, first + min(stop, self.total)))


class JobLimitsSpec(Model):
    """The caps on the options a job may set for itself at submit (its own timeout, attempts and
    backoff, whose cap is retry.maxBackoffSeconds); a job asking more gets the cap."""

    max_timeout_seconds: int = Field(
        default=c.DEFAULT_MAX_JOB_TIMEOUT_SECONDS,
        ge=1,
        description="The longest timeout a job may set for itself, in seconds.",
    )
    max_attempts: int = Field(
        default=c.DEFAULT_MAX_JOB_ATTEMPTS,
        ge=1,
        le=c.MAX_ATTEMPTS_LIMIT,
        description="The most attempts a job may set for itself.",
    )


class RetrySpec(Model):
    """What happens to a failed attempt."""

    model_config = cel(c.RETRY_BACKOFF_BOUNDED)

    max_attempts: int = Field(
        default=c.DEFAULT_MAX_ATTEMPTS,
        ge=1,
        le=c.MAX_ATTEMPTS_LIMIT,
        description="Attempts per job; after the last failed one the job goes to the "
        "dead-letter stream with its last error.",
    )
    backoff_seconds: float = Field(
        default=c.DEFAULT_BACKOFF_SECONDS,
        ge=0,
        description="Delay before the first retry; it doubles (with jitter) per attempt.",
    )
    max_backoff_seconds: float = Field(
        default=c.DEFAULT_MAX_BACKOFF_SECONDS, ge=0, description="Upper bound of the retry delay."
    )

    @model_validator(mode="after")
    def _backoff_bounded(self) -> RetrySpec:
        if self.backoff_seconds > self.max_backoff_seconds:
            raise ValueError(c.RETRY_BACKOFF_BOUNDED.message)
        return self


class ResultsSpec(Model):
    """How long and how many results of succeeded jobs Redis keeps (what a job leaves behind)."""

    ttl_seconds: int = Field(
        default=c.DEFAULT_RESULT_TTL_SECONDS,
        ge=1,
        description="Seconds each result is kept; while it is, a job with the same id is not enqueued again.",
    )
    max_count: int = Field(
        default=c.DEFAULT_RESULTS_CAP,
        ge=1,
        description="Most results kept; beyond it the oldest are dropped first, before their ttlSeconds.",
    )


class DeadLetterSpec(Model):
    """The dead-letter stream of jobs that failed their last attempt."""

    max_length: int = Field(
        default=c.DEFAULT_DEAD_LETTER_CAP,
        ge=1,
        description="Most dead letters kept; a new one beyond it drops the oldest.",
    )


class AutoscalingSpec(Model):
    """The operator's own backlog-driven autoscaler."""

    model_config = cel(c.AUTOSCALING_BOUNDS_ORDERED)

    enabled: bool = Field(
        default=False,
        description="Scale worker pods on the backlog; when false spec.parallelism decides "
        "(and kubectl scale, HPA or KEDA may set it).",
    )
    min_workers: int = Field(
        default=0,
        ge=0,
        le=c.MAX_WORKERS_LIMIT,
        description="Fewest worker pods; 0 lets an idle pool scale to zero.",
    )
    max_workers: int = Field(
        default=c.DEFAULT_MAX_WORKERS, ge=1, le=c.MAX_WORKERS_LIMIT, description="Most worker pods."
    )
    target_backlog_per_worker: int | None = Field(
        default=None,
        ge=1,
        description="Waiting + in-flight + delayed jobs per worker pod the autoscaler aims "
        "for; default: spec.concurrency.",
    )
    scale_down_delay_seconds: int = Field(
        default=c.DEFAULT_SCALE_DOWN_DELAY_SECONDS,
        ge=0,
        description="Demand must stay below the current size this long before the pool shrinks.",
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> AutoscalingSpec:
        if self.min_workers > self.max_workers:
            raise ValueError(c.AUTOSCALING_BOUNDS_ORDERED.message)
        return self


class JobPoolSpec(Model):
    """The desired state of a pool of workers fed by a queue."""

    parallelism: int = Field(
        default=c.DEFAULT_PARALLELISM,
        ge=0,
        description="Worker pods when autoscaling is off; the /scale subresource's replicas.",
    )
    concurrency: int = Field(
        default=c.DEFAULT_CONCURRENCY, ge=1, le=c.MAX_CONCURRENCY, description="Job slots per worker pod."
    )
    worker: WorkerSpec = Field(description="The worker pods: image and what runs one job.")
    queue: QueueSpec = Field(default_factory=QueueSpec, description="Where the pool's jobs are queued.")
    jobs: JobsSpec | None = Field(
        default=None, description="An optional finite batch the operator feeds once, idempotently."
    )
    retry: RetrySpec = Field(default_factory=RetrySpec, description="Retries of failed attempts.")
    results: ResultsSpec = Field(
        default_factory=ResultsSpec, description="Retention of the results of succeeded jobs."
    )
    dead_letter: DeadLetterSpec = Field(
        default_factory=DeadLetterSpec, description="The bound of the dead-letter stream."
    )
    timeout_seconds: int = Field(
        default=c.DEFAULT_TIMEOUT_SECONDS,
        ge=0,
        description="Per-job deadline: the job is cancelled and counts as a failed attempt (0 = none).",
    )
    job_limits: JobLimitsSpec = Field(
        default_factory=JobLimitsSpec,
        description="Caps on the timeout and attempts a job may set for itself at submit.",
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="The backlog-driven autoscaler."
    )
    drain_seconds: int = Field(
        default=c.DEFAULT_DRAIN_SECONDS,
        ge=0,
        le=c.MAX_DRAIN_SECONDS,
        description="Grace for a worker pod to finish its in-flight jobs when it is removed.",
    )


class LevelCount(Model):
    """The jobs waiting at one priority level."""

    priority: int = Field(
        ge=0, le=c.MAX_PRIORITY, description="The level, 0-9; a higher one is served first."
    )
    waiting: int = Field(default=0, description="Jobs waiting at this level.")


class QueueCounts(Model):
    """Jobs in the queue now."""

    waiting: int = Field(default=0, description="Jobs waiting for a worker slot.")
    in_flight: int = Field(default=0, description="Jobs running on a worker slot.")
    delayed: int = Field(default=0, description="Failed jobs waiting for their retry.")
    scheduled: int = Field(default=0, description="Jobs submitted to run later (delay, run-at), not due yet.")
    dead_letter: int = Field(default=0, description="Jobs in the dead-letter stream.")
    waiting_by_priority: list[LevelCount] = Field(
        default_factory=list,
        description="The waiting jobs by priority level, only levels with jobs, "
        "the highest first (a job submitted without a priority is at level 0).",
    )


class JobCounts(Model):
    """Jobs over the pool's lifetime (distinct job ids)."""

    submitted: int = Field(default=0, description="Jobs enqueued.")
    succeeded: int = Field(default=0, description="Jobs that succeeded.")
    retried: int = Field(default=0, description="Failed attempts that were retried.")
    dead_lettered: int = Field(
        default=0, description="Jobs moved to the dead-letter stream after their last attempt."
    )
    permanent: int = Field(
        default=0, description="Jobs moved to the dead-letter stream at once by a permanent error."
    )
    cancelled: int = Field(
        default=0, description="Jobs withdrawn by a cancel (jobpool cancel, client.cancel)."
    )


class BatchProgress(Model):
    """How much of spec.jobs the operator has fed (so a restart never feeds twice)."""

    total: int = Field(default=0, description="Jobs in spec.jobs.")
    fed: int = Field(default=0, description="Jobs of spec.jobs already enqueued.")
    digest: str = Field(default="", description="Digest of the spec.jobs that was fed.")
    swept: int | None = Field(
        default=None, description="With spec.jobs.cancel: how many of its jobs the cancel has gone through."
    )


class Condition(Model):
    """A condition following the Kubernetes API conventions."""

    type: str = Field(description="Ready, Progressing, Degraded or Complete.")
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase reason of the last transition.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str = Field(default="", description="When status last changed (RFC 3339).")
    observed_generation: int = Field(default=0, description="The spec generation this was computed from.")


class JobPoolStatus(Model):
    """What the operator observed and decided."""

    observed_generation: int = Field(default=0, description="The spec generation last reconciled.")
    replicas: int = Field(default=0, description="Worker pods that exist (the /scale status replicas).")
    ready_replicas: int = Field(default=0, description="Worker pods that are ready.")
    desired_replicas: int = Field(default=0, description="Worker pods the operator decided on.")
    selector: str = Field(default="", description="Label selector of the worker pods (the /scale selector).")
    queue: QueueCounts = Field(default_factory=QueueCounts, description="Jobs in the queue now.")
    jobs: JobCounts = Field(default_factory=JobCounts, description="Job counters (distinct ids).")
    saturation: float = Field(default=0.0, description="Busy slots / total slots over live workers.")
    batch: BatchProgress | None = Field(default=None, description="Feeding progress of spec.jobs.")
    overridden_fields: list[str] | None = Field(
        default=None,
        description="Fields of spec.worker (its podTemplate, env) that the operator's own values override, "
        "each with what it keeps instead.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing, Degraded, Complete."
    )


class JobPool(Model):
    """A pool of workers fed by a queue."""

    api_version: str = Field(default=API_VERSION, description="jobpool.dev/v1alpha1")
    kind: str = Field(default=KIND, description="JobPool")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: JobPoolSpec
    status: JobPoolStatus = Field(default_factory=JobPoolStatus)
