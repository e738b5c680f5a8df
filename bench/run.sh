#!/usr/bin/env bash
# run.sh - run the whole estgw benchmark and write docs/performance.md (issue 9).
#
#   bash bench/run.sh [--build DIR] [--no-build] [--quick] [--smoke] [--out FILE]
#
# Builds a release tree (default build-bench; --build names another, --no-build
# uses it as it is), generates the test PKI and a bench device CA, starts the
# fast EST CA (bench/fast_ca.c), estgw and the bare libcoap server on loopback
# ports, runs each phase with estgw-bench and writes the results, the commands,
# the machine and the openssl speed floor to docs/performance.md (--out FILE
# elsewhere). Every phase starts fresh server processes. Default run: ~10 min on
# 2 cores. --quick: fewer devices (~3 min). --smoke: a few seconds, checks that
# every tool works end to end and writes nothing into docs/ (the meson 'bench'
# suite). Traffic goes only to 127.0.0.1.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$SRC/build-bench
DO_BUILD=1
PROFILE=full
OUTDOC=$SRC/docs/performance.md
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; DO_BUILD=0; shift ;;
    --no-build) DO_BUILD=0 ;;
    --quick) PROFILE=quick ;;
    --smoke) PROFILE=smoke ;;
    --out) OUTDOC=$2; shift ;;
    *) echo "usage: run.sh [--build DIR] [--no-build] [--quick] [--smoke] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done
# HOLD: seconds the idle sessions are held before RSS is read; estgw gives an
# idle session's DTLS record buffers back after 2 s without a request (its sweep
# runs every second), so the last sessions opened need 3 s to count as idle.
case $PROFILE in
  full)  N=1000; C=16; NSAT=1000; IDLE="1000 10000"; SPEED=3; HOLD=5;   PEM="once pem" ;;
  quick) N=300;  C=16; NSAT=300;  IDLE="1000";       SPEED=1; HOLD=5;   PEM="once pem" ;;
  smoke) N=20;   C=4;  NSAT=0;    IDLE="20";         SPEED=0; HOLD=0.2; PEM="once" ;;
esac

if [ $DO_BUILD = 1 ]; then
  if [ -d "$BUILD/meson-private" ]; then meson setup --reconfigure "$BUILD" --buildtype=release >/dev/null
  else meson setup "$BUILD" --buildtype=release >/dev/null; fi
  meson compile -C "$BUILD" >/dev/null
fi
BENCH=$BUILD/bench/estgw-bench
BARE=$BUILD/bench/bare-server
FASTCA=$BUILD/bench/fast-ca
ESTGW=$BUILD/src/estgw

WORK=$(mktemp -d /tmp/estgw-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
PKI=$WORK/pki
RES=$WORK/results.jsonl
CMDS=$WORK/commands.txt
: > "$RES"; : > "$CMDS"
# BENCH_PKI: an existing mkpki.sh output to copy (the smoke test reuses the
# integration tests' one when it is there); else generate one.
if [ -n "${BENCH_PKI:-}" ] && [ -f "$BENCH_PKI/.done" ]; then
  mkdir -p "$PKI"; cp "$BENCH_PKI"/*.crt "$BENCH_PKI"/*.key "$PKI"/
else
  bash "$SRC/tests/pki/mkpki.sh" "$PKI" >/dev/null
fi
# The bench device CA: estgw's client_trust for the run, and trusted by the
# fast CA for the direct-HTTPS reference.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/O=estgw bench/CN=Bench Device CA" -keyout "$PKI/bench-dev-ca.key" \
  -out "$PKI/bench-dev-ca.crt" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign" 2>/dev/null
DEVCA=(--device-ca "$PKI/bench-dev-ca.crt" --device-ca-key "$PKI/bench-dev-ca.key")

# Free loopback UDP ports, all asked for at once (one python start-up).
PORTS=($(python3 -c 'import socket
ss=[socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
[s.bind(("127.0.0.1", 0)) for s in ss]; print(" ".join(str(s.getsockname()[1]) for s in ss))'))
free_port() { FREE_PORT=${PORTS[0]}; PORTS=("${PORTS[@]:1}"); }
wait_file() { for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done; echo "timeout: $1" >&2; return 1; }
wait_log() { for _ in $(seq 400); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
             echo "timeout waiting for '$2' in $1:" >&2; tail -5 "$1" >&2; return 1; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

start_ca() {
  rm -f "$WORK/ca.port"
  "$FASTCA" --pki "$PKI" --port 0 --port-file "$WORK/ca.port" --client-trust "$PKI/est-root.crt" \
    --client-trust "$PKI/est-sub.crt" --client-trust "$PKI/bench-dev-ca.crt" 2>>"$WORK/ca.log" &
  CA_PID=$!; PIDS+=($CA_PID)
  wait_file "$WORK/ca.port"; CA_PORT=$(cat "$WORK/ca.port")
}
start_estgw() {
  free_port; GW_PORT=$FREE_PORT
  cat > "$WORK/estgw.conf" <<CONF
[server]
listen = 127.0.0.1:$GW_PORT
certificate = $PKI/gw.crt
private_key = $PKI/gw.key
client_trust = $PKI/bench-dev-ca.crt
max_sessions = 20000
idle_timeout = 3600
[upstream]
url = https://127.0.0.1:$CA_PORT/.well-known/est
trust = $PKI/tls-ca.crt
certificate = $PKI/ra.crt
private_key = $PKI/ra.key
CONF
  : > "$WORK/estgw.log"
  # as deploy/systemd/estgw.service starts it: GnuTLS (which Debian's libcurl
  # links, unused by estgw) skips the set-up its library constructor does
  GNUTLS_NO_IMPLICIT_INIT=1 "$ESTGW" -c "$WORK/estgw.conf" >>"$WORK/estgw.log" 2>&1 &
  GW_PID=$!; PIDS+=($GW_PID)
  wait_log "$WORK/estgw.log" "ready"
  sleep 0.3   # let the /crts cache warm up
}
start_bare() { # once|pem
  free_port; BARE_PORT=$FREE_PORT
  "$BARE" --listen "127.0.0.1:$BARE_PORT" --cert "$PKI/gw.crt" --key "$PKI/gw.key" \
    --trust "$PKI/bench-dev-ca.crt" --creds "$1" 2>"$WORK/bare.log" &
  BARE_PID=$!; PIDS+=($BARE_PID)
  wait_log "$WORK/bare.log" "ready"
}
bench() { # label mode args...
  local label=$1 mode=$2; shift 2
  echo "estgw-bench $mode --label $label ${DEVCA[*]} $*" | sed "s#$WORK#\$WORK#g; s#$BUILD/##g" >> "$CMDS"
  local rc=0
  "$BENCH" "$mode" --label "$label" --json "$RES" "${DEVCA[@]}" "$@" || rc=$?
  [ $rc = 0 ] || [ $rc = 3 ] || { echo "estgw-bench failed ($rc)" >&2; exit 1; }
  [ $PROFILE != smoke ] || [ $rc = 0 ] || { echo "smoke: $label had failures" >&2; exit 1; }
}

# Phase 1: handshake + /crts - estgw vs the bare libcoap server (both credential modes).
start_ca; start_estgw
bench hs_crts_estgw coap --host 127.0.0.1 --port "$GW_PORT" --server-trust "$PKI/gw-ca.crt" \
  -n $N -c $C --ops crts --pid estgw=$GW_PID --pid ca=$CA_PID
stop $GW_PID
for m in $PEM; do
  start_bare $m
  bench hs_crts_bare_$m coap --host 127.0.0.1 --port "$BARE_PORT" --server-trust "$PKI/gw-ca.crt" \
    -n $N -c $C --ops crts --pid bare=$BARE_PID
  stop $BARE_PID
done
# Phase 2: enrolment (handshake + /crts + /sen) via estgw, and straight to the CA.
start_estgw
bench enroll_estgw coap --host 127.0.0.1 --port "$GW_PORT" --server-trust "$PKI/gw-ca.crt" \
  -n $N -c $C --ops crts,sen --pid estgw=$GW_PID --pid ca=$CA_PID
bench enroll_estgw_b64 coap --host 127.0.0.1 --port "$GW_PORT" --server-trust "$PKI/gw-ca.crt" \
  -n $((N / 2)) -c $C --ops crts,sen,sren --block 64 --pid estgw=$GW_PID --pid ca=$CA_PID
stop $GW_PID
bench enroll_https https --url "https://127.0.0.1:$CA_PORT/.well-known/est" \
  --server-trust "$PKI/tls-ca.crt" -n $N -c $C --ops crts,sen --pid ca=$CA_PID
# Phase 3: more devices at once than the CA keeps up with.
if [ $NSAT -gt 0 ]; then
  for c in 64 256; do
    start_estgw
    bench sat_estgw_c$c coap --host 127.0.0.1 --port "$GW_PORT" --server-trust "$PKI/gw-ca.crt" \
      -n $NSAT -c $c --ops sen --timeout 120 --pid estgw=$GW_PID --pid ca=$CA_PID
    stop $GW_PID
  done
fi
# Phase 4: idle sessions held open.
for k in $IDLE; do
  start_estgw
  bench idle_estgw_$k idle --host 127.0.0.1 --port "$GW_PORT" --server-trust "$PKI/gw-ca.crt" \
    -n $k -c 32 --hold $HOLD --pid estgw=$GW_PID
  stop $GW_PID
  start_bare once
  bench idle_bare_$k idle --host 127.0.0.1 --port "$BARE_PORT" --server-trust "$PKI/gw-ca.crt" \
    -n $k -c 32 --hold $HOLD --pid bare=$BARE_PID
  stop $BARE_PID
done
stop $CA_PID
grep -c "certificates issued" "$WORK/ca.log" >/dev/null || true

if [ $PROFILE = smoke ]; then
  python3 "$SRC/bench/report.py" --results "$RES" --check
  echo "bench smoke: OK"
  exit 0
fi
# The crypto floor, same machine, same run.
if [ "$SPEED" -gt 0 ]; then
  openssl speed -seconds "$SPEED" ecdsap256 ecdhp256 > "$WORK/speed.txt" 2>/dev/null
fi
echo "openssl speed -seconds $SPEED ecdsap256 ecdhp256" >> "$CMDS"
python3 "$SRC/bench/report.py" --results "$RES" --speed "$WORK/speed.txt" --commands "$CMDS" \
  --estgw "$ESTGW" --profile "$PROFILE" --analysis "$SRC/bench/analysis.md" --out "$OUTDOC"
echo "wrote $OUTDOC"
