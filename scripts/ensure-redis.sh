#!/usr/bin/env bash
# Makes sure a redis-server >= 7 is on PATH, installing Debian's package when it is missing.
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found: installing Debian's redis-server package" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq redis-server >/dev/null
  # The package may start a system instance on 6379; jobpool starts its own on free ports.
  (command -v service >/dev/null && $SUDO service redis-server stop >/dev/null 2>&1) || true
fi
ver=$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
if [ "${ver:-0}" -lt 7 ]; then
  echo "redis-server $(redis-server --version) is older than 7; jobpool needs Redis >= 7" >&2
  exit 1
fi
