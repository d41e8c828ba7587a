#!/usr/bin/env bash
# A kind cluster of the assembled node image (make kind-node-image), on the project's Docker
# daemon (tools/images/images.sh): `up` creates it with tools/kind/cluster.yaml and loads the
# project's images with `kind load docker-image`; `down` deletes it and its Docker network
# (kind removes its node containers with their volumes) and the routes to it, leaving nothing
# behind.
# Its kubeconfig is .kind/<name>.kubeconfig; `env` prints the exports that point kubectl and helm at it.
# KIND_NODE_IMAGE picks another node image (e.g. the stock kindest/node on a machine with
# internet); KIND_CLUSTER_NAME another name (default jobpool).
# Usage: tools/kind/cluster.sh [up|down|env|status]
set -euo pipefail
shopt -s inherit_errexit

root="$(cd "$(dirname "$0")/../.." && pwd)"
kind="$root/.tools/bin/kind"
state="$root/.kind"
name="${KIND_CLUSTER_NAME:-jobpool}"
kubeconfig="$state/$name.kubeconfig"
# Its own Docker network, so `down` can remove it without touching anyone's `kind` network.
export KIND_EXPERIMENTAL_DOCKER_NETWORK="${KIND_EXPERIMENTAL_DOCKER_NETWORK:-jobpool-kind}"
images=(jobpool-operator:dev jobpool-worker:dev jobpool-redis:dev jobpool-examples:dev)
# The Service and pod networks of cluster.yaml, routed to the node from this machine.
routed=(10.112.0.0/16 10.246.0.0/16)

[[ -x "$kind" ]] || { echo "kind: $kind is missing: run \`make kind-node-image\`" >&2; exit 1; }
# Whether a daemon answered before: `down` stops the project's dockerd again if it started it.
if docker version >/dev/null 2>&1 || DOCKER_HOST="unix://$root/.docker/docker.sock" docker version >/dev/null 2>&1; then
    daemon_was_running=true
else
    daemon_was_running=false
fi
DOCKER_HOST="$(bash "$root/tools/images/images.sh" docker-host)"
export DOCKER_HOST
# The project's own dockerd grants --privileged what this machine has (runc-bounded); one started
# before it did fails kind's nodes with "unable to apply caps".
if [[ "$DOCKER_HOST" == "unix://$root/.docker/docker.sock" \
    && "$(docker info -f '{{.DefaultRuntime}}' 2>/dev/null)" != jobpool-runc ]]; then
    echo "kind: the project's Docker daemon predates runc-bounded: restart it" \
        "(bash tools/images/images.sh stop; its images stay)" >&2
    exit 1
fi

exists() { "$kind" get clusters 2>/dev/null | grep -qx "$name"; }

# As on the real node, this machine reaches ClusterIPs and pod IPs (Linux, root, the node's
# Docker network on this machine); `down` removes the routes. KIND_ROUTES=0: none (a second
# cluster on the same subnets).
route() {
    local action="$1" node="" address="" subnet
    [[ "${KIND_ROUTES:-1}" != 0 && "$(uname -s)" == Linux && "$(id -u)" == 0 ]] && command -v ip >/dev/null \
        || return 0
    if [[ "$action" == replace ]]; then
        node="$("$kind" get nodes --name "$name" | grep -- '-control-plane$' | head -n 1)"
        address="$(docker inspect -f "{{(index .NetworkSettings.Networks \"$KIND_EXPERIMENTAL_DOCKER_NETWORK\").IPAddress}}" "$node")"
        for subnet in "${routed[@]}"; do ip route replace "$subnet" via "$address"; done
        echo "kind: this machine routes ${routed[*]} to the node $node ($address)"
    else
        for subnet in "${routed[@]}"; do ip route delete "$subnet" 2>/dev/null || true; done
    fi
}

up() {
    local version image start
    version="$(cd "$root/tools/kubernetes" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
    image="${KIND_NODE_IMAGE:-jobpool-kind-node:$version}"
    mkdir -p "$state"
    if exists; then
        echo "kind: cluster $name exists; loading the images again"
    else
        start=$SECONDS
        # kind bind-mounts /lib/modules; Docker makes it on a machine without one: `down` removes it.
        if [[ ! -e /lib/modules ]]; then touch "$state/$name.made-lib-modules"; fi
        (cd "$root" && "$kind" create cluster --name "$name" --image "$image" --config "$root/tools/kind/cluster.yaml" \
            --kubeconfig "$kubeconfig" --wait 5m)
        echo "kind: cluster $name ready in $((SECONDS - start))s"
    fi
    "$kind" export kubeconfig --name "$name" --kubeconfig "$kubeconfig" >/dev/null 2>&1
    route replace
    start=$SECONDS
    "$kind" load docker-image --name "$name" "${images[@]}"
    echo "kind: loaded ${images[*]} in $((SECONDS - start))s"
    status
    echo "  export KUBECONFIG=$kubeconfig DOCKER_HOST=$DOCKER_HOST; stop with \`make kind-down\`"
}

down() {
    route delete
    if exists; then "$kind" delete cluster --name "$name" --kubeconfig "$kubeconfig"; fi
    if docker network inspect "$KIND_EXPERIMENTAL_DOCKER_NETWORK" >/dev/null 2>&1; then
        docker network rm "$KIND_EXPERIMENTAL_DOCKER_NETWORK" >/dev/null
    fi
    if [[ -f "$state/$name.made-lib-modules" ]]; then
        rmdir /lib/modules 2>/dev/null || true   # only while empty
        rm -f "$state/$name.made-lib-modules"
    fi
    rm -f "$kubeconfig"
    rmdir "$state" 2>/dev/null || true
    echo "kind: cluster $name and network $KIND_EXPERIMENTAL_DOCKER_NETWORK removed"
    if ! $daemon_was_running; then bash "$root/tools/images/images.sh" stop; fi
}

status() {
    exists || { echo "kind: no cluster $name"; return 1; }
    local node
    for node in $("$kind" get nodes --name "$name"); do
        docker stats --no-stream --format "  node {{.Name}}: memory {{.MemUsage}}, CPU {{.CPUPerc}}" "$node"
    done
}

case "${1:-up}" in
up) up ;;
down) down ;;
status) status ;;
env) echo "export KUBECONFIG=$kubeconfig DOCKER_HOST=$DOCKER_HOST" ;;
*) echo "usage: $0 [up|down|env|status]" >&2; exit 2 ;;
esac
