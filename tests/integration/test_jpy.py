#!/usr/bin/env python3
"""test_jpy.py - pledges behind a stateless constrained join proxy (H6 in
docs/conformance.md; draft-ietf-anima-constrained-join-proxy-20, JPY).

tests/tools/jpy_proxy.py is the join proxy: coap-client-openssl pledges talk DTLS to
it as to a registrar, it wraps each datagram as [header naming the pledge, datagram]
to estgw's JPY port and unwraps the answers by header. Everything else is
test_brski.py's stack: estgw as the cBRSKI registrar, the test MASA, the test EST CA.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SRC, free_tcp_port, free_udp_port, read_text, wait_for  # noqa: E402
from test_brski import (BrskiStack, BrskiTest, cc, make_pvr,  # noqa: E402
                        metric)

PROXY = os.path.join(SRC, "tests", "tools", "jpy_proxy.py")
JPY_MTU = 640  # small, so the server's handshake flight must be cut to fit


class JpyStack(BrskiStack):
    """BrskiStack with [brski] jpy_listen and /metrics; uri() goes through a proxy
    when self.via is set."""

    def __init__(self, jpy_extra="", server_extra="", **kw):
        self.jpy_port = free_udp_port()
        self.mport = free_tcp_port()
        self.via = None
        self.proxies = []
        extra = (f"jpy_listen = 127.0.0.1:{self.jpy_port}\n"
                 f"jpy_proxies = 127.0.0.2, ::1/128 10.0.0.0/8\njpy_mtu = {JPY_MTU}\n"
                 f"{jpy_extra}\n[metrics]\nlisten = 127.0.0.1:{self.mport}\n")
        super().__init__(brski_extra=extra, server_extra=server_extra, **kw)

    def start_proxy(self, bind="127.0.0.2", pad=0):
        """A test join proxy towards our JPY port; returns (pledge port, control port)."""
        pf = os.path.join(self.dir, f"proxy-{len(self.proxies)}.ports")
        log = open(os.path.join(self.dir, f"proxy-{len(self.proxies)}.log"), "wb")
        p = subprocess.Popen(["python3", PROXY, "--bind", bind, "--pad", str(pad),
                              "--registrar", f"127.0.0.1:{self.jpy_port}", "--port-file", pf],
                             stdout=log, stderr=subprocess.STDOUT)
        self.proxies.append((p, log))
        wait_for(lambda: read_text(pf), what="join proxy port file")
        port, ctl = (int(x) for x in read_text(pf).split())
        return port, ctl

    def uri(self, path):
        if self.via:
            return f"coaps://127.0.0.1:{self.via}{path}"
        return super().uri(path)

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=10) as r:
            return r.read().decode()

    def stop(self):
        rc = super().stop()
        for p, log in self.proxies:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
            log.close()
        return rc


def proxy_stats(ctl):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(b"stats", ("127.0.0.1", ctl))
    data = s.recv(65536)
    s.close()
    return json.loads(data)


class JpyTest(BrskiTest):
    stack_class = JpyStack

    def m(self, sample):
        return metric(self.s.metrics(), sample)

    def wait_metric(self, sample, want, what=None):
        wait_for(lambda: self.m(sample) == want, timeout=20, what=what or f"{sample} == {want}")

    def rv_through(self, port, pledge="pledge", serial="TEST0001", timeout=20):
        """rv through the proxy at @port (None: directly); pledge "pledge" is
        mkbrski.sh's, any other one issue_idevid's."""
        self.s.via = port
        crt = os.path.join(self.b if pledge == "pledge" else self.s.dir, pledge + ".crt")
        nonce = os.urandom(16)
        pvr = make_pvr(crt[:-4] + ".key", serial, nonce, registrar=self.reg)
        return self.s.pledge("/.well-known/brski/rv", crt, pvr, timeout=timeout), nonce

    def assert_no_answer(self, r):
        self.assertIsNone(r.code, r)
        self.assertEqual(r.payload, b"", r)


class TestJpyFlow(JpyTest):
    stack_kwargs = {"ca": True}

    def test_H6_discovery_names_the_jpy_port(self):
        r = self.s.pledge("/.well-known/core?rt=brski.rjp", "pledge", None, cf=None,
                          accept=None, block=None, method="get")
        self.assertEqual(r.payload.decode(), f"<jpy://127.0.0.1:{self.s.jpy_port}>;rt=brski.rjp")
        # a device's listing is unchanged: no JPY link without the query
        r = self.s.pledge("/.well-known/core", "pledge", None, cf=None, accept=None,
                          block=None, method="get")
        self.assertNotIn("jpy:", r.payload.decode())
        self.assertIn('rt="brski.rv"', r.payload.decode())

    def test_H6_cbrski_then_est_with_the_ldevid_through_the_proxy(self):
        port, ctl = self.s.start_proxy()
        r, nonce = self.rv_through(port)
        self.check_voucher(r, nonce)
        ok = cc.dumps({"version": 1, "status": True})
        self.assert_2xx(self.s.pledge("/.well-known/brski/vs", "pledge", ok, cf=60,
                                      accept=None), "/.well-known/brski/vs")
        # enroll: the policy sees the pledge's IDevID (its subject in the log line)
        ldev = self.enroll_ldevid()
        # a new DTLS session with the LDevID, still through the proxy: es, then crts
        self.assert_2xx(self.s.pledge("/.well-known/brski/es", ldev, ok, cf=60, accept=None),
                        "/.well-known/brski/es")
        r = self.s.pledge("/.well-known/est/crts", ldev, None, cf=None, accept=281, block=None,
                          method="get")
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(r.payload.startswith(b"\x30"), r)
        log = self.s.log()
        self.assertRegex(log, r'es serial="TEST0001" .*status=success .*client_cert=enrolled-ldevid')
        st = proxy_stats(ctl)
        pp = st["proxy_port"]
        # one pledge session per coap-client run (a new source port each): the header,
        # 7 bytes, is logged whole
        for hdr, (path, code) in zip(st["headers"], (
                ("/.well-known/brski/rv", "2.04"), ("/.well-known/brski/vs", "2.04"),
                ("/.well-known/est/sen", "2.04"), ("/.well-known/brski/es", "2.04"),
                ("/.well-known/est/crts", "2.05"))):
            self.assertRegex(log, r'client="[^"]*" via="jpy 127\.0\.0\.2:%d hdr=%s" \w+ %s '
                                  r'upstream=\S+ code=%s' % (pp, hdr, re.escape(path), code))
        self.assertRegex(log, r'vs serial="TEST0001" session=jpy 127\.0\.0\.2:%d hdr=' % pp)
        st = proxy_stats(ctl)
        self.assertEqual(st["bad_answers"], 0, st)
        # every answer datagram fits jpy_mtu, and the flights were big enough to be cut
        self.assertLessEqual(st["max_answer"], JPY_MTU, st)
        self.assertGreater(st["max_answer"], JPY_MTU - 120, st)
        self.assertGreaterEqual(self.m('estgw_jpy_pledge_sessions_total{event="opened"}'), 4)
        self.assertEqual(self.m('estgw_jpy_datagrams_total{dir="out"}'), st["to_pledges"])
        self.assertEqual(self.m('estgw_jpy_datagrams_total{dir="in"}'), st["to_registrar"])
        self.assertNotIn("exceeds jpy_mtu", log)

    def test_H6_two_pledges_at_once_through_one_proxy(self):
        port, ctl = self.s.start_proxy()
        self.s.issue_idevid("pledge2", "TEST0100")
        results = {}

        def run(name, serial):
            results[name] = self.rv_through(port, pledge=name, serial=serial)

        threads = [threading.Thread(target=run, args=a)
                   for a in (("pledge", "TEST0001"), ("pledge2", "TEST0100"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        r, nonce = results["pledge"]
        self.check_voucher(r, nonce)
        r, nonce = results["pledge2"]
        self.check_voucher(r, nonce, serial="TEST0100")
        self.assertEqual(len(proxy_stats(ctl)["headers"]), 2)
        self.assertEqual(len(self.s.masa_requests()), 2)
        # two pledges, one proxy address: two DTLS sessions, each with its own name
        names = set(re.findall(r'via="(jpy [^"]+)" POST /.well-known/brski/rv', self.s.log()))
        self.assertEqual(len(names), 2, names)


class TestJpyDrops(JpyTest):
    """Untrusted proxies, long headers, non-CBOR and wrong shapes: dropped silently and
    counted; the gateway goes on serving."""

    def send_raw(self, data, bind="127.0.0.2"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((bind, 0))
        s.settimeout(0.5)
        s.sendto(data, ("127.0.0.1", self.s.jpy_port))
        return s

    def test_H6_untrusted_long_header_malformed_dropped_gateway_serves(self):
        bad_port, bad_ctl = self.s.start_proxy(bind="127.0.0.3")  # not in jpy_proxies
        r, _ = self.rv_through(bad_port, timeout=3)
        self.assert_no_answer(r)
        self.assertGreater(self.m('estgw_jpy_dropped_total{reason="untrusted"}'), 0)
        self.assertEqual(proxy_stats(bad_ctl)["to_pledges"], 0)
        long_port, long_ctl = self.s.start_proxy(pad=40)  # header 47 > jpy_max_header 32
        self.s.via = long_port
        r = self.s.pledge("/.well-known/brski/rv", "pledge", b"x", timeout=3)
        self.assert_no_answer(r)
        self.assertGreater(self.m('estgw_jpy_dropped_total{reason="header"}'), 0)
        self.assertEqual(proxy_stats(long_ctl)["to_pledges"], 0)
        socks = [self.send_raw(d) for d in (
            b"\x16\xfe\xfd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00",  # bare DTLS: not JPY
            b"\xff\xff\xff",                                      # not CBOR
            b"\x83\x41\x01\x41\x02\x41\x03",                      # three elements
            b"\x82\x61\x61\x41\x16",                              # text header
            b"\x82\x41\x01\x41\x16\x00",                          # trailing byte
            b"\x9f\x41\x01\x41\x16\xff")]                         # indefinite array
        self.wait_metric('estgw_jpy_dropped_total{reason="malformed"}', 6)
        for s in socks:  # silently: nothing comes back
            with self.assertRaises(socket.timeout):
                s.recv(100)
            s.close()
        self.assertEqual(self.m("estgw_jpy_pledge_sessions"), 0)
        # a reload keeps the relay's settings (restart-only) and it goes on dropping
        self.s.gw.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in self.s.log(), what="reload")
        self.send_raw(b"\x82\x41\x01").close()
        self.wait_metric('estgw_jpy_dropped_total{reason="malformed"}', 7)
        # the gateway still serves, through a good proxy and directly
        port, _ = self.s.start_proxy()
        r, nonce = self.rv_through(port)
        self.check_voucher(r, nonce)
        self.s.via = None
        r, nonce = self.rv_through(None)
        self.check_voucher(r, nonce)


class TestJpyLimits(JpyTest):
    """Pledge sessions are bounded per proxy and expire when idle."""
    stack_kwargs = {"jpy_extra": "jpy_sessions_per_proxy = 2\njpy_idle_timeout = 3",
                    "server_extra": "idle_timeout = 2"}

    def jpy(self, header, content=b"\x16\xfe\xfd garbage"):
        """A well-formed JPY message whose content is no ClientHello."""
        return b"\x82" + bytes([0x40 | len(header)]) + header + \
            bytes([0x40 | len(content)]) + content

    def test_H6_per_proxy_bound_and_idle_expiry(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.2", 0))
        for h in (b"a", b"b", b"c"):
            s.sendto(self.jpy(h), ("127.0.0.1", self.s.jpy_port))
        self.wait_metric('estgw_jpy_dropped_total{reason="limit"}', 1)
        self.assertEqual(self.m("estgw_jpy_pledge_sessions"), 2)
        # the same header again is the same session, not a new one
        s.sendto(self.jpy(b"a"), ("127.0.0.1", self.s.jpy_port))
        self.wait_metric('estgw_jpy_datagrams_total{dir="in"}', 3)
        self.assertEqual(self.m('estgw_jpy_pledge_sessions_total{event="opened"}'), 2)
        # idle: both end, their sockets are closed
        self.wait_metric("estgw_jpy_pledge_sessions", 0, "idle pledge sessions expired")
        self.assertEqual(self.m('estgw_jpy_pledge_sessions_total{event="expired"}'), 2)
        s.close()
        # a real pledge: its pledge session ends with its DTLS session (a quick request:
        # with idle_timeout = 2 a MASA round trip under load could outlast the session)
        port, _ = self.s.start_proxy()
        self.s.via = port
        r = self.s.pledge("/.well-known/core?rt=brski.rv", "pledge", None, cf=None,
                          accept=None, block=None, method="get")
        self.assertEqual(r.payload, b'</.well-known/brski/rv>;rt="brski.rv";ct=836', r)
        self.wait_metric("estgw_jpy_pledge_sessions", 0, "pledge session closed")
        self.assertEqual(self.m('estgw_jpy_pledge_sessions_total{event="closed"}'), 1)


if __name__ == "__main__":
    from harness import main
    main(__name__)
