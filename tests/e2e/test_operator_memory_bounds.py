"""The memory settings of a JobPool reach where they act: the payload limit the queue's config
(every submitter's script reads it), retention and the dead-letter cap the workers' env."""

import pytest

import jobpool
from jobpool.queue import PayloadTooLarge
from tests.e2e.operator_harness import apply, get, pool_manifest, unique
from tests.helpers import wait_until


def test_pool_memory_settings_reach_the_queue_and_the_worker_env(
    operator, jobpool_crds, kube_namespace, redis_server
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("bounded")
    apply(
        cluster,
        ns,
        pool_manifest(
            name,
            queue={"maxPayloadBytes": 100},
            results={"ttlSeconds": 600, "maxCount": 5000},
            deadLetter={"maxLength": 70},
        ),
    )
    deployment = wait_until(
        lambda: get(cluster, ns, "deployment", f"{name}-workers"), what="the worker Deployment"
    )
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["JOBPOOL_RESULT_TTL"], env["JOBPOOL_MAX_RESULTS"], env["JOBPOOL_MAX_DEAD_LETTERS"]) == (
        "600",
        "5000",
        "70",
    )
    with jobpool.Client(redis_server.url, ns, name) as client:

        def refused() -> bool:
            try:
                client.submit_many(["x" * 120], ["probe"])
            except PayloadTooLarge as exc:
                return "limit of 100 bytes" in str(exc)
            return False

        # until the operator has written the limit, the probe may go in under the default one
        wait_until(refused, what="the pool's maxPayloadBytes enforced by the queue")
        with pytest.raises(PayloadTooLarge, match="job 1: the payload is 202 bytes"):
            client.submit_many([1, "y" * 200])
        assert len(client.submit_many(["z" * 90])) == 1
