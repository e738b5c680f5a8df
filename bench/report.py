#!/usr/bin/env python3
"""report.py - turn one bench/run.sh run into docs/performance.md (issue 9).

Reads the JSON lines estgw-bench appended (one object per phase), the
`openssl speed` output of the same run and the commands run.sh logged; writes
the machine, the commands, the measured tables, the ratios and each target
with its verdict, then the hand-written analysis (bench/analysis.md).
--check (smoke run): only verify every phase ran with no failure.
The cluster phases (labels cl_*, issue 17) make their own section; --splice
FILE replaces that section of an existing report (bench/run.sh --cluster) and
leaves the rest of it as it is.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time


def load(path):
    runs = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                runs[r["label"]] = r
    return runs


def per_dev_ms(r, proc):
    p = r["procs"].get(proc)
    return p["cpu_s"] * 1e3 / r["ok"] if p and r["ok"] else float("nan")


def lat(r, kind, pct):
    return r["lat_ms"].get(kind, {}).get(pct, float("nan"))


def speed(path):
    """ECDSA P-256 sign/verify and ECDH P-256 op times (ms) from openssl speed."""
    out = {}
    if not path or not os.path.exists(path):
        return out
    text = open(path).read()
    m = re.search(r"256 bits ecdsa \(nistp256\)\s+([\d.]+)s\s+([\d.]+)s\s+([\d.]+)\s+([\d.]+)", text)
    if m:
        out["sign_ms"] = 1e3 / float(m.group(3))
        out["verify_ms"] = 1e3 / float(m.group(4))
    m = re.search(r"256 bits ecdh \(nistp256\)\s+([\d.]+)s\s+([\d.]+)", text)
    if m:
        out["ecdh_ms"] = 1e3 / float(m.group(2))
    return out


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001 - best effort machine description
        return "?"


def machine(estgw):
    cpu = sh("lscpu | sed -n 's/^Model name: *//p'")
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (client, estgw, the CA and the reference servers share them)",
        f"- Memory: {mem}; kernel {platform.release()}; Debian {sh('cat /etc/debian_version')}",
        f"- {sh('openssl version')}; estgw --version: "
        + "; ".join(sh(f"{estgw} --version").splitlines()),
        f"- Run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    ]


def fmt(v, nd=2):
    return "n/a" if v != v else f"{v:.{nd}f}"  # NaN check


def verdict(ok):
    return "**met**" if ok else "**missed**"


def phase_table(runs):
    rows = ["| phase | devices | at once | block | ok | failed (by code) | devices/s | handshakes/s |"
            " handshake p50/p99 ms | request p50/p99 ms | server CPU ms/device | CA CPU ms/device |"
            " client CPU ms/device | server RSS start/peak kB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs.values():
        if r["mode"] == "idle" or r["label"].startswith("cl_"):
            continue
        server = next((p for p in ("estgw", "bare") if p in r["procs"]), None)
        fails = ", ".join(f"{k}: {v}" for k, v in r["failures"].items()) or "0"
        req = "sen" if "sen" in r["lat_ms"] else "crts"
        rss = r["procs"][server] if server else None
        rows.append(
            f"| {r['label']} | {r['n']} | {r['concurrency']} | {r['block']} | {r['ok']} | {fails} |"
            f" {r['ok'] / r['wall_s']:.0f} | {r['lat_ms'].get('handshake', {}).get('n', 0) / r['wall_s']:.0f} |"
            f" {fmt(lat(r, 'handshake', 'p50'))} / {fmt(lat(r, 'handshake', 'p99'))} |"
            f" {req}: {fmt(lat(r, req, 'p50'))} / {fmt(lat(r, req, 'p99'))} |"
            f" {fmt(per_dev_ms(r, server), 3) if server else '-'} | {fmt(per_dev_ms(r, 'ca'), 3)} |"
            f" {fmt(r['client_cpu_s'] * 1e3 / r['ok'] if r['ok'] else float('nan'), 3)} |"
            f" {str(rss['rss0_kb']) + ' / ' + str(rss['rss_peak_kb']) if rss else '-'} |")
    return rows


def idle_table(runs):
    rows = ["| phase | sessions open | failed | server | RSS before kB | RSS after kB | KiB per session |"
            " RssAnon before / after kB | of it private (RssAnon) KiB per session |",
            "|---|---|---|---|---|---|---|---|---|"]
    out = {}
    for r in runs.values():
        if r["mode"] != "idle":
            continue
        for name, p in r["procs"].items():
            k = r["idle_open"]
            per = (p["idle_rss_after_kb"] - p["idle_rss_before_kb"]) / k if k else float("nan")
            a0, a1 = p.get("idle_anon_before_kb", -1), p.get("idle_anon_after_kb", -1)
            anon = (a1 - a0) / k if k and a0 >= 0 and a1 >= 0 else float("nan")
            out[(name, r["n"])] = per
            out[(name, r["n"], "anon")] = anon
            rows.append(f"| {r['label']} | {r['idle_open']} | {r['failed']} | {name} | {p['idle_rss_before_kb']} |"
                        f" {p['idle_rss_after_kb']} | {fmt(per, 1)} | {a0} / {a1} | {fmt(anon, 1)} |")
    return rows, out


def start_rss(runs):
    """{server: (RSS kB, RssAnon kB)} of a fresh process before its first idle phase."""
    out = {}
    for r in runs.values():
        if r["mode"] == "idle":
            for name, p in r["procs"].items():
                out.setdefault(name, (p["idle_rss_before_kb"], p.get("idle_anon_before_kb", -1)))
    return out


def start_table(runs):
    st = start_rss(runs)
    rows = ["| server | RSS at start kB | of it RssAnon (private) kB | shared library and file pages kB |",
            "|---|---|---|---|"]
    for name, (rss, anon) in st.items():
        rows.append(f"| {name} | {rss} | {anon} | {rss - anon if anon >= 0 else '-'} |")
    return rows


def targets(runs, sp, idle):
    lines = []
    hs = runs.get("hs_crts_estgw")
    bare = runs.get("hs_crts_bare_once")
    pem = runs.get("hs_crts_bare_pem")
    if hs and bare:
        e, b = per_dev_ms(hs, "estgw"), per_dev_ms(bare, "bare")
        lines.append(f"| estgw CPU per handshake + /crts <= 0.9 ms | {fmt(e, 3)} ms | {verdict(e <= 0.9)} |")
        lines.append(f"| ... and <= 1.1x the bare libcoap server (credentials parsed once, same run) |"
                     f" {fmt(e / b)}x ({fmt(b, 3)} ms bare) | {verdict(e / b <= 1.1)} |")
        if pem:
            p = per_dev_ms(pem, "bare")
            lines.append(f"| (for scale) bare server with stock PEM loading per handshake | {fmt(p, 3)} ms;"
                         f" estgw / that = {fmt(e / p)}x | - |")
    en, direct = runs.get("enroll_estgw"), runs.get("enroll_https")
    if en and direct:
        e = per_dev_ms(en, "estgw")
        eca = per_dev_ms(en, "ca")
        d = direct["client_cpu_s"] * 1e3 / direct["ok"] + per_dev_ms(direct, "ca")
        lines.append(f"| enrolment (handshake + /crts + /sen) estgw CPU <= 1.2x direct HTTPS client + CA CPU |"
                     f" {fmt(e, 3)} ms vs {fmt(d, 3)} ms = {fmt(e / d)}x | {verdict(e / d <= 1.2)} |")
        lines.append(f"| (for scale) estgw + the CA behind it vs direct client + CA |"
                     f" {fmt(e + eca, 3)} ms vs {fmt(d, 3)} ms = {fmt((e + eca) / d)}x | - |")
        added = lat(en, "sen", "p99") - lat(direct, "sen", "p99")
        lines.append(f"| p99 added latency of /sen over the CA's own (simpleenroll on an open connection),"
                     f" {en['concurrency']} devices at once, <= 2 ms | {fmt(lat(en, 'sen', 'p99'))} ms vs"
                     f" {fmt(lat(direct, 'sen', 'p99'))} ms: +{fmt(added)} ms | {verdict(added <= 2)} |")
    st = start_rss(runs)
    if "estgw" in st:
        e, b = st["estgw"], st.get("bare", (float("nan"), -1))
        lines.append(f"| idle RSS at start <= 8 MB (border routers; libest's estproxy: 7.2 MB) |"
                     f" {fmt(e[0] / 1024, 1)} MB (RssAnon {fmt(e[1] / 1024, 1)} MB); bare libcoap"
                     f" {fmt(b[0] / 1024, 1)} MB (RssAnon {fmt(b[1] / 1024, 1)} MB): {fmt(e[0] / b[0])}x |"
                     f" {verdict(e[0] <= 8 * 1024)} |")
    if hs and bare and "estgw" in hs["procs"] and "bare" in bare["procs"]:
        e1, b1 = hs["procs"]["estgw"]["rss1_kb"], bare["procs"]["bare"]["rss1_kb"]
        lines.append(f"| (for scale) RSS after the handshake phase ({hs['n']:,} handshakes + /crts, the"
                     f" working set in use) | {fmt(e1 / 1024, 1)} MB; bare libcoap {fmt(b1 / 1024, 1)} MB:"
                     f" {fmt(e1 / b1)}x | - |")
    for k in (10000, 1000):
        if ("estgw", k) in idle:
            v = idle[("estgw", k)]
            b = idle.get(("bare", k), float("nan"))
            an = idle.get(("estgw", k, "anon"), float("nan"))
            lines.append(f"| <= 40 KiB RSS per idle DTLS session at {k:,} sessions (border routers; issue 9 asked 25)"
                         f" | {fmt(v, 1)} KiB, of it private {fmt(an, 1)} KiB (bare libcoap: {fmt(b, 1)} KiB,"
                         f" {fmt(v / b)}x) |"
                         f" {verdict(v <= 40) if k == 10000 else ('(10,000 not run)' if ('estgw', 10000) not in idle else '-')} |")
    bad = []
    for r in runs.values():
        if r["label"].startswith("enroll_") or r["label"].startswith("hs_"):
            if r["failed"]:
                bad.append(f"{r['label']}: {r['failures']}")
    lines.append(f"| no failures under load below CA saturation | {'; '.join(bad) or 'none'} | {verdict(not bad)} |")
    sat = [r for r in runs.values() if r["label"].startswith("sat_")]
    for r in sat:
        fails = r["failures"]
        ok = all(k.startswith("5.03+Max-Age") for k in fails)
        lines.append(f"| beyond saturation ({r['concurrency']} at once): only 5.03 + Max-Age, never a timeout |"
                     f" {r['ok']} ok, failures {fails or 'none'}, /sen p99 {fmt(lat(r, 'sen', 'p99'))} ms,"
                     f" max {fmt(lat(r, 'sen', 'max'))} ms | {verdict(ok)} |")
    return lines


def floor(sp, runs):
    if not sp:
        return ["(openssl speed was not run)"]
    s, v, e = sp["sign_ms"], sp["verify_ms"], sp["ecdh_ms"]
    hs = s + 2 * v + 2 * e
    out = [
        f"`openssl speed` on this machine in the same run: ECDSA P-256 sign {s:.4f} ms, verify {v:.4f} ms;"
        f" ECDH P-256 {e:.4f} ms per operation.",
        "",
        "Crypto a DTLS 1.2 ECDHE-ECDSA server does per full handshake with client authentication: one"
        " signature (ServerKeyExchange), two verifications (the client's CertificateVerify and its"
        " certificate's signature by the device CA) and two P-256 scalar multiplications (the ephemeral"
        " key and the shared secret, each about one ECDH operation):"
        f" **{hs:.3f} ms** = sign + 2 verify + 2 ECDH. The enrolment adds, at the CA, one CSR"
        f" verification and one certificate signature ({v + s:.3f} ms).",
        "",
    ]
    rows = ["| server | CPU ms per handshake + request | x crypto floor |", "|---|---|---|"]
    for label, proc in (("hs_crts_estgw", "estgw"), ("hs_crts_bare_once", "bare"), ("hs_crts_bare_pem", "bare")):
        if label in runs:
            c = per_dev_ms(runs[label], proc)
            rows.append(f"| {label} | {c:.3f} | {c / hs:.2f} |")
    return out + rows


JPY_HEAD = "## JPY relay: pledges behind a stateless join proxy (H6)"


def jpy_section(runs, path):
    """The relay's cost: estgw CPU per device through tests/tools/jpy_proxy.py minus the
    same devices directly, per relayed datagram; two pairs with different datagrams per
    device give a line (cost per datagram, cost per pledge session)."""
    if not path or not os.path.exists(path):
        return []
    lines = [json.loads(x) for x in open(path) if x.strip()]
    pairs = [x for x in lines if not x.get("micro")]
    micro = next((x for x in lines if x.get("micro")), None)
    rows = ["| devices' ops | devices | distinct headers | datagrams relayed per device (in + out) |"
            " largest answer datagram B | estgw CPU ms/device direct | relayed | added |"
            " handshake p50 ms direct / relayed |",
            "|---|---|---|---|---|---|---|---|---|"]
    pts = []
    for p in pairs:
        d, r = runs.get("jpy_direct_" + p["pair"]), runs.get("jpy_relay_" + p["pair"])
        if not d or not r or not r["ok"]:
            continue
        dd, rr = per_dev_ms(d, "estgw"), per_dev_ms(r, "estgw")
        per = (p["in"] + p["out"]) / r["ok"]
        pts.append((per, rr - dd))
        rows.append(f"| {p['pair'].replace('_', ',')} | {r['ok']} | {p['sessions']} | {per:.1f} |"
                    f" {p['max_answer']} | {fmt(dd, 3)} | {fmt(rr, 3)} | {fmt(rr - dd, 3)} |"
                    f" {fmt(lat(d, 'handshake', 'p50'))} / {fmt(lat(r, 'handshake', 'p50'))} |")
    out = [JPY_HEAD, "",
           "`bash bench/run.sh --jpy-only` (or the whole run) measures it: each pair of phases runs the"
           " same devices (4 at once, a new DTLS session each) once directly and once through the test"
           " join proxy on 127.0.0.2, against one estgw with `[brski] jpy_listen`; the proxy's own CPU"
           " is not counted. Every relayed device is one pledge session (its own loopback socket).", ""]
    out += rows
    if micro:
        n, m = micro["n"], micro["m"]
        n1, m1 = micro["relayed_one"] or n, micro["relayed_many"] or m  # what the relay got
        per_dg = micro["cpu_one_s"] / n1 - micro["cpu_direct_s"] / n
        per_s = micro["cpu_many_s"] / m1 - micro["cpu_one_s"] / n1
        out += ["", "The relay alone (`bench/jpy_load.py`): records libcoap drops (no session), sent"
                f" {n:,} times straight to the DTLS port, {n:,} times as JPY messages of one header"
                f" ({micro['relayed_one']:.0f} relayed), and once each with {m:,} different headers"
                f" ({micro['relayed_many']:.0f} relayed; waited for until they expired).", "",
                "| phase | estgw CPU s | per datagram us |", "|---|---|---|",
                f"| direct | {micro['cpu_direct_s']:.2f} | {micro['cpu_direct_s'] / n * 1e6:.1f} |",
                f"| relayed, one pledge session | {micro['cpu_one_s']:.2f} | {micro['cpu_one_s'] / n1 * 1e6:.1f} |",
                f"| relayed, a new pledge session each | {micro['cpu_many_s']:.2f} |"
                f" {micro['cpu_many_s'] / m1 * 1e6:.1f} |", "",
                "(Per datagram the relay got, by its own counter; the direct phase per datagram sent.)", "",
                f"**Cost of the relay: {per_dg * 1e6:.1f} us of estgw CPU per datagram in** (recvfrom,"
                " decode, table lookup, send on the pledge socket; an answer out is the mirror image:"
                f" recv, encode, sendto) **and {per_s * 1e6:.1f} us per pledge session** (socket,"
                " connect, loop event, table entries, and its expiry and close), measured on the"
                " relay path alone. Memory: one `struct jpy_pledge` (about 0.5 KiB) and one UDP"
                " socket (kernel memory, one file descriptor) per pledge session, next to its DTLS"
                " session. The device pairs above add more per device than that predicts: their"
                " two phases run at different times, and on a shared 2-core machine the handshakes'"
                " CPU varies between runs by more than the relay costs (compare the rows); the"
                " relay path alone is the figure to use."]
    return out + [""]


def replace_section(doc_path, section):
    """Put @section in place of the JPY section of @doc_path (or at its end)."""
    text = open(doc_path).read() if os.path.exists(doc_path) else ""
    lines = text.rstrip("\n").splitlines()
    try:
        i = lines.index(JPY_HEAD)
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        lines[i:j] = section
    except ValueError:
        lines += [""] + section
    with open(doc_path, "w") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n")


# ---- cluster mode (issue 17) ----------------------------------------------

CLUSTER_HEAD = "## Cluster mode (issue 17)"


def cpu_ms(r, prefix):
    """CPU ms per successful device of the processes whose name starts with prefix."""
    ps = [p["cpu_s"] for n, p in r["procs"].items() if n.startswith(prefix)]
    return sum(ps) * 1e3 / r["ok"] if r["ok"] and ps else float("nan")


def median(v):
    v = sorted(x for x in v if x == x)
    if not v:
        return float("nan")
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def cluster_rows(rs):
    rows = ["| phase | devices | ok | failed (by code) | devices/s | /sen p50 / p99 ms |"
            " estgw CPU ms/device | Redis CPU ms/device | client CPU ms/device |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in rs:
        fails = ", ".join(f"{k}: {v}" for k, v in r["failures"].items()) or "0"
        rows.append(f"| {r['label']} | {r['n']} | {r['ok']} | {fails} | {r['ok'] / r['wall_s']:.0f} |"
                    f" {fmt(lat(r, 'sen', 'p50'))} / {fmt(lat(r, 'sen', 'p99'))} |"
                    f" {fmt(cpu_ms(r, 'estgw'), 3)} | {fmt(cpu_ms(r, 'redis'), 3)} |"
                    f" {fmt(r['client_cpu_s'] * 1e3 / r['ok'] if r['ok'] else float('nan'), 3)} |")
    return rows


def pooled(rs, pct):
    """Nearest-rank percentile of every /sen latency of the rounds @rs (as
    estgw-bench computes one round's)."""
    v = sorted(x for r in rs for x in r.get("sen_samples_ms", []))
    if not v:
        return float("nan")
    k = max(1, min(len(v), int(pct / 100.0 * len(v) + 0.999999)))
    return v[k - 1]


def redis_io(path, rs):
    """Redis's read and write system calls per enrolment over the rounds @rs
    (run.sh notes /proc/PID/io syscr, syscw before and after each round)."""
    if not path or not os.path.exists(path):
        return float("nan"), float("nan")
    labels = {r["label"] for r in rs}
    ok = sum(r["ok"] for r in rs)
    rd = wr = 0
    for line in open(path):
        f = line.split()
        if len(f) == 5 and f[0] in labels:
            rd += int(f[3]) - int(f[1])
            wr += int(f[4]) - int(f[2])
    return (rd / ok, wr / ok) if ok else (float("nan"), float("nan"))


def redis_cmds(path, on):
    """Redis's INFO commandstats of the store-on rounds (run.sh resets them
    before each round): the commands per enrolment and Redis's time in them."""
    if not path or not os.path.exists(path):
        return []
    calls, usec = {}, {}
    for line in open(path):
        f = line.split()
        if len(f) == 2:
            st = dict(kv.split("=") for kv in f[1].split(":", 1)[1].split(","))
            name = f[1].split(":", 1)[0]
            calls[name] = calls.get(name, 0) + int(st["calls"])
            usec[name] = usec.get(name, 0) + int(st["usec"])
    ok = sum(r["ok"] for r in on)
    if not ok or not calls:
        return []
    parts = [f"`{n}` {calls[n] / ok:.3f} ({usec[n] / calls[n]:.1f} us each)"
             for n in sorted(calls, key=lambda n: -calls[n])]
    top = sum(usec[n] for n in calls if n.startswith(("eval", "script", "ping", "xadd"))) / ok / 1e3
    return ["", "Redis's own counters (`INFO commandstats`, store-on rounds, reset before each):"
            " commands per enrolment and Redis's time inside each (wall time, so a command"
            " descheduled on the busy machine counts long): " + ", ".join(parts) + ". The"
            " commands a script calls are counted on their own rows as well as inside the"
            f" script's time; the commands estgw sent took {top:.3f} ms per enrolment in all,"
            " the rest of Redis's CPU is its event loop (waking up, reading and writing the"
            " socket, its timers)."]


def store_on_off(runs, keys_path=None, cmds_path=None, io_path=None):
    def rnd(r):
        return int(r["label"].rpartition("_r")[2])
    off = sorted((r for r in runs.values() if r["label"].startswith("cl_off_")), key=rnd)
    on = sorted((r for r in runs.values() if r["label"].startswith("cl_on_")), key=rnd)
    if not on:
        return ["(not run)"]
    conc = on[0]["concurrency"]
    out = ["One estgw at a time, a fresh process per round (the same release build, config and"
           " CA): without `[cluster]` (off) or with `[cluster] redis` on a redis-server started by"
           f" the bench (on), {conc} devices at a time, so that the machine is not saturated and a"
           " device's latency is the path's rather than time spent waiting for a core. Rounds run"
           " one after another, alternating off on, on off, ... so that slow drift of the shared"
           " machine's load falls on both modes alike. Every device sends a new CSR, so with the"
           " store every /sen costs one claim (`EVALSHA` of a Lua script: the kept answer, else"
           " the claim) before the CA is called and one publish (the sealed answer with the"
           " `keep_issued` TTL, and the claim's release) after it, on top of the local work."
           " Redis runs through all rounds and is counted in both modes (off: what it costs"
           " idle); the CA serves both.", ""]
    out += cluster_rows(sorted(off + on, key=lambda r: (rnd(r), r["label"])))
    if keys_path and os.path.exists(keys_path):
        kept = ", ".join(" ".join(ln.split()) for ln in open(keys_path) if ln.strip())
        out += ["", f"Answers kept in Redis after each store-on round (then flushed): {kept} (a sealed"
                " answer per device: the store was in the path of every /sen)."]
    out += redis_cmds(cmds_path, on)
    io = {m: redis_io(io_path, rs) for m, rs in (("off", off), ("on", on))}
    if not off:
        return out

    def tot(rs, prefix):
        ok = sum(r["ok"] for r in rs)
        c = sum(p["cpu_s"] for r in rs for n, p in r["procs"].items() if n.startswith(prefix))
        return c * 1e3 / ok if ok else float("nan")
    e_off, e_on = tot(off, "estgw"), tot(on, "estgw")
    r_off, r_on = tot(off, "redis"), tot(on, "redis")
    fails = sum(r["failed"] for r in off + on)
    q = {m: {p: pooled(rs, p) for p in (50, 99)} for m, rs in (("off", off), ("on", on))}
    pairs = [(o, n) for o in off for n in on if rnd(o) == rnd(n)]
    d99 = [lat(n, "sen", "p99") - lat(o, "sen", "p99") for o, n in pairs]
    d50 = [lat(n, "sen", "p50") - lat(o, "sen", "p50") for o, n in pairs]

    def spread(rs):
        v = [lat(r, "sen", "p99") for r in rs]
        return max(v) - min(v)
    d = q["on"][99] - q["off"][99]
    out += ["", "| store | rounds | devices | /sen p50 ms (pooled) | /sen p99 ms (pooled) |"
            " per-round p99 spread (max - min) ms | estgw CPU ms/enrolment | Redis CPU ms/enrolment |"
            " Redis read / write syscalls per enrolment |",
            "|---|---|---|---|---|---|---|---|---|"]
    for m, rs, e, rr in (("off", off, e_off, r_off), ("on", on, e_on, r_on)):
        out.append(f"| {m} | {len(rs)} | {sum(r['ok'] for r in rs)} | {fmt(q[m][50])} | {fmt(q[m][99])} |"
                   f" {fmt(spread(rs))} | {fmt(e, 3)} | {fmt(rr, 3)} |"
                   f" {fmt(io[m][0])} / {fmt(io[m][1])} |")
    out += ["", "Per round (the pair run back to back), store on minus off: /sen p99 "
            + ", ".join(f"{x:+.2f}" for x in d99) + " ms (median "
            f"{median(d99):+.2f} ms, spread {max(d99) - min(d99):.2f} ms); /sen p50 "
            + ", ".join(f"{x:+.2f}" for x in d50) + f" ms (median {median(d50):+.2f} ms).",
            "", "| target (issue 17) | measured | verdict |", "|---|---|---|",
            f"| estgw CPU per enrolment (handshake + /crts + /sen) with the store <= 1.05x without |"
            f" {fmt(e_on, 3)} ms vs {fmt(e_off, 3)} ms = {fmt(e_on / e_off, 3)}x |"
            f" {verdict(e_on / e_off <= 1.05)} |",
            f"| (stricter reading: Redis's CPU counted as the registrar's) estgw + Redis with the store vs estgw alone <= 1.05x |"
            f" {fmt(e_on + r_on, 3)} ms vs {fmt(e_off, 3)} ms ="
            f" {fmt((e_on + r_on) / e_off, 3)}x | {verdict((e_on + r_on) / e_off <= 1.05)} |",
            f"| /sen p99 with the store <= without + 2 ms ({conc} devices at once; every /sen of"
            f" the mode's rounds pooled) | {fmt(q['on'][99])} ms vs {fmt(q['off'][99])} ms: {d:+.2f} ms |"
            f" {verdict(d <= 2)} |",
            f"| (the same, as the median of the per-round p99 differences) | {median(d99):+.2f} ms |"
            f" {verdict(median(d99) <= 2)} |",
            f"| (for scale) pooled /sen p50 difference | {q['on'][50] - q['off'][50]:+.2f} ms | - |",
            f"| no failures with the store on or off | {fails} failed | {verdict(fails == 0)} |"]
    return out


def nft_counters(path):
    spread = {}
    if path and os.path.exists(path):
        for line in open(path):
            f = line.split()
            if f:
                spread[f[0]] = [int(x) for x in f[2::2]]
    return spread


def nft_phase(runs, skip, counters_path):
    rs = sorted((r for k, r in runs.items() if k.startswith("cl_nft_")),
                key=lambda r: (r["label"].partition("_r")[2], r["label"]))
    if not rs:
        return [f"Not run: {skip or 'no result'}."]
    spread = nft_counters(counters_path)
    cores = os.cpu_count() or 1
    out = ["A network namespace made for each phase (its own loopback: no other traffic, no"
           " conntrack entries from before) holds the fast CA, a redis-server, N estgw"
           " instances with `[cluster]` on that Redis (ports 20000+i) and the bench client,"
           " which sends to one address, 127.0.0.1:5684. nftables in the output hook DNATs"
           " each new flow with `udp dport 5684 jhash ip saddr . udp sport mod N vmap { i :"
           " jump to_i }`, each chain `counter dnat to 127.0.0.1:2000i`; conntrack keeps every"
           " later datagram of the device's flow (the rest of the handshake, /crts, /sen,"
           " close_notify) on the same instance. Each device is a new DTLS session from a new"
           " source port, 32 at a time; 1 and 2 instances alternate between rounds.", "",
           "| phase | instances | devices | ok | failed | devices/s | /sen p50 / p99 ms |"
           " new flows per instance (nft counters) |"
           " CPU ms/device: client / estgw (all) / CA / Redis = total |",
           "|---|---|---|---|---|---|---|---|---|"]
    agg = {}
    for r in rs:
        k = int(r["label"].split("_")[2])
        cl = r["client_cpu_s"] * 1e3 / r["ok"] if r["ok"] else float("nan")
        parts = [cl, cpu_ms(r, "estgw"), cpu_ms(r, "ca"), cpu_ms(r, "redis")]
        a = agg.setdefault(k, {"ok": 0, "wall": 0.0, "cpu": 0.0, "failed": 0})
        a["ok"] += r["ok"]
        a["wall"] += r["wall_s"]
        a["failed"] += r["failed"]
        a["cpu"] += r["client_cpu_s"] + sum(p["cpu_s"] for p in r["procs"].values())
        fails = ", ".join(f"{x}: {y}" for x, y in r["failures"].items()) or "0"
        out.append(f"| {r['label']} | {k} | {r['n']} | {r['ok']} | {fails} | {r['ok'] / r['wall_s']:.0f} |"
                   f" {fmt(lat(r, 'sen', 'p50'))} / {fmt(lat(r, 'sen', 'p99'))} |"
                   f" {' / '.join(str(x) for x in spread.get(r['label'], [])) or '-'} |"
                   f" {' / '.join(fmt(x, 3) for x in parts)} = {fmt(sum(parts), 3)} |")
    out += ["", "| instances | devices/s (all rounds) | failed | CPU ms per device, every process |"
            f" CPU-bound ceiling on {cores} cores |", "|---|---|---|---|---|"]
    rate = {}
    for k in sorted(agg):
        a = agg[k]
        rate[k] = a["ok"] / a["wall"] if a["wall"] else float("nan")
        per = a["cpu"] * 1e3 / a["ok"] if a["ok"] else float("nan")
        out.append(f"| {k} | {rate[k]:.0f} | {a['failed']} | {fmt(per, 3)} | {cores * 1e3 / per:.0f} devices/s |")
    if 1 in rate and 2 in rate:
        out += ["", f"2 instances vs 1: **{rate[2] / rate[1]:.2f}x** the devices/s. The ceiling is what"
                f" {cores} cores allow when every process of the phase is counted: {cores} x 1000 ms"
                " divided by the CPU all of them spend per device. The bench client (doing the"
                " devices' side of each handshake), the CA and Redis run on the same cores as the"
                " instances, so a second instance brings no CPU of its own: it can only take the"
                " part of a core one event loop leaves unused, and devices/s stays under that"
                " ceiling whatever N is. On separate hosts each instance brings its own cores and"
                " the ceiling grows with N; this machine cannot show that."]
    return out


def cluster_section(runs, a):
    if not any(k.startswith("cl_") for k in runs) and not a.cluster_skip:
        return []
    have = a.loadavg and os.path.exists(a.loadavg)  # written when the cluster phases started
    load = open(a.loadavg).read().strip() if have else "?"
    when = os.path.getmtime(a.loadavg) if have else time.time()
    doc = [CLUSTER_HEAD, "",
           f"Run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(when))} (profile: {a.profile}); load"
           f" average (1, 5, 15 min) when the cluster phases started: {load} on {os.cpu_count()} cores."
           " The commands of these phases:", "", "```"]
    if a.commands and os.path.exists(a.commands):
        doc += [ln for ln in open(a.commands).read().splitlines() if is_cluster_cmd(ln)]
    doc += ["```", ""]
    if a.cluster_skip:
        return doc + [f"Not run: {a.cluster_skip}.", ""]
    doc += ["### Store off vs on, alternating rounds", ""] + store_on_off(runs, a.store_keys, a.redis_cmds, a.redis_io)
    doc += ["", "### 1 and 2 instances behind nftables", ""] + nft_phase(runs, a.nft_skip, a.nft_counters)
    if a.cluster_notes and os.path.exists(a.cluster_notes):
        doc += ["", open(a.cluster_notes).read().rstrip()]
    return doc + [""]


def is_cluster_cmd(line):
    return "--label cl_" in line or line.startswith("redis-server") or line.startswith("nft ")


def splice(path, section):
    """Replace the cluster section of the report at @path (or add it before the
    hand-written analysis); nothing else of the file changes."""
    text = open(path).read()
    lines = text.rstrip("\n").split("\n")
    new = "\n".join(section).rstrip("\n").split("\n")
    if CLUSTER_HEAD in lines:
        i = lines.index(CLUSTER_HEAD)
        j = next((n for n in range(i + 1, len(lines)) if lines[n].startswith("## ")), len(lines))
        lines[i:j] = new + ([""] if j < len(lines) else [])
    else:
        anchor = "## Read these numbers with care"
        i = lines.index(anchor) if anchor in lines else len(lines)
        lines[i:i] = new + [""]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--speed")
    ap.add_argument("--commands")
    ap.add_argument("--estgw", default="estgw")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--analysis")
    ap.add_argument("--out")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--jpy", help="jpy.jsonl of run.sh's JPY phase")
    ap.add_argument("--jpy-into", help="replace only the JPY section of this file")
    ap.add_argument("--cluster-skip", default="")
    ap.add_argument("--nft-skip", default="")
    ap.add_argument("--nft-counters")
    ap.add_argument("--loadavg")
    ap.add_argument("--store-keys")
    ap.add_argument("--redis-cmds")
    ap.add_argument("--redis-io")
    ap.add_argument("--cluster-notes")
    ap.add_argument("--splice", help="replace the cluster section of this report only")
    a = ap.parse_args()
    runs = load(a.results)
    if a.jpy_into:
        replace_section(a.jpy_into, jpy_section(runs, a.jpy))
        return 0
    if a.check:
        bad = [f"{r['label']}: {r['failures']}" for r in runs.values() if r["failed"] or not r["ok"]]
        if bad or len(runs) < 5:
            print("bench smoke failed:", bad or f"only {len(runs)} phases", file=sys.stderr)
            return 1
        return 0
    if a.splice:
        splice(a.splice, cluster_section(runs, a))
        return 0
    sp = speed(a.speed)
    idle_rows, idle = idle_table(runs)
    doc = ["# estgw performance", "",
           "Generated by `bash bench/run.sh` (profile: %s) — every number below comes from one run on the"
           " machine described, with the commands listed. Do not edit the measured part by hand: re-run."
           " The tools, options and how to profile: bench/README.md. The analysis at the end (profile,"
           " where the time goes, what would fix a missed target) is bench/analysis.md."
           % a.profile, "",
           "## Machine", ""] + machine(a.estgw) + [
           "", "## What runs", "",
           "- **estgw** (release build) with a config rendered by run.sh: one DTLS listener, client trust ="
           " the bench device CA, upstream = the fast CA over HTTPS with the RA certificate; started as the"
           " systemd unit starts it (`GNUTLS_NO_IMPLICIT_INIT=1`). After start-up estgw gives back its free"
           " heap and the clean library pages start-up touched (see Memory budget); the bare server does not.",
           "- **fast CA** (`bench/fast_ca.c`): RFC 7030 over HTTPS, one libevent loop, signs in-process with"
           " OpenSSL (the Python test CA forks `openssl` per request and would be the bottleneck).",
           "- **bare libcoap server** (`bench/bare_server.c`): libcoap 4.3.1, one handler for every path"
           " (900-byte answer, like /crts), estgw's DTLS settings; `once` = credentials parsed once (estgw's"
           " trick), `pem` = libcoap loads the PEM files itself per ClientHello (stock use).",
           "- **estgw-bench** (`bench/estgw_bench.c`): N simulated devices, each with its own P-256 key and"
           " certificate from a device CA made for the run and its own CSR, made before the clock starts;"
           " C devices at a time, each a new DTLS session: handshake, then GET crts, POST sen (CF 286), and"
           " in one phase POST sren, with the Block1/Block2 size given; then close_notify. The https mode"
           " does the same enrolments straight to the CA with libcurl (one TLS 1.2 session per device, no"
           " session cache). The idle mode opens K sessions and holds them. CPU = utime + stime from"
           " /proc/PID/stat over the phase; RSS sampled every 50 ms from /proc/PID/status.",
           "- Every phase starts fresh estgw / bare-server processes; the CA runs through the whole run.",
           "", "## Commands", "", "```", "bash bench/run.sh            # all of it, writes this file"]
    if a.commands and os.path.exists(a.commands):
        doc += [ln for ln in open(a.commands).read().rstrip().splitlines() if not is_cluster_cmd(ln)]
    doc += ["```", "", "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    doc += targets(runs, sp, idle)
    doc += ["", "## Crypto floor", ""] + floor(sp, runs)
    doc += ["", "## Phases", "",
            "Server CPU and client CPU are per successful device (all of its requests); request latency is"
            " the last request of the device (sen or crts), from sending it to the final response.", ""]
    doc += phase_table(runs)
    doc += ["", "## Memory at start", "",
            "A fresh process after start-up (the /cacerts cache warm), before the idle phase opens its"
            " sessions. RssAnon is the process's own memory (heap, stacks, written library data); the rest"
            " of RSS is pages of shared libraries and files, shared with every other process that maps them"
            " and dropped by the kernel under memory pressure.", ""] + start_table(runs)
    doc += ["", "## Idle sessions", ""] + idle_rows
    doc += [""] + jpy_section(runs, a.jpy)
    cl = cluster_section(runs, a)
    if cl:
        doc += [""] + cl
    if a.analysis and os.path.exists(a.analysis):
        doc += ["", open(a.analysis).read().rstrip()]
    # the "Under attack" section, written by bench/attack.py (issue 16)
    attack_md = os.path.join(os.path.dirname(os.path.abspath(__file__)), "attack.md")
    if os.path.exists(attack_md):
        doc += ["", open(attack_md).read().rstrip()]
    text = "\n".join(doc) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
