#!/bin/sh
# device-enroll.sh GATEWAY_URI PKI_DIR - a device enrolls through estgw:
# GET /crts, POST /sen with the demo CSR, then prints the subject and issuer
# of the certificate it got (Accept 287: the bare certificate, DER).
set -eu
uri=$1 pki=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
client() { coap-client-openssl -B 30 -C "$pki/gw-ca.crt" -c "$pki/device.crt" -j "$pki/device.key" "$@"; }
client -m get -o "$out/crts.p7" "$uri/.well-known/est/crts"
openssl pkcs7 -inform DER -in "$out/crts.p7" -print_certs -noout >/dev/null
client -m post -t 286 -A 287 -f "$pki/device.csr.der" -o "$out/cert.der" "$uri/.well-known/est/sen"
echo "enrolled: $(openssl x509 -inform DER -in "$out/cert.der" -noout -subject -issuer | tr '\n' ' ')"
