"""Integration harness: a generated PKI, the test EST CA and estgw on free
loopback ports, and Debian's coap-client-openssl as the device.

Shares no conversion code with estgw: payloads are checked with the openssl
CLI. Environment: ESTGW (the binary), ESTGW_SRC (source root), ESTGW_PKI
(a directory where the PKI is generated once and reused).
"""
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

SRC = os.environ.get("ESTGW_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
ESTGW = os.environ.get("ESTGW", os.path.join(SRC, "build", "src", "estgw"))
PKI_CACHE = os.environ.get("ESTGW_PKI", os.path.join(tempfile.gettempdir(), "estgw-test-pki"))
COAP_CLIENT = shutil.which("coap-client-openssl") or "coap-client-openssl"


def ensure_pki():
    """Generate the test PKI once (under a lock: tests run in parallel)."""
    os.makedirs(PKI_CACHE, exist_ok=True)
    with open(os.path.join(PKI_CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = os.path.join(PKI_CACHE, ".done")
        script = os.path.join(SRC, "tests", "pki", "mkpki.sh")
        # regenerate when mkpki.sh changed after the cached PKI was made
        if not os.path.exists(done) or os.path.getmtime(done) < os.path.getmtime(script):
            subprocess.run(["bash", os.path.join(SRC, "tests", "pki", "mkpki.sh"), PKI_CACHE],
                           check=True, stdout=subprocess.DEVNULL)
            open(os.path.join(PKI_CACHE, ".done"), "w").close()
    return PKI_CACHE


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=15.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def new_csr(tmpdir, name):
    """A fresh P-256 CSR (test side, openssl CLI), subject CN=device-001."""
    key = os.path.join(tmpdir, name + ".key")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-subj", "/CN=device-001/serialNumber=SN001",
                    "-outform", "DER", "-out", key + ".csr"], check=True, capture_output=True)
    with open(key + ".csr", "rb") as f:
        return f.read()


def openssl(*args, data=None):
    r = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {r.stderr.decode(errors='replace')}")
    return r.stdout


def pubkey_of_cert_der(der):
    pem = openssl("x509", "-inform", "DER", "-noout", "-pubkey", data=der)
    return openssl("pkey", "-pubin", "-outform", "DER", data=pem)


def pubkey_of_csr_der(der):
    pem = openssl("req", "-inform", "DER", "-noout", "-pubkey", data=der)
    return openssl("pkey", "-pubin", "-outform", "DER", data=pem)


def certs_of_pkcs7_der(der):
    """The certificates of a DER PKCS#7 as a list of DER blobs (openssl CLI)."""
    pem = openssl("pkcs7", "-inform", "DER", "-print_certs", data=der).decode()
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S)
    return [openssl("x509", "-outform", "DER", data=b.encode()) for b in blocks]


def assert_issued_for(tc, pkcs7_der, csr, msg=None):
    """@p pkcs7_der (an EST certs-only answer) holds one certificate, for the
    key of @p csr (DER); that certificate's DER."""
    certs = certs_of_pkcs7_der(pkcs7_der)
    tc.assertEqual(len(certs), 1, msg)
    tc.assertEqual(pubkey_of_cert_der(certs[0]), pubkey_of_csr_der(csr))
    return certs[0]


class CoapResult:
    def __init__(self, rc, out, err):
        self.rc = rc
        self.payload = out
        self.stderr = err.decode(errors="replace")
        m = re.search(r"^(\d\.\d\d)(?: (.*))?$", self.stderr, re.M)
        self.code = m.group(1) if m else None
        self.diag = (m.group(2) or "") if m else ""

    def __repr__(self):
        return f"CoapResult(rc={self.rc}, code={self.code}, diag={self.diag!r}, {len(self.payload)} bytes)"


class Stack:
    """The test CA and estgw, started with a config rendered into a temp dir."""

    def __init__(self, ca=True, ca_args=("--label", "lbl1"), upstream_url=None, extra_server="", extra_upstream="",
                 ra="ra", ca_host="127.0.0.1", trust="tls-ca.crt", timeout=10, connect_timeout=5,
                 extra_policy=""):
        self.pki = ensure_pki()
        self.ca_host = ca_host
        self.dir = tempfile.mkdtemp(prefix="estgw-it-")
        self.ca = None
        self.gw = None
        self.ca_port = None
        if ca:
            self.start_ca(("--host", ca_host, *ca_args))
        self.port = free_udp_port()
        url = upstream_url or f"https://{ca_host}:{self.ca_port}/.well-known/est"
        p = self.pki
        self.conf = os.path.join(self.dir, "estgw.conf")
        with open(self.conf, "w") as f:
            f.write(f"""[server]
listen = 127.0.0.1:{self.port}
certificate = {p}/gw.crt
private_key = {p}/gw.key
client_trust = {p}/client-trust.crt
{extra_server}
[upstream]
url = {url}
trust = {p}/{trust}
certificate = {p}/{ra}.crt
private_key = {p}/{ra}.key
timeout = {timeout}
connect_timeout = {connect_timeout}
{extra_upstream}
[policy]
{extra_policy}
""")
        self.log_path = os.path.join(self.dir, "estgw.log")

    def start_ca(self, ca_args=()):
        port_file = os.path.join(self.dir, "ca.port")
        ctl_file = os.path.join(self.dir, "ca.ctl")
        self.ca_log = open(os.path.join(self.dir, "ca.log"), "wb")
        self.ca = subprocess.Popen(
            ["python3", os.path.join(SRC, "tests", "ca", "est_ca.py"), "--pki", self.pki,
             "--port", "0", "--port-file", port_file, "--control-port-file", ctl_file,
             *ca_args],
            stdout=self.ca_log, stderr=subprocess.STDOUT)
        wait_for(lambda: read_text(port_file) and read_text(ctl_file), what="test CA port files")
        self.ca_port = int(read_text(port_file))
        self.ctl_port = int(read_text(ctl_file))

    def ca_control(self, **fault):
        """POST /control to the test CA (mode=..., retry_after=..., delay=..., op=..., count=...)."""
        req = urllib.request.Request(f"http://{self.ca_host}:{self.ctl_port}/control",
                                     data=json.dumps(fault).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def ca_stats(self):
        with urllib.request.urlopen(f"http://{self.ca_host}:{self.ctl_port}/stats", timeout=10) as r:
            return json.loads(r.read())

    def start(self, wait_ready=True):
        self.gw_log = open(self.log_path, "wb")
        wrap = shlex.split(os.environ.get("ESTGW_WRAP", ""))
        self.gw = subprocess.Popen([*wrap, ESTGW, "-c", self.conf, "-v"], stdout=self.gw_log,
                                   stderr=subprocess.STDOUT)
        if wait_ready:
            wait_for(lambda: "ready" in self.log() or self.gw.poll() is not None,
                     timeout=60, what="estgw ready")
            if self.gw.poll() is not None:
                raise AssertionError(f"estgw exited: {self.log()}")
        return self

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        rc = None
        if self.gw and self.gw.poll() is None:
            self.gw.send_signal(signal.SIGTERM)
            try:
                rc = self.gw.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.gw.kill()
                self.gw.wait()
                rc = "killed"
        elif self.gw:
            rc = self.gw.returncode
        if self.ca and self.ca.poll() is None:
            self.ca.terminate()
            self.ca.wait(timeout=10)
        return rc

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def uri(self, path):
        return f"coaps://127.0.0.1:{self.port}{path}"

    def coap(self, path, method="get", cert="device", accept=None, cf=None, payload=None,
             block=None, timeout=20, extra=(), client=None):
        """Run coap-client-openssl as the device; returns CoapResult."""
        out = os.path.join(self.dir, f"out-{time.time_ns()}")
        args = [client or COAP_CLIENT, "-m", method, "-B", str(timeout), "-o", out, "-C",
                os.path.join(self.pki, "gw-ca.crt")]
        if cert:
            c = cert if os.path.isabs(cert) else os.path.join(self.pki, cert + ".crt")
            k = c[:-4] + ".key"
            args += ["-c", c, "-j", k]
        if accept is not None:
            args += ["-A", str(accept)]
        if cf is not None:
            args += ["-t", str(cf)]
        if block is not None:
            args += ["-b", str(block)]
        if payload is not None:
            pf = out + ".in"
            with open(pf, "wb") as f:
                f.write(payload)
            args += ["-f", pf]
        args += list(extra)
        args.append(self.uri(path))
        r = subprocess.run(args, capture_output=True, timeout=timeout + 15, check=False)
        data = b""
        if os.path.exists(out):
            with open(out, "rb") as f:
                data = f.read()
        res = CoapResult(r.returncode, data, r.stderr + r.stdout)
        if res.code is None and data:
            res.code = "2.xx"
        return res


def show_logs_if_failed(test, logs, lines=60):
    """When @test has failed so far, print the end of each (name, text) in
    @logs to stderr: CI keeps only the test's output, and the gateway's
    request lines say what the device got and why."""
    res = getattr(getattr(test, "_outcome", None), "result", None)
    if res is None or not any(t is test for t, _ in res.failures + res.errors):
        return
    for name, text in logs:
        tail = text.splitlines()[-lines:]
        print(f"---- last {len(tail)} lines of {name} ----", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)


class StackTest(unittest.TestCase):
    """Base class: one stack per test, torn down with a leak/crash check."""

    stack_class = Stack
    stack_kwargs = {}

    def setUp(self):
        self.s = self.stack_class(**self.stack_kwargs)
        self.s.start()

    def tearDown(self):
        rc = self.s.stop()
        log = self.s.log()
        show_logs_if_failed(self, [("estgw.log", log)])
        try:
            self.assertEqual(rc, 0, f"estgw did not exit cleanly (rc={rc}):\n{log[-4000:]}")
            self.assertNotIn("ERROR: AddressSanitizer", log)
            self.assertNotIn("runtime error:", log)
            self.assertNotIn("LeakSanitizer", log)
        finally:
            if os.environ.get("ESTGW_KEEP"):
                print("kept", self.s.dir)
            else:
                self.s.cleanup()


def main(module_name):
    """Entry point of a test file: `--list` prints Class.test_name per line
    (meson registers one test each), anything else runs unittest."""
    import sys
    if sys.argv[1:] == ["--list"]:
        suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[module_name])
        for group in suite:
            for t in group:
                print(t.id().split(".", 1)[1])
    else:
        unittest.main(module=module_name, argv=sys.argv[:1] + sys.argv[1:], verbosity=2)
