#!/usr/bin/env python3
"""mk_translate_seeds.py - seed corpus for fuzz_translate from fixture DER.

Usage: mk_translate_seeds.py DERDIR OUTDIR
DERDIR comes from tests/unit/fixtures/mk_translate_fixtures.sh OUT.h DERDIR. Each seed
follows the fuzz_translate.c layout: 6 header bytes, then 2-byte length
prefixed Content-Type, Retry-After, CSR, queries and path, then the body.
"""
import base64
import os
import sys


def chunk(b):
    return len(b).to_bytes(2, "big") + b


def seed(hdr, ct, ra, csr, queries, path, body):
    return bytes(hdr) + chunk(ct) + chunk(ra) + chunk(csr) + chunk(queries) \
        + chunk(path) + body


def main():
    derdir, outdir = sys.argv[1], sys.argv[2]
    der = {n[:-4]: open(os.path.join(derdir, n), "rb").read()
           for n in os.listdir(derdir) if n.endswith(".der")}
    os.makedirs(outdir, exist_ok=True)
    p7ct = b"application/pkcs7-mime; smime-type=certs-only"
    b64 = base64.encodebytes  # line breaks, as EST servers send it
    seeds = {
        "crts_281": seed([0, 0, 0, 9, 1, 1], p7ct, b"", b"", b"rt=ace.est*",
                         b".well-known/est/crts", b64(der["p7_ca_chain"])),
        "crts_287": seed([0, 1, 0, 9, 1, 0], b"", b"", b"", b"ct=287",
                         b"est/lbl/crts", b64(der["p7_two_roots"])),
        "sen_287": seed([1, 1, 0, 9, 2, 3], p7ct, b"", der["csr"],
                        b"rt=ace.est.sen&ct=28*", b"est/sen",
                        b64(der["p7_ee_chain"])),
        "sren_bin": seed([2, 0, 0, 9, 2, 2], b"application/pkcs7-mime",
                         b"", der["csr"], b"if=x", b"est/p/sren",
                         der["p7_ee_twice"]),
        "att": seed([3, 2, 0, 9, 1, 1], b"application/csrattrs", b"",
                    b"", b"ct=285", b"est/att",
                    b64(bytes.fromhex("300b06092a864886f70d010907"))),
        "retry": seed([1, 0, 129, 9, 2, 0], b"text/plain",
                      b"Sun, 06 Nov 1994 08:59:37 GMT", der["csr"], b"",
                      b"est/sen", b""),
        "retry_obs": seed([1, 0, 131, 9, 2, 0], b"", b"Sun Nov  6 08:49:37 1994",
                          b"", b"", b"est/skg", b""),
        "html": seed([0, 0, 0, 9, 1, 0], b"text/html", b"120", b"", b"",
                     b"est/crts", b"<html></html>"),
        "tls": seed([0, 0, 0, 3, 1, 0], b"", b"", b"", b"", b"", b""),
    }
    for name, data in seeds.items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
