#!/usr/bin/env python3
"""jpy_proxy.py - a stateless constrained join proxy for the tests (H6;
draft-ietf-anima-constrained-join-proxy-20, JPY).

Pledges send DTLS to --listen (as to a registrar). Each datagram goes to the
registrar's JPY port as the CBOR array [jpy_header, jpy_content]: the header
names the pledge (family byte, address, port, then --pad filler bytes), the
content is the datagram. An answer from the registrar is unwrapped and sent to
the address its header names. No per-pledge state is kept: everything needed
to answer travels in the header.

The CBOR here is this file's own (RFC 8949 §3 heads), not estgw's. A control
UDP socket answers b"stats" with JSON: datagrams each way, the largest JPY
answer seen, answers that did not decode, headers seen.
"""
import argparse
import json
import os
import select
import socket
import struct
import sys


def head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + struct.pack(">H", n)
    return bytes([major << 5 | 26]) + struct.pack(">I", n)


def wrap(header, content):
    return head(4, 2) + head(2, len(header)) + header + head(2, len(content)) + content


def read_head(b, i):
    if i >= len(b):
        raise ValueError("short")
    major, ai = b[i] >> 5, b[i] & 0x1F
    i += 1
    if ai < 24:
        return major, ai, i
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(ai)
    if size is None or i + size > len(b):
        raise ValueError("bad head")
    return major, int.from_bytes(b[i:i + size], "big"), i + size


def unwrap(b):
    major, n, i = read_head(b, 0)
    if major != 4 or n != 2:
        raise ValueError("not a 2-array")
    out = []
    for _ in range(2):
        major, n, i = read_head(b, i)
        if major != 2 or i + n > len(b):
            raise ValueError("not a bstr")
        out.append(b[i:i + n])
        i += n
    if i != len(b):
        raise ValueError("trailing bytes")
    return out


def pledge_header(addr, pad):
    ip, port = addr[0], addr[1]
    if ":" in ip:
        return b"\x06" + socket.inet_pton(socket.AF_INET6, ip) + struct.pack(">H", port) + pad
    return b"\x04" + socket.inet_aton(ip) + struct.pack(">H", port) + pad


def pledge_addr(header):
    if header[:1] == b"\x06" and len(header) >= 19:
        return socket.inet_ntop(socket.AF_INET6, header[1:17]), struct.unpack(">H", header[17:19])[0]
    if header[:1] == b"\x04" and len(header) >= 7:
        return socket.inet_ntoa(header[1:5]), struct.unpack(">H", header[5:7])[0]
    raise ValueError("header names no pledge")


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1", help="address pledges send to")
    ap.add_argument("--bind", default="127.0.0.2", help="address towards the registrar")
    ap.add_argument("--registrar", required=True, help="host:port of the JPY port")
    ap.add_argument("--pad", type=int, default=0, help="filler bytes added to each header")
    ap.add_argument("--port-file", required=True, help="pledge port, then control port")
    a = ap.parse_args()
    rhost, rport = a.registrar.rsplit(":", 1)
    rhost = rhost.strip("[]")
    pledges = socket.socket(family_of(a.listen), socket.SOCK_DGRAM)
    pledges.bind((a.listen, 0))
    up = socket.socket(family_of(a.bind), socket.SOCK_DGRAM)
    up.bind((a.bind, 0))
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctl.bind(("127.0.0.1", 0))
    pad = b"\x5a" * a.pad
    stats = {"to_registrar": 0, "to_pledges": 0, "max_answer": 0, "bad_answers": 0,
             "proxy_port": up.getsockname()[1], "headers": []}
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{pledges.getsockname()[1]} {ctl.getsockname()[1]}\n")
    os.rename(tmp, a.port_file)
    while True:
        ready, _, _ = select.select([pledges, up, ctl], [], [])
        for s in ready:
            data, src = s.recvfrom(65536)
            if s is pledges:
                h = pledge_header(src, pad)
                if h.hex() not in stats["headers"]:
                    stats["headers"].append(h.hex())
                up.sendto(wrap(h, data), (rhost, int(rport)))
                stats["to_registrar"] += 1
            elif s is up:
                stats["max_answer"] = max(stats["max_answer"], len(data))
                try:
                    header, content = unwrap(data)
                    pledges.sendto(content, pledge_addr(header))
                    stats["to_pledges"] += 1
                except (ValueError, OSError):
                    stats["bad_answers"] += 1
            else:
                ctl.sendto(json.dumps(stats).encode(), src)


if __name__ == "__main__":
    sys.exit(main())
