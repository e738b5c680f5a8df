#!/usr/bin/env python3
"""Interop with strict EST servers (B5; RFC 2045 6.8, RFC 8951).

libest's estserver (Cisco) reads a request body with OpenSSL's base64 BIO: one
long line of Base64 gives it no CSR ("Problem reading DER encoded certificate
request"). The test CA is as strict (tests/ca/README.md); these cases prove it
is, with direct HTTPS POSTs made here, then that every body estgw sends gets
through it in MIME lines, and that estgw reads any line layout a CA answers in.
The Base64 checks here are the test's own (Python standard library).
Run one test: test_interop.py TestStrictCA.test_B5_ca_refuses_one_line_body
"""
import base64
import http.client
import os
import ssl
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import StackTest, certs_of_pkcs7_der, pubkey_of_cert_der, pubkey_of_csr_der  # noqa: E402

WK = "/.well-known/est"
LIBEST_BAD_CSR = "Problem reading DER encoded certificate request"


def csr_der(pki):
    with open(os.path.join(pki, "device.csr.der"), "rb") as f:
        return f.read()


def wrap(text, width, end):
    """Base64 text cut into lines of width characters, each followed by end."""
    return b"".join(text[i:i + width] + end for i in range(0, len(text), width))


def mime_lines(body):
    """The lines of a body in estgw's layout (64 characters, CRLF after each,
    the last one too); raises AssertionError otherwise."""
    if not body.endswith("\r\n"):
        raise AssertionError(f"body does not end in CRLF: {body[-8:]!r}")
    lines = body[:-2].split("\r\n")
    for i, line in enumerate(lines):
        if "\r" in line or "\n" in line:
            raise AssertionError(f"line {i + 1} holds a bare CR or LF: {line!r}")
        last = i == len(lines) - 1
        if (len(line) != 64 and not last) or not 0 < len(line) <= 64:
            raise AssertionError(f"line {i + 1} of {len(lines)} has {len(line)} characters")
    return lines


class MimeBodyTest(StackTest):
    def expect_mime_body(self, op, csr=None):
        """The CA's last POST went to op, in MIME lines, and decodes (here) to csr."""
        stats = self.s.ca_stats()
        self.assertTrue(stats["last"]["path"].endswith("/" + op), stats["last"])
        lines = mime_lines(stats["last_body"])
        self.assertGreaterEqual(len(lines), 3)
        der = base64.b64decode("".join(lines), validate=True)
        if csr is not None:
            self.assertEqual(der, csr)
        return der


class TestStrictCA(MimeBodyTest):
    def post(self, body):
        """POST body to the test CA's /simpleenroll as the RA (test-side HTTPS)."""
        p = self.s.pki
        ctx = ssl.create_default_context(cafile=os.path.join(p, "tls-ca.crt"))
        ctx.load_cert_chain(os.path.join(p, "ra.crt"), os.path.join(p, "ra.key"))
        c = http.client.HTTPSConnection("127.0.0.1", self.s.ca_port, context=ctx, timeout=20)
        try:
            c.request("POST", WK + "/simpleenroll", body=body,
                      headers={"Content-Type": "application/pkcs10"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def test_B5_ca_refuses_one_line_body(self):
        """The guard: the CA refuses what estgw used to send, like libest."""
        text = base64.b64encode(csr_der(self.s.pki))
        self.assertGreater(len(text), 76)
        self.s.ca_control(reset_stats=True)  # forget estgw's start-up /cacerts
        for name, body in (("one line", text), ("one line + CRLF", text + b"\r\n"),
                           ("77 columns", wrap(text, 77, b"\n"))):
            with self.subTest(name):
                status, answer = self.post(body)
                self.assertEqual(status, 400, answer)
                self.assertEqual(answer.decode().strip(), LIBEST_BAD_CSR)
        for name, body in (("76 columns LF", wrap(text, 76, b"\n")),
                           ("64 columns CRLF", wrap(text, 64, b"\r\n")),
                           ("64 columns CRLF, no final", wrap(text, 64, b"\r\n")[:-2])):
            with self.subTest(name):
                status, answer = self.post(body)
                self.assertEqual(status, 200, answer)
        self.assertEqual(self.s.ca_stats()["status"], {"400": 3, "200": 3})

    def test_B5_sen_enrolls_against_the_strict_ca(self):
        csr = csr_der(self.s.pki)
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr)
        self.assertEqual(r.rc, 0, r)
        harness.assert_issued_for(self, r.payload, csr)
        self.expect_mime_body("simpleenroll", csr)
        self.assertNotIn("400", self.s.ca_stats()["status"])

    def test_B5_every_post_in_mime_lines(self):
        csr = csr_der(self.s.pki)
        for short, op, block in (("sren", "simplereenroll", None), ("lbl1/sen", "simpleenroll", None),
                                 ("skg", "serverkeygen", 64), ("skc", "serverkeygen", 64)):
            with self.subTest(short):
                r = self.s.coap(f"{WK}/{short}", method="post", cf=286, payload=csr, block=block)
                self.assertEqual(r.rc, 0, r)
                self.assertTrue(r.payload, r)
                self.expect_mime_body(op, csr)


class TestStrictCARegistrarKeygen(MimeBodyTest):
    """The CSR estgw makes for its own key (serverkeygen = registrar) too."""
    stack_kwargs = {"extra_server": "serverkeygen = registrar",
                    "ca_args": ("--label", "lbl1", "--no-serverkeygen")}

    def test_B5_registrar_csr_in_mime_lines(self):
        device_csr = csr_der(self.s.pki)
        for short in ("skg", "skc"):
            with self.subTest(short):
                r = self.s.coap(f"{WK}/{short}", method="post", cf=286, payload=device_csr,
                                block=64)
                self.assertEqual(r.rc, 0, r)
                sent = self.expect_mime_body("simpleenroll")
                self.assertNotEqual(pubkey_of_csr_der(sent), pubkey_of_csr_der(device_csr))
                self.assertEqual(base64.b64decode(self.s.ca_stats()["last_csr"]), sent)


class TestAnswerLayouts(StackTest):
    """RFC 8951: estgw reads the CA's Base64 in any line layout."""

    def test_B5_answers_in_every_line_layout(self):
        csr = csr_der(self.s.pki)
        for layout in ("oneline", "lf64", "crlf64", "lf76", "crlf76"):
            with self.subTest(layout):
                self.s.ca_control(mode=f"layout={layout}")
                r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr)
                self.assertEqual(r.rc, 0, r)
                certs = certs_of_pkcs7_der(r.payload)
                self.assertEqual(pubkey_of_cert_der(certs[0]), pubkey_of_csr_der(csr))
                r = self.s.coap(WK + "/att")
                self.assertEqual(r.rc, 0, r)
                self.assertEqual(r.payload[:1], b"\x30", r)
                r = self.s.coap(WK + "/skg", method="post", cf=286, payload=csr, block=64)
                self.assertEqual(r.rc, 0, r)
                self.assertEqual(r.payload[:1], b"\x84", r)  # CBOR array of 4
        self.assertNotIn("binary DER", self.s.log())
        self.assertNotRegex(self.s.log(), r"code=5\.02")


class TestTransferEncodingHeader(StackTest):
    """Content-Transfer-Encoding: base64 goes with every EST body by default
    (old servers want it said; RFC 8951 makes it meaningless, B5)."""

    def test_B5_cte_header_sent_with_the_body(self):
        csr = open(os.path.join(self.s.pki, "device.csr.der"), "rb").read()
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr)
        self.assertEqual(r.code, "2.xx", r)
        headers = self.s.ca_stats()["last"]["headers"]
        self.assertEqual(headers.get("content-transfer-encoding"), "base64", headers)


class TestTransferEncodingHeaderOff(StackTest):
    stack_kwargs = {"extra_upstream": "send_cte = no"}

    def test_B5_cte_header_off_by_send_cte(self):
        csr = open(os.path.join(self.s.pki, "device.csr.der"), "rb").read()
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr)
        self.assertEqual(r.code, "2.xx", r)
        headers = self.s.ca_stats()["last"]["headers"]
        self.assertNotIn("content-transfer-encoding", headers)


if __name__ == "__main__":
    harness.main(__name__)
