"""The names jobpool checks: pool and namespace names, handlers and task names."""

from __future__ import annotations

import pytest

from jobpool.names import check_name, check_task, handler_problem, name_problem
from jobpool.queue import QueueError


@pytest.mark.parametrize("name", ["a", "thumbs", "team-a", "0pool", "x" * 63, "a1-b2-c3"])
def test_dns_labels_are_pool_and_namespace_names(name):
    assert name_problem(name, "pool") is None


@pytest.mark.parametrize(
    "name", ["", "Thumbs", "bad pool name!", "-a", "a-", "a_b", "a.b", "x" * 64, "é", None, 7]
)
def test_anything_else_is_refused_naming_the_value_and_the_rule(name):
    problem = name_problem(name, "pool")
    assert problem == (
        f"pool {name!r} is not a DNS-1123 label: at most 63 lowercase letters, "
        f"digits and '-', starting and ending with a letter or digit"
    )


def test_a_bad_name_is_refused_as_a_queue_error():
    assert check_name("thumbs", "pool") == "thumbs"
    with pytest.raises(QueueError, match="pool 'Thumbs' is not a DNS-1123 label"):
        check_name("Thumbs", "pool")


@pytest.mark.parametrize("handler", ["app:resize", "app.tasks", "app.tasks:TASKS", "_a.b_c:d.e"])
def test_dotted_modules_and_callables_are_handlers(handler):
    assert handler_problem(handler) is None


@pytest.mark.parametrize("handler", ["", "app:", ":resize", "app.tasks:resize:x", "1app:f", "app-x:f"])
def test_anything_else_is_not_a_handler(handler):
    assert handler_problem(handler) == (
        f"{handler!r} is not a Python callable module:function (e.g. app.tasks:resize) or a "
        f"module of tasks (e.g. app.tasks)"
    )


@pytest.mark.parametrize("task", ["resize", "_private", "a.b-c_d", "x" * 100])
def test_task_names_are_kept_as_given(task):
    assert check_task(task) == task


@pytest.mark.parametrize("task", [None, ""])
def test_no_task_is_the_empty_task(task):
    assert check_task(task) == ""


@pytest.mark.parametrize("task", ["1st", "a:b", "a b", "x" * 101, 7])
def test_a_bad_task_name_is_refused_naming_the_job(task):
    with pytest.raises(QueueError, match=rf"^job 3: task {task!r} is not a task name"):
        check_task(task, 3)
