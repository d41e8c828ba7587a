"""The per-pool loop keeps ticking through failures, against a real HTTP peer standing in for the
API server (it drops connections on request) and a real `PoolController`."""

import asyncio
import json

import pytest
from kubernetes import client as k8s_client

from jobpool.controller import kinds, reasons
from jobpool.controller.credentials import CredentialsRead, digest as credential_digest
from jobpool.controller.kube import NO_RESPONSE, KubeApi, KubeError
from jobpool.controller.lease import LeaderLease
from jobpool.controller.metrics import OperatorMetrics
from jobpool.controller.plan import plan
from jobpool.controller.problems import Problem
from jobpool.controller.reconcile import (
    POD_PATCHES_IN_FLIGHT,
    OperatorConfig,
    OperatorContext,
    PoolController,
)
from jobpool.queue import QueueStats, acl
from jobpool.queue.base import WorkerInfo
from tests.helpers import wait_until
from tests.unit.controller.test_plan import gathered, pods_of

POOL_BODY = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u", "generation": 1},
    "spec": {"worker": {"image": "registry.example/worker:1", "handler": "tasks:square"}},
}


class ApiPeer:
    """A minimal HTTP/1.1 server: closes the first `drop` connections without a reply, then
    answers every request with `{}` after `delay` seconds, recording its method and path and how
    many requests it held at once."""

    def __init__(self, drop: int, delay: float = 0.0):
        self.drop = drop
        self.delay = delay
        self.requests: list[tuple[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                length = next(
                    (
                        int(line.split(":", 1)[1])
                        for line in lines
                        if line.lower().startswith("content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                if self.drop > 0:
                    self.drop -= 1
                    writer.close()
                    return
                method, path, _ = lines[0].split(" ", 2)
                self.requests.append((method, path.split("?")[0]))
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                await asyncio.sleep(self.delay)
                self.in_flight -= 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def kube_api(host: str) -> KubeApi:
    configuration = k8s_client.Configuration()
    configuration.host = host
    return KubeApi(configuration)


def context(kube: KubeApi, post_event=lambda *_: None) -> OperatorContext:
    return OperatorContext(
        kube,
        OperatorConfig(default_queue=None, poll_interval=0.02),
        OperatorMetrics(),
        open_queue=lambda *_: pytest.fail("no queue is configured"),
        post_event=post_event,
    )


def test_a_dropped_connection_is_a_kube_error():
    async def scenario() -> None:
        peer = ApiPeer(drop=1)
        kube = kube_api(await peer.start())
        try:
            with pytest.raises(KubeError) as raised:  # a PATCH is not retried by aiohttp itself
                await kube.merge_patch(kinds.POD, "ns", "p", {"metadata": {}})
            assert raised.value.status == NO_RESPONSE
            assert "ServerDisconnectedError" in str(raised.value)
            assert await kube.get(kinds.SECRET, "ns", "s") == {}
        finally:
            await kube.close()
            await peer.stop()

    asyncio.run(scenario())


def test_the_loop_keeps_ticking_through_a_lost_connection_and_an_unexpected_error(caplog):
    async def scenario() -> None:
        peer = ApiPeer(drop=1)
        kube = kube_api(await peer.start())
        events: list[str] = []

        def post_event(_body, _type, reason, _message) -> None:
            events.append(reason)
            if len(events) == 1:
                raise RuntimeError("event sink broke")

        ctx = context(kube, post_event)
        metrics = ctx.metrics
        controller = PoolController(ctx, "p", "ns", "u")

        class Stopped:
            flag = False

            def __bool__(self) -> bool:
                return self.flag

        stopped = Stopped()

        def ticks() -> float:
            return (
                metrics.registry.get_sample_value(
                    "jobpool_reconcile_seconds_count", {"namespace": "ns", "pool": "p"}
                )
                or 0.0
            )

        loop = asyncio.create_task(controller.run(json.loads(json.dumps(POOL_BODY)), stopped))
        try:
            # tick 1: the status write's connection is dropped; tick 2: written, then the event fails
            # polled from a thread, so the loop under test runs on meanwhile
            await asyncio.to_thread(wait_until, lambda: len(events) >= 1 or loop.done(), 10, 0.02, "an event")
            await asyncio.to_thread(wait_until, lambda: ticks() >= 5 or loop.done(), 10, 0.02, "five ticks")
            assert not loop.done(), loop.exception()
            status_path = "/apis/jobpool.dev/v1alpha1/namespaces/ns/jobpools/p/status"
            assert ("PATCH", status_path) in peer.requests
        finally:
            stopped.flag = True
            await asyncio.wait_for(loop, 5)
            await kube.close()
            await peer.stop()

    asyncio.run(scenario())
    logged = caplog.text
    assert "ServerDisconnectedError" in logged and "RuntimeError: event sink broke" in logged
    assert "Traceback" in logged


def test_deletion_costs_are_patched_concurrently_within_a_bound():
    async def scenario() -> None:
        peer = ApiPeer(drop=0, delay=0.1)
        kube = kube_api(await peer.start())
        try:
            controller = PoolController(context(kube), "p", "ns", "u")
            busy = tuple(
                WorkerInfo(f"p-workers-{index}", 8, 4, 0.0) for index in range(3 * POD_PATCHES_IN_FLIGHT)
            )
            tick = gathered(stats=QueueStats(workers=busy), pods=pods_of(busy))
            await controller.act(json.loads(json.dumps(POOL_BODY)), tick, plan(tick))
            patched = [path for method, path in peer.requests if method == "PATCH" and "/pods/" in path]
            assert len(patched) == len(busy)
            assert peer.most_in_flight == POD_PATCHES_IN_FLIGHT
        finally:
            await kube.close()
            await peer.stop()

    asyncio.run(scenario())


def test_a_leader_whose_renewal_hangs_stops_at_the_renew_deadline_before_the_lease_expires():
    async def scenario() -> None:
        peer = ApiPeer(drop=0, delay=30.0)  # an API server that accepts the renewal and never answers
        kube = kube_api(await peer.start())
        lease = LeaderLease(
            kube, "ns", "jobpool-operator", "me", duration=3, renew_deadline=1.0, renew_every=0.2
        )
        lost = asyncio.Event()
        loop = asyncio.get_running_loop()
        started = loop.time()
        keeper = asyncio.create_task(lease.keep(lost))
        try:
            await asyncio.wait_for(lost.wait(), lease.duration + 5)
            # A standby waits a whole duration after the last renewal it saw: no two leaders.
            assert loop.time() - started < lease.duration
        finally:
            keeper.cancel()
            await kube.close()
            await peer.stop()

    asyncio.run(scenario())


class RecordingKube:
    """Records the writes of act, in order."""

    def __init__(self, order: list[str]) -> None:
        self.order = order

    async def apply(self, obj):
        self.order.append(f"apply {obj['kind']}")
        return None

    async def merge_patch(self, kind, namespace, name, patch, subresource=None):
        self.order.append(f"patch {kind.kind}{'/' + subresource if subresource else ''}")
        return None

    async def delete(self, kind, namespace, name):
        self.order.append(f"delete {kind.kind}")


class RecordingCredentials:
    def __init__(self, order: list[str], fails: bool) -> None:
        self.order, self.fails, self.digest = order, fails, None

    async def write(self, writes):
        self.order.append(f"credentials {len(writes)}")
        if self.fails:
            return Problem(reasons.QUEUE_CREDENTIALS_FAILED, "spec.queue: cannot set up the pool's users")
        self.digest = credential_digest(next(w.credentials for w in reversed(writes) if w.role == acl.WORKER))
        return None


@pytest.mark.parametrize("fails", [False, True])
def test_act_writes_the_queue_settings_and_credentials_before_the_deployment_that_needs_them(fails):
    order: list[str] = []
    events: list[str] = []
    ctx = context(RecordingKube(order), post_event=lambda _b, _t, reason, _m: events.append(reason))  # type: ignore[arg-type]
    controller = PoolController(ctx, "p", "ns", "u")
    controller.credentials = RecordingCredentials(order, fails)  # type: ignore[assignment]

    async def configure(_spec, settings):
        order.append("configure")

    controller.queue.configure = configure  # type: ignore[method-assign]
    read = CredentialsRead(
        {}, "", secrets={acl.WORKER: None, acl.PRODUCER: None}, fresh={acl.WORKER: "w", acl.PRODUCER: "p"}
    )
    tick = gathered(managed=True, queue_open=True, credentials_read=read)
    decided = plan(tick)
    assert decided.configure is not None and len(decided.credentials) == 4
    acted = asyncio.run(controller.act(json.loads(json.dumps(POOL_BODY)), tick, decided))
    assert order[:2] == ["configure", "credentials 4"]
    if not fails:
        assert acted is decided and "apply Deployment" in order[2:]
        return
    # the failure is said in this tick's status, decided again with it: no worker object is applied
    assert acted.credentials == () and acted.apply == ()
    assert not any(step.startswith("apply") for step in order)
    assert order[2:] == ["patch JobPool/status"]
    assert reasons.QUEUE_CREDENTIALS_FAILED in {c.get("reason") for c in acted.status["conditions"]}
    assert controller.memory == acted.memory


@pytest.mark.parametrize("status", [404, 500])
def test_a_status_not_written_leaves_the_last_written_status_in_memory(status):
    class StatusFails(RecordingKube):
        async def merge_patch(self, kind, namespace, name, patch, subresource=None):
            if subresource == "status":
                raise KubeError(status, "no")
            return None

    controller = PoolController(context(StatusFails([])), "p", "ns", "u")  # type: ignore[arg-type]
    tick = gathered()
    decided = plan(tick)
    assert decided.status is not None and decided.memory.status is not None

    async def scenario():
        if status == 404:  # the pool is gone: nothing to retry
            await controller.act(json.loads(json.dumps(POOL_BODY)), tick, decided)
        else:
            with pytest.raises(KubeError):
                await controller.act(json.loads(json.dumps(POOL_BODY)), tick, decided)

    asyncio.run(scenario())
    assert controller.memory.status is None and controller.memory.status_written_at == 0.0
    assert (
        controller.memory.decided == decided.memory.decided
        and controller.memory.batch == decided.memory.batch
    )
