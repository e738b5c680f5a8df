#!/usr/bin/env python3
"""mk_masa_seeds.py OUTDIR - seeds for fuzz_masa: the constrained-voucher example voucher
(tests/unit/fixtures/cv/voucher.hex) as a 200 with its own nonce and serial-number, a 202,
a 404 with a reason and a 429 with a Retry-After. Input layout: see fuzz_masa.c."""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
NONCE = bytes.fromhex("57eed786ad404907")
SERIAL = b"JADA123456789"


def voucher():
    path = os.path.join(HERE, "..", "unit", "fixtures", "cv", "voucher.hex")
    with open(path) as f:
        text = "".join(line.split("#")[0] for line in f)
    return bytes.fromhex("".join(text.split()))


def status(i):
    """The selector byte for statuses[i] of fuzz_masa.c (14 entries; below 128 is 200)."""
    return 140 + i


def seed(status_sel, ct, ra, body, err=0, flags=0):
    out = bytes([status_sel, err, flags])
    for chunk in (ct, ra, NONCE, SERIAL):
        out += struct.pack(">H", len(chunk)) + chunk
    return out + body


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    seeds = {
        "voucher_200": seed(0, b"application/voucher+cose", b"", voucher()),
        "pending_202": seed(status(1), b"text/plain", b"30", b"wait"),
        "unknown_404": seed(status(2), b"text/plain", b"", b"unknown device"),
        "busy_429": seed(status(4), b"", b"Sun, 06 Nov 1994 08:49:37 GMT", b"slow down"),
        "timeout": seed(0, b"", b"", b"", err=200, flags=1),  # 200 % 7 = EST_UP_TIMEOUT
    }
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
