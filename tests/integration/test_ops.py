#!/usr/bin/env python3
"""estgw in operation (issue 8): SIGHUP reload, SIGTERM with work in flight,
/metrics and /healthz, JSON logs.

Run one test: test_ops.py TestReload.test_J_sighup_new_dtls_cert_open_session_kept
A long-lived DTLS session is an `openssl s_client -dtls1_2` carrying raw CoAP
PDUs (built here, independently of estgw); the certificate a handshake sees
is read with the openssl CLI.
"""
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Stack, StackTest, free_tcp_port, openssl, wait_for  # noqa: E402

WK = "/.well-known/est"
OK = "2.xx"  # coap-client prints no code for a 2.xx answer; the harness says "2.xx"


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def coap_get_core(msg_id):
    """A CON GET /.well-known/core with a 2-byte token (RFC 7252 §3)."""
    tok = msg_id.to_bytes(2, "big")
    return (bytes([0x42, 0x01]) + msg_id.to_bytes(2, "big") + tok + bytes([0xBB]) + b".well-known"
            + bytes([0x04]) + b"core")


class DtlsSession:
    """One DTLS session held open by openssl s_client (device certificate)."""

    def __init__(self, stack):
        p = stack.pki
        self.proc = subprocess.Popen(
            ["openssl", "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{stack.port}",
             "-cert", f"{p}/device.crt", "-key", f"{p}/device.key", "-CAfile", f"{p}/gw-ca.crt",
             "-nocommands", "-ign_eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.buf = b""
        self.read_until(b"Verify return code", 15)
        self.read_for(0.3)

    def read_for(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.05)
            if r:
                d = os.read(self.proc.stdout.fileno(), 65536)
                if not d:
                    break
                self.buf += d
        return self.buf

    def read_until(self, marker, seconds):
        end = time.time() + seconds
        while marker not in self.buf and time.time() < end:
            self.read_for(0.1)
        if marker not in self.buf:
            raise AssertionError(f"no {marker!r} from s_client: {self.buf[-2000:]!r}")

    def server_serial(self):
        m = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", self.buf, re.S)
        return cert_serial(m.group(0))

    def get_core(self, msg_id):
        """Send GET /.well-known/core; return the raw answer PDU(s)."""
        start = len(self.buf)
        self.proc.stdin.write(coap_get_core(msg_id))
        self.proc.stdin.flush()
        end = time.time() + 10
        while b'rt="ace.est' not in self.buf[start:] and time.time() < end:
            self.read_for(0.1)
        return self.buf[start:]

    def close(self):
        self.proc.kill()
        self.proc.wait()


def cert_serial(pem):
    out = openssl("x509", "-noout", "-serial", data=pem).decode()
    return out.strip().split("=", 1)[1].upper()


def handshake_serial(stack):
    """Serial of the server certificate a brand-new handshake gets."""
    p = stack.pki
    r = subprocess.run(["openssl", "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{stack.port}",
                        "-cert", f"{p}/device.crt", "-key", f"{p}/device.key",
                        "-CAfile", f"{p}/gw-ca.crt"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
    m = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", r.stdout, re.S)
    if not m:
        raise AssertionError(f"no certificate from s_client: {r.stdout[-1500:]!r} {r.stderr!r}")
    return cert_serial(m.group(0))


def issue(stack, name, issuer, serial, cn, eku):
    """A new certificate for an existing key (<name>.key in the PKI), in the stack's dir."""
    p, d = stack.pki, stack.dir
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                f"extendedKeyUsage = {eku}\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n")
    csr = os.path.join(d, name + ".csr")
    openssl("req", "-new", "-key", f"{p}/{name}.key", "-subj", f"/CN={cn}", "-out", csr)
    crt = os.path.join(d, name + "-new.crt")
    openssl("x509", "-req", "-in", csr, "-CA", f"{p}/{issuer}.crt", "-CAkey", f"{p}/{issuer}.key",
            "-set_serial", serial, "-days", "30", "-extfile", ext, "-out", crt)
    return crt


def rewrite_conf(stack, old, new):
    text = read(stack.conf)
    assert old in text, (old, text)
    with open(stack.conf, "w") as f:
        f.write(text.replace(old, new))


def metrics_stack_kwargs(port, extra="", server="", metrics=""):
    return {"extra_server": server,
            "extra_upstream": f"{extra}\n[metrics]\nlisten = 127.0.0.1:{port}\n{metrics}"}


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, line_start):
    """The value of the sample whose line starts with @line_start (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class OpsTest(StackTest):
    """A stack with [metrics] on a free port."""

    extra_upstream = ""
    extra_server = ""
    extra_metrics = ""

    def setUp(self):
        self.mport = free_tcp_port()
        self.stack_kwargs = dict(self.stack_kwargs)
        self.stack_kwargs.update(metrics_stack_kwargs(self.mport, self.extra_upstream,
                                                      self.extra_server, self.extra_metrics))
        super().setUp()

    def metrics(self):
        code, text = http_get(f"http://127.0.0.1:{self.mport}/metrics")
        self.assertEqual(code, 200, text)
        return text

    def hup_and_wait(self, what):
        n = self.s.log().count("reload:")
        self.s.gw.send_signal(signal.SIGHUP)
        wait_for(lambda: self.s.log().count("reload:") > n and what in self.s.log(),
                 what=f"reload log line {what!r}")


class TestReload(OpsTest):

    def test_J_sighup_new_dtls_cert_open_session_kept(self):
        old = handshake_serial(self.s)
        sess = DtlsSession(self.s)
        try:
            self.assertEqual(sess.server_serial(), old)
            self.assertIn(b'rt="ace.est"', sess.get_core(1))
            crt = issue(self.s, "gw", "gw-ca", "0x7E57AB1E", "estgw-reloaded",
                        "serverAuth, 1.3.6.1.5.5.7.3.28")
            chain = os.path.join(self.s.dir, "gw-chain.crt")
            with open(chain, "wb") as f:
                f.write(read(crt, "rb") + read(f"{self.s.pki}/gw-ca.crt", "rb"))
            rewrite_conf(self.s, f"certificate = {self.s.pki}/gw.crt", f"certificate = {chain}")
            self.hup_and_wait("configuration reloaded")
            # a new handshake gets the new certificate ...
            self.assertEqual(handshake_serial(self.s), "7E57AB1E")
            # ... while the session opened before keeps working
            self.assertIn(b'rt="ace.est"', sess.get_core(2))
        finally:
            sess.close()
        r = self.s.coap(WK + "/crts")
        self.assertEqual(r.code, OK, r)
        self.assertIn('estgw_config_reloads_total{result="ok"} 1', self.metrics())

    def test_J_sighup_broken_config_keeps_old(self):
        with open(self.s.conf, "a") as f:
            f.write("bogus_key = 1\n")
        bad_line = read(self.s.conf).count("\n")
        self.hup_and_wait("configuration not reloaded")
        log = self.s.log()
        self.assertRegex(log, re.escape(f"{self.s.conf}:{bad_line}:") + r" \[\w+\] bogus_key: unknown key")
        self.assertEqual(len(re.findall(r"configuration not reloaded", log)), 1)
        r = self.s.coap(WK + "/sen", method="post", cf=286,
                        payload=read(f"{self.s.pki}/device.csr.der", "rb"))
        self.assertEqual(r.code, OK, r)
        self.assertIn('estgw_config_reloads_total{result="failed"} 1', self.metrics())

    def test_J_sighup_unreadable_key_keeps_old(self):
        old = handshake_serial(self.s)
        bad = os.path.join(self.s.dir, "broken.key")
        with open(bad, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        os.chmod(bad, 0o600)
        rewrite_conf(self.s, f"private_key = {self.s.pki}/gw.key", f"private_key = {bad}")
        self.hup_and_wait("configuration not reloaded")
        line = read(self.s.conf).split("\n").index(f"private_key = {bad}") + 1
        self.assertIn(f"{self.s.conf}:{line}: [server] private_key: {bad}: not a private key",
                      self.s.log())
        self.assertEqual(handshake_serial(self.s), old)
        self.assertEqual(self.s.coap(WK + "/crts").code, OK)
        self.assertIn('estgw_config_reloads_total{result="failed"} 1', self.metrics())

    def test_J_sighup_restart_keys_named(self):
        """Restart-only keys (the schema's RESTART column): one warning each, with the
        key's line in the new file, and the running value stays; the rest applies."""
        new_port = harness.free_udp_port()
        rewrite_conf(self.s, f"listen = 127.0.0.1:{self.s.port}", f"listen = 127.0.0.1:{new_port}")
        rewrite_conf(self.s, f"listen = 127.0.0.1:{self.mport}", "listen = 127.0.0.1:2")
        with open(self.s.conf, "a") as f:
            f.write("[brski]\nmax_pending = 5\n")
        rewrite_conf(self.s, "[policy]\n", "[policy]\nother_ops = att\n")  # a live key
        lines = read(self.s.conf).split("\n")
        self.hup_and_wait("configuration reloaded")
        log = self.s.log()
        for key, text in (("[server] listen", f"listen = 127.0.0.1:{new_port}"),
                          ("[metrics] listen", "listen = 127.0.0.1:2"),
                          ("[brski] max_pending", "max_pending = 5")):
            want = (f"{self.s.conf}:{lines.index(text) + 1}: {key} changed: needs a restart; "
                    "the running value stays")
            self.assertEqual(log.count(want), 1, (want, log[-3000:]))
        self.assertEqual(log.count("changed: needs a restart"), 3, log[-3000:])
        # still on the old addresses, not on the new one ...
        r = self.s.coap(WK + "/att")
        self.assertEqual(r.code, OK, r)
        self.metrics()
        old_port, self.s.port = self.s.port, new_port
        try:
            self.assertIsNone(self.s.coap(WK + "/att", timeout=2).code)
        finally:
            self.s.port = old_port
        # ... while the live key took effect: other_ops = att refuses /crts
        self.assertEqual(self.s.coap(WK + "/crts").code, "4.03")

    def test_J_sighup_rate_limit_applied(self):
        """[server] rate_limit is live: lowered on SIGHUP, the client's next requests
        over the new limit get 4.29 (RFC 8516); 0 turns the limit off."""
        codes = [self.s.coap(WK + "/crts").code for _ in range(3)]
        self.assertEqual(codes, [OK] * 3)  # the default 600 per minute
        rewrite_conf(self.s, "[upstream]\n", "rate_limit = 2\n[upstream]\n")
        self.hup_and_wait("configuration reloaded")
        self.assertNotIn("needs a restart", self.s.log())
        codes = [self.s.coap(WK + "/crts").code for _ in range(3)]
        self.assertEqual(codes, [OK, OK, "4.29"], codes)
        self.assertRegex(self.s.log(), r"GET /.well-known/est/crts upstream=- code=4\.29 .*rate limit")
        rewrite_conf(self.s, "rate_limit = 2\n", "rate_limit = 0\n")
        self.hup_and_wait("configuration reloaded")
        codes = [self.s.coap(WK + "/crts").code for _ in range(3)]
        self.assertEqual(codes, [OK] * 3)

    def test_J_sighup_new_ra_certificate_upstream(self):
        crt = issue(self.s, "ra", "est-sub", "0x5A11", "ra-reloaded",
                    "clientAuth, 1.3.6.1.5.5.7.3.28")
        rewrite_conf(self.s, f"certificate = {self.s.pki}/ra.crt", f"certificate = {crt}")
        self.hup_and_wait("configuration reloaded")
        r = self.s.coap(WK + "/sen", method="post", cf=286,
                        payload=read(f"{self.s.pki}/device.csr.der", "rb"))
        self.assertEqual(r.code, OK, r)
        ca_log = read(os.path.join(self.s.dir, "ca.log"))
        enroll = [l for l in ca_log.splitlines() if "POST /.well-known/est/simpleenroll" in l]
        self.assertTrue(enroll and "ra-reloaded" in enroll[-1], ca_log[-2000:])

    def test_J_sighup_new_client_trust(self):
        self.assertEqual(self.s.coap(WK + "/crts").code, OK)
        # est-chain.crt: the EST CAs only, not the manufacturer CA of the IDevID
        rewrite_conf(self.s, f"client_trust = {self.s.pki}/client-trust.crt",
                     f"client_trust = {self.s.pki}/est-chain.crt")
        self.hup_and_wait("configuration reloaded")
        r = self.s.coap(WK + "/crts")
        self.assertIsNone(r.code, r)  # the handshake fails: no answer at all
        self.assertGreater(metric(self.metrics(), 'estgw_dtls_handshake_failures_total{reason="unknown_ca"}'), 0)

    def test_J_sighup_new_upstream_trust_no_old_connection_reused(self):
        csr = read(f"{self.s.pki}/device.csr.der", "rb")
        trust = os.path.join(self.s.dir, "upstream-trust.crt")
        with open(trust, "wb") as f:
            f.write(read(f"{self.s.pki}/tls-ca.crt", "rb"))
        rewrite_conf(self.s, f"trust = {self.s.pki}/tls-ca.crt", f"trust = {trust}")
        self.hup_and_wait("configuration reloaded")
        self.assertEqual(self.s.coap(WK + "/sen", method="post", cf=286, payload=csr).code, OK)
        # Same file name, new content: a bundle without the CA of the EST
        # server's TLS certificate. curl would reuse its pooled connection
        # (same settings); after the reload it must not, and a new
        # connection fails verification.
        with open(trust, "wb") as f:
            f.write(read(f"{self.s.pki}/gw-ca.crt", "rb"))
        self.hup_and_wait("configuration reloaded")
        # /att: an identical /sen would be answered from the kept certificate
        r = self.s.coap(WK + "/att")
        self.assertEqual(r.code, "5.02", r)
        self.assertGreater(metric(self.metrics(), 'estgw_upstream_errors_total{kind="tls"}'), 0)

    def test_J_sighup_ra_without_cmcra_refused(self):
        rewrite_conf(self.s, f"certificate = {self.s.pki}/ra.crt",
                     f"certificate = {self.s.pki}/ra-nocmc.crt")
        rewrite_conf(self.s, f"private_key = {self.s.pki}/ra.key",
                     f"private_key = {self.s.pki}/ra-nocmc.key")
        self.hup_and_wait("configuration not reloaded")
        self.assertIn("[upstream] certificate", self.s.log())
        r = self.s.coap(WK + "/sen", method="post", cf=286,
                        payload=read(f"{self.s.pki}/device.csr.der", "rb"))
        self.assertEqual(r.code, OK, r)


class TestShutdown(StackTest):
    stack_kwargs = {"ca_args": ("--delay", "5", "--fault-op", "simpleenroll"),
                    "extra_upstream": "answer_within = 20\nretry_default = 41"}

    def test_J_sigterm_lets_inflight_finish(self):
        csr = os.path.join(self.s.dir, "csr.der")
        with open(csr, "wb") as f:
            f.write(read(f"{self.s.pki}/device.csr.der", "rb"))
        p = self.s.pki
        out = os.path.join(self.s.dir, "cert.p7")
        dev = subprocess.Popen(["coap-client-openssl", "-m", "post", "-t", "286", "-f", csr,
                                "-B", "30", "-o", out, "-C", f"{p}/gw-ca.crt",
                                "-c", f"{p}/device.crt", "-j", f"{p}/device.key",
                                self.s.uri(WK + "/sen")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            # the CA holds simpleenroll for 5 s; the request follows the
            # handshake within milliseconds
            wait_for(lambda: self.s.ca_stats()["ops"].get("simpleenroll") == 1, what="the /sen at the CA")
            self.assertIsNone(dev.poll())
            t0 = time.time()
            self.s.gw.send_signal(signal.SIGTERM)
            wait_for(lambda: "shutting down" in self.s.log(), what="shutdown log")
            self.assertIn("1 request(s) in flight", self.s.log())
            # a new request while draining gets 5.03 + Max-Age (D1)
            r = self.s.coap(WK + "/crts", timeout=5, extra=["-v", "7"])
            self.assertEqual(r.code, "5.03", r)
            self.assertEqual(re.findall(r"Max-Age:(\d+)", r.stderr)[-1:], ["41"], r.stderr[-2000:])
            self.assertEqual(self.s.gw.wait(timeout=30), 0)
            waited = time.time() - t0
            dev_out, _ = dev.communicate(timeout=30)
        finally:
            if dev.poll() is None:
                dev.kill()
        self.assertGreater(waited, 1.0)
        self.assertEqual(dev.returncode, 0, dev_out)
        with open(out, "rb") as f:
            self.assertGreater(len(f.read()), 100)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=200 code=2.04")


class TestShutdownGraceOver(StackTest):
    stack_kwargs = {"ca_args": ("--delay", "20", "--fault-op", "simpleenroll"),
                    "extra_server": "shutdown_grace = 1"}

    def test_J_sigterm_grace_expires(self):
        r_proc = subprocess.Popen(
            ["coap-client-openssl", "-m", "post", "-t", "286", "-f", f"{self.s.pki}/device.csr.der",
             "-B", "8", "-C", f"{self.s.pki}/gw-ca.crt", "-c", f"{self.s.pki}/device.crt",
             "-j", f"{self.s.pki}/device.key", self.s.uri(WK + "/sen")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: self.s.ca_stats()["ops"].get("simpleenroll") == 1, what="the /sen at the CA")
            t0 = time.time()
            self.s.gw.send_signal(signal.SIGTERM)
            self.assertEqual(self.s.gw.wait(timeout=15), 0)
            self.assertLess(time.time() - t0, 5)
        finally:
            r_proc.kill()
            r_proc.wait()
        self.assertIn("shutdown grace (1s) over: 1 request(s) still in flight", self.s.log())


class TestMetrics(OpsTest):

    def test_J_metrics_count_requests(self):
        before = self.metrics()
        csr = read(f"{self.s.pki}/device.csr.der", "rb")
        for _ in range(2):
            self.assertEqual(self.s.coap(WK + "/crts").code, OK)
        self.assertEqual(self.s.coap(WK + "/sen", method="post", cf=286, payload=csr).code, OK)
        self.assertEqual(self.s.coap(WK + "/sen", method="post", cf=0, payload=csr).code, "4.15")
        self.assertEqual(self.s.coap("/nothing/here").code, "4.04")
        self.assertEqual(self.s.coap(WK + "/crts", cert="rogue-device").code, None)
        text = self.metrics()

        def delta(sample):
            return metric(text, sample) - metric(before, sample)

        self.assertEqual(delta('estgw_requests_total{path="crts",code="2.05"}'), 2)
        self.assertEqual(delta('estgw_requests_total{path="sen",code="2.04"}'), 1)
        self.assertEqual(delta('estgw_requests_total{path="sen",code="4.15"}'), 1)
        self.assertEqual(delta('estgw_requests_total{path="other",code="4.04"}'), 1)
        self.assertEqual(delta('estgw_upstream_exchanges_total{op="simpleenroll",status="200"}'), 1)
        self.assertEqual(delta('estgw_upstream_duration_seconds_count{op="simpleenroll"}'), 1)
        self.assertGreaterEqual(metric(text, 'estgw_upstream_exchanges_total{op="cacerts",status="200"}'), 1)
        fails = [l for l in text.splitlines() if l.startswith("estgw_dtls_handshake_failures_total{")]
        self.assertTrue(fails, text)
        self.assertIn('reason="unknown_ca"', "".join(fails))
        self.assertEqual(metric(text, "estgw_block1_reassemblies"), 0)
        self.assertIn('estgw_ca_certs_age_seconds{label=""}', text)
        code, body = http_get(f"http://127.0.0.1:{self.mport}/healthz")
        self.assertEqual((code, body), (200, "ok\n"))
        code, _ = http_get(f"http://127.0.0.1:{self.mport}/other")
        self.assertEqual(code, 404)

    def test_J_metrics_open_sessions_and_block1(self):
        sess = DtlsSession(self.s)
        try:
            wait_for(lambda: metric(self.metrics(), "estgw_dtls_sessions") == 1,
                     what="one open DTLS session")
        finally:
            sess.close()
        r = self.s.coap(WK + "/sen", method="post", cf=286, block=64,
                        payload=read(f"{self.s.pki}/device.csr.der", "rb"))
        self.assertEqual(r.code, OK, r)
        self.assertEqual(metric(self.metrics(), "estgw_block1_reassemblies"), 0)


class TestHealthz(OpsTest):
    extra_upstream = "crts_refresh = 1\n"
    extra_metrics = "crts_max_age = 3\n"

    def test_J_healthz_503_when_ca_down_and_cache_stale(self):
        url = f"http://127.0.0.1:{self.mport}/healthz"
        wait_for(lambda: http_get(url)[0] == 200, what="healthz 200")
        self.s.ca.terminate()
        self.s.ca.wait(timeout=10)
        t0 = time.time()
        wait_for(lambda: http_get(url)[0] == 503, timeout=20, what="healthz 503")
        self.assertGreater(time.time() - t0, 1.0)
        code, body = http_get(url)
        self.assertEqual(code, 503)
        self.assertIn("stale", body)
        text = self.metrics()
        self.assertGreater(metric(text, 'estgw_upstream_errors_total{kind="connect"}'), 0)
        self.assertGreater(metric(text, 'estgw_ca_certs_age_seconds{label=""}'), 3)
        # the cached answer is still served to devices meanwhile
        self.assertEqual(self.s.coap(WK + "/crts").code, OK)


class TestJsonLog(StackTest):
    stack_kwargs = {"extra_upstream": "[log]\nformat = json\n"}

    def test_J_json_log_lines(self):
        self.assertEqual(self.s.coap(WK + "/crts").code, OK)
        wait_for(lambda: '"group":"req"' in self.s.log(), what="request log line")
        lines = [l for l in self.s.log().splitlines() if l.strip()]
        objs = [json.loads(l) for l in lines]  # every line is one JSON object
        req = [o for o in objs if o["group"] == "req"]
        self.assertEqual(len(req), 1)
        self.assertEqual(set(req[0]), {"ts", "level", "pid", "group", "msg"})
        self.assertIn('client="serialNumber=SN001,CN=device-001" GET /.well-known/est/crts', req[0]["msg"])
        self.assertEqual(req[0]["level"], "info")


class TestNotify(StackTest):
    """sd_notify (systemd Type=notify): READY, RELOADING + READY, STOPPING.
    estgw speaks the protocol itself (no libsystemd): one datagram per state to
    the AF_UNIX socket NOTIFY_SOCKET names."""

    abstract = False

    def setUp(self):
        exe = os.environ.get("ESTGW", "estgw")
        if b"sd_notify: yes" not in subprocess.run([exe, "--version"], capture_output=True).stdout:
            self.skipTest("estgw built with -Dsystemd=disabled")
        self.sockdir = tempfile.mkdtemp(prefix="estgw-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if self.abstract:
            # a leading '@' names a socket in the abstract namespace
            name = f"estgw-notify-{os.getpid()}-{time.time_ns()}"
            self.sock.bind("\0" + name)
            env = "@" + name
        else:
            env = os.path.join(self.sockdir, "notify")
            self.sock.bind(env)
        self.sock.settimeout(20)
        os.environ["NOTIFY_SOCKET"] = env
        try:
            super().setUp()
        finally:
            del os.environ["NOTIFY_SOCKET"]

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self.sock.close()
            shutil.rmtree(self.sockdir, ignore_errors=True)

    def expect(self, state):
        msg = self.sock.recv(4096).decode()
        self.assertIn(state, msg.split("\n"), msg)

    def test_J_sd_notify_ready_reload_stopping(self):
        self.expect("READY=1")
        self.s.gw.send_signal(signal.SIGHUP)
        self.expect("RELOADING=1")
        self.expect("READY=1")
        self.s.gw.send_signal(signal.SIGTERM)
        self.expect("STOPPING=1")
        # exited by itself: tearDown must not send its SIGTERM into the exit
        # (a second signal after the loop let go of its handlers kills it)
        self.assertEqual(self.s.gw.wait(timeout=30), 0)


class TestNotifyAbstract(TestNotify):
    """The same states to an abstract-namespace socket (NOTIFY_SOCKET=@name)."""

    abstract = True


class TestSignals(unittest.TestCase):
    """SIGTERM/SIGINT during start-up, the grace period and teardown all end
    in exit status 0: orchestrators send a second SIGTERM (podman stop,
    systemd KillMode=mixed, an impatient operator)."""

    def run_stack(self, body, **kwargs):
        s = Stack(**kwargs)
        try:
            rc = body(s)
            log = s.log()
            self.assertEqual(rc, 0, f"estgw exit status {rc}:\n{log[-4000:]}")
            for bad in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
                self.assertNotIn(bad, log)
            return log
        finally:
            s.stop()
            s.cleanup()

    def test_J_sigterm_during_startup_warmup(self):
        """The CA holds /cacerts, so estgw is still warming its /crts cache
        (the CoAP side not open yet) when the signal comes."""
        def body(s):
            s.start(wait_ready=False)
            wait_for(lambda: s.ca_stats()["paths"].get(WK + "/cacerts", 0) >= 1,
                     what="warm-up /cacerts at the CA")
            self.assertIsNone(s.gw.poll())
            t0 = time.time()
            s.gw.send_signal(signal.SIGTERM)
            rc = s.gw.wait(timeout=15)
            self.assertLess(time.time() - t0, 5)
            return rc
        log = self.run_stack(body, ca_args=("--delay", "30", "--fault-op", "cacerts"))
        self.assertIn("signal 15: shutting down", log)
        self.assertNotIn(" ready", log)

    def test_J_sigint_then_sigterm_during_startup(self):
        def body(s):
            s.start(wait_ready=False)
            wait_for(lambda: s.ca_stats()["paths"].get(WK + "/cacerts", 0) >= 1,
                     what="warm-up /cacerts at the CA")
            s.gw.send_signal(signal.SIGINT)
            s.gw.send_signal(signal.SIGTERM)
            return s.gw.wait(timeout=15)
        self.run_stack(body, ca_args=("--delay", "30", "--fault-op", "cacerts"))

    def test_J_second_sigterm_during_grace(self):
        """A request in flight holds the grace period open; the second
        SIGTERM ends it at once, still with status 0."""
        def body(s):
            s.start()
            dev = subprocess.Popen(
                ["coap-client-openssl", "-m", "post", "-t", "286", "-f",
                 f"{s.pki}/device.csr.der", "-B", "30", "-C", f"{s.pki}/gw-ca.crt",
                 "-c", f"{s.pki}/device.crt", "-j", f"{s.pki}/device.key",
                 s.uri(WK + "/sen")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for(lambda: s.ca_stats()["paths"].get(WK + "/simpleenroll", 0) >= 1,
                         what="simpleenroll held at the CA")
                s.gw.send_signal(signal.SIGTERM)
                wait_for(lambda: "1 request(s) in flight" in s.log(), what="shutdown log")
                t0 = time.time()
                s.gw.send_signal(signal.SIGTERM)
                rc = s.gw.wait(timeout=15)
                self.assertLess(time.time() - t0, 5)
                return rc
            finally:
                dev.kill()
                dev.wait()
        log = self.run_stack(body, ca_args=("--delay", "30", "--fault-op", "simpleenroll"))
        self.assertIn("again: exiting now", log)

    def test_J_sigterm_storm_through_teardown(self):
        """SIGTERM every half millisecond from the first one until the
        process is gone: whichever phase a signal lands in (drain, loop exit,
        freeing the loop, after it), the exit status is 0. Bounded: at most
        20,000 signals or 20 s per run, five runs."""
        for _ in range(5):
            def body(s):
                s.start()
                sent = 0
                deadline = time.time() + 20
                while s.gw.poll() is None and sent < 20000 and time.time() < deadline:
                    try:
                        s.gw.send_signal(signal.SIGTERM)
                    except ProcessLookupError:
                        break
                    sent += 1
                    time.sleep(0.0005)
                return s.gw.wait(timeout=15)
            self.run_stack(body)


def free_udp6_port():
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.bind(("::1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def free_tcp6_port():
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.bind(("::1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def check(conf):
    exe = os.environ.get("ESTGW", "estgw")
    return subprocess.run([exe, "--check", "-c", conf], capture_output=True, check=False,
                          timeout=60)


class TestListenAddresses(unittest.TestCase):
    """A listen address is parsed once, by config.c, into the socket address that is
    bound: what --check accepts is what estgw listens on, and what it refuses (a host
    name: names are not resolved) start-up refuses with the same file:line reason."""

    def setUp(self):
        self.s = None

    def tearDown(self):
        if self.s:
            self.s.stop()
            log = self.s.log()
            self.s.cleanup()
            for bad in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
                self.assertNotIn(bad, log)

    def test_J_check_accepts_what_estgw_listens_on(self):
        p6, m6 = free_udp6_port(), free_tcp6_port()
        self.s = Stack()
        rewrite_conf(self.s, f"listen = 127.0.0.1:{self.s.port}",
                     f"listen = [::1]:{p6}\nlisten = 127.0.0.1:{self.s.port}")
        rewrite_conf(self.s, "[policy]\n", f"[metrics]\nlisten = [::1]:{m6}\n[policy]\n")
        r = check(self.s.conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"configuration OK", r.stdout)
        self.s.start()
        log = self.s.log()
        self.assertIn(f"listening on [::1]:{p6} (DTLS)", log)
        self.assertIn(f"listening on 127.0.0.1:{self.s.port} (DTLS)", log)
        # a real device on each address: IPv4 ...
        self.assertEqual(self.s.coap(WK + "/crts").code, OK)
        # ... and IPv6
        v4_uri = self.s.uri
        self.s.uri = lambda path: f"coaps://[::1]:{p6}{path}"
        try:
            r = self.s.coap(WK + "/crts")
        finally:
            self.s.uri = v4_uri
        self.assertEqual(r.code, OK, r)
        code, text = http_get(f"http://[::1]:{m6}/metrics")
        self.assertEqual(code, 200, text)
        self.assertIn("estgw_requests_total", text)
        self.assertEqual(self.s.stop(), 0, self.s.log()[-3000:])

    def test_J_host_name_refused_by_check_and_start_alike(self):
        self.s = Stack(ca=False, upstream_url="https://127.0.0.1:1/.well-known/est")
        rewrite_conf(self.s, f"listen = 127.0.0.1:{self.s.port}", f"listen = localhost:{self.s.port}")
        line = read(self.s.conf).split("\n").index(f"listen = localhost:{self.s.port}") + 1
        want = (f"{self.s.conf}:{line}: [server] listen: bad address 'localhost:{self.s.port}': "
                "a host name; names are not resolved")
        r = check(self.s.conf)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(want, r.stderr.decode())
        self.s.start(wait_ready=False)
        self.assertEqual(self.s.gw.wait(timeout=60), 1)
        self.assertIn(want, self.s.log())
        self.assertNotIn("listening on", self.s.log())

    def test_J_malformed_metrics_listen_refused_by_check(self):
        self.s = Stack(ca=False, upstream_url="https://127.0.0.1:1/.well-known/est")
        rewrite_conf(self.s, "[policy]\n", "[metrics]\nlisten = [::1]9684\n[policy]\n")
        line = read(self.s.conf).split("\n").index("listen = [::1]9684") + 1
        r = check(self.s.conf)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(f"{self.s.conf}:{line}: [metrics] listen: bad address '[::1]9684': "
                      "expected [IPv6-address]:port", r.stderr.decode())


class TestCheckDefaults(unittest.TestCase):

    def test_J_check_and_missing_default_config(self):
        exe = os.environ.get("ESTGW", "estgw")
        s = Stack(ca=False, upstream_url="https://127.0.0.1:1/.well-known/est")
        try:
            r = subprocess.run([exe, "--check", "-c", s.conf], capture_output=True, check=False)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b"configuration OK", r.stdout)
        finally:
            s.cleanup()
        if not os.path.exists("/etc/estgw/estgw.conf"):
            r = subprocess.run([exe, "--check"], capture_output=True, check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn(b"/etc/estgw/estgw.conf", r.stderr)


if __name__ == "__main__":
    harness.main(__name__)
