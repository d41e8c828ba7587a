"""The finalizer's policy: stop the workers, wait until none is left, then delete the queue keys.

Deleting the keys while a worker still runs leaks them: its next fetch recreates the stream
and its heartbeat registers it again. So the finalizer first scales the worker Deployment to
zero and waits until no worker pod remains and no live worker is registered in the queue
(workers that are not pods, too). The wait is bounded, so a stuck pool can still be deleted.
"""

from __future__ import annotations

import dataclasses

from ..api import JobPoolSpec
from ..contract import DEFAULT_VISIBILITY_TIMEOUT_SECONDS, HASH_TAG
from ..worker.config import SETTINGS

WAIT_MARGIN_SECONDS = 5.0
# A queue whose keys cannot be deleted is retried this long before the pool goes anyway.
QUEUE_GIVE_UP_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class CleanupObservation:
    worker_pods: tuple[str, ...]
    # None when the queue could not be read: then only the pods can be waited for.
    registered_workers: tuple[str, ...] | None
    waited: float
    limit: float  # wait_limit(spec)


@dataclasses.dataclass(frozen=True)
class CleanupDecision:
    delete_keys: bool
    message: str
    gave_up: bool = False


def visibility_timeout(spec: JobPoolSpec) -> float:
    """The workers' visibility timeout: the queue's default unless spec.worker.env sets another."""
    for variable in spec.worker.env:
        if variable.get("name") == SETTINGS["visibility_timeout"].variable:
            try:
                seconds = float(variable["value"])
            except (KeyError, TypeError, ValueError):  # valueFrom or no number: the worker refuses it
                return DEFAULT_VISIBILITY_TIMEOUT_SECONDS
            return seconds if seconds > 0 else DEFAULT_VISIBILITY_TIMEOUT_SECONDS
    return DEFAULT_VISIBILITY_TIMEOUT_SECONDS


def wait_limit(spec: JobPoolSpec) -> float:
    """A draining pod gets drainSeconds; a killed one's registration expires a visibility timeout
    after its last heartbeat."""
    return spec.drain_seconds + visibility_timeout(spec) + WAIT_MARGIN_SECONDS


def _waiting_for(observation: CleanupObservation) -> str:
    parts = []
    if observation.worker_pods:
        parts.append(
            f"{len(observation.worker_pods)} worker pod(s) ({', '.join(observation.worker_pods[:5])})"
        )
    if observation.registered_workers:
        parts.append(
            f"{len(observation.registered_workers)} registered worker(s) "
            f"({', '.join(observation.registered_workers[:5])})"
        )
    return " and ".join(parts)


def decide_cleanup(observation: CleanupObservation) -> CleanupDecision:
    limit = observation.limit
    pending = _waiting_for(observation)
    if not pending:
        return CleanupDecision(
            True, f"no worker pod or registered worker left after {observation.waited:.0f}s"
        )
    if observation.waited >= limit:
        return CleanupDecision(
            True,
            f"gave up after {observation.waited:.0f}s (limit {limit:.0f}s) waiting for "
            f"{pending} to stop; deleting the queue keys anyway",
            gave_up=True,
        )
    return CleanupDecision(
        False,
        f"waiting up to {limit:.0f}s for {pending} to stop before deleting the "
        f"queue keys ({observation.waited:.0f}s so far)",
    )


def give_up_on_queue(waited: float, spec: JobPoolSpec, reachable: bool) -> bool:
    """Whether failing to delete the keys has been retried long enough to let the pool go.

    A queue that answered this attempt had a blip: retry past the wait. One that did not
    answer at all has no worker to wait for either, so it is retried only briefly.
    """
    return waited >= (wait_limit(spec) if reachable else 0.0) + QUEUE_GIVE_UP_SECONDS


def keys_left_behind(namespace: str, pool: str, problem: str) -> str:
    """Why the keys stay, and what to do: a pool re-created with this name would find them."""
    tag = HASH_TAG.format(namespace=namespace, pool=pool)
    return (
        f"queue keys of {namespace}/{pool} not deleted: {problem}; the operator has not resolved this "
        f"pool's queue since it started, so delete any keys with the hash tag {tag} "
        f"by hand before re-creating the pool"
    )
