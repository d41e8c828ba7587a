"""Batch pools: spec.jobs fed once with stable ids, across an operator restart and a queue
change; Complete; few status writes; large batches; and the finalizer leaves nothing of the
pool in Redis."""

import asyncio
import json
import re
import signal
import subprocess

import redis as redis_lib

from jobpool.queue import open_queue
from tests.e2e.operator_harness import apply, condition, get, pool_manifest, start_operator, unique
from tests.helpers import WorkerProcess, wait_until


def pool_keys(redis_url, ns, name):
    client = redis_lib.Redis.from_url(redis_url)
    try:
        return [
            k for k in client.scan_iter(match="*", count=1000) if f"{{jobpool:{ns}/{name}}}".encode() in k
        ]
    finally:
        client.close()


def test_batch_survives_an_operator_restart_without_double_feeding(
    operator, jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("batch")
    # maxLength 10 and no worker yet: feeding stops after the first chunks.
    apply(
        cluster,
        ns,
        pool_manifest(name, jobs={"range": {"start": 100, "count": 100}}, queue={"maxLength": 10}),
    )
    pool = wait_until(
        lambda: (
            (p := get(cluster, ns, "jobpool", name))
            and (p.get("status") or {}).get("batch", {}).get("fed", 0) >= 10
            and p
        ),
        timeout=30,
        what="the first chunk fed",
    )
    fed_before = pool["status"]["batch"]["fed"]
    assert fed_before < 100 and condition(pool, "Complete")["status"] == "False"

    operator.stop(signal.SIGKILL)
    restarted = start_operator(cluster, ns, redis_server.url, tmp_path / "operator-2.log")
    worker = WorkerProcess(redis_server.url, ns, name, "tasks:square", concurrency=4, drain_seconds=5)
    try:
        done = wait_until(
            lambda: (
                (p := get(cluster, ns, "jobpool", name))
                and condition(p, "Complete").get("status") == "True"
                and p
            ),
            timeout=90,
            what="Complete=True",
        )
    finally:
        worker.stop()
    resumed = [int(i) for i in re.findall(r"feeding spec.jobs from index (\d+)", restarted.logs())]
    assert resumed and min(resumed) >= fed_before, restarted.logs()[-2000:]
    status = done["status"]
    assert status["batch"]["fed"] == 100 and status["jobs"]["submitted"] == 100
    assert status["jobs"]["succeeded"] == 100 and status["jobs"]["deadLettered"] == 0
    assert "100 succeeded" in condition(done, "Complete")["message"]
    restarted.stop()


def test_deleting_a_pool_removes_its_queue_keys_and_workers(
    operator, jobpool_crds, kube_namespace, redis_server
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("gone")
    apply(cluster, ns, pool_manifest(name, jobs={"items": [{"n": 1}, {"n": 2}, {"n": 3}]}))
    wait_until(lambda: get(cluster, ns, "deployment", f"{name}-workers"), what="the worker Deployment")
    wait_until(lambda: len(pool_keys(redis_server.url, ns, name)) > 0, what="the pool's keys in Redis")
    assert "jobpool.dev/queue-cleanup" in get(cluster, ns, "jobpool", name)["metadata"]["finalizers"]

    cluster.kubectl("delete", "jobpool", name, "-n", ns, "--timeout=60s")
    assert pool_keys(redis_server.url, ns, name) == []
    wait_until(
        lambda: get(cluster, ns, "deployment", f"{name}-workers") is None,
        timeout=60,
        what="the Deployment garbage-collected",
    )


def test_an_autoscaled_batch_completes_with_dead_letters_and_scales_to_min(
    operator, jobpool_crds, kube_namespace, redis_server
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("mixed")
    payloads = [n if n % 5 else "not a number" for n in range(1, 21)]  # 4 of 20 fail in tasks:square
    apply(
        cluster,
        ns,
        pool_manifest(
            name,
            jobs={"items": payloads},
            retry={"maxAttempts": 1},
            autoscaling={
                "enabled": True,
                "minWorkers": 0,
                "maxWorkers": 3,
                "targetBacklogPerWorker": 5,
                "scaleDownDelaySeconds": 0,
            },
        ),
    )
    wait_until(
        lambda: (d := get(cluster, ns, "deployment", f"{name}-workers")) and d["spec"]["replicas"] == 3,
        timeout=30,
        what="3 pods for 20 jobs at 5 per pod",
    )
    worker = WorkerProcess(redis_server.url, ns, name, "tasks:square", concurrency=4, drain_seconds=5)
    try:
        done = wait_until(
            lambda: (
                (p := get(cluster, ns, "jobpool", name))
                and condition(p, "Complete").get("status") == "True"
                and p
            ),
            timeout=60,
            what="Complete",
        )
    finally:
        worker.stop()
    assert done["status"]["jobs"]["succeeded"] == 16 and done["status"]["jobs"]["deadLettered"] == 4
    assert "16 succeeded, 4 dead-lettered" in condition(done, "Complete")["message"]
    wait_until(
        lambda: get(cluster, ns, "deployment", f"{name}-workers")["spec"]["replicas"] == 0,
        timeout=30,
        what="minWorkers once the batch is complete",
    )


def queue_stats(redis_url, ns, name):
    async def read():
        queue = open_queue(redis_url, ns, name)
        try:
            return await queue.stats()
        finally:
            await queue.close()

    return asyncio.run(read())


def delete_queue(redis_url, ns, name):
    async def delete():
        queue = open_queue(redis_url, ns, name)
        try:
            await queue.delete_all()
        finally:
            await queue.close()

    asyncio.run(delete())


def test_a_batch_follows_its_pool_to_a_new_queue(operator, jobpool_crds, kube_namespace, redis_server):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("moved")
    old, new = (redis_server.url.rsplit("/", 1)[0] + f"/{db}" for db in (1, 2))
    # maxLength 10 and no worker on the old queue: the feeder waits there after the first chunk.
    apply(
        cluster,
        ns,
        pool_manifest(name, jobs={"range": {"start": 0, "count": 50}}, queue={"url": old, "maxLength": 10}),
    )
    wait_until(
        lambda: (get(cluster, ns, "jobpool", name).get("status") or {}).get("batch", {}).get("fed", 0) >= 10,
        timeout=30,
        what="the first chunk fed into the old queue",
    )
    try:
        cluster.kubectl(
            "-n",
            ns,
            "patch",
            "jobpool",
            name,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"queue": {"url": new}}}),
        )
        worker = WorkerProcess(new, ns, name, "tasks:square", concurrency=4, drain_seconds=5)
        try:
            done = wait_until(
                lambda: (
                    (p := get(cluster, ns, "jobpool", name))
                    and condition(p, "Complete").get("status") == "True"
                    and p
                ),
                timeout=60,
                what="Complete on the new queue",
            )
        finally:
            worker.stop()
        assert done["status"]["jobs"]["submitted"] == 50 and done["status"]["jobs"]["succeeded"] == 50
        assert queue_stats(old, ns, name).submitted == 10, "the old queue was fed after spec.queue changed"
    finally:
        delete_queue(old, ns, name)


def count_writes(cluster, ns, kind, name, seconds):
    """API writes to one object during `seconds`: the resourceVersions a watch sees, less the first."""
    watch = subprocess.Popen(
        [
            cluster.bin("kubectl"),
            "get",
            kind,
            name,
            "-n",
            ns,
            "--watch",
            "-o",
            'jsonpath={.metadata.resourceVersion}{"\\n"}',
        ],
        env=cluster.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        out, _ = watch.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        watch.terminate()
        out, _ = watch.communicate()
    return len(set(out.split())) - 1


def test_a_running_batch_writes_its_status_at_most_once_per_interval(
    operator, jobpool_crds, kube_namespace, redis_server
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("quiet")
    total = 300
    apply(cluster, ns, pool_manifest(name, jobs={"items": [0.05] * total}))
    worker = WorkerProcess(redis_server.url, ns, name, "tasks:slow", concurrency=2, drain_seconds=5)
    try:
        running = wait_until(
            lambda: (
                (p := get(cluster, ns, "jobpool", name))
                and (p.get("status") or {}).get("jobs", {}).get("succeeded", 0) > 0
                and p
            ),
            timeout=30,
            what="the batch running",
        )
        window = 6.0
        writes = count_writes(cluster, ns, "jobpool", name, window)
        after = get(cluster, ns, "jobpool", name)
    finally:
        worker.stop()
    succeeded = (running["status"]["jobs"]["succeeded"], after["status"]["jobs"]["succeeded"])
    assert succeeded[0] < succeeded[1] < total, f"the batch must run through the whole window: {succeeded}"
    print(f"{writes} writes to the running batch pool in {window}s")
    # Counters are written at most once per second (the operator's status interval), plus a margin of two.
    assert 2 <= writes <= window + 2, f"{writes} writes to the JobPool in {window}s"


def test_a_large_batch_is_fed_and_deleted_and_too_many_items_are_refused(
    operator, jobpool_crds, kube_namespace, redis_server
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("large")
    too_many = pool_manifest(unique("toomany"), jobs={"items": list(range(10001))})
    refused = cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(too_many), check=False)
    assert refused.returncode != 0
    assert "spec.jobs.items" in refused.stderr and "10000" in refused.stderr, refused.stderr

    total = 2500
    manifest = pool_manifest(
        name, parallelism=0, jobs={"items": [{"src": f"{i:05d}-" + "x" * 110} for i in range(total)]}
    )
    assert len(json.dumps(manifest)) > 300 * 1024  # past the API server's 256 KiB of annotations
    # `kubectl create`: client-side apply would itself copy the spec into an annotation.
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(manifest))
    # kopf writes its bookkeeping annotation on its own schedule: wait for it as for the batch.
    pool = wait_until(
        lambda: (
            (p := get(cluster, ns, "jobpool", name))
            and (p.get("status") or {}).get("batch", {}).get("fed") == total
            and "jobpool.dev/last-handled-configuration" in (p["metadata"].get("annotations") or {})
            and p
        ),
        timeout=60,
        what="the large batch fed and kopf's annotation written",
    )
    assert "jobpool.dev/queue-cleanup" in pool["metadata"]["finalizers"]
    annotations = pool["metadata"].get("annotations") or {}
    assert 0 < len(annotations.get("jobpool.dev/last-handled-configuration", "")) < 4096, list(annotations)
    assert queue_stats(redis_server.url, ns, name).submitted == total
    # The operator's patches of the pool (its bookkeeping annotations) must be accepted for it to be deleted.
    cluster.kubectl("delete", "jobpool", name, "-n", ns, "--timeout=45s")
    assert pool_keys(redis_server.url, ns, name) == []


def test_a_cancelled_batch_stops_feeding_withdraws_its_jobs_and_completes_cancelled(
    operator, jobpool_crds, kube_namespace, redis_server
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("cancel")
    total = 200
    # maxLength 20: the feeder waits for room after the first chunk; each job holds its slot 60 s.
    apply(
        cluster,
        ns,
        pool_manifest(
            name,
            jobs={"items": [60] * total},
            queue={"maxLength": 20},
            worker={
                "image": "registry.example/jobpool-examples:0.1",
                "handler": "tests.integration.handlers:progress_then_wait",
            },
        ),
    )
    worker = WorkerProcess(
        redis_server.url,
        ns,
        name,
        "tests.integration.handlers:progress_then_wait",
        concurrency=2,
        heartbeat_interval=0.2,
        drain_seconds=5,
    )
    try:
        wait_until(
            lambda: (s := queue_stats(redis_server.url, ns, name)).in_flight == 2 and s.waiting > 0,
            timeout=30,
            what="two jobs running and more waiting",
        )
        cluster.kubectl(
            "-n",
            ns,
            "patch",
            "jobpool",
            name,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"jobs": {"cancel": True}}}),
        )
        done = wait_until(
            lambda: (
                (p := get(cluster, ns, "jobpool", name))
                and condition(p, "Complete").get("reason") == "Cancelled"
                and p
            ),
            timeout=60,
            what="Complete with reason Cancelled",
        )
        assert condition(done, "Complete")["status"] == "True"
        stats = queue_stats(redis_server.url, ns, name)
        assert (stats.waiting, stats.in_flight, stats.succeeded) == (0, 0, 0), stats
        assert 20 <= stats.submitted < total and stats.cancelled == stats.submitted, stats
        assert done["status"]["batch"]["swept"] == total
        assert f"{stats.cancelled} cancelled" in condition(done, "Complete")["message"]
        assert worker.alive(), "the worker stopped its two running jobs and runs on"
        # nothing of the batch is fed after its cancel
        submitted = stats.submitted
        wait_until(
            lambda: get(cluster, ns, "jobpool", name)["status"]["jobs"]["cancelled"] == submitted,
            timeout=15,
            what="the status counting every cancelled job",
        )
        assert queue_stats(redis_server.url, ns, name).submitted == submitted
    finally:
        worker.stop()
