"""The operator's pass over a pool's keys under the real operator: a forged worker registry is
cleared and a forged maximal stream id removed, each with an Event on the pool, while another
pool's ticks go on."""

import redis

from jobpool.controller import reasons
from jobpool.queue.keys import PoolKeys
from jobpool.queue.upkeep import MAX_WORKERS
from tests.e2e.operator_harness import apply, get, pool_manifest, unique
from tests.helpers import SyncQueue, wait_until

MAX_ID = "18446744073709551615-18446744073709551615"


def repaired_events(cluster, ns, pool):
    out = cluster.kubectl(
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        f"involvedObject.name={pool},reason={reasons.QUEUE_REPAIRED}",
        "-o",
        "jsonpath={.items[*].message}",
    ).stdout
    return out


def test_the_operator_clears_a_forged_registry_and_unwedges_a_stream_with_events(
    operator, jobpool_crds, kube_namespace, redis_server
):
    cluster, ns = jobpool_crds, kube_namespace
    forged, calm = unique("forged"), unique("calm")
    for name in (forged, calm):
        apply(cluster, ns, pool_manifest(name))
    wait_until(
        lambda: all(
            (get(cluster, ns, "jobpool", n) or {}).get("status", {}).get("queue") for n in (forged, calm)
        ),
        timeout=60,
        what="both pools' first ticks",
    )
    server = redis.Redis.from_url(redis_server.url)
    keys = PoolKeys(ns, forged)
    pipe = server.pipeline(transaction=False)
    for start in range(0, 2 * MAX_WORKERS, 5_000):
        pipe.hset(
            keys.workers,
            mapping={
                f"w{i}": '{"slots":1,"busy":1,"expiresAt":9999999999}' for i in range(start, start + 5_000)
            },
        )
    pipe.xadd(keys.stream, {"id": "wedge", "p": "{}"}, id=MAX_ID)
    pipe.execute()
    said = wait_until(
        lambda: (
            (e := repaired_events(cluster, ns, forged))
            and "ids the queue never makes" in e
            and "worker registry" in e
            and e
        ),
        timeout=30,
        what="the QueueRepaired Events",
    )
    assert f"{2 * MAX_WORKERS} entries" in said
    assert server.hlen(keys.workers) == 0
    queue = SyncQueue(redis_server.url, ns, forged)
    try:
        assert queue.submit_many([{"n": 1}])  # submits work again
    finally:
        queue.close()
    assert "QueueRepaired" in operator.logs() or "queue repaired" in operator.logs()
    assert repaired_events(cluster, ns, calm) == ""
