"""Worker pods from the project's images on the real node: kubelet, containerd, CNI bridge,
kube-proxy Services, CoreDNS, restricted security context with a read-only root filesystem.
With JOBPOOL_KIND=1 (`make test-kind`) the same tests, with the same assertions, run on the node
of a kind cluster (tests/fixtures/real_node.py: kind_cluster)."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from jobpool import Client
from jobpool.queue.base import QueueUnavailable
from jobpool.queue.keys import PoolKeys
from tests.e2e.operator_harness import install_crds, start_operator
from tests.fixtures.cluster import REPO_ROOT, localcluster
from tests.fixtures.real_node import kind_requested, real_node_cluster
from tests.helpers import wait_until

# Also `cluster`: they need the control plane (and stay out of `make test-fast`).
pytestmark = [pytest.mark.realnode, pytest.mark.cluster]

NODE_SELECTOR = {localcluster.NODE_LABEL: "real"}
CHART = REPO_ROOT / "charts" / "jobpool"
# The chart of the previous release (0.1.0, main at 852ccab), as `git archive` made it: the
# upgrade test needs no git history (CI may clone shallow).
PREVIOUS_CHART = REPO_ROOT / "tests" / "e2e" / "testdata" / "jobpool-chart-852ccab.tar.gz"


def restricted(uid: int) -> tuple[dict, dict]:
    """Pod and container security contexts of the restricted Pod Security Standard."""
    pod = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def deployment(
    name: str,
    replicas: int,
    container: dict,
    uid: int,
    labels: dict | None = None,
    volumes: list | None = None,
) -> dict:
    pod_context, container_context = restricted(uid)
    labels = {"app": name, **(labels or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": NODE_SELECTOR,
                    "automountServiceAccountToken": False,
                    "securityContext": pod_context,
                    "volumes": volumes or [],
                    "containers": [
                        {"imagePullPolicy": "Never", "securityContext": container_context, **container}
                    ],
                },
            },
        },
    }


def apply(cluster, namespace: str, *objects: dict) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )


def redis_with_service(cluster, namespace: str) -> str:
    """The project's Redis image in a pod behind the Service `redis`; returns the queue URL by
    its ClusterIP, for clients on the machine (pods use the Service's name)."""
    apply(
        cluster,
        namespace,
        deployment(
            "redis",
            1,
            {
                "name": "redis",
                "image": "jobpool-redis:dev",
                "args": ["--port", "6379", "--dir", "/data", "--appendonly", "yes", "--protected-mode", "no"],
                "ports": [{"name": "redis", "containerPort": 6379}],
                "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 2},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            uid=999,
            volumes=[{"name": "data", "emptyDir": {}}],
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "redis"},
            "spec": {"selector": {"app": "redis"}, "ports": [{"port": 6379, "targetPort": "redis"}]},
        },
    )
    cluster.kubectl("rollout", "status", "deployment/redis", "-n", namespace, "--timeout=120s", timeout=150)
    ip = cluster.kubectl(
        "get", "service", "redis", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    return f"redis://{ip}:6379/0"


def helm(cluster, *args: str) -> None:
    result = subprocess.run(
        [cluster.bin("helm"), *args], env=cluster.env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"


def pod_names(cluster, namespace: str, selector: str) -> list[str]:
    return cluster.kubectl(
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        selector,
        "--field-selector",
        "status.phase=Running",
        "-o",
        "name",
    ).stdout.split()


def pool_status(cluster, namespace: str, pool: str) -> dict:
    return json.loads(
        cluster.kubectl("get", "jobpool", pool, "-n", namespace, "-o", "jsonpath={.status}").stdout or "{}"
    )


def kill_container(cluster, namespace: str, pod: str) -> None:
    """kill -9 of the pod's container on the node, as an OOM kill or a crash would."""
    container_id = cluster.kubectl(
        "get", pod, "-n", namespace, "-o", "jsonpath={.status.containerStatuses[0].containerID}"
    ).stdout
    cluster.node.kill_container(container_id.removeprefix("containerd://"))


def reaches(cluster, namespace: str, address: str, port: int, labels: dict) -> bool:
    """Whether a pod with `labels` (the worker image, a TCP connect) reaches address:port."""
    name = f"probe-{secrets.token_hex(3)}"
    pod_context, container_context = restricted(10001)
    connect = f"import socket; socket.create_connection(({address!r}, {port}), timeout=3); print('connected')"
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "nodeSelector": NODE_SELECTOR,
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_context,
                    "containers": [
                        {
                            "name": "probe",
                            "image": "jobpool-worker:dev",
                            "imagePullPolicy": "Never",
                            "securityContext": container_context,
                            "command": ["python3", "-c", connect],
                        }
                    ],
                },
            }
        ),
    )
    phase = wait_until(
        lambda: (
            cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}").stdout
            in ("Succeeded", "Failed")
            and cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}").stdout
        ),
        timeout=60,
        interval=0.5,
        what=f"the probe pod {name} to finish",
    )
    return phase == "Succeeded"


def install_chart(cluster, namespace: str, *sets: str, chart=CHART, action: str = "install") -> None:
    helm(
        cluster,
        action,
        "jp",
        str(chart),
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        "240s",
        "--set",
        "image.repository=jobpool-operator",
        "--set",
        "image.tag=dev",
        "--set",
        "redis.image.repository=jobpool-redis",
        "--set",
        "redis.image.tag=dev",
        "--set",
        "redis.image.digest=",
        *[arg for value in sets for arg in ("--set", value)],
    )


def answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2) as r:
            return bool(r.ping())
    except (redis.ConnectionError, redis.TimeoutError):  # refused, or no route yet (kind)
        return False


def bundled_queue_url(cluster, namespace: str) -> str:
    """The bundled Redis's URL (password from its Secret) by ClusterIP, for this machine."""
    encoded = cluster.kubectl(
        "get", "secret", "jp-redis", "-n", namespace, "-o", "jsonpath={.data.url}"
    ).stdout
    url = base64.b64decode(encoded).decode()
    ip = cluster.kubectl(
        "get", "service", "jp-redis", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    url = url.replace(f"jp-redis.{namespace}.svc", ip)
    # helm --wait saw the pod Ready; kube-proxy may not have programmed the Service yet (refused)
    wait_until(lambda: answers(url), timeout=90, interval=0.5, what="the bundled Redis through its Service")
    return url


def live_pods(cluster, namespace: str, pool: str) -> list[dict]:
    pods = json.loads(
        cluster.kubectl("get", "pods", "-n", namespace, "-l", f"jobpool.dev/pool={pool}", "-o", "json").stdout
    )["items"]
    return [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]


def slow_pool(cluster, namespace: str, replicas: int) -> Client:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "jobpool.dev/v1alpha1",
                "kind": "JobPool",
                "metadata": {"name": "drain"},
                "spec": {
                    "parallelism": replicas,
                    "concurrency": 1,
                    "drainSeconds": 30,
                    "worker": {"image": "jobpool-examples:dev", "handler": "tasks:slow"},
                },
            }
        ),
    )
    wait_until(
        lambda: (
            cluster.kubectl("get", "deployment", "drain-workers", "-n", namespace, check=False).returncode
            == 0
        ),
        timeout=60,
        interval=0.5,
        what="the pool's Deployment",
    )
    cluster.kubectl(
        "rollout", "status", "deployment/drain-workers", "-n", namespace, "--timeout=120s", timeout=150
    )
    return Client(bundled_queue_url(cluster, namespace), namespace, "drain")


@pytest.fixture(scope="module")
def real_node(request, tmp_path_factory):
    if kind_requested():
        yield request.getfixturevalue("kind_cluster")
        return
    request.getfixturevalue("real_node_ready")
    with real_node_cluster(tmp_path_factory.mktemp("realnode")) as cluster:
        yield cluster


@contextlib.contextmanager
def fresh_namespace(cluster) -> Iterator[str]:
    name = f"real-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    wait_until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
        what="the namespace's default service account",
    )
    yield name
    # the documented order: the pools first, while the operator runs their finalizers; then the
    # release, whose cluster-wide objects (aggregated roles, admission policy) go with it
    cluster.kubectl("delete", "jobpools", "--all", "-n", name, "--timeout=90s", check=False, timeout=120)
    subprocess.run(
        [cluster.bin("helm"), "uninstall", "jp", "--namespace", name, "--wait", "--timeout", "120s"],
        env=cluster.env,
        capture_output=True,
        timeout=180,
    )
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(real_node) -> Iterator[str]:
    with fresh_namespace(real_node) as name:
        yield name


@pytest.fixture(scope="class")
def one_release(real_node) -> Iterator[str]:
    """One chart install (no persistence, the web page on) shared by the tests of a class:
    installs are what the real-node tests spend their time on."""
    with fresh_namespace(real_node) as name:
        install_chart(real_node, name, "redis.persistence.enabled=false", "ui.enabled=true")
        yield name


@pytest.fixture
def release(real_node, one_release) -> Iterator[str]:
    """The shared install's namespace; the pools a test made are deleted after it (finalizers run)."""
    yield one_release
    real_node.kubectl(
        "delete", "jobpools", "--all", "-n", one_release, "--timeout=90s", check=False, timeout=120
    )


def test_worker_pods_on_the_real_node_run_jobs_from_redis_by_service_dns(real_node, namespace):
    queue_url = redis_with_service(real_node, namespace)
    env = {
        "JOBPOOL_QUEUE_URL": "redis://redis:6379/0",
        "JOBPOOL_NAMESPACE": namespace,
        "JOBPOOL_POOL": "squares",
        "JOBPOOL_HANDLER": "tasks:square",
        "JOBPOOL_CONCURRENCY": "4",
    }
    apply(
        real_node,
        namespace,
        deployment(
            "squares",
            2,
            {
                "name": "worker",
                "image": "jobpool-examples:dev",
                "env": [{"name": name, "value": value} for name, value in env.items()],
                "ports": [{"name": "metrics", "containerPort": 9100}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 2},
            },
            uid=10001,
            labels={"jobpool.dev/pool": "squares"},
        ),
    )
    real_node.kubectl(
        "rollout", "status", "deployment/squares", "-n", namespace, "--timeout=120s", timeout=150
    )

    with Client(queue_url, namespace, "squares") as client:
        ids = client.submit_many(list(range(500)))
        results = [client.result(id, timeout=60) for id in ids]
        # a pod is Ready once its /healthz answers; it registers at its first heartbeat
        wait_until(
            lambda: len(client.status().workers) >= 2,
            timeout=30,
            what="both worker pods registered with the queue",
        )
        workers = client.status().workers
    assert [result.result for result in results] == [n * n for n in range(500)]
    pods = json.loads(
        real_node.kubectl("get", "pods", "-n", namespace, "-l", "app=squares", "-o", "json").stdout
    )["items"]
    assert {pod["spec"]["nodeName"] for pod in pods} == {real_node.node.name}
    subnet = ipaddress.ip_network(real_node.node.pod_subnet)
    assert all(ipaddress.ip_address(pod["status"]["podIP"]) in subnet for pod in pods)
    assert len(workers) == 2, f"both worker pods registered with the queue: {workers}"


def test_the_chart_runs_a_batch_on_real_pods_through_kills_and_deletions(real_node, namespace):
    """The operator in a pod (its ServiceAccount only), the bundled Redis with AOF on a
    PersistentVolume, workers of the example's image reaching Redis by Service DNS; a batch
    completes with nothing lost through kill -9 of a worker container, deletion of a worker
    pod, of the Redis pod and of the operator pod."""
    volume = real_node.node.redis_volume(real_node, namespace, claim="jp-redis")
    install_chart(real_node, namespace)
    phase = real_node.kubectl(
        "get", "pvc", "jp-redis", "-n", namespace, "-o", "jsonpath={.status.phase}"
    ).stdout
    assert phase == "Bound", f"the bundled Redis's claim is {phase}"
    jobs = 5000
    real_node.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "jobpool.dev/v1alpha1",
                "kind": "JobPool",
                "metadata": {"name": "slow"},
                "spec": {
                    "parallelism": 2,
                    "concurrency": 8,
                    "worker": {"image": "jobpool-examples:dev", "handler": "tasks:slow"},
                    "jobs": {"items": [0.05] * jobs},
                },
            }
        ),
    )

    def succeeded() -> int:
        return pool_status(real_node, namespace, "slow").get("jobs", {}).get("succeeded", 0)

    wait_until(lambda: succeeded() >= 200, timeout=180, interval=0.5, what="the batch under way")
    workers = wait_until(
        lambda: (
            len(pod_names(real_node, namespace, "jobpool.dev/pool=slow")) == 2
            and pod_names(real_node, namespace, "jobpool.dev/pool=slow")
        ),
        timeout=60,
        what="two running worker pods",
    )
    kill_container(real_node, namespace, workers[0])
    real_node.kubectl("delete", workers[1], "-n", namespace, "--wait=false")
    (redis_pod,) = pod_names(real_node, namespace, "app.kubernetes.io/name=jobpool-redis")
    done_before_redis_restart = succeeded()
    real_node.kubectl("delete", redis_pod, "-n", namespace, timeout=120)
    (operator_pod,) = pod_names(real_node, namespace, "app.kubernetes.io/name=jobpool-operator")
    real_node.kubectl("delete", operator_pod, "-n", namespace, timeout=120)
    (successor,) = wait_until(
        lambda: pod_names(real_node, namespace, "app.kubernetes.io/name=jobpool-operator"),
        timeout=120,
        interval=0.5,
        what="the operator's successor pod",
    )
    wait_until(
        lambda: real_node.kubectl(
            "get", "lease", "jobpool-operator", "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}"
        ).stdout.startswith(successor.removeprefix("pod/")),
        timeout=120,
        interval=0.5,
        what="the successor holding the operator's Lease",
    )

    real_node.kubectl(
        "wait", "jobpool/slow", "-n", namespace, "--for=condition=Complete", "--timeout=600s", timeout=630
    )
    status = pool_status(real_node, namespace, "slow")
    assert done_before_redis_restart < jobs, "Redis restarted while the batch ran"
    assert status["jobs"]["succeeded"] == jobs and status["jobs"]["deadLettered"] == 0, status
    assert status["queue"]["waiting"] == status["queue"]["inFlight"] == 0, status
    keys = PoolKeys(namespace, "slow")
    with redis.Redis.from_url(bundled_queue_url(real_node, namespace)) as queue_redis:
        assert queue_redis.xlen(keys.results) == jobs, "one result per job: none lost"
        duplicates = int(queue_redis.hget(keys.counters, "duplicates") or 0)
    print(f"{jobs} jobs through the disruptions: {jobs} results, {duplicates} duplicate completions")
    restarts = real_node.kubectl(
        "get", workers[0], "-n", namespace, "-o", "jsonpath={.status.containerStatuses[0].restartCount}"
    ).stdout
    assert int(restarts) >= 1, "the kubelet restarted the killed worker container"
    if volume:
        real_node.kubectl("delete", "pv", volume, "--wait=false")


def test_only_pool_pods_reach_the_bundled_redis(real_node, namespace):
    """The chart's NetworkPolicy, enforced by kube-network-policies on the node."""
    missing = real_node.node.network_policy_missing()
    if missing:
        pytest.skip(missing)
    install_chart(real_node, namespace, "redis.persistence.enabled=false")
    assert reaches(real_node, namespace, "jp-redis", 6379, {"jobpool.dev/pool": "any"})
    assert not reaches(real_node, namespace, "jp-redis", 6379, {"app": "intruder"})


# Run in a worker pod as its command (payload on stdin, result on stdout): what the pod template mounted.
MOUNTS_REPORT = """
import base64, json, os
def claims(path):
    payload = open(path).read().split('.')[1]
    return json.loads(base64.urlsafe_b64decode(payload + '=' * (-len(payload) % 4)))
cloud, api = claims('/var/run/secrets/cloud/token'), claims('/var/run/secrets/kubernetes.io/serviceaccount/token')
print(json.dumps({'model': open('/models/name').read(), 'fetched': open('/cache/fetched').read(),
                  'cloud': [cloud['aud'], cloud['sub']], 'api': [api['aud'], api['sub']],
                  'groups': sorted(os.getgroups())}))
"""


def test_pod_template_volumes_and_service_account_tokens_are_mounted_in_the_worker(
    real_node, namespace, tmp_path
):
    """The operator (a local process) builds worker pods from spec.worker.podTemplate in a namespace that
    enforces the restricted profile: a ConfigMap volume, an emptyDir an init container filled, the
    ServiceAccount's API token and a projected token for another audience, all read by the worker."""
    install_crds(real_node)
    real_node.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    queue_url = redis_with_service(real_node, namespace)
    real_node.kubectl("create", "serviceaccount", "model-reader", "-n", namespace)
    real_node.kubectl("create", "configmap", "model", "--from-literal=name=embeddings-v1", "-n", namespace)
    mount = lambda name, path: {"name": name, "mountPath": path, "readOnly": True}  # noqa: E731
    template = {
        "spec": {
            "nodeSelector": NODE_SELECTOR,
            "serviceAccountName": "model-reader",
            "automountServiceAccountToken": True,
            "securityContext": {"fsGroup": 2000},
            "volumes": [
                {"name": "model", "configMap": {"name": "model"}},
                {"name": "cache", "emptyDir": {}},
                {
                    "name": "cloud-token",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": "sts.example.com",
                                    "expirationSeconds": 3600,
                                    "path": "token",
                                }
                            }
                        ]
                    },
                },
            ],
            "initContainers": [
                {
                    "name": "fetch",
                    "image": "jobpool-examples:dev",
                    "command": ["python3", "-c", "open('/cache/fetched', 'w').write('yes')"],
                    "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
                }
            ],
            "containers": [
                {
                    "name": "worker",
                    "volumeMounts": [
                        mount("model", "/models"),
                        mount("cache", "/cache"),
                        mount("cloud-token", "/var/run/secrets/cloud"),
                    ],
                }
            ],
        }
    }
    operator = start_operator(real_node, namespace, queue_url, tmp_path / "operator.log")
    try:
        real_node.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "jobpool.dev/v1alpha1",
                    "kind": "JobPool",
                    "metadata": {"name": "mounts"},
                    "spec": {
                        "worker": {
                            "image": "jobpool-examples:dev",
                            "command": ["python3", "-c", MOUNTS_REPORT],
                            "podTemplate": template,
                        }
                    },
                }
            ),
        )
        with Client(queue_url, namespace, "mounts") as client:
            result = client.result(client.submit(1), timeout=150)
        assert result is not None, operator.logs()[-3000:]
        account = f"system:serviceaccount:{namespace}:model-reader"
        assert result.result["model"] == "embeddings-v1" and result.result["fetched"] == "yes"
        assert result.result["cloud"] == [["sts.example.com"], account]
        assert result.result["api"][1] == account and 2000 in result.result["groups"]
    finally:
        real_node.kubectl("delete", "jobpool", "mounts", "-n", namespace, "--timeout=60s", check=False)
        operator.stop()


class TestOneRelease:
    """Tests that need the chart as installed by default, sharing one install."""

    def test_scale_down_under_load_deletes_idle_pods_and_keeps_the_busy_one(self, real_node, release):
        """The operator's pod-deletion-cost and the real ReplicaSet controller: 3 -> 1 pods while
        one pod runs a job; the idle pods go, the busy one finishes its job undisturbed."""
        with slow_pool(real_node, release, 3) as client:
            wait_until(lambda: len(client.status().workers) == 3, timeout=60, what="3 registered workers")
            job = client.submit(10)
            busy = wait_until(
                lambda: [w.id for w in client.status().workers if w.busy],
                timeout=30,
                what="a worker running the job",
            )[0]

            def cost(pod: dict) -> int:
                return int(
                    pod["metadata"]
                    .get("annotations", {})
                    .get("controller.kubernetes.io/pod-deletion-cost", "0")
                )

            wait_until(
                lambda: all(
                    cost(pod) > 0 if pod["metadata"]["name"] == busy else cost(pod) <= 0
                    for pod in live_pods(real_node, release, "drain")
                ),
                timeout=30,
                interval=0.5,
                what="the busy pod marked with a higher deletion cost",
            )
            real_node.kubectl("scale", "jobpool/drain", "-n", release, "--replicas=1")
            wait_until(
                lambda: [p["metadata"]["name"] for p in live_pods(real_node, release, "drain")] == [busy],
                timeout=60,
                interval=0.5,
                what="only the busy pod left",
            )
            result = client.result(job, timeout=60)
        assert result is not None and result.attempts == 1, result

    def test_scale_to_zero_drains_the_job_in_flight_and_the_pod_exits_at_once(self, real_node, release):
        with slow_pool(real_node, release, 1) as client:
            wait_until(lambda: len(client.status().workers) == 1, timeout=60, what="a registered worker")
            job = client.submit(5)
            wait_until(lambda: client.status().in_flight == 1, timeout=30, what="the job in flight")
            real_node.kubectl("scale", "jobpool/drain", "-n", release, "--replicas=0")
            result = client.result(job, timeout=60)
            assert result is not None and result.attempts == 1, "the kubelet's SIGTERM drained the job"
            # The job had at most 5 s left; the grace period is drainSeconds (30) plus a margin.
            wait_until(
                lambda: (
                    not json.loads(
                        real_node.kubectl(
                            "get", "pods", "-n", release, "-l", "jobpool.dev/pool=drain", "-o", "json"
                        ).stdout
                    )["items"]
                ),
                timeout=15,
                interval=0.5,
                what="the drained pod gone",
            )

    def test_the_web_page_opens_through_the_api_servers_service_proxy(self, real_node, release):
        """The chart's page (ui.enabled), opened as people open it: `kubectl proxy` and the API
        server's service proxy; it reads through the Redis user the operator keeps for it."""
        import requests

        from tests.helpers import free_port, stop_process

        client = Client(bundled_queue_url(real_node, release), release, "web")
        client.submit({"n": 1}, id="seen-1")
        port = free_port()
        proxy = subprocess.Popen(
            [real_node.bin("kubectl"), "proxy", f"--port={port}"],
            env=real_node.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}/api/v1/namespaces/{release}/services/jp-ui:http/proxy/"
        try:

            def shows_the_pool() -> bool:
                try:
                    return f'data-pool="{release}/web"' in requests.get(base, timeout=5).text
                except requests.RequestException:
                    return False

            # the page finds pools again every 30 s: this one came after the page
            wait_until(
                shows_the_pool, timeout=90, interval=1, what="the pool on the page through kubectl proxy"
            )
            page = requests.get(f"{base}pools/{release}/web", timeout=10)
            assert page.status_code == 200 and "seen-1" in page.text and "may not read" not in page.text
            assert requests.get(f"{base}static/ui.css", timeout=10).status_code == 200
            dead = requests.get(f"{base}pools/{release}/web/dead", timeout=10).text
            assert "actions are turned off" in dead and 'class="replay"' not in dead
            with requests.get(
                f"{base}events", stream=True, timeout=10
            ) as events:  # live figures pass the proxy
                line = next(
                    line for line in events.iter_lines(decode_unicode=True) if line.startswith("data:")
                )
            assert f'"{release}/web"' in line
        finally:
            stop_process(proxy)
            client.close()

    def test_helm_test_and_the_cli_reach_a_pools_queue_through_the_cluster(self, real_node, release):
        """`helm test` runs one job on a probe pool; `jobpool submit squares -n NS --port-forward`: the
        pool's producer Secret (the operator's ACL user on the bundled Redis) found through the
        kubeconfig, the in-cluster Redis reached through a port-forward the CLI opens itself; worker
        pods run the job."""
        tested = subprocess.run(
            [real_node.bin("helm"), "test", "jp", "-n", release, "--timeout", "240s", "--logs"],
            env=real_node.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert "jobpool operator probe: job" in tested.stdout and "ran on pool" in tested.stdout
        wait_until(
            lambda: (
                real_node.kubectl("get", "jobpool", "jp-probe", "-n", release, check=False).returncode != 0
            ),
            timeout=60,
            interval=1,
            what="the probe pool deleted (its finalizer ran)",
        )
        real_node.kubectl(
            "apply",
            "-n",
            release,
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "jobpool.dev/v1alpha1",
                    "kind": "JobPool",
                    "metadata": {"name": "squares"},
                    "spec": {
                        "parallelism": 1,
                        "worker": {"image": "jobpool-examples:dev", "handler": "tasks:square"},
                    },
                }
            ),
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPOOL_")}
        env["KUBECONFIG"] = real_node.kubeconfig

        def jobpool(*argv: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "jobpool.cli", *argv, "squares", "-n", release, "--port-forward"],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        wait_until(
            lambda: jobpool("status").returncode == 0,
            timeout=60,
            interval=1,
            what="the pool's producer Secret (made by the operator)",
        )
        done = jobpool("submit", "--payload", "12", "--id", "twelve")
        assert (done.returncode, done.stdout) == (0, "twelve\n"), done.stderr
        wait_until(
            lambda: json.loads(jobpool("results", "-o", "json").stdout or "[]"),
            timeout=120,
            interval=1,
            what="the job's result",
        )
        assert json.loads(jobpool("results", "-o", "json").stdout) == [
            {"id": "twelve", "result": 144, "attempts": 1}
        ]
        with redis.Redis.from_url(bundled_queue_url(real_node, release)) as admin:
            assert admin.hget(PoolKeys(release, "squares").counters, "submitted") == b"1"


def test_helm_upgrade_from_the_previous_chart_with_jobs_in_flight_loses_none(real_node, namespace, tmp_path):
    """The upgrade path of docs/operations.md: the previous chart installed with a pool at work, the CRD
    applied (Helm never upgrades crds/), `helm upgrade` to this chart while jobs are in flight:
    every job finishes, none dead-lettered. Only this version's operator image is built here, and
    it refuses an older CRD: this CRD is in place before the previous chart (whose crds/ Helm
    then skips), as on a cluster where an earlier install put it, whatever ran before."""
    real_node.node.redis_volume(real_node, namespace, claim="jp-redis")
    real_node.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    subprocess.run(["tar", "-xzf", str(PREVIOUS_CHART), "-C", str(tmp_path)], check=True)
    install_chart(real_node, namespace, chart=tmp_path / "previous" / "charts" / "jobpool")
    with slow_pool(real_node, namespace, 2) as client:
        ids = client.submit_many([0.5] * 60)
        wait_until(lambda: client.status().in_flight > 0, timeout=60, what="jobs in flight")
        real_node.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
        install_chart(real_node, namespace, action="upgrade")

        def finished():
            try:
                status = client.status()
            except QueueUnavailable:  # the upgrade rolls the bundled Redis's pod too
                return None
            return status if status.succeeded + status.dead_lettered == 60 else None

        status = wait_until(finished, timeout=180, interval=1, what="every job finished")
        assert all(client.result(job) is not None for job in ids), "every job has its result"
    assert (status.succeeded, status.dead_lettered) == (60, 0), status
    chart = json.loads(
        real_node.kubectl("get", "deployment", "jp-operator", "-n", namespace, "-o", "json").stdout
    )["metadata"]["labels"]["helm.sh/chart"]
    assert chart == "jobpool-0.2.0"


def test_uninstall_refuses_to_strand_pools_and_keeps_the_redis_data(real_node, namespace):
    """`helm uninstall` with a pool left fails in its pre-delete hook and removes nothing; once the
    pool is deleted (the operator, still running, cleans its queue) the uninstall completes; the
    Redis claim is kept, and a reinstall of the same release adopts it with the queues' data."""
    real_node.node.redis_volume(real_node, namespace, claim="jp-redis")
    install_chart(real_node, namespace)
    pool = slow_pool(real_node, namespace, 1)
    other = Client(bundled_queue_url(real_node, namespace), namespace, "survivor")
    other.submit("kept in the AOF", id="kept")
    other.close()
    uninstall = [real_node.bin("helm"), "uninstall", "jp", "-n", namespace, "--wait", "--timeout", "180s"]

    refused = subprocess.run(uninstall, env=real_node.env, capture_output=True, text=True, timeout=240)
    assert refused.returncode != 0 and "job jp-guard-pools failed" in refused.stderr, refused.stderr
    why = real_node.kubectl("logs", "job/jp-guard-pools", "-n", namespace).stdout
    assert f"1 JobPool(s) still carry the finalizer jobpool.dev/queue-cleanup ({namespace}/drain)" in why
    assert real_node.kubectl("get", "jobpool", "drain", "-n", namespace, check=False).returncode == 0
    assert (
        real_node.kubectl(
            "rollout", "status", "deployment/jp-operator", "-n", namespace, "--timeout=10s", check=False
        ).returncode
        == 0
    ), "the operator still runs"
    with pool as client:
        job = client.submit(1)
        assert client.result(job, timeout=60) is not None, "the pool still works"

    # the documented order: the pools first, while the operator runs their finalizers
    real_node.kubectl("delete", "jobpool", "drain", "-n", namespace, "--timeout=90s", timeout=120)
    done = subprocess.run(uninstall, env=real_node.env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert real_node.kubectl("get", "jobpool", "drain", "-n", namespace, check=False).returncode != 0
    claim = json.loads(real_node.kubectl("get", "pvc", "jp-redis", "-n", namespace, "-o", "json").stdout)
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    install_chart(real_node, namespace)
    with Client(bundled_queue_url(real_node, namespace), namespace, "survivor") as client:
        assert client.status().waiting == 1, "the reinstall adopted the kept claim and its AOF"
    with Client(bundled_queue_url(real_node, namespace), namespace, "drain") as client:
        assert client.status().submitted == 0, "the deleted pool's keys were cleaned by its finalizer"


def redis_exec(
    cluster, namespace: str, script: str, input: bytes | None = None, ends_redis: bool = False
) -> bytes:
    """`sh -c script` in the bundled Redis's container (the backup and restore steps of docs/operations.md);
    `ends_redis`: the script shuts Redis down, which ends the container and the exec with 137."""
    done = subprocess.run(
        [cluster.bin("kubectl"), "exec", "-i", "-n", namespace, "deploy/jp-redis", "--", "sh", "-c", script],
        env=cluster.env,
        input=input,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode in ((0, 137) if ends_redis else (0,)), done.stderr.decode()
    return done.stdout


def test_a_backup_of_the_aof_restored_into_a_new_install_brings_the_jobs_back(real_node, namespace):
    """docs/operations.md, "The bundled Redis: backup, restore": the AOF directory copied out of the
    running Redis, a new install, the copy put in place and Redis restarted: the waiting jobs come
    back and run."""
    install_chart(real_node, namespace, "redis.persistence.enabled=false")
    real_node.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "jobpool.dev/v1alpha1",
                "kind": "JobPool",
                "metadata": {"name": "kept"},
                "spec": {
                    "parallelism": 0,
                    "worker": {"image": "jobpool-examples:dev", "handler": "tasks:square"},
                },
            }
        ),
    )
    with Client(bundled_queue_url(real_node, namespace), namespace, "kept") as client:
        ids = client.submit_many(list(range(50)))
    # backup: compact the AOF, wait for the rewrite, stream the directory out
    redis_exec(
        real_node,
        namespace,
        "redis-cli BGREWRITEAOF && while redis-cli INFO persistence | "
        "grep -q 'aof_rewrite_in_progress:1'; do sleep 0.2; done",
    )
    backup = redis_exec(real_node, namespace, "tar -C /data -cf - appendonlydir")

    # a new install: the old one goes (the pool first, as "Uninstalling" says)
    real_node.kubectl("delete", "jobpool", "kept", "-n", namespace, "--timeout=90s", timeout=120)
    helm(real_node, "uninstall", "jp", "-n", namespace, "--wait", "--timeout", "120s")
    install_chart(real_node, namespace, "redis.persistence.enabled=false")
    with Client(bundled_queue_url(real_node, namespace), namespace, "kept") as client:
        assert client.status().submitted == 0, "a new, empty Redis"
    # restore: the copy in place of the new AOF, Redis restarted without saving
    redis_exec(
        real_node,
        namespace,
        "rm -rf /data/restore && mkdir /data/restore && tar -C /data/restore -xf - "
        "&& rm -rf /data/appendonlydir && mv /data/restore/appendonlydir /data/ "
        "&& (redis-cli SHUTDOWN NOSAVE || true)",
        input=backup,
        ends_redis=True,
    )
    wait_until(
        lambda: (
            real_node.kubectl(
                "exec", "-n", namespace, "deploy/jp-redis", "--", "redis-cli", "ping", check=False
            ).stdout.strip()
            == "PONG"
        ),
        timeout=90,
        interval=1,
        what="Redis restarted on the restored AOF",
    )
    bundled_queue_url(real_node, namespace)  # waits for it through the Service (its pod Ready again)
    real_node.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "jobpool.dev/v1alpha1",
                "kind": "JobPool",
                "metadata": {"name": "kept"},
                "spec": {
                    "parallelism": 2,
                    "worker": {"image": "jobpool-examples:dev", "handler": "tasks:square"},
                },
            }
        ),
    )
    with Client(bundled_queue_url(real_node, namespace), namespace, "kept") as client:
        results = [client.result(job, timeout=120) for job in ids]
    assert [r.result for r in results] == [n * n for n in range(50)]


def test_external_metrics_survive_an_upgrade_with_two_operator_replicas(real_node, namespace):
    """externalMetrics with 2 operator replicas: the Service routes to the leader only (its
    EndpointSlice), an HPA reads jobpool_backlog; `helm upgrade` rolls both operator pods (a new
    leader), the certificate stays the same, and the HPA reads the metric again through the new
    leader, with the APIService never left pointing at a standby."""
    install_chart(
        real_node, namespace, "redis.persistence.enabled=false", "externalMetrics.enabled=true", "replicas=2"
    )
    try:
        real_node.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "jobpool.dev/v1alpha1",
                    "kind": "JobPool",
                    "metadata": {"name": "thumbnails"},
                    # one pod at least: an HPA whose target has 0 replicas does not scale (ScalingActive False)
                    # drainSeconds 1: the teardown does not wait out the minute-long jobs
                    "spec": {
                        "parallelism": 1,
                        "drainSeconds": 1,
                        "worker": {"image": "jobpool-examples:dev", "handler": "tasks:slow"},
                    },
                }
            ),
        )
        real_node.kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples/06-hpa/hpa.yaml"))
        with Client(bundled_queue_url(real_node, namespace), namespace, "thumbnails") as client:
            client.submit_many([60] * 8)  # 8 jobs of a minute: the backlog stays while we look
        path = (
            f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/jobpool_backlog"
            f"?labelSelector=pool%3Dthumbnails"
        )

        def backlog() -> int | None:
            done = real_node.kubectl("get", "--raw", path, check=False)
            items = json.loads(done.stdout)["items"] if done.returncode == 0 else []
            return int(items[0]["value"]) if items else None

        def leader_pod() -> str:
            holder = json.loads(
                real_node.kubectl("get", "lease", "jobpool-operator", "-n", namespace, "-o", "json").stdout
            )["spec"]["holderIdentity"]
            return holder.rsplit("-", 1)[0]

        def routed_to() -> list[str]:
            slice_ = json.loads(
                real_node.kubectl(
                    "get", "endpointslice", "jp-operator-external-metrics", "-n", namespace, "-o", "json"
                ).stdout
            )
            return [e["targetRef"]["name"] for e in slice_["endpoints"]]

        def hpa_reads() -> bool:
            """The HPA's last sync read the metric (ScalingActive True, ValidMetricFound)."""
            status = json.loads(
                real_node.kubectl("get", "hpa", "thumbnails", "-n", namespace, "-o", "json").stdout
            ).get("status", {})
            active = [c for c in status.get("conditions") or [] if c["type"] == "ScalingActive"]
            return (
                bool(active)
                and active[0]["status"] == "True"
                and any(
                    m.get("external", {}).get("current", {}).get("averageValue")
                    for m in status.get("currentMetrics") or []
                )
            )

        wait_until(
            lambda: backlog() is not None,
            timeout=120,
            interval=2,
            what="jobpool_backlog through the APIService",
        )
        assert routed_to() == [leader_pod()]
        wait_until(hpa_reads, timeout=120, interval=2, what="the HPA reading jobpool_backlog")
        certificate = real_node.kubectl(
            "get",
            "secret",
            "jp-operator-external-metrics-tls",
            "-n",
            namespace,
            "-o",
            "jsonpath={.data.tls\\.crt}",
        ).stdout
        before = leader_pod()

        install_chart(
            real_node,
            namespace,
            "redis.persistence.enabled=false",
            "externalMetrics.enabled=true",
            "replicas=2",
            "logLevel=DEBUG",
            action="upgrade",
        )  # rolls both operator pods
        wait_until(
            lambda: leader_pod() != before and routed_to() == [leader_pod()],
            timeout=120,
            interval=2,
            what="the new leader routing the Service to itself",
        )
        wait_until(
            lambda: backlog() is not None, timeout=120, interval=2, what="jobpool_backlog after the upgrade"
        )
        wait_until(
            hpa_reads, timeout=120, interval=2, what="the HPA reading jobpool_backlog after the upgrade"
        )
        assert (
            real_node.kubectl(
                "get",
                "secret",
                "jp-operator-external-metrics-tls",
                "-n",
                namespace,
                "-o",
                "jsonpath={.data.tls\\.crt}",
            ).stdout
            == certificate
        ), "the certificate was kept"
    finally:
        real_node.kubectl("delete", "hpa", "--all", "-n", namespace, check=False)
