#!/usr/bin/env python3
"""Several instances sharing state through Redis ([cluster], docs/conformance.md K1, K2).

A real redis-server on a private port, two or three estgw processes with
[cluster] and one test CA (its request counters tell how often it issued):
a deferred CSR retried on another instance, a lost answer resent to another
instance, kill -9 of the instance whose call is in flight, the rate limit
across instances, Redis stopped, started and stopped (SIGSTOP) mid-run, its
scripts flushed mid-run (SCRIPT FLUSH), no private key in clear in Redis, and
nftables steering in a network namespace.

Run one test: test_cluster.py TestCluster.test_K1_deferred_csr_retried_on_other_instance
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import (ESTGW, Stack, StackTest, assert_issued_for, certs_of_pkcs7_der,  # noqa: E402
                     free_tcp_port, new_csr, main, pubkey_of_cert_der, pubkey_of_csr_der,
                     wait_for)

WK = "/.well-known/est"
REDIS = shutil.which("redis-server")


class Resp:
    """A few Redis commands over RESP (the test's own client, not hiredis)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return int(rest) if kind == b":" else rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"bad RESP {line!r}")

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._read()

    def all_values(self):
        """Every key and the bytes it holds (strings, hashes, streams)."""
        values = {}
        for k in self.cmd("KEYS", "*"):
            t = self.cmd("TYPE", k)
            if t == b"string":
                values[k] = [self.cmd("GET", k)]
            elif t == b"hash":
                values[k] = self.cmd("HGETALL", k)
            elif t == b"stream":
                values[k] = [f for _, fields in self.cmd("XRANGE", k, "-", "+") for f in fields]
            else:
                values[k] = []
        return values


class RedisServer:
    def __init__(self, tmpdir):
        self.dir = tmpdir
        self.port = free_tcp_port()
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", self.dir],
                                     stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            try:
                r = Resp(self.port)
                ok = r.cmd("PING") == b"PONG"
                r.close()
                return ok
            except OSError:
                return False
        wait_for(up, what="redis-server")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self):
        return Resp(self.port)


def redis_and_seal(d):
    """A started RedisServer in @d and the instances' seal key file beside it."""
    redis = RedisServer(d)
    redis.start()
    seal = os.path.join(d, "seal.key")
    with open(seal, "wb") as f:
        f.write(os.urandom(32))
    os.chmod(seal, 0o600)
    return redis, seal


def cluster_conf(redis_port, node, seal, claim_ttl=2, metrics_port=None, extra=""):
    """The [cluster] (and [metrics]) part of an instance's file."""
    text = f"\n[cluster]\nredis = 127.0.0.1:{redis_port}\nnode = {node}\nseal_key = {seal}\n" \
           f"claim_ttl = {claim_ttl}\nstore_timeout = 200\n{extra}"
    if metrics_port:
        text += f"\n[metrics]\nlisten = 127.0.0.1:{metrics_port}\n"
    return text


@unittest.skipUnless(REDIS, "redis-server is not installed (tools/deps.sh)")
class ClusterTest(unittest.TestCase):
    """A Redis, instance A with the test CA, instances B (and C) sharing it."""
    nodes = ("a", "b")
    extra_server = ""
    extra_upstream = "answer_within = 3"
    claim_ttl = 2

    def setUp(self):
        self.killed = set()
        self.a = None
        self.insts = []
        first = Stack(ca=False)
        self.tmp = first.dir
        first.cleanup()
        os.makedirs(self.tmp, exist_ok=True)
        self.redis, self.seal = redis_and_seal(self.tmp)
        self.metrics = {}
        for i, node in enumerate(self.nodes):
            mport = free_tcp_port()
            conf = cluster_conf(self.redis.port, node, self.seal, claim_ttl=self.claim_ttl,
                                metrics_port=mport)
            kw = {"extra_server": self.extra_server, "extra_upstream": self.extra_upstream,
                  "extra_policy": conf}
            if i == 0:
                s = Stack(**kw)
                self.a = s
            else:
                s = Stack(ca=False, upstream_url=f"https://127.0.0.1:{self.a.ca_port}{WK}", **kw)
            self.metrics[node] = mport
            self.insts.append(s)
        for s in self.insts:
            s.start()
        for s in self.insts:
            wait_for(lambda s=s: "store 127.0.0.1" in s.log() and "connected" in s.log(),
                     what="instance connected to redis")

    def tearDown(self):
        problems = []
        for s in reversed(self.insts):
            s.stop()
        harness.show_logs_if_failed(self, [(f"estgw.log of instance {i}", s.log())
                                           for i, s in enumerate(self.insts)])
        for s in reversed(self.insts):
            rc = s.stop()
            log = s.log()
            if s in self.killed:
                continue
            if rc != 0:
                problems.append(f"estgw did not exit cleanly (rc={rc}):\n{log[-3000:]}")
            for bad in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
                if bad in log:
                    problems.append(f"{bad} in the log:\n{log[-3000:]}")
        self.redis.stop()
        if not os.environ.get("ESTGW_KEEP"):
            for s in self.insts:
                s.cleanup()
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(problems, [])

    # ---- helpers
    def sen(self, inst, csr, **kw):
        return inst.coap(WK + "/sen", method="post", cf=286, payload=csr, **kw)

    def expect_cert(self, r, csr):
        self.assertEqual(r.rc, 0, r)
        return assert_issued_for(self, r.payload, csr, r)

    def issued(self):
        return self.a.ca_stats()["issued"]

    def http(self, node, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics[node]}{path}",
                                        timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


class TestCluster(ClusterTest):
    def test_K1_deferred_csr_retried_on_other_instance(self):
        """5.03 via A while the CA holds the request; the retry via B waits on A's
        claim and gets the certificate A published; the CA issued once."""
        a, b = self.insts
        csr = new_csr(self.tmp, "deferred")
        a.ca_control(mode="hold", op="simpleenroll", count=1)
        r = self.sen(a, csr)
        self.assertEqual(r.code, "5.03", r)
        wait_for(lambda: a.ca_stats()["held"] == 1, what="held request")
        out = {}
        t = threading.Thread(target=lambda: out.update(r=self.sen(b, csr)))
        t.start()
        wait_for(lambda: "another instance holds the claim" in b.log(), what="B sees A's claim")
        a.ca_control(release=True)
        t.join()
        cert = self.expect_cert(out["r"], csr)
        self.assertEqual(self.issued(), 1)
        self.assertRegex(b.log(), r"POST /.well-known/est/sen upstream=- code=2\.04 .*from the store")
        # and once more via A (its own kept answer): the same certificate
        self.assertEqual(certs_of_pkcs7_der(self.sen(a, csr).payload)[0], cert)
        self.assertEqual(self.issued(), 1)

    def test_K1_lost_answer_resent_via_other_instance(self):
        """A answered (the answer was lost); the same CSR via B is answered from the
        store with the same certificate, no second call to the CA."""
        a, b = self.insts
        csr = new_csr(self.tmp, "lost")
        first = self.expect_cert(self.sen(a, csr), csr)
        again = self.expect_cert(self.sen(b, csr), csr)
        self.assertEqual(first, again)
        self.assertEqual(a.ca_stats()["ops"].get("simpleenroll"), 1)
        self.assertEqual(self.issued(), 1)

    def test_K1_kill_9_in_flight_retry_completes_issued_once(self):
        """kill -9 of A while its CA call is held: A's claim expires (claim_ttl), B
        takes it over and completes; the held call found its client gone, so the
        CA issued exactly once."""
        a, b = self.insts
        csr = new_csr(self.tmp, "killed")
        a.ca_control(mode="hold", op="simpleenroll", count=1)
        t = threading.Thread(target=lambda: self.sen(a, csr, timeout=2))
        t.start()
        wait_for(lambda: a.ca_stats()["held"] == 1, what="A's call held by the CA")
        a.gw.send_signal(signal.SIGKILL)
        a.gw.wait()
        self.killed.add(a)
        t.join()
        for _ in range(3):  # 5.03 + Max-Age while A's claim lives, then the answer
            r = self.sen(b, csr)
            if r.code != "5.03":
                break
        cert = self.expect_cert(r, csr)
        self.assertIsNotNone(cert)
        a.ca_control(release=True)
        wait_for(lambda: a.ca_stats()["abandoned"] == 1, what="the held call abandoned")
        self.assertEqual(self.issued(), 1)
        self.assertEqual(self.a.ca_stats()["ops"].get("simpleenroll"), 2)

    def test_K1_private_key_never_in_clear_in_redis(self):
        """skg via A, the same request via B gets the same key from the store; no
        Redis value holds the key (or any piece of the answer) in clear."""
        a, b = self.insts
        csr = new_csr(self.tmp, "skg")
        r1 = a.coap(WK + "/skg", method="post", cf=286, accept=62, payload=csr, block=64)
        self.assertEqual(r1.rc, 0, r1)
        i = r1.payload.find(b"\x30\x81\x87\x02\x01\x00")  # the P-256 PKCS#8
        self.assertGreaterEqual(i, 0, "no PKCS#8 key in the answer")
        key = r1.payload[i:i + 138]
        subprocess.run(["openssl", "pkey", "-inform", "DER", "-noout"], input=key, check=True)
        r2 = b.coap(WK + "/skg", method="post", cf=286, accept=62, payload=csr, block=64)
        self.assertEqual(r2.rc, 0, r2)
        self.assertEqual(r2.payload, r1.payload)
        self.assertEqual(a.ca_stats()["ops"].get("serverkeygen"), 1)
        red = self.redis.client()
        values = red.all_values()
        red.close()
        self.assertTrue(any(k.startswith(b"estgw:a:") for k in values), values.keys())
        windows = [key[j:j + 16] for j in range(0, len(key) - 16, 8)]
        windows += [r1.payload[j:j + 16] for j in range(0, len(r1.payload) - 16, 64)]
        import base64
        b64 = base64.b64encode(key)
        for k, vals in values.items():
            for v in vals:
                for w in windows:
                    self.assertNotIn(w, v, f"a piece of the answer in clear under {k!r}")
                self.assertNotIn(b64[8:40], v)
                self.assertNotIn(b"PRIVATE KEY", v)


class TestClusterRate(ClusterTest):
    extra_server = "rate_limit = 6"

    def shared_count(self, node):
        """Requests of this instance the shared bucket counted and answered."""
        status, text = self.http(node, "/metrics")
        self.assertEqual(status, 200)
        for line in text.splitlines():
            if line.startswith("estgw_cluster_rate_shared_total "):
                return int(line.split()[1])
        self.fail("no estgw_cluster_rate_shared_total in /metrics")

    def test_K1_rate_limit_across_instances(self):
        """6 a minute per client: 4 requests via A, then B admits the 2 left in the
        shared bucket and answers the next 4.29. The shared bucket counts a
        request a few ms after admitting it (an update waits up to 10 ms for
        company), so each step waits until the instance has the bucket's answer."""
        a, b = self.insts
        for _ in range(4):
            self.assertEqual(a.coap(WK + "/crts").rc, 0)
        wait_for(lambda: self.shared_count("a") == 4, what="A's 4 requests in the shared bucket")
        got = []
        for i in range(3):
            got.append(b.coap(WK + "/crts"))
            if i < 2:
                wait_for(lambda: self.shared_count("b") == i + 1,
                         what=f"B's request {i + 1} in the shared bucket")
        self.assertEqual([r.rc for r in got[:2]], [0, 0], got)
        self.assertEqual(got[2].code, "4.29", got)
        red = self.redis.client()
        self.assertEqual(len(red.cmd("KEYS", "estgw:r:*")), 1)
        red.close()

    def test_K1_store_stalled_the_last_answer_decides(self):
        """The store stalled (SIGSTOP) after B learnt that 1 request is left:
        B admits that one on its own bucket and refuses the next, never
        waiting for the store; once the store answers, the held request is
        counted in the shared bucket and B still refuses."""
        a, b = self.insts
        for _ in range(4):
            self.assertEqual(a.coap(WK + "/crts").rc, 0)
        wait_for(lambda: self.shared_count("a") == 4, what="A's 4 requests in the shared bucket")
        self.assertEqual(b.coap(WK + "/crts").rc, 0)
        wait_for(lambda: self.shared_count("b") == 1, what="B's first request counted")
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            self.assertEqual(b.coap(WK + "/crts").rc, 0)
            self.assertEqual(b.coap(WK + "/crts").code, "4.29")
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        wait_for(lambda: self.shared_count("b") == 2, what="B's held request counted")
        self.assertEqual(b.coap(WK + "/crts").code, "4.29")
        red = self.redis.client()
        (key,) = red.cmd("KEYS", "estgw:r:*")
        units = int(red.cmd("HGET", key, "u"))
        red.close()
        self.assertLess(units, 60000, "the shared bucket still has a whole request")


class TestClusterStoreOutage(ClusterTest):
    def test_K1_redis_stopped_started_and_stalled(self):
        """Redis stopped: requests succeed on local state, one log line per outage,
        /metrics and /healthz say so; started again: instances reconnect and share
        again. Stalled (SIGSTOP): a request waits at most store_timeout, then runs
        locally."""
        a, b = self.insts
        self.redis.stop()
        for s in (a, b):
            wait_for(lambda s=s: "unreachable" in s.log(), what="outage noticed")
        csr = new_csr(self.tmp, "down")
        self.expect_cert(self.sen(a, csr), csr)
        csr_b = new_csr(self.tmp, "down2")
        self.expect_cert(self.sen(b, csr_b), csr_b)
        self.assertIn("estgw_cluster_store_up 0", self.http("a", "/metrics")[1])
        self.assertEqual(self.http("a", "/healthz"), (200, "ok\nstore: down, serving from local state\n"))
        time.sleep(0.8)  # several reconnect attempts (100, 200, 400 ms ...): still one line
        self.assertEqual(a.log().count("unreachable"), 1, a.log())
        self.redis.start()
        for s in (a, b):
            wait_for(lambda s=s: "reachable again" in s.log(), timeout=20, what="reconnect")
        self.assertIn("estgw_cluster_store_up 1", self.http("a", "/metrics")[1])
        self.assertIn("estgw_cluster_store_outages_total 1", self.http("a", "/metrics")[1])
        self.assertEqual(self.http("b", "/healthz"), (200, "ok\nstore: up\n"))
        csr2 = new_csr(self.tmp, "back")
        first = self.expect_cert(self.sen(a, csr2), csr2)
        self.assertEqual(self.expect_cert(self.sen(b, csr2), csr2), first)
        self.assertRegex(b.log(), r"code=2\.04 .*from the store")
        # stalled: TCP is up, no answers
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            csr3 = new_csr(self.tmp, "stalled")
            t0 = time.monotonic()
            self.expect_cert(self.sen(a, csr3), csr3)
            self.assertLess(time.monotonic() - t0, 3.0)  # answer_within never reached
            self.assertIn("no answer within store_timeout 200 ms", a.log())
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        wait_for(lambda: a.log().count("reachable again") == 2, timeout=20, what="reconnect")
        self.assertEqual(self.issued(), 4)


def redis_info(red, section):
    """INFO @section as {field: value} (Redis's own counters)."""
    text = red.cmd("INFO", section).decode()
    return dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)


def kept_answers(red):
    return len(red.cmd("KEYS", "estgw:a:*"))


class TestClusterScripts(ClusterTest):
    """The scripts are loaded once per connection and called with EVALSHA; a
    SCRIPT FLUSH mid-run loses no request and the store is used again."""
    claim_ttl = 30  # no claim refresh (every 10 s) during a test

    def reloaded(self, inst):
        wait_for(lambda: "lost the scripts" in inst.log(), what="NOSCRIPT noticed")
        wait_for(lambda: "reachable again" in inst.log(), what="reconnected, scripts loaded")

    def test_K1_script_flush_mid_run_next_enrolment_succeeds(self):
        """Before: the store is called by EVALSHA only (Redis's command counters), no
        EVAL. SCRIPT FLUSH; the next enrolment via A still gets its certificate (its
        claim got NOSCRIPT: answered from local state), one log line, and A
        reconnects, loading the scripts again. After: an answer published via A is
        kept in Redis and answered from the store via B (the SHA1 of a script is
        the same on every instance, so B never missed them), no NOSCRIPT any more,
        no second issuance."""
        a, b = self.insts
        red = self.redis.client()
        csr0 = new_csr(self.tmp, "before")
        self.expect_cert(self.sen(a, csr0), csr0)
        stats = redis_info(red, "commandstats")
        self.assertIn("cmdstat_evalsha", stats)
        self.assertNotIn("cmdstat_eval", stats)
        self.assertIn("cmdstat_script|load", stats)
        self.assertEqual(red.cmd("SCRIPT", "FLUSH"), b"OK")
        csr1 = new_csr(self.tmp, "after-flush")
        self.expect_cert(self.sen(a, csr1), csr1)
        self.reloaded(a)
        self.assertIn("errorstat_NOSCRIPT", redis_info(red, "errorstats"))
        red.cmd("CONFIG", "RESETSTAT")
        csr2 = new_csr(self.tmp, "again")
        first = self.expect_cert(self.sen(a, csr2), csr2)
        self.assertEqual(self.expect_cert(self.sen(b, csr2), csr2), first)
        self.assertRegex(b.log(), r"code=2\.04 .*from the store")
        self.assertGreaterEqual(kept_answers(red), 1)
        self.assertNotIn("errorstat_NOSCRIPT", redis_info(red, "errorstats"))
        self.assertIn("cmdstat_evalsha", redis_info(red, "commandstats"))
        red.close()
        self.assertEqual(a.log().count("lost the scripts"), 1, a.log())
        self.assertNotIn("lost the scripts", b.log())
        self.assertEqual(self.issued(), 3)  # before, after the flush, again

    def test_K1_script_flush_while_in_flight_publish_sent_again(self):
        """A's CA call is held; SCRIPT FLUSH; the call completes and A's publish gets
        NOSCRIPT: A reconnects and sends it again, so the answer is kept in Redis
        and B answers that CSR from the store: the CA issued it once."""
        a, b = self.insts
        red = self.redis.client()
        csr = new_csr(self.tmp, "inflight")
        a.ca_control(mode="hold", op="simpleenroll", count=1)
        self.assertEqual(self.sen(a, csr).code, "5.03")
        wait_for(lambda: a.ca_stats()["held"] == 1, what="A's call held by the CA")
        self.assertEqual(red.cmd("SCRIPT", "FLUSH"), b"OK")
        self.assertEqual(kept_answers(red), 0)
        a.ca_control(release=True)
        self.reloaded(a)
        wait_for(lambda: kept_answers(red) == 1, what="A's answer published again")
        red.close()
        self.expect_cert(self.sen(b, csr), csr)
        self.assertRegex(b.log(), r"code=2\.04 .*from the store")
        self.assertEqual(a.ca_stats()["ops"].get("simpleenroll"), 1)
        self.assertEqual(self.issued(), 1)


@unittest.skipUnless(REDIS, "redis-server is not installed (tools/deps.sh)")
class TestClusterBrski(unittest.TestCase):
    """K1e: cBRSKI vs/es telemetry of two registrar instances lands in one Redis
    stream. coap-client-openssl is the pledge (its IDevID, the provisional DTLS
    accept), as in test_brski.py; the test reads the stream with its own RESP
    client."""

    def setUp(self):
        from test_brski import BrskiStack
        self.insts = []
        self.tmp = None
        for node in ("reg-a", "reg-b"):
            s = BrskiStack(masa=False, brski_extra=lambda st, node=node: self.conf(st, node))
            self.insts.append(s)
        for s in self.insts:
            s.start()
        for s in self.insts:
            wait_for(lambda s=s: "connected, node" in s.log(), what="instance connected to redis")

    def conf(self, stack, node):
        if not self.tmp:  # one Redis and one seal key for both, in the first stack's dir
            self.tmp = stack.dir
            self.redis, self.seal = redis_and_seal(self.tmp)
        return cluster_conf(self.redis.port, node, self.seal)

    def tearDown(self):
        problems = []
        for s in reversed(self.insts):
            s.stop()
        harness.show_logs_if_failed(self, [(f"estgw.log of instance {i}", s.log())
                                           for i, s in enumerate(self.insts)])
        for s in reversed(self.insts):
            rc = s.stop()
            log = s.log()
            if rc != 0:
                problems.append(f"estgw did not exit cleanly (rc={rc}):\n{log[-3000:]}")
            for bad in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
                if bad in log:
                    problems.append(f"{bad} in the log:\n{log[-3000:]}")
        if self.tmp:
            self.redis.stop()
        if not os.environ.get("ESTGW_KEEP"):
            for s in self.insts:
                s.cleanup()
        self.assertEqual(problems, [])

    def test_K1e_vs_es_telemetry_in_the_redis_stream(self):
        import cbor_cose as cc  # tests/masa, on the path once test_brski is imported
        a, b = self.insts
        ok = cc.dumps({"version": 1, "status": True})
        r = a.pledge("/.well-known/brski/vs", "pledge", ok, cf=60, accept=None)
        self.assertEqual(r.rc, 0, r)
        bad = cc.dumps({"version": 1, "status": False, "reason": "no EST server"})
        r = b.pledge("/.well-known/brski/es", "pledge", bad, cf=60, accept=None)
        self.assertEqual(r.rc, 0, r)
        red = self.redis.client()
        try:  # XADD is sent without waiting for its reply: wait until both are there
            wait_for(lambda: red.cmd("XLEN", "estgw:brski") == 2, what="two stream records")
            entries = red.cmd("XRANGE", "estgw:brski", "-", "+")
        finally:
            red.close()
        recs = [dict(zip(f[0::2], f[1::2])) for _, f in entries]
        sessions = []
        for inst, kind in ((a, "vs"), (b, "es")):
            m = re.search(kind + r' serial="TEST0001" session=(.+?) status=', inst.log())
            self.assertIsNotNone(m, inst.log())
            sessions.append(m.group(1).encode())
        self.assertEqual(recs, [
            {b"node": b"reg-a", b"kind": b"vs", b"serial": b"TEST0001", b"session": sessions[0],
             b"status": b"success", b"reason": b""},
            {b"node": b"reg-b", b"kind": b"es", b"serial": b"TEST0001", b"session": sessions[1],
             b"status": b"failure", b"reason": b"no EST server"},
        ])


class TestNoCluster(StackTest):
    """K2: without [cluster] there is no store: an enrollment dials nothing but the
    CA (a listener on Redis's default port 6379 is never connected to), nothing
    is logged about a store, /metrics has no cluster series, /healthz no store line."""

    def setUp(self):
        self.listener = socket.socket()
        try:
            self.listener.bind(("127.0.0.1", 6379))
            self.listener.listen(8)
            self.listener.setblocking(False)
        except OSError:  # in use here: the other checks still hold
            self.listener.close()
            self.listener = None
        self.mport = free_tcp_port()
        self.stack_kwargs = {"extra_policy": f"\n[metrics]\nlisten = 127.0.0.1:{self.mport}\n"}
        super().setUp()

    def tearDown(self):
        if self.listener:
            self.listener.close()
        super().tearDown()

    def test_K2_without_cluster_no_store(self):
        csr = new_csr(self.s.dir, "k2")
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(pubkey_of_cert_der(certs_of_pkcs7_der(r.payload)[0]), pubkey_of_csr_der(csr))
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=5) as m:
            metrics = m.read().decode()
        self.assertIn("estgw_requests_total", metrics)
        self.assertNotIn("estgw_cluster", metrics)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/healthz", timeout=5) as h:
            self.assertEqual((h.status, h.read()), (200, b"ok\n"))
        self.assertEqual(self.s.ca_stats()["issued"], 1)
        log = self.s.log()
        self.assertNotRegex(log, r" cluster: |store ")
        if self.listener:
            with self.assertRaises(BlockingIOError):
                self.listener.accept()


def have_netns():
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        return False
    name = f"estgw-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if ok:
        ok = subprocess.run(["ip", "netns", "exec", name, "nft", "list", "ruleset"],
                            capture_output=True).returncode == 0
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


NETNS_OK = have_netns()


def dtls_client_hello(cookie=b"", seq=0, rnd=None):
    """A DTLS 1.2 ClientHello (RFC 6347 §4.2.1) offering ECDHE-ECDSA on P-256."""
    suites = bytes.fromhex("c0aec02bc0acc023")
    exts = bytes.fromhex("000a00040002"  "0017"          # supported_groups: secp256r1
                         "000b000201" "00"               # ec_point_formats: uncompressed
                         "000d00040002" "0403")          # signature_algorithms: ecdsa_sha256
    body = (b"\xfe\xfd" + (rnd or os.urandom(32)) + b"\x00" + bytes([len(cookie)]) + cookie +
            len(suites).to_bytes(2, "big") + suites + b"\x01\x00" + len(exts).to_bytes(2, "big") + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + seq.to_bytes(2, "big") + b"\x00\x00\x00" + \
        len(body).to_bytes(3, "big") + body
    return b"\x16\xfe\xfd" + b"\x00\x00" + seq.to_bytes(6, "big") + len(hs).to_bytes(2, "big") + hs


def handshake_type(record):
    """(handshake type, body) of the first handshake message of a DTLS record."""
    if len(record) < 25 or record[0] != 22:
        return None, b""
    return record[13], record[25:]


@unittest.skipUnless(NETNS_OK, "needs root, nft and ip netns (Debian nftables, iproute2)")
class TestNftSteering(unittest.TestCase):
    """K1 load balancing: one address, nftables `jhash ip saddr . udp sport mod 2`
    DNAT to two instances, in a network namespace made by the test. 1,000 light
    devices (a DTLS ClientHello, the HelloVerifyRequest's cookie, the ClientHello
    with it): every device's cookie exchange stays on one instance (a cookie is
    valid only where it was made, so a device steered elsewhere would get a
    second HelloVerifyRequest instead of a ServerHello), and nft's per-instance
    counters show the spread."""
    DEVICES = int(os.environ.get('ESTGW_NFT_DEVICES', '1000'))

    def setUp(self):
        self.ns = f"estgw-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)
        self.stacks = []

    def tearDown(self):
        for s in self.stacks:
            s.stop()
            s.cleanup()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)

    def test_K1_nft_jhash_steers_each_device_to_one_instance(self):
        vip = 5684
        ports = []
        extra = "max_handshakes = 5000\nmax_sessions = 5000"
        for i in range(2):
            s = Stack(ca=False, upstream_url="https://127.0.0.1:9/.well-known/est",
                      extra_server=extra)
            s.port = 20000 + i  # inside the namespace: any port is free
            with open(s.conf) as f:
                text = re.sub(r"listen = 127\.0\.0\.1:\d+", f"listen = 127.0.0.1:{s.port}", f.read())
            with open(s.conf, "w") as f:
                f.write(text)
            self.stacks.append(s)
            ports.append(s.port)
        rules = f"""table ip lb {{
  chain to0 {{
    meta l4proto udp counter dnat to 127.0.0.1:{ports[0]}
  }}
  chain to1 {{
    meta l4proto udp counter dnat to 127.0.0.1:{ports[1]}
  }}
  chain out {{
    type nat hook output priority -100;
    udp dport {vip} jhash ip saddr . udp sport mod 2 vmap {{ 0 : jump to0, 1 : jump to1 }}
  }}
}}
"""
        subprocess.run(["ip", "netns", "exec", self.ns, "nft", "-f", "-"], input=rules.encode(),
                       check=True)
        for s in self.stacks:  # estgw inside the namespace; the CA is never needed
            s.gw_log = open(s.log_path, "wb")
            s.gw = subprocess.Popen(["ip", "netns", "exec", self.ns, ESTGW, "-c", s.conf],
                                    stdout=s.gw_log, stderr=subprocess.STDOUT)
        for s in self.stacks:
            wait_for(lambda s=s: "ready" in s.log() or s.gw.poll() is not None, timeout=60,
                     what="estgw ready")
            self.assertIsNone(s.gw.poll(), s.log())
        script = os.path.join(self.stacks[0].dir, "devices.py")
        with open(script, "w") as f:
            f.write(DEVICES_SCRIPT)
        out = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, script, str(vip),
                              str(self.DEVICES), os.path.abspath(__file__)],
                             capture_output=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        ok, other = map(int, out.stdout.split())
        self.assertEqual((ok, other), (self.DEVICES, 0), out.stderr.decode())
        counters = subprocess.run(["ip", "netns", "exec", self.ns, "nft", "list", "table", "ip", "lb"],
                                  capture_output=True, check=True).stdout.decode()
        per = [int(n) for n in re.findall(r"counter packets (\d+)", counters)]
        self.assertEqual(sum(per), self.DEVICES, counters)  # one NAT decision per device
        for n in per:  # jhash spreads: each instance gets a fair share
            self.assertGreater(n, self.DEVICES * 0.4, counters)


DEVICES_SCRIPT = r'''
import os, resource, select, socket, sys, time
sys.path.insert(0, os.path.dirname(sys.argv[3]))
# every device keeps its socket (its source port) to the end: a port used
# again would be an old device's flow, session and conntrack entry
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
keep = []
from test_cluster import dtls_client_hello, handshake_type
vip, n = int(sys.argv[1]), int(sys.argv[2])
ok = other = 0
batch = 100
for start in range(0, n, batch):
    socks = []
    for _ in range(min(batch, n - start)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", vip))
        rnd = os.urandom(32)
        s.send(dtls_client_hello(rnd=rnd))
        socks.append([s, rnd, 0])
    deadline = time.monotonic() + 5
    while any(st < 2 for _, _, st in socks) and time.monotonic() < deadline:
        r, _, _ = select.select([x[0] for x in socks if x[2] < 2], [], [], 1)
        for s in r:
            x = next(x for x in socks if x[0] is s)
            t, body = handshake_type(s.recv(4096))
            if x[2] == 0 and t == 3:  # HelloVerifyRequest: version(2) cookie_len cookie
                cookie = body[3:3 + body[2]]
                s.send(dtls_client_hello(cookie=cookie, seq=1, rnd=x[1]))
                x[2] = 1
            elif x[2] == 1:
                if t == 2:
                    ok += 1
                else:
                    other += 1
                    print("answer type", t, file=sys.stderr)
                x[2] = 2
    for s, _, st in socks:
        if st < 2:
            other += 1
            print("no answer in state", st, file=sys.stderr)
        keep.append(s)
for s in keep:
    s.close()
print(ok, other)
'''


if __name__ == "__main__":
    main(__name__)
