"""A Redis failover under the real operator: `jobpool operator --admin-queue <Sentinel or Cluster
URL>` on the local control plane, a pool with `spec.queue.durability: replicated` on its own
users, two real `jobpool worker` processes holding the pool's worker Secret, and the master
killed (SIGKILL) while a batch runs. Its replica is promoted; the pool's users work there, the
operator reconnects and its status counts every job; nothing acknowledged is lost. Until the
killed node is back as a replica, no write is acknowledged (replicated durability needs one).

The Redis topologies are the session's (tests/fixtures/redis_ha.py): the killed node is started
again as a replica, so the next test finds the topology whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_lib

from jobpool import Client
from jobpool.queue import QueueUnavailable, acl
from jobpool.queue.keys import PoolKeys
from tests.e2e.operator_harness import apply, get, pool_manifest, start_operator
from tests.e2e.test_operator_credentials import ready, secret_values
from tests.fixtures.redis_ha import Node
from tests.helpers import WorkerProcess, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

BATCH = 600  # jobs submitted before the failover, 50 ms each on 2 workers x 4 slots
AFTER = 100  # jobs submitted after the failover (the first one refused until a replica is back)


@dataclasses.dataclass
class Topology:
    """One session Redis topology as this test drives it."""

    url: str
    fail_over: Callable[[str], tuple[Node, Node]]  # the master of a key killed -> (killed, promoted)
    rejoin: Callable[[Node], None]
    client: Callable[[Node], redis_lib.Redis]  # with the servers' own credentials


def _sentinel(group) -> Topology:
    def fail_over(key: str) -> tuple[Node, Node]:
        killed = group.current_master()
        return killed, group.fail_over()

    return Topology(group.url, fail_over, group.rejoin, group._client)


def _cluster(nodes) -> Topology:
    def fail_over(key: str) -> tuple[Node, Node]:
        killed = nodes.master_of(key)
        return killed, nodes.fail_over(killed)

    return Topology(nodes.url, fail_over, nodes.rejoin, lambda node: node.client())


@pytest.fixture(params=["sentinel", "cluster"])
def topology(request) -> Topology:
    if request.param == "sentinel":
        return _sentinel(request.getfixturevalue("redis_sentinel"))
    return _cluster(request.getfixturevalue("redis_cluster"))


def _submit_or_none(producer: Client, payloads: list[Any], ids: list[str]) -> list[str] | None:
    """Acknowledged ids, or None while the queue is failing over (a retry with the ids is safe)."""
    try:
        return producer.submit_many(payloads, ids)
    except QueueUnavailable:
        return None


def _users_on(topology: Topology, node: Node, ns: str, pool: str) -> bool:
    names = {acl.user_name(ns, pool, role) for role in acl.ROLES}
    return names <= set(topology.client(node).acl_users())


def _status(cluster, ns: str, pool: str) -> dict[str, Any]:
    return (get(cluster, ns, "jobpool", pool) or {}).get("status") or {}


def test_a_failover_under_the_operator_loses_no_job_and_the_pool_works_on(
    topology, jobpool_crds, kube_namespace, tmp_path
):
    cluster, ns, pool = jobpool_crds, kube_namespace, "failover"
    operator = start_operator(
        cluster, ns, None, tmp_path / "operator.log", extra_args=("--admin-queue", topology.url)
    )
    workers: list[WorkerProcess] = []
    killed = None
    try:
        apply(cluster, ns, pool_manifest(pool, parallelism=2, queue={"durability": "replicated"}))
        wait_until(lambda: ready(cluster, ns, pool), timeout=60, what="the pool Ready on its own users")
        urls = {
            role: secret_values(cluster, ns, name)["url"]
            for role, name in ((acl.WORKER, f"{pool}-queue"), (acl.PRODUCER, f"{pool}-queue-producer"))
        }
        assert all(url.startswith(topology.url.split("://")[0] + "://jobpool.") for url in urls.values())
        workers = [
            WorkerProcess(
                urls[acl.WORKER],
                ns,
                pool,
                "tests.integration.handlers:sleepy",
                concurrency=4,
                visibility_timeout=2,
                drain_seconds=5,
                log_path=tmp_path / f"worker{i}.log",
                env={"JOBPOOL_TEST_LOG": str(tmp_path / "jobs.log")},
            )
            for i in range(2)
        ]
        with Client(urls[acl.PRODUCER], ns, pool) as producer:
            batch = producer.submit_many(
                [{"seconds": 0.05, "n": n} for n in range(BATCH)], [f"batch-{n}" for n in range(BATCH)]
            )
            wait_until(lambda: 50 <= producer.status().succeeded < BATCH - 200, what="the batch running")
            killed, promoted = topology.fail_over(PoolKeys(ns, pool).stream)
            assert promoted is not killed
            # ACL users are not replicated: the operator had set them on the replica beforehand
            assert _users_on(topology, promoted, ns, pool)
            after_ids = [f"after-{n}" for n in range(BATCH, BATCH + AFTER)]
            after_jobs = [{"seconds": 0, "n": n} for n in range(BATCH, BATCH + AFTER)]
            # The promoted master has no replica until the killed node is back: nothing is acknowledged
            with pytest.raises(QueueUnavailable, match="no replica confirmed"):
                producer.submit_many(after_jobs[:1], after_ids[:1])
            topology.rejoin(killed)
            # ... and the operator gives the rejoined node the users again (a restart loses them)
            wait_until(
                lambda: _users_on(topology, killed, ns, pool),
                timeout=30,
                what="the pool's users re-applied on the rejoined node",
            )
            # the refused job sent again with its id is the same job
            after = wait_until(
                lambda: _submit_or_none(producer, after_jobs, after_ids),
                timeout=30,
                what="a submit after the failover",
            )
            total = BATCH + AFTER
            wait_until(
                lambda: (stats := producer.status()).succeeded >= total and stats.backlog == 0,
                timeout=60,
                what="every job done",
            )
            done = [producer.result(job_id) for job_id in batch + after]
        assert [r.result if r else None for r in done] == list(range(BATCH + AFTER)), "a job has no result"
        assert all(worker.alive() for worker in workers)

        # The operator reconnected: its status counts every job exactly once, and the pool is Ready.
        wait_until(
            lambda: _status(cluster, ns, pool).get("jobs", {}).get("succeeded") == total,
            timeout=30,
            what=f"status.jobs.succeeded to reach {total}",
        )
        status = _status(cluster, ns, pool)
        assert status["jobs"] == {
            "submitted": total,
            "succeeded": total,
            "retried": 0,
            "deadLettered": 0,
            "permanent": 0,
            "cancelled": 0,
        }
        wait_until(lambda: ready(cluster, ns, pool), timeout=30, what="the pool Ready after the failover")
        assert operator.alive()
    finally:
        for worker in workers:
            worker.stop()
            print(f"---- {worker.log_path.name} (tail) ----\n" + worker.log()[-3000:])
        if killed is not None:
            topology.rejoin(killed)
        print(f"---- the pool's status ----\n{_status(cluster, ns, pool)}")
        cluster.kubectl("delete", "jobpools", "--all", "-n", ns, "--timeout=60s", check=False)
        operator.stop()
        print("---- operator log (tail) ----\n" + operator.logs()[-6000:])
