#!/usr/bin/env bash
# `make test` as a fresh machine runs it: a fresh clone of this checkout's HEAD (committed work
# only) in a temporary directory, with empty Go module and build caches, an empty tools cache,
# images cache (debootstrap root filesystems, wheels) and pip cache, and the clone's own Docker
# data root (.docker/ in the clone). Package registries stay reachable; Debian packages already
# installed stay installed. Prints the wall time; the clone's log is kept, the caches removed.
# JOBPOOL_COLD_DIR=DIR keeps everything in DIR instead of a new temporary directory.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${JOBPOOL_COLD_DIR:-$(mktemp -d /tmp/jobpool-cold.XXXXXX)}"
mkdir -p "$work"
git clone -q "$root" "$work/jobpool" || exit 1
export GOMODCACHE="$work/cache/gomod" GOCACHE="$work/cache/gobuild" \
    JOBPOOL_TOOLS_CACHE="$work/cache/tools" JOBPOOL_IMAGES_CACHE="$work/cache/images" \
    PIP_CACHE_DIR="$work/cache/pip" XDG_CACHE_HOME="$work/cache/xdg"
echo "test-cold: a fresh clone of $(git -C "$root" rev-parse --short HEAD) in $work/jobpool, caches in $work/cache"
start=$SECONDS
(cd "$work/jobpool" && make test) 2>&1 | tee "$work/make-test.log"
status=${PIPESTATUS[0]}
minutes=$(( (SECONDS - start) / 60 ))
(cd "$work/jobpool" && bash tools/images/images.sh clean >/dev/null 2>&1)
chmod -R u+w "$work/cache" 2>/dev/null; rm -rf "$work/cache"
echo "test-cold: make test exited $status after $minutes min $(( (SECONDS - start) % 60 )) s; log: $work/make-test.log"
exit "$status"
