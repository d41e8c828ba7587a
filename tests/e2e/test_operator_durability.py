"""spec.queue.durability reaches the queue's config, where every submitter and worker reads it."""

import jobpool
from jobpool.queue import QueueUnavailable
from tests.e2e.operator_harness import apply, pool_manifest, unique
from tests.helpers import wait_until


def test_replicated_durability_makes_submits_wait_for_a_replica(
    operator, jobpool_crds, kube_namespace, redis_server
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("durable")
    apply(cluster, ns, pool_manifest(name, queue={"durability": "replicated"}))
    with jobpool.Client(redis_server.url, ns, name) as client:

        def waits_for_a_replica() -> bool:  # the session Redis has none: no submit is acknowledged
            try:
                client.submit({"n": 1}, id="probe")
            except QueueUnavailable as exc:
                return "no replica confirmed" in str(exc)
            return False

        wait_until(waits_for_a_replica, timeout=30, what="submits waiting for a replica")
