"""Worker pods from the project's images on the real node: kubelet, containerd, CNI bridge,
kube-proxy Services, CoreDNS, restricted security context with a read-only root filesystem."""
from __future__ import annotations

import ipaddress
import json
import secrets

import pytest

from jobpool import Client
from tests.fixtures.cluster import localcluster
from tests.fixtures.real_node import real_node_cluster
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.realnode

NODE_SELECTOR = {localcluster.NODE_LABEL: "real"}


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
    real_node.kubectl("delete", "namespace", name, "--wait=false", check=False)


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
