"""Cluster autoscaling with Karpenter (its kwok provider) on the local control plane.

The GPU pool of examples/07-karpenter has no node that can hold its pods: they wait, the pool
says WaitingForCapacity, Karpenter adds kwok nodes, the pods become Ready and local workers
(scripts/demo_cluster_pods.py, one per Ready pod, named after it) drain the backlog. A pod
holding a job carries karpenter.sh/do-not-disrupt, so Karpenter keeps its underused node
until the job ends, and replaces it by a cheaper one only once the pod is idle; then the pool
is back at zero and Karpenter removes every node it added.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import jobpool
from tests.e2e.operator_harness import PodStandIns, condition, get, items
from tests.fixtures.cluster import _summary
from tests.helpers import ROOT, free_port, stop_process, wait_until

EXAMPLE = ROOT / "examples/07-karpenter"
NODEPOOL = "jobpool-gpu"
NODEPOOL_LABEL = f"karpenter.sh/nodepool={NODEPOOL}"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
POOL = "renders"
# Long enough for Karpenter to remove the emptied nodes and find the busy one Consolidatable while the job runs.
LONG_JOB_SECONDS = 80
SHORT_JOBS = 5


def karpenter_module_dir() -> Path:
    """The pinned Karpenter module in Go's module cache (its CRDs), fetched by `make tools`."""
    result = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/karpenter"],
        cwd=ROOT / "tools/karpenter",
        env={**os.environ, "GOTOOLCHAIN": "auto"},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(
            f"the Karpenter module is not downloaded (run `make tools`): {result.stderr.strip()}",
            pytrace=False,
        )
    return Path(result.stdout.strip())


def karpenter_nodes(cluster) -> dict[str, dict]:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-l", NODEPOOL_LABEL, "-o", "json").stdout)["items"]
    return {node["metadata"]["name"]: node for node in nodes}


def ready(obj: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", [])
    )


class Karpenter:
    """Karpenter's kwok build as a local process with the cluster's admin kubeconfig."""

    def __init__(self, cluster, log_path: Path):
        self.cluster, self.log_path = cluster, log_path
        self.health_port = free_port()
        env = {
            **cluster.env,
            "DISABLE_LEADER_ELECTION": "true",
            "METRICS_PORT": str(free_port()),
            "HEALTH_PROBE_PORT": str(self.health_port),
            "INSTANCE_TYPES_FILE_PATH": str(EXAMPLE / "instance-types.json"),
            # One scale-up's pods arrive within a second or two: launch for them after 2 s at most.
            "BATCH_MAX_DURATION": "2s",
        }
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [cluster.bin("karpenter")],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def ready(self) -> bool:
        assert self.process.poll() is None, f"karpenter exited:\n{self.logs()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture(scope="module")
def karpenter(jobpool_crds, tmp_path_factory):
    cluster = jobpool_crds
    module = karpenter_module_dir()
    cluster.kubectl(
        "apply", "--server-side", "-f", str(module / "pkg/apis/crds"), "-f", str(module / "kwok/apis/crds")
    )
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/nodepools.karpenter.sh",
        "crd/nodeclaims.karpenter.sh",
        "crd/kwoknodeclasses.karpenter.kwok.sh",
    )
    running = Karpenter(cluster, tmp_path_factory.mktemp("karpenter") / "karpenter.log")
    try:
        wait_until(running.ready, timeout=60, what="karpenter /readyz")
        cluster.kubectl("apply", "-f", str(EXAMPLE / "nodepool.yaml"))
        yield running
    finally:
        # Karpenter drains and deletes its own nodes; anything left after it stops loses its finalizers.
        cluster.kubectl("delete", "-f", str(EXAMPLE / "nodepool.yaml"), "--wait=false", check=False)
        deadline = time.monotonic() + 60
        while running.process.poll() is None and karpenter_nodes(cluster) and time.monotonic() < deadline:
            time.sleep(0.5)
        running.stop()
        leftovers = [
            cluster.kubectl("get", kind, "-l", NODEPOOL_LABEL, "-o", "name", check=False).stdout.split()
            for kind in ("nodeclaims", "nodes")
        ]
        for names in [*leftovers, [f"kwoknodeclass/{NODEPOOL}"]]:
            for name in names:
                cluster.kubectl(
                    "patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False
                )
                cluster.kubectl("delete", name, "--wait=false", check=False)
        decisions = [
            line[:400]
            for line in running.logs().splitlines()
            if '"created nodeclaim"' in line or '"disrupting node(s)"' in line
        ]
        print("---- karpenter's decisions ----\n" + "\n".join(decisions))
        print("---- karpenter log (tail) ----\n" + running.logs()[-3000:])


def worker_pods(cluster, namespace: str) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in items(cluster, namespace, "pods", f"jobpool.dev/pool={POOL}")}


def nodeclaim_of(cluster, node: str) -> dict | None:
    claims = json.loads(cluster.kubectl("get", "nodeclaims", "-o", "json").stdout)["items"]
    return next((c for c in claims if c.get("status", {}).get("nodeName") == node), None)


def annotations(pod: dict) -> dict[str, str]:
    return pod["metadata"].get("annotations") or {}


def set_min_workers(cluster, namespace: str, count: int) -> None:
    cluster.kubectl(
        "patch",
        "jobpool",
        POOL,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"autoscaling": {"minWorkers": count}}}),
    )


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_karpenter_adds_nodes_for_a_backlog_keeps_busy_ones_and_removes_them_when_drained(
    karpenter, operator, jobpool_crds, kube_namespace, redis_server, tmp_path
):
    cluster, ns = jobpool_crds, kube_namespace
    cluster.kubectl("apply", "-n", ns, "-f", str(EXAMPLE / "jobpool.yaml"))
    wait_until(
        lambda: condition(get(cluster, ns, "jobpool", POOL), "Ready").get("status") == "True",
        timeout=60,
        what="the pool Ready at zero pods",
    )
    assert not karpenter_nodes(cluster)
    player = PodStandIns(cluster, ns, POOL, tmp_path)
    client = jobpool.Client(redis_server.url, ns, POOL)
    marks: dict[str, float] = {}
    try:
        started = time.monotonic()
        long_id, *_ = client.submit_many([LONG_JOB_SECONDS] + [1] * SHORT_JOBS)

        # No node has a GPU: the pods wait, and the pool says so.
        waiting = wait_until(
            lambda: (
                (c := condition(get(cluster, ns, "jobpool", POOL), "Progressing")).get("reason")
                == "WaitingForCapacity"
                and c
            ),
            timeout=30,
            what="Progressing reason WaitingForCapacity",
        )
        marks["pods Pending (WaitingForCapacity)"] = time.monotonic() - started
        assert "Insufficient nvidia.com/gpu" in waiting["message"], waiting

        wait_until(lambda: karpenter_nodes(cluster), timeout=60, what="Karpenter to create nodes")
        marks["first node created"] = time.monotonic() - started

        def all_ready_on_new_nodes():
            pods, nodes = worker_pods(cluster, ns), karpenter_nodes(cluster)
            return (
                len(pods) == 1 + SHORT_JOBS
                and all(ready(p) and p["spec"].get("nodeName") in nodes for p in pods.values())
                and nodes
            )

        nodes = wait_until(all_ready_on_new_nodes, timeout=120, what="6 Ready pods on Karpenter's nodes")
        marks["all pods Ready on new nodes"] = time.monotonic() - started
        assert len(nodes) >= 2 and all(ready(node) for node in nodes.values())
        assert all(node["status"]["allocatable"]["nvidia.com/gpu"] in ("1", "4") for node in nodes.values())

        # The short jobs end; the pod still holding the long one is marked, the others are not.
        def one_busy_pod():
            if client.status().succeeded < SHORT_JOBS:
                return None
            pods = worker_pods(cluster, ns)
            marked = [
                p for p in pods.values() if (p["metadata"].get("annotations") or {}).get(DO_NOT_DISRUPT)
            ]
            return len(marked) == 1 and marked[0]

        busy = wait_until(one_busy_pod, timeout=60, what="one pod marked busy once the short jobs are done")
        assert busy["metadata"]["annotations"][SAFE_TO_EVICT] == "false"
        busy_pod, busy_node = busy["metadata"]["name"], busy["spec"]["nodeName"]

        # Karpenter removes the emptied nodes. The busy pod's node (4 GPUs for 1 pod, where a 1-GPU node
        # costs half) becomes a consolidation candidate, yet stays while the job runs.
        wait_until(
            lambda: list(karpenter_nodes(cluster)) == [busy_node],
            timeout=LONG_JOB_SECONDS,
            what="only the busy pod's node left",
        )
        marks["emptied nodes removed, busy node kept"] = time.monotonic() - started
        wait_until(
            lambda: condition(nodeclaim_of(cluster, busy_node), "Consolidatable").get("status") == "True",
            timeout=LONG_JOB_SECONDS,
            what="the busy pod's node Consolidatable",
        )
        marks["busy node Consolidatable"] = time.monotonic() - started
        assert client.status().in_flight == 1, "the long job ended before its node became Consolidatable"
        # One idle pod stays after the job, to show that the node was kept only for the job.
        set_min_workers(cluster, ns, 1)

        # The long job ran once, to the end, on the pod that started it: consolidation killed nothing.
        result = client.result(long_id, timeout=LONG_JOB_SECONDS + 30)
        assert result is not None and result.attempts == 1 and result.result == LONG_JOB_SECONDS
        assert busy_node in karpenter_nodes(cluster) and busy_pod in worker_pods(cluster, ns)
        assert client.status().retried == 0
        marks["long job done on its first attempt"] = time.monotonic() - started

        # Idle, the pod loses its marks, and Karpenter replaces its node by a cheaper 1-GPU node at once.
        wait_until(
            lambda: (
                not {DO_NOT_DISRUPT, SAFE_TO_EVICT}
                & set(annotations(worker_pods(cluster, ns).get(busy_pod) or {"metadata": {}}))
            ),
            timeout=10,
            what="the marks removed",
        )

        def idle_pod_on_a_cheaper_node():
            pods, nodes = worker_pods(cluster, ns), karpenter_nodes(cluster)
            return (
                busy_node not in nodes
                and len(pods) == 1
                and all(
                    ready(p)
                    and nodes.get(p["spec"].get("nodeName"), {})
                    .get("metadata", {})
                    .get("labels", {})
                    .get("node.kubernetes.io/instance-type")
                    == "gpu-1"
                    for p in pods.values()
                )
            )

        wait_until(
            idle_pod_on_a_cheaper_node, timeout=120, what="the idle pod's node replaced by a gpu-1 node"
        )
        marks["idle pod's node replaced by a 1-GPU node"] = time.monotonic() - started

        set_min_workers(cluster, ns, 0)
        wait_until(lambda: not worker_pods(cluster, ns), timeout=60, what="the pool back at zero pods")
        marks["pool back at zero pods"] = time.monotonic() - started
        wait_until(lambda: not karpenter_nodes(cluster), timeout=90, what="Karpenter to remove its nodes")
        marks["all Karpenter nodes removed"] = time.monotonic() - started
    finally:
        player.stop()
        client.close()
        timeline = ", ".join(f"{what} +{seconds:.1f}s" for what, seconds in marks.items())
        print(f"karpenter timeline from the backlog: {timeline}")
        _summary.append(f"karpenter (kwok): from a backlog of {1 + SHORT_JOBS} jobs: {timeline}")
