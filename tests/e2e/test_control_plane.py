"""The local control plane is a real Kubernetes: controllers, scheduling, CEL, RBAC, Helm.

Every test runs against the session's kube-apiserver/etcd/controller-manager/scheduler/kwok
(tests/fixtures/cluster.py) in its own namespace.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.cluster import REPO_ROOT, localcluster, namespace_name
from tests.helpers import wait_until

CHART = Path(__file__).parent / "testdata" / "tiny-chart"
# The pin in the wrapper module is the version the built binaries must report.
KUBE_VERSION = re.search(
    r"^require k8s\.io/kubernetes (v\S+)$", (REPO_ROOT / "tools" / "kubernetes" / "go.mod").read_text(), re.M
).group(1)


def get_json(kube_cluster, *args: str) -> dict:
    return json.loads(kube_cluster.kubectl("get", *args, "-o", "json").stdout)


def deployment(name: str, replicas: int) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1.0"}]},
                },
            },
        }
    )


@pytest.mark.parametrize(
    "test_name",
    [
        "test_x",
        "test_scale[Up-10]",
        "test_" + "very_long_name_" * 8,
        "TEST__Weird..Chars__",
    ],
)
def test_namespace_names_are_valid_unique_labels(test_name):
    names = {namespace_name(test_name) for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert len(name) <= 63
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name


def test_server_reports_the_pinned_kubernetes_version(kube_cluster):
    versions = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == KUBE_VERSION
    assert versions["clientVersion"]["gitVersion"] == KUBE_VERSION


def test_deployment_reaches_its_ready_replicas_on_kwok_nodes(kube_cluster, kube_namespace):
    kube_cluster.kubectl("apply", "-n", kube_namespace, "-f", "-", input=deployment("web", 3))
    kube_cluster.kubectl("rollout", "status", "-n", kube_namespace, "deployment/web", "--timeout=60s")

    status = get_json(kube_cluster, "-n", kube_namespace, "deployment/web")["status"]
    assert status["readyReplicas"] == 3
    pods = get_json(kube_cluster, "-n", kube_namespace, "pods", "-l", "app=web")["items"]
    assert len(pods) == 3
    for pod in pods:
        assert pod["spec"]["nodeName"].startswith("kwok-node-"), pod["spec"]
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"]
        # The ServiceAccount admission plugin mounted the namespace's default account.
        assert pod["spec"]["serviceAccountName"] == "default"


def test_deleting_the_owner_garbage_collects_its_dependents(kube_cluster, kube_namespace):
    ns = kube_namespace
    kube_cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment("owned", 2))
    kube_cluster.kubectl("rollout", "status", "-n", ns, "deployment/owned", "--timeout=60s")
    owner_uid = get_json(kube_cluster, "-n", ns, "deployment/owned")["metadata"]["uid"]
    replica_sets = get_json(kube_cluster, "-n", ns, "replicasets", "-l", "app=owned")["items"]
    assert [rs["metadata"]["ownerReferences"][0]["uid"] for rs in replica_sets] == [owner_uid]

    kube_cluster.kubectl("delete", "-n", ns, "deployment/owned", "--cascade=background", "--wait=false")

    def dependents_left():
        left = [
            item["metadata"]["name"]
            for kind in ("replicasets", "pods")
            for item in get_json(kube_cluster, "-n", ns, kind, "-l", "app=owned")["items"]
        ]
        return None if left else "all gone"

    wait_until(
        dependents_left,
        timeout=60,
        interval=0.2,
        what="the garbage collector to delete the ReplicaSet and its Pods",
    )


def test_crd_cel_rule_rejects_a_bad_object_with_the_rules_message(kube_cluster, kube_namespace):
    group = f"{kube_namespace}.jobpool.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"ranges.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "ranges", "singular": "range", "kind": "Range"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.min <= self.max",
                                            "message": "min must not exceed max",
                                        },
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    try:
        kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/ranges.{group}", "--timeout=30s")

        def range_object(name: str, low: int, high: int) -> str:
            return json.dumps(
                {
                    "apiVersion": f"{group}/v1",
                    "kind": "Range",
                    "metadata": {"name": name},
                    "spec": {"min": low, "max": high},
                }
            )

        # Discovery of a new group can lag behind Established; retry the good object until it lands.
        wait_until(
            lambda: (
                kube_cluster.kubectl(
                    "apply", "-n", kube_namespace, "-f", "-", input=range_object("good", 1, 5), check=False
                ).returncode
                == 0
            ),
            timeout=30,
            interval=0.2,
            what="the new CRD to be served",
        )

        bad = kube_cluster.kubectl(
            "apply", "-n", kube_namespace, "-f", "-", input=range_object("bad", 9, 2), check=False
        )
        assert bad.returncode != 0
        assert "min must not exceed max" in bad.stderr
        assert "Invalid value" in bad.stderr
        missing = kube_cluster.kubectl("get", "-n", kube_namespace, f"ranges.{group}/bad", check=False)
        assert "NotFound" in missing.stderr
    finally:
        kube_cluster.kubectl("delete", f"crd/ranges.{group}", "--wait=false", check=False)


def test_crd_status_and_scale_subresources(kube_cluster, kube_namespace):
    group = f"{kube_namespace}.jobpool.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"pools.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "pools", "singular": "pool", "kind": "Pool"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                        },
                    },
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                                "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                            },
                        }
                    },
                }
            ],
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    try:
        kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/pools.{group}", "--timeout=30s")
        pool = {
            "apiVersion": f"{group}/v1",
            "kind": "Pool",
            "metadata": {"name": "p"},
            "spec": {"replicas": 1},
            "status": {"replicas": 7},
        }
        wait_until(
            lambda: (
                kube_cluster.kubectl(
                    "create", "-n", kube_namespace, "-f", "-", input=json.dumps(pool), check=False
                ).returncode
                == 0
            ),
            timeout=30,
            interval=0.2,
            what="the new CRD to be served",
        )
        resource = f"pools.{group}/p"
        # With a status subresource the main endpoint ignores status.
        assert "status" not in get_json(kube_cluster, "-n", kube_namespace, resource)

        kube_cluster.kubectl("scale", "-n", kube_namespace, resource, "--replicas=4")
        kube_cluster.kubectl(
            "patch",
            "-n",
            kube_namespace,
            resource,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"replicas": 3}}),
        )
        stored = get_json(kube_cluster, "-n", kube_namespace, resource)
        assert (stored["spec"]["replicas"], stored["status"]["replicas"]) == (4, 3)
        scale = json.loads(
            kube_cluster.kubectl(
                "get", "--raw", f"/apis/{group}/v1/namespaces/{kube_namespace}/pools/p/scale"
            ).stdout
        )
        assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (4, 3)
    finally:
        kube_cluster.kubectl("delete", f"crd/pools.{group}", "--wait=false", check=False)


def test_service_account_without_rbac_permissions_is_denied(kube_cluster, kube_namespace, tmp_path):
    ns = kube_namespace
    kube_cluster.kubectl("create", "serviceaccount", "-n", ns, "reader")
    reader = f"system:serviceaccount:{ns}:reader"

    denied = kube_cluster.kubectl("get", "pods", "-n", ns, f"--as={reader}", check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr and reader in denied.stderr

    kube_cluster.kubectl("create", "role", "-n", ns, "pod-reader", "--verb=get,list", "--resource=pods")
    kube_cluster.kubectl(
        "create",
        "rolebinding",
        "-n",
        ns,
        "reader-reads-pods",
        "--role=pod-reader",
        f"--serviceaccount={ns}:reader",
    )

    # A real bound token, signed by the service-account key and checked by the API server.
    token = kube_cluster.kubectl("create", "token", "-n", ns, "reader", "--duration=10m").stdout.strip()
    admin = yaml.safe_load(Path(kube_cluster.kubeconfig).read_text())
    token_config = tmp_path / "reader.kubeconfig"
    token_config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": admin["clusters"],
                "users": [{"name": "reader", "user": {"token": token}}],
                "contexts": [
                    {"name": "reader", "context": {"cluster": admin["clusters"][0]["name"], "user": "reader"}}
                ],
                "current-context": "reader",
            }
        )
    )
    as_reader = ("--kubeconfig", str(token_config))

    def rbac_allows_pods():
        return kube_cluster.kubectl("get", "pods", "-n", ns, *as_reader, check=False).returncode == 0

    wait_until(rbac_allows_pods, timeout=30, interval=0.2, what="the RoleBinding to take effect")
    whoami = json.loads(kube_cluster.kubectl("auth", "whoami", "-o", "json", *as_reader).stdout)
    assert whoami["status"]["userInfo"]["username"] == reader

    secrets = kube_cluster.kubectl("get", "secrets", "-n", ns, *as_reader, check=False)
    assert secrets.returncode != 0 and "Forbidden" in secrets.stderr
    other = kube_cluster.kubectl("get", "pods", "-n", "default", *as_reader, check=False)
    assert other.returncode != 0 and "Forbidden" in other.stderr


def test_restricted_pod_security_is_enforced(kube_cluster, kube_namespace):
    kube_cluster.kubectl(
        "label", "namespace", kube_namespace, "pod-security.kubernetes.io/enforce=restricted"
    )

    def pod(name: str, container: dict) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1.0", **container}]},
            }
        )

    privileged = kube_cluster.kubectl(
        "apply",
        "-n",
        kube_namespace,
        "-f",
        "-",
        check=False,
        input=pod("privileged", {"securityContext": {"privileged": True}}),
    )
    assert privileged.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in privileged.stderr
    restricted = {
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    }
    kube_cluster.kubectl("apply", "-n", kube_namespace, "-f", "-", input=pod("restricted", restricted))
    kube_cluster.kubectl(
        "wait", "-n", kube_namespace, "--for=condition=Ready", "pod/restricted", "--timeout=60s"
    )


def test_helm_template_and_install_a_chart(kube_cluster, kube_namespace, tmp_path):
    env = dict(kube_cluster.env)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(tmp_path / var.lower())
    helm = kube_cluster.bin("helm")

    def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([helm, *args], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
        return result

    rendered = list(
        yaml.safe_load_all(run_helm("template", "demo", str(CHART), "--set", "greeting=bonjour").stdout)
    )
    by_kind = {doc["kind"]: doc for doc in rendered if doc}
    assert by_kind["ConfigMap"]["data"]["greeting"] == "bonjour"
    assert by_kind["Deployment"]["spec"]["replicas"] == 2

    run_helm(
        "install",
        "demo",
        str(CHART),
        "-n",
        kube_namespace,
        "--set",
        "replicas=3",
        "--wait",
        "--timeout",
        "90s",
    )
    releases = json.loads(run_helm("list", "-n", kube_namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("demo", "deployed")]
    settings = get_json(kube_cluster, "-n", kube_namespace, "configmap/demo-settings")["data"]
    assert settings == {"greeting": "hello", "kubeVersion": KUBE_VERSION}
    assert get_json(kube_cluster, "-n", kube_namespace, "deployment/demo")["status"]["readyReplicas"] == 3

    run_helm("uninstall", "demo", "-n", kube_namespace, "--wait", "--timeout", "60s")
    gone = kube_cluster.kubectl(
        "get", "-n", kube_namespace, "deployment/demo", "configmap/demo-settings", check=False
    )
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def _port_is_free(port: int) -> bool:
    """True if nothing listens on the port (TIME_WAIT leftovers of closed connections don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _component_pids_and_ports(cluster_dir: Path) -> tuple[list[int], list[int]]:
    state = json.loads((cluster_dir / "cluster.json").read_text())
    return list(state["pids"].values()), list(state["ports"].values())


def _gone(pids: list[int]) -> bool:
    return not any(localcluster._pid_alive(pid) for pid in pids)


@pytest.mark.slow
@pytest.mark.usefixtures("kube_cluster")
def test_a_second_cluster_runs_side_by_side_and_down_leaves_nothing_behind(tmp_path):
    script = str(REPO_ROOT / "tools" / "localcluster.py")
    cluster_dir = tmp_path / "second"
    up = subprocess.run(
        [sys.executable, script, "up", "--dir", str(cluster_dir), "--nodes", "1"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert up.returncode == 0, up.stderr
        assert "cluster ready in" in up.stdout
        pids, ports = _component_pids_and_ports(cluster_dir)
        assert len(pids) == 5
        status = subprocess.run(
            [sys.executable, script, "status", "--dir", str(cluster_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        nodes = subprocess.run(
            [
                str(localcluster.DEFAULT_BIN_DIR / "kubectl"),
                "get",
                "nodes",
                "-o",
                "name",
                f"--kubeconfig={cluster_dir / 'kubeconfig'}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert nodes.stdout.split() == ["node/kwok-node-0"]
    finally:
        down = subprocess.run(
            [sys.executable, script, "down", "--dir", str(cluster_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert down.returncode == 0, down.stderr
    assert _gone(pids), "components still running after `down`"
    assert all(_port_is_free(port) for port in ports), "a port is still bound after `down`"


@pytest.mark.slow
@pytest.mark.usefixtures("kube_cluster")
def test_components_die_with_a_killed_test_process(tmp_path):
    cluster_dir = tmp_path / "orphan"
    starter = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(REPO_ROOT / 'tools')!r})\n"
        "import localcluster\n"
        f"localcluster.LocalCluster(root={str(cluster_dir)!r}, nodes=1, bind_to_parent=True).start()\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        pids, ports = _component_pids_and_ports(cluster_dir)
        assert not _gone(pids)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    wait_until(
        lambda: _gone(pids), timeout=30, interval=0.2, what="the components of a SIGKILLed parent to exit"
    )
    wait_until(
        lambda: all(_port_is_free(p) for p in ports),
        timeout=30,
        interval=0.2,
        what="their ports to be released",
    )
