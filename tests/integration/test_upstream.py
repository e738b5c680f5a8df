#!/usr/bin/env python3
"""Slow and failing CAs (D, D1, D2, J1; RFC 9148 4.7, 5; RFC 8516): every upstream
fault mapped to its CoAP code with a diagnostic and a log line, 202/503 -> 5.03 and
429 -> 4.29 with Max-Age, 204 to a POST -> 5.02, separate responses, coalescing, kept
certificates, upstream limits, a CA that holds requests open (5.03 + Max-Age after
answer_within, the answer kept for the retry).

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
from harness import Stack, StackTest, certs_of_pkcs7_der, new_csr, pubkey_of_cert_der, pubkey_of_csr_der, wait_for  # noqa: E402

WK = "/.well-known/est"


def csr_der(pki):
    with open(os.path.join(pki, "device.csr.der"), "rb") as f:
        return f.read()


def max_age(result):
    """Max-Age of the last response, from coap-client's -v 7 PDU dump."""
    ages = re.findall(r"Max-Age:(\d+)", result.stderr)
    return int(ages[-1]) if ages else None


def req_lines_ms_path(log, short, code):
    """The time (ms) of each request line for WK/<short> with that code."""
    return [float(ms) for ms in re.findall(
        rf"POST /.well-known/est/{short} upstream=\S+ code={re.escape(code)} ([\d.]+)ms", log)]


def req_lines_ms(log, code):
    """The time (ms) of each /sen request line of estgw's log with that code."""
    return req_lines_ms_path(log, "sen", code)


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

    def test_D_status_429_retry_after_4_29_max_age(self):
        """RFC 8516: 4.29 Too Many Requests, Max-Age = Retry-After (not 4.00)."""
        self.s.ca_control(mode="status=429", retry_after="40", op="simpleenroll")
        r = self.sen()
        self.assertEqual(r.code, "4.29", r)
        self.assertEqual(max_age(r), 40, r.stderr[-2000:])
        self.assertIn("too many requests", r.diag)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=429 code=4\.29")

    def test_D_status_429_http_date(self):
        when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 300))
        self.s.ca_control(mode="status=429", retry_after=when, op="simpleenroll")
        r = self.sen()
        self.assertEqual(r.code, "4.29", r)
        self.assertTrue(280 <= max_age(r) <= 301, max_age(r))

    def test_D_status_429_clamped_like_503(self):
        self.s.ca_control(mode="status=429", retry_after="999999", op="simpleenroll")
        r = self.sen()
        self.assertEqual(r.code, "4.29", r)
        self.assertEqual(max_age(r), 3600)

    def test_D_status_429_without_retry_after_uses_default(self):
        self.s.ca_control(mode="status=429", op="simpleenroll")
        r = self.sen()
        self.assertEqual(r.code, "4.29", r)
        self.assertEqual(max_age(r), 77)

    def test_D_status_429_on_get(self):
        self.s.ca_control(mode="status=429", retry_after="12", op="csrattrs")
        r = self.s.coap(WK + "/att", extra=["-v", "7"])
        self.assertEqual(r.code, "4.29", r)
        self.assertEqual(max_age(r), 12)

    def test_D_status_503_retry_after(self):
        self.s.ca_control(mode="status=503", retry_after="45", op="simpleenroll")
        r = self.sen()
        self.assertEqual(r.code, "5.03", r)
        self.assertEqual(max_age(r), 45)
        self.assertRegex(self.s.log(), r"upstream=503 code=5\.03")


class TestSlowCA(StackTest):
    stack_kwargs = {"extra_upstream": "answer_within = 20"}  # devices wait for the CA

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
        threads[0].start()
        # the second is sent while the first is at the CA (held there 3 s)
        wait_for(lambda: self.s.ca_stats()["ops"].get("simpleenroll") == 1, what="the first at the CA")
        threads[1].start()
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
        # the answer reaches estgw (logged, then kept, in one turn of its loop)
        wait_for(lambda: "simpleenroll -> HTTP 200" in self.s.log(), timeout=20, what="the answer")
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

    def test_D_status_204_post_5_02(self):
        """A POST answered 204 carries no certificate: 5.02, not an empty 2.04."""
        r = self.fault("status=204", "5.02", "204",
                       diag="upstream answered 204 without a certificate or key")
        self.assertEqual(r.payload, b"")
        self.s.ca_control(mode="status=204", op="simplereenroll")
        r = self.s.coap(WK + "/sren", method="post", cf=286, payload=csr_der(self.s.pki))
        self.assertEqual(r.code, "5.02", r)
        self.assertIn("without a certificate or key", r.diag)

    def test_D_att_204_is_4_04(self):
        """GET /att answered 204 (no CSR attributes, RFC 7030 4.5.2) stays 4.04."""
        self.s.ca_control(mode="csrattrs=empty")
        r = self.s.coap(WK + "/att")
        self.assertEqual(r.code, "4.04", r)
        self.assertIn("upstream answered 204", r.diag)
        self.assertRegex(self.s.log(), r"GET /.well-known/est/att upstream=204 code=4\.04")

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
    limits = "max_concurrent = 1\nqueue = 1\nretry_default = 9\nanswer_within = 20"

    def setUp(self):
        self.mport = harness.free_tcp_port()
        self.stack_kwargs = {"extra_upstream": f"{self.limits}\n[metrics]\n"
                                               f"listen = 127.0.0.1:{self.mport}\n"}
        super().setUp()

    def load(self):
        """estgw's upstream load gauges: (running, queued)."""
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=10) as r:
            text = r.read().decode()
        vals = {}
        for line in text.splitlines():
            name, _, v = line.partition(" ")
            if name in ("estgw_upstream_running", "estgw_upstream_queued"):
                vals[name] = int(v)
        return vals.get("estgw_upstream_running"), vals.get("estgw_upstream_queued")

    def test_D2_limits_queue_then_5_03(self):
        """max_concurrent 1, queue 1: the first CSR goes upstream, the second waits
        in the queue and is served after it, the third gets 5.03 busy. Each is
        sent once the one before is where it should be (the gauges say so)."""
        self.s.ca_control(mode="delay=3", op="simpleenroll")
        csrs = [new_csr(self.s.dir, f"k{i}") for i in range(3)]
        results = [None] * 3
        self.assertEqual(self.load(), (0, 0))

        def run(i):
            results[i] = self.s.coap(WK + "/sen", method="post", cf=286, payload=csrs[i],
                                     extra=["-v", "7"])

        threads = []
        for i, want in enumerate([(1, 0), (1, 1), None]):
            t = threading.Thread(target=run, args=(i,))
            t.start()
            threads.append(t)
            if want:
                wait_for(lambda want=want: self.load() == want, what=f"estgw has {want}")
        for t in threads:
            t.join()
        self.assertEqual(results[0].rc, 0, results[0])
        self.assertEqual(len(certs_of_pkcs7_der(results[0].payload)), 1)
        self.assertEqual(len(certs_of_pkcs7_der(results[1].payload)), 1)  # queued, then served
        self.assertEqual(results[2].code, "5.03", results[2])
        self.assertEqual(max_age(results[2]), 9)
        self.assertIn("busy", results[2].diag)
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), 2)
        self.assertEqual(self.load(), (0, 0))


ANSWER_WITHIN = 2
MARGIN_MS = 1500  # estgw's event loop under a loaded test machine


class TestStalledCA(StackTest):
    """A CA that holds the request open (manual approval, slow HSM): the device gets
    5.03 + Max-Age after answer_within, the exchange goes on, and the retry gets the
    certificate the CA issued meanwhile; one issuance (RFC 9148 4.7, D2, J1)."""
    stack_kwargs = {"timeout": 30, "extra_upstream": f"answer_within = {ANSWER_WITHIN}"}

    def sen(self, csr):
        return self.s.coap(WK + "/sen", method="post", cf=286, payload=csr, extra=["-v", "7"])

    def test_D2_held_request_5_03_then_kept_certificate(self):
        self.s.ca_control(mode="hold", op="simpleenroll")
        csr = csr_der(self.s.pki)
        t0 = time.monotonic()
        r = self.sen(csr)
        took = time.monotonic() - t0
        self.assertEqual(r.code, "5.03", r)
        self.assertIn("still working", r.diag)
        # Max-Age: the 30 s exchange has ~28 s left, plus 1 s
        self.assertTrue(26 <= max_age(r) <= 30, max_age(r))
        self.assertLess(took, ANSWER_WITHIN + 10, "device waited far beyond answer_within")
        [ms] = req_lines_ms(self.s.log(), "5.03")
        self.assertTrue(ANSWER_WITHIN * 1000 <= ms < ANSWER_WITHIN * 1000 + MARGIN_MS, ms)
        # A retry while the CA still holds: it joins the exchange, 5.03 again after
        # answer_within, and nothing new goes upstream.
        r = self.sen(csr)
        self.assertEqual(r.code, "5.03", r)
        self.assertLessEqual(max_age(r), 29)
        stats = self.s.ca_stats()
        self.assertEqual(stats["ops"].get("simpleenroll"), 1, stats)
        self.assertEqual(stats["held"], 1, stats)
        self.assertRegex(self.s.log(), r"joins an identical sen in flight")
        # The CA answers; the certificate is kept for the device's next retry.
        self.s.ca_control(release=True)
        wait_for(lambda: "simpleenroll -> HTTP 200" in self.s.log(), what="the CA's answer")
        r = self.sen(csr)
        self.assertEqual((r.rc, r.code), (0, "2.xx"), r)
        [cert] = certs_of_pkcs7_der(r.payload)
        self.assertEqual(pubkey_of_cert_der(cert), pubkey_of_csr_der(csr))
        stats = self.s.ca_stats()
        self.assertEqual(stats["issued"], 1, stats)
        self.assertEqual(stats["ops"].get("simpleenroll"), 1, stats)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=- code=2\.04 "
                                       r"[\d.]+ms \(kept\)")
        self.assertNotIn("code=5.04", self.s.log())


class StalledKeygenTest(StackTest):
    """/skg against a CA that holds the request: 5.03 + Max-Age after answer_within
    like every request, the exchange goes on, and the retry gets the key and the
    certificate made meanwhile; one key made, never a second (D2, F)."""
    stack_kwargs = {"timeout": 30, "extra_upstream": f"answer_within = {ANSWER_WITHIN}"}

    def skg(self, csr):
        return self.s.coap(WK + "/skg", method="post", cf=286, payload=csr, extra=["-v", "7"])

    def held_then_kept(self, held_op):
        """Hold @held_op at the CA, ask, release, ask twice: the CA's stats."""
        self.s.ca_control(mode="hold", op=held_op)
        csr = csr_der(self.s.pki)
        r = self.skg(csr)
        self.assertEqual(r.code, "5.03", r)
        self.assertTrue(26 <= max_age(r) <= 30, max_age(r))
        [ms] = req_lines_ms_path(self.s.log(), "skg", "5.03")
        self.assertTrue(ANSWER_WITHIN * 1000 <= ms < ANSWER_WITHIN * 1000 + MARGIN_MS, ms)
        self.s.ca_control(release=True)
        wait_for(lambda: f"{held_op} -> HTTP 200" in self.s.log(), what="the CA's answer")
        first = self.skg(csr)
        self.assertEqual(first.rc, 0, first)
        self.assertEqual(first.payload[:1], b"\x84", first)  # CBOR array of 4 (RFC 9148 4.8)
        again = self.skg(csr)  # the same request again: the same key, not a second one
        self.assertEqual(again.payload, first.payload)
        self.assertNotIn("code=5.04", self.s.log())
        return self.s.ca_stats()


class TestStalledCAServerKeygen(StalledKeygenTest):
    """The CA makes the key (/serverkeygen held)."""

    def test_D2_held_serverkeygen_5_03_then_kept_key(self):
        stats = self.held_then_kept("serverkeygen")
        self.assertEqual(stats["ops"].get("serverkeygen"), 1, stats)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/skg upstream=- code=2\.04 "
                                       r"[\d.]+ms \(kept\)")


class TestStalledCARegistrarKeygen(StalledKeygenTest):
    """[server] serverkeygen = registrar (/simpleenroll held): the retry gets the key
    estgw made with the certificate the CA issued for it; one enrollment (F4)."""
    stack_kwargs = dict(StalledKeygenTest.stack_kwargs,
                        extra_server="serverkeygen = registrar", ca_args=("--no-serverkeygen",))

    def test_D2_registrar_keygen_5_03_then_kept_key(self):
        stats = self.held_then_kept("simpleenroll")
        self.assertEqual(stats["ops"].get("simpleenroll"), 1, stats)
        self.assertEqual(stats["issued"], 1, stats)
        self.assertNotIn("serverkeygen", stats["ops"])
        log = self.s.log()
        self.assertEqual(len(re.findall(r"POST /.well-known/est/skg upstream=- code=2\.04 "
                                        r"[\d.]+ms \(kept, key made by estgw\)", log)), 2, log)
        self.assertNotIn("PRIVATE KEY", log)


class TestStalledCATimeout(StackTest):
    """Only the upstream timeout gives the exchange up; a retry after it starts a new one."""
    stack_kwargs = {"timeout": 3, "connect_timeout": 1, "extra_upstream": "answer_within = 1"}

    def test_D2_retry_after_upstream_timeout_starts_new_exchange(self):
        self.s.ca_control(mode="hold", op="simpleenroll")
        csr = csr_der(self.s.pki)
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr, extra=["-v", "7"])
        self.assertEqual(r.code, "5.03", r)
        self.assertTrue(2 <= max_age(r) <= 4, max_age(r))  # 3 s - 1 s + 1 s
        wait_for(lambda: re.search(r"simpleenroll failed: .*timed out", self.s.log()),
                 timeout=20, what="the upstream timeout")
        self.s.ca_control(mode="normal", release=True)
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(certs_of_pkcs7_der(r.payload)), 1)
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), 2)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=200 code=2\.04")


class TestManyHeld(StackTest):
    """max_concurrent above curl's old fixed 16: 40 devices against a CA that holds
    every request all reach the CA at once and all get 5.03 + Max-Age promptly."""
    N = 40
    stack_kwargs = {"timeout": 60, "extra_upstream": f"answer_within = {ANSWER_WITHIN}\n"
                                                     f"max_concurrent = {N}\nretry_default = 50"}

    def test_D2_40_held_devices_all_5_03_promptly(self):
        csrs = [new_csr(self.s.dir, f"m{i}") for i in range(self.N)]
        self.s.ca_control(mode="hold", op="simpleenroll")
        results = [None] * self.N

        def run(i):
            results[i] = self.s.coap(WK + "/sen", method="post", cf=286, payload=csrs[i],
                                     extra=["-v", "7"], timeout=30)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(self.N)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - t0
        for r in results:
            self.assertEqual(r.code, "5.03", r)
            self.assertIsNotNone(max_age(r), r.stderr[-2000:])
            self.assertTrue(1 <= max_age(r) <= 50, max_age(r))
        ms = req_lines_ms(self.s.log(), "5.03")
        self.assertEqual(len(ms), self.N)
        self.assertLess(max(ms), ANSWER_WITHIN * 1000 + MARGIN_MS, ms)
        self.assertLess(took, ANSWER_WITHIN + 20, "40 devices took far beyond answer_within")
        stats = self.s.ca_stats()
        self.assertEqual(stats["ops"].get("simpleenroll"), self.N, stats)
        self.assertEqual(stats["held"], self.N, stats)
        self.assertEqual(stats["max_in_flight"], self.N, stats)
        self.assertNotIn("code=5.04", self.s.log())


class FdLimitTest(StackTest):
    """max_concurrent = 4096, the top of its range, needs 4096 + 64 descriptors: estgw
    raises its soft RLIMIT_NOFILE to that (systemd starts services with 1024 soft).
    estgw runs under prlimit with a soft limit of 1024 and a hard one of `hard`."""
    hard = 8192
    stack_kwargs = {"extra_upstream": "max_concurrent = 4096"}

    def setUp(self):
        wrap = os.environ.get("ESTGW_WRAP", "")
        os.environ["ESTGW_WRAP"] = f"prlimit --nofile=1024:{self.hard} {wrap}"
        try:
            super().setUp()
        finally:
            os.environ["ESTGW_WRAP"] = wrap

    def nofile(self):
        with open(f"/proc/{self.s.gw.pid}/limits") as f:
            m = re.search(r"^Max open files\s+(\d+)\s+(\d+)", f.read(), re.M)
        return int(m.group(1)), int(m.group(2))


class TestFdLimit(FdLimitTest):
    def test_D2_max_concurrent_raises_soft_nofile(self):
        self.assertEqual(self.nofile(), (4096 + 64, self.hard))
        self.assertNotIn("file descriptors", self.s.log())
        self.assertEqual(self.s.coap(WK + "/crts").rc, 0)


class TestFdLimitLow(FdLimitTest):
    hard = 2048

    def test_D2_max_concurrent_over_hard_nofile_warns(self):
        self.assertEqual(self.nofile(), (2048, 2048))
        self.assertIn("4096 upstream connections need 4160 file descriptors, "
                      "RLIMIT_NOFILE allows 2048", self.s.log())


class TestBusyMaxAge(StackTest):
    """Every 5.03 estgw makes itself carries Max-Age = retry_default (D1)."""
    stack_kwargs = {"extra_server": "max_body = 4096\nreasm_total_bytes = 1024",
                    "extra_upstream": "retry_default = 33"}

    def test_D1_reassembly_bytes_full_5_03_max_age(self):
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=b"\x30" * 2000, block=64,
                        extra=["-v", "7"])
        self.assertEqual(r.code, "5.03", r)
        self.assertEqual(max_age(r), 33, r.stderr[-2000:])
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=- code=5\.03")
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), None)


if __name__ == "__main__":
    harness.main(__name__)
