#!/usr/bin/env bash
# Builds the project's images without a container registry: jobpool-operator, jobpool-worker,
# jobpool-redis (the chart's bundled Redis) and jobpool-examples (examples/01-minimal).
#
# The Dockerfiles default to `FROM python:3.11-slim`; here their BASE is a Debian bookworm root
# filesystem made with debootstrap and `docker import`, and the build stage installs from wheels
# made on the host with `pip wheel`, so no build step needs the network. Root filesystems and
# wheels are cached per user, keyed by what goes into them; a warm run only rebuilds layers.
# When no Docker daemon answers, the project's own dockerd runs with its data, state and socket
# under .docker/ (no bridge, no iptables rules, its containers' cgroups under /jobpool-docker;
# its runc, runc-bounded, grants a --privileged container the capabilities this machine has);
# `stop` stops it (its images stay for the next start), `clean` also removes .docker/.
# `node` builds the real node's own images, FROM scratch: jobpool-pause (its sandbox image, gcc
# -static of the Kubernetes module's build/pause/linux/pause.c) and jobpool-network-policies
# (kube-network-policies of `tools/build.sh kube-network-policies`).
# `sources` prints a hash of what the images are built from; `build` records it in
# .docker/images.sources, so the test session can tell built images from stale ones.
# `base NAME PACKAGES` prints the image of a cached Debian root filesystem with PACKAGES (the
# kind node image's, tools/images/kind_node.sh).
# Usage: tools/images/images.sh [build|node|stop|clean|docker-host|sources|base NAME PACKAGES]   (default: build)
set -euo pipefail
shopt -s inherit_errexit

root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/tools/images"
state="$root/.docker"
cache_root="${JOBPOOL_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jobpool-images}"
mirror="${JOBPOOL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
tag=dev
own_host="unix://$state/docker.sock"
export DOCKER_BUILDKIT=0   # the classic builder: Debian's docker.io ships no buildx

docker_answers() { docker version >/dev/null 2>&1; }

# DOCKER_HOST as given, else the default socket, else the project's own daemon (started here).
ensure_daemon() {
    if docker_answers; then return; fi
    export DOCKER_HOST="$own_host"
    if docker_answers; then return; fi
    command -v dockerd >/dev/null || {
        echo "images: no Docker daemon answers and dockerd is missing: apt-get install docker.io" >&2
        exit 1
    }
    mkdir -p "$state"
    dockerd --data-root "$state/data" --exec-root "$state/exec" --pidfile "$state/dockerd.pid" \
        --host "$own_host" --storage-driver overlay2 --exec-opt native.cgroupdriver=cgroupfs \
        --bridge none --iptables=false --ip6tables=false --ip-masq=false \
        --cgroup-parent /jobpool-docker \
        --add-runtime "jobpool-runc=$here/runc-bounded" --default-runtime jobpool-runc \
        >"$state/dockerd.log" 2>&1 &
    local deadline=$((SECONDS + 60))
    until docker_answers; do
        if ! kill -0 $! 2>/dev/null || ((SECONDS > deadline)); then
            echo "images: dockerd did not start; its log:" >&2
            tail -n 20 "$state/dockerd.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "images: started the project's Docker daemon; point docker at it with:"
    echo "  export DOCKER_HOST=$own_host"
}

stop_daemon() {
    local pid=""
    [[ -f "$state/dockerd.pid" ]] && pid="$(cat "$state/dockerd.pid")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        local deadline=$((SECONDS + 60))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    fi
    # Overlay mounts of containers that a killed daemon could not unmount.
    awk -v dir="$state/" 'index($2, dir) == 1 {print $2}' /proc/self/mounts | sort -r \
        | while read -r mount; do umount -l "$mount"; done
    local cgroup
    for cgroup in /sys/fs/cgroup/*/jobpool-docker; do
        if [[ -d "$cgroup" ]]; then rmdir "$cgroup" 2>/dev/null || true; fi
    done
}

# A Debian root filesystem with `packages`, as a tarball in the cache: prints its path.
rootfs_tar() {
    local name="$1" packages="$2" key dir tar
    # slim-1: the version of the clean-up below; change it when the clean-up changes.
    key="$(echo "$suite minbase $packages slim-1" | sha256sum | cut -c1-12)"
    dir="$cache_root/$name-$key"
    tar="$dir.tar"
    if [[ ! -f "$tar" ]]; then
        command -v debootstrap >/dev/null || {
            echo "images: debootstrap is missing (it makes the base images): apt-get install debootstrap" >&2
            exit 1
        }
        mkdir -p "$cache_root"
        echo "images: debootstrap $suite with $packages ..." >&2
        rm -rf "$dir"
        debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$mirror" >"$dir.log" 2>&1 \
            || { tail -n 20 "$dir.log" >&2; exit 1; }
        # What an image never uses: package caches, lists, docs, manuals, translations.
        rm -rf "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* "$dir"/var/log/* \
            "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
            "$dir"/usr/share/locale/*
        tar --numeric-owner -C "$dir" -cf "$tar.tmp" .
        mv "$tar.tmp" "$tar"
        rm -rf "$dir" "$dir.log"
    fi
    echo "$tar"
}

# Imports a cached root filesystem as an image named after its tarball: prints the name.
base_image() {
    local tar name
    tar="$(rootfs_tar "$1" "$2")"
    name="jobpool-base-$(basename "$tar" .tar | sed 's/-\([^-]*\)$/:\1/')"
    if ! docker image inspect "$name" >/dev/null 2>&1; then
        docker import --change 'CMD ["/bin/bash"]' "$tar" "$name" >/dev/null
    fi
    echo "$name"
}

# The project's dependencies with the operator's extra (and its build backend) as wheels for
# the image's Python `version`:
# pip runs on the host, its environment markers (python_full_version) told the image's version.
wheelhouse() {
    local version="$1" key dir
    key="$({ cat "$root/pyproject.toml" "$root/constraints.txt"; "$root/.venv/bin/python" --version; echo "$version"; } \
        | sha256sum | cut -c1-12)"
    dir="$cache_root/wheels-$key"
    if [[ ! -f "$dir/complete" ]]; then
        echo "images: pip wheel of the dependencies for Python $version into $dir ..." >&2
        rm -rf "$dir" && mkdir -p "$dir"
        IMAGE_PYTHON="$version" "$root/.venv/bin/python" -c 'import os, platform, runpy
platform.python_version = lambda: os.environ["IMAGE_PYTHON"]
runpy.run_module("pip", run_name="__main__")' wheel --quiet --disable-pip-version-check --wheel-dir "$dir" \
            --constraint "$root/constraints.txt" "$root[operator]" "setuptools>=68" wheel >&2
        rm -f "$dir"/jobpool-*.whl   # the image builds the project itself from its sources
        touch "$dir/complete"
    fi
    echo "$dir"
}

# docker build, its output kept for a failure only (the classic builder is chatty).
build_image() {
    local log
    log="$(mktemp)"
    if ! docker build --force-rm --network none "$@" >"$log" 2>&1; then
        grep -v -e DEPRECATED -e BuildKit -e 'environment-variable' "$log" | tail -n 30 >&2
        rm -f "$log"
        echo "images: docker build $* failed" >&2
        exit 1
    fi
    rm -f "$log"
}

# A hash of the files the images are built from.
sources_hash() {
    (cd "$root" && find operator/jobpool operator/Dockerfile worker_image pyproject.toml \
        constraints.txt tools/images examples/01-minimal -type f ! -path '*/__pycache__/*' \
        ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

build() {
    local start=$SECONDS python_base redis_base build_base wheels sources
    sources="$(sources_hash)"
    ensure_daemon
    python_base="$(base_image python python3,python3-venv,ca-certificates)"
    redis_base="$(base_image redis redis-server)"
    wheels="$(wheelhouse "$(docker run --rm --network none "$python_base" python3 -c \
        'import platform; print(platform.python_version())')")"
    build_base="jobpool-build-base:$(basename "$wheels" | cut -d- -f2)"
    build_image --build-arg "BASE=$python_base" -t "$build_base" \
        -f "$here/build-base.Dockerfile" "$wheels"
    local bases=(--build-arg "BASE=$python_base" --build-arg "BUILD_BASE=$build_base")
    build_image "${bases[@]}" -f "$root/operator/Dockerfile" -t "jobpool-operator:$tag" "$root"
    build_image "${bases[@]}" -f "$root/worker_image/Dockerfile" -t "jobpool-worker:$tag" "$root"
    build_image --build-arg "BASE=$redis_base" -t "jobpool-redis:$tag" \
        -f "$here/redis.Dockerfile" "$here"
    build_image --build-arg "WORKER_IMAGE=jobpool-worker:$tag" -t "jobpool-examples:$tag" \
        "$root/examples/01-minimal"
    echo "$sources" >"$state/images.sources"
    echo "images: built in $((SECONDS - start))s (docker at ${DOCKER_HOST:-the default socket}):"
    local image
    for image in operator worker redis examples; do
        docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' "jobpool-$image:$tag"
    done
}

# A FROM scratch image of one static program: image name, program path, USER.
scratch_image() {
    local context
    context="$(mktemp -d)"
    cp -L "$2" "$context/"
    printf 'FROM scratch\nCOPY %s /%s\nUSER %s\nENTRYPOINT ["/%s"]\n' \
        "$(basename "$2")" "$(basename "$2")" "$3" "$(basename "$2")" >"$context/Dockerfile"
    build_image -t "$1" "$context"
    rm -rf "$context"
}

node_images() {
    local version source build
    ensure_daemon
    version="$(cd "$root/tools/kubernetes" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
    source="$(cd "$root/tools/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
    build="$(mktemp -d)"
    gcc -Os -Wall -Werror -static -DVERSION="$version" -o "$build/pause" "$source"
    scratch_image "jobpool-pause:$tag" "$build/pause" 65535:65535
    rm -rf "$build"
    # Root: it programs nftables and an nfqueue on the node (a privileged pod).
    scratch_image "jobpool-network-policies:$tag" "$root/.tools/bin/kube-network-policies" 0:0
    echo "images: jobpool-pause:$tag (from $source), jobpool-network-policies:$tag"
}

case "${1:-build}" in
build) build ;;
node) node_images ;;
stop) stop_daemon ;;
clean) stop_daemon; rm -rf "$state" ;;
docker-host) ensure_daemon >&2; echo "${DOCKER_HOST:-unix:///var/run/docker.sock}" ;;
sources) sources_hash ;;
base) ensure_daemon >&2; base_image "$2" "$3" ;;
*) echo "usage: $0 [build|node|stop|clean|docker-host|sources|base NAME PACKAGES]" >&2; exit 2 ;;
esac
