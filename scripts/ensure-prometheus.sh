#!/usr/bin/env bash
# Makes sure Debian's prometheus (prometheus and promtool) is installed: the rule tests run
# promtool, the monitoring test a real Prometheus. The package's own service is not wanted.
set -euo pipefail
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "promtool/prometheus not found: installing Debian's prometheus package" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends prometheus >/dev/null
  # jobpool starts its own Prometheus on free ports.
  (command -v service >/dev/null && $SUDO service prometheus stop >/dev/null 2>&1) || true
fi
