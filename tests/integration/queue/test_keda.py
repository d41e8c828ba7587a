"""What KEDA's redis-streams scaler reads, checked against the pool through a real batch.

examples/05-keda/scaledobject.yaml scales a JobPool on its stream's length. At several moments
of a batch run by real workers, the workers are paused (SIGSTOP) so that Redis holds still, and
what the scaler's modes read (XLEN; XPENDING and XINFO GROUPS lag of the group) is compared with
`jobpool status --output json`: the length is waiting + in-flight, the group's pending count is
in-flight, the lag (when Redis can tell it) is waiting, and delayed retries are in none of them."""

import json
import signal
import subprocess
import sys
import time

import redis
import yaml

from jobpool.queue.keys import GROUP, PoolKeys
from tests.helpers import ROOT

EXAMPLE = ROOT / "examples/05-keda/scaledobject.yaml"


def scaled_object() -> dict:
    (scaled,) = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == "ScaledObject"]
    return scaled


def test_the_example_scales_the_jobpool_on_its_pools_stream():
    scaled = scaled_object()
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("jobpool.dev/v1alpha1", "JobPool")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-streams"
    assert trigger["metadata"]["stream"] == PoolKeys(scaled["metadata"]["namespace"], target["name"]).stream
    assert "consumerGroup" not in trigger["metadata"] and int(trigger["metadata"]["streamLength"]) > 0


def keda_readings(client: redis.Redis, stream: str) -> dict:
    (group,) = [g for g in client.xinfo_groups(stream) if g["name"] == GROUP]
    return {
        "length": client.xlen(stream),
        "pending": int(client.xpending(stream, GROUP)["pending"]),
        "lag": group["lag"],
    }


def jobpool_status(url: str, namespace: str, pool: str) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobpool.cli",
            "status",
            pool,
            "--queue",
            url,
            "--namespace",
            namespace,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    ).stdout
    return json.loads(out)


def test_what_keda_reads_equals_the_pools_waiting_and_in_flight_through_a_batch(
    redis_server, pool_name, spawn_worker, queue
):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    stream = PoolKeys("it", pool_name).stream
    # 160 jobs of 0.1-0.3 s on 2 x 4 slots, and 10 that fail and then wait 60 s for their retry
    queue.submit_many([{"n": n, "seconds": 0.1 + (n % 3) * 0.1} for n in range(160)] + ["fail"] * 10)
    workers = [
        spawn_worker(
            handler="tests.integration.handlers:sleepy_or_fail", concurrency=4, backoff=60, max_backoff=60
        )
        for _ in range(2)
    ]
    samples = []
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            for worker in workers:
                worker.send(signal.SIGSTOP)
            try:
                keda = keda_readings(client, stream)
                status = jobpool_status(redis_server.url, "it", pool_name)
            finally:
                for worker in workers:
                    worker.send(signal.SIGCONT)
            samples.append((keda, status))
            assert keda["length"] == status["waiting"] + status["inFlight"], samples[-1]
            assert keda["pending"] == status["inFlight"], samples[-1]
            assert keda["lag"] is None or keda["lag"] == status["waiting"], samples[-1]
            if status["succeeded"] == 160 and status["delayed"] == 10 and not status["inFlight"]:
                break
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.send(signal.SIGCONT)
    keda, status = samples[-1]
    assert status["succeeded"] == 160, f"the batch did not finish in time: {samples[-1]}"
    assert [s for s in samples if s[1]["waiting"] and s[1]["inFlight"]], f"no busy sample: {samples[:3]}"
    # the failed jobs wait for their retry: jobpool counts them, none of KEDA's readings does
    assert status["delayed"] == 10 and (keda["length"], keda["pending"]) == (0, 0)
    unknown_lag = sum(1 for k, s in samples if k["lag"] is None and s["waiting"])
    print(f"{len(samples)} samples; Redis could not tell the lag in {unknown_lag} with jobs waiting")


def test_redis_cannot_tell_the_lag_after_an_out_of_order_ack_so_the_example_uses_the_length(
    queue, redis_server
):
    """Why the example does not use the lag trigger: one job finished before an earlier one
    leaves a hole in the stream, and Redis stops knowing the group's lag while jobs wait."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    queue.submit_many([1, 2, 3])
    _first, second = queue.fetch("w1", 2, 10)
    queue.ack_many([(second, None)])
    keda = keda_readings(client, queue.keys.stream)
    assert queue.stats().waiting == 1 and keda["lag"] is None
    assert keda["length"] == 2 == queue.stats().waiting + queue.stats().in_flight


def test_keda_reads_the_stream_length_as_the_pools_own_producer_user(redis_server, pool_name, queue):
    """The example's TriggerAuthentication: the pool's submit-only user (its Secret
    <pool>-queue-producer), not the superuser; XLEN of its own stream is allowed, another
    pool's is not."""
    import asyncio

    import redis.asyncio as aioredis

    from jobpool.queue import acl

    scaled = scaled_object()
    (auth,) = [
        d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == "TriggerAuthentication"
    ]
    pool = scaled["spec"]["scaleTargetRef"]["name"]
    assert {(r["parameter"], r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]} == {
        ("username", f"{pool}-queue-producer", "username"),
        ("password", f"{pool}-queue-producer", "password"),
    }
    assert scaled["spec"]["triggers"][0]["authenticationRef"]["name"] == auth["metadata"]["name"]

    async def apply_producer():
        admin = aioredis.from_url(redis_server.url)
        try:
            await acl.apply_user(admin, acl.PoolUser("it", pool_name, acl.PRODUCER, ("keda-pw",)))
        finally:
            await admin.aclose()

    asyncio.run(apply_producer())
    queue.submit_many(["a", "b", "c"])
    host = redis_server.url.split("://", 1)[1]
    keda = redis.Redis.from_url(f"redis://{acl.user_name('it', pool_name, acl.PRODUCER)}:keda-pw@{host}")
    try:
        assert keda.xlen(PoolKeys("it", pool_name).stream) == 3
        try:
            keda.xlen(PoolKeys("it", "other-pool").stream)
            raise AssertionError("another pool's stream was readable")
        except redis.exceptions.NoPermissionError:
            pass
    finally:
        keda.close()
        redis.Redis.from_url(redis_server.url).execute_command(
            "ACL", "DELUSER", acl.user_name("it", pool_name, acl.PRODUCER)
        )
