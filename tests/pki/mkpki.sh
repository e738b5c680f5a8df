#!/usr/bin/env bash
# mkpki.sh OUTDIR - generate the test PKI used by the integration tests and the demo.
#
# Owns: every certificate and key the tests use (STYLE.md 12: generated, never committed).
# Must not: depend on estgw code; it uses only bash and the openssl CLI.
# All keys are EC P-256 (PKCS#8 PEM, mode 600), all signatures ECDSA with SHA-256.
# Re-running regenerates everything into OUTDIR (old files of the same names are replaced).
#
# Hierarchies (issuer <- subject):
#   mfg-ca    <- device (IDevID CN=device-001 serialNumber=SN001), device-expired (CN=device-002
#                serialNumber=SN002, validity 2020-01-01..2021-01-01)
#   rogue-ca  <- rogue-device (same subject as device, but untrusted)
#   est-root  <- est-sub <- ra (clientAuth + id-kp-cmcRA), ra-nocmc (clientAuth only),
#                            ldevid (an LDevID, same subject as device), ldevid-expired
#                            (CN=device-004 serialNumber=SN004, 2020-01-01..2021-01-01),
#                            and every LDevID the test CA issues
#   gw-ca     <- gw (estgw's DTLS server certificate; serverAuth + id-kp-cmcRA, see H4, G8),
#                gw-nocmc (serverAuth only), gw-noeku (no EKU extension): both warned about
#   tls-ca    <- ca-server (the test CA's HTTPS certificate), ca-server-expired (expired 2021)
# Bundles: client-trust.crt = mfg-ca + est-root + est-sub (devices estgw accepts),
#          gw.crt = gw leaf + gw-ca (so gw-nocmc.crt, gw-noeku.crt), est-chain.crt = est-sub + est-root.
# CSR: device.csr.der / device.csr.pem, signed by a new key device-new.key, subject as device.
# MKPKI_EXTRA_SAN (optional, e.g. "DNS:ca, DNS:estgw") is added to the SANs of gw and
# ca-server, for containers that reach each other by service name.
set -euo pipefail

die() { echo "mkpki.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: mkpki.sh OUTDIR"
command -v openssl >/dev/null || die "openssl not found"

OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "$OUT/.mkpki.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
umask 077

OID_CMC_RA=1.3.6.1.5.5.7.3.28
SAN="DNS:localhost, IP:127.0.0.1${MKPKI_EXTRA_SAN:+, $MKPKI_EXTRA_SAN}"

# Extension sections for every certificate profile, used with -extfile/-extensions.
cat >"$WORK/ext.cnf" <<EOF
[root_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[sub_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[device]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[gw]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, $OID_CMC_RA
subjectAltName = $SAN
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[gw_nocmc]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $SAN
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[gw_noeku]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectAltName = $SAN
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[tls_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $SAN
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ra]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, $OID_CMC_RA
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ra_nocmc]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF

# Quiet openssl: show its output only when it fails.
ossl() {
  if ! openssl "$@" >"$WORK/log" 2>&1; then
    cat "$WORK/log" >&2
    die "openssl $1 failed"
  fi
}

newkey() { # name
  ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$OUT/$1.key"
  chmod 600 "$OUT/$1.key"
}

serial() { echo "0x$(openssl rand -hex 15)"; }

root_ca() { # name subject
  newkey "$1"
  ossl req -new -x509 -sha256 -days 3650 -key "$OUT/$1.key" -subj "$2" \
    -set_serial "$(serial)" -config "$WORK/ext.cnf" -extensions root_ca -out "$OUT/$1.crt"
}

issue() { # name subject issuer profile [days]
  newkey "$1"
  ossl req -new -sha256 -key "$OUT/$1.key" -subj "$2" -out "$WORK/$1.csr"
  ossl x509 -req -sha256 -in "$WORK/$1.csr" -CA "$OUT/$3.crt" -CAkey "$OUT/$3.key" \
    -set_serial "$(serial)" -days "${5:-825}" -extfile "$WORK/ext.cnf" -extensions "$4" \
    -out "$OUT/$1.crt"
}

# An already expired certificate: openssl 3.0's x509 cannot backdate, "openssl ca" can.
issue_expired() { # name subject issuer profile
  newkey "$1"
  ossl req -new -sha256 -key "$OUT/$1.key" -subj "$2" -out "$WORK/$1.csr"
  mkdir -p "$WORK/ca-db"
  : >"$WORK/ca-db/index.txt"
  cat >"$WORK/ca.cnf" <<EOF
[ca]
default_ca = expired
[expired]
database = $WORK/ca-db/index.txt
new_certs_dir = $WORK/ca-db
serial = $WORK/ca-db/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
serialNumber = optional
EOF
  serial | sed 's/^0x//' >"$WORK/ca-db/serial"
  ossl ca -batch -config "$WORK/ca.cnf" -cert "$OUT/$3.crt" -keyfile "$OUT/$3.key" \
    -in "$WORK/$1.csr" -out "$OUT/$1.crt" -notext -preserveDN \
    -startdate 20200101000000Z -enddate 20210101000000Z \
    -extfile "$WORK/ext.cnf" -extensions "$4"
  if openssl x509 -in "$OUT/$1.crt" -noout -checkend 0 >/dev/null; then
    die "$1.crt is not expired"
  fi
}

verify() { # cafile cert [untrusted]
  local args=(-CAfile "$OUT/$1")
  [ $# -lt 3 ] || args+=(-untrusted "$OUT/$3")
  openssl verify "${args[@]}" "$OUT/$2" >/dev/null 2>&1 || die "$2 does not verify against $1"
}

DEV_SUBJ="/CN=device-001/serialNumber=SN001"

# Device trust: manufacturer CA and IDevIDs.
root_ca mfg-ca "/O=estgw test/CN=Test Manufacturer CA"
issue device "$DEV_SUBJ" mfg-ca device 3650
issue_expired device-expired "/CN=device-002/serialNumber=SN002" mfg-ca device
root_ca rogue-ca "/O=rogue/CN=Rogue Manufacturer CA"
issue rogue-device "$DEV_SUBJ" rogue-ca device 3650

# EST CA: root, issuing sub-CA, the RA certificates.
root_ca est-root "/O=estgw test/CN=Test EST Root CA"
issue est-sub "/O=estgw test/CN=Test EST Issuing CA" est-root sub_ca 3650
issue ra "/O=estgw test/CN=estgw RA" est-sub ra
issue ra-nocmc "/O=estgw test/CN=estgw RA without cmcRA" est-sub ra_nocmc
issue ldevid "$DEV_SUBJ" est-sub device
issue_expired ldevid-expired "/CN=device-004/serialNumber=SN004" est-sub device

# Gateway DTLS server certificate: leaf + issuer in gw.crt, gw-ca.crt for clients.
root_ca gw-ca "/O=estgw test/CN=Test Gateway CA"
issue gw "/O=estgw test/CN=localhost" gw-ca gw
cat "$OUT/gw-ca.crt" >>"$OUT/gw.crt"
# Without id-kp-cmcRA (G8: warned about at start-up and by --check).
issue gw-nocmc "/O=estgw test/CN=localhost" gw-ca gw_nocmc
cat "$OUT/gw-ca.crt" >>"$OUT/gw-nocmc.crt"
issue gw-noeku "/O=estgw test/CN=localhost" gw-ca gw_noeku
cat "$OUT/gw-ca.crt" >>"$OUT/gw-noeku.crt"

# Upstream TLS: the test CA's HTTPS server certificate.
root_ca tls-ca "/O=estgw test/CN=Test TLS CA"
issue ca-server "/O=estgw test/CN=localhost" tls-ca tls_server
issue_expired ca-server-expired "/O=estgw test/CN=localhost" tls-ca tls_server

# Bundles.
cat "$OUT/mfg-ca.crt" "$OUT/est-root.crt" "$OUT/est-sub.crt" >"$OUT/client-trust.crt"
cat "$OUT/est-sub.crt" "$OUT/est-root.crt" >"$OUT/est-chain.crt"

# A device CSR for a new key (what a device sends to /sen).
newkey device-new
ossl req -new -sha256 -key "$OUT/device-new.key" -subj "$DEV_SUBJ" -outform DER \
  -out "$OUT/device.csr.der"
ossl req -inform DER -in "$OUT/device.csr.der" -out "$OUT/device.csr.pem"

chmod 644 "$OUT"/*.crt "$OUT"/device.csr.*
chmod 600 "$OUT"/*.key

# Self-check: every chain verifies where it should and the expired one is expired.
verify mfg-ca.crt device.crt
verify rogue-ca.crt rogue-device.crt
verify est-root.crt est-sub.crt
verify est-root.crt ra.crt est-sub.crt
verify est-root.crt ra-nocmc.crt est-sub.crt
verify est-root.crt ldevid.crt est-sub.crt
verify gw-ca.crt gw.crt
verify gw-ca.crt gw-nocmc.crt
verify gw-ca.crt gw-noeku.crt
verify tls-ca.crt ca-server.crt
if openssl verify -CAfile "$OUT/client-trust.crt" "$OUT/rogue-device.crt" >/dev/null 2>&1; then
  die "rogue-device.crt verifies against client-trust.crt"
fi
openssl x509 -in "$OUT/ra.crt" -noout -ext extendedKeyUsage | grep -q "CMC Registration Authority\|$OID_CMC_RA" ||
  die "ra.crt lacks id-kp-cmcRA"

if openssl x509 -in "$OUT/gw-nocmc.crt" -noout -ext extendedKeyUsage | grep -q "CMC Registration Authority\|$OID_CMC_RA"; then
  die "gw-nocmc.crt carries id-kp-cmcRA"
fi
openssl x509 -in "$OUT/gw-noeku.crt" -noout -ext extendedKeyUsage 2>/dev/null | grep -q . &&
  die "gw-noeku.crt has an extended key usage extension"

echo "mkpki.sh: PKI written to $OUT"
