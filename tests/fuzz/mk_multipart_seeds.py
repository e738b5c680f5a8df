#!/usr/bin/env python3
"""mk_multipart_seeds.py - seed corpus for fuzz_multipart from RFC 9148 A.3.

Usage: mk_multipart_seeds.py RFC9148.txt OUTDIR
Takes the published /skg example (a PKCS#8 key and a certs-only PKCS#7) out
of the RFC text and writes multipart/mixed answers in the fuzz_multipart.c
layout: selector byte, boundary length byte, boundary, body.
"""
import base64
import os
import re
import sys


def a3_parts(rfc_text):
    seg = rfc_text[rfc_text.index("### A.3. serverkeygen"):]
    block = re.findall(r"```\n(.*?)```", seg, re.S)[2]
    data = bytes.fromhex("".join("".join(l.split("#")[0].split()) for l in block.splitlines()))
    return data[6:6 + 138], data[6 + 138 + 6:]


def seed(sel, boundary, body):
    return bytes([sel, len(boundary)]) + boundary + body


def part(ctype, der, eol=b"\r\n", cte=True):
    head = b"--B" + eol + b"Content-Type: " + ctype + eol
    if cte:
        head += b"Content-Transfer-Encoding: base64" + eol
    return head + eol + base64.encodebytes(der).replace(b"\n", eol) + eol


def main():
    key, p7 = a3_parts(open(sys.argv[1], encoding="utf-8").read())
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    p8, certs = b"application/pkcs8", b"application/pkcs7-mime; smime-type=certs-only"
    skg_key = b"application/pkcs7-mime; smime-type=server-generated-key"
    seeds = {
        "skg_crlf": seed(0, b"B", part(p8, key) + part(certs, p7) + b"--B--\r\n"),
        "skc_reversed": seed(1, b"B", part(certs, p7) + part(p8, key) + b"--B--\r\n"),
        "lf_preamble": seed(4, b"B", b"preamble\n" + part(p8, key, b"\n", False)
                            + part(certs, p7, b"\n") + b"--B--\nepilogue\n"),
        "encrypted": seed(0, b"B", part(skg_key, p7) + part(certs, p7) + b"--B--"),
        "binary": seed(1, b"B", b"--B\r\nContent-Type: application/pkcs8\r\n\r\n" + key
                       + b"\r\n--B\r\nContent-Type: application/pkcs7-mime\r\n\r\n" + p7
                       + b"\r\n--B--"),
        "unclosed": seed(0, b"B", part(p8, key) + part(certs, p7)),
        "enroll_p7": seed(3, b"B", base64.encodebytes(p7)),
        "raw_key": seed(0, b"B", key),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
