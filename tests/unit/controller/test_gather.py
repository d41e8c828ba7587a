"""gather reads and writes nothing: the queue's settings and a managed pool's users and Secrets
are written by act, as the plan says, before the Deployment that mounts them."""

import asyncio
import json

from jobpool.controller.metrics import OperatorMetrics
from jobpool.controller.plan import plan, queue_settings
from jobpool.controller.reconcile import OperatorConfig, OperatorContext, PoolController
from jobpool.queue import QueueStats, acl

QUEUE = "redis://q:6379/0"
BODY = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u", "generation": 1},
    "spec": {"worker": {"image": "registry.example/worker:1", "handler": "tasks:square"}},
}


Writes = list  # what was written, in order


class FakeQueue:
    def __init__(self, writes: Writes) -> None:
        self.writes = writes

    async def configure(self, **settings):
        self.writes.append(("configure", tuple(sorted(settings))))

    async def upkeep(self, full):
        return []

    async def stats(self):
        return QueueStats()

    async def close(self):
        pass


class FakeKube:
    def __init__(self, writes: Writes) -> None:
        self.writes = writes

    async def get(self, kind, namespace, name):
        return None

    async def apply(self, obj):
        self.writes.append(("apply", obj["kind"], obj["metadata"]["name"]))
        return None

    async def merge_patch(self, kind, namespace, name, patch, subresource=None):
        self.writes.append(("patch", kind.kind))
        return None

    async def delete(self, kind, namespace, name):
        self.writes.append(("delete", kind.kind))


class FakeAdmin:
    url = QUEUE

    def __init__(self, writes: Writes) -> None:
        self.writes = writes

    async def apply(self, user):
        self.writes.append(("acl setuser", user.role))


def test_gather_writes_nothing_and_act_writes_settings_then_credentials_then_workers():
    writes: Writes = []
    ctx = OperatorContext(
        FakeKube(writes),  # type: ignore[arg-type]
        OperatorConfig(default_queue=QUEUE),
        OperatorMetrics(),
        open_queue=lambda *_: FakeQueue(writes),  # type: ignore[arg-type,return-value]
        post_event=lambda *_: None,
        admin=FakeAdmin(writes),  # type: ignore[arg-type]
    )
    controller = PoolController(ctx, "p", "ns", "u")
    body = json.loads(json.dumps(BODY))

    async def scenario():
        gathered = await controller.gather(body)
        assert writes == [], "gather only reads"
        assert gathered.queue_open and gathered.problem is None and gathered.managed
        assert gathered.credentials_read is not None
        assert gathered.credentials_read.secrets == {acl.WORKER: None, acl.PRODUCER: None}
        decided = plan(gathered)
        assert decided.configure == queue_settings(gathered.spec)
        await controller.act(body, gathered, decided)
        assert ctx.queue_url("u") == QUEUE  # for the finalizer
        await controller.close()

    asyncio.run(scenario())
    steps = [w[0] if w[0] != "apply" else f"apply {w[1]}" for w in writes]
    assert steps[:5] == ["configure", "acl setuser", "apply Secret", "acl setuser", "apply Secret"]
    assert steps.index("apply Deployment") > 4
    assert controller.credentials is not None and controller.credentials.digest is not None
