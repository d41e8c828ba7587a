#!/usr/bin/env bash
# Assembles kind's node image offline (`make kind-node-image`): jobpool-kind-node:<Kubernetes version>.
#
# `kind build node-image` pulls its base image and the images kubeadm needs from registries;
# this script lays the image out the same way from what the project builds itself:
#  - the root filesystem: a debootstrap'd Debian with systemd and Debian's containerd, runc and
#    CNI plugins, kind's own base files (entrypoint, systemd units, containerd config, from its
#    Go module: images/base/files) and the pinned kubeadm, kubelet, kubectl and crictl;
#  - the images `kubeadm config images list` names, preloaded into the node's containerd as kind
#    does (ctr import --no-unpack): kube-apiserver, kube-controller-manager, kube-scheduler and
#    kube-proxy from the same Kubernetes module, etcd, CoreDNS (the plugins kubeadm's Corefile
#    uses) and pause (pause.c of the same module), each tagged with the name kubeadm asks for
#    (etcd with the version built, which kind's config gives kubeadm);
#  - /kind/version and a local StorageClass with pre-made volumes (kind's local-path-provisioner
#    is an image not built here).
# What this machine needs (cgroup v1, no CAP_SYS_RESOURCE) and the pod network (a bridge CNI
# configuration: kindnetd is not built here) are in kind's config, not in the image:
# tools/kind/cluster.yaml.
# Usage: tools/images/kind_node.sh [image-name]   (prints the image's name last)
set -euo pipefail
shopt -s inherit_errexit

root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/tools/images"
bin="$root/.tools/bin"
export DOCKER_BUILDKIT=0   # the classic builder: Debian's docker.io ships no buildx
# The node's packages, as kind's base image installs them, with Debian's container runtime.
node_packages="systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod"
node_packages+=",libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,e2fsprogs"
node_packages+=",containerd,runc,containernetworking-plugins"
proxy_packages="iptables,nftables,conntrack,kmod"   # what kube-proxy's iptables mode runs
# Pre-made volumes of the local StorageClass (the chart's Redis claims one); the directories are
# made by kind-node.Dockerfile.
volumes=8

module_info() { (cd "$root/tools/$1" && go list -m -f "$3" "$2"); }
version="$(module_info kubernetes k8s.io/kubernetes '{{.Version}}')"
image="${1:-jobpool-kind-node:$version}"
kind_source="$(module_info kind sigs.k8s.io/kind '{{.Dir}}')"
DOCKER_HOST="$(bash "$here/images.sh" docker-host)"
export DOCKER_HOST

for program in kubeadm kubelet kubectl crictl kube-apiserver kube-controller-manager \
    kube-scheduler kube-proxy etcd coredns-kind; do
    [[ -x "$bin/$program" ]] || {
        echo "kind-node: $bin/$program is missing: run \`make kind-node-image\`" >&2
        exit 1
    }
done
docker image inspect jobpool-pause:dev >/dev/null 2>&1 || {
    echo "kind-node: jobpool-pause:dev is missing: run \`make real-node\`" >&2
    exit 1
}

# What goes into the image; an image built from the same is kept (its label says so).
key="$({
    cat "$0" "$here/kind-node.Dockerfile" "$root/tools/kind/cluster.yaml"
    echo "$node_packages $proxy_packages $kind_source"
    docker image inspect -f '{{.Id}}' jobpool-pause:dev
    for program in kubeadm kubelet kubectl crictl kube-apiserver kube-controller-manager \
        kube-scheduler kube-proxy etcd coredns-kind; do readlink -f "$bin/$program"; done
} | sha256sum | cut -c1-16)"
if [[ "$(docker image inspect -f '{{index .Config.Labels "jobpool.kind-node.key"}}' "$image" 2>/dev/null)" == "$key" ]]; then
    echo "kind-node: $image is up to date"
    echo "$image"
    exit 0
fi

work="$(mktemp -d)"
container=""
cleanup() {
    if [[ -n "$container" ]]; then docker rm -f -v "$container" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

build_image() {
    local log="$work/build.log"
    if ! docker build --force-rm --network none "$@" >"$log" 2>&1; then
        grep -v -e DEPRECATED -e BuildKit -e 'environment-variable' "$log" | tail -n 30 >&2
        echo "kind-node: docker build $* failed" >&2
        exit 1
    fi
}

# One program in an image named as kubeadm asks for: image, program, base, user, path in the image.
component_image() {
    local name="$1" program="$2" base="$3" user="$4" path="$5" context
    context="$work/$(basename "$program")"
    mkdir -p "$context"
    cp -L "$program" "$context/program"
    {
        echo "FROM $base"
        echo "COPY program $path"
        echo "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        echo "USER $user"
        echo "ENTRYPOINT [\"$path\"]"
    } >"$context/Dockerfile"
    build_image -t "$name" "$context"
}

start=$SECONDS
echo "kind-node: images for Kubernetes $version ..."
mapfile -t wanted < <("$bin/kubeadm" config images list --kubernetes-version "$version")
# etcd is tagged with the version built (tools/etcd), not kubeadm's default: tools/kind/cluster.yaml
# gives kubeadm that tag (etcd.local.imageTag).
etcd_tag="$("$bin/etcd" --version | sed -n 's/^etcd Version: //p')-0"
grep -q "imageTag: \"$etcd_tag\"" "$root/tools/kind/cluster.yaml" || {
    echo "kind-node: tools/kind/cluster.yaml must give kubeadm etcd's imageTag \"$etcd_tag\"" >&2
    exit 1
}
for i in "${!wanted[@]}"; do
    if [[ "${wanted[i]}" == */etcd:* ]]; then wanted[i]="${wanted[i]%:*}:$etcd_tag"; fi
done
proxy_base="$(bash "$here/images.sh" base kube-proxy "$proxy_packages")"
pause=""
for name in "${wanted[@]}"; do
    case "$name" in
    */kube-apiserver:* | */kube-controller-manager:* | */kube-scheduler:*)
        program="${name##*/}"; program="${program%%:*}"
        component_image "$name" "$bin/$program" scratch 0 "/usr/local/bin/$program" ;;
    */kube-proxy:*) component_image "$name" "$bin/kube-proxy" "$proxy_base" 0 /usr/local/bin/kube-proxy ;;
    */etcd:*) component_image "$name" "$bin/etcd" scratch 0 /usr/local/bin/etcd ;;
    # kubeadm's Deployment adds NET_BIND_SERVICE; the node's containerd allows unprivileged ports.
    */coredns:*) component_image "$name" "$bin/coredns-kind" scratch 65532 /coredns ;;
    */pause:*) docker tag jobpool-pause:dev "$name"; pause="$name" ;;
    *) echo "kind-node: kubeadm asks for $name, which this script does not build" >&2; exit 1 ;;
    esac
done
[[ -n "$pause" ]] || { echo "kind-node: kubeadm named no pause image" >&2; exit 1; }
docker save -o "$work/images.tar" "${wanted[@]}"

echo "kind-node: the root filesystem ..."
context="$work/node"
mkdir -p "$context/bin" "$context/overrides/etc/containerd" "$context/overrides/kind/manifests"
cp -r "$kind_source/images/base/files" "$context/files"
chmod -R u+w "$context/files"
for program in kubeadm kubelet kubectl crictl; do cp -L "$bin/$program" "$context/bin/"; done
echo -n "$version" >"$context/overrides/kind/version"
# kind's containerd configuration, with the sandbox image kubeadm names and, as kind's
# containerd 2 does by default, unprivileged ports (CoreDNS binds :53 as a non-root user).
sed -e "s|sandbox_image = .*|sandbox_image = \"$pause\"|" \
    -e 's|^\(\s*\)restrict_oom_score_adj = false|&\n\1enable_unprivileged_ports = true\n\1enable_unprivileged_icmp = true|' \
    "$kind_source/images/base/files/etc/containerd/config.toml" >"$context/overrides/etc/containerd/config.toml"
grep -q 'enable_unprivileged_ports = true' "$context/overrides/etc/containerd/config.toml"
{
    cat <<'EOF'
# The node's local storage: a default StorageClass without a provisioner and pre-made volumes
# on the node's disk (kind's own default, local-path-provisioner, is an image not built here).
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
    for ((i = 0; i < volumes; i++)); do
        cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-$i
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: standard
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /var/local-volumes/local-$i, type: Directory}
EOF
    done
} >"$context/overrides/kind/manifests/default-storage.yaml"
cp "$here/kind-node.Dockerfile" "$context/Dockerfile"
node_base="$(bash "$here/images.sh" base kind-node "$node_packages")"
build_image --build-arg "BASE=$node_base" -t "$image-rootfs" "$context"

echo "kind-node: preloading ${#wanted[@]} images into the node's containerd ..."
container="kind-node-build-$$"
docker run -d --name "$container" --entrypoint sleep --security-opt seccomp=unconfined \
    "$image-rootfs" infinity >/dev/null
docker exec -d "$container" containerd
deadline=$((SECONDS + 60))
until docker exec "$container" ctr version >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "kind-node: containerd did not start in the build container" >&2; exit 1; }
    sleep 0.2
done
docker exec -i "$container" ctr --namespace=k8s.io images import --all-platforms --no-unpack \
    --digests - <"$work/images.tar" >/dev/null
docker exec "$container" ctr --namespace=k8s.io images list -q | sort >"$work/imported"
for name in "${wanted[@]}"; do
    grep -qx "$name" "$work/imported" || { echo "kind-node: $name was not imported" >&2; exit 1; }
done
docker exec "$container" sh -c 'kill $(pidof containerd); while pidof containerd >/dev/null; do sleep 0.1; done'
docker commit \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
    --change "LABEL jobpool.kind-node.key=$key" \
    "$container" "$image" >/dev/null
echo "kind-node: $image built in $((SECONDS - start))s ($(docker image ls --format '{{.Size}}' "$image")):"
sed 's/^/  /' "$work/imported"
echo "$image"
