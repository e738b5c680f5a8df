#!/usr/bin/env bash
# demo.sh - build estgw, make a demo PKI, start the test EST CA on 127.0.0.1:8443
# and run estgw in the foreground on coaps://127.0.0.1:5684 (Ctrl-C stops both).
# Installs missing Debian packages first when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
[ -d build/meson-private ] || meson setup build >/dev/null
meson compile -C build >/dev/null
demo=$PWD/demo
rm -rf "$demo"
mkdir -p "$demo"
bash tests/pki/mkpki.sh "$demo" >/dev/null
sed -e 's|^url = .*|url = https://127.0.0.1:8443/.well-known/est|' config/estgw.conf > "$demo/estgw.conf"
python3 tests/ca/est_ca.py --pki "$demo" --port 8443 --port-file "$demo/ca.port" \
  >"$demo/ca.log" 2>&1 &
ca_pid=$!
trap 'kill $ca_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$demo/ca.port" ] && break; sleep 0.1; done
[ -s "$demo/ca.port" ] || { echo "demo: the test CA did not start, see $demo/ca.log" >&2; exit 1; }
cat <<MSG
Test EST CA: https://127.0.0.1:8443/.well-known/est (log: demo/ca.log)
estgw: coaps://127.0.0.1:5684 — try, in another shell:

  coap-client-openssl -m get -c demo/device.crt -j demo/device.key -C demo/gw-ca.crt \\
    -A 287 -o ca.der coaps://127.0.0.1:5684/.well-known/est/crts
  coap-client-openssl -m post -t 286 -b 64 -f demo/device.csr.der -o cert.p7 \\
    -c demo/device.crt -j demo/device.key -C demo/gw-ca.crt coaps://127.0.0.1:5684/.well-known/est/sen
  openssl pkcs7 -inform DER -in cert.p7 -print_certs -noout
  coap-client-openssl -m post -t 286 -A 62 -b 64 -f demo/device.csr.der -o keycert.cbor \
    -c demo/device.crt -j demo/device.key -C demo/gw-ca.crt coaps://127.0.0.1:5684/.well-known/est/skc

MSG
./build/src/estgw -c "$demo/estgw.conf"
