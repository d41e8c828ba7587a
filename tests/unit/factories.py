"""Objects the unit tests build again and again."""

from __future__ import annotations

from typing import Any

from jobpool.api import JobPoolSpec

WORKER = {"image": "registry.example/app:1.0", "handler": "app.tasks:resize"}


def spec(**overrides: Any) -> JobPoolSpec:
    """A JobPool spec: a worker with an image and a handler, and the fields given (camelCase)."""
    return JobPoolSpec.model_validate({"worker": dict(WORKER), **overrides})
