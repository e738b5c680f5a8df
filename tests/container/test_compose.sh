#!/usr/bin/env bash
# test_compose.sh SOURCE_ROOT - the container image and the interop compose stack:
#  1. build the estgw image and the tools image (deploy/container/Containerfile);
#  2. the image runs as a non-root user, has no keys, estgw --version works;
#  3. `podman-compose up` of deploy/container/compose.yaml: the device service
#     enrolls through estgw and prints its certificate subject;
#  4. from the host, coap-client-openssl enrolls through the published UDP port,
#     /healthz answers 200 and /metrics counts the enrollments; logs are JSON.
# Needs root and tools/container-deps.sh (podman, runc, podman-compose, a local
# debian:bookworm-slim). Bounded in time; removes its containers and files.
# Exit 77 (skip) when podman is missing. Prints "N passed, N failed".
set -uo pipefail
src=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
command -v podman >/dev/null && command -v podman-compose >/dev/null ||
  { echo "podman/podman-compose not installed (tools/container-deps.sh)"; exit 77; }
tag=test   # kept between runs: its layers are the build cache
project=estgw-ci-$$
work=$(mktemp -d /tmp/estgw-compose.XXXXXX)
export ESTGW_TAG=$tag ESTGW_DEMO_PKI=$work/pki
free_port() { python3 -c "import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])" "$1"; }
export ESTGW_PORT=$(free_port SOCK_DGRAM) ESTGW_METRICS_PORT=$(free_port SOCK_STREAM)
compose=(podman-compose -p "$project" -f "$src/deploy/container/compose.yaml")
mkdir -p "$ESTGW_DEMO_PKI"

cleanup() {
  timeout -s KILL 120 "${compose[@]}" down -v -t 2 >/dev/null 2>&1
  for s in pki ca estgw device; do podman rm -f -t 1 "${project}_${s}_1"; done >/dev/null 2>&1
  podman network rm -f "${project}_default" >/dev/null 2>&1
  podman image prune -f >/dev/null 2>&1   # older builds; the tagged images keep the cache
  rm -rf "$work"
}
trap cleanup EXIT

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@" >"$work/out" 2>&1; then ok "$what"; else bad "$what"; tail -20 "$work/out"; fi; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit; }

# 1. images (layers are cached between runs; only changed sources rebuild).
# The build stage is tagged too so that pruning dangling images keeps its cache.
# RUN steps use the host's network: the sandbox's container bridge has no DNS
# for the outside (the stack itself needs none).
for target in build runtime tools; do
  case $target in
    build) image=localhost/estgw-build:cache; args=(--target build) ;;
    runtime) image=localhost/estgw:$tag; args=() ;;
    tools) image=localhost/estgw-tools:$tag; args=(--target tools) ;;
  esac
  if timeout -s KILL 1200 podman build --pull=never --network=host "${args[@]}" -t "$image" \
       -f "$src/deploy/container/Containerfile" "$src" >"$work/build-$target.log" 2>&1; then
    ok "image $image builds"
  else
    bad "image $image builds"; tail -30 "$work/build-$target.log"; finish
  fi
done

# 2. image facts
check "runs as user estgw (uid 10001)" \
  bash -c "[ \"\$(podman run --rm --entrypoint id localhost/estgw:$tag -u)\" = 10001 ]"
check "estgw --version in the image" podman run --rm localhost/estgw:$tag --version
check "no keys or configuration baked in" bash -c "[ -z \"\$(podman run --rm --entrypoint sh \
  localhost/estgw:$tag -c 'ls -A /etc/estgw; find / -xdev \\( -name \"*.key\" -o -name \"*.p12\" \\) -print 2>/dev/null')\" ]"
check "default command reads /etc/estgw/estgw.conf" bash -c "podman run --rm localhost/estgw:$tag 2>&1 \
  | grep -q '/etc/estgw/estgw.conf'"
check "EXPOSE 5684/udp" bash -c "podman image inspect localhost/estgw:$tag --format '{{.Config.ExposedPorts}}' | grep -q 5684/udp"

# 3. the compose stack; the device service enrolls
if ! timeout -s KILL 300 "${compose[@]}" up -d >"$work/up.log" 2>&1; then
  bad "podman-compose up"; tail -30 "$work/up.log"; finish
fi
ok "podman-compose up"
dev=${project}_device_1 gw=${project}_estgw_1
rc=$(timeout -s KILL 180 podman wait "$dev" 2>/dev/null || echo timeout)
podman logs "$dev" >"$work/device.log" 2>&1
if [ "$rc" = 0 ] && grep -q 'enrolled: subject=.*CN *= *device-001.*issuer=' "$work/device.log"; then
  ok "device service enrolled: $(grep -m1 enrolled "$work/device.log")"
else
  bad "device service enrolled (exit $rc)"; tail -20 "$work/device.log"
  podman logs "$gw" 2>&1 | tail -20
fi

# 4. from the host through the published ports
pki=$ESTGW_DEMO_PKI
host_enroll() {
  coap-client-openssl -m post -t 286 -A 287 -B 30 -f "$pki/device.csr.der" -o "$work/host.der" \
    -C "$pki/gw-ca.crt" -c "$pki/device.crt" -j "$pki/device.key" \
    "coaps://127.0.0.1:$ESTGW_PORT/.well-known/est/sen" &&
  openssl x509 -inform DER -in "$work/host.der" -noout -subject | grep -q device-001
}
check "host enrolls through the published UDP port" host_enroll
healthz() { for _ in $(seq 1 60); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ESTGW_METRICS_PORT/healthz")" = 200 ] && return 0
    sleep 0.5; done; return 1; }
check "/healthz answers 200" healthz
metrics_count() {
  curl -sf "http://127.0.0.1:$ESTGW_METRICS_PORT/metrics" >"$work/metrics.txt" &&
  python3 - "$work/metrics.txt" <<'PY'
import sys
n = 0.0
for line in open(sys.argv[1]):
    if line.startswith('estgw_requests_total{path="sen",code="2.04"} '):
        n = float(line.split()[-1])
sys.exit(0 if n >= 2 else 1)  # the device service's and the host's
PY
}
check "/metrics counts both enrollments" metrics_count
check "estgw logs are JSON lines" bash -c "podman logs $gw 2>&1 | grep '^{' | python3 -c '
import json, sys
lines = [json.loads(l) for l in sys.stdin]
assert any(o[\"group\"] == \"req\" for o in lines), lines'"
finish
