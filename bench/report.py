#!/usr/bin/env python3
"""report.py - turn one bench/run.sh run into docs/performance.md (issue 9).

Reads the JSON lines estgw-bench appended (one object per phase), the
`openssl speed` output of the same run and the commands run.sh logged; writes
the machine, the commands, the measured tables, the ratios and each target
with its verdict, then the hand-written analysis (bench/analysis.md).
--check (smoke run): only verify every phase ran with no failure.
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
        if r["mode"] == "idle":
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
    a = ap.parse_args()
    runs = load(a.results)
    if a.check:
        bad = [f"{r['label']}: {r['failures']}" for r in runs.values() if r["failed"] or not r["ok"]]
        if bad or len(runs) < 5:
            print("bench smoke failed:", bad or f"only {len(runs)} phases", file=sys.stderr)
            return 1
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
        doc += open(a.commands).read().rstrip().splitlines()
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
    if a.analysis and os.path.exists(a.analysis):
        doc += ["", open(a.analysis).read().rstrip()]
    text = "\n".join(doc) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
