#!/usr/bin/env python3
"""Piggybacked answers on the wire (D2; RFC 7252 §5.2.1): an answer that
exists while estgw handles the request - /crts from the cache, discovery, a kept
certificate, every local error - goes back in the ACK of the request, not as an
empty ACK followed by a separate CON response (§5.2.2). Only answers that wait
for the EST server are separate.

coap-client-openssl -v 7 prints every CoAP message it sends and receives
("v:1 t:ACK c:2.05 i:39f5 {01} [...]"); the checks read those lines. A request
is CON with a method code; anything else is an answer, or an empty ACK (c:0.00,
from estgw before a separate response, or from the client acknowledging one).
Run one test: test_piggyback.py TestPiggyback.test_D2_crts_from_cache_in_the_ack
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import StackTest  # noqa: E402

WK = "/.well-known/est"
PDU = re.compile(r"^v:1 t:(CON|NON|ACK|RST) c:(\S+) i:([0-9a-f]+) ", re.M)
METHODS = {"GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH"}


def csr_der(pki):
    with open(os.path.join(pki, "device.csr.der"), "rb") as f:
        return f.read()


def wire(stderr):
    """[(type, code, message id)] of the CoAP messages in coap-client's -v 7 output."""
    return PDU.findall(stderr)


class TestPiggyback(StackTest):
    def coap(self, path, extra_opts=(), **kw):
        return self.s.coap(path, extra=["-v", "7", *extra_opts], **kw)

    def expect_piggybacked(self, r, code):
        """Every answer came in the ACK of one of the client's CON requests, and the
        last one has @code; no empty ACK and no CON answer on the wire."""
        pdus = wire(r.stderr)
        requests = {mid for kind, c, mid in pdus if kind == "CON" and c in METHODS}
        answers = [(kind, c, mid) for kind, c, mid in pdus if c not in METHODS]
        self.assertTrue(requests and answers, r.stderr[-3000:])
        for kind, c, mid in answers:
            self.assertEqual((kind, c != "0.00"), ("ACK", True),
                             f"not piggybacked: t:{kind} c:{c} i:{mid}\n{pdus}")
            self.assertIn(mid, requests, pdus)
        self.assertEqual(answers[-1][1], code, pdus)
        return answers

    def test_D2_detects_a_separate_response(self):
        """The check itself: an answer that waits for the CA is separate."""
        r = self.coap(WK + "/sen", method="post", cf=286, payload=csr_der(self.s.pki))
        self.assertEqual(r.code, "2.xx", r)
        answers = [(kind, c) for kind, c, _ in wire(r.stderr) if c not in METHODS]
        # estgw's empty ACK, its CON 2.04, the client's empty ACK of that
        self.assertEqual(set(answers), {("ACK", "0.00"), ("CON", "2.04")}, answers)
        self.assertEqual(answers[-2:], [("CON", "2.04"), ("ACK", "0.00")], answers)
        with self.assertRaises(AssertionError):
            self.expect_piggybacked(r, "2.04")

    def test_D2_separate_multiblock_answer_first_block_only_in_the_con(self):
        """docs/architecture.md: a separate answer's first block is the CON; libcoap
        answers the requests for the other blocks in their ACKs. (Block1 request: a
        libcoap 4.3.1 client loses a multi-block separate answer otherwise.)"""
        r = self.coap(WK + "/skg", method="post", cf=286, accept=62,
                      payload=csr_der(self.s.pki), block=64, extra_opts=["-O", "23,0x02"])
        self.assertEqual(r.code, "2.xx", r)
        answers = [(kind, c) for kind, c, _ in wire(r.stderr) if c not in METHODS]
        first = answers.index(("CON", "2.04"))
        self.assertEqual(answers[first - 1:first + 2],
                         [("ACK", "0.00"), ("CON", "2.04"), ("ACK", "0.00")])
        rest = answers[first + 2:]
        self.assertGreater(len(rest), 5)
        self.assertEqual(set(rest), {("ACK", "2.04")})

    def test_D2_discovery_in_the_ack(self):
        r = self.coap("/.well-known/core")
        self.assertIn(b'rt="ace.est"', r.payload)
        self.expect_piggybacked(r, "2.05")

    def test_D2_crts_from_cache_in_the_ack(self):
        r = self.coap(WK + "/crts")
        self.assertEqual(r.code, "2.xx", r)
        self.expect_piggybacked(r, "2.05")
        # Block2 at 64 bytes: each block in the ACK of the request for it.
        r = self.coap(WK + "/crts", block=64)
        self.assertGreater(len(self.expect_piggybacked(r, "2.05")), 10)
        self.assertEqual(self.s.log().count("GET /.well-known/est/crts upstream=cache "
                                            "code=2.05"), 2, self.s.log())

    def test_D2_local_errors_in_the_ack(self):
        csr = csr_der(self.s.pki)
        self.s.ca_control(reset_stats=True)
        rows = ((WK + "/sen", dict(method="post", cf=0, payload=csr), "4.15"),
                (WK + "/crts", dict(method="post", cf=286, payload=csr), "4.05"),
                (WK + "/nothing", {}, "4.04"),
                (WK + "/sen", dict(method="post", cf=286, payload=b"\x30\x03\x02\x01\x00"),
                 "4.00"),
                (WK + "/crts", dict(accept=50), "4.06"))
        for path, kw, code in rows:
            with self.subTest(code=code):
                r = self.coap(path, **kw)
                self.assertEqual(r.code, code, r)
                self.expect_piggybacked(r, code)
        self.assertEqual(self.s.ca_stats()["total"], 0, "a local error went upstream")

    def test_D2_kept_answer_in_the_ack(self):
        csr = csr_der(self.s.pki)
        first = self.coap(WK + "/sen", method="post", cf=286, payload=csr)
        self.assertEqual(first.code, "2.xx", first)
        # The device resends the identical CSR: the kept certificate, in the ACK.
        again = self.coap(WK + "/sen", method="post", cf=286, payload=csr)
        self.expect_piggybacked(again, "2.04")
        self.assertEqual(again.payload, first.payload)
        # In Block1 blocks too: each 2.31 and the final answer in an ACK.
        blocks = self.coap(WK + "/sen", method="post", cf=286, payload=csr, block=64)
        answers = self.expect_piggybacked(blocks, "2.04")
        self.assertIn("2.31", [c for _, c, _ in answers])
        self.assertEqual(blocks.payload, first.payload)
        self.assertEqual(len(re.findall(r"POST /.well-known/est/sen upstream=- code=2\.04 "
                                        r"[\d.]+ms \(kept\)", self.s.log())), 2, self.s.log())
        self.assertEqual(self.s.ca_stats()["issued"], 1)


if __name__ == "__main__":
    harness.main(__name__)
