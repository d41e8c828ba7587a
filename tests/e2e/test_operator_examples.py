"""Every numbered example, applied to the local control plane with a running operator."""

import json

from tests.e2e.operator_harness import condition, get
from tests.helpers import ROOT, WorkerProcess, wait_until

EXAMPLES = ROOT / "examples"


def apply_example(cluster, ns, name):
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / name / "jobpool.yaml"))


def ready(cluster, ns, pool):
    return condition(get(cluster, ns, "jobpool", pool), "Ready").get("status") == "True"


def test_01_minimal_runs_one_worker_pod(operator, jobpool_crds, kube_namespace):
    apply_example(jobpool_crds, kube_namespace, "01-minimal")
    wait_until(lambda: ready(jobpool_crds, kube_namespace, "squares"), timeout=60, what="squares Ready")
    assert get(jobpool_crds, kube_namespace, "deployment", "squares-workers")["spec"]["replicas"] == 1


def test_02_batch_completes(operator, jobpool_crds, kube_namespace, redis_server):
    cluster, ns = jobpool_crds, kube_namespace
    apply_example(cluster, ns, "02-batch")
    workers = [
        WorkerProcess(redis_server.url, ns, "squares-batch", "tasks:square", concurrency=8, drain_seconds=5)
        for _ in range(2)
    ]
    try:
        done = wait_until(
            lambda: (
                (p := get(cluster, ns, "jobpool", "squares-batch"))
                and condition(p, "Complete").get("status") == "True"
                and p
            ),
            timeout=120,
            what="the batch Complete",
        )
    finally:
        for worker in workers:
            worker.stop()
    assert done["status"]["jobs"]["succeeded"] == 1000 and done["status"]["jobs"]["submitted"] == 1000
    assert done["status"]["desiredReplicas"] == 4


def test_03_autoscaling_idles_at_zero(operator, jobpool_crds, kube_namespace):
    apply_example(jobpool_crds, kube_namespace, "03-autoscaling")
    wait_until(lambda: ready(jobpool_crds, kube_namespace, "thumbnails"), timeout=60, what="thumbnails Ready")
    pool = get(jobpool_crds, kube_namespace, "jobpool", "thumbnails")
    assert pool["status"]["desiredReplicas"] == 0
    assert get(jobpool_crds, kube_namespace, "pdb", "thumbnails-workers") is not None


def test_04_queue_secret_never_shows_the_password(operator, jobpool_crds, kube_namespace):
    cluster, ns = jobpool_crds, kube_namespace
    apply_example(cluster, ns, "04-queue-secret")
    # The example's Redis host does not exist here: the pool is Degraded, and says so without the password.
    degraded = wait_until(
        lambda: (
            (c := condition(get(cluster, ns, "jobpool", "private-squares"), "Degraded"))
            and c.get("status") == "True"
            and c
        ),
        timeout=60,
        what="Degraded",
    )
    # A Secret-held URL is named by its Secret and key, never quoted (not even its host).
    assert degraded["reason"] == "QueueUnavailable"
    assert 'the URL in Secret "queue-credentials" key "url"' in degraded["message"], degraded["message"]
    assert "change-me" not in json.dumps(get(cluster, ns, "jobpool", "private-squares"))
    deployment = get(cluster, ns, "deployment", "private-squares-workers")
    assert "change-me" not in json.dumps(deployment)
    events = cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    assert "change-me" not in events and "change-me" not in operator.logs()
    # A pool whose queue never answered is let go only after QUEUE_GIVE_UP_SECONDS (the finalizer
    # tests cover that wait): the teardown does not sit through it again.
    cluster.kubectl("delete", "jobpool", "private-squares", "-n", ns, "--wait=false")
    cluster.kubectl(
        "patch",
        "jobpool",
        "private-squares",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"metadata": {"finalizers": null}}',
    )


def test_08_gpu_pool_places_workers_on_the_tainted_gpu_node(gpu_node, operator, jobpool_crds, kube_namespace):
    cluster, ns = jobpool_crds, kube_namespace
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "08-gpu-pool" / "serviceaccount.yaml"))
    apply_example(cluster, ns, "08-gpu-pool")
    wait_until(lambda: ready(cluster, ns, "embeddings"), timeout=60, what="embeddings Ready")
    (pod,) = json.loads(
        cluster.kubectl("get", "pods", "-n", ns, "-l", "jobpool.dev/pool=embeddings", "-o", "json").stdout
    )["items"]
    assert pod["spec"]["nodeName"] == gpu_node and pod["spec"]["serviceAccountName"] == "model-reader"
    assert pod["spec"]["initContainers"][0]["name"] == "fetch-model"
    assert {v["name"] for v in pod["spec"]["volumes"]} >= {"model-cache", "cloud-token"}
    assert "overriddenFields" not in get(cluster, ns, "jobpool", "embeddings")["status"]
