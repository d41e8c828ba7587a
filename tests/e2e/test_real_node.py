"""Worker pods from the project's images on the real node: kubelet, containerd, CNI bridge,
kube-proxy Services, CoreDNS, restricted security context with a read-only root filesystem."""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
import subprocess

import pytest
import redis

from jobpool import Client
from jobpool.queue.keys import PoolKeys
from tests.fixtures.cluster import REPO_ROOT, localcluster
from tests.fixtures.real_node import real_node_cluster
from tests.helpers import wait_until

# Also `cluster`: they need the control plane (and stay out of `make test-fast`).
pytestmark = [pytest.mark.realnode, pytest.mark.cluster]

NODE_SELECTOR = {localcluster.NODE_LABEL: "real"}
CHART = REPO_ROOT / "charts" / "jobpool"


def restricted(uid: int) -> tuple[dict, dict]:
    """Pod and container security contexts of the restricted Pod Security Standard."""
    pod = {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
           "seccompProfile": {"type": "RuntimeDefault"}}
    container = {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                 "capabilities": {"drop": ["ALL"]}}
    return pod, container


def deployment(name: str, replicas: int, container: dict, uid: int, labels: dict | None = None,
               volumes: list | None = None) -> dict:
    pod_context, container_context = restricted(uid)
    labels = {"app": name, **(labels or {})}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "nodeSelector": NODE_SELECTOR, "automountServiceAccountToken": False,
                "securityContext": pod_context, "volumes": volumes or [],
                "containers": [{"imagePullPolicy": "Never", "securityContext": container_context,
                                **container}]}},
        },
    }


def apply(cluster, namespace: str, *objects: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def redis_with_service(cluster, namespace: str) -> str:
    """The project's Redis image in a pod behind the Service `redis`; returns the queue URL by
    its ClusterIP, for clients on the machine (pods use the Service's name)."""
    apply(cluster, namespace, deployment("redis", 1, {
        "name": "redis", "image": "jobpool-redis:dev",
        "args": ["--port", "6379", "--dir", "/data", "--appendonly", "yes", "--protected-mode", "no"],
        "ports": [{"name": "redis", "containerPort": 6379}],
        "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 2},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }, uid=999, volumes=[{"name": "data", "emptyDir": {}}]), {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis"},
        "spec": {"selector": {"app": "redis"}, "ports": [{"port": 6379, "targetPort": "redis"}]},
    })
    cluster.kubectl("rollout", "status", "deployment/redis", "-n", namespace, "--timeout=120s",
                    timeout=150)
    ip = cluster.kubectl("get", "service", "redis", "-n", namespace, "-o",
                         "jsonpath={.spec.clusterIP}").stdout
    return f"redis://{ip}:6379/0"


def helm(cluster, *args: str) -> None:
    result = subprocess.run([cluster.bin("helm"), *args], env=cluster.env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"


def pod_names(cluster, namespace: str, selector: str) -> list[str]:
    return cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "--field-selector",
                           "status.phase=Running", "-o", "name").stdout.split()


def pool_status(cluster, namespace: str, pool: str) -> dict:
    return json.loads(cluster.kubectl("get", "jobpool", pool, "-n", namespace, "-o",
                                      "jsonpath={.status}").stdout or "{}")


def kill_container(cluster, namespace: str, pod: str) -> None:
    """kill -9 of the pod's container on the node, as an OOM kill or a crash would."""
    container_id = cluster.kubectl("get", pod, "-n", namespace, "-o",
                                   "jsonpath={.status.containerStatuses[0].containerID}").stdout
    subprocess.run(["ctr", "-a", str(localcluster.NODE_RUN_DIR / "containerd.sock"), "-n", "k8s.io",
                    "tasks", "kill", "--signal", "SIGKILL", container_id.removeprefix("containerd://")],
                   check=True, capture_output=True, timeout=30)


def reaches(cluster, namespace: str, address: str, port: int, labels: dict) -> bool:
    """Whether a pod with `labels` (the worker image, a TCP connect) reaches address:port."""
    name = f"probe-{secrets.token_hex(3)}"
    pod_context, container_context = restricted(10001)
    connect = (f"import socket; socket.create_connection(({address!r}, {port}), timeout=3); "
               "print('connected')")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"nodeSelector": NODE_SELECTOR, "restartPolicy": "Never",
                 "automountServiceAccountToken": False, "securityContext": pod_context,
                 "containers": [{"name": "probe", "image": "jobpool-worker:dev",
                                 "imagePullPolicy": "Never", "securityContext": container_context,
                                 "command": ["python3", "-c", connect]}]}}))
    phase = wait_until(lambda: cluster.kubectl("get", "pod", name, "-n", namespace, "-o",
                                               "jsonpath={.status.phase}").stdout
                       in ("Succeeded", "Failed") and cluster.kubectl(
                           "get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}").stdout,
                       timeout=60, interval=0.5, what=f"the probe pod {name} to finish")
    return phase == "Succeeded"


def install_chart(cluster, namespace: str, *sets: str) -> None:
    helm(cluster, "install", "jp", str(CHART), "--namespace", namespace, "--wait", "--timeout", "240s",
         "--set", "image.repository=jobpool-operator", "--set", "image.tag=dev",
         "--set", "redis.image.repository=jobpool-redis", "--set", "redis.image.tag=dev",
         *[arg for value in sets for arg in ("--set", value)])


def bundled_queue_url(cluster, namespace: str) -> str:
    """The bundled Redis's URL (password from its Secret) by ClusterIP, for this machine."""
    encoded = cluster.kubectl("get", "secret", "jp-redis", "-n", namespace, "-o",
                              "jsonpath={.data.url}").stdout
    url = base64.b64decode(encoded).decode()
    ip = cluster.kubectl("get", "service", "jp-redis", "-n", namespace, "-o",
                         "jsonpath={.spec.clusterIP}").stdout
    return url.replace(f"jp-redis.{namespace}.svc", ip)


def live_pods(cluster, namespace: str, pool: str) -> list[dict]:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", f"jobpool.dev/pool={pool}",
                                      "-o", "json").stdout)["items"]
    return [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]


def slow_pool(cluster, namespace: str, replicas: int) -> Client:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "jobpool.dev/v1alpha1", "kind": "JobPool", "metadata": {"name": "drain"},
        "spec": {"parallelism": replicas, "concurrency": 1, "drainSeconds": 30,
                 "worker": {"image": "jobpool-examples:dev", "handler": "tasks:slow"},
                 "queue": {"urlSecretRef": {"name": "jp-redis", "key": "url"}}}}))
    wait_until(lambda: cluster.kubectl("get", "deployment", "drain-workers", "-n", namespace,
                                       check=False).returncode == 0,
               timeout=60, interval=0.5, what="the pool's Deployment")
    cluster.kubectl("rollout", "status", "deployment/drain-workers", "-n", namespace,
                    "--timeout=120s", timeout=150)
    return Client(bundled_queue_url(cluster, namespace), namespace, "drain")


@pytest.fixture(scope="module")
def real_node(real_node_ready, tmp_path_factory):
    with real_node_cluster(tmp_path_factory.mktemp("realnode")) as cluster:
        yield cluster


@pytest.fixture
def namespace(real_node) -> str:
    name = f"real-{secrets.token_hex(3)}"
    real_node.kubectl("create", "namespace", name)
    wait_until(lambda: real_node.kubectl("get", "serviceaccount", "default", "-n", name,
                                         check=False).returncode == 0,
               timeout=30, what="the namespace's default service account")
    yield name
    # a release's cluster-wide objects (aggregated roles, admission policy) go with it, not with the namespace
    subprocess.run([real_node.bin("helm"), "uninstall", "jp", "--namespace", name, "--wait", "--timeout", "120s"],
                   env=real_node.env, capture_output=True, timeout=180)
    real_node.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_worker_pods_on_the_real_node_run_jobs_from_redis_by_service_dns(real_node, namespace):
    queue_url = redis_with_service(real_node, namespace)
    env = {"JOBPOOL_QUEUE_URL": "redis://redis:6379/0", "JOBPOOL_NAMESPACE": namespace,
           "JOBPOOL_POOL": "squares", "JOBPOOL_HANDLER": "tasks:square",
           "JOBPOOL_CONCURRENCY": "4"}
    apply(real_node, namespace, deployment("squares", 2, {
        "name": "worker", "image": "jobpool-examples:dev",
        "env": [{"name": name, "value": value} for name, value in env.items()],
        "ports": [{"name": "metrics", "containerPort": 9100}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 2},
    }, uid=10001, labels={"jobpool.dev/pool": "squares"}))
    real_node.kubectl("rollout", "status", "deployment/squares", "-n", namespace,
                      "--timeout=120s", timeout=150)

    with Client(queue_url, namespace, "squares") as client:
        ids = client.submit_many(list(range(500)))
        results = [client.result(id, timeout=60) for id in ids]
        workers = client.status().workers
    assert [result.result for result in results] == [n * n for n in range(500)]
    pods = json.loads(real_node.kubectl("get", "pods", "-n", namespace, "-l", "app=squares",
                                        "-o", "json").stdout)["items"]
    assert {pod["spec"]["nodeName"] for pod in pods} == {localcluster.NODE_NAME}
    subnet = ipaddress.ip_network(localcluster.NODE_POD_SUBNET)
    assert all(ipaddress.ip_address(pod["status"]["podIP"]) in subnet for pod in pods)
    assert len(workers) == 2, f"both worker pods registered with the queue: {workers}"


def test_the_chart_runs_a_batch_on_real_pods_through_kills_and_deletions(real_node, namespace,
                                                                         tmp_path):
    """The operator in a pod (its ServiceAccount only), the bundled Redis with AOF on a
    PersistentVolume, workers of the example's image reaching Redis by Service DNS; a batch
    completes with nothing lost through kill -9 of a worker container, deletion of a worker
    pod, of the Redis pod and of the operator pod."""
    volume = tmp_path / "redis-data"
    volume.mkdir()
    os.chown(volume, 999, 999)   # the chart's Redis uid; a hostPath volume gets no fsGroup
    real_node.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{namespace}-redis"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
                 "claimRef": {"namespace": namespace, "name": "jp-redis"},
                 "hostPath": {"path": str(volume), "type": "Directory"}}}))
    install_chart(real_node, namespace)
    jobs = 5000
    real_node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "jobpool.dev/v1alpha1", "kind": "JobPool", "metadata": {"name": "slow"},
        "spec": {"parallelism": 2, "concurrency": 8,
                 "worker": {"image": "jobpool-examples:dev", "handler": "tasks:slow"},
                 "queue": {"urlSecretRef": {"name": "jp-redis", "key": "url"}},
                 "jobs": {"items": [0.05] * jobs}}}))

    def succeeded() -> int:
        return pool_status(real_node, namespace, "slow").get("jobs", {}).get("succeeded", 0)

    wait_until(lambda: succeeded() >= 200, timeout=180, interval=0.5, what="the batch under way")
    workers = wait_until(lambda: len(pod_names(real_node, namespace, "jobpool.dev/pool=slow")) == 2
                         and pod_names(real_node, namespace, "jobpool.dev/pool=slow"),
                         timeout=60, what="two running worker pods")
    kill_container(real_node, namespace, workers[0])
    real_node.kubectl("delete", workers[1], "-n", namespace, "--wait=false")
    (redis_pod,) = pod_names(real_node, namespace, "app.kubernetes.io/name=jobpool-redis")
    done_before_redis_restart = succeeded()
    real_node.kubectl("delete", redis_pod, "-n", namespace, timeout=120)
    (operator_pod,) = pod_names(real_node, namespace, "app.kubernetes.io/name=jobpool-operator")
    real_node.kubectl("delete", operator_pod, "-n", namespace, timeout=120)
    (successor,) = wait_until(
        lambda: pod_names(real_node, namespace, "app.kubernetes.io/name=jobpool-operator"),
        timeout=120, interval=0.5, what="the operator's successor pod")
    wait_until(lambda: real_node.kubectl("get", "lease", "jobpool-operator", "-n", namespace, "-o",
                                         "jsonpath={.spec.holderIdentity}").stdout
               .startswith(successor.removeprefix("pod/")),
               timeout=120, interval=0.5, what="the successor holding the operator's Lease")

    real_node.kubectl("wait", "jobpool/slow", "-n", namespace, "--for=condition=Complete",
                      "--timeout=600s", timeout=630)
    status = pool_status(real_node, namespace, "slow")
    assert done_before_redis_restart < jobs, "Redis restarted while the batch ran"
    assert status["jobs"]["succeeded"] == jobs and status["jobs"]["deadLettered"] == 0, status
    assert status["queue"]["waiting"] == status["queue"]["inFlight"] == 0, status
    keys = PoolKeys(namespace, "slow")
    with redis.Redis.from_url(bundled_queue_url(real_node, namespace)) as queue_redis:
        assert queue_redis.xlen(keys.results) == jobs, "one result per job: none lost"
        duplicates = int(queue_redis.hget(keys.counters, "duplicates") or 0)
    print(f"{jobs} jobs through the disruptions: {jobs} results, {duplicates} duplicate completions")
    restarts = real_node.kubectl("get", workers[0], "-n", namespace, "-o",
                                 "jsonpath={.status.containerStatuses[0].restartCount}").stdout
    assert int(restarts) >= 1, "the kubelet restarted the killed worker container"
    real_node.kubectl("delete", "pv", f"{namespace}-redis", "--wait=false")


def test_only_pool_pods_reach_the_bundled_redis(real_node, namespace):
    """The chart's NetworkPolicy, enforced by kube-network-policies on the node."""
    if not real_node.cluster.network_policy:
        pytest.skip("NetworkPolicy is not enforced on this node: the kernel lacks nftables' "
                    "queue expression (CONFIG_NFT_QUEUE) that kube-network-policies needs")
    install_chart(real_node, namespace, "redis.persistence.enabled=false")
    assert reaches(real_node, namespace, "jp-redis", 6379, {"jobpool.dev/pool": "any"})
    assert not reaches(real_node, namespace, "jp-redis", 6379, {"app": "intruder"})


def test_scale_down_under_load_deletes_idle_pods_and_keeps_the_busy_one(real_node, namespace):
    """The operator's pod-deletion-cost and the real ReplicaSet controller: 3 -> 1 pods while
    one pod runs a job; the idle pods go, the busy one finishes its job undisturbed."""
    install_chart(real_node, namespace, "redis.persistence.enabled=false")
    with slow_pool(real_node, namespace, 3) as client:
        wait_until(lambda: len(client.status().workers) == 3, timeout=60, what="3 registered workers")
        job = client.submit(10)
        busy = wait_until(lambda: [w.id for w in client.status().workers if w.busy], timeout=30,
                          what="a worker running the job")[0]

        def cost(pod: dict) -> int:
            return int(pod["metadata"].get("annotations", {}).get(
                "controller.kubernetes.io/pod-deletion-cost", "0"))

        wait_until(lambda: all(cost(pod) > 0 if pod["metadata"]["name"] == busy else cost(pod) <= 0
                               for pod in live_pods(real_node, namespace, "drain")),
                   timeout=30, interval=0.5, what="the busy pod marked with a higher deletion cost")
        real_node.kubectl("scale", "jobpool/drain", "-n", namespace, "--replicas=1")
        wait_until(lambda: [p["metadata"]["name"] for p in live_pods(real_node, namespace, "drain")]
                   == [busy], timeout=60, interval=0.5, what="only the busy pod left")
        result = client.result(job, timeout=60)
    assert result is not None and result.attempts == 1, result


def test_scale_to_zero_drains_the_job_in_flight_and_the_pod_exits_at_once(real_node, namespace):
    install_chart(real_node, namespace, "redis.persistence.enabled=false")
    with slow_pool(real_node, namespace, 1) as client:
        wait_until(lambda: len(client.status().workers) == 1, timeout=60, what="a registered worker")
        job = client.submit(5)
        wait_until(lambda: client.status().in_flight == 1, timeout=30, what="the job in flight")
        real_node.kubectl("scale", "jobpool/drain", "-n", namespace, "--replicas=0")
        result = client.result(job, timeout=60)
        assert result is not None and result.attempts == 1, "the kubelet's SIGTERM drained the job"
        # The job had at most 5 s left; the grace period is drainSeconds (30) plus a margin.
        wait_until(lambda: not json.loads(real_node.kubectl(
            "get", "pods", "-n", namespace, "-l", "jobpool.dev/pool=drain", "-o", "json").stdout)["items"],
            timeout=15, interval=0.5, what="the drained pod gone")


def test_the_web_page_opens_through_the_api_servers_service_proxy(real_node, namespace):
    """The chart's page (ui.enabled), opened as people open it: `kubectl proxy` and the API
    server's service proxy; it reads through the Redis user the operator keeps for it."""
    import requests

    from tests.helpers import free_port, stop_process

    install_chart(real_node, namespace, "redis.persistence.enabled=false", "ui.enabled=true")
    client = Client(bundled_queue_url(real_node, namespace), namespace, "web")
    client.submit({"n": 1}, id="seen-1")
    port = free_port()
    proxy = subprocess.Popen([real_node.bin("kubectl"), "proxy", f"--port={port}"], env=real_node.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1/namespaces/{namespace}/services/jp-ui:http/proxy/"
    try:
        def shows_the_pool() -> bool:
            try:
                return f'data-pool="{namespace}/web"' in requests.get(base, timeout=5).text
            except requests.RequestException:
                return False
        # the page finds pools again every 30 s: this one came after the page
        wait_until(shows_the_pool, timeout=90, interval=1, what="the pool on the page through kubectl proxy")
        page = requests.get(f"{base}pools/{namespace}/web", timeout=10)
        assert page.status_code == 200 and "seen-1" in page.text and "may not read" not in page.text
        assert requests.get(f"{base}static/ui.css", timeout=10).status_code == 200
        dead = requests.get(f"{base}pools/{namespace}/web/dead", timeout=10).text
        assert "actions are turned off" in dead and 'class="replay"' not in dead
        with requests.get(f"{base}events", stream=True, timeout=10) as events:   # live figures pass the proxy
            line = next(line for line in events.iter_lines(decode_unicode=True) if line.startswith("data:"))
        assert f'"{namespace}/web"' in line
    finally:
        stop_process(proxy)
        client.close()
