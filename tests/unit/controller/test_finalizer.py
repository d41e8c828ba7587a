"""The finalizer's attempt as handlers.py hands it over: wait (said once), or clean up and forget the pool."""

import asyncio

import pytest

from jobpool.controller import finalizer, reasons
from jobpool.controller.finalizer import CleanupStep, clean_up
from jobpool.controller.metrics import OperatorMetrics
from jobpool.controller.reconcile import OperatorConfig, OperatorContext


class Admin:
    def __init__(self, fails: bool) -> None:
        self.fails, self.deleted = fails, []

    async def delete_users(self, namespace, name):
        if self.fails:
            raise ConnectionError("refused")
        self.deleted.append((namespace, name))
        return 2


def context(events, admin=None) -> OperatorContext:
    ctx = OperatorContext(
        None,  # type: ignore[arg-type]
        OperatorConfig(default_queue=None),
        OperatorMetrics(),
        open_queue=lambda *_: pytest.fail("no queue is opened"),
        post_event=lambda _body, type_, reason, _message: events.append((type_, reason)),
        admin=admin,
    )
    ctx.remember_queue_url("u", "redis://q:6379/0")
    return ctx


def attempt(ctx, monkeypatch, step, first_attempt=True):
    async def finalize_pool(*_):
        return step

    monkeypatch.setattr(finalizer, "finalize_pool", finalize_pool)
    return asyncio.run(clean_up(ctx, {}, "p", "ns", "u", {}, 0.0, first_attempt))


@pytest.mark.parametrize("first_attempt", [True, False])
def test_waiting_for_the_workers_is_said_once_and_forgets_nothing(monkeypatch, first_attempt):
    events: list = []
    ctx = context(events)
    waiting = CleanupStep(False, "2 worker pods left")
    assert attempt(ctx, monkeypatch, waiting, first_attempt) == waiting
    assert events == ([("Normal", reasons.WAITING_FOR_WORKERS)] if first_attempt else [])
    assert ctx.queue_url("u") is not None


@pytest.mark.parametrize("admin_fails", [None, False, True])
def test_a_done_cleanup_removes_the_queue_users_and_forgets_the_pool(monkeypatch, admin_fails):
    events: list = []
    admin = Admin(admin_fails) if admin_fails is not None else None
    ctx = context(events, admin)  # type: ignore[arg-type]
    step = attempt(ctx, monkeypatch, CleanupStep(True, "deleted the queue keys"))
    assert step.done and ctx.queue_url("u") is None
    if admin_fails:
        assert step.warning and "its queue users were not removed: refused" in step.message
        assert events == [("Warning", reasons.QUEUE_CLEANUP_INCOMPLETE)]
    else:
        assert not step.warning and events == [("Normal", reasons.QUEUE_CLEANED)]
        assert admin is None or admin.deleted == [("ns", "p")]
