#!/usr/bin/env bash
# Everything the test suite runs, built before pytest starts (a test never builds, so no test
# timeout wraps a cold build): the local control plane and Karpenter (tools/build.sh), and where
# this machine can run containers (root, Debian's docker.io) the project's images and the real
# node's programs and images. Each step prints its wall time; the times are also written to
# .test-timings for the summary pytest prints at the end (tests/conftest.py).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
timings="$root/.test-timings"
: >"$timings"

step() {
    local name="$1" start=$SECONDS
    shift
    echo "==> $name: $*"
    "$@"
    echo "==> $name: done in $((SECONDS - start)) s"
    echo "$name $((SECONDS - start))" >>"$timings"
}

# Why this machine cannot build or run the images and the real node (empty when it can); the
# tests that need them skip with the same kind of reason (tests/fixtures/images.py, real_node.py).
cannot_run_containers() {
    if [[ "$(id -u)" != 0 ]]; then echo "not root"; return; fi
    local tool
    for tool in docker dockerd debootstrap gcc go containerd runc; do
        command -v "$tool" >/dev/null || { echo "no $tool (make node-packages)"; return; }
    done
}

step tools bash tools/build.sh
why="$(cannot_run_containers)"
if [[ -n "$why" ]]; then
    echo "==> images and real node: skipped ($why); the tests that need them skip too"
    exit 0
fi
own_host="unix://$root/.docker/docker.sock"
daemon_was_up=0
if docker version >/dev/null 2>&1 || DOCKER_HOST="$own_host" docker version >/dev/null 2>&1; then
    daemon_was_up=1
fi
step images bash tools/images/images.sh build
step real-node bash -c 'bash tools/build.sh kubernetes-node coredns kube-network-policies &&
                         bash tools/images/images.sh node'
# The test session starts the project's daemon again when a test needs it.
if ((daemon_was_up == 0)); then bash tools/images/images.sh stop; fi
