"""The names jobpool checks: pool and namespace names (DNS-1123 labels), handlers
("module:function") and task names."""

from __future__ import annotations

import re
from typing import Any

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _refused(problem: str) -> Exception:
    # imported here: the queue package imports this module, and its errors are QueueError
    from .queue.base import QueueError

    return QueueError(problem)


def name_problem(value: Any, what: str) -> str | None:
    """Why a pool or namespace name cannot be one in Kubernetes (a DNS-1123 label), or None."""
    if isinstance(value, str) and len(value) <= 63 and _DNS_LABEL.match(value):
        return None
    return (
        f"{what} {value!r} is not a DNS-1123 label: at most 63 lowercase letters, digits "
        f"and '-', starting and ending with a letter or digit"
    )


def check_name(value: Any, what: str) -> str:
    problem = name_problem(value, what)
    if problem is not None:
        raise _refused(problem)
    return value


_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
# "module:function" (or a module of tasks, or module:MAPPING): dotted identifiers, as
# `jobpool worker --handler` imports it (the CRD's schema carries the same pattern).
HANDLER_PATTERN = rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*(:{_IDENTIFIER}(\.{_IDENTIFIER})*)?$"


def handler_problem(handler: str) -> str | None:
    """Why `handler` is not a Python callable "module:function" (dotted names allowed), or None."""
    if re.match(HANDLER_PATTERN, handler):
        return None
    return (
        f"{handler!r} is not a Python callable module:function (e.g. app.tasks:resize) or a "
        f"module of tasks (e.g. app.tasks)"
    )


TASK_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$"  # no ':' or space: how the queue stores them


def check_task(task: Any, index: int | None = None) -> str:
    """A task name: a letter or '_', then letters, digits, '_', '.', '-'; at most 100."""
    if task is None or task == "":
        return ""
    if not isinstance(task, str) or not re.match(TASK_PATTERN, task):
        where = f"job {index}: " if index is not None else ""
        raise _refused(
            f"{where}task {task!r} is not a task name: a letter or '_', then letters, "
            f"digits, '_', '.' or '-', at most 100 characters"
        )
    return task
