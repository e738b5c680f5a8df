#!/usr/bin/env bash
# run.sh - run the whole estgw benchmark and write docs/performance.md (issue 9).
#
#   bash bench/run.sh [--build DIR] [--no-build] [--quick] [--smoke] [--cluster] [--jpy-only] [--out FILE]
#
# Builds a release tree (default build-bench; --build names another, --no-build
# uses it as it is), generates the test PKI and a bench device CA, starts the
# fast EST CA (bench/fast_ca.c), estgw and the bare libcoap server on loopback
# ports, runs each phase with estgw-bench and writes the results, the commands,
# the machine and the openssl speed floor to docs/performance.md (--out FILE
# elsewhere). Every phase starts fresh server processes. Default run: ~10 min on
# 2 cores. --quick: fewer devices (~3 min). --smoke: a few seconds, checks that
# every tool works end to end and writes nothing into docs/ (the meson 'bench'
# suite). --jpy-only: only the JPY relay phase (stateless join proxy, H6), whose
# section of docs/performance.md is replaced in place. Traffic goes only to
# 127.0.0.x.
# Cluster mode (issue 17, K1): a redis-server started here, enrolments with the
# store off and on in alternating sequential rounds (off on on off ..., a few
# devices at a time so that the 2 cores are not saturated), and 1 vs 2
# instances behind nftables
# jhash DNAT in a network namespace made here (skipped, with the reason in the
# report, when not root or without nft / ip netns). --cluster runs only these
# phases and replaces the "Cluster mode" section of the existing report, leaving
# the other sections as they are. --smoke runs one small store-on phase (when
# redis-server is installed) and no nftables part.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$SRC/build-bench
DO_BUILD=1
PROFILE=full
OUTDOC=$SRC/docs/performance.md
ONLY_CLUSTER=0
JPY_ONLY=0
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; DO_BUILD=0; shift ;;
    --no-build) DO_BUILD=0 ;;
    --quick) PROFILE=quick ;;
    --smoke) PROFILE=smoke ;;
    --cluster) ONLY_CLUSTER=1 ;;
    --jpy-only) JPY_ONLY=1 ;;
    --out) OUTDOC=$2; shift ;;
    *) echo "usage: run.sh [--build DIR] [--no-build] [--quick] [--smoke] [--cluster] [--jpy-only] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done
# HOLD: seconds the idle sessions are held before RSS is read; estgw gives an
# idle session's DTLS record buffers back after 2 s without a request (its sweep
# runs every second), so the last sessions opened need 3 s to count as idle.
case $PROFILE in
  full)  N=1000; C=16; NSAT=1000; IDLE="1000 10000"; SPEED=3; HOLD=5;   PEM="once pem"; NJ=500; JN=200000; JM=10000 ;;
  quick) N=300;  C=16; NSAT=300;  IDLE="1000";       SPEED=1; HOLD=5;   PEM="once pem"; NJ=200; JN=50000;  JM=2000 ;;
  smoke) N=20;   C=4;  NSAT=0;    IDLE="20";         SPEED=0; HOLD=0.2; PEM="once";     NJ=10;  JN=500;    JM=50 ;;
esac
# Cluster phases: devices per round, rounds per store mode (off and on),
# devices at a time in those rounds, devices behind nftables and its rounds.
case $PROFILE in
  full)  CL_N=1000; CL_ROUNDS=4; CL_C=4; NFT_N=1000; NFT_ROUNDS=2 ;;
  quick) CL_N=300;  CL_ROUNDS=2; CL_C=4; NFT_N=300;  NFT_ROUNDS=1 ;;
  smoke) CL_N=20;   CL_ROUNDS=1; CL_C=4; NFT_N=0;    NFT_ROUNDS=0 ;;
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
NS=
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -z "$NS" ] || ip netns del "$NS" 2>/dev/null || true
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

# A free loopback UDP port, asked for when it is needed: a port picked early
# and closed can be taken meanwhile by a client's (or the join proxy's)
# ephemeral port.
free_port() { FREE_PORT=$(python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); }
wait_file() { for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done; echo "timeout: $1" >&2; return 1; }
wait_log() { for _ in $(seq 400); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
             echo "timeout waiting for '$2' in $1:" >&2; tail -5 "$1" >&2; return 1; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

NSX=()  # the command prefix that runs a server in the bench's network namespace
start_ca() {
  rm -f "$WORK/ca.port"
  "${NSX[@]}" "$FASTCA" --pki "$PKI" --port 0 --port-file "$WORK/ca.port" --client-trust "$PKI/est-root.crt" \
    --client-trust "$PKI/est-sub.crt" --client-trust "$PKI/bench-dev-ca.crt" 2>>"$WORK/ca.log" &
  CA_PID=$!; PIDS+=($CA_PID)
  wait_file "$WORK/ca.port"; CA_PORT=$(cat "$WORK/ca.port")
}
# gw_conf FILE PORT [EXTRA]: estgw's config, EXTRA appended (a [cluster] part).
gw_conf() {
  cat > "$1" <<CONF
[server]
listen = 127.0.0.1:$2
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
${3:-}
CONF
}
# start_gw NAME PORT [EXTRA]: estgw with $WORK/NAME.conf and .log; its pid in GW_PID.
start_gw() {
  gw_conf "$WORK/$1.conf" "$2" "${3:-}"
  : > "$WORK/$1.log"
  # as deploy/systemd/estgw.service starts it: GnuTLS (which Debian's libcurl
  # links, unused by estgw) skips the set-up its library constructor does
  GNUTLS_NO_IMPLICIT_INIT=1 "${NSX[@]}" "$ESTGW" -c "$WORK/$1.conf" >>"$WORK/$1.log" 2>&1 &
  GW_PID=$!; PIDS+=($GW_PID)
  wait_log "$WORK/$1.log" " ready, upstream"  # not "already in use"
  case ${3:-} in *redis*) wait_log "$WORK/$1.log" "connected, node" ;; esac
  sleep 0.3   # let the /crts cache warm up
}
start_estgw() { # [EXTRA]
  free_port; GW_PORT=$FREE_PORT
  start_gw estgw "$GW_PORT" "${1:-}"
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
  "${NSX[@]}" "$BENCH" "$mode" --label "$label" --json "$RES" "${DEVCA[@]}" "$@" || rc=$?
  [ $rc = 0 ] || [ $rc = 3 ] || { echo "estgw-bench failed ($rc)" >&2; exit 1; }
  [ $PROFILE != smoke ] || [ $rc = 0 ] || { echo "smoke: $label had failures" >&2; exit 1; }
}

# Redis for cluster mode (issue 17), in the namespace of NSX; pid in REDIS_PID.
start_redis() { # port
  "${NSX[@]}" redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" >>"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!; PIDS+=($REDIS_PID)
  for _ in $(seq 200); do
    "${NSX[@]}" redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return 0; sleep 0.05
  done
  echo "timeout: redis-server" >&2; tail -5 "$WORK/redis.log" >&2; return 1
}
# Redis's read and write system calls so far (/proc/PID/io syscr syscw).
redis_io() { sed -n 's/^sysc[rw]: //p' "/proc/$REDIS_PID/io" | paste -sd' '; }
cluster_conf() { # redis-port node
  printf '[cluster]\nredis = 127.0.0.1:%s\nnode = %s\nseal_key = %s\n' "$1" "$2" "$WORK/seal.key"
}

# Phase 6 (H6): the JPY relay. The same devices directly and through a stateless
# test join proxy (tests/tools/jpy_proxy.py on 127.0.0.2), each pair on one
# estgw process with [brski] jpy_listen; the difference in estgw's CPU per
# device, over the datagrams each device's session relayed, is the relay's
# cost. Two pairs with different datagrams per device separate the cost per
# datagram from the cost per pledge session (a line through both).
jpy_phase() {
  local pair ops blk pf
  for pair in crts:1024 crts,sen,sren:64; do
    ops=${pair%%:*}; blk=${pair##*:}
    free_port; local JPORT=$FREE_PORT
    start_estgw "[brski]
jpy_listen = 127.0.0.1:$JPORT
jpy_proxies = 127.0.0.2
jpy_max_sessions = 65536
jpy_sessions_per_proxy = 65536"
    pf=$WORK/proxy.ports; rm -f "$pf"
    python3 "$SRC/tests/tools/jpy_proxy.py" --bind 127.0.0.2 --registrar "127.0.0.1:$JPORT" \
      --port-file "$pf" 2>>"$WORK/proxy.log" &
    local PX_PID=$!; PIDS+=($PX_PID)
    wait_file "$pf"; read -r PX_PORT PX_CTL < "$pf"
    bench jpy_direct_${ops//,/_} coap --host 127.0.0.1 --port "$GW_PORT" --server-trust "$PKI/gw-ca.crt" \
      -n $NJ -c 4 --ops $ops --block $blk --pid estgw=$GW_PID
    bench jpy_relay_${ops//,/_} coap --host 127.0.0.1 --port "$PX_PORT" --server-trust "$PKI/gw-ca.crt" \
      -n $NJ -c 4 --ops $ops --block $blk --pid estgw=$GW_PID --pid proxy=$PX_PID
    python3 -c 'import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(b"stats", ("127.0.0.1", int(sys.argv[1]))); st = json.loads(s.recv(1 << 20))
print(json.dumps({"pair": sys.argv[2], "in": st["to_registrar"], "out": st["to_pledges"],
                  "max_answer": st["max_answer"], "sessions": len(st["headers"])}))' \
      "$PX_CTL" "${ops//,/_}" >> "$WORK/jpy.jsonl"
    stop $PX_PID; stop $GW_PID
  done
  # the relay alone: synthetic datagrams libcoap drops, direct vs relayed, one
  # header vs many (bench/jpy_load.py)
  free_port; local JPORT=$FREE_PORT MPORT
  MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start_estgw "[brski]
jpy_listen = 127.0.0.1:$JPORT
jpy_proxies = 127.0.0.2
jpy_max_sessions = 65536
jpy_sessions_per_proxy = 65536
jpy_idle_timeout = 1
[metrics]
listen = 127.0.0.1:$MPORT"
  echo "python3 bench/jpy_load.py -n $JN -m $JM --pid estgw ..." >> "$CMDS"
  python3 "$SRC/bench/jpy_load.py" --jpy-port "$JPORT" --dtls-port "$GW_PORT" \
    --metrics "http://127.0.0.1:$MPORT/metrics" --pid $GW_PID -n $JN -m $JM >> "$WORK/jpy.jsonl"
  stop $GW_PID
}
: > "$WORK/jpy.jsonl"
if [ $JPY_ONLY = 1 ]; then
  start_ca; jpy_phase; stop $CA_PID
  python3 "$SRC/bench/report.py" --results "$RES" --jpy "$WORK/jpy.jsonl" --jpy-into "$OUTDOC"
  echo "updated the JPY section of $OUTDOC"
  exit 0
fi

if [ $ONLY_CLUSTER = 0 ]; then
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
jpy_phase
stop $CA_PID
fi

# Phase 5 (issue 17): cluster mode. Store off and on in sequential rounds, one
# CA and one Redis for all of them; then 1 and 2 instances behind nftables
# jhash DNAT in a fresh network namespace each.
CL_SKIP=
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  CL_SKIP="redis-server is not installed (tools/deps.sh)"
  echo "cluster phases skipped: $CL_SKIP" >&2
else
  head -c 32 /dev/urandom > "$WORK/seal.key"; chmod 600 "$WORK/seal.key"
  cut -d' ' -f1-3 /proc/loadavg > "$WORK/loadavg"
  RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start_ca; start_redis "$RPORT"
  echo "redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no   # for the cl_ phases" >> "$CMDS"
  # One estgw at a time, without the store (off) or with it (on), a fresh
  # process per round, CL_C devices at a time: the machine is not saturated,
  # so a round's latency is the path's, not time spent waiting for a core.
  # Rounds alternate off on, on off, ... so that slow drift of the shared
  # machine's load falls on both modes alike. Redis runs through all rounds
  # and is counted in both (off: what it costs idle).
  order=; for r in $(seq "$CL_ROUNDS"); do
    [ $((r % 2)) = 1 ] && order+=" off:$r on:$r" || order+=" on:$r off:$r"
  done
  [ $PROFILE != smoke ] || order=" on:1"
  for mr in $order; do
    m=${mr%:*}; r=${mr#*:}
    extra=; [ $m = off ] || extra=$(cluster_conf "$RPORT" bench-a)
    redis-cli -p "$RPORT" config resetstat >/dev/null
    free_port; start_gw "estgw_$m" "$FREE_PORT" "$extra"
    io0=$(redis_io)
    bench cl_${m}_r$r coap --host 127.0.0.1 --port "$FREE_PORT" --server-trust "$PKI/gw-ca.crt" \
      -n $CL_N -c $CL_C --ops crts,sen --samples --pid estgw=$GW_PID --pid redis=$REDIS_PID
    echo "cl_${m}_r$r $io0 $(redis_io)" >> "$WORK/redis_io.txt"
    stop $GW_PID
    [ $m = on ] || continue
    # what the round asked of Redis (its own counters: calls, usec in the command)
    redis-cli -p "$RPORT" info commandstats | tr -d '\r' | sed -n "s/^cmdstat_/cl_on_r$r /p" >> "$WORK/redis_cmds.txt"
    # the store was used: each device's answer is kept there
    keys=$(redis-cli -p "$RPORT" --scan --pattern 'estgw:a:*' | wc -l)
    echo "cl_on_r$r $keys" >> "$WORK/store_keys.txt"
    [ "$keys" -gt 0 ] || { echo "cl_on_r$r: no answer kept in Redis" >&2; exit 1; }
    redis-cli -p "$RPORT" flushall >/dev/null
  done
  stop $REDIS_PID; stop $CA_PID
  # 1 and 2 instances behind one address: nftables `jhash ip saddr . udp sport
  # mod N` DNAT in the output hook of a namespace made for the phase (its own
  # loopback, so no other traffic and no conntrack entries from before).
  NFT_SKIP=
  if [ "$NFT_N" = 0 ]; then NFT_SKIP="not run by the $PROFILE profile"
  elif [ "$(id -u)" != 0 ]; then NFT_SKIP="not root (a network namespace and nft rules need it)"
  elif ! command -v nft >/dev/null; then NFT_SKIP="nft is not installed (Debian nftables)"
  elif ! command -v ip >/dev/null; then NFT_SKIP="ip is not installed (Debian iproute2)"
  fi
  nft_runs=; for r in $(seq "$NFT_ROUNDS"); do   # 1 2, then 2 1: drift falls on both
    [ $((r % 2)) = 1 ] && nft_runs+=" 1:$r 2:$r" || nft_runs+=" 2:$r 1:$r"
  done
  for kr in $nft_runs; do
    [ -z "$NFT_SKIP" ] || break
    k=${kr%:*}; r=${kr#*:}
    NS=estgw-bench-$$-$k-$r
    if ! ip netns add "$NS" 2>/dev/null; then NS=; NFT_SKIP="ip netns add failed (no CAP_SYS_ADMIN here?)"; break; fi
    ip -n "$NS" link set lo up
    NSX=(ip netns exec "$NS")
    start_ca; start_redis 6379
    maps=; chains=; gws=(); procs=()
    for i in $(seq 0 $((k - 1))); do
      chains+="  chain to$i { meta l4proto udp counter dnat to 127.0.0.1:$((20000 + i)); }"$'\n'
      maps+="${maps:+, }$i : jump to$i"
      start_gw "nft$k-$i" $((20000 + i)) "$(cluster_conf 6379 "bench-$i")"
      gws+=($GW_PID); procs+=(--pid "estgw_$i=$GW_PID")
    done
    printf 'table ip lb {\n%s  chain out {\n    type nat hook output priority -100;\n    udp dport 5684 jhash ip saddr . udp sport mod %s vmap { %s }\n  }\n}\n' \
      "$chains" "$k" "$maps" > "$WORK/nft$k.rules"
    "${NSX[@]}" nft -f "$WORK/nft$k.rules"
    echo "nft -f nft$k.rules   # in a new netns: udp dport 5684 jhash ip saddr . udp sport mod $k vmap { $maps }" >> "$CMDS"
    bench cl_nft_${k}_r$r coap --host 127.0.0.1 --port 5684 --server-trust "$PKI/gw-ca.crt" \
      -n $NFT_N -c 32 --ops crts,sen "${procs[@]}" --pid ca=$CA_PID --pid redis=$REDIS_PID
    # how nft spread the devices: the packets counted by each DNAT chain
    "${NSX[@]}" nft list table ip lb | sed -n 's/.*chain to\([0-9]*\).*/\1/p; s/.*counter packets \([0-9]*\).*/\1/p' \
      | paste -sd' ' | sed "s/^/cl_nft_${k}_r$r /" >> "$WORK/nft_counters.txt"
    for p in "${gws[@]}"; do stop "$p"; done
    stop $REDIS_PID; stop $CA_PID
    NSX=()
    ip netns del "$NS"; NS=
  done
  [ -z "$NFT_SKIP" ] || echo "nftables phases skipped: $NFT_SKIP" >&2
fi
CL_ARGS=(--cluster-skip "$CL_SKIP" --nft-skip "${NFT_SKIP:-}" --nft-counters "$WORK/nft_counters.txt"
         --store-keys "$WORK/store_keys.txt" --redis-cmds "$WORK/redis_cmds.txt" --redis-io "$WORK/redis_io.txt"
         --loadavg "$WORK/loadavg" --cluster-notes "$SRC/bench/cluster.md")

if [ $PROFILE = smoke ]; then
  python3 "$SRC/bench/report.py" --results "$RES" --check
  echo "bench smoke: OK"
  exit 0
fi
if [ $ONLY_CLUSTER = 1 ]; then # replace the cluster section of the existing report
  python3 "$SRC/bench/report.py" --results "$RES" --commands "$CMDS" --profile "$PROFILE" \
    "${CL_ARGS[@]}" --splice "$OUTDOC"
  echo "updated the cluster section of $OUTDOC"
  exit 0
fi
# The crypto floor, same machine, same run.
if [ "$SPEED" -gt 0 ]; then
  openssl speed -seconds "$SPEED" ecdsap256 ecdhp256 > "$WORK/speed.txt" 2>/dev/null
fi
echo "openssl speed -seconds $SPEED ecdsap256 ecdhp256" >> "$CMDS"
python3 "$SRC/bench/report.py" --results "$RES" --speed "$WORK/speed.txt" --commands "$CMDS" \
  --estgw "$ESTGW" --profile "$PROFILE" --analysis "$SRC/bench/analysis.md" "${CL_ARGS[@]}" --out "$OUTDOC" \
  --jpy "$WORK/jpy.jsonl"
# RFC 8295 firmware GET (its own section of the same document, I2).
python3 "$SRC/bench/rfc8295_firmware.py" --estgw "$ESTGW" --doc "$OUTDOC" >/dev/null
echo "wrote $OUTDOC"
