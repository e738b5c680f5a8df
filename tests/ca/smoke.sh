#!/usr/bin/env bash
# smoke.sh - check the test EST CA (est_ca.py) and the PKI script (mkpki.sh) with curl + openssl.
#
# Owns: a temp dir with a fresh PKI, two est_ca.py instances on free loopback ports, and
# the checks below. Must not: use estgw. Ends with "N passed, N failed"; exit 0 only when
# nothing failed.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
check() { # name, command...
  local name=$1; shift
  if "$@"; then ok; else bad "$name"; fi
}

P=$TMP/pki
bash "$HERE/../pki/mkpki.sh" "$P" >/dev/null || { echo "mkpki.sh failed"; echo "0 passed, 1 failed"; exit 1; }

# start_ca NAME ARGS... : start est_ca.py, wait for its port file(s)
start_ca() {
  local name=$1; shift
  python3 "$HERE/est_ca.py" --pki "$P" --port-file "$TMP/$name.port" "$@" 2>"$TMP/$name.log" &
  PIDS+=($!)
  for _ in $(seq 100); do
    [ -s "$TMP/$name.port" ] && return 0
    sleep 0.1
  done
  echo "est_ca.py ($name) did not start:"; cat "$TMP/$name.log"
  echo "$PASS passed, $((FAIL + 1)) failed"
  exit 1
}

start_ca main --label lab1 --control-port-file "$TMP/main.ctl"
PORT=$(cat "$TMP/main.port")
CTL=http://127.0.0.1:$(cat "$TMP/main.ctl")
EST=https://127.0.0.1:$PORT/.well-known/est

# req CERTNAME METHOD URL [curl args...]: body -> $TMP/body, headers -> $TMP/hdrs,
# status -> $CODE, curl exit -> $RC
req() {
  local who=$1 method=$2 url=$3; shift 3
  local auth=()
  [ "$who" = none ] || auth=(--cert "$P/$who.crt" --key "$P/$who.key")
  CODE=$(curl -sS --max-time 20 --cacert "$P/tls-ca.crt" "${auth[@]}" -X "$method" \
    -o "$TMP/body" -D "$TMP/hdrs" -w '%{http_code}' "$@" "$url" 2>"$TMP/curl.err")
  RC=$?
}
get() { req ra GET "$EST/$1" "${@:2}"; }
post_csr() { # op file [content-type]
  req ra POST "$EST/$1" --data-binary "@$2" -H "Content-Type: ${3:-application/pkcs10}"
}
ctl() { curl -sS -o "$TMP/ctl.out" -w '%{http_code}' -X POST --data "$1" "$CTL/control"; }
setmode() { local c; c=$(ctl "$1"); [ "$c" = 200 ] || bad "control $1 answered $c: $(cat "$TMP/ctl.out")"; }
hdr() { grep -i "^$1:" "$TMP/hdrs" | head -1 | cut -d: -f2- | tr -d '\r' | sed 's/^ //'; }
stat() { curl -sS "$CTL/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, d))" "$1"; }
is() { [ "$1" = "$2" ] || { echo "  got '$1', want '$2'"; return 1; }; }
b64body() { tr -d '\r' <"$TMP/body" | base64 -d >"$TMP/body.der" 2>/dev/null; }  # GNU base64 -d refuses CR
p7count() { openssl pkcs7 -inform DER -in "$1" -print_certs -noout 2>/dev/null | grep -c '^subject='; }

base64 -w64 "$P/device.csr.der" >"$TMP/csr.b64"
base64 -w0 "$P/device.csr.der" >"$TMP/csr1.b64"
base64 -w76 "$P/device.csr.der" >"$TMP/csr76.b64"
base64 -w77 "$P/device.csr.der" >"$TMP/csr77.b64"
sed 's/$/\r/' "$TMP/csr.b64" >"$TMP/csr-crlf.b64"
openssl req -inform DER -in "$P/device.csr.der" -noout -pubkey >"$TMP/csr.pub"

# ---- cacerts
get cacerts
check "cacerts status" is "$CODE" 200
check "cacerts content-type" is "$(hdr Content-Type)" "application/pkcs7-mime; smime-type=certs-only"
check "cacerts CTE" is "$(hdr Content-Transfer-Encoding)" base64
check "cacerts Base64" b64body
check "cacerts has 2 certs" is "$(p7count "$TMP/body.der")" 2
get lab1/cacerts
check "labelled cacerts" is "$CODE" 200
get nolabel/cacerts
check "unknown label 404" is "$CODE" 404
get nothing
check "unknown op 404" is "$CODE" 404
req ra GET "https://127.0.0.1:$PORT/elsewhere"
check "unknown path 404" is "$CODE" 404
get simpleenroll
check "GET simpleenroll 405" is "$CODE" 405

# ---- simpleenroll / simplereenroll
enroll_ok() { # op csrfile
  post_csr "$1" "$2"
  is "$CODE" 200 || return 1
  is "$(hdr Content-Type)" "application/pkcs7-mime; smime-type=certs-only" || return 1
  b64body || return 1
  is "$(p7count "$TMP/body.der")" 1 || return 1
  openssl pkcs7 -inform DER -in "$TMP/body.der" -print_certs >"$TMP/issued.pem" 2>/dev/null || return 1
  openssl x509 -in "$TMP/issued.pem" -noout -pubkey >"$TMP/issued.pub" || return 1
  cmp -s "$TMP/issued.pub" "$TMP/csr.pub" || { echo "  public key differs from the CSR's"; return 1; }
  openssl verify -CAfile "$P/est-root.crt" -untrusted "$P/est-sub.crt" "$TMP/issued.pem" >/dev/null || return 1
  openssl x509 -in "$TMP/issued.pem" -noout -subject | grep -q "CN = device-001, serialNumber = SN001"
}
check "simpleenroll (64-column Base64)" enroll_ok simpleenroll "$TMP/csr.b64"
check "simpleenroll (76-column Base64)" enroll_ok simpleenroll "$TMP/csr76.b64"
check "simpleenroll (64-column Base64, CRLF)" enroll_ok simpleenroll "$TMP/csr-crlf.b64"
# Strict like libest: one long line, or a line over 76 characters, is refused.
refused_like_libest() { # csrfile
  post_csr simpleenroll "$1"
  is "$CODE" 400 || return 1
  grep -q "^Problem reading DER encoded certificate request" "$TMP/body"
}
check "one-line Base64 refused (libest)" refused_like_libest "$TMP/csr1.b64"
check "77-column Base64 refused (libest)" refused_like_libest "$TMP/csr77.b64"
check "simplereenroll" enroll_ok simplereenroll "$TMP/csr.b64"
check "labelled simpleenroll" enroll_ok lab1/simpleenroll "$TMP/csr.b64"
openssl x509 -in "$TMP/issued.pem" -noout -ext extendedKeyUsage >"$TMP/eku.txt"
check "issued cert has clientAuth" grep -q "TLS Web Client Authentication" "$TMP/eku.txt"

post_csr simpleenroll "$TMP/csr.b64" text/plain
check "wrong Content-Type 415" is "$CODE" 415
post_csr simpleenroll "$P/device.csr.der"
check "binary CSR 400" is "$CODE" 400
echo 'not*base64!' >"$TMP/junk.b64"
post_csr simpleenroll "$TMP/junk.b64"
check "bad Base64 400" is "$CODE" 400
head -c 100 /dev/urandom | base64 >"$TMP/rand.b64"
post_csr simpleenroll "$TMP/rand.b64"
check "not a CSR 400" is "$CODE" 400
python3 -c "import sys; d=bytearray(open(sys.argv[1],'rb').read()); d[-3]^=0x55; sys.stdout.buffer.write(d)" \
  "$P/device.csr.der" | base64 >"$TMP/badsig.b64"
post_csr simpleenroll "$TMP/badsig.b64"
check "bad CSR signature 400" is "$CODE" 400

# ---- csrattrs
get csrattrs
check "csrattrs status" is "$CODE" 200
check "csrattrs content-type" is "$(hdr Content-Type)" application/csrattrs
check "csrattrs Base64" b64body
openssl asn1parse -inform DER -in "$TMP/body.der" >"$TMP/attrs.txt" 2>&1
check "csrattrs challengePassword" grep -q challengePassword "$TMP/attrs.txt"
check "csrattrs secp256r1" grep -q prime256v1 "$TMP/attrs.txt"
check "csrattrs ecdsa-with-SHA256" grep -q ecdsa-with-SHA256 "$TMP/attrs.txt"

# ---- serverkeygen: split the multipart answer into part1.*, part2.* (type + decoded body)
split_parts() {
  python3 - "$TMP/body" "$TMP" "$(hdr Content-Type)" <<'EOF'
import base64, re, sys
body, out, ctype = open(sys.argv[1], "rb").read(), sys.argv[2], sys.argv[3]
boundary = re.search(r"boundary=([^;\s]+)", ctype).group(1).encode()
parts = body.split(b"--" + boundary)[1:-1]
for i, part in enumerate(parts, 1):
    head, _, data = part.strip(b"\r\n").partition(b"\r\n\r\n")
    ptype = re.search(rb"(?im)^content-type:\s*(.*?)\s*$", head).group(1).decode()
    open(f"{out}/part{i}.type", "w").write(ptype)
    binary = b"content-transfer-encoding" not in head.lower()
    open(f"{out}/part{i}.der", "wb").write(data if binary else base64.b64decode(data))
print(len(parts))
EOF
}
skg_ok() { # expected first part type
  post_csr serverkeygen "$TMP/csr.b64"
  is "$CODE" 200 || return 1
  [[ "$(hdr Content-Type)" == multipart/mixed* ]] || return 1
  is "$(split_parts)" 2 || return 1
  is "$(cat "$TMP/part1.type")" "$1"
}
skg_keys_match() { # keyfile certfile
  local k c
  k=$(openssl pkey -inform DER -in "$1" -pubout 2>/dev/null) || return 1
  c=$(openssl pkcs7 -inform DER -in "$2" -print_certs | openssl x509 -noout -pubkey) || return 1
  is "$k" "$c"
}
check "serverkeygen" skg_ok application/pkcs8
check "serverkeygen key is PKCS#8" openssl pkcs8 -nocrypt -inform DER -in "$TMP/part1.der" -out /dev/null
check "serverkeygen key matches cert" skg_keys_match "$TMP/part1.der" "$TMP/part2.der"
check "serverkeygen cert is not the CSR key" \
  bash -c "! openssl pkcs7 -inform DER -in '$TMP/part2.der' -print_certs | openssl x509 -noout -pubkey | cmp -s - '$TMP/csr.pub'"

# ---- client authentication
req ra-nocmc GET "$EST/cacerts"
check "ra-nocmc gets 403" is "$CODE" 403
req none GET "$EST/cacerts"
check "no client cert fails TLS" [ "$RC" -ne 0 ]
req device GET "$EST/cacerts"
check "untrusted client cert fails TLS" [ "$RC" -ne 0 ]

# ---- keep-alive: two requests, one connection
before=$(stat connections)
curl -sS -o /dev/null -o /dev/null --cacert "$P/tls-ca.crt" --cert "$P/ra.crt" --key "$P/ra.key" \
  "$EST/cacerts" "$EST/csrattrs"
check "keep-alive reuses the connection" is "$(stat connections)" $((before + 1))

# ---- fault modes
check "control: bad mode 400" is "$(ctl '{"mode":"nonsense"}')" 400
check "control: bad JSON 400" is "$(ctl 'nope')" 400

setmode '{"mode":"binary"}'
get cacerts
check "binary: 200" is "$CODE" 200
check "binary: DER body" is "$(p7count "$TMP/body")" 2
check "binary: no CTE" is "$(hdr Content-Transfer-Encoding)" ""

setmode '{"mode":"delay=1.5"}'
start=$(date +%s%N)
get cacerts
took_ms=$((($(date +%s%N) - start) / 1000000))
check "delay: 200" is "$CODE" 200
check "delay: took >= 1.4 s" [ "$took_ms" -ge 1400 ]

setmode '{"mode":"status=503","retry_after":"30"}'
get cacerts
check "status=503" is "$CODE" 503
check "status=503 Retry-After" is "$(hdr Retry-After)" 30
check "status=503 text body" grep -q 503 "$TMP/body"

setmode '{"mode":"status=302"}'
get cacerts
check "status=302" is "$CODE" 302
check "status=302 Location" [ -n "$(hdr Location)" ]

setmode '{"mode":"accepted"}'
post_csr simpleenroll "$TMP/csr.b64"
check "accepted: 202" is "$CODE" 202
check "accepted: Retry-After 1" is "$(hdr Retry-After)" 1
setmode '{"mode":"accepted=5"}'
post_csr simpleenroll "$TMP/csr.b64"
check "accepted=5: Retry-After 5" is "$(hdr Retry-After)" 5
setmode '{"mode":"accepted","retry_after":"none"}'
post_csr simpleenroll "$TMP/csr.b64"
check "accepted without Retry-After" is "$CODE/$(hdr Retry-After)" "202/"

setmode '{"mode":"garbage"}'
get cacerts
check "garbage: 200" is "$CODE" 200
check "garbage: not Base64" bash -c "! base64 -d <'$TMP/body' >/dev/null 2>&1"

setmode '{"mode":"truncated"}'
post_csr simpleenroll "$TMP/csr.b64"
check "truncated: 200" is "$CODE" 200
check "truncated: Base64 ok" b64body
check "truncated: PKCS#7 broken" bash -c "! openssl pkcs7 -inform DER -in '$TMP/body.der' -noout 2>/dev/null"

setmode '{"mode":"html"}'
get cacerts
check "html: 200" is "$CODE" 200
check "html: text/html" is "$(hdr Content-Type)" "text/html; charset=utf-8"

setmode '{"mode":"csrattrs=empty"}'
get csrattrs
check "csrattrs=empty: 204" is "$CODE" 204
get cacerts
check "csrattrs=empty leaves cacerts alone" is "$CODE" 200

setmode '{"mode":"bare-ct"}'
get cacerts
check "bare-ct" is "$(hdr Content-Type)" application/pkcs7-mime

setmode '{"mode":"no-cte"}'
get cacerts
check "no-cte: no header" is "$(hdr Content-Transfer-Encoding)" ""
check "no-cte: Base64 body" b64body

# layout=L: the answer's line width and line end (the last line ends too, except oneline)
layout_is() { # width end: every line but the last is WIDTH long and ends in END
  python3 - "$TMP/body" "$1" "$2" <<'PY'
import sys
body, width, end = open(sys.argv[1], "rb").read(), sys.argv[2], sys.argv[3]
if width == "0":
    sys.exit(0 if b"\n" not in body and b"\r" not in body else 1)
sep = b"\r\n" if end == "crlf" else b"\n"
lines = body.split(sep)
ok = lines[-1] == b"" and all(b"\r" not in l and b"\n" not in l for l in lines)
ok = ok and all(len(l) == int(width) for l in lines[:-2]) and 0 < len(lines[-2]) <= int(width)
sys.exit(0 if ok else 1)
PY
}
for L in oneline:0:lf lf64:64:lf crlf64:64:crlf lf76:76:lf crlf76:76:crlf; do
  IFS=: read -r name width end <<<"$L"
  setmode "{\"mode\":\"layout=$name\"}"
  get cacerts
  check "layout=$name: Base64 ok" b64body
  check "layout=$name: lines" layout_is "$width" "$end"
done

setmode '{"mode":"sec1-key"}'
check "sec1-key: serverkeygen" skg_ok application/pkcs8
check "sec1-key: key is SEC1" openssl ec -inform DER -in "$TMP/part1.der" -noout -out /dev/null 2>/dev/null
check "sec1-key: not PKCS#8" bash -c "! openssl pkcs8 -nocrypt -inform DER -in '$TMP/part1.der' -out /dev/null 2>/dev/null"

setmode '{"mode":"parts-reversed"}'
check "parts-reversed" skg_ok "application/pkcs7-mime; smime-type=certs-only"

setmode '{"mode":"drop"}'
get cacerts
check "drop: no answer" [ "$RC" -ne 0 ]

setmode '{"mode":"status=500","op":"simpleenroll","count":1}'
get cacerts
check "op filter: other op normal" is "$CODE" 200
post_csr simpleenroll "$TMP/csr.b64"
check "op+count: faulted once" is "$CODE" 500
post_csr simpleenroll "$TMP/csr.b64"
check "op+count: then normal" is "$CODE" 200
check "control: back to normal" grep -q '"mode": "normal"' <(curl -sS "$CTL/control")

# ---- operations a CA may lack, switched while it runs
check "control: csrattrs off" is "$(ctl '{"csrattrs":false}')" 200
get csrattrs
check "csrattrs off: 404" is "$CODE" 404
get cacerts
check "csrattrs off leaves cacerts alone" is "$CODE" 200
check "control: serverkeygen off" is "$(ctl '{"serverkeygen":false}')" 200
post_csr serverkeygen "$TMP/csr.b64"
check "serverkeygen off: 404" is "$CODE" 404
check "control: shows both off" grep -q '"csrattrs": false' <(curl -sS "$CTL/control")
check "control: non-boolean 400" is "$(ctl '{"csrattrs":"no"}')" 400
check "control: both on" is "$(ctl '{"csrattrs":true,"serverkeygen":true}')" 200
get csrattrs
check "csrattrs on again: 200" is "$CODE" 200
check "serverkeygen on again" skg_ok application/pkcs8

# ---- stats
setmode '{"mode":"normal","reset_stats":true}'
get cacerts; get cacerts; get lab1/cacerts; post_csr simpleenroll "$TMP/csr.b64"
check "stats: cacerts path" is "$(stat "paths['/.well-known/est/cacerts']")" 2
check "stats: labelled path" is "$(stat "paths['/.well-known/est/lab1/cacerts']")" 1
check "stats: ops" is "$(stat "ops['cacerts'], ops['simpleenroll']")" "(3, 1)"
check "stats: issued" is "$(stat issued)" 1
check "stats: total" is "$(stat total)" 4
check "stats: last request headers" is "$(stat "last['headers']['content-type']")" application/pkcs10

# ---- command-line fault flags and --no-ra-check on a second instance
start_ca cli --no-ra-check --mode status=503 --retry-after 7 --fault-op cacerts --fault-count 1 \
  --no-csrattrs
CLI=https://127.0.0.1:$(cat "$TMP/cli.port")/.well-known/est
req ra-nocmc GET "$CLI/cacerts"
check "cli: --mode status=503" is "$CODE/$(hdr Retry-After)" "503/7"
req ra-nocmc GET "$CLI/cacerts"
check "cli: --no-ra-check, count used up" is "$CODE" 200
req ra-nocmc GET "$CLI/csrattrs"
check "cli: --no-csrattrs 404" is "$CODE" 404
req ra GET "$CLI/control"
check "cli: no control on HTTPS without --control" is "$CODE" 404

check "CA logged one line per request" grep -q "GET /.well-known/est/cacerts 200 subject=O=estgw test,CN=estgw RA" "$TMP/main.log"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
