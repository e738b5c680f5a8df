#!/usr/bin/env python3
"""[log] keylog_file: field debugging by decrypting a capture (issue "Interop
with the world" item 11).

estgw appends the secrets of every DTLS session and every upstream TLS
connection to the file in the NSS key log format. The capture test records
one real exchange on lo with tshark (device: coap-client-openssl; upstream:
the test CA), then lets tshark decrypt it with that file, and finds the CoAP
request and the HTTP request line inside; without the file it finds neither.
Capturing needs root (CI runs as root): otherwise that test is skipped.

Run one test: test_keylog.py TestKeylogCapture.test_J_keylog_capture_decrypts_dtls_and_https
"""
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import ESTGW, Stack, StackTest, read_text, wait_for  # noqa: E402

WK = "/.well-known/est"
OK = "2.xx"  # coap-client prints no code for a 2.xx answer
# NSS key log lines: TLS 1.2/DTLS 1.2 "CLIENT_RANDOM <random> <master secret>",
# TLS 1.3 "<LABEL> <client random> <secret>" (the labels OpenSSL writes).
NSS_LINE = re.compile(r"^(CLIENT_RANDOM|(CLIENT|SERVER)_(HANDSHAKE_)?TRAFFIC_SECRET(_0)?|"
                      r"EXPORTER_SECRET|EARLY_EXPORTER_SECRET|CLIENT_EARLY_TRAFFIC_SECRET)"
                      r" [0-9a-f]{64} [0-9a-f]{64,}$")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def add_keylog(s, path):
    """Append [log] keylog_file = path to the stack's config; its line number."""
    with open(s.conf, "a") as f:
        f.write(f"[log]\nkeylog_file = {path}\n")
    return read(s.conf).count("\n")


def set_keylog(s, path):
    text = re.sub(r"(?m)^keylog_file = .*$", f"keylog_file = {path}", read(s.conf))
    with open(s.conf, "w") as f:
        f.write(text)


def client_randoms(path):
    return [l for l in read_text(path).splitlines() if l.startswith("CLIENT_RANDOM ")]


def capture_skip_reason():
    if not shutil.which("tshark"):
        return "tshark is not installed (tools/deps.sh installs it)"
    if os.geteuid() != 0:
        return "capturing on lo needs root (CI runs as root)"
    return None


class Capture:
    """tshark on lo for the stack's DTLS port and the CA's TCP port."""

    def __init__(self, d, udp_port, tcp_port):
        self.udp, self.tcp = udp_port, tcp_port
        self.pcap = os.path.join(d, "cap.pcapng")
        self.out_path = os.path.join(d, "tshark.out")
        self.err_path = os.path.join(d, "tshark.err")
        self.out, self.err = open(self.out_path, "wb"), open(self.err_path, "wb")
        # -P -l: one summary line per packet as soon as it is in the file
        self.proc = subprocess.Popen(
            ["tshark", "-i", "lo", "-f", f"udp port {udp_port} or tcp port {tcp_port}",
             "-w", self.pcap, "-P", "-l", "-d", f"udp.port=={udp_port},dtls"],
            stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL)
        # tshark says "Capturing on" before its dumpcap child has the
        # interface open: only a packet seen in the capture proves it is on.
        # Probes go to the DTLS port while nothing listens there yet.
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            def seen():
                if self.proc.poll() is not None:
                    return True
                probe.sendto(b"capture probe", ("127.0.0.1", udp_port))
                return read_text(self.out_path).strip() != ""
            wait_for(seen, timeout=60, what="tshark capturing (a probe datagram seen)")
        finally:
            probe.close()
        if self.proc.poll() is not None:
            raise AssertionError(f"tshark exited: {read_text(self.err_path)}")

    def wait_line(self, pattern, what):
        wait_for(lambda: re.search(pattern, read_text(self.out_path), re.M), timeout=30,
                 what=what)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        self.err.close()

    def fields(self, display_filter, fields, keylog=None):
        """Read the capture back: the fields of the packets that match."""
        args = ["tshark", "-r", self.pcap,
                "-d", f"udp.port=={self.udp},dtls", "-d", f"dtls.port=={self.udp},coap",
                "-d", f"tcp.port=={self.tcp},tls", "-d", f"tls.port=={self.tcp},http",
                "-Y", display_filter, "-T", "fields"]
        for f in fields:
            args += ["-e", f]
        if keylog:
            args += ["-o", f"tls.keylog_file:{keylog}"]
        r = subprocess.run(args, capture_output=True, timeout=60, check=False)
        if r.returncode != 0:
            raise AssertionError(f"tshark -r failed: {r.stderr.decode(errors='replace')}")
        return r.stdout.decode()


class TestKeylogCapture(StackTest):
    """The capture is started before estgw, so that it holds the upstream TLS
    handshake too (estgw connects to the CA at start-up, for /crts, and
    reuses that connection)."""

    def setUp(self):
        reason = capture_skip_reason()
        if reason:
            self.skipTest(reason)
        self.s = Stack()
        try:
            self.keylog = os.path.join(self.s.dir, "keys.log")
            add_keylog(self.s, self.keylog)
            self.cap = Capture(self.s.dir, self.s.port, self.s.ca_port)
            self.addCleanup(self.cap.stop)
            self.s.start()
        except BaseException:
            self.s.stop()
            self.s.cleanup()
            raise

    def test_J_keylog_capture_decrypts_dtls_and_https(self):
        # /att goes to the CA (csrattrs); /crts would come from the cache
        r = self.s.coap(WK + "/att")
        self.assertEqual(r.code, OK, r)
        # The device's close_notify is its last packet: all before it is in
        # the capture file once tshark has printed it.
        self.cap.wait_line(r"DTLS.*Alert", "the device's DTLS alert in the capture")
        self.cap.stop()

        self.assertEqual(self.cap.fields("coap", ["coap.opt.uri_path"]).strip(), "",
                         "CoAP readable without the key log")
        self.assertEqual(self.cap.fields("http.request", ["http.request.uri"]).strip(), "",
                         "HTTP readable without the key log")
        coap = self.cap.fields("coap.code == 1", ["coap.opt.uri_path"], self.keylog)
        self.assertIn(".well-known,est,att", coap.splitlines())
        http = self.cap.fields("http.request", ["http.request.method", "http.request.uri"],
                               self.keylog)
        self.assertIn("GET\t/.well-known/est/csrattrs", http.splitlines())

        lines = read(self.keylog).splitlines()
        self.assertTrue(lines and all(NSS_LINE.match(l) for l in lines), lines)
        self.assertEqual(stat.S_IMODE(os.stat(self.keylog).st_mode), 0o600)
        self.assertIn("KEY LOG ON", self.s.log())


class TestKeylogFile(StackTest):
    """Without a capture: what is written, when, and how."""

    def setUp(self):
        self.s = Stack()
        self.keylog = os.path.join(self.s.dir, "keys.log")
        # an existing file (mode 0600) is appended to, not replaced
        with open(os.open(self.keylog, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write("# earlier session\n")
        self.line = add_keylog(self.s, self.keylog)
        self.s.start()

    def test_J_keylog_one_line_per_dtls_handshake_flushed_at_once(self):
        before = client_randoms(self.keylog)
        self.assertEqual(self.s.coap(WK + "/crts").code, OK)
        # read while estgw runs: nothing waits in a buffer
        after = client_randoms(self.keylog)
        self.assertEqual(len(after), len(before) + 1, after)
        self.assertTrue(all(NSS_LINE.match(l) for l in after))
        text = read(self.keylog)
        self.assertTrue(text.startswith("# earlier session\n"), text[:200])
        self.assertTrue(text.endswith("\n"))
        self.assertEqual(stat.S_IMODE(os.stat(self.keylog).st_mode), 0o600)
        self.assertRegex(self.s.log(), r"warning keylog: KEY LOG ON: .*" + re.escape(self.keylog))

    def test_J_keylog_reload_keeps_the_running_key_log(self):
        other = os.path.join(self.s.dir, "other.log")
        set_keylog(self.s, other)
        n = self.s.log().count("configuration reloaded")
        self.s.gw.send_signal(signal.SIGHUP)
        wait_for(lambda: self.s.log().count("configuration reloaded") > n, what="reload")
        log = self.s.log()
        self.assertIn(f"{self.s.conf}:{self.line}: [log] keylog_file changed: needs a restart; "
                      "the running value stays", log)
        self.assertRegex(log, r"warning reload: .*\[log\] keylog_file: .*" + re.escape(self.keylog))
        before = len(client_randoms(self.keylog))
        self.assertEqual(self.s.coap(WK + "/crts").code, OK)
        self.assertEqual(len(client_randoms(self.keylog)), before + 1)
        self.assertFalse(os.path.exists(other))


class TestKeylogOff(StackTest):

    def test_J_keylog_off_by_default_nothing_said(self):
        self.assertEqual(self.s.coap(WK + "/crts").code, OK)
        self.assertNotIn("keylog", self.s.log())
        self.assertNotIn("KEY LOG", self.s.log())


class TestKeylogCheck(unittest.TestCase):
    """--check and start-up refusals; no CA needed."""

    def stack(self):
        s = Stack(ca=False, upstream_url="https://127.0.0.1:9/.well-known/est")
        self.addCleanup(s.cleanup)
        return s

    def run_estgw(self, s, *args):
        r = subprocess.run([ESTGW, "-c", s.conf, *args], capture_output=True, timeout=60,
                           check=False)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def test_J_keylog_check_warns_and_creates_nothing(self):
        s = self.stack()
        keylog = os.path.join(s.dir, "keys.log")
        line = add_keylog(s, keylog)
        rc, out, err = self.run_estgw(s, "--check")
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration OK", out)
        self.assertIn(f"estgw: warning: {s.conf}:{line}: [log] keylog_file: the session keys of "
                      f"every DTLS and upstream TLS connection are written to {keylog}", err)
        self.assertIn("decrypt captured traffic", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertFalse(os.path.exists(keylog))

    def test_J_keylog_check_without_keylog_says_nothing(self):
        rc, out, err = self.run_estgw(self.stack(), "--check")
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")

    def test_J_keylog_check_refuses_a_key_log_others_can_read(self):
        s = self.stack()
        keylog = os.path.join(s.dir, "keys.log")
        open(keylog, "w").close()
        os.chmod(keylog, 0o644)
        line = add_keylog(s, keylog)
        rc, _, err = self.run_estgw(s, "--check")
        self.assertEqual(rc, 1, err)
        self.assertIn(f"{s.conf}:{line}: [log] keylog_file: {keylog} is accessible to others "
                      "(mode 0644)", err)

    def test_J_keylog_start_refuses_a_key_log_of_another_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to give the file to another user")
        s = self.stack()
        keylog = os.path.join(s.dir, "keys.log")
        with open(os.open(keylog, os.O_WRONLY | os.O_CREAT, 0o600), "w"):
            pass
        nobody = pwd.getpwnam("nobody")
        os.chown(keylog, nobody.pw_uid, nobody.pw_gid)
        add_keylog(s, keylog)
        rc, _, err = self.run_estgw(s)
        self.assertEqual(rc, 1, err)
        self.assertIn(f"[log] keylog_file: {keylog} must be a regular file of mode 0600 owned by "
                      f"uid 0", err)
        self.assertNotIn("ready", err)
        self.assertEqual(os.path.getsize(keylog), 0)


if __name__ == "__main__":
    harness.main(__name__)
