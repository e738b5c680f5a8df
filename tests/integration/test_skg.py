#!/usr/bin/env python3
"""Server-side key generation end to end (docs/conformance.md F, B6, D): /skg and /skc through
coap-client-openssl -> estgw -> the test EST CA, upstream and registrar modes.

The CBOR answer is decoded here by a small decoder of our own, and keys and
certificates are checked with the openssl CLI: nothing is shared with estgw.
Answers are large and separate, so requests use Block1 (-b 64): libcoap
4.3.1 clients lose multi-block separate responses otherwise (docs/libraries.md,
"Separate responses").
Run one test: test_skg.py TestUpstreamKeygen.test_F_skg_block64
"""
import base64
import os
import re
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import (StackTest, certs_of_pkcs7_der, new_csr, openssl, pubkey_of_cert_der,  # noqa: E402
                     pubkey_of_csr_der)

WK = "/.well-known/est"
KEK = "000102030405060708090a0b0c0d0e0f"  # the test CA's default --kek


# ---------------------------------------------------------------- test-side CBOR and DER

def cbor_head(data, pos):
    """(major type, argument, next position) of one CBOR head (RFC 8949 3)."""
    b = data[pos]
    major, info = b >> 5, b & 0x1F
    if info < 24:
        return major, info, pos + 1
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if size is None:
        raise ValueError(f"unsupported CBOR additional info {info}")
    arg = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
    if arg < (24 if size == 1 else 1 << (8 * size // 2)):
        raise ValueError("CBOR argument not in its shortest form")
    return major, arg, pos + 1 + size


def multipart_core(data):
    """application/multipart-core (RFC 8710) -> [(cf, bytes), ...]; strict."""
    major, n, pos = cbor_head(data, 0)
    if major != 4 or n % 2:
        raise ValueError("not an even-sized CBOR array")
    out = []
    for _ in range(n // 2):
        major, cf, pos = cbor_head(data, pos)
        if major != 0:
            raise ValueError("Content-Format is not an unsigned integer")
        major, length, pos = cbor_head(data, pos)
        if major != 2 or pos + length > len(data):
            raise ValueError("representation is not a byte string")
        out.append((cf, data[pos:pos + length]))
        pos += length
    if pos != len(data):
        raise ValueError("bytes after the CBOR array")
    return out


def der(tag, content):
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def der_items(buf):
    """Top-level TLVs of buf as (tag, whole, content)."""
    out, pos = [], 0
    while pos < len(buf):
        tag, first = buf[pos], buf[pos + 1]
        hdr, length = 2, first
        if first & 0x80:
            hdr += first & 0x7F
            length = int.from_bytes(buf[pos + 2:pos + hdr], "big")
        out.append((tag, buf[pos:pos + hdr + length], buf[pos + hdr:pos + hdr + length]))
        pos += hdr + length
    return out


OID_SMIME_CAPS = bytes.fromhex("06092a864886f70d01090f")
OID_DECRYPT_KEY_ID = bytes.fromhex("060b2a864886f70d0109100225")
AES128_WRAP = bytes.fromhex("0609608648016503040105")  # id-aes128-wrap


def csr_asking_encryption(pki, key_id):
    """The device CSR (subject, key) re-made with SMIMECapabilities and
    DecryptKeyIdentifier attributes (RFC 7030 4.4.1.1), signed with
    device-new.key by the openssl CLI."""
    with open(os.path.join(pki, "device.csr.der"), "rb") as f:
        csr = f.read()
    cri = der_items(der_items(csr)[0][2])[0][2]
    version, subject, spki = der_items(cri)[:3]
    caps = der(0x30, OID_SMIME_CAPS + der(0x31, der(0x30, der(0x30, AES128_WRAP))))
    dkid = der(0x30, OID_DECRYPT_KEY_ID + der(0x31, der(0x04, key_id)))
    new_cri = der(0x30, version[1] + subject[1] + spki[1] + der(0xA0, caps + dkid))
    with tempfile.NamedTemporaryFile() as f:
        f.write(new_cri)
        f.flush()
        sig = openssl("dgst", "-sha256", "-sign", os.path.join(pki, "device-new.key"), f.name)
    alg = der(0x30, bytes.fromhex("06082a8648ce3d040302"))
    out = der(0x30, new_cri + alg + der(0x03, b"\x00" + sig))
    openssl("req", "-inform", "DER", "-verify", "-noout", data=out)
    return out


def pubkey_of_pkcs8(key_der):
    return openssl("pkey", "-inform", "DER", "-pubout", "-outform", "DER", data=key_der)


def csr_der(pki):
    with open(os.path.join(pki, "device.csr.der"), "rb") as f:
        return f.read()


def subject_of_csr(csr):
    return openssl("req", "-inform", "DER", "-noout", "-subject", data=csr)


def subject_of_cert(cert_der):
    return openssl("x509", "-inform", "DER", "-noout", "-subject", "-nameopt", "RFC2253",
                   data=cert_der).decode().strip()


class KeygenTest(StackTest):
    """Helpers for /skg and /skc."""

    def keygen(self, short, accept=62, csr=None, path=None, block=64):
        return self.s.coap(path or f"{WK}/{short}", method="post", cf=286, accept=accept,
                           payload=csr or csr_der(self.s.pki), block=block)

    def expect_answer(self, r, key_cf, cert_cf):
        """Decode a CF 62 answer and check its shape; (key, cert part)."""
        self.assertEqual(r.rc, 0, r)
        parts = multipart_core(r.payload)
        self.assertEqual([cf for cf, _ in parts], [key_cf, cert_cf], parts)
        return parts[0][1], parts[1][1]

    def expect_key_fits_cert(self, key, cert_part, cert_cf):
        cert = certs_of_pkcs7_der(cert_part)[0] if cert_cf == 281 else cert_part
        if cert_cf == 281:
            self.assertEqual(len(certs_of_pkcs7_der(cert_part)), 1)
        self.assertEqual(pubkey_of_pkcs8(key), pubkey_of_cert_der(cert))
        # PKCS#8 PrivateKeyInfo: version 0, then an AlgorithmIdentifier.
        text = openssl("asn1parse", "-inform", "DER", data=key).decode()
        self.assertRegex(text, r"^\s*0:d=0 .*SEQUENCE\s*\n\s*\d+:d=1 .*INTEGER\s*:00")
        self.assertIn("id-ecPublicKey", text)
        return cert

    def expect_error(self, r, code, diag):
        self.assertEqual(r.code, code, r)
        self.assertIn(diag, r.diag, r)


class TestUpstreamKeygen(KeygenTest):
    """[server] serverkeygen = upstream (the default): the CA makes the key."""

    def test_A3_discovery_lists_skg_skc(self):
        r = self.s.coap("/.well-known/core?rt=ace.est.sk*")
        self.assertEqual(r.rc, 0, r)
        text = r.payload.decode()
        self.assertIn(f'<{WK}/skg>;rt="ace.est.skg";ct=62', text)
        self.assertIn(f'<{WK}/skc>;rt="ace.est.skc";ct=62', text)

    def test_F_skg_block64(self):
        r = self.keygen("skg")
        key, p7 = self.expect_answer(r, 284, 281)
        cert = self.expect_key_fits_cert(key, p7, 281)
        self.assertIn("CN=device-001", subject_of_cert(cert))
        # F1: the CA ignored the CSR's key: the certificate has a new one.
        self.assertNotEqual(pubkey_of_cert_der(cert), pubkey_of_csr_der(csr_der(self.s.pki)))
        self.assertRegex(self.s.log(), r'client="[^"]*CN=device-001[^"]*" POST '
                                       r'/.well-known/est/skg upstream=200 code=2\.04')

    def test_F_skc_block64(self):
        r = self.keygen("skc")
        key, cert = self.expect_answer(r, 284, 287)
        self.expect_key_fits_cert(key, cert, 287)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/skc upstream=200 code=2\.04")

    def test_B3_skg_without_accept_is_62(self):
        r = self.keygen("skg", accept=None)
        self.expect_answer(r, 284, 281)

    def test_B3_skg_accept_281_4_06(self):
        r = self.keygen("skg", accept=281)
        self.expect_error(r, "4.06", "Accept must be 62")

    def test_A2_skc_with_label(self):
        r = self.keygen("skc", path=f"{WK}/lbl1/skc")
        key, cert = self.expect_answer(r, 284, 287)
        self.expect_key_fits_cert(key, cert, 287)
        self.assertEqual(self.s.ca_stats()["paths"].get(f"{WK}/lbl1/serverkeygen"), 1)

    def test_B6_sec1_key_wrapped_into_pkcs8(self):
        self.s.ca_control(mode="sec1-key")
        r = self.keygen("skg")
        key, p7 = self.expect_answer(r, 284, 281)
        self.expect_key_fits_cert(key, p7, 281)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/skg upstream=200 code=2\.04 "
                                       r"[\d.]+ms \(key part was a bare SEC1 key, wrapped")

    def test_F2_parts_reversed(self):
        self.s.ca_control(mode="parts-reversed")
        key, cert = self.expect_answer(self.keygen("skc"), 284, 287)
        self.expect_key_fits_cert(key, cert, 287)

    def test_F2_unusual_but_valid_multipart(self):
        self.s.ca_control(mode="mp-variant")
        key, p7 = self.expect_answer(self.keygen("skg"), 284, 281)
        self.expect_key_fits_cert(key, p7, 281)

    def test_F3_encrypted_key_passed_as_280(self):
        key_id = b"\x0a\x0b\x0c\x0d"
        csr = csr_asking_encryption(self.s.pki, key_id)
        for short, cert_cf in (("skg", 281), ("skc", 287)):
            cms, cert_part = self.expect_answer(self.keygen(short, csr=csr), 280, cert_cf)
            # The device, which knows the KEK, gets its key out: SignedData ->
            # EnvelopedData -> PKCS#8 (estgw never decrypted it).
            with tempfile.TemporaryDirectory() as d:
                signed, env = os.path.join(d, "s.der"), os.path.join(d, "e.der")
                with open(signed, "wb") as f:
                    f.write(cms)
                openssl("cms", "-verify", "-noverify", "-binary", "-inform", "DER", "-in",
                        signed, "-out", env)
                key = openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in", env,
                              "-secretkey", KEK, "-secretkeyid", key_id.hex())
            self.expect_key_fits_cert(key, cert_part, cert_cf)
        self.assertEqual(self.s.ca_stats()["encrypted_keys"], 2)

    def test_D_serverkeygen_404_and_501(self):
        for status, code in ((404, "4.04"), (501, "5.01")):
            self.s.ca_control(mode=f"status={status}", op="serverkeygen", count=1)
            r = self.keygen("skg")
            self.expect_error(r, code, f"upstream answered {status}")

    def test_D_serverkeygen_204_5_02_and_429_4_29(self):
        """204: no key, no certificate: 5.02. 429: 4.29 + Max-Age (RFC 8516)."""
        for short in ("skg", "skc"):
            self.s.ca_control(mode="status=204", op="serverkeygen", count=1)
            r = self.keygen(short)
            self.expect_error(r, "5.02", "upstream answered 204 without a certificate or key")
            self.assertRegex(self.s.log(), rf"POST /.well-known/est/{short} upstream=204 "
                                           r"code=5\.02")
        self.s.ca_control(mode="status=429", retry_after="25", op="serverkeygen", count=1)
        r = self.s.coap(f"{WK}/skc", method="post", cf=286, payload=csr_der(self.s.pki),
                        block=64, extra=["-v", "7"])
        self.assertEqual(r.code, "4.29", r)
        self.assertEqual(re.findall(r"Max-Age:(\d+)", r.stderr)[-1:], ["25"], r.stderr[-2000:])

    def test_F_malformed_multipart_5_02(self):
        rows = (("mp-unclosed", "upstream multipart without closing boundary"),
                ("mp-no-key", "upstream multipart has no key part"),
                ("mp-no-cert", "upstream multipart has no certificate part"),
                ("garbage", "part is not Base64 DER"),
                ("truncated", "upstream certificate part is not Base64 DER"),
                ("html", "upstream sent text/html"))
        for mode, diag in rows:
            self.s.ca_control(mode=mode, op="serverkeygen", count=1)
            r = self.keygen("skg")
            self.expect_error(r, "5.02", diag)
            # The reason is in the log line too (html: the media type only).
            why = "" if mode == "html" else re.escape(diag.replace("upstream ", "", 1))
            self.assertRegex(self.s.log(), r"POST /.well-known/est/skg upstream=200 code=5\.02 "
                                           r"[\d.]+ms" + (r" \(.*" + why + r".*\)" if why else ""))
        # The gateway is still fine.
        self.expect_answer(self.keygen("skc"), 284, 287)

    def test_G6_garbage_csr_4_00(self):
        r = self.keygen("skg", csr=b"\x30\x03\x02\x01\x00")
        self.expect_error(r, "4.00", "malformed")


class TestRegistrarKeygen(KeygenTest):
    """[server] serverkeygen = registrar against a CA without /serverkeygen."""

    stack_kwargs = {"extra_server": "serverkeygen = registrar",
                    "ca_args": ("--label", "lbl1", "--no-serverkeygen")}

    def enrolled_csr(self):
        """The CSR estgw sent to /simpleenroll (as the CA recorded it)."""
        return base64.b64decode(self.s.ca_stats()["last_csr"])

    def test_F4_skg_key_made_by_registrar(self):
        key, p7 = self.expect_answer(self.keygen("skg"), 284, 281)
        cert = self.expect_key_fits_cert(key, p7, 281)
        self.assertIn("CN=device-001", subject_of_cert(cert))
        self.assertIn("serialNumber=SN001", subject_of_cert(cert))
        stats = self.s.ca_stats()
        self.assertEqual(stats["ops"].get("simpleenroll"), 1, stats)
        self.assertNotIn("serverkeygen", stats["ops"])
        # The CSR estgw made carries the new key and the device's subject,
        # and its signature verified at the CA (else no certificate).
        sent = self.enrolled_csr()
        self.assertEqual(pubkey_of_csr_der(sent), pubkey_of_pkcs8(key))
        self.assertEqual(subject_of_csr(sent), subject_of_csr(csr_der(self.s.pki)))
        text = openssl("req", "-inform", "DER", "-noout", "-text", data=sent).decode()
        self.assertNotIn("challengePassword", text)
        log = self.s.log()
        self.assertRegex(log, r"POST /.well-known/est/skg upstream=200 code=2\.04 "
                              r"[\d.]+ms \(key made by estgw\)")
        self.assertNotIn("PRIVATE KEY", log)

    def test_F4_skc_key_made_by_registrar(self):
        key, cert = self.expect_answer(self.keygen("skc", path=f"{WK}/lbl1/skc"), 284, 287)
        self.expect_key_fits_cert(key, cert, 287)
        self.assertEqual(self.s.ca_stats()["paths"].get(f"{WK}/lbl1/simpleenroll"), 1)

    def test_F4_each_request_gets_a_new_key(self):
        """A new CSR gets a new key; the same CSR again (a device whose answer
        was lost) gets the same key from the kept answer, no second enrollment."""
        k1, _ = self.expect_answer(self.keygen("skc"), 284, 287)
        k1b, _ = self.expect_answer(self.keygen("skc", block=128), 284, 287)
        self.assertEqual(k1, k1b)
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), 1)
        other = new_csr(self.s.dir, "second")
        k2, _ = self.expect_answer(self.keygen("skc", csr=other), 284, 287)
        self.assertNotEqual(k1, k2)
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), 2)

    def test_F4_encrypted_key_request_5_01(self):
        csr = csr_asking_encryption(self.s.pki, b"\x01\x02")
        r = self.keygen("skg", csr=csr)
        self.expect_error(r, "5.01", "encrypted keys need the CA's serverkeygen")
        self.assertNotIn("simpleenroll", self.s.ca_stats()["ops"])

    def test_D_enroll_refused_maps_per_spec_d(self):
        self.s.ca_control(mode="status=403", op="simpleenroll", count=1)
        self.expect_error(self.keygen("skg"), "4.03", "upstream answered 403")
        self.s.ca_control(mode="accepted=7", op="simpleenroll", count=1)
        r = self.keygen("skg")
        self.assertEqual(r.code, "5.03", r)

    def test_D_enroll_204_5_02(self):
        self.s.ca_control(mode="status=204", op="simpleenroll", count=1)
        self.expect_error(self.keygen("skg"), "5.02",
                          "upstream answered 204 without a certificate or key")

    def test_G6_garbage_csr_4_00(self):
        r = self.keygen("skc", csr=b"\x30\x03\x02\x01\x00")
        self.expect_error(r, "4.00", "malformed")


class TestKeygenOff(KeygenTest):
    stack_kwargs = {"extra_server": "serverkeygen = off"}

    def test_A3_off_not_listed_and_4_04(self):
        text = self.s.coap("/.well-known/core").payload.decode()
        self.assertIn("/crts", text)
        self.assertNotIn("skg", text)
        self.assertNotIn("skc", text)
        for short in ("skg", "skc"):
            self.expect_error(self.keygen(short), "4.04", "serverkeygen not enabled")
        self.assertNotIn("serverkeygen", self.s.ca_stats()["ops"])


if __name__ == "__main__":
    harness.main(__name__)
