"""Per-pool queue credentials on the queue the operator administers (`--admin-queue`).

A pool without spec.queue gets two Redis ACL users (`jobpool.queue.acl`): a worker user,
whose URL its worker Deployment reads from the Secret `<pool>-queue`, and a submit-only
producer user in `<pool>-queue-producer`. Both Secrets are owned by the JobPool, so they
go with it; the finalizer removes the users. The password lives only in the Secret and in
Redis: the operator re-applies the users from the Secret, so a Redis restart (ACL users are
not in the AOF) costs at most one check interval.

Rotation: a new value of the annotation `jobpool.dev/rotate-credentials` gives each user a
new password while the old one stays valid; the worker pods roll (the password's digest is
on their template), and the old password goes once no pod of the old template is left.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import NoPermissionError, RedisError

from ..queue import acl, connection
from ..queue.redis import library
from ..queue.urls import redact_url
from . import builders, kinds, reasons
from .kube import KubeApi
from .problems import Problem

log = logging.getLogger("jobpool.operator")

ANNOTATION_ROTATE = "jobpool.dev/rotate-credentials"
ANNOTATION_ROTATED_FOR = "jobpool.dev/rotated-for"  # on the Secret: the rotation it holds
# Users are applied again this often even when nothing changed: a restarted Redis lost them.
CHECK_SECONDS = 5.0
COMMAND_TIMEOUT_SECONDS = 5.0
SECRET_NAMES = {acl.WORKER: builders.queue_secret_name, acl.PRODUCER: builders.producer_secret_name}


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What one role's Secret holds."""

    password: str
    previous: str | None  # still valid while a rotation rolls
    rotation: str  # the rotate-credentials value this password was made for

    @property
    def passwords(self) -> tuple[str, ...]:
        return (self.password,) if self.previous is None else (self.password, self.previous)


def new_password() -> str:
    return secrets.token_hex(32)


def decide(
    current: Credentials | None,
    rotation: str,
    old_pods_gone: bool,
    make_password: Callable[[], str] = new_password,
) -> Credentials:
    """The credentials a role should have now. A rotation asked for while one rolls starts
    once that one is finished: a pod may still hold the previous password until then."""
    if current is None:
        return Credentials(make_password(), None, rotation)
    if current.previous is not None:
        return Credentials(current.password, None, current.rotation) if old_pods_gone else current
    if current.rotation != rotation:
        return Credentials(make_password(), current.password, rotation)
    return current


def digest(credentials: Credentials) -> str:
    """Stamped on the worker pod template: a new password rolls the pods."""
    return hashlib.sha256(credentials.password.encode()).hexdigest()[:16]


def old_pods_gone(pods: Mapping[str, Mapping[str, Any]], current_digest: str) -> bool:
    """No pod that may still hold the previous password: every pod has the current template and
    none is terminating (a draining pod still acks with its connection)."""
    for pod in pods.values():
        meta = pod["metadata"]
        digest_of_pod = (meta.get("annotations") or {}).get(builders.ANNOTATION_CREDENTIALS)
        if meta.get("deletionTimestamp") or digest_of_pod != current_digest:
            return False
    return True


def owned_by(secret: dict[str, Any], pool: builders.PoolRef) -> bool:
    return any(ref.get("uid") == pool.uid for ref in secret["metadata"].get("ownerReferences") or [])


def read_secret(secret: dict[str, Any] | None) -> Credentials | None:
    if secret is None:
        return None
    data = {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
    if not data.get("password"):
        return None
    annotations = secret["metadata"].get("annotations") or {}
    return Credentials(
        data["password"], data.get("previous-password"), annotations.get(ANNOTATION_ROTATED_FOR, "")
    )


def build_secret(
    pool: builders.PoolRef, role: str, credentials: Credentials, admin_url: str
) -> dict[str, Any]:
    user = acl.user_name(pool.namespace, pool.name, role)
    data = {
        "url": acl.user_url(admin_url, user, credentials.password),
        "username": user,
        "password": credentials.password,
    }
    if credentials.previous is not None:
        data["previous-password"] = credentials.previous
    return {
        "apiVersion": kinds.SECRET.api_version,
        "kind": kinds.SECRET.kind,
        "type": "Opaque",
        "metadata": {
            "name": SECRET_NAMES[role](pool.name),
            "namespace": pool.namespace,
            "labels": {**builders.pool_labels(pool.name), "app.kubernetes.io/component": f"queue-{role}"},
            "annotations": {ANNOTATION_ROTATED_FOR: credentials.rotation},
            "ownerReferences": [builders.owner_reference(pool)],
        },
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


class QueueAdmin:
    """The one connection with ACL rights to the administered queue."""

    def __init__(self, url: str):
        self.url = url
        self.library_checked_at = -CHECK_SECONDS
        self.redis = connection.connect(
            url,
            decode_responses=False,
            socket_connect_timeout=COMMAND_TIMEOUT_SECONDS,
            socket_timeout=COMMAND_TIMEOUT_SECONDS,
        )

    async def apply(self, user: acl.PoolUser) -> None:
        await self.ensure_library()
        await acl.apply_user(self.redis, user, select=connection.names_a_db(self.url))

    async def ensure_library(self) -> None:
        """The queue's functions library on every master, checked as often as a pool's users: a
        Redis restart keeps it (functions are persisted), a new or replaced master has none."""
        if time.monotonic() - self.library_checked_at < CHECK_SECONDS:
            return
        if await library.load_everywhere(self.redis):
            log.info("loaded the queue's functions library %s on %s", library.name(), redact_url(self.url))
        self.library_checked_at = time.monotonic()

    async def delete_users(self, namespace: str, pool: str) -> int:
        return await acl.delete_users(self.redis, namespace, pool)

    async def memory(self) -> tuple[bool, tuple[int, int] | None]:
        """(reachable, (used_memory, maxmemory) of the fullest master, or None when INFO is not
        allowed to the admin user)."""
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                info = await self.redis.info("memory")
        except NoPermissionError:
            return True, None
        except (TimeoutError, RedisError, OSError):
            return False, None
        nodes = [info] if "used_memory" in info else [v for v in info.values() if isinstance(v, dict)]
        samples = [(int(n.get("used_memory", 0)), int(n.get("maxmemory", 0))) for n in nodes]
        # the node closest to its limit is the one that refuses writes first
        return True, max(samples, key=lambda s: s[0] / s[1] if s[1] else 0.0, default=None)

    async def close(self) -> None:
        await self.redis.aclose()


@dataclasses.dataclass(frozen=True)
class CredentialsRead:
    """What one tick read of a managed pool's credentials, for `plan_writes` to decide on."""

    held: Mapping[str, Credentials]  # per role, as the operator last applied them
    rotation: str  # the pool's rotate-credentials annotation
    # The Secrets as read, per role (None: the role has none yet); None: not read, `held` is current.
    secrets: Mapping[str, Credentials | None] | None = None
    # A new password per role, should `decide` need one (drawn while reading, so deciding is pure).
    fresh: Mapping[str, str] = dataclasses.field(default_factory=dict)
    recheck: bool = False  # the users were last applied CHECK_SECONDS ago: a restarted Redis lost them


@dataclasses.dataclass(frozen=True)
class CredentialsWrite:
    """One write of a role's credentials: its Redis user (ACL SETUSER) or its Secret."""

    role: str
    credentials: Credentials
    secret: bool = False  # the Secret; else the user
    change: str = ""  # a Secret's: created, rotating or rotated (logged)


def plan_writes(
    read: CredentialsRead, pods: Mapping[str, Mapping[str, Any]]
) -> tuple[tuple[CredentialsWrite, ...], Credentials | None]:
    """The users and Secrets to write, in order, and the worker credentials they leave (None: no
    worker Secret yet). A password is valid in Redis before a Secret names it, and leaves Redis only
    once no Secret names it; both roles rotate together, the worker pods tell when the previous
    passwords may go."""
    if read.secrets is None:
        writes = (
            tuple(CredentialsWrite(role, held) for role, held in read.held.items()) if read.recheck else ()
        )
        return writes, read.held.get(acl.WORKER)
    worker = read.secrets.get(acl.WORKER)
    rolled = worker is not None and old_pods_gone(pods, digest(worker))
    planned: list[CredentialsWrite] = []
    wanted_worker = None
    for role in acl.ROLES:
        current = read.secrets.get(role)
        fresh = read.fresh.get(role)
        wanted = decide(
            current, read.rotation, rolled, functools.partial(str, fresh) if fresh else new_password
        )
        adding = current is None or wanted.password != current.password
        if adding:
            planned.append(CredentialsWrite(role, wanted))
        if wanted != current:
            change = "created" if current is None else "rotating" if adding else "rotated"
            planned.append(CredentialsWrite(role, wanted, secret=True, change=change))
        if not adding:
            planned.append(CredentialsWrite(role, wanted))
        if role == acl.WORKER:
            wanted_worker = wanted
    return tuple(planned), wanted_worker


def credentials_failed(admin_url: str, exc: BaseException) -> Problem:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return Problem(
        reasons.QUEUE_CREDENTIALS_FAILED,
        f"spec.queue: cannot set up the pool's users on the operator's queue {redact_url(admin_url)}: {reason}",
    )


class PoolCredentials:
    """One managed pool's users and Secrets: read each tick (`read`), decided by `plan_writes`,
    written by the loop's act (`write`)."""

    def __init__(self, admin: QueueAdmin, kube: KubeApi, pool: builders.PoolRef):
        self.admin, self.kube, self.pool = admin, kube, pool
        self.held: dict[str, Credentials] = {}
        self.checked_at = 0.0

    @property
    def digest(self) -> str | None:
        """None until the worker Secret exists: workers are not started before it does."""
        worker = self.held.get(acl.WORKER)
        return digest(worker) if worker is not None else None

    def _needs_secrets(self, rotation: str, pods: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether to read (and maybe write) the Secrets: the first time, or a rotation to start or finish."""
        worker = self.held.get(acl.WORKER)
        if worker is None or len(self.held) < len(acl.ROLES):
            return True
        if worker.previous is not None:
            return old_pods_gone(pods, digest(worker))
        return worker.rotation != rotation

    async def read(self, rotation: str, pods: Mapping[str, Mapping[str, Any]]) -> CredentialsRead | Problem:
        """Reads only: the Secrets when they may need writing (an unchanged pool costs no API call),
        else what the operator holds; a Problem when a Secret is another's or cannot be read."""
        if not self._needs_secrets(rotation, pods):
            recheck = time.monotonic() - self.checked_at >= CHECK_SECONDS
            return CredentialsRead(dict(self.held), rotation, recheck=recheck)
        current: dict[str, Credentials | None] = {}
        try:
            for role in acl.ROLES:
                name = SECRET_NAMES[role](self.pool.name)
                secret = await self.kube.get(kinds.SECRET, self.pool.namespace, name)
                if secret is not None and not owned_by(secret, self.pool):
                    return Problem(
                        reasons.QUEUE_SECRET_TAKEN,
                        f'spec.queue: the pool keeps its queue URL in Secret "{name}", '
                        f"which exists and is not this pool's; rename or delete it",
                    )
                current[role] = read_secret(secret)
        except (RedisError, *connection.UNAVAILABLE) as exc:
            return credentials_failed(self.admin.url, exc)
        return CredentialsRead(
            dict(self.held), rotation, secrets=current, fresh={role: new_password() for role in acl.ROLES}
        )

    async def write(self, writes: tuple[CredentialsWrite, ...]) -> Problem | None:
        """Apply `writes` in order; a role's credentials are held once its last write is done.
        A Problem when the queue refuses (what is held then is what was written)."""
        if not writes:
            return None
        last = {write.role: index for index, write in enumerate(writes)}
        try:
            for index, write in enumerate(writes):
                if write.secret:
                    await self.kube.apply(
                        build_secret(self.pool, write.role, write.credentials, self.admin.url)
                    )
                    log.info(
                        "%s/%s: %s credentials %s",
                        self.pool.namespace,
                        self.pool.name,
                        write.role,
                        write.change,
                    )
                else:
                    await self._apply_user(write.role, write.credentials)
                if last[write.role] == index:
                    self.held[write.role] = write.credentials
        except (RedisError, *connection.UNAVAILABLE) as exc:
            return credentials_failed(self.admin.url, exc)
        self.checked_at = time.monotonic()
        return None

    async def _apply_user(self, role: str, credentials: Credentials) -> None:
        await self.admin.apply(acl.PoolUser(self.pool.namespace, self.pool.name, role, credentials.passwords))
