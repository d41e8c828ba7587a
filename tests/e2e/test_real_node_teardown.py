"""Stopping a cluster with a real node leaves the machine as it found it: no process, mount,
network interface, iptables chain, nftables table, cgroup or changed sysctl. (Its own module: the machine runs
one real node at a time, and test_real_node's is stopped at the end of that module.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.cluster import localcluster
from tests.fixtures.real_node import real_node_cluster

# Also `cluster`: they need the control plane (and stay out of `make test-fast`).
pytestmark = [pytest.mark.realnode, pytest.mark.cluster]


def machine_state(root: Path) -> dict:
    """What a real node could leave behind, as comparable values."""
    processes = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(root) in cmdline or str(localcluster.NODE_RUN_DIR) in cmdline:
                processes.append(cmdline)
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if str(root) in line or str(localcluster.NODE_RUN_DIR) in line or "/netns/cni-" in line
    ]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    chains = {}
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = subprocess.run([tool, "-w", "-t", table, "-S"], capture_output=True, text=True).stdout
            chains[f"{tool}/{table}"] = sorted(rules.splitlines())
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    cgroups = sorted(str(path) for path in Path("/sys/fs/cgroup").glob(f"*/{localcluster.NODE_NAME}"))
    sysctls = {
        key: (Path("/proc/sys") / key).read_text().strip()
        for key in localcluster.NODE_SYSCTLS
        if (Path("/proc/sys") / key).exists()
    }
    return {
        "processes": processes,
        "mounts": mounts,
        "cgroups": cgroups,
        "sysctls": sysctls,
        "links": sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()),
        "chains": chains,
        "nft_tables": sorted(tables.splitlines()),
        "record": localcluster.NODE_RUN_DIR.exists(),
    }


def test_cluster_down_leaves_nothing_of_the_real_node(real_node_ready, tmp_path):
    root = tmp_path / "cluster"
    before = machine_state(root)
    with real_node_cluster(root) as cluster:
        enforced = cluster.cluster.network_policy
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "redis"},
            "spec": {
                "nodeSelector": {localcluster.NODE_LABEL: "real"},
                "containers": [
                    {
                        "name": "redis",
                        "image": "jobpool-redis:dev",
                        "imagePullPolicy": "Never",
                        "args": ["--port", "6379"],
                        "securityContext": {"runAsUser": 999},
                    }
                ],
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
        cluster.kubectl("wait", "--for=condition=Ready", "pod/redis", "--timeout=120s", timeout=150)
        during = machine_state(root)
    after = machine_state(root)
    # The check can fail: the node did make processes, mounts, links, chains and cgroups.
    assert during["processes"] and during["mounts"] and during["cgroups"] and during["record"]
    assert localcluster.NODE_BRIDGE in during["links"] and during["chains"] != before["chains"]
    if enforced:  # kube-network-policies made its nftables table
        assert during["nft_tables"] != before["nft_tables"]
    assert after == before
