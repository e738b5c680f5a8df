#!/usr/bin/env bash
# container-deps.sh - podman set-up for the `container` test suite (root only):
# Debian's podman, runc, debootstrap and podman-compose; the containers.conf
# settings this sandbox needs; and a local debian:bookworm-slim image built
# with debootstrap (no image registry is reachable). Idempotent.
# docs/deploy.md ("On a machine without an image registry") says why each
# setting is there.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "container-deps.sh: needs root" >&2; exit 1; }
# netavark + aardvark-dns: compose services find each other by name (the CNI
# backend podman falls back to without them has no DNS here). netavark runs
# iptables to set up every container network, and only recommends it, so
# --no-install-recommends would leave it out: without it `podman run` fails
# with "netavark: No such file or directory".
pkgs=(podman runc debootstrap podman-compose netavark aardvark-dns iptables)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p /etc/containers
if ! grep -qs 'network_backend = "netavark"' /etc/containers/containers.conf; then
  cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
[network]
network_backend = "netavark"
CONF
fi
if ! podman image exists docker.io/library/debian:bookworm-slim; then
  mirror=$(awk '/^URIs:/ && $2 ~ /debian$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d /var/tmp/estgw-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
  tar -C "$rootfs" -c . | podman import - docker.io/library/debian:bookworm-slim >/dev/null
fi
