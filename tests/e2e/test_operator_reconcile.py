"""The operator against the real control plane: worker objects, status, scale, drift, errors."""

import json
import re
import secrets

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.operator_harness import apply, condition, get, pool_manifest, unique
from tests.fixtures.redis import RedisServer
from tests.helpers import free_port, wait_until


def deployment_of(cluster, ns, pool):
    return get(cluster, ns, "deployment", f"{pool}-workers")


def reconcile_ticks(operator, ns, pool) -> float:
    """How many reconcile ticks the operator has finished for one pool."""
    for family in text_string_to_metric_families(operator.metrics()):
        for sample in family.samples:
            if sample.name == "jobpool_reconcile_seconds_count" and sample.labels == {
                "namespace": ns,
                "pool": pool,
            }:
                return sample.value
    return 0.0


def test_pool_gets_its_workers_and_a_ready_status(operator, jobpool_crds, kube_namespace):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("thumbs")
    apply(cluster, ns, pool_manifest(name, parallelism=3, concurrency=4, drainSeconds=20))
    pool = wait_until(lambda: get(cluster, ns, "jobpool", name), what="the JobPool")
    deployment = wait_until(lambda: deployment_of(cluster, ns, name), what="the worker Deployment")

    assert deployment["spec"]["replicas"] == 3
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "JobPool",
        name,
        pool["metadata"]["uid"],
        True,
    )
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["jobpool.dev/pool"] == name
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == name
    pod = template["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["JOBPOOL_POOL"]["value"] == name and env["JOBPOOL_NAMESPACE"]["value"] == ns
    assert env["JOBPOOL_CONCURRENCY"]["value"] == "4"
    assert env["JOBPOOL_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert get(cluster, ns, "service", f"{name}-workers")["spec"]["ports"][0]["port"] == 9100
    assert get(cluster, ns, "pdb", f"{name}-workers")["spec"]["maxUnavailable"] == 1

    # kwok runs the pods and marks them Ready.
    ready = wait_until(
        lambda: (
            (p := get(cluster, ns, "jobpool", name)) and condition(p, "Ready").get("status") == "True" and p
        ),
        timeout=60,
        what="Ready=True",
    )
    status = ready["status"]
    assert (status["replicas"], status["readyReplicas"], status["desiredReplicas"]) == (3, 3, 3)
    assert status["selector"] == f"jobpool.dev/pool={name}"
    assert status["observedGeneration"] == ready["metadata"]["generation"]
    assert condition(ready, "Degraded")["status"] == "False"
    assert status["queue"] == {
        "waiting": 0,
        "inFlight": 0,
        "delayed": 0,
        "scheduled": 0,
        "deadLetter": 0,
        "waitingByPriority": [],
    }

    table = cluster.kubectl("get", "jobpools", "-n", ns).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "DESIRED",
        "READY",
        "WAITING",
        "INFLIGHT",
        "SATURATION",
        "SUCCEEDED",
        "STATUS",
        "REASON",
        "AGE",
    ]
    assert table[1].split()[:9] == [
        name,
        "3",
        "3",
        "0",
        "0",
        "0",
        "0",
        "True",
        condition(ready, "Ready")["reason"],
    ]
    assert name in cluster.kubectl("get", "all", "-n", ns, "-o", "name").stdout  # categories: [all]
    assert "jp" in cluster.kubectl("api-resources", "--api-group=jobpool.dev").stdout.split()

    events = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    assert "WorkersReady" in events


def test_unchanged_pool_is_not_rewritten_and_manual_edits_are_put_back(
    operator, jobpool_crds, kube_namespace
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("drift")
    apply(cluster, ns, pool_manifest(name, parallelism=2))
    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", name), "Ready").get("status") == "True", timeout=60
    )
    before = deployment_of(cluster, ns, name)["metadata"]["resourceVersion"]
    pool_before = get(cluster, ns, "jobpool", name)["metadata"]["resourceVersion"]
    ticks = reconcile_ticks(operator, ns, name)
    wait_until(
        lambda: reconcile_ticks(operator, ns, name) >= ticks + 5,
        timeout=30,
        what="several reconcile ticks of the idle, unchanged pool",
    )
    assert deployment_of(cluster, ns, name)["metadata"]["resourceVersion"] == before
    assert get(cluster, ns, "jobpool", name)["metadata"]["resourceVersion"] == pool_before

    cluster.kubectl("-n", ns, "set", "image", f"deployment/{name}-workers", "worker=evil.example/miner:1")
    cluster.kubectl("-n", ns, "scale", f"deployment/{name}-workers", "--replicas=7")
    wait_until(
        lambda: (
            (d := deployment_of(cluster, ns, name))
            and d["spec"]["replicas"] == 2
            and d["spec"]["template"]["spec"]["containers"][0]["image"]
            == "registry.example/jobpool-examples:0.1"
        ),
        what="the operator to put the Deployment back",
    )


def test_kubectl_scale_sets_parallelism(operator, jobpool_crds, kube_namespace):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("scaled")
    apply(cluster, ns, pool_manifest(name, parallelism=1))
    wait_until(lambda: deployment_of(cluster, ns, name), what="the worker Deployment")
    cluster.kubectl("-n", ns, "scale", f"jobpool/{name}", "--replicas=4")
    wait_until(lambda: deployment_of(cluster, ns, name)["spec"]["replicas"] == 4, what="4 replicas")
    scale = wait_until(
        lambda: (
            (
                s := json.loads(
                    cluster.kubectl(
                        "-n", ns, "get", f"jobpool/{name}", "--subresource=scale", "-o", "json"
                    ).stdout
                )
            )
            and s["status"].get("replicas") == 4
            and s
        ),
        timeout=60,
        what="scale status replicas 4",
    )
    assert scale["spec"]["replicas"] == 4 and scale["status"]["selector"] == f"jobpool.dev/pool={name}"
    wait_until(lambda: get(cluster, ns, "pdb", f"{name}-workers"), what="a PDB once parallelism > 1")


def test_a_missing_secret_is_degraded_and_named(operator, jobpool_crds, kube_namespace):
    cluster, ns = jobpool_crds, kube_namespace
    secretless, good = unique("secretless"), unique("good")
    apply(
        cluster, ns, pool_manifest(secretless, queue={"urlSecretRef": {"name": "queue-auth", "key": "url"}})
    )
    apply(cluster, ns, pool_manifest(good))

    missing = wait_until(
        lambda: (
            condition(get(cluster, ns, "jobpool", secretless), "Degraded").get("status") == "True"
            and condition(get(cluster, ns, "jobpool", secretless), "Degraded")
        )
    )
    assert missing["reason"] == "SecretNotFound" and "spec.queue.urlSecretRef" in missing["message"]
    assert "queue-auth" in missing["message"]

    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", good), "Ready").get("status") == "True", timeout=60
    )
    assert operator.alive()

    queue_url = operator.default_queue
    cluster.kubectl("-n", ns, "create", "secret", "generic", "queue-auth", f"--from-literal=url={queue_url}")
    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", secretless), "Degraded").get("status") == "False",
        timeout=30,
        what="Degraded=False once the Secret exists",
    )
    env = {
        e["name"]: e
        for e in deployment_of(cluster, ns, secretless)["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["JOBPOOL_QUEUE_URL"] == {
        "name": "JOBPOOL_QUEUE_URL",
        "valueFrom": {"secretKeyRef": {"name": "queue-auth", "key": "url"}},
    }
    assert queue_url not in json.dumps(get(cluster, ns, "jobpool", secretless))
    assert deployment_of(cluster, ns, good) is not None


def degraded(cluster, ns, name):
    return wait_until(
        lambda: (
            (c := condition(get(cluster, ns, "jobpool", name), "Degraded"))
            and c.get("status") == "True"
            and c
        ),
        timeout=30,
        what=f"{name} Degraded",
    )


def test_secret_values_appear_nowhere_in_status_events_or_logs(
    operator, jobpool_crds, kube_namespace, tmp_path
):
    cluster, ns = jobpool_crds, kube_namespace
    token = f"sk-live-{secrets.token_hex(8)}"
    password = secrets.token_hex(8)
    port = free_port()
    unreachable = f"redis://127.0.0.1:{port}/0?password={password}"
    cluster.kubectl(
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "api-keys",
        f"--from-literal=stripe={token}",
        f"--from-literal=queue={unreachable}",
    )
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + token.encode())
    cluster.kubectl("-n", ns, "create", "secret", "generic", "signing-key", f"--from-file=key={binary}")
    not_a_url, down, not_text = unique("notaurl"), unique("down"), unique("nottext")
    apply(
        cluster, ns, pool_manifest(not_a_url, queue={"urlSecretRef": {"name": "api-keys", "key": "stripe"}})
    )
    apply(cluster, ns, pool_manifest(not_text, queue={"urlSecretRef": {"name": "signing-key", "key": "key"}}))
    apply(cluster, ns, pool_manifest(down, queue={"urlSecretRef": {"name": "api-keys", "key": "queue"}}))

    invalid = degraded(cluster, ns, not_a_url)
    assert invalid["reason"] == "InvalidQueueURL"
    assert invalid["message"].startswith('spec.queue.urlSecretRef: the URL in Secret "api-keys" key "stripe"')
    assert deployment_of(cluster, ns, not_a_url) is None
    undecodable = degraded(cluster, ns, not_text)
    assert undecodable["reason"] == "InvalidQueueURL"
    assert '"signing-key" key "key" is not text' in undecodable["message"]
    unavailable = degraded(cluster, ns, down)
    assert unavailable["reason"] == "QueueUnavailable" and '"api-keys" key "queue"' in unavailable["message"]
    assert f"127.0.0.1:{port}" not in unavailable["message"]

    # The finalizer reads the Secret too; its Events and log lines must not quote it either.
    # (The unreachable pool gets a reachable queue first: its finalizer would retry for minutes.)
    reachable = cluster.kubectl(
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "api-keys",
        f"--from-literal=stripe={token}",
        f"--from-literal=queue={operator.default_queue}",
        "--dry-run=client",
        "-o",
        "yaml",
    )
    apply(cluster, ns, reachable.stdout)
    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", down), "Degraded").get("status") == "False",
        timeout=30,
        what=f"{down} reaches its queue",
    )
    cluster.kubectl("-n", ns, "delete", "jobpool", not_a_url, down, not_text, "--wait=false")
    wait_until(
        lambda: all(get(cluster, ns, "jobpool", name) is None for name in (not_a_url, down, not_text)),
        timeout=60,
        what="the pools deleted",
    )
    events = wait_until(
        lambda: (
            (e := cluster.kubectl("-n", ns, "get", "events", "-o", "json").stdout)
            and "QueueCleanupIncomplete" in e
            and e
        ),
        what="the finalizer's Event",
    )
    assert "InvalidQueueURL" in events and "QueueUnavailable" in events
    for value in (token, password, unreachable, f"127.0.0.1:{port}"):
        assert value not in events and value not in operator.logs()
    assert operator.alive()


def test_a_failed_feed_does_not_log_the_queue_host_read_from_a_secret(
    operator, jobpool_crds, kube_namespace, tmp_path
):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("feed")
    (tmp_path / "redis").mkdir()
    queue = RedisServer(tmp_path / "redis")
    queue.start()
    url = f"redis://localhost:{queue.port}/0"
    cluster.kubectl("-n", ns, "create", "secret", "generic", "queue", f"--from-literal=url={url}")
    try:
        # maxLength 10 and no worker: the feeder waits for room in the queue, which then goes down.
        apply(
            cluster,
            ns,
            pool_manifest(
                name,
                jobs={"range": {"start": 0, "count": 100}},
                queue={"urlSecretRef": {"name": "queue", "key": "url"}, "maxLength": 10},
            ),
        )
        wait_until(
            lambda: (get(cluster, ns, "jobpool", name).get("status") or {}).get("batch", {}).get("fed") == 10,
            timeout=30,
            what="the first chunk fed",
        )
        queue.stop()
        try:
            degraded(cluster, ns, name)
            # What is under test is the log itself, so here the test waits for a log line.
            wait_until(
                lambda: "feeding spec.jobs paused" in operator.logs(), what="the feeder's failure logged"
            )
        finally:
            queue.start()
        logs = operator.logs()
        assert url not in logs and f"localhost:{queue.port}" not in logs
        assert not re.search(rf"(?<!\d){queue.port}(?!\d)", logs), "the queue's port is in the operator log"
        paused = [line for line in logs.splitlines() if "feeding spec.jobs paused" in line]
        assert "<hidden>" in paused[0], paused
        cluster.kubectl("-n", ns, "delete", "jobpool", name, "--timeout=60s")
    finally:
        queue.stop()


def test_unreachable_queue_is_degraded(operator, jobpool_crds, kube_namespace):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("noqueue")
    apply(cluster, ns, pool_manifest(name, queue={"url": f"redis://127.0.0.1:{free_port()}/0"}))
    cond = wait_until(
        lambda: (
            condition(get(cluster, ns, "jobpool", name), "Degraded").get("status") == "True"
            and condition(get(cluster, ns, "jobpool", name), "Degraded")
        ),
        timeout=30,
    )
    assert cond["reason"] == "QueueUnavailable" and "cannot reach the queue" in cond["message"]
    assert condition(get(cluster, ns, "jobpool", name), "Ready")["status"] == "False"
    events = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}"
    ).stdout
    assert "QueueUnavailable" in events

    # It recovers once the queue is reachable (and then its finalizer need not wait the queue out).
    cluster.kubectl(
        "-n",
        ns,
        "patch",
        "jobpool",
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"queue": {"url": operator.default_queue}}}),
    )
    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", name), "Degraded").get("status") == "False",
        timeout=30,
        what="Degraded=False once the queue is reachable",
    )


def test_invalid_pools_are_refused_by_the_api_server(jobpool_crds, kube_namespace):
    cluster, ns = jobpool_crds, kube_namespace
    cases = [
        (
            pool_manifest("both", worker={"image": "a", "handler": "m:f", "command": ["x"]}),
            "spec.worker: set exactly one of handler and command",
        ),
        (
            pool_manifest("neither", worker={"image": "a"}),
            "spec.worker: set exactly one of handler and command",
        ),
        (
            pool_manifest("bounds", autoscaling={"minWorkers": 5, "maxWorkers": 2}),
            "spec.autoscaling: minWorkers must be <= maxWorkers",
        ),
        (pool_manifest("zero", concurrency=0), "spec.concurrency"),
        (pool_manifest("huge", concurrency=1025), "spec.concurrency"),
        (pool_manifest("count", jobs={"range": {"count": -1}}), "spec.jobs.range.count"),
        (pool_manifest("batch", jobs={"items": [1], "range": {"count": 1}}), "spec.jobs"),
        (pool_manifest("nobatch", jobs={}), "spec.jobs"),
        (pool_manifest("noimage", worker={"handler": "m:f"}), "spec.worker.image"),
        (
            pool_manifest("handler", worker={"image": "a", "handler": "tasks:square:twice"}),
            "spec.worker.handler",
        ),
        (
            pool_manifest("callable", worker={"image": "a", "handler": "tasks:square()"}),
            "spec.worker.handler",
        ),
        (pool_manifest("scheme", queue={"url": "http://redis:6379/0"}), "spec.queue.url"),
        (pool_manifest("bare", queue={"url": "redis:6379"}), "spec.queue.url"),
        (pool_manifest("dotted.name"), "a JobPool's name must be a DNS-1123 label"),
        (pool_manifest("x" * 64), "a JobPool's name must be a DNS-1123 label"),
    ]
    for manifest, message in cases:
        result = apply(cluster, ns, manifest, check=False)
        assert result.returncode != 0 and message in result.stderr, (
            manifest["metadata"]["name"],
            result.stderr,
        )
    assert cluster.kubectl("get", "jobpools", "-n", ns, "-o", "name").stdout.strip() == ""


def test_defaults_are_applied_by_the_api_server(jobpool_crds, kube_namespace):
    cluster, ns = jobpool_crds, kube_namespace
    apply(cluster, ns, pool_manifest("defaults"))
    spec = get(cluster, ns, "jobpool", "defaults")["spec"]
    assert spec["parallelism"] == 1 and spec["concurrency"] == 1 and spec["drainSeconds"] == 60
    assert spec["retry"] == {"maxAttempts": 3, "backoffSeconds": 1, "maxBackoffSeconds": 300}
    assert spec["autoscaling"]["enabled"] is False and spec["queue"]["maxLength"] == 100000
    explain = cluster.kubectl("explain", "jobpool.spec.autoscaling").stdout
    assert "scaleDownDelaySeconds" in explain and "targetBacklogPerWorker" in explain


def test_operator_metrics_and_health(operator, jobpool_crds, kube_namespace):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("metered")
    apply(cluster, ns, pool_manifest(name, parallelism=2))
    labels = f'namespace="{ns}",pool="{name}"'
    # the gauges are set during a tick, its duration observed once it ends: wait for both
    text = wait_until(
        lambda: (
            (m := operator.metrics())
            and f"jobpool_workers_desired{{{labels}}} 2.0" in m
            and "jobpool_reconcile_seconds_count" in m
            and m
        ),
        what="the pool's metrics",
    )
    for metric in (
        "jobpool_queue_waiting",
        "jobpool_queue_inflight",
        "jobpool_queue_delayed",
        "jobpool_queue_dead_letter",
        "jobpool_workers_ready",
        "jobpool_slots_busy",
        "jobpool_slots_total",
        "jobpool_saturation",
    ):
        assert f"{metric}{{{labels}}}" in text, metric
    assert f'jobpool_jobs_total{{namespace="{ns}",outcome="succeeded",pool="{name}"}}' in text
    assert "jobpool_reconcile_seconds_count" in text
    assert operator.healthz() == 200


def test_queue_outage_degrades_the_pool_and_it_recovers(operator, jobpool_crds, kube_namespace, redis_server):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("outage")
    apply(cluster, ns, pool_manifest(name, parallelism=1))
    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", name), "Ready").get("status") == "True", timeout=60
    )
    redis_server.stop()
    try:
        cond = wait_until(
            lambda: (
                (c := condition(get(cluster, ns, "jobpool", name), "Degraded"))
                and c.get("status") == "True"
                and c
            ),
            timeout=30,
            what="Degraded during the outage",
        )
        assert cond["reason"] == "QueueUnavailable" and operator.alive()
        # The workers are left alone: they back off and retry on their own.
        assert get(cluster, ns, "deployment", f"{name}-workers")["spec"]["replicas"] == 1
    finally:
        redis_server.start()
    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", name), "Degraded").get("status") == "False",
        timeout=30,
        what="Degraded=False once the queue is back",
    )
    assert condition(get(cluster, ns, "jobpool", name), "Ready")["status"] == "True"


def test_a_spec_change_is_rolled_out_and_observed(operator, jobpool_crds, kube_namespace):
    cluster, ns, name = jobpool_crds, kube_namespace, unique("rollout")
    apply(cluster, ns, pool_manifest(name, concurrency=2))
    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", name), "Ready").get("status") == "True", timeout=60
    )
    cluster.kubectl(
        "-n",
        ns,
        "patch",
        "jobpool",
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"concurrency": 8, "worker": {"env": [{"name": "MODE", "value": "fast"}]}}}),
    )

    def rolled_out():
        env = {
            e["name"]: e.get("value")
            for e in deployment_of(cluster, ns, name)["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        return env["JOBPOOL_CONCURRENCY"] == "8" and env.get("MODE") == "fast"

    wait_until(rolled_out, what="the new concurrency and env in the Deployment")
    pool = wait_until(
        lambda: (
            (p := get(cluster, ns, "jobpool", name))
            and p["status"]["observedGeneration"] == p["metadata"]["generation"]
            and p
        ),
        timeout=30,
    )
    assert all(
        c["observedGeneration"] == pool["metadata"]["generation"] for c in pool["status"]["conditions"]
    )
