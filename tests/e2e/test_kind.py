"""kind's pieces (`make kind-node-image`, `make kind-up`): kind built from its pinned module, the
node image laid out as kind's node image contract expects, a kind cluster of it running
kubeadm's control plane from the images preloaded in the image (nothing pulled), and `kind-down`
leaving no container, network or volume behind.

The image and the binary are built by `make kind-node-image` (a prerequisite of `make
test-kind`); without them these tests skip, saying so. The cluster tests run with JOBPOOL_KIND=1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.fixtures.cluster import BIN_DIR, REPO_ROOT
from tests.fixtures.real_node import KIND_SCRIPT, kind_requested
from tests.helpers import wait_until

pytestmark = pytest.mark.images
KIND = BIN_DIR / "kind"


def pinned(module_dir: str, module: str) -> str:
    text = (REPO_ROOT / "tools" / module_dir / "go.mod").read_text()
    return re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", text, re.M).group(1)


KUBERNETES = pinned("kubernetes", "k8s.io/kubernetes")
NODE_IMAGE = f"jobpool-kind-node:{KUBERNETES}"


@pytest.fixture(scope="module")
def node_image(docker_images) -> str:
    if docker_images.docker("image", "inspect", NODE_IMAGE, check=False).returncode != 0:
        pytest.skip(f"{NODE_IMAGE} is not built: run `make kind-node-image`")
    return NODE_IMAGE


def in_image(docker_images, image: str, script: str) -> str:
    return docker_images.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", script
    ).stdout


def test_kind_is_built_from_its_pinned_module():
    if not os.access(KIND, os.X_OK):
        pytest.skip(f"{KIND} is not built: run `make kind-node-image`")
    version = subprocess.run([str(KIND), "version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith(f"kind {pinned('kind', 'sigs.k8s.io/kind')} "), version


def test_the_node_image_is_laid_out_as_kinds_node_image_contract_expects(docker_images, node_image):
    out = in_image(
        docker_images,
        node_image,
        """
        cat /kind/version; echo
        kubelet --version; kubeadm version -o short; kubectl version --client -o json | grep gitVersion
        crictl --version
        systemctl is-enabled kubelet.service containerd.service undo-mount-hacks.service
        test -x /usr/local/bin/entrypoint && test -x /sbin/init && test -x /usr/local/bin/containerd \
            && test -x /usr/local/sbin/runc && test -x /opt/cni/bin/host-local && echo programs
        grep sandbox_image /etc/containerd/config.toml
        grep -c mount-product-files /etc/containerd/cri-base.json
        grep -c 'is-default-class: "true"' /kind/manifests/default-storage.yaml
        stat -c %a /var/local-volumes/local-0
        kubeadm config images list --kubernetes-version "$(cat /kind/version)" | grep pause
    """,
    ).splitlines()
    assert out[0] == KUBERNETES
    assert out[1] == f"Kubernetes {KUBERNETES}" and out[2] == KUBERNETES and KUBERNETES in out[3]
    assert out[4].startswith(f"crictl version {pinned('cri-tools', 'sigs.k8s.io/cri-tools')}"), out[4]
    assert out[5:8] == ["enabled"] * 3
    assert out[8] == "programs"
    # containerd's sandbox image is the pause image kubeadm expects (preloaded, never pulled)
    assert out[9].split("=")[1].strip().strip('"') == out[13]
    assert out[10:13] == ["1", "1", "777"]
    config = docker_images.docker("image", "inspect", node_image).stdout
    (inspected,) = json.loads(config)
    assert inspected["Config"]["Entrypoint"] == ["/usr/local/bin/entrypoint", "/sbin/init"]
    assert "container=docker" in inspected["Config"]["Env"]
    assert inspected["Config"]["StopSignal"] == "SIGRTMIN+3"


needs_kind = pytest.mark.skipif(
    not kind_requested(), reason="a kind cluster: `make test-kind` (JOBPOOL_KIND=1)"
)


def resources(docker_images) -> dict[str, set[str]]:
    """The project's Docker daemon's containers, networks and volumes."""

    def names(*args: str) -> set[str]:
        return set(docker_images.docker(*args).stdout.split())

    return {
        "containers": names("ps", "-aq"),
        "networks": names("network", "ls", "-q"),
        "volumes": names("volume", "ls", "-q"),
    }


@needs_kind
def test_kind_up_then_down_leaves_no_container_network_or_volume(docker_images, node_image):
    """Runs first (before the session's cluster): its own cluster and network."""
    env = dict(
        os.environ,
        DOCKER_HOST=docker_images.docker_host,
        KIND_CLUSTER_NAME="jobpool-updown",
        KIND_EXPERIMENTAL_DOCKER_NETWORK="jobpool-kind-updown",
        KIND_ROUTES="0",
    )
    before = resources(docker_images)
    modules = os.path.exists("/lib/modules")  # bind-mounted by kind; Docker makes it when missing
    up = subprocess.run(
        ["bash", str(KIND_SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=900
    )
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        assert "ready in" in up.stdout
        during = resources(docker_images)
        assert during["containers"] - before["containers"], "the node container ran"
        assert during["volumes"] - before["volumes"], "the node's /var volume existed"
    finally:
        down = subprocess.run(
            ["bash", str(KIND_SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=300
        )
    assert down.returncode == 0, down.stderr
    assert resources(docker_images) == before
    assert os.path.exists("/lib/modules") == modules


@needs_kind
def test_the_kind_node_runs_kubeadms_control_plane_from_its_preloaded_images(kind_cluster):
    node = kind_cluster.node
    nodes = json.loads(kind_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == [node.name]
    assert nodes[0]["status"]["nodeInfo"]["kubeletVersion"] == KUBERNETES
    assert nodes[0]["metadata"]["labels"].get("jobpool.dev/node") == "real"
    # the images of kubeadm's configuration on the node (kind's, with tools/kind/cluster.yaml's patches)
    wanted = node.exec("kubeadm", "config", "images", "list", "--config", "/kind/kubeadm.conf").stdout.split()
    assert f"registry.k8s.io/etcd:{pinned('etcd', 'go.etcd.io/etcd/server/v3').removeprefix('v')}-0" in wanted
    present = {
        tag
        for image in json.loads(node.exec("crictl", "images", "-o", "json").stdout)["images"]
        for tag in image.get("repoTags") or ()
    }
    assert set(wanted) <= present, f"kubeadm's images missing on the node: {set(wanted) - present}"
    loaded = {f"docker.io/library/jobpool-{name}:dev" for name in ("operator", "worker", "redis", "examples")}
    assert loaded <= present, "kind load docker-image loaded the project's images"

    def system_pods_running() -> bool:
        pods = json.loads(kind_cluster.kubectl("get", "pods", "-n", "kube-system", "-o", "json").stdout)[
            "items"
        ]
        return len(pods) >= 6 and all(p["status"].get("phase") == "Running" for p in pods)

    wait_until(system_pods_running, timeout=120, interval=1, what="kube-system's pods running")
    events = kind_cluster.kubectl(
        "get", "events", "-A", "--field-selector", "reason=Pulling", "-o", "name"
    ).stdout
    assert not events.strip(), f"images were pulled: {events}"
    classes = json.loads(kind_cluster.kubectl("get", "storageclass", "-o", "json").stdout)["items"]
    assert [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"
    ] == ["standard"]


def test_kind_down_leaves_the_docker_daemon_as_it_found_it():
    """`make kind-down` with no cluster running starts the project's dockerd to ask; it stops it
    again, and leaves running a daemon that ran before."""
    if not os.access(KIND, os.X_OK):
        pytest.skip(f"{KIND} is not built: run `make kind-node-image`")
    if kind_requested():
        pytest.skip("a kind cluster is under test (JOBPOOL_KIND=1): down would delete it")
    env = {key: value for key, value in os.environ.items() if key != "DOCKER_HOST"}
    own = dict(env, DOCKER_HOST=f"unix://{REPO_ROOT / '.docker' / 'docker.sock'}")

    def answers(environment: dict[str, str]) -> bool:
        return (
            subprocess.run(["docker", "version"], env=environment, capture_output=True, timeout=30).returncode
            == 0
        )

    if answers(env):
        pytest.skip("the machine's own Docker daemon answers: the project's is not used")
    before = answers(own)
    kind = subprocess.run([str(KIND), "get", "clusters"], env=own, capture_output=True, text=True, timeout=60)
    if before and "jobpool" in kind.stdout:
        pytest.skip("a kind cluster of `make kind-up` runs: down would delete it")
    subprocess.run(["bash", str(KIND_SCRIPT), "down"], env=env, capture_output=True, check=True, timeout=300)
    assert answers(own) == before
