#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok), helm, Karpenter (kwok provider) and Kueue from the pinned
# wrapper modules in tools/.
#
# Each wrapper module is built into a per-user cache keyed by a hash of its go.mod, go.sum,
# the Go version, the build flags and the commands it builds, then linked into .tools/bin. A fresh clone on a machine
# that built the same pins before reuses the binaries in seconds; a new pin builds cold.
# The real node's kubelet and kube-proxy (`kubernetes-node`, its own wrapper module on the same
# k8s.io/kubernetes pin, same version stamp), its cluster DNS (`coredns`, only the plugins it
# needs) and NetworkPolicy enforcement (`kube-network-policies`) are built only when asked for
# (REAL_NODE=1). kind, and the kind node image's kubeadm (same pin) and crictl, are built for
# `make kind-node-image` / `make kind-up` only (coredns-kind: the plugins kubeadm's Corefile uses).
# Usage: tools/build.sh [etcd|kubernetes|kubernetes-node|coredns|kube-network-policies|kwok|helm|karpenter|
#                        kueue|kind|kubeadm|cri-tools|coredns-kind ...]
#        (default: etcd kubernetes kwok helm karpenter kueue)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/tools"
bin_dir="$root/.tools/bin"
cache_root="${JOBPOOL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobpool-tools}"
parallel="${JOBPOOL_TOOLS_PARALLEL:-2}"

export CGO_ENABLED=0
# A wrapper module whose pins need a newer Go says so in its go.mod; go fetches that toolchain.
export GOTOOLCHAIN=auto
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false -mod=readonly"

if ! command -v go >/dev/null 2>&1; then
    echo "tools/build.sh: Go is required to build the control plane (https://go.dev/dl/)" >&2
    exit 1
fi

mkdir -p "$bin_dir" "$cache_root"

# Version of a module in a wrapper module's build list, e.g. "v1.37.2".
module_version() {
    (cd "$tools/$1" && go list -m -f '{{.Version}}' "$2")
}

# The -X flags that stamp Kubernetes binaries with the version of the wrapper module $1.
kubernetes_ldflags() {
    local v major minor x=""
    v="$(module_version "$1" k8s.io/kubernetes)"
    major="${v#v}"; major="${major%%.*}"
    minor="${v#v*.}"; minor="${minor%%.*}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        x+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        x+=" -X $pkg.gitTreeState=clean"
    done
    echo "-s -w$x"
}

# Prints: the commands the module builds as "package=binary" words, then the ldflags.
module_plan() {
    case "$1" in
    kubernetes)
        echo "k8s.io/kubernetes/cmd/kube-apiserver=kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager=kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler=kube-scheduler k8s.io/kubernetes/cmd/kubectl=kubectl"
        kubernetes_ldflags kubernetes
        ;;
    kubernetes-node)
        if [[ "$(module_version kubernetes-node k8s.io/kubernetes)" != "$(module_version kubernetes k8s.io/kubernetes)" ]]; then
            echo "tools/build.sh: tools/kubernetes-node must pin the k8s.io/kubernetes of tools/kubernetes" >&2
            exit 1
        fi
        echo "k8s.io/kubernetes/cmd/kubelet=kubelet k8s.io/kubernetes/cmd/kube-proxy=kube-proxy"
        kubernetes_ldflags kubernetes-node
        ;;
    kubeadm)
        if [[ "$(module_version kubeadm k8s.io/kubernetes)" != "$(module_version kubernetes k8s.io/kubernetes)" ]]; then
            echo "tools/build.sh: tools/kubeadm must pin the k8s.io/kubernetes of tools/kubernetes" >&2
            exit 1
        fi
        echo "k8s.io/kubernetes/cmd/kubeadm=kubeadm"
        kubernetes_ldflags kubeadm
        ;;
    kind)
        # kind's version is in its source (pkg/internal/version); the commit is not known here.
        echo "sigs.k8s.io/kind=kind"
        echo "-s -w"
        ;;
    cri-tools)
        local v
        v="$(module_version cri-tools sigs.k8s.io/cri-tools)"
        echo "sigs.k8s.io/cri-tools/cmd/crictl=crictl"
        echo "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$v"
        ;;
    coredns-kind)
        echo "jobpool.local/tools/coredns-kind=coredns-kind"
        echo "-s -w"
        ;;
    coredns)
        echo "jobpool.local/tools/coredns=coredns"
        echo "-s -w"
        ;;
    kube-network-policies)
        echo "sigs.k8s.io/kube-network-policies/cmd=kube-network-policies"
        echo "-s -w"
        ;;
    etcd)
        echo "go.etcd.io/etcd/server/v3=etcd"
        echo "-s -w"
        ;;
    helm)
        local v kv kmajor kminor
        v="$(module_version helm helm.sh/helm/v3)"
        # Helm's own Makefile derives its default kubeVersion from client-go v0.X -> 1.X.
        kv="$(module_version helm k8s.io/client-go)"
        kmajor="${kv#v}"; kmajor=$(( ${kmajor%%.*} + 1 ))
        kminor="${kv#v*.}"; kminor="${kminor%%.*}"
        echo "helm.sh/helm/v3/cmd/helm=helm"
        echo "-s -w -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
            "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$kmajor -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kminor" \
            "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$kmajor -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kminor"
        ;;
    kwok)
        local v
        v="$(module_version kwok sigs.k8s.io/kwok)"
        echo "sigs.k8s.io/kwok/cmd/kwok=kwok"
        echo "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${v#v}"
        ;;
    karpenter)
        echo "sigs.k8s.io/karpenter/kwok=karpenter"
        echo "-s -w"
        ;;
    kueue)
        echo "sigs.k8s.io/kueue/cmd/kueue=kueue"
        echo "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$(module_version kueue sigs.k8s.io/kueue)"
        ;;
    esac
}

build_module() {
    local module="$1" dir plan targets ldflags key cache start elapsed go_version
    dir="$tools/$module"
    go_version="$(cd "$dir" && go env GOVERSION)"
    plan="$(module_plan "$module")"
    targets="$(sed -n 1p <<<"$plan")"
    ldflags="$(sed -n 2p <<<"$plan")"
    key="$(cat "$dir/go.mod" "$dir/go.sum" \
        | { cat; echo "$go_version $CGO_ENABLED $(go env GOOS GOARCH) -trimpath $ldflags $targets"; } \
        | sha256sum | cut -c1-16)"
    cache="$cache_root/$module-$key"
    start=$SECONDS

    exec 9>"$cache_root/$module.lock"
    flock 9
    if [[ -f "$cache/complete" ]]; then
        status="reused"
    else
        echo "tools: building $module ($(tr ' ' '\n' <<<"$targets" | cut -d= -f2 | paste -sd' ')) into $cache ..."
        rm -rf "$cache.tmp"
        mkdir -p "$cache.tmp/bin"
        local word pkgs=()
        for word in $targets; do pkgs+=("${word%%=*}"); done
        if [[ ${#pkgs[@]} -eq 1 ]]; then
            (cd "$dir" && go build -p "$parallel" -trimpath -ldflags "$ldflags" \
                -o "$cache.tmp/bin/${targets#*=}" "${pkgs[0]}")
        else
            (cd "$dir" && go build -p "$parallel" -trimpath -ldflags "$ldflags" \
                -o "$cache.tmp/bin/" "${pkgs[@]}")
        fi
        touch "$cache.tmp/complete"
        rm -rf "$cache"
        mv "$cache.tmp" "$cache"
        status="built"
    fi
    # Mark this entry as used and drop this module's entries unused for two weeks.
    touch "$cache"
    find "$cache_root" -mindepth 1 -maxdepth 1 -type d -name "$module-????????????????" ! -name "$module-$key" \
        -mtime +14 -exec rm -rf {} +
    flock -u 9
    exec 9>&-

    for word in $targets; do
        ln -sfn "$cache/bin/${word#*=}" "$bin_dir/${word#*=}"
    done
    elapsed=$(( SECONDS - start ))
    printf 'tools: %-10s %-6s in %4ds  %s\n' "$module" "$status" "$elapsed" "$cache/bin"
}

total_start=$SECONDS
modules=("$@")
[[ ${#modules[@]} -gt 0 ]] || modules=(etcd kubernetes kwok helm karpenter kueue)
for module in "${modules[@]}"; do
    build_module "$module"
done
echo "tools: all binaries in .tools/bin ($(( SECONDS - total_start ))s):" \
    "$("$bin_dir/kubectl" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\([^"]*\)".*/kubectl \1/p' | head -1)" \
    "$("$bin_dir/helm" version --short 2>/dev/null | sed 's/^/helm /')" \
    "$("$bin_dir/etcd" --version 2>/dev/null | sed -n 's/^etcd Version: /etcd /p')" \
    "$("$bin_dir/kwok" --version 2>/dev/null | awk '{print "kwok " $3}')"
