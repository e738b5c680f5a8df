#!/usr/bin/env python3
"""test_brski.py - constrained BRSKI end to end (H1-H5 in docs/conformance.md):
coap-client-openssl as the pledge (no -C/-R: the provisional DTLS accept), estgw as the
Registrar, tests/masa/masa.py as the MASA.

PKI: tests/pki/mkbrski.sh (registrar, pledges, manufacturers, MASA TLS); the EST side uses
mkpki.sh's files. PVRs are built here with tests/masa/cbor_cose.py (Python + openssl CLI).
"""
import base64
import fcntl
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (COAP_CLIENT, SRC, CoapResult, Stack, StackTest, free_tcp_port,  # noqa: E402
                     read_text, wait_for)

sys.path.insert(0, os.path.join(SRC, "tests", "masa"))
import cbor_cose as cc  # noqa: E402

CF_VOUCHER = 836


def ensure_brski_pki():
    base = harness.ensure_pki()
    d = os.path.join(base, "brski")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(d, ".done")):
            subprocess.run(["bash", os.path.join(SRC, "tests", "pki", "mkbrski.sh"), d],
                           check=True, stdout=subprocess.DEVNULL)
            open(os.path.join(d, ".done"), "w").close()
    return base, d


def pem_to_der(path):
    return subprocess.run(["openssl", "x509", "-outform", "DER", "-in", path],
                          capture_output=True, check=True).stdout


def der_to_pem(der):
    return subprocess.run(["openssl", "x509", "-inform", "DER"], input=der,
                          capture_output=True, check=True).stdout


def spki_of(path):
    pem = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-pubkey"],
                         capture_output=True, check=True).stdout
    return subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem,
                          capture_output=True, check=True).stdout


def make_pvr(key, serial, nonce, prox=None, prox_form="pubk", registrar=None, sign_key=None):
    """A pledge voucher request {2501: {1: 2, 7: nonce, 12|10|11: ..., 13: serial}}."""
    leaves = {1: 2}
    if nonce is not None:
        leaves[7] = nonce
    if registrar:
        if prox_form == "pubk":
            leaves[12] = spki_of(registrar)
        elif prox_form == "cert":
            leaves[10] = pem_to_der(registrar)
        else:
            import hashlib
            leaves[11] = hashlib.sha256(spki_of(registrar)).digest()
    if serial is not None:
        leaves[13] = serial
    return cc.sign1(sign_key or key, cc.dumps({2501: leaves}))


class BrskiStack(Stack):
    """estgw with [brski] on the registrar certificate, plus the test MASA."""

    def __init__(self, masa=True, masa_cert="masa-tls", brski_extra="", masa_url=True,
                 registrar="registrar", ca=False, serials="TEST0001,TEST0100", masa_timeout=10,
                 masa_trust="masa-tls-ca", server_extra=""):
        self.base, self.bp = ensure_brski_pki()
        super().__init__(ca=ca, upstream_url=None if ca else "https://127.0.0.1:9/.well-known/est")
        self.masa = None
        self.masa_port = 1
        if masa:
            self.start_masa(masa_cert, serials)
        p, b = self.base, self.bp
        url = f"masa_url = https://localhost:{self.masa_port}\n" if masa_url else ""
        if callable(brski_extra):
            brski_extra = brski_extra(self)
        up = f"https://127.0.0.1:{self.ca_port}/.well-known/est" if ca else \
            "https://127.0.0.1:9/.well-known/est"
        with open(self.conf, "w") as f:
            f.write(f"""[server]
listen = 127.0.0.1:{self.port}
certificate = {b}/{registrar}-chain.crt
private_key = {b}/{registrar}.key
client_trust = {p}/client-trust.crt
{server_extra}
[upstream]
url = {up}
trust = {p}/tls-ca.crt
certificate = {p}/ra.crt
private_key = {p}/ra.key
timeout = 10
connect_timeout = 5
[brski]
enabled = yes
manufacturer_trust = {b}/bmfg-ca.crt
masa_trust = {b}/{masa_trust}.crt
masa_timeout = {masa_timeout}
{url}{brski_extra}
""")

    def start_masa(self, cert, serials):
        b = self.bp
        pf, cf = os.path.join(self.dir, "masa.port"), os.path.join(self.dir, "masa.ctl")
        self.masa_log = open(os.path.join(self.dir, "masa.log"), "wb")
        self.masa = subprocess.Popen(
            ["python3", os.path.join(SRC, "tests", "masa", "masa.py"),
             "--cert", f"{b}/{cert}.crt", "--key", f"{b}/{cert}.key",
             "--client-ca", f"{b}/domain-ca.crt", "--mfg-ca", f"{b}/bmfg-ca.crt",
             "--sign-cert", f"{b}/bmfg-ca.crt", "--sign-key", f"{b}/bmfg-ca.key",
             "--serials", serials, "--port-file", pf, "--control-port-file", cf],
            stdout=self.masa_log, stderr=subprocess.STDOUT)
        wait_for(lambda: read_text(pf) and read_text(cf), what="MASA port files")
        self.masa_port, self.masa_ctl = int(read_text(pf)), int(read_text(cf))

    def masa_requests(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.masa_ctl}/log", timeout=10) as r:
            return json.loads(r.read())

    def masa_fault(self, **fault):
        req = urllib.request.Request(f"http://127.0.0.1:{self.masa_ctl}/control",
                                     data=json.dumps(fault).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        rc = super().stop()
        if self.masa and self.masa.poll() is None:
            self.masa.terminate()
            self.masa.wait(timeout=10)
        if self.masa:
            self.masa_log.close()
        return rc

    def pledge(self, path, cert, payload=None, cf=CF_VOUCHER, accept=CF_VOUCHER, block=64,
               timeout=20, method="post", extra=()):
        """coap-client-openssl as a pledge: client cert, NO trust anchor (provisional)."""
        out = os.path.join(self.dir, f"out-{time.time_ns()}")
        c = cert if os.path.isabs(cert) else os.path.join(self.bp, cert + ".crt")
        args = [COAP_CLIENT, "-m", method, "-B", str(timeout), "-o", out, "-c", c,
                "-j", c[:-4] + ".key"]
        if cf is not None:
            args += ["-t", str(cf)]
        if accept is not None:
            args += ["-A", str(accept)]
        if block:
            args += ["-b", str(block)]
        if payload is not None:
            with open(out + ".in", "wb") as f:
                f.write(payload)
            args += ["-f", out + ".in"]
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

    def issue_idevid(self, name, serial, masa_url=None):
        """A pledge IDevID from bmfg-ca, optionally with id-pe-masa-url."""
        b, d = self.bp, self.dir
        ext = os.path.join(d, f"{name}.cnf")
        with open(os.path.join(b, "brski-ext.cnf")) as f, open(ext, "w") as o:
            o.write(f.read())
            o.write("[idevid_url]\nbasicConstraints = CA:FALSE\nauthorityKeyIdentifier = keyid:always\n")
            if masa_url:
                o.write(f"1.3.6.1.5.5.7.1.32 = ASN1:IA5STRING:{masa_url}\n")
        key, csr, crt = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "crt"))
        for args in (["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-out", key],
                     ["req", "-new", "-key", key, "-subj", f"/CN={name}/serialNumber={serial}",
                      "-out", csr],
                     ["x509", "-req", "-sha256", "-in", csr, "-CA", f"{b}/bmfg-ca.crt",
                      "-CAkey", f"{b}/bmfg-ca.key", "-set_serial", str(time.time_ns()),
                      "-days", "30", "-extfile", ext, "-extensions", "idevid_url", "-out", crt]):
            subprocess.run(["openssl", *args], check=True, capture_output=True)
        return crt


class BrskiTest(StackTest):
    stack_class = BrskiStack  # the clean-exit checks are StackTest's

    def setUp(self):
        super().setUp()
        self.b = self.s.bp
        self.reg = os.path.join(self.b, "registrar.crt")

    def pvr(self, pledge="pledge", serial="TEST0001", nonce=None, **kw):
        nonce = nonce if nonce is not None else os.urandom(16)
        kw.setdefault("registrar", self.reg)
        return make_pvr(os.path.join(self.b, pledge + ".key"), serial, nonce, **kw), nonce

    def assert_2xx(self, r, path="/.well-known/brski/rv"):
        """coap-client prints only error codes: success = exit 0, no code line; the
        exact code comes from estgw's request log."""
        self.assertEqual(r.rc, 0, r)
        self.assertIn(r.code, (None, "2.xx"), r)
        self.assertRegex(self.s.log(), "POST " + path + r" upstream=\S+ code=2\.04")

    def enroll_ldevid(self):
        """The pledge enrolls its LDevID on its IDevID session (a new P-256 key,
        /sen); the certificate's PEM file."""
        d = self.s.dir
        key = os.path.join(d, "ldevid.key")
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", key], check=True, capture_output=True)
        csr = subprocess.run(["openssl", "req", "-new", "-key", key, "-subj",
                              "/CN=pledge-001/serialNumber=TEST0001", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        r = self.s.pledge("/.well-known/est/sen", "pledge", csr, cf=286, accept=287)
        self.assert_2xx(r, "/.well-known/est/sen")
        ldev = os.path.join(d, "ldevid.crt")
        with open(ldev, "wb") as f:
            f.write(der_to_pem(r.payload))
        return ldev

    def check_voucher(self, r, nonce, serial="TEST0001"):
        self.assert_2xx(r)
        prot, pmap, unprot, payload, sig, _ = cc.parse_sign1(r.payload)
        self.assertEqual(unprot, {}, "unprotected header must be stripped")
        self.assertEqual(pmap, {1: -7})
        masa_key = pem_to_der(os.path.join(self.b, "bmfg-ca.crt"))
        self.assertTrue(cc.verify_es256(masa_key, cc.sig_structure(prot, payload), sig),
                        "voucher does not verify with the MASA key")
        v = cc.yang_decode(payload, 2451, cc.V_SIDS)
        self.assertEqual(v["nonce"], nonce)
        self.assertEqual(v["serial-number"], serial)
        self.assertEqual(v["assertion"], 2)
        return v

    def assert_no_masa_request(self):
        self.assertEqual(self.s.masa_requests(), [])


class TestBrskiVoucher(BrskiTest):
    def test_H2_rv_voucher_end_to_end_then_vs_es(self):
        pvr, nonce = self.pvr()
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        v = self.check_voucher(r, nonce)
        # the pledge leaves the provisional state: our certificate chains to the pinned one
        pinned = os.path.join(self.s.dir, "pinned.pem")
        with open(pinned, "wb") as f:
            f.write(der_to_pem(v["pinned-domain-cert"]))
        subprocess.run(["openssl", "verify", "-CAfile", pinned, self.reg], check=True,
                       capture_output=True)
        reqs = self.s.masa_requests()
        self.assertEqual(len(reqs), 1)
        q = reqs[0]
        self.assertEqual(q["status"], 200, q.get("error"))
        self.assertEqual(q["path"], "/.well-known/brski/requestvoucher")
        self.assertEqual(q["headers"]["Content-Type"], "application/voucher+cose")
        self.assertEqual(q["headers"]["Accept"], "application/voucher+cose")
        self.assertEqual(q["sni"], "localhost")
        self.assertEqual(base64.b64decode(q["client_cert_b64"]), pem_to_der(self.reg))
        self.assertTrue(q["rvr_signature_ok"])
        self.assertTrue(q["proximity_ok"])
        self.assertEqual(q["x5bag_count"], 4)  # registrar, domain CA, IDevID, manufacturer CA
        self.assertEqual(base64.b64decode(q["signer_der_b64"]), pem_to_der(self.reg))
        rvr = q["rvr"]
        self.assertEqual(bytes.fromhex(rvr["prior-signed-voucher-request"]), pvr)
        self.assertEqual(rvr["serial-number"], "TEST0001")
        self.assertTrue(rvr["idevid-issuer"].startswith("04183016801"))
        self.assertNotIn("proximity-registrar-cert", rvr)
        self.assertRegex(rvr["created-on"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        # then the status telemetry
        ok = cc.dumps({"version": 1, "status": True})
        self.assert_2xx(self.s.pledge("/.well-known/brski/vs", "pledge", ok, cf=60,
                                      accept=None), "/.well-known/brski/vs")
        bad = cc.dumps({"version": 1, "status": False, "reason": "no EST server"})
        self.assert_2xx(self.s.pledge("/.well-known/brski/es", "pledge", bad, cf=60,
                                      accept=None), "/.well-known/brski/es")
        log = self.s.log()
        self.assertRegex(log, r'vs serial="TEST0001" session=\S.* status=success reason=""')
        self.assertRegex(log, r'es serial="TEST0001" session=.* status=failure '
                              r'reason="no EST server" client_cert=not-the-enrolled-cert')
        self.assertRegex(log, r'POST /.well-known/brski/rv upstream=200 code=2.04')
        self.assertEqual(len(self.s.masa_requests()), 1)  # vs/es never go upstream (H3)
        self.s.stop()
        self.assertRegex(self.s.log(), r"brski: totals: rv=1 vouchers=1 rejected=0 .*"
                                       r"vs=1/0 es=0/1")

    def test_H2_rv_proximity_cert_and_sha256_forms(self):
        for form in ("cert", "sha256"):
            pvr, nonce = self.pvr(prox_form=form)
            self.check_voucher(self.s.pledge("/.well-known/brski/rv", "pledge", pvr), nonce)

    def test_H2_rv_resend_after_voucher_is_answered_from_the_kept_voucher(self):
        pvr, nonce = self.pvr()
        first = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.check_voucher(first, nonce)
        again = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(again.payload, first.payload)
        self.assertEqual(len(self.s.masa_requests()), 1)

    def test_H2_rv_inflight_same_pvr_one_masa_request(self):
        self.s.masa_fault(mode="delay", delay=3)
        pvr, nonce = self.pvr()
        results = [None, None]

        def run(i):
            results[i] = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        ts[0].start()
        # the second is sent while the first is at the MASA (held there 3 s)
        wait_for(lambda: len(self.s.masa_requests()) == 1, what="the first at the MASA")
        ts[1].start()
        for t in ts:
            t.join()
        for r in results:
            self.check_voucher(r, nonce)
        self.assertEqual(len(self.s.masa_requests()), 1)

    def test_H2_shutdown_with_a_masa_exchange_in_flight(self):
        self.s.masa_fault(mode="delay", delay=6)
        pvr, _ = self.pvr()
        t = threading.Thread(target=self.s.pledge, args=("/.well-known/brski/rv", "pledge", pvr),
                             kwargs={"timeout": 8})
        t.start()
        wait_for(lambda: self.s.masa_requests(), what="the MASA request")
        rc = self.s.stop()  # tearDown checks the exit and the sanitizer reports
        t.join()
        self.assertEqual(rc, 0)

    def test_H2_rv_from_a_non_manufacturer_certificate_4_03(self):
        # the EST device certificate passes the handshake ([server] client_trust), but the
        # DTLS verifier finds no manufacturer bundle above it: no IDevID, nothing sent
        pvr, _ = self.pvr()
        r = self.s.pledge("/.well-known/brski/rv", os.path.join(self.s.base, "device.crt"), pvr)
        self.assertEqual(r.code, "4.03", r)
        self.assertIn("not an IDevID of a configured manufacturer", r.diag)
        self.assert_no_masa_request()

    def test_H5_rv_bad_signature_4_03_no_masa_request(self):
        pvr, _ = self.pvr(sign_key=os.path.join(self.b, "pledge-b.key"))
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(r.code, "4.03", r)
        self.assertIn("signature", r.diag)
        self.assert_no_masa_request()

    def test_H5_rv_proximity_mismatch_4_01(self):
        pvr, _ = self.pvr(registrar=os.path.join(self.b, "registrar-other.crt"))
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(r.code, "4.01", r)
        self.assert_no_masa_request()

    def test_H5_rv_serial_mismatch_4_00(self):
        pvr, _ = self.pvr(serial="TEST9999")
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(r.code, "4.00", r)
        self.assertIn("serial", r.diag)
        self.assert_no_masa_request()

    def test_H5_rv_no_nonce_4_00(self):
        pvr, _ = self.pvr(nonce=b"")
        pvr = make_pvr(os.path.join(self.b, "pledge.key"), "TEST0001", None, registrar=self.reg)
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(r.code, "4.00", r)
        self.assertIn("nonce", r.diag)

    def test_H5_rv_garbage_body_4_00(self):
        r = self.s.pledge("/.well-known/brski/rv", "pledge", b"\xd2\x84\x43\xa1")
        self.assertEqual(r.code, "4.00", r)
        self.assertIn("COSE", r.diag)

    def test_H5_rv_wrong_content_format_4_15(self):
        pvr, _ = self.pvr()
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr, cf=60)
        self.assertEqual(r.code, "4.15", r)

    def test_H5_rv_wrong_accept_4_06(self):
        pvr, _ = self.pvr()
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr, accept=50)
        self.assertEqual(r.code, "4.06", r)

    def test_H1_rv_get_4_05(self):
        r = self.s.pledge("/.well-known/brski/rv", "pledge", None, cf=None, accept=None,
                          block=None, method="get")
        self.assertEqual(r.code, "4.05", r)

    def test_H5_masa_unknown_device_404_passed_through(self):
        pvr, _ = self.pvr(pledge="pledge-b", serial="TEST0002")
        r = self.s.pledge("/.well-known/brski/rv", "pledge-b", pvr)
        self.assertEqual(r.code, "4.04", r)
        self.assertIn("unknown device TEST0002", r.diag)

    def test_H5_masa_403_passed_through(self):
        self.s.masa_fault(mode="status", status=403)
        pvr, _ = self.pvr()
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(r.code, "4.03", r)
        self.assertIn("forced error", r.diag)

    def test_H5_masa_500_5_02(self):
        self.s.masa_fault(mode="status", status=500)
        pvr, _ = self.pvr()
        self.assertEqual(self.s.pledge("/.well-known/brski/rv", "pledge", pvr).code, "5.02")

    def test_H5_masa_429_4_29_max_age(self):
        """A MASA's 429 is 4.29 with its Retry-After as Max-Age (RFC 8516), as for the CA."""
        self.s.masa_fault(mode="status", status=429, retry_after=33)
        pvr, _ = self.pvr()
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr, extra=("-v", "7"))
        self.assertEqual(r.code, "4.29", r)
        self.assertRegex(r.stderr, r"c:4\.29 .*Max-Age:33\b")

    def test_H5_masa_garbage_5_02(self):
        self.s.masa_fault(mode="garbage")
        pvr, _ = self.pvr()
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(r.code, "5.02", r)

    def test_H5_masa_202_5_03_and_resend_makes_no_second_request(self):
        self.s.masa_fault(mode="accepted", retry_after=30)
        pvr, _ = self.pvr()
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr, extra=("-v", "7"))
        self.assertEqual(r.code, "5.03", r)
        self.assertRegex(r.stderr, r"c:5\.03 .*Max-Age:30\b")
        again = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(again.code, "5.03", again)
        self.assertEqual(len(self.s.masa_requests()), 1)
        self.assertRegex(self.s.log(), r"202 kept")

    def test_H3_vs_es_malformed_4_00_and_cf_4_15(self):
        r = self.s.pledge("/.well-known/brski/vs", "pledge", cc.dumps({"version": 1}), cf=60,
                          accept=None)
        self.assertEqual(r.code, "4.00", r)
        r = self.s.pledge("/.well-known/brski/es", "pledge",
                          cc.dumps({"version": 1, "status": False}), cf=60, accept=None)
        self.assertEqual(r.code, "4.00", r)
        r = self.s.pledge("/.well-known/brski/es", "pledge", b"{}", cf=0, accept=None)
        self.assertEqual(r.code, "4.15", r)
        r = self.s.pledge("/.well-known/brski/es", "pledge", b'{"version": 1}', cf=50,
                          accept=None)
        self.assertEqual(r.code, "4.00", r)

    def test_H3_vs_json_content_format_50(self):
        body = b'{"version": 1, "status": false, "reason": "voucher not valid"}'
        r = self.s.pledge("/.well-known/brski/vs", "pledge", body, cf=50, accept=None)
        self.assert_2xx(r, "/.well-known/brski/vs")
        self.assertRegex(self.s.log(), r'vs serial="TEST0001" .*status=failure '
                                       r'reason="voucher not valid"')

    def test_H1_discovery_lists_brski(self):
        r = self.s.pledge("/.well-known/core", "pledge", None, cf=None, accept=None,
                          block=None, method="get")
        text = r.payload.decode()
        self.assertIn('</.well-known/brski/rv>;rt="brski.rv";ct=836', text)
        self.assertIn('</.well-known/brski>;rt="brski"', text)
        self.assertIn('</.well-known/brski/vs>;rt="brski.vs";ct="50 60"', text)
        self.assertIn("brski.es", text)
        r = self.s.pledge("/.well-known/core?rt=brski*", "pledge", None, cf=None, accept=None,
                          block=None, method="get")
        self.assertNotIn("ace.est", r.payload.decode())

    def test_H2_unknown_manufacturer_fails_the_handshake(self):
        pvr = make_pvr(os.path.join(self.b, "brogue.key"), "TEST0001", os.urandom(16),
                       registrar=self.reg)
        r = self.s.pledge("/.well-known/brski/rv", "brogue", pvr, timeout=5)
        self.assertIsNone(r.code, r)
        self.assertNotIn("/.well-known/brski/rv", self.s.log())
        self.assert_no_masa_request()


class TestBrskiMasaUrl(BrskiTest):
    stack_kwargs = {"masa_url": False}

    def test_H2_masa_url_from_the_idevid(self):
        crt = self.s.issue_idevid("pledge-url", "TEST0001", f"localhost:{self.s.masa_port}")
        nonce = os.urandom(16)
        pvr = make_pvr(crt[:-4] + ".key", "TEST0001", nonce, registrar=self.reg)
        self.check_voucher(self.s.pledge("/.well-known/brski/rv", crt, pvr), nonce)

    def test_H5_no_masa_url_4_04(self):
        pvr, _ = self.pvr()
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(r.code, "4.04", r)
        self.assertIn("MASA URL", r.diag)
        self.assert_no_masa_request()


class TestBrskiMasaDown(BrskiTest):
    stack_kwargs = {"masa": False, "masa_url": False,
                    "brski_extra": "masa_url = https://localhost:9\n"}

    def test_H5_masa_unreachable_5_02(self):
        pvr, _ = self.pvr()
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(r.code, "5.02", r)
        self.assertIn("MASA unreachable", r.diag)


class TestBrskiMasaTimeout(BrskiTest):
    stack_kwargs = {"masa_timeout": 2}

    def test_H5_masa_timeout_5_04(self):
        self.s.masa_fault(mode="delay", delay=8)
        pvr, _ = self.pvr()
        t0 = time.monotonic()
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(r.code, "5.04", r)
        self.assertLess(time.monotonic() - t0, 7)


class TestBrskiFull(BrskiTest):
    """D1, H2: [brski] max_pending MASA exchanges at once and no queue: a pledge
    that comes while they are all out gets 5.03 + Max-Age (retry_default) at
    once, and the MASA never hears of it."""
    stack_kwargs = {"brski_extra": "max_pending = 1\n"}

    def test_D1_full_registrar_5_03_max_age_then_served(self):
        self.s.masa_fault(mode="delay", delay=3)
        pvr, nonce = self.pvr()
        out = {}
        t = threading.Thread(target=lambda: out.update(r=self.s.pledge(
            "/.well-known/brski/rv", "pledge", pvr)))
        t.start()
        wait_for(lambda: len(self.s.masa_requests()) == 1, what="the first rv at the MASA")
        other, _ = self.pvr(pledge="pledge-b", serial="TEST0002")
        t0 = time.monotonic()
        r = self.s.pledge("/.well-known/brski/rv", "pledge-b", other, extra=("-v", "7"))
        self.assertEqual(r.code, "5.03", r)
        self.assertLess(time.monotonic() - t0, 2.5, "answered at once, not after the MASA")
        self.assertIn("registrar busy", r.diag)
        self.assertEqual(re.findall(r"c:5\.03 .*Max-Age:(\d+)", r.stderr), ["60"], r.stderr[-1500:])
        t.join()
        self.check_voucher(out["r"], nonce)
        self.assertEqual(len(self.s.masa_requests()), 1)
        # the slot is free again: pledge-b is sent to the MASA now (which does not
        # know TEST0002)
        self.s.masa_fault(mode="normal")
        self.assertEqual(self.s.pledge("/.well-known/brski/rv", "pledge-b", other).code, "4.04")
        self.assertEqual(len(self.s.masa_requests()), 2)


class TestBrskiMasaDnsId(BrskiTest):
    stack_kwargs = {"masa_cert": "masa-tls-wrong"}

    def test_H5_masa_certificate_name_mismatch_5_02(self):
        pvr, _ = self.pvr()
        r = self.s.pledge("/.well-known/brski/rv", "pledge", pvr)
        self.assertEqual(r.code, "5.02", r)
        self.assert_no_masa_request()


class TestBrskiManufacturerLine(BrskiTest):
    """A second manufacturer known only through a [brski] manufacturer line (its own MASA URL,
    the legacy media type)."""

    stack_kwargs = {"masa_url": False, "brski_extra": lambda s: (
        f"manufacturer = ca={s.bp}/bmfg2-ca.crt url=https://localhost:{s.masa_port} legacy\n")}

    def test_H2_manufacturer_line_url_and_legacy_type(self):
        # the MASA only knows bmfg-ca: this pledge gets 403 from it, with our request logged
        nonce = os.urandom(16)
        pvr = make_pvr(os.path.join(self.b, "pledge2.key"), "TEST0100", nonce,
                       registrar=self.reg)
        r = self.s.pledge("/.well-known/brski/rv", "pledge2", pvr)
        self.assertEqual(r.code, "4.03", r)
        q = self.s.masa_requests()[-1]
        self.assertEqual(q["headers"]["Content-Type"], "application/voucher-cose+cbor")
        self.assertIn("no IDevID from a known manufacturer", q["error"])


class TestBrskiManufacturerTls(BrskiTest):
    """A manufacturer line's own MASA trust and TLS client certificate win over [brski]'s
    (masa_trust is set to a CA that did not sign the MASA's certificate)."""

    @staticmethod
    def line(s):
        b = "p"  # a link next to the config file: relative names keep the line <= 198 chars
        os.symlink(s.bp, os.path.join(s.dir, b))
        return (f"manufacturer = ca={b}/bmfg-ca.crt url=https://localhost:{s.masa_port} "
                f"trust={b}/masa-tls-ca.crt cert={b}/registrar-other.crt "
                f"key={b}/registrar-other.key\n")

    stack_kwargs = {"masa_url": False, "masa_trust": "domain-ca",
                    "brski_extra": lambda s: TestBrskiManufacturerTls.line(s)}

    def test_H2_manufacturer_line_trust_and_client_certificate(self):
        pvr, nonce = self.pvr()
        self.check_voucher(self.s.pledge("/.well-known/brski/rv", "pledge", pvr), nonce)
        q = self.s.masa_requests()[-1]
        self.assertEqual(base64.b64decode(q["client_cert_b64"]),
                         pem_to_der(os.path.join(self.b, "registrar-other.crt")))


def metric(text, sample):
    """The value of the sample line that starts with @sample (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class TestBrskiMetrics(BrskiTest):
    """The cBRSKI counters on /metrics (J): pledge requests by resource and result, the
    MASA's answers, the MASA exchange next to the EST ones."""

    def setUp(self):
        self.mport = free_tcp_port()
        self.stack_kwargs = {"brski_extra": f"\n[metrics]\nlisten = 127.0.0.1:{self.mport}\n"}
        super().setUp()

    def metrics(self):
        url = f"http://127.0.0.1:{self.mport}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()

    def test_J_brski_counters_on_metrics(self):
        pvr, nonce = self.pvr()
        self.check_voucher(self.s.pledge("/.well-known/brski/rv", "pledge", pvr), nonce)
        self.check_voucher(self.s.pledge("/.well-known/brski/rv", "pledge", pvr), nonce)
        self.assertEqual(self.s.pledge("/.well-known/brski/rv", "pledge", b"\x01\x02").code,
                         "4.00")
        ok = cc.dumps({"version": 1, "status": True})
        self.assert_2xx(self.s.pledge("/.well-known/brski/vs", "pledge", ok, cf=60,
                                      accept=None), "/.well-known/brski/vs")
        self.assertEqual(self.s.pledge("/.well-known/brski/es", "pledge", b"\xff", cf=60,
                                       accept=None).code, "4.00")
        text = self.metrics()
        for sample, value in (
                ('estgw_brski_requests_total{resource="rv",result="sent"}', 1),
                ('estgw_brski_requests_total{resource="rv",result="kept"}', 1),
                ('estgw_brski_requests_total{resource="rv",result="refused"}', 1),
                ('estgw_brski_requests_total{resource="vs",result="success"}', 1),
                ('estgw_brski_requests_total{resource="es",result="refused"}', 1),
                ('estgw_brski_masa_answers_total{result="voucher"}', 1),
                ('estgw_upstream_exchanges_total{op="requestvoucher",status="200"}', 1),
                ('estgw_upstream_duration_seconds_count{op="requestvoucher"}', 1),
                ('estgw_requests_total{path="rv",code="2.04"}', 2),
                ('estgw_requests_total{path="vs",code="2.04"}', 1)):
            self.assertEqual(metric(text, sample), value, sample + "\n" + text)
        self.assertEqual(len(self.s.masa_requests()), 1)


class TestBrskiEnrolledEs(BrskiTest):
    stack_kwargs = {"ca": True}

    def test_H3_es_on_the_enrolled_ldevid_session(self):
        ldev = self.enroll_ldevid()
        ok = cc.dumps({"version": 1, "status": True})
        r = self.s.pledge("/.well-known/brski/es", ldev, ok, cf=60, accept=None)
        self.assert_2xx(r, "/.well-known/brski/es")
        self.assertRegex(self.s.log(), r'es serial="TEST0001" .*status=success .*'
                                       r'client_cert=enrolled-ldevid')


class TestBrskiRateLimit(BrskiTest):
    """G9: rv, vs and es pass the same rate limit as EST, in the same bucket per client
    certificate subject. One request per minute: within a test nothing refills."""
    stack_kwargs = {"ca": True, "server_extra": "rate_limit = 1"}

    def assert_4_29(self, r, path):
        self.assertEqual(r.code, "4.29", r)
        m = re.search(r"c:4\.29 .*Max-Age:(\d+)\b", r.stderr)
        self.assertTrue(m, r.stderr)
        self.assertTrue(1 <= int(m.group(1)) <= 60, m.group(0))
        self.assertRegex(self.s.log(), "POST " + path + r" upstream=- code=4\.29 .*\(rate limit\)")

    def test_G9_rv_vs_es_4_29_max_age_over_rate_limit(self):
        ok = cc.dumps({"version": 1, "status": True})
        self.assert_2xx(self.s.pledge("/.well-known/brski/vs", "pledge", ok, cf=60, accept=None),
                        "/.well-known/brski/vs")
        pvr, _ = self.pvr()
        self.assert_4_29(self.s.pledge("/.well-known/brski/rv", "pledge", pvr, extra=("-v", "7")),
                         "/.well-known/brski/rv")
        for path in ("/.well-known/brski/vs", "/.well-known/brski/es"):
            self.assert_4_29(self.s.pledge(path, "pledge", ok, cf=60, accept=None,
                                           extra=("-v", "7")), path)
        self.assert_no_masa_request()

    def test_G9_est_and_cbrski_share_one_bucket(self):
        # pledge-b: an rv in 64-byte blocks takes one token (the MASA does not know
        # TEST0002: 4.04 from it), then its EST request finds the bucket empty
        pvr, _ = self.pvr(pledge="pledge-b", serial="TEST0002")
        self.assertGreater(len(pvr), 3 * 64)
        r = self.s.pledge("/.well-known/brski/rv", "pledge-b", pvr)
        self.assertEqual(r.code, "4.04", r)
        self.assertEqual(len(self.s.masa_requests()), 1)
        crts = dict(cf=None, accept=None, block=None, method="get", extra=("-v", "7"))
        r = self.s.pledge("/.well-known/est/crts", "pledge-b", None, **crts)
        self.assertEqual(r.code, "4.29", r)
        self.assertRegex(r.stderr, r"c:4\.29 .*Max-Age:\d+")
        # pledge (another subject, another bucket): its EST request spends its token,
        # and its es after it is refused
        r = self.s.pledge("/.well-known/est/crts", "pledge", None, **crts)
        self.assertEqual(r.code, "2.xx", r)
        ok = cc.dumps({"version": 1, "status": True})
        self.assert_4_29(self.s.pledge("/.well-known/brski/es", "pledge", ok, cf=60, accept=None,
                                       extra=("-v", "7")), "/.well-known/brski/es")
        self.assertRegex(self.s.log(), r"GET /.well-known/est/crts upstream=\S+ code=2\.05")


class TestBrskiStartup(unittest.TestCase):
    """H4: estgw --check refuses a registrar certificate without the EKUs it needs."""

    def check(self, registrar, extra=""):
        s = BrskiStack(masa=False, masa_url=False, registrar=registrar, brski_extra=extra)
        try:
            r = subprocess.run([harness.ESTGW, "-c", s.conf, "--check"], capture_output=True,
                               check=False)
            return r.returncode, (r.stdout + r.stderr).decode()
        finally:
            s.cleanup()

    def test_H4_registrar_with_all_ekus_passes_check(self):
        rc, out = self.check("registrar")
        self.assertEqual(rc, 0, out)

    def test_H4_registrar_without_client_auth_refused(self):
        rc, out = self.check("registrar-noclient")
        self.assertEqual(rc, 1, out)
        self.assertIn("clientAuth", out)
        self.assertRegex(out, r"estgw\.conf:\d+: \[brski\] enabled:")

    def test_H4_registrar_without_cmcra_refused(self):
        rc, out = self.check("registrar-nocmc")
        self.assertEqual(rc, 1, out)
        self.assertIn("id-kp-cmcRA", out)

    def test_H4_separate_masa_client_cert_needs_no_client_auth(self):
        bp = ensure_brski_pki()[1]
        rc, out = self.check("registrar-noclient",
                             f"masa_certificate = {bp}/registrar.crt\n"
                             f"masa_private_key = {bp}/registrar.key\n")
        self.assertEqual(rc, 0, out)

    def test_H4_missing_manufacturer_trust_refused(self):
        s = BrskiStack(masa=False)
        try:
            text = open(s.conf).read().replace("manufacturer_trust", "#manufacturer_trust")
            with open(s.conf, "w") as f:
                f.write(text)
            r = subprocess.run([harness.ESTGW, "-c", s.conf, "--check"], capture_output=True,
                               check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("[brski] manufacturer_trust: required", r.stderr.decode())
        finally:
            s.cleanup()

    def test_H4_bad_masa_url_refused(self):
        rc, out = self.check("registrar", "masa_url = ftp://masa.example\n")
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"\[brski\] masa_url: 'ftp://masa.example' is not a MASA URL")

    def test_H4_bad_manufacturer_line_refused(self):
        rc, out = self.check("registrar", "manufacturer = url=https://x\n")
        self.assertEqual(rc, 1, out)
        self.assertIn("ca=FILE is required", out)


if __name__ == "__main__":
    harness.main(__name__)
