#!/usr/bin/env python3
"""estgw security policy end to end (docs/conformance.md G1-G6, RFC 9148 3, 5, 9; RFC 7030 3.5).

Devices: Debian's coap-client-openssl, openssl s_client, and tests/tools/pop_client
(libcoap + OpenSSL) which puts the DTLS tls-unique -- right, wrong or none -- into
its CSR's challengePassword. Run one test: test_security.py TestPop.test_G4_pop_right_enrolls
"""
import errno
import os
import re
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import ESTGW, Stack, StackTest, certs_of_pkcs7_der, ensure_pki, openssl  # noqa: E402

WK = "/.well-known/est"
POP_CLIENT = os.environ.get("POP_CLIENT", os.path.join(os.path.dirname(ESTGW), "..", "tests", "tools",
                                                       "pop_client"))


def csr_der(pki):
    with open(os.path.join(pki, "device.csr.der"), "rb") as f:
        return f.read()


def pop(s, path, mode="right", cert="device", cn="device-001", serial="SN001", timeout=60):
    """Run pop_client against stack @p s; returns (rc, code line, payload)."""
    p = s.pki
    out = os.path.join(s.dir, f"pop-{mode}-{cn}-{serial}.der")
    args = [POP_CLIENT, "-c", f"{p}/{cert}.crt", "-k", f"{p}/{cert}.key", "-C", f"{p}/gw-ca.crt",
            "-p", mode, "-n", cn, "-s", serial, "-o", out, s.uri(path)]
    r = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
    err = r.stderr.decode(errors="replace").strip()
    data = b""
    if os.path.exists(out):
        with open(out, "rb") as f:
            data = f.read()
    return r.returncode, err, data


def ca_log(s):
    with open(os.path.join(s.dir, "ca.log"), encoding="utf-8", errors="replace") as f:
        return f.read()


class TestPopRequired(StackTest):
    stack_kwargs = {"extra_policy": "pop = required"}

    def test_G4_pop_right_enrolls(self):
        rc, err, data = pop(self.s, WK + "/sen")
        self.assertEqual(rc, 0, err)
        self.assertTrue(err.startswith("2.04"), err)
        certs = certs_of_pkcs7_der(data)
        self.assertEqual(len(certs), 1)
        subj = openssl("x509", "-inform", "DER", "-noout", "-subject", data=certs[0]).decode()
        self.assertIn("device-001", subj)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=200 code=2\.04")

    def test_G4_pop_wrong_tls_unique_4_01_not_forwarded(self):
        rc, err, _ = pop(self.s, WK + "/sen", mode="wrong")
        self.assertEqual(rc, 1, err)
        self.assertTrue(err.startswith("4.01"), err)
        self.assertIn("tls-unique", err)
        log = self.s.log()
        self.assertRegex(log, r"policy.*sen refused: challengePassword does not match")
        self.assertRegex(log, r"POST /.well-known/est/sen upstream=- code=4\.01")
        self.assertNotIn("simpleenroll", ca_log(self.s))

    def test_G4_pop_missing_when_required_4_01(self):
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki))
        self.assertEqual(r.code, "4.01", r)
        self.assertIn("POP", r.diag)
        self.assertNotIn("simpleenroll", ca_log(self.s))

    def test_G4_pop_wrong_on_serverkeygen_4_01(self):
        rc, err, _ = pop(self.s, WK + "/skg", mode="wrong")
        self.assertTrue(err.startswith("4.01"), err)


class TestPopIfPresent(StackTest):
    """The default: a CSR without challengePassword passes, a wrong one does not."""

    def test_G4_pop_absent_allowed_by_default(self):
        rc, err, _ = pop(self.s, WK + "/sen", mode="none")
        self.assertEqual(rc, 0, err)

    def test_G4_pop_wrong_refused_by_default(self):
        rc, err, _ = pop(self.s, WK + "/sen", mode="wrong")
        self.assertTrue(err.startswith("4.01"), err)

    def test_G4_pop_right_allowed_by_default(self):
        rc, err, _ = pop(self.s, WK + "/sen")
        self.assertEqual(rc, 0, err)


class TestAuthorization(StackTest):
    policy = ("idevid_trust = {p}/mfg-ca.crt\nldevid_trust = {p}/est-chain.crt\n"
              "match_serial = yes")

    def setUp(self):
        self.s = Stack(extra_policy=self.policy.format(p=ensure_pki()))
        self.s.start()

    def test_G2_idevid_may_not_reenroll_4_03(self):
        r = self.s.coap(WK + "/sren", method="post", cf=286, payload=csr_der(self.s.pki))
        self.assertEqual(r.code, "4.03", r)
        self.assertRegex(self.s.log(), r'policy.*\(idevid\) /.well-known/est/sren refused: operation not allowed')
        self.assertNotIn("simplereenroll", ca_log(self.s))

    def test_G2_idevid_may_enroll(self):
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki))
        self.assertEqual(r.rc, 0, r)

    def test_G2_ldevid_reenrolls_same_subject(self):
        r = self.s.coap(WK + "/sren", method="post", cf=286, payload=csr_der(self.s.pki), cert="ldevid")
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sren upstream=200 code=2\.04")

    def test_G2_ldevid_reenroll_other_subject_4_03(self):
        rc, err, _ = pop(self.s, WK + "/sren", cert="ldevid", cn="device-009")
        self.assertTrue(err.startswith("4.03"), err)
        self.assertIn("subject", err)

    def test_G2_serial_mismatch_4_03(self):
        rc, err, _ = pop(self.s, WK + "/sen", serial="SN999")
        self.assertTrue(err.startswith("4.03"), err)
        self.assertIn("serialNumber", err)
        rc, err, _ = pop(self.s, WK + "/sen", serial="SN001")
        self.assertEqual(rc, 0, err)

    def test_G2_untrusted_ca_refused_in_handshake(self):
        r = self.s.coap(WK + "/crts", cert="rogue-device", timeout=5)
        self.assertEqual(r.payload, b"")
        self.assertNotIn("GET /.well-known/est/crts", self.s.log())


class TestExpiredIdevidAllowed(TestAuthorization):
    policy = ("idevid_trust = {p}/mfg-ca.crt\nldevid_trust = {p}/est-chain.crt\n"
              "allow_expired_idevid = yes")

    # inherited tests run too: the override must not loosen anything else
    test_G2_serial_mismatch_4_03 = None

    def test_G3_expired_idevid_enrolls_and_is_logged(self):
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki),
                        cert="device-expired")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(certs_of_pkcs7_der(r.payload)), 1)
        log = self.s.log()
        self.assertRegex(log, r'policy: client="[^"]*device-002[^"]*" \(idevid\) /.well-known/est/sen: '
                              r'expired IDevID accepted')
        self.assertRegex(log, r"POST /.well-known/est/sen upstream=200 code=2\.04")

    def test_G3_expired_idevid_only_for_sen_4_03(self):
        r = self.s.coap(WK + "/crts", cert="device-expired")
        self.assertEqual(r.code, "4.03", r)
        self.assertIn("only enroll", r.diag)

    def test_G3_expired_ldevid_refused_in_handshake(self):
        r = self.s.coap(WK + "/crts", cert="ldevid-expired", timeout=5)
        self.assertEqual(r.payload, b"")
        self.assertNotIn("GET /.well-known/est/crts", self.s.log())


class TestExpiredIdevidRefused(StackTest):
    """Default policy: an expired IDevID fails the handshake (G3 is a MAY)."""

    def test_G3_expired_idevid_refused_by_default(self):
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki),
                        cert="device-expired", timeout=5)
        self.assertEqual(r.payload, b"")
        self.assertNotIn("POST /.well-known/est/sen", self.s.log())


def s_client(s, *args, data=b""):
    p = s.pki
    r = subprocess.run(["openssl", "s_client", "-cert", f"{p}/device.crt", "-key", f"{p}/device.key",
                        "-CAfile", f"{p}/gw-ca.crt", "-connect", f"127.0.0.1:{s.port}", *args],
                       input=data, capture_output=True, timeout=30, check=False)
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


class TestDtls(StackTest):
    def test_G1_hello_verify_request_cookie(self):
        out = s_client(self.s, "-dtls1_2", "-msg")
        # the first handshake message from the server is HelloVerifyRequest
        # (type 3, RFC 6347 4.2.1), then the client's second ClientHello
        first = re.search(r"<<< [^\n]*content_type=22\)[^\n]*\n\s+(\w\w) ", out)
        self.assertIsNotNone(first, out[-2000:])
        self.assertEqual(first.group(1), "03", out[-2000:])
        self.assertIn("Verify return code: 0", out[-3000:])

    def test_G1_ccm8_only_client_completes_handshake(self):
        out = s_client(self.s, "-dtls1_2", "-cipher", "ECDHE-ECDSA-AES128-CCM8")
        self.assertIn("Cipher is ECDHE-ECDSA-AES128-CCM8", out)
        self.assertIn("Verify return code: 0", out)

    def test_G1_cbc_suite_refused(self):
        out = s_client(self.s, "-dtls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256")
        self.assertNotIn("Cipher is ECDHE-ECDSA-AES128-SHA256", out[-3000:])
        self.assertRegex(out[-3000:], r"handshake failure|no shared cipher|alert")

    def test_G1_dtls1_0_refused(self):
        out = s_client(self.s, "-dtls1")
        self.assertIn("Cipher is (NONE)", out[-3000:])
        self.assertIn("alert protocol version", out[-3000:])


class TestRateLimit(StackTest):
    stack_kwargs = {"extra_server": "rate_limit = 2"}

    def test_J_rate_limit_4_29_across_sessions(self):
        codes = [self.s.coap(WK + "/crts").code for _ in range(3)]
        self.assertEqual(codes[:2], ["2.xx", "2.xx"], codes)
        self.assertEqual(codes[2], "4.29", codes)
        self.assertRegex(self.s.log(), r"GET /.well-known/est/crts upstream=- code=4\.29 .*rate limit")


class TestUpstreamUntrusted(StackTest):
    """G5: the EST server's certificate must verify against [upstream] trust; a CA
    certificate from another hierarchy there makes every exchange fail (5.02)."""

    def setUp(self):
        self.s = Stack()
        with open(self.s.conf) as f:
            text = f.read()
        with open(self.s.conf, "w") as f:
            f.write(text.replace(f"trust = {self.s.pki}/tls-ca.crt", f"trust = {self.s.pki}/gw-ca.crt"))
        self.s.start()

    def test_G5_upstream_server_not_trusted_5_02(self):
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki))
        self.assertEqual(r.code, "5.02", r)
        self.assertNotIn("simpleenroll", ca_log(self.s))


class TestStartup(unittest.TestCase):
    """Start-up refusals (G4, G5): not --check, a real start."""

    def start(self, **kw):
        s = Stack(ca=False, upstream_url="https://127.0.0.1:9/.well-known/est", **kw)
        self.addCleanup(s.cleanup)
        r = subprocess.run([ESTGW, "-c", s.conf], capture_output=True, timeout=60, check=False)
        return s, r.returncode, (r.stdout + r.stderr).decode()

    def test_G4_ra_without_cmcra_refused_at_startup(self):
        _, rc, out = self.start(ra="ra-nocmc")
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"estgw\.conf:\d+: \[upstream\] certificate: .*1\.3\.6\.1\.5\.5\.7\.3\.28")
        self.assertNotIn("ready", out)

    def test_G4_world_readable_ra_key_refused(self):
        s = Stack(ca=False, upstream_url="https://127.0.0.1:9/.well-known/est")
        self.addCleanup(s.cleanup)
        key = os.path.join(s.dir, "ra.key")
        with open(os.path.join(s.pki, "ra.key"), "rb") as f, open(key, "wb") as g:
            g.write(f.read())
        os.chmod(key, 0o644)
        with open(s.conf) as f:
            text = f.read().replace(f"{s.pki}/ra.key", key)
        with open(s.conf, "w") as f:
            f.write(text)
        r = subprocess.run([ESTGW, "-c", s.conf], capture_output=True, timeout=60, check=False)
        out = (r.stdout + r.stderr).decode()
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("world-readable", out)

    def test_G2_expired_allowed_needs_idevid_trust(self):
        _, rc, out = self.start(extra_policy="allow_expired_idevid = yes")
        self.assertEqual(rc, 1, out)
        self.assertIn("[policy] allow_expired_idevid: needs [policy] idevid_trust", out)


def use_server_cert(s, name):
    """Point [server] certificate/private_key of @p s at NAME.crt/NAME.key;
    the line of the certificate key."""
    with open(s.conf) as f:
        text = f.read()
    text = text.replace(f"certificate = {s.pki}/gw.crt\n", f"certificate = {s.pki}/{name}.crt\n")
    text = text.replace(f"private_key = {s.pki}/gw.key\n", f"private_key = {s.pki}/{name}.key\n")
    with open(s.conf, "w") as f:
        f.write(text)
    return text.split("\n").index(f"certificate = {s.pki}/{name}.crt") + 1


class TestServerCmcra(unittest.TestCase):
    """G8 (RFC 7030 3.6.1, RFC 9148 9.2): a DTLS server certificate without
    id-kp-cmcRA is a warning in --check and at start-up, not a refusal."""

    def check(self, name):
        s = Stack(ca=False, upstream_url="https://127.0.0.1:9/.well-known/est")
        self.addCleanup(s.cleanup)
        line = use_server_cert(s, name)
        r = subprocess.run([ESTGW, "-c", s.conf, "--check"], capture_output=True, timeout=60,
                           check=False)
        return s, line, r.returncode, r.stdout.decode(), r.stderr.decode()

    def test_G8_check_warns_server_cert_without_cmcra(self):
        for name, why in (("gw-nocmc", "has extended key usage without id-kp-cmcRA"),
                          ("gw-noeku", "has no extended key usage extension, so no id-kp-cmcRA")):
            s, line, rc, out, err = self.check(name)
            self.assertEqual(rc, 0, err)
            self.assertIn("configuration OK", out)
            self.assertEqual(len(err.strip().splitlines()), 1, err)
            self.assertIn(f"estgw: warning: {s.conf}:{line}: [server] certificate: "
                          f"{s.pki}/{name}.crt: the first certificate {why} "
                          "(1.3.6.1.5.5.7.3.28)", err)
            self.assertIn("Implicit TA database", err)

    def test_G8_check_quiet_with_cmcra(self):
        _, _, rc, out, err = self.check("gw")
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration OK", out)
        self.assertEqual(err, "")

    def test_G8_startup_logs_warning_and_serves(self):
        s = Stack()
        line = use_server_cert(s, "gw-nocmc")
        try:
            s.start()
            self.assertRegex(s.log(), r"warning config: " + re.escape(
                f"{s.conf}:{line}: [server] certificate: {s.pki}/gw-nocmc.crt: the first "
                "certificate has extended key usage without id-kp-cmcRA"))
            # a device with Explicit TAs (coap-client -C gw-ca.crt) still enrolls
            r = s.coap(WK + "/sen", method="post", cf=286, payload=csr_der(s.pki))
            self.assertEqual(r.code, "2.xx", r)
        finally:
            self.assertEqual(s.stop(), 0, s.log()[-4000:])
            s.cleanup()


class TestEndpointPort(StackTest):
    """The DTLS endpoint's port is estgw's alone (G10). libcoap 4.3.1 binds it with
    SO_REUSEADDR, and libcoap's clients (coap-client-openssl too) make their socket with
    SO_REUSEADDR before the kernel picks its ephemeral port; Linux skips a port held by a
    socket without SO_REUSEADDR only, so with it still set a local device could be given the
    endpoint's port as its own, send its ClientHello to itself and give up at once (rc 0, no
    code: the flake of TestBrskiVoucher's second pledge). The kernel applies the same rule to
    an explicit bind, which makes the check deterministic."""

    def test_G10_port_not_shared_with_a_reuseaddr_socket(self):
        x = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        x.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            with self.assertRaises(OSError) as e:
                x.bind(("127.0.0.1", self.s.port))
            self.assertEqual(e.exception.errno, errno.EADDRINUSE)
        finally:
            x.close()
        r = self.s.coap(WK + "/crts")
        self.assertEqual(r.code, "2.xx", r)

    def test_G10_second_instance_on_the_same_port_refused(self):
        r = subprocess.run([ESTGW, "-c", self.s.conf], capture_output=True, timeout=30,
                           check=False)
        out = (r.stdout + r.stderr).decode(errors="replace")
        self.assertEqual(r.returncode, 1, out)
        self.assertIn(f"cannot listen on 127.0.0.1:{self.s.port} (DTLS)", out)
        self.assertNotRegex(out, r"\bready\b")  # ("already in use" is no "ready")
        self.assertNotIn("Sanitizer", out)
        r = self.s.coap(WK + "/crts")  # the first one serves on
        self.assertEqual(r.code, "2.xx", r)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--list":
        loader = unittest.TestLoader()
        for cls in (TestPopRequired, TestPopIfPresent, TestAuthorization, TestExpiredIdevidAllowed,
                    TestExpiredIdevidRefused, TestDtls, TestRateLimit, TestUpstreamUntrusted,
                    TestStartup, TestServerCmcra, TestEndpointPort):
            for name in loader.getTestCaseNames(cls):
                if getattr(cls, name) is not None:
                    print(f"{cls.__name__}.{name}")
        sys.exit(0)
    unittest.main()
