"""One active operator: a coordination.k8s.io Lease, as Kubernetes' own controllers use.

A second replica waits in `acquire()` until the holder stops renewing (or releases the
lease on a clean shutdown), then takes over. API errors while waiting (RBAC not yet in
effect after an install, a 429 or a timeout on a loaded API server) are retried, as
client-go's leader election does, instead of ending the process.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from . import kinds
from .kube import API_FAILURES, KubeApi, KubeError

log = logging.getLogger("jobpool.operator")


def _micro_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_is_free(spec: dict[str, Any], identity: str, unchanged_for: float) -> bool:
    """Free when nobody holds it, we hold it, or the holder's record has not changed for a whole
    lease duration, timed by our own clock (`unchanged_for`), so clock skew between nodes cannot
    make a live holder look expired."""
    holder = spec.get("holderIdentity")
    if not holder or holder == identity:
        return True
    return unchanged_for > int(spec.get("leaseDurationSeconds") or 15)


class LeaseObserver:
    """Since when (local monotonic seconds) the lease record has looked the same to us."""

    def __init__(self) -> None:
        self._record: tuple[Any, ...] | None = None
        self._since = 0.0

    def unchanged_for(self, spec: dict[str, Any], now: float) -> float:
        record = tuple(
            spec.get(key) for key in ("holderIdentity", "renewTime", "acquireTime", "leaseTransitions")
        )
        if record != self._record:
            self._record, self._since = record, now
        return now - self._since


class LeaderLease:
    def __init__(
        self,
        kube: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration: int = 15,
        renew_deadline: float = 10.0,
        renew_every: float = 2.0,
    ):
        # As client-go: the holder stops once it could not renew for `renew_deadline`, well before
        # a standby (which waits `duration` after it last saw the lease change) may take over.
        if not renew_every < renew_deadline < duration:
            raise ValueError("the leader lease needs renew_every < renew_deadline < duration")
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.duration, self.renew_deadline, self.renew_every = duration, renew_deadline, renew_every
        self.observer = LeaseObserver()
        self.renewed_at: float | None = None  # loop time of the last write that kept the lease ours

    def _spec(self, now: datetime.datetime, previous: dict[str, Any]) -> dict[str, Any]:
        taking_over = previous.get("holderIdentity") != self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": _micro_time(now) if taking_over else previous.get("acquireTime", _micro_time(now)),
            "renewTime": _micro_time(now),
            "leaseTransitions": int(previous.get("leaseTransitions") or 0)
            + (1 if taking_over and previous else 0),
        }

    async def try_acquire(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        lease = await self.kube.get(kinds.LEASE, self.namespace, self.name)
        try:
            if lease is None:
                await self.kube.create(
                    {
                        "apiVersion": kinds.LEASE.api_version,
                        "kind": kinds.LEASE.kind,
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": self._spec(now, {}),
                    }
                )
                self.renewed_at = asyncio.get_running_loop().time()
                return True
            spec = lease.get("spec") or {}
            unchanged_for = self.observer.unchanged_for(spec, asyncio.get_running_loop().time())
            if not lease_is_free(spec, self.identity, unchanged_for):
                return False
            lease["spec"] = self._spec(now, spec)
            await self.kube.replace(lease)
            self.renewed_at = asyncio.get_running_loop().time()
            return True
        except KubeError as exc:
            if exc.status == 409:  # another replica won the race
                return False
            raise

    async def acquire(self, retry_every: float = 1.0) -> None:
        announced = False
        last_failure = ""
        while True:
            try:
                if await self.try_acquire():
                    break
                if not announced:
                    log.info("waiting for the leader lease %s/%s", self.namespace, self.name)
                    announced = True
            except API_FAILURES as exc:
                failure = f"{type(exc).__name__}: {exc}"
                if failure != last_failure:  # once per distinct failure, not every second
                    log.warning(
                        "cannot take the leader lease %s/%s yet, retrying: %s",
                        self.namespace,
                        self.name,
                        failure,
                    )
                    last_failure = failure
            await asyncio.sleep(retry_every)
        log.info("holding the leader lease %s/%s as %s", self.namespace, self.name, self.identity)

    async def keep(self, lost: asyncio.Event) -> None:
        """Renew until cancelled; set `lost` once no renewal succeeded within the renew deadline."""
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        while True:
            await asyncio.sleep(self.renew_every)
            attempt = loop.time()
            left = self.renew_deadline - (attempt - last_ok)
            try:
                # A renewal that hangs must not keep us leading past the deadline.
                async with asyncio.timeout(left):
                    renewed = await self.try_acquire()
                if renewed:
                    last_ok = attempt  # the standby saw this write no earlier than it was sent
                    continue
                log.error("the leader lease was taken over; stopping")
                lost.set()
                return
            except API_FAILURES as exc:
                log.warning("renewing the leader lease failed: %s: %s", type(exc).__name__, exc)
            except Exception:  # a keeper that died silently would leave two active operators
                log.exception("renewing the leader lease failed unexpectedly; stopping")
                lost.set()
                return
            if loop.time() - last_ok >= self.renew_deadline:
                log.error("the leader lease was not renewed for %.0fs; stopping", self.renew_deadline)
                lost.set()
                return

    async def release(self) -> None:
        """Let a waiting replica take over at once instead of after the lease expires."""
        try:
            lease = await self.kube.get(kinds.LEASE, self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                await self.kube.replace(lease)
        except API_FAILURES as exc:
            log.warning("releasing the leader lease failed: %s: %s", type(exc).__name__, exc)
