#!/usr/bin/env python3
"""jpy_load.py - synthetic load on estgw's JPY relay (H6) for bench/run.sh.

Three phases against one estgw, each measured as estgw's CPU (utime + stime of
/proc/PID/stat) over the phase, datagrams paced so that none is lost in a socket
buffer (the relayed count is read back from /metrics):
  direct      N datagrams straight to the DTLS port (a record libcoap drops: no session)
  relay_one   the same N datagrams as JPY messages of one header: one pledge session
  relay_many  M JPY messages with M headers: M pledge sessions, waited for until they expire
relay_one - direct is the relay's own cost per datagram in; relay_many / M - relay_one / N
is the cost of opening and expiring one pledge session. Prints one JSON line.
"""
import argparse
import json
import os
import socket
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")
# a DTLS 1.2 ApplicationData record header and 16 bytes: no ClientHello, dropped
RECORD = bytes([23, 0xFE, 0xFD]) + bytes(8) + bytes([0, 16]) + os.urandom(16)


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def metric(url, name):
    with urllib.request.urlopen(url, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def jpy(header, content):
    def h(n):
        return bytes([0x40 | n]) if n < 24 else bytes([0x58, n])
    return b"\x82" + h(len(header)) + header + bytes([0x58, len(content)]) + content


def send_all(sock, dst, msgs):
    for i, m in enumerate(msgs):
        sock.sendto(m, dst)
        if i % 32 == 31:
            time.sleep(0.0005)


def phase(pid, fn):
    c0 = cpu(pid)
    fn()
    time.sleep(0.3)  # let the loop finish the last datagrams
    return cpu(pid) - c0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jpy-port", type=int, required=True)
    ap.add_argument("--dtls-port", type=int, required=True)
    ap.add_argument("--metrics", required=True, help="http://host:port/metrics")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("-m", type=int, default=5000)
    a = ap.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    jdst, ddst = ("127.0.0.1", a.jpy_port), ("127.0.0.1", a.dtls_port)
    gauge = "estgw_jpy_pledge_sessions"
    din = 'estgw_jpy_datagrams_total{dir="in"}'
    direct = phase(a.pid, lambda: send_all(s, ddst, [RECORD] * a.n))
    in0 = metric(a.metrics, din)
    one = phase(a.pid, lambda: send_all(s, jdst, [jpy(b"bench-one", RECORD)] * a.n))
    in1 = metric(a.metrics, din)

    def many():
        send_all(s, jdst, [jpy(b"bench-%08d" % i, RECORD) for i in range(a.m)])
        t0 = time.time()
        while metric(a.metrics, gauge) > 0 and time.time() - t0 < 120:
            time.sleep(0.5)
    before = metric(a.metrics, gauge)
    many_cpu = phase(a.pid, many)
    in2 = metric(a.metrics, din)
    print(json.dumps({"micro": True, "n": a.n, "m": a.m, "relayed_one": in1 - in0,
                      "relayed_many": in2 - in1, "sessions_before": before,
                      "cpu_direct_s": direct, "cpu_one_s": one, "cpu_many_s": many_cpu}))


if __name__ == "__main__":
    main()
