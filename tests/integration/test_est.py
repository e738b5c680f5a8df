#!/usr/bin/env python3
"""estgw end to end: coap-client-openssl -> estgw (DTLS/CoAP) -> test EST CA (HTTPS).

Run one test: test_est.py TestCore.test_C_sen_block1_block2
Requirement IDs (docs/conformance.md) are in the test names.
"""
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import (Stack, StackTest, certs_of_pkcs7_der, openssl, pubkey_of_cert_der,  # noqa: E402
                     pubkey_of_csr_der)

WK = "/.well-known/est"


def csr_der(pki):
    with open(os.path.join(pki, "device.csr.der"), "rb") as f:
        return f.read()


def parse_links(text):
    """link-format -> {path: {attr: value}} (test-side parser)."""
    links = {}
    for part in re.findall(r"<([^>]*)>((?:;[^,<]*)*)", text):
        attrs = {}
        for a in part[1].split(";")[1:]:
            k, _, v = a.partition("=")
            attrs[k] = v.strip('"')
        links[part[0]] = attrs
    return links


class TestDiscovery(StackTest):
    stack_kwargs = {"extra_server": "root = /est"}

    def test_A3_discovery_lists_est_resources(self):
        r = self.s.coap("/.well-known/core")
        self.assertEqual(r.rc, 0, r)
        links = parse_links(r.payload.decode())
        self.assertEqual(links["/est"]["rt"], "ace.est")
        self.assertEqual(links["/est/crts"], {"rt": "ace.est.crts", "ct": "281 287"})
        self.assertEqual(links["/est/sen"], {"rt": "ace.est.sen", "ct": "281 287"})
        self.assertEqual(links["/est/sren"], {"rt": "ace.est.sren", "ct": "281 287"})
        self.assertEqual(links["/est/att"], {"rt": "ace.est.att", "ct": "285"})
        # serverkeygen = upstream (the default) serves them (F).
        self.assertEqual(links["/est/skg"], {"rt": "ace.est.skg", "ct": "62"})
        self.assertEqual(links["/est/skc"], {"rt": "ace.est.skc", "ct": "62"})

    def test_A4_discovery_rt_prefix_filter(self):
        r = self.s.coap("/.well-known/core?rt=ace.est*")
        links = parse_links(r.payload.decode())
        self.assertEqual(set(links), {"/est", "/est/crts", "/est/sen", "/est/sren", "/est/att",
                                      "/est/skg", "/est/skc"})

    def test_A4_discovery_rt_exact_and_ct_filter(self):
        links = parse_links(self.s.coap("/.well-known/core?rt=ace.est.sen").payload.decode())
        self.assertEqual(set(links), {"/est/sen"})
        links = parse_links(self.s.coap("/.well-known/core?ct=285").payload.decode())
        self.assertEqual(set(links), {"/est/att"})
        r = self.s.coap("/.well-known/core?rt=nothing")
        self.assertEqual(r.payload, b"")

    def test_A1_extra_root_serves_crts(self):
        r = self.s.coap("/est/crts")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(certs_of_pkcs7_der(r.payload)), 2)


class TestCore(StackTest):
    def test_C_crts_accept_281(self):
        r = self.s.coap(WK + "/crts", accept=281)
        self.assertEqual(r.rc, 0, r)
        certs = certs_of_pkcs7_der(r.payload)
        self.assertEqual(len(certs), 2)
        self.assertRegex(self.s.log(), r'GET /.well-known/est/crts upstream=(cache|200) code=2\.05')

    def test_B3_crts_without_accept_is_pkcs7(self):
        r = self.s.coap(WK + "/crts")
        self.assertEqual(len(certs_of_pkcs7_der(r.payload)), 2)

    def test_B4_crts_accept_287_single_root(self):
        r = self.s.coap(WK + "/crts", accept=287)
        self.assertEqual(r.rc, 0, r)
        text = openssl("x509", "-inform", "DER", "-noout", "-subject", "-issuer",
                       data=r.payload).decode()
        subj = re.search(r"subject=(.*)", text).group(1)
        iss = re.search(r"issuer=(.*)", text).group(1)
        self.assertEqual(subj, iss, "Accept 287 on crts must return the self-signed root")

    def test_C_sen_block1_block2(self):
        csr = csr_der(self.s.pki)
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr, block=64)
        self.assertEqual(r.rc, 0, r)
        harness.assert_issued_for(self, r.payload, csr)
        log = self.s.log()
        self.assertRegex(log, r'client="[^"]*CN=device-001[^"]*" POST /.well-known/est/sen '
                              r'upstream=200 code=2\.04 \d+\.\dms')

    def test_E2_early_block2_on_get(self):
        r = self.s.coap(WK + "/crts", block=64, extra=["-v", "7"])
        self.assertEqual(len(certs_of_pkcs7_der(r.payload)), 2)
        sizes = set(re.findall(r"Block2:\d+/[M_]/(\d+)", r.stderr))
        self.assertEqual(sizes, {"64"}, r.stderr[-1500:])

    def test_E2_early_block2_with_last_block1(self):
        """Block2 SZX sent with the Block1 request (option 23 = 0x02: 64 bytes)."""
        csr = csr_der(self.s.pki)
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr, block=32,
                        extra=["-v", "7", "-O", "23,0x02"])
        certs = certs_of_pkcs7_der(r.payload)
        self.assertEqual(pubkey_of_cert_der(certs[0]), pubkey_of_csr_der(csr))
        self.assertIn("Block2:1/M/64", r.stderr)
        self.assertNotRegex(r.stderr, r"Block2:\d+/[M_]/(?!64)\d+")

    def test_C_upstream_connection_reused(self):
        for _ in range(4):
            r = self.s.coap(WK + "/att")
            self.assertEqual(r.rc, 0, r)
        stats = self.s.ca_stats()
        # 4 x /csrattrs, plus the start-up probe of /csrattrs (A3)
        self.assertEqual(stats["ops"].get("csrattrs"), 5)
        # 6 exchanges (/cacerts and the probe at start-up + 4 x /csrattrs) over at
        # most 2 connections (the two at start-up run at once)
        self.assertLessEqual(stats["connections"], 2)
        self.assertIn("reused connection", self.s.log())

    def test_B4_sen_accept_287_end_entity(self):
        csr = csr_der(self.s.pki)
        r = self.s.coap(WK + "/sen", method="post", cf=286, accept=287, payload=csr, block=256)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(pubkey_of_cert_der(r.payload), pubkey_of_csr_der(csr))

    def test_C_sren_with_issued_certificate(self):
        csr = csr_der(self.s.pki)
        r = self.s.coap(WK + "/sen", method="post", cf=286, accept=287, payload=csr)
        self.assertEqual(r.rc, 0, r)
        # The LDevID just issued becomes the DTLS client certificate.
        ldev = os.path.join(self.s.dir, "ldevid.crt")
        with open(ldev, "wb") as f:
            f.write(openssl("x509", "-inform", "DER", data=r.payload))
        shutil.copy(os.path.join(self.s.pki, "device-new.key"), ldev[:-4] + ".key")
        r2 = self.s.coap(WK + "/sren", method="post", cf=286, payload=csr, cert=ldev)
        self.assertEqual(r2.rc, 0, r2)
        certs = certs_of_pkcs7_der(r2.payload)
        self.assertEqual(pubkey_of_cert_der(certs[0]), pubkey_of_csr_der(csr))
        self.assertRegex(self.s.log(), r'POST /.well-known/est/sren upstream=200 code=2\.04')

    def test_C_att_csrattrs(self):
        r = self.s.coap(WK + "/att")
        self.assertEqual(r.rc, 0, r)
        text = openssl("asn1parse", "-inform", "DER", data=r.payload).decode()
        self.assertIn("challengePassword", text)

    def test_B2_wrong_content_format_4_15(self):
        r = self.s.coap(WK + "/sen", method="post", cf=0, payload=csr_der(self.s.pki))
        self.assertEqual(r.code, "4.15", r)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=- code=4\.15")

    def test_B2_missing_content_format_4_15(self):
        r = self.s.coap(WK + "/sen", method="post", payload=csr_der(self.s.pki))
        self.assertEqual(r.code, "4.15", r)

    def test_B3_bad_accept_4_06(self):
        r = self.s.coap(WK + "/crts", accept=50)
        self.assertEqual(r.code, "4.06", r)

    def test_A1_unknown_path_4_04(self):
        r = self.s.coap(WK + "/nothing")
        self.assertEqual(r.code, "4.04", r)
        r = self.s.coap("/elsewhere/crts")
        self.assertEqual(r.code, "4.04", r)

    def test_A6_wrong_method_4_05(self):
        r = self.s.coap(WK + "/crts", method="post", cf=286, payload=b"x")
        self.assertEqual(r.code, "4.05", r)

    def test_G6_garbage_csr_4_00(self):
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=b"\x30\x03\x02\x01")
        self.assertEqual(r.code, "4.00", r)

    def test_A2_label_passed_upstream(self):
        r = self.s.coap(WK + "/lbl1/crts")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(certs_of_pkcs7_der(r.payload)), 2)
        r = self.s.coap(WK + "/nolabel/crts")
        self.assertEqual(r.code, "4.04", r)

    def test_G2_client_without_certificate_refused(self):
        r = self.s.coap(WK + "/crts", cert=None, timeout=5)
        self.assertEqual(r.payload, b"")
        self.assertNotIn("GET /.well-known/est/crts", self.s.log())

    def test_G2_untrusted_client_refused(self):
        r = self.s.coap(WK + "/crts", cert="rogue-device", timeout=5)
        self.assertEqual(r.payload, b"")
        self.assertNotIn("GET /.well-known/est/crts", self.s.log())

    def test_G1_ccm8_only_client_negotiates(self):
        p = self.s.pki
        r = subprocess.run(
            ["openssl", "s_client", "-dtls1_2", "-cipher", "ECDHE-ECDSA-AES128-CCM8",
             "-cert", f"{p}/device.crt", "-key", f"{p}/device.key", "-CAfile", f"{p}/gw-ca.crt",
             "-connect", f"127.0.0.1:{self.s.port}"],
            input=b"", capture_output=True, timeout=30, check=False)
        out = r.stdout.decode(errors="replace")
        self.assertIn("Cipher is ECDHE-ECDSA-AES128-CCM8", out, out + r.stderr.decode())


class TestLimits(StackTest):
    stack_kwargs = {"extra_server": "max_body = 1024"}

    def test_E1_oversized_body_4_13(self):
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=b"\x30" * 4000, block=64)
        self.assertEqual(r.code, "4.13", r)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=- code=4\.13")

    def test_E1_oversized_single_datagram_4_13(self):
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=b"\x30" * 1100, block=1024)
        self.assertEqual(r.code, "4.13", r)


class TestUpstreamDown(StackTest):
    stack_kwargs = {"ca": False, "upstream_url": "https://127.0.0.1:1/.well-known/est"}

    def test_D_upstream_refused_5_02(self):
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki))
        self.assertEqual(r.code, "5.02", r)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=- code=5\.02")

    def test_D_crts_without_cache_5_02(self):
        r = self.s.coap(WK + "/crts")
        self.assertEqual(r.code, "5.02", r)


class TestConfigCheck(unittest.TestCase):
    def run_check(self, **kw):
        s = Stack(ca=False, upstream_url="https://127.0.0.1:9/.well-known/est", **kw)
        try:
            r = subprocess.run([os.environ.get("ESTGW", "estgw"), "-c", s.conf, "--check"],
                               capture_output=True, timeout=30, check=False)
            return r.returncode, (r.stdout + r.stderr).decode()
        finally:
            s.cleanup()

    def test_check_accepts_valid_config(self):
        rc, out = self.run_check()
        self.assertEqual(rc, 0, out)

    def test_check_refuses_ra_without_cmcra(self):
        rc, out = self.run_check(ra="ra-nocmc")
        self.assertEqual(rc, 1, out)
        self.assertIn("1.3.6.1.5.5.7.3.28", out)
        self.assertEqual(len(out.strip().splitlines()), 1, out)

    def test_check_refuses_unknown_key(self):
        rc, out = self.run_check(extra_server="colour = blue")
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"estgw\.conf:\d+: \[server\] colour")

    def test_version_lists_libraries(self):
        r = subprocess.run([os.environ.get("ESTGW", "estgw"), "--version"], capture_output=True,
                           check=True)
        out = r.stdout.decode()
        for lib in ("estgw", "libcoap", "libcurl", "libevent", "mbed TLS"):
            self.assertIn(lib, out)


if __name__ == "__main__":
    harness.main(__name__)
