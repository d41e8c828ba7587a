#!/usr/bin/env bash
# Installs the Debian packages that `make images` and the real node need (Docker's daemon to
# build the images, debootstrap for their offline base, containerd, runc, the CNI plugins and
# the netfilter tools for the node). Without root they are not installed, and the tests that
# need them skip, each saying which is missing.
set -euo pipefail
packages=(docker.io debootstrap containerd runc containernetworking-plugins iproute2 iptables nftables)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "node packages missing (${missing[*]}) and no apt-get: the image and real-node tests will skip" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo"; else
    echo "node packages missing (${missing[*]}): not root, so the image and real-node tests will skip" >&2
    exit 0
  fi
fi
echo "installing Debian's ${missing[*]} (images and the real node)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends "${missing[@]}" >/dev/null
# jobpool starts its own dockerd and containerd, with their own sockets and state.
for service in docker containerd; do
  (command -v service >/dev/null && $SUDO service "$service" stop >/dev/null 2>&1) || true
done
