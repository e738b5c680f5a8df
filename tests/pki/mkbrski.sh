#!/usr/bin/env bash
# mkbrski.sh OUTDIR - the test PKI of the cBRSKI tests (section H of
# docs/conformance.md), next to mkpki.sh's.
#
# Owns: the certificates and keys of the registrar, pledges, manufacturers and MASA.
# Must not: depend on estgw code; bash and the openssl CLI only. EC P-256 everywhere.
#
# Hierarchies (issuer <- subject):
#   bmfg-ca    <- pledge (IDevID, CN=pledge-001 serialNumber=TEST0001, AKI, no MASA URL:
#                 the tests issue more with brski-ext.cnf), pledge-b (serialNumber=TEST0002)
#                 bmfg-ca also signs the vouchers (the MASA signing key, as in the CV examples)
#   bmfg2-ca   <- pledge2 (serialNumber=TEST0100): a second manufacturer (per-manufacturer lines)
#   brogue-ca  <- brogue (serialNumber=TEST0001): a manufacturer estgw does not trust
#   domain-ca  <- registrar (id-kp-cmcRA + serverAuth + clientAuth, SAN localhost),
#                 registrar-noclient (no clientAuth), registrar-nocmc (no cmcRA),
#                 registrar-other (another registrar key: proximity mismatch)
#   masa-tls-ca <- masa-tls (SAN localhost, 127.0.0.1), masa-tls-wrong (SAN wrong.example)
# Bundles: NAME-chain.crt = NAME + domain-ca for each registrar certificate.
set -euo pipefail

die() { echo "mkbrski.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: mkbrski.sh OUTDIR"
command -v openssl >/dev/null || die "openssl not found"
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -n "$OUT" ] && [ "$OUT" != / ] || die "bad OUTDIR"
WORK=$(mktemp -d "$OUT/.mkbrski.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
umask 077
CMCRA=1.3.6.1.5.5.7.3.28

cat >"$WORK/ext.cnf" <<EXT_END
[root_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[idevid]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
authorityKeyIdentifier = keyid:always
[registrar]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, $CMCRA, serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[registrar_noclient]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $CMCRA, serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[registrar_nocmc]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[masa_tls]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid:always
[masa_tls_wrong]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
authorityKeyIdentifier = keyid:always
EXT_END

ossl() {
  if ! openssl "$@" >"$WORK/log" 2>&1; then cat "$WORK/log" >&2; die "openssl $1 failed"; fi
}
newkey() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$OUT/$1.key"; }
serial() { echo "0x$(openssl rand -hex 15)"; }
root_ca() { # name subject
  newkey "$1"
  ossl req -new -x509 -sha256 -days 3650 -key "$OUT/$1.key" -subj "$2" \
    -set_serial "$(serial)" -config "$WORK/ext.cnf" -extensions root_ca -out "$OUT/$1.crt"
}
issue() { # name subject issuer profile
  newkey "$1"
  ossl req -new -sha256 -key "$OUT/$1.key" -subj "$2" -out "$WORK/$1.csr"
  ossl x509 -req -sha256 -in "$WORK/$1.csr" -CA "$OUT/$3.crt" -CAkey "$OUT/$3.key" \
    -set_serial "$(serial)" -days 3650 -extfile "$WORK/ext.cnf" -extensions "$4" \
    -out "$OUT/$1.crt"
}

root_ca bmfg-ca "/O=estgw brski test/CN=Test Pledge Manufacturer CA"
issue pledge "/CN=pledge-001/serialNumber=TEST0001" bmfg-ca idevid
issue pledge-b "/CN=pledge-002/serialNumber=TEST0002" bmfg-ca idevid
root_ca bmfg2-ca "/O=estgw brski test/CN=Second Manufacturer CA"
issue pledge2 "/CN=pledge-100/serialNumber=TEST0100" bmfg2-ca idevid
root_ca brogue-ca "/O=rogue/CN=Untrusted Manufacturer CA"
issue brogue "/CN=pledge-001/serialNumber=TEST0001" brogue-ca idevid
root_ca domain-ca "/O=estgw brski test/CN=Test Domain CA"
issue registrar "/O=estgw brski test/CN=localhost" domain-ca registrar
issue registrar-noclient "/O=estgw brski test/CN=localhost" domain-ca registrar_noclient
issue registrar-nocmc "/O=estgw brski test/CN=localhost" domain-ca registrar_nocmc
issue registrar-other "/O=estgw brski test/CN=localhost" domain-ca registrar
root_ca masa-tls-ca "/O=estgw brski test/CN=Test MASA TLS CA"
issue masa-tls "/CN=localhost" masa-tls-ca masa_tls
issue masa-tls-wrong "/CN=wrong.example" masa-tls-ca masa_tls_wrong
for r in registrar registrar-noclient registrar-nocmc registrar-other; do
  cat "$OUT/$r.crt" "$OUT/domain-ca.crt" >"$OUT/$r-chain.crt"
done
cp "$WORK/ext.cnf" "$OUT/brski-ext.cnf" # the tests issue IDevIDs with a MASA URL from it
chmod 644 "$OUT"/*.crt "$OUT/brski-ext.cnf"
chmod 600 "$OUT"/*.key
for c in pledge pledge-b; do
  openssl verify -CAfile "$OUT/bmfg-ca.crt" "$OUT/$c.crt" >/dev/null || die "$c does not verify"
done
openssl verify -CAfile "$OUT/domain-ca.crt" "$OUT/registrar.crt" >/dev/null || die "registrar"
openssl verify -CAfile "$OUT/masa-tls-ca.crt" "$OUT/masa-tls.crt" >/dev/null || die "masa-tls"
