#!/usr/bin/env python3
"""Block-wise transfer on the wire (RFC 7959, RFC 9148; E1, E4-E8):
tests/tools/block_client sends exactly the Block1/Block2 options these tests
write, on one DTLS session, and prints each response's options byte for
byte; the options are decoded here (test-side code, nothing shared with
estgw). Bodies are checked with the openssl CLI and against what
coap-client-openssl fetched on its own.

Run one test: test_blockwise.py TestBlockwise.test_E5_block1_echo_on_final_answer
"""
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import (StackTest, certs_of_pkcs7_der, openssl, pubkey_of_cert_der,  # noqa: E402
                     pubkey_of_csr_der, wait_for)
from test_skg import multipart_core, pubkey_of_pkcs8  # noqa: E402

WK = "/.well-known/est"
BLOCK_CLIENT = os.environ.get("BLOCK_CLIENT", os.path.join(
    harness.SRC, "build", "tests", "tools", "block_client"))

# CoAP option numbers (RFC 7252 12.2, RFC 7959 6, RFC 9175 3.2)
ETAG, CF, MAX_AGE, ACCEPT, BLOCK2, BLOCK1, SIZE2, SIZE1, RTAG = 4, 12, 14, 17, 23, 27, 28, 60, 292


def uint(v):
    return v.to_bytes((v.bit_length() + 7) // 8, "big")


def block(num, m, szx):
    return uint(num << 4 | m << 3 | szx)


def unblock(raw):
    v = int.from_bytes(raw, "big")
    return v >> 4, v >> 3 & 1, v & 7


class Resp:
    def __init__(self, line):
        fields = line.split()
        self.mine = fields[1] == "mine=1"
        self.type = fields[2][5:]
        self.code = fields[3][5:]
        self.opts = []
        self.payload = b""
        for f in fields[4:]:
            k, _, v = f.partition("=")
            if k == "p":
                self.payload = bytes.fromhex(v)
            else:
                self.opts.append((int(k[1:]), bytes.fromhex(v)))

    def opt(self, num):
        vals = [v for n, v in self.opts if n == num]
        return vals[0] if vals else None

    def block(self, num):
        v = self.opt(num)
        return None if v is None else unblock(v)

    def uint(self, num):
        v = self.opt(num)
        return None if v is None else int.from_bytes(v, "big")

    def __repr__(self):
        return f"Resp({self.type} {self.code} {self.opts} {len(self.payload)} bytes)"


class Reply:
    def __init__(self, end, responses):
        self.end = end
        self.responses = responses
        mine = [r for r in responses if r.mine]
        self.resp = mine[-1] if mine else None


class BlockClient:
    """One block_client process = one DTLS session."""

    def __init__(self, stack, cert="device"):
        p = stack.pki
        self.p = subprocess.Popen(
            [BLOCK_CLIENT, "-c", f"{p}/{cert}.crt", "-k", f"{p}/{cert}.key",
             "-C", f"{p}/gw-ca.crt", f"coaps://127.0.0.1:{stack.port}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def send(self, path, method="get", mtype="con", opts=(), payload=b"", wait_ms=20000):
        words = [mtype, method, path, str(wait_ms)]
        words += [f"o{n}={v.hex()}" for n, v in sorted(opts, key=lambda o: o[0])]
        if payload:
            words.append("p=" + payload.hex())
        self.p.stdin.write(" ".join(words) + "\n")
        self.p.stdin.flush()
        responses = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise AssertionError(f"block_client exited (rc={self.p.poll()})")
            if line.startswith("resp "):
                responses.append(Resp(line))
            elif line.startswith("end "):
                return Reply(line.split()[1], responses)

    def wait(self, wait_ms=20000):
        """Until a response to an earlier request (sent with wait_ms=0) comes."""
        self.p.stdin.write(f"wait {wait_ms}\n")
        self.p.stdin.flush()
        responses = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise AssertionError(f"block_client exited (rc={self.p.poll()})")
            if line.startswith("resp "):
                responses.append(Resp(line))
            elif line.startswith("end "):
                return Reply(line.split()[1], responses)

    def check(self):
        """True if estgw ended the session (its close_notify came); the tool
        has then opened a new one for the next request."""
        self.p.stdin.write("check\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError(f"block_client exited (rc={self.p.poll()})")
        return line.strip() == "closed"

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=30)


def csr_der(pki, name="device.csr.der"):
    with open(os.path.join(pki, name), "rb") as f:
        return f.read()


class Transfer:
    """One block-wise exchange driven step by step, so that two can be
    interleaved on one session: the Block1 blocks of the request body
    (each but the last answered 2.31), then the Block2 blocks of the
    answer (RFC 7959 2.3, 2.4; RFC 9148 Figures 3-6)."""

    def __init__(self, test, client, path, method="get", body=b"", szx1=2, base=(),
                 b2_first=None, b2_last=None, rtag=None):
        self.t, self.c, self.path, self.method = test, client, path, method
        self.body, self.szx1 = body, szx1
        self.base = list(base) + ([(RTAG, rtag)] if rtag else [])
        self.b2_first, self.b2_last = b2_first, b2_last
        self.nblocks = max(1, -(-len(body) // (16 << szx1))) if body else 0
        self.n1 = 0        # next Block1 block
        self.answer = None  # the first response with the answer
        self.data = b""
        self.next2 = None  # next Block2 (num, szx) to ask, None: done
        self.etags = set()

    def done(self):
        return self.answer is not None and self.next2 is None

    def step(self):
        if self.n1 < self.nblocks:
            return self.block1_step()
        return self.block2_step()

    def block1_step(self):
        size = 16 << self.szx1
        n = self.n1
        chunk = self.body[n * size:(n + 1) * size]
        last = n == self.nblocks - 1
        opts = self.base + [(BLOCK1, block(n, 0 if last else 1, self.szx1))]
        if n == 0 and self.b2_first is not None:
            opts.append((BLOCK2, block(0, 0, self.b2_first)))
        if last and self.b2_last is not None:
            opts.append((BLOCK2, block(0, 0, self.b2_last)))
        r = self.c.send(self.path, self.method, opts=opts, payload=chunk).resp
        self.t.assertIsNotNone(r, f"no answer to Block1 {n}")
        self.n1 += 1
        if not last:
            self.t.assertEqual(r.code, "2.31", r)
            self.t.assertEqual(r.block(BLOCK1), (n, 1, self.szx1), r)  # echo, M=1
            return r
        self.take_first(r)
        return r

    def take_first(self, r):
        self.answer = r
        if r.code.startswith("2."):
            self.take(r)

    def take(self, r):
        self.t.assertTrue(r.code.startswith("2."), r)
        self.data += r.payload
        b2 = r.block(BLOCK2)
        if r.opt(ETAG) is not None:
            self.etags.add(r.opt(ETAG))
        self.next2 = (b2[0] + 1, b2[2]) if b2 and b2[1] else None

    def block2_step(self):
        if self.answer is None:  # a request without a body
            opts = list(self.base)
            if self.b2_first is not None:
                opts.append((BLOCK2, block(0, 0, self.b2_first)))
            r = self.c.send(self.path, self.method, opts=opts).resp
            self.t.assertIsNotNone(r, "no answer")
            self.take_first(r)
            return r
        num, szx = self.next2
        r = self.c.send(self.path, self.method,
                        opts=self.base + [(BLOCK2, block(num, 0, szx))]).resp
        self.t.assertIsNotNone(r, f"no answer to Block2 {num}")
        self.t.assertEqual(r.block(BLOCK2)[0], num, r)
        self.t.assertEqual(r.code, self.answer.code, r)
        self.take(r)
        return r


def run_interleaved(*transfers):
    while not all(t.done() for t in transfers):
        for t in transfers:
            if not t.done():
                t.step()


class BlockTest(StackTest):
    def setUp(self):
        super().setUp()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        super().tearDown()

    def client(self):
        c = BlockClient(self.s)
        self.clients.append(c)
        return c

    def stop_promptly(self):
        """SIGTERM: estgw exits with 0 at once, nothing left in flight (the
        stacks here have a 30 s shutdown_grace: waiting for it shows)."""
        for c in self.clients:
            c.close()
        self.clients = []
        t0 = time.monotonic()
        self.s.gw.send_signal(signal.SIGTERM)
        rc = self.s.gw.wait(timeout=60)
        took = time.monotonic() - t0
        log = self.s.log()
        self.assertEqual(rc, 0, log[-3000:])
        self.assertIn("(0 request(s) in flight", log)
        self.assertNotIn("still in flight", log)
        self.assertLess(took, 15.0, "SIGTERM waited for the shutdown grace")


class TestBlockwise(BlockTest):
    def test_E5_block1_echo_on_final_answer(self):
        """2.31 + Block1 echo (M=1) for each non-final block, and Block1 with
        the last NUM and M=0 in the separate 2.04 (RFC 7959 2.3, RFC 9148 Fig. 3)."""
        csr = csr_der(self.s.pki)
        t = Transfer(self, self.client(), WK + "/sen", "post", csr, szx1=2,
                     base=[(CF, uint(286))])
        run_interleaved(t)
        last = t.nblocks - 1
        self.assertGreater(last, 1)
        self.assertEqual(t.answer.code, "2.04", t.answer)
        self.assertEqual(t.answer.block(BLOCK1), (last, 0, 2), t.answer)
        self.assertEqual(t.answer.uint(CF), 281)
        certs = certs_of_pkcs7_der(t.data)
        self.assertEqual(pubkey_of_cert_der(certs[0]), pubkey_of_csr_der(csr))

    def test_E5_block1_echo_on_error_answer_to_last_block(self):
        """A 4.00 for the body (not a CSR) still carries Block1 NUM/M=0/SZX."""
        t = Transfer(self, self.client(), WK + "/sen", "post", b"\x30\x82" + b"\x00" * 98,
                     szx1=1, base=[(CF, uint(286))])
        while t.n1 < t.nblocks:
            r = t.block1_step()
        self.assertEqual(r.code, "4.00", r)
        self.assertEqual(r.block(BLOCK1), (3, 0, 1), r)

    def test_E4_missing_block_4_08_and_out_of_order(self):
        c = self.client()
        body = csr_der(self.s.pki)
        base = [(CF, uint(286))]
        r = c.send(WK + "/sen", "post", opts=base + [(BLOCK1, block(0, 1, 1))],
                   payload=body[:32]).resp
        self.assertEqual((r.code, r.block(BLOCK1)), ("2.31", (0, 1, 1)), r)
        r = c.send(WK + "/sen", "post", opts=base + [(BLOCK1, block(2, 1, 1))],
                   payload=body[64:96]).resp
        self.assertEqual(r.code, "4.08", r)
        self.assertIsNone(r.block(BLOCK1), r)
        # nothing was started for a block without block 0
        r = c.send(WK + "/sen", "post", opts=base + [(BLOCK1, block(1, 0, 1))],
                   payload=body[32:40]).resp
        self.assertEqual(r.code, "4.08", r)
        self.assertEqual(r.block(BLOCK1), (1, 0, 1), r)  # the answer to a last block
        self.assertRegex(self.s.log(), r"POST /.well-known/est/sen upstream=- code=4\.08")

    def test_E9_block1_szx7_reserved_4_00(self):
        """RFC 7959 2.2: SZX 7 in a request is 4.00, not an unchunked body."""
        c = self.client()
        csr = csr_der(self.s.pki)
        for value in (block(0, 0, 7), block(0, 1, 7)):
            r = c.send(WK + "/sen", "post", opts=[(CF, uint(286)), (BLOCK1, value)],
                       payload=csr).resp
            self.assertEqual(r.code, "4.00", r)
            self.assertIn(b"SZX 7", r.payload)
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), None)

    def test_E9_request_in_ack_message_not_answered(self):
        """RFC 7252 4.2: a request carried in an ACK is ignored, not answered NON."""
        c = self.client()
        r = c.send(WK + "/crts")  # the handshake, and a normal answer
        self.assertEqual(r.resp.code, "2.05", r.resp)
        r = c.send(WK + "/crts", mtype="ack", wait_ms=0)
        self.assertEqual(r.responses, [])
        wait_for(lambda: "request in an ACK message ignored" in self.s.log(),
                 what="the ignored-ACK log line")
        r = c.send("/.well-known/core")
        # whatever estgw had sent for the ACK would have come before this answer
        self.assertEqual([x.mine for x in r.responses], [True], r.responses)
        self.assertEqual(r.resp.code, "2.05")
        self.assertEqual(len(re.findall(r"GET /.well-known/est/crts ", self.s.log())), 1)

    def test_E7_early_block2_in_block0_only(self):
        """RFC 9148 App. B.2: Block2 SZX in block 0 of the Block1 request only;
        the answer comes in blocks of that size."""
        csr = csr_der(self.s.pki)
        t = Transfer(self, self.client(), WK + "/sen", "post", csr, szx1=2,
                     base=[(CF, uint(286))], b2_first=1)
        run_interleaved(t)
        self.assertEqual(t.answer.block(BLOCK2), (0, 1, 1), t.answer)
        self.assertEqual(len(t.answer.payload), 32)
        self.assertEqual(t.answer.block(BLOCK1)[1:], (0, 2), t.answer)
        self.assertEqual(t.answer.uint(SIZE2), len(t.data))
        self.assertEqual(len(t.etags), 1)
        certs = certs_of_pkcs7_der(t.data)
        self.assertEqual(pubkey_of_cert_der(certs[0]), pubkey_of_csr_der(csr))

    def test_E7_block2_in_last_block_figure_14(self):
        csr = csr_der(self.s.pki)
        t = Transfer(self, self.client(), WK + "/sen", "post", csr, szx1=3,
                     base=[(CF, uint(286))], b2_last=0)
        run_interleaved(t)
        self.assertEqual(t.answer.block(BLOCK2), (0, 1, 0), t.answer)
        self.assertEqual(pubkey_of_cert_der(certs_of_pkcs7_der(t.data)[0]),
                         pubkey_of_csr_der(csr))

    def test_E8_repeated_last_block1_gets_the_same_answer(self):
        """The last Block1 block again as a new CON (new MID and token) after
        the answer went: the same answer, not 4.08, and nothing upstream."""
        csr = csr_der(self.s.pki)
        c = self.client()
        t = Transfer(self, c, WK + "/sen", "post", csr, szx1=2,
                     base=[(CF, uint(286)), (ACCEPT, uint(287))], rtag=b"\x01\x02")
        run_interleaved(t)
        self.assertEqual(t.answer.code, "2.04")
        last = t.nblocks - 1
        opts = t.base + [(BLOCK1, block(last, 0, 2))]
        again = c.send(WK + "/sen", "post", opts=opts, payload=csr[last * 64:]).resp
        self.assertEqual(again.code, "2.04", again)
        self.assertEqual(again.payload, t.data)  # the same certificate, byte for byte
        self.assertEqual(again.block(BLOCK1), (last, 0, 2), again)
        self.assertEqual(pubkey_of_cert_der(again.payload), pubkey_of_csr_der(csr))
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), 1)
        self.assertIn("answer repeated for the last Block1 block", self.s.log())
        # another last block (other bytes) is not a repeat
        other = c.send(WK + "/sen", "post", opts=opts, payload=csr[last * 64:-1] + b"\x00").resp
        self.assertEqual(other.code, "4.08", other)


class TestInterleaved(BlockTest):
    """E6: two multi-block answers on one DTLS session, one request at a
    time, alternately; each body byte for byte as fetched on its own."""
    stack_kwargs = {"extra_server": "shutdown_grace = 30"}

    def reference(self, path, accept=None):
        r = self.s.coap(path, accept=accept)
        self.assertEqual(r.rc, 0, r)
        return r.payload

    def test_E6_crts_and_att_interleaved(self):
        crts_ref = self.reference(WK + "/crts", 281)
        att_ref = self.reference(WK + "/att")
        c = self.client()
        a = Transfer(self, c, WK + "/crts", base=[(ACCEPT, uint(281))], b2_first=0)
        b = Transfer(self, c, WK + "/att", b2_first=0)
        run_interleaved(a, b)
        self.assertEqual(a.data, crts_ref)
        self.assertEqual(b.data, att_ref)
        self.assertEqual(len(certs_of_pkcs7_der(a.data)), 2)
        self.assertIn("challengePassword",
                      openssl("asn1parse", "-inform", "DER", data=b.data).decode())
        self.assertEqual(len(a.etags), 1)
        self.assertEqual(len(b.etags), 1)
        self.assertNotEqual(a.etags, b.etags)
        self.stop_promptly()

    def test_E6_crts_accept_281_and_287_interleaved(self):
        ref281 = self.reference(WK + "/crts", 281)
        ref287 = self.reference(WK + "/crts", 287)
        c = self.client()
        a = Transfer(self, c, WK + "/crts", base=[(ACCEPT, uint(281))], b2_first=0)
        b = Transfer(self, c, WK + "/crts", base=[(ACCEPT, uint(287))], b2_first=0)
        run_interleaved(a, b)
        self.assertEqual(a.data, ref281)
        self.assertEqual(b.data, ref287)
        self.assertEqual(a.answer.uint(CF), 281)
        self.assertEqual(b.answer.uint(CF), 287)
        openssl("x509", "-inform", "DER", "-noout", data=b.data)
        self.stop_promptly()

    def test_E6_block2_made_afresh_while_another_transfer_runs(self):
        """A GET for block 1 of /att with nothing kept goes upstream (the CA is
        slow); meanwhile a /crts transfer starts on the session. The separate
        answer is /att's block 1, and the request is not left in flight
        (libcoap 4.3.1 answered the re-run from the /crts Block2 state and
        never called the handler: '1 request(s) in flight' at SIGTERM)."""
        att_ref = self.reference(WK + "/att")
        c = self.client()
        self.assertEqual(c.send(WK + "/crts", opts=[(ACCEPT, uint(281))]).resp.code, "2.05")
        self.s.ca_control(mode="delay=1.0", op="csrattrs", count=1)
        sent = c.send(WK + "/att", opts=[(BLOCK2, block(1, 0, 0))], wait_ms=0)
        self.assertEqual(sent.responses, [])
        crts = c.send(WK + "/crts", opts=[(ACCEPT, uint(281)), (BLOCK2, block(0, 0, 0))]).resp
        self.assertEqual(crts.block(BLOCK2), (0, 1, 0), crts)
        late = c.wait()
        self.assertEqual(late.end, "done")
        self.stop_promptly()
        att = late.responses[0]
        self.assertEqual((att.type, att.code), ("con", "2.05"), att)
        self.assertEqual(att.block(BLOCK2), (1, 1, 0), att)
        self.assertEqual(att.payload, att_ref[16:32])
        self.assertNotEqual(att.opt(ETAG), crts.opt(ETAG))

    def test_E6_sen_and_skg_interleaved_then_prompt_exit(self):
        """Block1 and Block2 phases of two POSTs alternate; then SIGTERM exits
        at once with 0 and nothing in flight."""
        csr = csr_der(self.s.pki)
        c = self.client()
        a = Transfer(self, c, WK + "/sen", "post", csr, szx1=2,
                     base=[(CF, uint(286))], b2_last=1, rtag=b"\x0a")
        b = Transfer(self, c, WK + "/skg", "post", csr, szx1=2,
                     base=[(CF, uint(286))], b2_last=1, rtag=b"\x0b")
        run_interleaved(a, b)
        self.assertEqual(pubkey_of_cert_der(certs_of_pkcs7_der(a.data)[0]),
                         pubkey_of_csr_der(csr))
        parts = multipart_core(b.data)
        self.assertEqual([cf for cf, _ in parts], [284, 281])
        cert = certs_of_pkcs7_der(parts[1][1])[0]
        self.assertEqual(pubkey_of_pkcs8(parts[0][1]), pubkey_of_cert_der(cert))
        self.assertEqual(self.s.ca_stats()["ops"].get("simpleenroll"), 1)
        self.assertEqual(self.s.ca_stats()["ops"].get("serverkeygen"), 1)
        self.stop_promptly()


class TestBlockwiseLimits(BlockTest):
    stack_kwargs = {"extra_server": "max_body = 1024"}

    def test_E1_size1_over_limit_4_13_with_size1(self):
        c = self.client()
        r = c.send(WK + "/sen", "post",
                   opts=[(CF, uint(286)), (BLOCK1, block(0, 1, 2)), (SIZE1, uint(4000))],
                   payload=b"\x30" * 64).resp
        self.assertEqual(r.code, "4.13", r)
        self.assertEqual(r.uint(SIZE1), 1024)

    def test_E1_body_over_limit_4_13_with_size1(self):
        c = self.client()
        for n in range(20):
            r = c.send(WK + "/sen", "post", opts=[(CF, uint(286)), (BLOCK1, block(n, 1, 6))],
                       payload=b"\x30" * 1024).resp
            if r.code != "2.31":
                break
        self.assertEqual((n, r.code), (1, "4.13"), r)
        self.assertEqual(r.uint(SIZE1), 1024)


if __name__ == "__main__":
    harness.main(__name__)
