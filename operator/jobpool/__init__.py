"""jobpool: a Kubernetes-native pool of workers fed by a queue."""

from .client import AsyncClient, Client
from .queue import (
    DeadJob,
    JobOptions,
    PayloadTooLarge,
    QueueError,
    QueueFull,
    QueueStats,
    QueueUnavailable,
    Result,
    UnknownTask,
    WorkerInfo,
)
from .worker.runners import JobContext, Permanent, task

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "DeadJob",
    "JobContext",
    "JobOptions",
    "PayloadTooLarge",
    "Permanent",
    "QueueError",
    "QueueFull",
    "QueueStats",
    "QueueUnavailable",
    "Result",
    "UnknownTask",
    "WorkerInfo",
    "__version__",
    "task",
]
