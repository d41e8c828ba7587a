"""Every condition type and reason, and every Event reason, the operator writes: one home, so
`kubectl get events` readers, alerts and tests name them from here (as cert-manager's reasons file)."""

from __future__ import annotations

# condition types (Kubernetes API conventions)
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
COMPLETE = "Complete"

# Ready / Progressing / Degraded when nothing is wrong
WORKERS_READY = "WorkersReady"
WORKERS_NOT_READY = "WorkersNotReady"
WAITING_FOR_CAPACITY = "WaitingForCapacity"
WAITING_FOR_QUOTA = "WaitingForQuota"
SCALING_WORKERS = "ScalingWorkers"
STABLE = "Stable"
AS_EXPECTED = "AsExpected"

# Complete (pools with spec.jobs)
QUEUE_UNKNOWN = "QueueUnknown"
BATCH_FINISHED = "BatchFinished"
COMPLETED_WITH_FAILURES = "CompletedWithFailures"  # finished, some jobs dead-lettered
BATCH_RUNNING = "BatchRunning"
CANCELLING = "Cancelling"  # spec.jobs.cancel: its jobs are being withdrawn or stopped
CANCELLED = "Cancelled"  # spec.jobs.cancel: done, no job runs

# problems: Ready False and Degraded True with one of these
INVALID_SPEC = "InvalidSpec"
INVALID_POD_TEMPLATE = "InvalidPodTemplate"
NO_QUEUE = "NoQueue"
DEFAULT_QUEUE_HAS_CREDENTIALS = "DefaultQueueHasCredentials"
INVALID_QUEUE_URL = "InvalidQueueURL"
QUEUE_UNAVAILABLE = "QueueUnavailable"
SECRET_NOT_FOUND = "SecretNotFound"
SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
SECRET_UNREADABLE = "SecretUnreadable"
QUEUE_CREDENTIALS_FAILED = "QueueCredentialsFailed"
QUEUE_SECRET_TAKEN = "QueueSecretTaken"

# Events of the operator's pass over a pool's keys (queue.upkeep): what it bounded or repaired
QUEUE_REPAIRED = "QueueRepaired"

# Events of the finalizer
WAITING_FOR_WORKERS = "WaitingForWorkers"
QUEUE_CLEANED = "QueueCleaned"
QUEUE_CLEANUP_INCOMPLETE = "QueueCleanupIncomplete"

# the autoscaler's decisions (logged)
OUT_OF_BOUNDS = "OutOfBounds"
BACKLOG_GREW = "BacklogGrew"
STEADY = "Steady"
BACKLOG_SHRANK = "BacklogShrank"
WAITING_FOR_SCALE_DOWN_DELAY = "WaitingForScaleDownDelay"
