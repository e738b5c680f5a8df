#!/usr/bin/env python3
"""Slow and failing CAs (docs/conformance.md D, D1, D2, J1; RFC 9148 4.7, 5): every upstream fault
mapped to its CoAP code with a diagnostic and a log line, 202 -> 5.03 + Max-Age,
separate responses, coalescing, kept certificates, upstream limits.

Run one test: test_upstream.py TestFaults.test_D_status_404
"""
import os
import re
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Stack, StackTest, certs_of_pkcs7_der, pubkey_of_cert_der, pubkey_of_csr_der, wait_for  # noqa: E402

WK = "/.well-known/est"


def csr_der(pki):
    with open(os.path.join(pki, "device.csr.der"), "rb") as f:
        return f.read()


def new_csr(tmpdir, name):
    """A fresh P-256 CSR (test side, openssl CLI), subject CN=device-001."""
    key = os.path.join(tmpdir, name + ".key")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-subj", "/CN=device-001/serialNumber=SN001",
                    "-outform", "DER", "-out", key + ".csr"], check=True, capture_output=True)
    with open(key + ".csr", "rb") as f:
        return f.read()


def max_age(result):
    """Max-Age of the last response, from coap-client's -v 7 PDU dump."""
    ages = re.findall(r"Max-Age:(\d+)", result.stderr)
    return int(ages[-1]) if ages else None


class TestRetryAfter(StackTest):
    stack_kwargs = {"extra_upstream": "retry_default = 77\nmax_age_max = 3600"}

    def sen(self, **kw):
        return self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki),
                           extra=["-v", "7"], **kw)

    def test_D2_accepted_retry_after_5_03_max_age(self):
        self.s.ca_control(mode="accepted", retry_after="30", op="simpleenroll")
        r = self.sen()
        self.assertEqual(r.code, "5.03", r)
        self.assertEqual(max_age(r), 30, r.stderr[-2000:])
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=202 code=5\.03")

    def test_D2_accepted_retry_after_clamped(self):
        self.s.ca_control(mode="accepted", retry_after="999999", op="simpleenroll")
        self.assertEqual(max_age(self.sen()), 3600)

    def test_D2_accepted_http_date(self):
        when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
        self.s.ca_control(mode="accepted", retry_after=when, op="simpleenroll")
        age = max_age(self.sen())
        self.assertTrue(100 <= age <= 121, age)

    def test_D2_accepted_without_retry_after_uses_default(self):
        self.s.ca_control(mode="accepted", retry_after="none", op="simpleenroll")
        r = self.sen()
        self.assertEqual(r.code, "5.03", r)
        self.assertEqual(max_age(r), 77)

    def test_D2_device_resends_identical_csr_after_max_age(self):
        self.s.ca_control(mode="accepted", retry_after="1", op="simpleenroll", count=1)
        r = self.sen()
        self.assertEqual(r.code, "5.03", r)
        time.sleep(1)
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(certs_of_pkcs7_der(r.payload)), 1)
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), 2)

    def test_D_status_503_retry_after(self):
        self.s.ca_control(mode="status=503", retry_after="45", op="simpleenroll")
        r = self.sen()
        self.assertEqual(r.code, "5.03", r)
        self.assertEqual(max_age(r), 45)
        self.assertRegex(self.s.log(), r"upstream=503 code=5\.03")


class TestSlowCA(StackTest):
    def test_D2_slow_ca_separate_response_block2(self):
        """A CA that takes 5 s: empty ACK at once, then a CON separate response,
        continued with Block2 (request in Block1: old-client bug, docs/libraries.md)."""
        self.s.ca_control(mode="delay=5", op="simpleenroll")
        csr = csr_der(self.s.pki)
        t0 = time.time()
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr, block=64,
                        extra=["-v", "7"])
        self.assertEqual(r.rc, 0, r)
        self.assertGreaterEqual(time.time() - t0, 5)
        certs = certs_of_pkcs7_der(r.payload)
        self.assertEqual(pubkey_of_cert_der(certs[0]), pubkey_of_csr_der(csr))
        self.assertRegex(r.stderr, r"t:ACK c:0\.00", "no empty ACK")
        self.assertRegex(r.stderr, r"t:CON c:2\.04", "no separate CON response")
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), 1)

    def test_J1_identical_requests_coalesce(self):
        """Two identical requests from the same client while the first is upstream:
        one enrollment, both answered."""
        self.s.ca_control(mode="delay=3", op="simpleenroll")
        csr = csr_der(self.s.pki)
        results = [None, None]

        def run(i):
            results[i] = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
            time.sleep(0.5)
        for t in threads:
            t.join()
        for r in results:
            self.assertEqual(r.rc, 0, r)
            self.assertEqual(len(certs_of_pkcs7_der(r.payload)), 1)
        self.assertEqual(results[0].payload, results[1].payload)
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), 1)

    def test_J1_kept_certificate_after_device_gave_up(self):
        self.s.ca_control(mode="delay=4", op="simpleenroll")
        csr = csr_der(self.s.pki)
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr, timeout=1)
        self.assertEqual(r.payload, b"")
        wait_for(lambda: self.s.ca_stats().get("issued", 0) >= 1, timeout=20, what="issue")
        time.sleep(0.5)
        self.s.ca_control(mode="normal")
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(certs_of_pkcs7_der(r.payload)), 1)
        self.assertEqual(self.s.ca_stats()["issued"], 1)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=- code=2\.04 [\d.]+ms \(kept\)")


class TestFaults(StackTest):
    """One test per upstream fault: code, diagnostic, log line (D, D1)."""
    stack_kwargs = {"extra_upstream": "max_response = 2048"}

    def fault(self, mode, code, log_status, op="simpleenroll", diag=None, **kw):
        self.s.ca_control(mode=mode, op=op, **kw)
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki))
        self.assertEqual(r.code, code, r)
        if diag:
            self.assertIn(diag, r.diag)
        self.assertTrue(r.diag, "no diagnostic payload")
        self.assertRegex(self.s.log(), rf"POST /.well-known/est/sen upstream={log_status} "
                                       rf"code={re.escape(code)}")
        return r

    def test_D_status_400(self):
        self.fault("status=400", "4.00", "400")

    def test_D_status_401(self):
        self.fault("status=401", "4.01", "401")

    def test_D_status_403(self):
        self.fault("status=403", "4.03", "403")

    def test_D_status_404(self):
        self.fault("status=404", "4.04", "404")

    def test_D_status_500(self):
        self.fault("status=500", "5.00", "500")

    def test_D_status_501(self):
        self.fault("status=501", "5.01", "501")

    def test_D_status_3xx_not_followed(self):
        self.fault("status=302", "5.02", "302")

    def test_D_garbage_body_5_02(self):
        self.fault("garbage", "5.02", "200")

    def test_D_truncated_body_5_02(self):
        self.fault("truncated", "5.02", "200")

    def test_B6_html_body_5_02(self):
        self.fault("html", "5.02", "200", diag="text/html")

    def test_D_dropped_connection_5_02(self):
        self.fault("drop", "5.02", "-")


class TestOversized(StackTest):
    stack_kwargs = {"extra_upstream": "max_response = 1024"}

    def test_D_oversized_body_5_02(self):
        r = self.s.coap(WK + "/lbl1/crts")  # ~1.7 KB of Base64 > 1024
        self.assertEqual(r.code, "5.02", r)
        self.assertIn("large", r.diag)
        self.assertRegex(self.s.log(), r"GET /.well-known/est/lbl1/crts upstream=- code=5\.02")


class TestTimeout(StackTest):
    stack_kwargs = {"timeout": 2, "connect_timeout": 1}

    def test_D_total_timeout_5_04(self):
        self.s.ca_control(mode="delay=4", op="simpleenroll")
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki))
        self.assertEqual(r.code, "5.04", r)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=- code=5\.04")


class NoCAStack(StackTest):
    url = None
    stack_kwargs = {}

    def setUp(self):
        self.s = Stack(ca=False, upstream_url=self.url, **self.stack_kwargs)
        self.s.start()

    def sen(self):
        return self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki))


class TestDNS(NoCAStack):
    url = "https://estgw-no-such-host.invalid:8443/.well-known/est"

    def test_D_dns_failure_5_02(self):
        r = self.sen()
        self.assertEqual(r.code, "5.02", r)
        self.assertRegex(self.s.log(), r"simpleenroll failed: .*[Rr]esolve")
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=- code=5\.02")


class TestConnectTimeout(NoCAStack):
    """A listener whose accept queue is full: SYNs go unanswered (loopback only)."""
    stack_kwargs = {"timeout": 5, "connect_timeout": 1}

    def setUp(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(0)
        port = self.lsock.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            self.fillers.append(c)
        self.url = f"https://127.0.0.1:{port}/.well-known/est"
        super().setUp()

    def tearDown(self):
        super().tearDown()
        for c in self.fillers:
            c.close()
        self.lsock.close()

    def test_D_connect_timeout_5_04(self):
        t0 = time.time()
        r = self.sen()
        self.assertEqual(r.code, "5.04", r)
        self.assertLess(time.time() - t0, 5)
        self.assertRegex(self.s.log(), r"simpleenroll failed: .*[Tt]imeout")


class TLSFaultStack(StackTest):
    def check_tls_failure(self):
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki))
        self.assertEqual(r.code, "5.02", r)
        self.assertIn("TLS", r.diag)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=- code=5\.02")
        return r


class TestTLSUnknownCA(TLSFaultStack):
    stack_kwargs = {"trust": "gw-ca.crt"}

    def test_D_tls_unknown_ca_5_02(self):
        self.check_tls_failure()


class TestTLSExpired(TLSFaultStack):
    stack_kwargs = {"ca_args": ("--server-cert", "ca-server-expired")}

    def test_D_tls_expired_server_cert_5_02(self):
        self.check_tls_failure()
        self.assertRegex(self.s.log(), r"simpleenroll failed: .*(expired|verify)")


class TestTLSWrongName(TLSFaultStack):
    stack_kwargs = {"ca_host": "127.0.0.2"}

    def test_D_tls_wrong_name_5_02(self):
        self.check_tls_failure()


class TestLimits(StackTest):
    stack_kwargs = {"extra_upstream": "max_concurrent = 1\nqueue = 1\nretry_default = 9"}

    def test_D2_limits_queue_then_5_03(self):
        self.s.ca_control(mode="delay=3", op="simpleenroll")
        csrs = [new_csr(self.s.dir, f"k{i}") for i in range(3)]
        results = [None] * 3

        def run(i):
            results[i] = self.s.coap(WK + "/sen", method="post", cf=286, payload=csrs[i],
                                     extra=["-v", "7"])

        threads = []
        for i in range(3):
            t = threading.Thread(target=run, args=(i,))
            t.start()
            threads.append(t)
            time.sleep(0.7)
        for t in threads:
            t.join()
        self.assertEqual(results[0].rc, 0, results[0])
        self.assertEqual(len(certs_of_pkcs7_der(results[0].payload)), 1)
        self.assertEqual(len(certs_of_pkcs7_der(results[1].payload)), 1)  # queued, then served
        self.assertEqual(results[2].code, "5.03", results[2])
        self.assertEqual(max_age(results[2]), 9)
        self.assertIn("busy", results[2].diag)
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), 2)


if __name__ == "__main__":
    harness.main(__name__)
