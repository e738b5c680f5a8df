#!/usr/bin/env python3
"""RFC 8295 EST extensions over CoAP end to end (docs/conformance.md I1-I3; docs/rfc8295.md):
coap-client-openssl as the device -> estgw -> the test CA's RFC 8295 endpoints
(tests/ca/rfc8295_ca.py).

Bytes are compared on both sides with the test's own code and the openssl CLI: the device's
payload against the DER the CA made (its artefact files), and each /return body against the
CA's request log (the SHA-256 of the DER it decoded). A GET answer larger than
[rfc8295] separate_max is given to the device's retry (the first request gets 5.03 +
Max-Age): libcoap 4.3.1 clients lose separate multi-block answers, so get() asks twice.
Run one test: test_rfc8295.TestRfc8295.test_I2_firmware_1mib_64_byte_blocks_slow_ca
"""
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Stack, StackTest, openssl, wait_for  # noqa: E402

WK = "/.well-known/est"
CF_CMS, CF_CRLS, CF_P12 = 65000, 65001, 65002
CF_TAMP_QUERY, CF_TAMP_UPDATE = 65003, 65004
CF_TAMP_STATUS_RESPONSE = 65008
KEK = "000102030405060708090a0b0c0d0e0f"


class XStack(Stack):
    """The stack with the CA's RFC 8295 endpoints and an [rfc8295] section."""

    def __init__(self, rfc8295="enable = all", extra_upstream="", **kw):
        self.xdir = tempfile.mkdtemp(prefix="estgw-8295-")
        super().__init__(ca_args=("--label", "lbl1", "--label", "bin", "--label", "typo",
                                  "--rfc8295", self.xdir),
                         extra_upstream=extra_upstream, **kw)
        with open(self.conf, "a") as f:
            f.write(f"[rfc8295]\n{rfc8295}\n")

    def cleanup(self):
        super().cleanup()
        shutil.rmtree(self.xdir, ignore_errors=True)

    def artefact(self, name):
        with open(os.path.join(self.xdir, name), "rb") as f:
            return f.read()

    def requests(self):
        try:
            with open(os.path.join(self.xdir, "requests.jsonl")) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []


class XTest(StackTest):
    stack_class = XStack

    def get(self, path, **kw):
        """GET; a 5.03 (answer kept for the retry, or the CA is slow) is asked again once
        the gateway has the answer (its log says so)."""
        r = self.s.coap(path, **kw)
        deadline = time.time() + 30
        while r.code == "5.03" and time.time() < deadline:
            wait_for(lambda: "kept for the retry" in self.s.log() or
                     re.search(r"-> HTTP 200", self.s.log()), what="the CA's answer")
            r = self.s.coap(path, **kw)
        return r

    def post(self, path, payload, cf, **kw):
        """POST in 64-byte Block1 blocks. coap-client prints nothing for an empty 2.04:
        the code is then read from the gateway's request log line."""
        before = self.s.log().count(" POST " + path + " ")
        r = self.s.coap(path, method="post", cf=cf, payload=payload, block=64, **kw)
        if r.code is None:
            wait_for(lambda: self.s.log().count(" POST " + path + " ") > before,
                     what="the request log line")
            line = [ln for ln in self.s.log().splitlines() if " POST " + path + " " in ln][-1]
            r.code = re.search(r"code=(\d\.\d\d)", line).group(1)
        return r


def signed_cms(oid, content=b"\x30\x03\x02\x01\x00"):
    """SignedData (openssl cms -sign) of @content with eContentType @oid, DER."""
    pki = harness.ensure_pki()
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in")
        with open(src, "wb") as f:
            f.write(content)
        return openssl("cms", "-sign", "-binary", "-nodetach", "-econtent_type", oid, "-in", src,
                       "-signer", os.path.join(pki, "device.crt"), "-inkey",
                       os.path.join(pki, "device.key"), "-outform", "DER")


class TestRfc8295(XTest):
    stack_kwargs = {"rfc8295": "enable = all\npal_authority = gw.test:5684"}

    def test_I1_I3_pal_xml_uris_rewritten(self):
        r = self.get(WK + "/pal", block=64)
        self.assertEqual(r.code, "2.xx", r)
        root = ET.fromstring(r.payload)
        ns = "{urn:ietf:params:xml:ns:pal}"
        uris = [m.find(f"{ns}info/{ns}uri").text for m in root.findall(f"{ns}message")]
        gw = "coaps://gw.test:5684" + WK
        self.assertEqual(uris, [gw + "/crts", gw + "/eecerts/1234", gw + "/crls",
                                gw + "/symmetrickeys", gw + "/firmware?v=2&x=1", gw + "/tamp",
                                gw + "/skg", "https://other.example/est/eecerts/9",
                                gw + "/pal?page=2"])
        self.assertEqual(self.s.requests()[-1]["accept"], "application/xml")

    def test_I1_pal_json_by_accept_and_406(self):
        r = self.get(WK + "/pal", accept=50, block=64)
        self.assertEqual(r.code, "2.xx", r)
        entries = json.loads(r.payload)
        self.assertEqual(entries[1]["info"]["uri"], "coaps://gw.test:5684" + WK + "/eecerts/1234")
        self.assertEqual(self.s.requests()[-1]["accept"], "application/json")
        self.assertEqual(self.s.coap(WK + "/pal", accept=60).code, "4.06")

    def test_I2_pal_202_is_5_03_with_max_age(self):
        self.s.ca_control(x8295={"status_once": 202})
        r = self.s.coap(WK + "/pal", extra=("-v", "7"))
        self.assertEqual(r.code, "5.03", r)
        self.assertRegex(r.stderr, r"Max-Age:1\b")
        self.assertEqual(self.get(WK + "/pal", block=64).code, "2.xx")

    def test_I1_checks_method_cf_accept(self):
        self.assertEqual(self.s.coap(WK + "/firmware", method="post", cf=CF_CMS,
                                     payload=b"\x30\x00").code, "4.05")
        self.assertEqual(self.s.coap(WK + "/firmware/return", method="post",
                                     payload=b"\x30\x00").code, "4.15")
        self.assertEqual(self.s.coap(WK + "/tamp/return", method="post", cf=CF_CMS,
                                     payload=b"\x30\x00").code, "4.15")
        self.assertEqual(self.s.coap(WK + "/crls", accept=281).code, "4.06")
        self.assertEqual(self.s.requests(), [], "nothing went to the CA")

    def test_I2_eecerts_tail_and_crls_big(self):
        r = self.get(WK + "/lbl1/eecerts/1234", block=64)
        self.assertEqual(r.payload, self.s.artefact("eecerts.der"))
        self.assertEqual(self.s.requests()[-1]["path"], WK + "/lbl1/eecerts/1234")
        crls = self.s.artefact("crls.der")
        self.assertGreater(len(crls), 64 * 1024)
        r = self.get(WK + "/crls", block=1024)
        self.assertEqual(r.payload, crls)
        r = self.get(WK + "/typo/crls", block=1024)  # application/pkcs7-smime (RFC 8295 App. A)
        self.assertEqual(r.payload, crls)
        text = openssl("pkcs7", "-inform", "DER", "-print", "-noout", data=r.payload).decode()
        self.assertIn("crl", text.lower())

    def test_I2_symmetrickeys_base64_and_binary_upstream(self):
        want = self.s.artefact("symkey.der")
        self.assertEqual(self.get(WK + "/symmetrickeys", block=64).payload, want)
        self.assertEqual(self.get(WK + "/bin/symmetrickeys", block=64).payload, want)

    def test_I2_tamp_type_and_accept(self):
        want = self.s.artefact("tamp-status-query.der")
        self.assertEqual(self.get(WK + "/tamp", accept=CF_TAMP_QUERY, block=64).payload, want)
        self.s.ca_control(x8295={"tamp_type": "update"})
        r = self.s.coap(WK + "/lbl1/tamp", accept=CF_TAMP_QUERY, block=64)  # not the kept one
        self.assertEqual(r.code, "4.06", r)

    def test_I2_returns_2_04_base64_upstream(self):
        cases = [("symmetrickeys/return", CF_CMS, "1.2.840.113549.1.9.16.1.25"),
                 ("firmware/return", CF_CMS, "1.2.840.113549.1.9.16.1.17"),
                 ("skg/return", CF_CMS, "2.16.840.1.101.2.1.2.78.3"),
                 ("skc/return", CF_CMS, "2.16.840.1.101.2.1.2.78.6"),
                 ("tamp/return", CF_TAMP_STATUS_RESPONSE, "2.16.840.1.101.2.1.2.77.2")]
        for path, cf, oid in cases:
            der = signed_cms(oid)
            r = self.post(WK + "/" + path, der, cf)
            self.assertEqual(r.code, "2.04", (path, r))
            self.assertEqual(r.payload, b"")
            last = self.s.requests()[-1]
            up = path.replace("skg/", "serverkeygen/").replace("skc/", "serverkeygen/")
            self.assertEqual(last["path"], WK + "/" + up)
            self.assertEqual(last["encoding"], "base64")
            self.assertEqual(last["der_sha256"], hashlib.sha256(der).hexdigest())
        # a TAMP body of another type than its Content-Format says, or no DER: 4.00 here
        n = len(self.s.requests())
        r = self.post(WK + "/tamp/return", signed_cms("2.16.840.1.101.2.1.2.77.9"),
                      CF_TAMP_STATUS_RESPONSE)
        self.assertEqual(r.code, "4.00", r)
        self.assertEqual(self.post(WK + "/firmware/return", b"not DER", CF_CMS).code, "4.00")
        self.assertEqual(len(self.s.requests()), n)

    def test_I2_skg_pkcs12_by_accept(self):
        with open(os.path.join(harness.ensure_pki(), "device.csr.der"), "rb") as f:
            csr = f.read()
        r = self.s.coap(WK + "/skg", method="post", cf=286, accept=CF_P12, payload=csr, block=64)
        self.assertEqual(r.code, "2.xx", r)
        self.assertEqual(r.payload, self.s.artefact("last.p12"))
        info = openssl("pkcs12", "-passin", "pass:estgw-test", "-nodes",
                       "-info", data=r.payload).decode()
        self.assertIn("BEGIN CERTIFICATE", info)
        self.assertEqual(self.s.requests()[-1]["accept"], "application/pkcs12")

    def test_I2_skc_encrypted_key_package_by_accept(self):
        with open(os.path.join(harness.ensure_pki(), "device.csr.der"), "rb") as f:
            csr = f.read()
        r = self.s.coap(WK + "/skc", method="post", cf=286, accept=CF_CMS, payload=csr, block=64)
        self.assertEqual(r.code, "2.xx", r)
        self.assertEqual(r.payload, self.s.artefact("last.ekp"))
        key = openssl("cms", "-decrypt", "-inform", "DER", "-secretkey", KEK, "-secretkeyid",
                      "0102", "-binary", data=r.payload)
        self.assertEqual(key, self.s.artefact("skg/key.der"))
        self.assertEqual(self.s.requests()[-1]["accept"], "application/cms")

    def test_I1_discovery_lists_enabled_not_under_ace_est(self):
        r = self.s.coap("/.well-known/core")
        text = r.payload.decode()
        self.assertIn(f'<{WK}/pal>;rt="estgw.8295.pal";ct="41 50"', text)
        self.assertIn(f'<{WK}/firmware>;rt="estgw.8295.firmware";ct={CF_CMS}', text)
        self.assertIn(f'<{WK}/tamp>;rt="estgw.8295.tamp";ct="65003 65004 65005 65006 65007"',
                      text)
        r = self.s.coap("/.well-known/core?rt=ace.est*")
        self.assertNotIn("estgw.8295", r.payload.decode())
        self.assertIn("ace.est.crts", r.payload.decode())


class TestRfc8295Firmware(XTest):
    stack_kwargs = {"rfc8295": "enable = firmware", "extra_upstream": "answer_within = 1"}

    def test_I2_firmware_1mib_64_byte_blocks_slow_ca(self):
        self.s.ca_control(x8295={"delay": 2})
        first = self.s.coap(WK + "/firmware", block=64)
        self.assertEqual(first.code, "5.03", first)  # answer_within = 1 < the CA's 2 s (D2)
        t0 = time.time()
        r = self.get(WK + "/firmware", block=64, timeout=600)
        took = time.time() - t0
        want = self.s.artefact("firmware.der")
        self.assertEqual(len(r.payload), len(want))
        self.assertEqual(r.payload, want)
        content = openssl("cms", "-verify", "-noverify", "-inform", "DER", "-binary",
                          data=r.payload)
        self.assertEqual(content, self.s.artefact("firmware.bin"))
        self.assertEqual(len([q for q in self.s.requests() if q["path"].endswith("/firmware")]),
                         1, "the retry was answered from the kept answer")
        print(f"1 MiB firmware in 64-byte blocks: {took:.1f} s", file=sys.stderr)


class TestRfc8295Off(XTest):
    stack_kwargs = {"rfc8295": "enable = pal crls\ncms_post_encoding = binary"}

    def test_I1_disabled_operations_4_04_and_not_listed(self):
        for path in ("/firmware", "/lbl1/symmetrickeys", "/tamp", "/eecerts/1"):
            self.assertEqual(self.s.coap(WK + path).code, "4.04", path)
        self.assertEqual(self.s.coap(WK + "/skg/return", method="post", cf=CF_CMS,
                                     payload=b"\x30\x00").code, "4.04")
        text = self.s.coap("/.well-known/core").payload.decode()
        self.assertIn("estgw.8295.pal", text)
        self.assertNotIn("estgw.8295.firmware", text)

    def test_I3_pal_json_entries_of_disabled_operations_dropped(self):
        r = self.get(WK + "/pal", accept=50, block=64)
        self.assertEqual(r.code, "2.xx", r)
        entries = json.loads(r.payload)
        self.assertEqual([e["type"] for e in entries], ["0002", "0005", "0001"])
        self.assertEqual(entries[0]["info"]["uri"], WK + "/crts")  # no pal_authority: path only
        self.assertIn("entries dropped", self.s.log())


class TestRfc8295Binary(XTest):
    stack_kwargs = {"rfc8295": "enable = symmetrickeys\ncms_post_encoding = binary"}

    def test_I2_return_binary_switch(self):
        der = signed_cms("1.2.840.113549.1.9.16.1.25")
        r = self.post(WK + "/symmetrickeys/return", der, CF_CMS)
        self.assertEqual(r.code, "2.04", r)
        last = self.s.requests()[-1]
        self.assertEqual(last["encoding"], "binary")
        self.assertIsNone(last["cte"])
        self.assertEqual(last["der_sha256"], hashlib.sha256(der).hexdigest())


if __name__ == "__main__":
    harness.main(__name__)
