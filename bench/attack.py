#!/usr/bin/env python3
"""bench/attack.py - the heavier versions of the attack suite (issue 16; L1-L3,
E4): longer floods, more sessions, a ClientHello rate sweep. Writes
bench/attack.md, the "Under attack" section of docs/performance.md
(bench/report.py appends it; run this first).

  python3 bench/attack.py [--build build] [--seconds 60] [--sessions 1000]

Needs a plain (non-sanitizer) build with tests/tools built: estgw,
hello_flood, coap_flood. Everything runs on 127.0.0.1/8 (the floods from
127.0.0.2 and up, the device from 127.0.0.1); every loop is bounded."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.join(SRC, "tests", "attack"))


def setup_env(build):
    b = os.path.abspath(build)
    os.environ["ESTGW"] = os.path.join(b, "src", "estgw")
    os.environ["ESTGW_SRC"] = SRC
    os.environ["ESTGW_PKI"] = os.path.join(b, "tests", "integration", "pki")
    os.environ["HELLO_FLOOD"] = os.path.join(b, "tests", "tools", "hello_flood")
    os.environ["COAP_FLOOD"] = os.path.join(b, "tests", "tools", "coap_flood")


def enroll(st):
    import harness
    with open(os.path.join(st.pki, "device.csr.der"), "rb") as f:
        csr = f.read()
    t0 = time.monotonic()
    r = st.coap("/.well-known/est/sen", method="post", cf=286, payload=csr, block=64, timeout=20)
    took = time.monotonic() - t0
    try:
        ok = r.rc == 0 and len(harness.certs_of_pkcs7_der(r.payload)) == 1
    except AssertionError:  # no certificate came back (timed out)
        ok = False
    return ok, took


def stack(extra=""):
    import harness
    st = harness.Stack(extra_server=extra)
    st.start()
    return st


def flood(st, *args):
    from test_attack import Attack
    return Attack([os.environ["HELLO_FLOOD"], "-t", "127.0.0.1", "-p", str(st.port), *args])


def usage(st):
    from test_attack import proc_usage
    return proc_usage(st.gw.pid)


def rate_sweep(seconds, rates):
    """Enrollment time (3 tries spread over the flood) per ClientHello rate."""
    rows = []
    for rate in rates:
        st = stack("max_handshakes = 100\nrate_limit = 0\n")
        try:
            before = usage(st)
            a = flood(st, "-s", "127.0.0.3", "-n", "2000", "-r", str(rate), "-d", str(seconds))
            times, fails = [], 0
            end = time.monotonic() + seconds - 6
            while len(times) + fails < 3 and time.monotonic() < end:
                ok, t = enroll(st)
                if ok:
                    times.append(t)
                else:
                    fails += 1
                time.sleep(max(0.0, (seconds - 6) / 3 - t))
            res = a.result(timeout=seconds + 60)
            after = usage(st)
            cpu = after[1] - before[1]
            rows.append({"rate": rate, "sent": res["sent"], "answered": res["hvr"],
                         "enroll_s": times, "failed": fails,
                         "cpu_share": cpu / res["seconds"],
                         "us_per_hello": 1e6 * cpu / max(res["hvr"], 1)})
            print(json.dumps(rows[-1]), flush=True)
        finally:
            st.stop()
            st.cleanup()
    return rows


def garbage(seconds):
    """CPU per dropped datagram: random bytes from 500 ports, 20,000 a second."""
    st = stack()
    try:
        before = usage(st)
        res = flood(st, "-s", "127.0.0.4", "-n", "500", "-m", "garbage", "-r", "20000",
                    "-d", str(seconds)).result(timeout=seconds + 60)
        after = usage(st)
        st.stop()
        t = totals(st.log())
        return {"sent": res["sent"], "dropped": t.get("dropped", 0),
                "us_per_drop": 1e6 * (after[1] - before[1]) / max(t.get("dropped", 0), 1)}
    finally:
        st.stop()
        st.cleanup()


def half_open_memory():
    """RSS per half-open handshake: stalls admitted within the 10 s timeout,
    bounds set high enough that none is evicted."""
    st = stack("max_handshakes = 20000\n")
    try:
        time.sleep(1)
        before = usage(st)
        fl = [flood(st, "-s", f"127.0.0.{10 + i}", "-n", "500", "-m", "stall", "-r", "250", "-d", "6")
              for i in range(4)]
        res = [f.result() for f in fl]
        after = usage(st)
        st.stop()
        t = totals(st.log())
        n = t["admitted"]
        return {"admitted": n, "evicted": t["evicted"], "rss_kb": after[0] - before[0],
                "kb_per_half_open": (after[0] - before[0]) / max(n, 1), "floods": res}
    finally:
        st.stop()
        st.cleanup()


def totals(log):
    for line in log.splitlines():
        if "pre-filter totals:" in line:
            nums = [int(w) for w in line.split("totals:")[1].replace(",", " ").split() if w.isdigit()]
            return dict(zip(("hvr", "dropped", "admitted", "evicted", "timed_out"), nums))
    return {}


def coap_flood(st, pairs, *args):
    from test_attack import Attack
    cmd = [os.environ["COAP_FLOOD"], "-C", os.path.join(st.pki, "gw-ca.crt")]
    for c, k in pairs:
        cmd += ["-c", c, "-k", k]
    return Attack(cmd + list(args) + [f"coaps://127.0.0.1:{st.port}"])


def reassembly(sessions, seconds):
    """RSS per pending reassembly: the same sessions with 0 and 4 uploads
    each; and whether the device enrolls while they hold every slot."""
    from test_attack import issue_identities
    out = {}
    for uploads in (0, 4):
        st = stack(f"max_sessions = {sessions + 100}\nreasm_total = {sessions * 4}\n"
                   "rate_limit = 0\nmax_handshakes = 100\n")
        try:
            pairs = issue_identities(st.pki, st.dir, 64)
            before = usage(st)
            a = coap_flood(st, pairs, "-m", "reasm", "-n", str(sessions), "-u", str(uploads),
                           "-i", "30", "-d", str(seconds))
            held = usage(st)
            ok, t = enroll(st)
            res = a.result(timeout=seconds + 120)
            out[uploads] = {"rss_kb": held[0] - before[0], "enrolled": ok, "enroll_s": t, **res}
            print(json.dumps(out[uploads]), flush=True)
        finally:
            st.stop()
            st.cleanup()
    bodies = out[4]["c2_31"]
    out["kb_per_body"] = (out[4]["rss_kb"] - out[0]["rss_kb"]) / max(bodies, 1)
    return out


def spray(count):
    from test_attack import issue_identities
    st = stack("rate_limit = 0\n")
    try:
        pairs = issue_identities(st.pki, st.dir, 1, "sprayer")
        r = {}
        for mode in ("fixed", "spray", "fixed", "spray"):
            before = usage(st)
            res = coap_flood(st, pairs, "-m", mode, "-N", str(count), "-d", "60").result()
            after = usage(st)
            r.setdefault(mode, []).append((res["per_second"], after[0] - before[0]))
        return r
    finally:
        st.stop()
        st.cleanup()


def write_md(path, args, sweep, ho, re_, sp, gb):
    ok_rates = [r["rate"] for r in sweep if not r["failed"] and r["enroll_s"] and max(r["enroll_s"]) < 5]
    L = ["## Under attack (issue 16; bench/attack.py)", "",
         f"`python3 bench/attack.py --seconds {args.seconds} --sessions {args.sessions}` on the machine "
         "above, plain build, floods from 127.0.0.2 and up, the device (coap-client-openssl, "
         "CN=device-001, Block1 /sen in 64-byte blocks) from 127.0.0.1; everything on one 2-core "
         "machine shared with other work, so the sender and estgw compete for the cores. "
         "The CI versions are the `attack` suite (tests/attack/test_attack.py, L1-L3, E4). "
         "The sender is one thread: it reaches about 80,000 datagrams a second here.", "",
         "ClientHellos without a cookie from 2,000 ports (estgw answers each with a "
         "HelloVerifyRequest and keeps nothing, L1):", "",
         "| hellos/s asked | sent | HelloVerifyRequests back at the sender | device enrolments (s) | estgw CPU | estgw CPU per hello |",
         "|---|---|---|---|---|---|"]
    for r in sweep:
        e = ", ".join([f"{t:.2f}" for t in r["enroll_s"]] + ([f"{r['failed']} failed (no answer in 20 s)"] if r["failed"] else []))
        L.append(f"| {r['rate'] or 'unpaced'} | {r['sent']} | {r['answered']} | {e} | "
                 f"{100 * r['cpu_share']:.0f}% | {r['us_per_hello']:.1f} us |")
    best = max(ok_rates) if ok_rates else None
    us = [r["us_per_hello"] for r in sweep]
    top = max(sweep, key=lambda r: r["cpu_share"])
    L += ["", f"Highest rate measured at which every enrolment finished within 5 s: "
          f"**{best or 'none'} ClientHellos/s**, each flood {args.seconds} s. estgw used "
          f"{min(us):.1f}-{max(us):.1f} us per hello answered (the peek, the parse, the HMAC, "
          "the read and the HelloVerifyRequest), at most "
          f"{100 * top['cpu_share']:.0f}% of a core (at {top['rate']} a second). "
          f"What gives way above {best or 'the lowest rate'} a second is the machine: the "
          "one-thread sender spins a core, other work shares the second, and datagrams wait "
          "for a wake-up of estgw's loop in the endpoint's receive queue (estgw asks for 4 MB; "
          "`net.core.rmem_max` caps it), which then drops the device's datagrams along with the "
          "flood's (the HelloVerifyRequests back fall short of the hellos sent). DTLS and CoAP "
          "retransmit, so enrolment gets slower rather than impossible; with the sender on "
          "another host the figure would be higher.", "",
          f"Random datagrams from 500 ports at 20,000 a second for {args.seconds} s: {gb['dropped']} dropped unread by "
          f"libcoap, **{gb['us_per_drop']:.1f} us of estgw CPU per dropped datagram** (a peek, "
          "the parse, a read); an answered ClientHello adds the HMAC and the HelloVerifyRequest "
          "(the CPU per hello above).", "",
          f"Half-open handshakes (the cookie answered, then silence; L2): {ho['admitted']} admitted "
          f"from 4 addresses in 6 s with the bounds set out of the way (`max_handshakes = 20000`), RSS +{ho['rss_kb']} KB: "
          f"**{ho['kb_per_half_open']:.1f} KB per half-open handshake** (libcoap session, OpenSSL "
          "SSL with its handshake buffers, estgw's peer entry). With the defaults at most "
          "`max_handshakes` of them exist (and `max_handshakes / 4` per address), each at most 10 s.", "",
          f"Pending reassemblies (E4): {args.sessions} sessions of 64 identities, pinged; with 4 "
          f"Block1 uploads each ({re_[4]['c2_31']} bodies held, {re_[4]['c5_03']} refused 5.03) "
          f"RSS +{re_[4]['rss_kb']} KB against +{re_[0]['rss_kb']} KB without: "
          f"**{re_['kb_per_body']:.2f} KB per pending reassembly** of one 64-byte block. "
          f"The device enrolled in {re_[4]['enroll_s']:.2f} s while they held their slots "
          f"({'ok' if re_[4]['enrolled'] else 'FAILED'}).", "",
          "Request-Tag spray (L3; block 0 of /sen under a new Request-Tag each time vs one tag, "
          "one session, one request at a time, two rounds each):", "",
          "| mode | requests/s | RSS growth |", "|---|---|---|"]
    for mode, runs in sp.items():
        for rate, rss in runs:
            L.append(f"| {mode} | {rate:.0f} | {rss} KB |")
    L += ["", "The issue measured 1,291 against 62,000 requests a second (48x) with libcoap's "
          "block mode on. It is off now, so libcoap 4.3.1 keeps no per-(path, Request-Tag) "
          "record; estgw's own bodies are bounded per session (oldest dropped), per identity "
          "and in total, so a spray costs an allocation and a free per request and memory stays "
          "flat. The gap left is small and moves with the machine's load (a perf run of 20,000 "
          "each showed the loop mostly waiting in the kernel)."]
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--rates", default="10000,20000,50000,100000")
    ap.add_argument("--out", default=os.path.join(SRC, "bench", "attack.md"))
    ap.add_argument("--results", help="JSON file of phase results: phases found there are not run again")
    args = ap.parse_args()
    setup_env(args.build)
    res = {}
    if args.results and os.path.exists(args.results):
        with open(args.results) as f:
            res = json.load(f)
    phases = {
        "sweep": lambda: rate_sweep(args.seconds, [int(r) for r in args.rates.split(",")]),
        "garbage": lambda: garbage(args.seconds),
        "halfopen": half_open_memory,
        "reasm": lambda: reassembly(args.sessions, max(30, args.seconds // 2)),
        "spray": lambda: spray(20000),
    }
    for name, run in phases.items():
        if name not in res:
            res[name] = run()
            print(name, json.dumps(res[name])[:2000], flush=True)
            if args.results:
                with open(args.results, "w") as f:
                    json.dump(res, f)
    re_ = {int(k) if str(k).isdigit() else k: v for k, v in res["reasm"].items()}
    write_md(args.out, args, res["sweep"], res["halfopen"], re_, res["spray"], res["garbage"])
    print("wrote", args.out)


if __name__ == "__main__":
    main()
