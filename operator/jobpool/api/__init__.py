"""The JobPool API: pydantic models (the source of truth) and the CRD built from them."""
from .v1alpha1 import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    AutoscalingSpec,
    BatchProgress,
    Condition,
    DeadLetterSpec,
    JobCounts,
    JobPool,
    JobPoolSpec,
    JobPoolStatus,
    JobsSpec,
    QueueCounts,
    QueueSpec,
    RangeSpec,
    ResultsSpec,
    RetrySpec,
    SecretKeyRef,
    WorkerSpec,
)

__all__ = [
    "API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION", "AutoscalingSpec", "BatchProgress",
    "Condition", "DeadLetterSpec", "JobCounts", "JobPool", "JobPoolSpec", "JobPoolStatus", "JobsSpec", "QueueCounts",
    "QueueSpec", "RangeSpec", "ResultsSpec", "RetrySpec", "SecretKeyRef", "WorkerSpec",
]
