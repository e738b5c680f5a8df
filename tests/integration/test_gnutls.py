#!/usr/bin/env python3
"""A device on another DTLS stack: Debian's coap-client-gnutls (libcoap over
GnuTLS) instead of the OpenSSL build the other suites use, so the handshake,
CCM_8 negotiation, Block1/Block2 and the error answers are seen by a peer that
shares no TLS code with estgw's own (OpenSSL) side (G1, E1, E2, A6, D2).

Payloads are checked with the openssl CLI, Max-Age from the client's -v 7 PDU
dump, as in the other suites.
"""
import os
import re
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import (StackTest, certs_of_pkcs7_der, pubkey_of_cert_der,  # noqa: E402
                     pubkey_of_csr_der)

WK = "/.well-known/est"
GNUTLS = shutil.which("coap-client-gnutls") or "coap-client-gnutls"


def max_age(result):
    ages = re.findall(r"Max-Age:(\d+)", result.stderr)
    return int(ages[-1]) if ages else None


class GnutlsTest(StackTest):

    def coap(self, path, **kw):
        return self.s.coap(path, client=GNUTLS, **kw)

    def csr(self):
        with open(os.path.join(self.s.pki, "device.csr.der"), "rb") as f:
            return f.read()


class TestGnutlsDevice(GnutlsTest):

    def test_G1_gnutls_crts_281_in_64_byte_blocks(self):
        r = self.coap(WK + "/crts", accept=281, block=64)
        self.assertEqual(r.code, "2.xx", r)
        self.assertGreater(len(r.payload), 64)  # more than one Block2 block
        self.assertEqual(len(certs_of_pkcs7_der(r.payload)), 2)

    def test_G1_gnutls_crts_287_single_certificate(self):
        r = self.coap(WK + "/crts", accept=287, block=64)
        self.assertEqual(r.code, "2.xx", r)
        subject = harness.openssl("x509", "-inform", "DER", "-noout", "-subject",
                                  data=r.payload)
        self.assertIn(b"CN = Test EST Root CA", subject)

    def test_G1_gnutls_sen_block1_64_accept_287(self):
        csr = self.csr()
        self.assertGreater(len(csr), 64)  # the CSR itself goes in Block1
        r = self.coap(WK + "/sen", method="post", cf=286, accept=287, payload=csr, block=64)
        self.assertEqual(r.code, "2.xx", r)
        self.assertEqual(pubkey_of_cert_der(r.payload), pubkey_of_csr_der(csr))
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=200 code=2\.04")

    def test_G1_gnutls_sen_accept_281_pkcs7(self):
        csr = self.csr()
        r = self.coap(WK + "/sen", method="post", cf=286, payload=csr, block=256)
        self.assertEqual(r.code, "2.xx", r)
        certs = certs_of_pkcs7_der(r.payload)
        self.assertEqual(pubkey_of_cert_der(certs[0]), pubkey_of_csr_der(csr))

    def test_A6_gnutls_error_codes(self):
        r = self.coap(WK + "/sen", method="post", cf=0, payload=self.csr())
        self.assertEqual(r.code, "4.15", r)
        r = self.coap(WK + "/sen")
        self.assertEqual(r.code, "4.05", r)
        r = self.coap(WK + "/nosuch")
        self.assertEqual(r.code, "4.04", r)
        r = self.coap(WK + "/crts", accept=286)
        self.assertEqual(r.code, "4.06", r)

    def test_D2_gnutls_5_03_max_age_then_retry(self):
        self.s.ca_control(mode="accepted", retry_after="7", op="simpleenroll", count=1)
        r = self.coap(WK + "/sen", method="post", cf=286, payload=self.csr(), extra=["-v", "7"])
        self.assertEqual(r.code, "5.03", r)
        self.assertEqual(max_age(r), 7, r.stderr[-2000:])
        r = self.coap(WK + "/sen", method="post", cf=286, accept=287, payload=self.csr())
        self.assertEqual(r.code, "2.xx", r)


if __name__ == "__main__":
    harness.main(__name__)
