"""What can be wrong with a pool, each as a `Problem` whose message names the field, and how
messages name its queue: a URL read from a Secret is never quoted, an inline one loses its password."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..api import JobPoolSpec
from ..queue.urls import EXPECTED_QUEUE_URL, queue_url_problem, redact_url, scrub_url
from . import reasons

if TYPE_CHECKING:
    from .plan import Gathered


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a pool is Degraded: a CamelCase reason and a message that names the field."""

    reason: str
    message: str
    # The spec is fine and only the queue cannot be reached: the workers are still kept as decided.
    spec_ok: bool = False


def uses_default_queue(spec: JobPoolSpec) -> bool:
    return spec.queue.url is None and spec.queue.url_secret_ref is None


def carries_credentials(url: str) -> bool:
    """Whether a URL holds a password (userinfo or `?password=`): what redaction would mask."""
    return redact_url(url) != url


def validate_spec(
    raw: Any, default_queue: str | None, administered: bool
) -> tuple[JobPoolSpec | None, Problem | None]:
    """The spec, or the first thing wrong with it: the schema's checks (for objects admitted before
    it had them) and what a schema cannot know, the operator's default queue."""
    try:
        spec = JobPoolSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "spec." + ".".join(str(p) for p in first["loc"])
        return None, Problem(reasons.INVALID_SPEC, f"{field}: {first['msg']}")
    if uses_default_queue(spec):
        if not default_queue:
            return spec, Problem(
                reasons.NO_QUEUE,
                "spec.queue: no url or urlSecretRef, and the operator has no "
                "--default-queue; set spec.queue.url",
            )
        if carries_credentials(default_queue) and not administered:
            # Whoever may read the pool's Deployment must not learn the password of the shared queue.
            return spec, Problem(
                reasons.DEFAULT_QUEUE_HAS_CREDENTIALS,
                "spec.queue: the operator's default queue URL carries a password, which is never copied into a "
                "worker Deployment; set spec.queue.urlSecretRef to a Secret in this namespace holding the queue "
                "URL (or spec.queue.url to a queue without one)",
            )
    return spec, None


def queue_field(spec: JobPoolSpec) -> str:
    return "spec.queue.urlSecretRef" if spec.queue.url_secret_ref else "spec.queue.url"


def shown_queue(spec: JobPoolSpec, url: str) -> str:
    """How messages name the queue: a URL read from a Secret is never quoted, only its Secret key
    (whoever may create a JobPool must not read Secret values through its status)."""
    ref = spec.queue.url_secret_ref
    return f'the URL in Secret "{ref.name}" key "{ref.key}"' if ref is not None else redact_url(url)


def queue_message(spec: JobPoolSpec, url: str, exc: BaseException) -> str:
    """The first line of a queue error, with the queue named as `shown_queue` names it."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if spec.queue.url_secret_ref is not None:
        return scrub_url(text, url, "<hidden>")
    return text.replace(url, redact_url(url)) if url else text


def invalid_queue_url(spec: JobPoolSpec, url: str) -> Problem:
    """An unusable queue URL, described without quoting any part of it."""
    problem = queue_url_problem(url) or "the queue refused it"
    return Problem(
        reasons.INVALID_QUEUE_URL,
        f"{queue_field(spec)}: {shown_queue(spec, url)} is not a "
        f"valid queue URL: {problem} ({EXPECTED_QUEUE_URL})",
    )


def queue_unavailable(spec: JobPoolSpec, url: str, exc: BaseException) -> Problem:
    """The spec is fine; the queue did not answer (the workers are kept as decided)."""
    return Problem(
        reasons.QUEUE_UNAVAILABLE,
        f"spec.queue: cannot reach the queue at {shown_queue(spec, url)}: {queue_message(spec, url, exc)}",
        spec_ok=True,
    )


def refused_deployment(exc: BaseException) -> Problem:
    """The API server refused the worker Deployment: its message names the pod template's field."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return Problem(
        reasons.INVALID_POD_TEMPLATE,
        f"spec.worker.podTemplate: the API server refused the worker Deployment: {text}",
    )


# Which problem a pool reports: the gathered facts go through these pure checks in order and the
# first that finds something wins (the loop does not read what an earlier problem makes moot).
Check = Callable[["Gathered"], "Problem | None"]


def invalid_spec(g: Gathered) -> Problem | None:
    """The spec cannot be read, or names what the operator lacks (a default queue)."""
    return g.spec_problem


def refused_worker_deployment(g: Gathered) -> Problem | None:
    """The API server refused this generation's worker Deployment (what a schema cannot check)."""
    return g.refused


def unresolved_queue(g: Gathered) -> Problem | None:
    """The queue URL's Secret is missing or unusable, or the URL is not a queue's."""
    return g.queue_problem


def unreachable_queue(g: Gathered) -> Problem | None:
    """The spec is fine; the queue did not answer (the workers are kept as decided)."""
    return g.stats_problem


def credentials_not_set_up(g: Gathered) -> Problem | None:
    """A managed pool's users or Secrets cannot be set up on the operator's queue."""
    return g.credentials_problem


CHAIN: tuple[Check, ...] = (
    invalid_spec,
    refused_worker_deployment,
    unresolved_queue,
    unreachable_queue,
    credentials_not_set_up,
)


def first_problem(g: Gathered, chain: tuple[Check, ...] = CHAIN) -> Problem | None:
    """The first problem a check of `chain` finds in `g`; None when none finds one."""
    for check in chain:
        problem = check(g)
        if problem is not None:
            return problem
    return None
