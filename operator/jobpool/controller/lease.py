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

import aiohttp

from .kube import KubeApi, KubeError

log = logging.getLogger("jobpool.operator")

# What a call to the API server can fail with that a later attempt may not.
API_FAILURES = (KubeError, OSError, asyncio.TimeoutError, aiohttp.ClientError)


def _micro_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    value = value.rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in value else "%Y-%m-%dT%H:%M:%S"
    return datetime.datetime.strptime(value, fmt).replace(tzinfo=datetime.timezone.utc)


def lease_is_free(spec: dict[str, Any], identity: str, now: datetime.datetime) -> bool:
    """Free when nobody holds it, we hold it, or the holder stopped renewing in time."""
    holder = spec.get("holderIdentity")
    if not holder or holder == identity:
        return True
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    duration = int(spec.get("leaseDurationSeconds") or 15)
    return renewed is None or now - renewed > datetime.timedelta(seconds=duration)


class LeaderLease:
    def __init__(self, kube: KubeApi, namespace: str, name: str, identity: str, *,
                 duration: int = 15, renew_every: float = 3.0):
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.duration, self.renew_every = duration, renew_every

    def _spec(self, now: datetime.datetime, previous: dict[str, Any]) -> dict[str, Any]:
        taking_over = previous.get("holderIdentity") != self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": _micro_time(now) if taking_over else previous.get("acquireTime", _micro_time(now)),
            "renewTime": _micro_time(now),
            "leaseTransitions": int(previous.get("leaseTransitions") or 0) + (1 if taking_over and previous else 0),
        }

    async def try_acquire(self) -> bool:
        now = datetime.datetime.now(datetime.timezone.utc)
        lease = await self.kube.get("coordination.k8s.io/v1", "Lease", self.namespace, self.name)
        try:
            if lease is None:
                await self.kube.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                        "metadata": {"name": self.name, "namespace": self.namespace},
                                        "spec": self._spec(now, {})})
                return True
            spec = lease.get("spec") or {}
            if not lease_is_free(spec, self.identity, now):
                return False
            lease["spec"] = self._spec(now, spec)
            await self.kube.replace(lease)
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
                    log.warning("cannot take the leader lease %s/%s yet, retrying: %s",
                                self.namespace, self.name, failure)
                    last_failure = failure
            await asyncio.sleep(retry_every)
        log.info("holding the leader lease %s/%s as %s", self.namespace, self.name, self.identity)

    async def keep(self, lost: asyncio.Event) -> None:
        """Renew until cancelled; set `lost` when renewal failed for a whole lease duration."""
        last_ok = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                if await self.try_acquire():
                    last_ok = asyncio.get_running_loop().time()
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
            if asyncio.get_running_loop().time() - last_ok > self.duration:
                log.error("the leader lease was not renewed for %ds; stopping", self.duration)
                lost.set()
                return

    async def release(self) -> None:
        """Let a waiting replica take over at once instead of after the lease expires."""
        try:
            lease = await self.kube.get("coordination.k8s.io/v1", "Lease", self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                await self.kube.replace(lease)
        except API_FAILURES as exc:
            log.warning("releasing the leader lease failed: %s: %s", type(exc).__name__, exc)
