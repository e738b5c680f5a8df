#!/usr/bin/env bash
# deps.sh - install the Debian packages estgw builds and tests with, if any is missing.
set -euo pipefail
pkgs=(meson ninja-build pkg-config gcc clang libclang-rt-14-dev
      libcoap3-dev libcoap3-bin libevent-dev libcurl4-openssl-dev libcbor-dev
      libmbedtls-dev libssl-dev libinih-dev libcmocka-dev
      openssl python3 valgrind curl
      systemd mandoc                   # systemd-analyze and mandoc for tests
      tshark                           # decrypts a capture with [log] keylog_file (test_keylog)
      libhiredis-dev redis-server      # [cluster]: store_redis.c, and the Redis test_cluster starts
      nftables iproute2 python3-yaml)  # test_cluster's load balancing; deploy manifests check
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]} (run as root or install them)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
