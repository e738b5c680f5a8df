#!/usr/bin/env python3
"""The attack suite (L1-L3, E4): each attack runs, bounded in count and time,
from loopback addresses of its own (127.0.0.2 and up) while a legitimate
device (CN=device-001, from 127.0.0.1) enrolls; the enrollment must succeed
within 10 s. estgw's RSS and CPU before and after each attack are printed
(and so kept in the meson test log).

Attack traffic comes from tests/tools/hello_flood (raw DTLS/UDP records of
its own) and tests/tools/coap_flood (libcoap DTLS sessions with certificates
the test issues with the openssl CLI)."""
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from harness import StackTest, wait_for, main  # noqa: E402

HELLO_FLOOD = os.environ.get("HELLO_FLOOD", "hello_flood")
COAP_FLOOD = os.environ.get("COAP_FLOOD", "coap_flood")
WK = "/.well-known/est"
ENROLL_WITHIN = 10.0


def proc_usage(pid):
    """(anonymous RSS in KB, CPU seconds user+system) of @pid from /proc. The
    anonymous part is what state an attack could make estgw hold; library
    pages estgw gave back after start-up (ops/memory.c) come back into VmRSS
    as soon as the code runs, which is not growth."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("RssAnon:"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / tick


class Attack:
    """One attack process; started() waits for its "started" line."""

    def __init__(self, args):
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if line.strip() != "started":
            raise AssertionError(f"attack did not start: {line!r} {self.p.stderr.read()}")

    def result(self, timeout=90):
        out, err = self.p.communicate(timeout=timeout)
        if self.p.returncode != 0:
            raise AssertionError(f"attack failed rc={self.p.returncode}: {err}")
        lines = [l for l in out.splitlines() if l.startswith("{")]
        return json.loads(lines[-1])


class AttackTest(StackTest):
    stack_kwargs = {"extra_server": "max_handshakes = 32\n"}

    def setUp(self):
        # Under ASan, freed memory waits in a quarantine (256 MB by default)
        # and RSS would measure that: keep it small so RSS means something.
        opts = os.environ.get("ASAN_OPTIONS", "")
        if "quarantine_size_mb" not in opts:
            os.environ["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "quarantine_size_mb=4"
        super().setUp()

    def enroll(self):
        """The legitimate device's /sen; returns seconds taken."""
        with open(os.path.join(self.s.pki, "device.csr.der"), "rb") as f:
            csr = f.read()
        t0 = time.monotonic()
        r = self.s.coap(WK + "/sen", method="post", cf=286, payload=csr, block=64,
                        timeout=int(ENROLL_WITHIN))
        took = time.monotonic() - t0
        self.assertEqual(r.rc, 0, f"{r} {r.stderr}")
        self.assertEqual(len(harness.certs_of_pkcs7_der(r.payload)), 1, r)
        self.assertLess(took, ENROLL_WITHIN)
        return took

    def usage(self):
        return proc_usage(self.s.gw.pid)

    def report(self, name, before, after, took, extra=""):
        print(f"\n{name}: device enrolled in {took:.2f} s; estgw RssAnon {before[0]} -> {after[0]} KB, "
              f"CPU {after[1] - before[1]:.2f} s during the attack {extra}", flush=True)

    def totals(self):
        """The pre-filter's totals line, written when estgw stops."""
        self.s.stop()
        for line in self.s.log().splitlines():
            if "pre-filter totals:" in line:
                nums = [int(w) for w in line.split("totals:")[1].replace(",", " ").split() if w.isdigit()]
                return dict(zip(("hvr", "dropped", "admitted", "evicted", "timed_out", "unfiltered",
                                 "deferred"), nums))
        raise AssertionError("no pre-filter totals line:\n" + self.s.log()[-3000:])

    def flood(self, *args):
        return Attack([HELLO_FLOOD, "-t", "127.0.0.1", "-p", str(self.s.port), *args])


class TestHelloFlood(AttackTest):
    def test_L1_slow_hellos_from_101_ports(self):
        """The issue's lock-out: 101 ports, a ClientHello each every 20 s
        (here every 2 s, for 12 s): nothing is held, the device enrolls."""
        before = self.usage()
        a = self.flood("-s", "127.0.0.2", "-n", "101", "-r", "50", "-d", "12")
        took = self.enroll()
        res = a.result()
        after = self.usage()
        self.report("101 ports, 50 hellos/s", before, after, took, json.dumps(res))
        self.assertGreater(res["hvr"], 0.9 * res["sent"] - 5, res)
        t = self.totals()
        self.assertEqual(t["admitted"], 1, t)  # the device only: no state for the flood

    def test_L1_cookieless_flood_many_ports(self):
        """A sustained flood of cookieless ClientHellos from 2,000 ports,
        10,000 a second (spoofed sources never read the answer); the rate
        at which the kernel's receive queue starts dropping the device's
        datagrams too is the bench's (bench/attack.sh)."""
        before = self.usage()
        a = self.flood("-s", "127.0.0.3", "-n", "2000", "-r", "10000", "-d", "8")
        took = self.enroll()
        res = a.result()
        after = self.usage()
        cpu = after[1] - before[1]
        t = self.totals()
        seen = t["hvr"] + t["dropped"]
        self.report("2,000 ports, 10,000 hellos/s", before, after, took,
                    f"{json.dumps(res)} {t}; {1e6 * cpu / max(seen, 1):.1f} us CPU per hello answered")
        self.assertEqual(t["admitted"], 1, t)  # no state for any hello of the flood
        self.assertLess(after[0] - before[0], 8192, "RSS grew under the flood")

    def test_L1_garbage_flood(self):
        """Random datagrams (the malformed flood) from 500 ports."""
        before = self.usage()
        a = self.flood("-s", "127.0.0.4", "-n", "500", "-d", "6", "-m", "garbage", "-c", "500000")
        took = self.enroll()
        res = a.result()
        after = self.usage()
        self.report("garbage", before, after, took, json.dumps(res))
        self.assertEqual(res["hvr"] + res["other"], 0, res)  # nothing answers garbage
        t = self.totals()
        self.assertEqual(t["admitted"], 1, t)
        self.assertGreater(t["dropped"], 0, t)

    def test_L2_half_open_stalls(self):
        """Real addresses that answer the HelloVerifyRequest and then stall:
        half-open handshakes bounded per address (max_handshakes / 4) and in
        total (max_handshakes), oldest evicted first; the device enrolls."""
        before = self.usage()
        a = self.flood("-s", "127.0.0.5", "-n", "400", "-m", "stall", "-r", "400", "-d", "10")
        b = self.flood("-s", "127.0.0.6", "-n", "400", "-m", "stall", "-r", "400", "-d", "10")
        wait_for(lambda: "pre-filter:" in self.s.log(), what="the flood reaching estgw")
        took = self.enroll()
        ra, rb = a.result(), b.result()
        after = self.usage()
        self.report("half-open stalls from 2 addresses", before, after, took,
                    json.dumps([ra, rb]))
        self.assertGreater(ra["server_hello"] + rb["server_hello"], 0, (ra, rb))
        t = self.totals()
        self.assertGreater(t["evicted"], 0, t)
        self.assertLess(after[0] - before[0], 16384, "RSS grew by more than 16 MB")

    def test_L2_refused_handshakes_then_timeouts(self):
        """Valid cookies, then a cipher suite estgw refuses: libcoap 4.3.1
        frees such a session without an event. The half-open entries it
        leaves time out (10 s) without touching the freed session (ASan
        would see it), and the device enrolls meanwhile."""
        before = self.usage()
        start = time.monotonic()
        a = self.flood("-s", "127.0.0.7", "-n", "50", "-m", "refused", "-r", "100", "-d", "3")
        took = self.enroll()
        res = a.result()
        # the timeout under test is 10 s from the last admission: let it pass,
        # then a second enrollment's datagrams run the expiry
        while time.monotonic() < start + 3 + 10.5:
            time.sleep(0.2)
        took2 = self.enroll()
        after = self.usage()
        took = max(took, took2)
        self.report("refused handshakes", before, after, took, json.dumps(res))
        t = self.totals()
        self.assertGreater(t["admitted"], 1, t)
        self.assertGreater(t["timed_out"], 0, t)


class TestBurstBehindOneAddress(AttackTest):
    """Many devices behind one address (a NAT, a stateful join proxy) at once,
    more than max_handshakes: each gets its turn (L2). With every slot taken
    by that address's own handshakes, all going on, a new ClientHello waits
    for the device's DTLS timer rather than ending one of them (which turned
    a burst of 256 devices into 156 failed handshakes).

    A waiting device's DTLS timer backs off (1, 2, 4, 8, 16 s) and
    coap-client gives its handshake up after about 31 s, so on a machine
    slowed down enough a device can run out of tries; like a real device it
    then enrolls again. Each device is allowed that one second try, and the
    test prints how many needed it (none on an unloaded machine)."""
    DEVICES = 40
    stack_kwargs = {"extra_server": "max_handshakes = 4\n"}

    def test_L2_burst_from_one_address_all_complete(self):
        from concurrent.futures import ThreadPoolExecutor

        def device(_):
            first = self.s.coap(WK + "/crts", timeout=60)
            if first.rc == 0 and first.payload:
                return first, None
            return first, self.s.coap(WK + "/crts", timeout=60)

        with ThreadPoolExecutor(self.DEVICES) as ex:
            runs = list(ex.map(device, range(self.DEVICES)))
        failed = [str(again) for first, again in runs
                  if again is not None and (again.rc != 0 or not again.payload)]
        self.assertEqual(failed, [])
        retried = sum(1 for _, again in runs if again is not None)
        t = self.totals()
        self.assertGreaterEqual(t["admitted"], self.DEVICES, t)
        print(f"\nburst: {self.DEVICES} devices from 127.0.0.1, max_handshakes 4: {t}; "
              f"{retried} enrolled on a second try", flush=True)


class TestCookieRace(AttackTest):
    """Light devices in batches of 100 at once (ClientHello, HVR, the
    ClientHello with the cookie, then the ServerHello expected), as the
    cluster test's devices do but without nftables. The pre-filter used to
    let libcoap read whenever it found the queue empty; a datagram that
    arrived right after that peek reached libcoap unfiltered: a hello
    session the filter never admitted, and OpenSSL's own HVR for a cookie
    never approved (a second HVR to the device; 2-8 in 1,000, more with
    more sessions open). Every device must get its ServerHello, and every
    libcoap session must be one the filter admitted."""
    DEVICES = 2000
    BATCH = 100
    stack_kwargs = {"extra_server": "max_handshakes = 5000\nmax_sessions = 5000\n"}

    def run_devices(self):
        from test_cluster import dtls_client_hello, handshake_type
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, self.DEVICES + 256)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        keep, answers = [], {}
        try:
            for start in range(0, self.DEVICES, self.BATCH):
                sel = selectors.DefaultSelector()
                for _ in range(self.BATCH):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    keep.append(s)  # its port stays taken: no old device's flow
                    s.connect(("127.0.0.1", self.s.port))
                    rnd = os.urandom(32)
                    s.send(dtls_client_hello(rnd=rnd))
                    sel.register(s, selectors.EVENT_READ, [rnd, 0])
                deadline = time.monotonic() + 10
                while sel.get_map() and time.monotonic() < deadline:
                    for key, _ in sel.select(timeout=1):
                        st = key.data
                        t, body = handshake_type(key.fileobj.recv(4096))
                        if st[1] == 0 and t == 3:  # HVR: version(2) cookie_len cookie
                            key.fileobj.send(dtls_client_hello(cookie=body[3:3 + body[2]],
                                                               seq=1, rnd=st[0]))
                            st[1] = 1
                        else:
                            answers[t if st[1] == 1 else f"first {t}"] = \
                                answers.get(t if st[1] == 1 else f"first {t}", 0) + 1
                            sel.unregister(key.fileobj)
                answers["none"] = answers.get("none", 0) + len(sel.get_map())
                sel.close()
        finally:
            for s in keep:
                s.close()
        return answers

    def test_L1_every_cookie_hello_gets_server_hello(self):
        answers = self.run_devices()
        t = self.totals()
        print(f"\n{self.DEVICES} devices: answers {answers}; {t}", flush=True)
        self.assertEqual(answers, {2: self.DEVICES, "none": 0}, t)  # 2: ServerHello
        self.assertEqual(t["unfiltered"], 0, t)
        self.assertEqual((t["hvr"], t["admitted"]), (self.DEVICES, self.DEVICES), t)


def issue_identities(pki, out_dir, n, prefix="attacker"):
    """@n client certificates CN=<prefix>-NNN under the device CA (mfg-ca),
    made with the openssl CLI; returns [(cert, key)]."""
    ext = os.path.join(out_dir, "client.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
    pairs = []
    for i in range(n):
        base = os.path.join(out_dir, f"{prefix}-{i:03d}")
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", base + ".key",
                        "-subj", f"/CN={prefix}-{i:03d}/serialNumber=SN9{i:03d}",
                        "-out", base + ".csr"], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", base + ".csr", "-CA",
                        os.path.join(pki, "mfg-ca.crt"), "-CAkey", os.path.join(pki, "mfg-ca.key"),
                        "-set_serial", str(0x9000 + i), "-days", "2", "-extfile", ext,
                        "-out", base + ".crt"], check=True, capture_output=True)
        pairs.append((base + ".crt", base + ".key"))
    return pairs


class CoapAttackTest(AttackTest):
    stack_kwargs = {"extra_server": "max_handshakes = 32\nrate_limit = 0\n"}

    def coap_flood(self, pairs, *args):
        cmd = [COAP_FLOOD, "-C", os.path.join(self.s.pki, "gw-ca.crt")]
        for c, k in pairs:
            cmd += ["-c", c, "-k", k]
        return Attack(cmd + list(args) + [f"coaps://127.0.0.1:{self.s.port}"])


class TestReassemblyFill(CoapAttackTest):
    def test_E4_pinged_sessions_cannot_fill_reassembly(self):
        """The issue's scenario: 64 sessions (16 identities, 4 sessions
        each) start 4 Block1 uploads each and keep their sessions with a
        CoAP ping every 2 s. One identity holds at most reasm_total/16
        bodies and the last 1/8 of the slots stays for identities holding
        none: the device's Block1 /sen succeeds."""
        pairs = issue_identities(self.s.pki, self.s.dir, 16)
        before = self.usage()
        a = self.coap_flood(pairs, "-m", "reasm", "-n", "64", "-u", "4", "-i", "2", "-d", "14")
        took = self.enroll()
        res = a.result()
        after = self.usage()
        self.report("64 pinged sessions x 4 uploads", before, after, took, json.dumps(res))
        self.assertEqual(res["c2_31"] + res["c5_03"], 256, res)
        self.assertGreater(res["c5_03"], 0, res)      # the bounds held
        self.assertLessEqual(res["c2_31"], 224, res)  # 256 - the reserve of 32


class TestRequestTagSpray(CoapAttackTest):
    def test_L3_request_tag_spray_costs_as_much_as_a_fixed_tag(self):
        """Block1 block 0 under a new Request-Tag each time: libcoap's block
        mode is off, so it keeps nothing per (path, Request-Tag), and
        estgw's own bodies are bounded per session; the rate stays close to
        that of a fixed tag and memory stays flat."""
        pairs = issue_identities(self.s.pki, self.s.dir, 1, "sprayer")
        before = self.usage()
        fixed = self.coap_flood(pairs, "-m", "fixed", "-N", "3000", "-d", "20").result()
        mid = self.usage()
        spray = self.coap_flood(pairs, "-m", "spray", "-N", "3000", "-d", "20").result()
        after = self.usage()
        took = self.enroll()
        self.report("Request-Tag spray", mid, after, took,
                    f"fixed {json.dumps(fixed)} (RSS {before[0]} -> {mid[0]} KB), spray {json.dumps(spray)}")
        self.assertEqual(spray["answered"], spray["sent"], spray)
        # the issue measured a 48x gap (1,291 against 62,000 a second); a
        # loaded machine moves both figures, so the bound is loose
        self.assertGreater(spray["per_second"], fixed["per_second"] / 3, (spray, fixed))
        self.assertLess(after[0] - mid[0], 4096, "RSS grew under the spray")


if __name__ == "__main__":
    main(__name__)
