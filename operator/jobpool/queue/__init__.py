"""The queue: one protocol (`Queue`) and its Redis Streams implementation."""

from .base import (
    DeadJob,
    Job,
    JobOptions,
    JobState,
    PayloadTooLarge,
    Queue,
    QueueError,
    QueueFull,
    QueueStats,
    QueueUnavailable,
    Result,
    UnknownTask,
    WorkerInfo,
)
from .redis.queue import RedisStreamsQueue, open_queue

__all__ = [
    "DeadJob",
    "Job",
    "JobOptions",
    "JobState",
    "PayloadTooLarge",
    "Queue",
    "QueueError",
    "QueueFull",
    "QueueStats",
    "QueueUnavailable",
    "RedisStreamsQueue",
    "Result",
    "UnknownTask",
    "WorkerInfo",
    "open_queue",
]
