#!/usr/bin/env python3
"""est_ca.py - an independent RFC 7030 EST server (test CA) for estgw's integration tests.

Owns: HTTPS (TLS 1.2+) with a required client certificate, the EST operations cacerts,
simpleenroll, simplereenroll, csrattrs and serverkeygen (RFC 7030 section 4, Base64 bodies as
RFC 8951 says), fault modes, request counters.
Must not: share code with estgw. It is the reference the gateway is compared against, so it is
written from the RFCs: Python 3.11 standard library plus the openssl CLI (subprocess).

Usage:
  est_ca.py --pki DIR [--host 127.0.0.1] [--port 0] [--port-file F] [--label L ...]
            [--base /.well-known/est] [--client-trust PEM ...] [--no-ra-check]
            [--tls-max {1.2,1.3}] [--control] [--control-port N] [--control-port-file F]
            [--mode MODE] [--retry-after V] [--delay S] [--fault-op OP] [--fault-count N]
            [--no-serverkeygen] [--no-csrattrs] [--kek HEX]

  DIR comes from tests/pki/mkpki.sh: ca-server.crt/.key is the TLS server certificate,
  est-sub.crt/.key signs enrollments, /cacerts answers est-root + est-sub. Client certificates
  are verified against --client-trust (default: est-root.crt and est-sub.crt from DIR) and must
  carry EKU id-kp-cmcRA (1.3.6.1.5.5.7.3.28), else 403 (--no-ra-check skips that).
  --port 0 picks a free port; the bound port is written to --port-file once listening.

Paths: <base>/<op> and <base>/<label>/<op> for each --label; unknown label, op or path: 404;
wrong method: 405. POSTs need Content-Type application/pkcs10 (415) and a Base64 CSR read as
strictly as libest's estserver (Cisco's EST server, which reads it with OpenSSL's base64 BIO):
lines of at most 76 characters (RFC 2045 6.8) ended by LF or CRLF, the last line with or
without one. One long line, a longer line or bad Base64: 400 "Problem reading DER encoded
certificate request" (libest's words). 400 also for a CSR openssl cannot parse or verify.
  GET  cacerts         200 application/pkcs7-mime; smime-type=certs-only (est-root, est-sub)
  POST simpleenroll    200 certs-only PKCS#7 with the issued certificate only (est-sub, 1 year,
  POST simplereenroll      clientAuth, random serial, subject and key from the CSR)
  GET  csrattrs        200 application/csrattrs: challengePassword, ecPublicKey/secp256r1,
                           ecdsa-with-SHA256
                           --no-csrattrs: 404, as a CA without it.
  POST serverkeygen    200 multipart/mixed: application/pkcs8 (new P-256 key, PKCS#8 DER) and
                           certs-only PKCS#7 (the CSR's subject; its key and signature ignored).
                           A CSR with SMIMECapabilities and DecryptKeyIdentifier gets the key
                           encrypted (RFC 7030 4.4.1.1, 4.4.2): CMS EnvelopedData for the KEK
                           --kek (default 000102..0f) named by the identifier, inside SignedData
                           by est-sub, as application/pkcs7-mime; smime-type=server-generated-key.
                           AsymmetricDecryptKeyIdentifier: 501 (not implemented).
                           --no-serverkeygen: 404, as a CA without it.
RFC 8295 (--rfc8295 DIR): pal, eecerts, crls, symmetrickeys, firmware, tamp, their /return
POSTs, serverkeygen/return, and /serverkeygen answering PKCS#12 or an encrypted key package
for Accept application/pkcs12 or application/cms; see tests/ca/rfc8295_ca.py.
Every answer carries Content-Length (HTTP/1.1 keep-alive); Base64 answers also
Content-Transfer-Encoding: base64.

Control (choose one or both; tests usually use the plain port):
  --control-port-file F  a second, plain-HTTP listener on --host (port --control-port, default
                         free) serving only the control endpoints; its port is written to F.
  --control              also serve the control endpoints on the HTTPS port (TLS client
                         certificate still required by the handshake, no cmcRA check).
  GET  /stats    JSON {"total", "paths": {path: n}, "ops": {op: n}, "status": {code: n},
                 "issued", "connections", "last": {"method", "path", "headers"}, "last_csr",
                 "last_body" (the last POST body as sent, Latin-1 text),
                 "in_flight", "max_in_flight", "held", "abandoned"}.
                 Control requests are not counted. "connections" counts TLS handshakes done;
                 "in_flight" EST requests being worked on now, "max_in_flight" the most at
                 once since the last reset, "held" requests waiting in mode hold now.
  GET  /control  the current fault as JSON, plus "csrattrs" and "serverkeygen": whether
                 those operations are implemented.
  POST /control  JSON {"mode": MODE, "retry_after": V, "delay": S, "op": OP, "count": N,
                 "reset_stats": true, "release": true, "csrattrs": B, "serverkeygen": B};
                 every key optional. A "mode" key replaces the whole fault setting (absent
                 keys take defaults); without it the fault is kept. "release" lets every
                 held request go on. "csrattrs"/"serverkeygen" false makes the operation
                 unknown (404, like --no-csrattrs), true brings it back.
Faults (MODE), also from the command line with --mode and the matching flags:
  normal          no fault
  binary          answer DER instead of Base64, no Content-Transfer-Encoding header
  delay=S         sleep S seconds, then answer normally ("delay" also combines with any mode)
  hold            keep the request open until POST /control {"release": true} (at most
                  HOLD_MAX seconds), then answer normally; setting mode hold after a
                  release holds the requests that follow again. A held request whose
                  client has gone (its connection closed, e.g. the gateway was killed)
                  is not processed: nothing is issued, "abandoned" counts it, the log
                  says "client gone" (a CA that commits an enrollment only with its
                  answer)
  status=CODE     answer CODE with a short text/plain body (204: none; 3xx: a Location too;
                  Retry-After when retry_after is set)
  accepted[=N]    202, empty body, Retry-After: N (default 1; retry_after "none" omits it)
  garbage         200, right Content-Type, body that is not Base64
  truncated       200, Base64 of the first half of the DER (for serverkeygen: of the PKCS#7 part)
  html            200 text/html
  csrattrs=empty  204 for csrattrs (implies op csrattrs)
  layout=L        Base64 answers (and serverkeygen parts) in line layout L: oneline (no line
                  break at all), lf64, crlf64, lf76, crlf76 (width and line end; the last
                  line ends too). The default is Python's encodebytes: 76 columns, LF
  bare-ct         Content-Type application/pkcs7-mime without parameters
  no-cte          Base64 without the Content-Transfer-Encoding header
  sec1-key        serverkeygen key part is a bare SEC1 ECPrivateKey (implies op serverkeygen)
  parts-reversed  serverkeygen certificate part first (implies op serverkeygen)
  mp-unclosed     serverkeygen multipart without its closing boundary (implies serverkeygen)
  mp-no-key       serverkeygen multipart with the certificate part only (implies serverkeygen)
  mp-no-cert      serverkeygen multipart with the key part only (implies serverkeygen)
  mp-variant      serverkeygen multipart that is valid but unusual: quoted boundary with a
                  space, preamble and epilogue, bare LF line ends, lower-case header names,
                  no Content-Transfer-Encoding, parts reversed (implies serverkeygen)
  drop            close the connection without answering
  op: apply only to that operation (cacerts, simpleenroll, ...); count: apply to that many
  matching requests, then return to normal. Faults apply after the cmcRA check.
"""

import argparse
import base64
import http.server
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, asdict
from urllib.parse import urlsplit

from rfc8295_ca import X8295

CT_P7 = "application/pkcs7-mime; smime-type=certs-only"
CT_P7_BARE = "application/pkcs7-mime"
CT_CSRATTRS = "application/csrattrs"
CT_PKCS8 = "application/pkcs8"
CT_PKCS10 = "application/pkcs10"
CT_SKG = "application/pkcs7-mime; smime-type=server-generated-key"
OPS = {"cacerts": "GET", "csrattrs": "GET", "simpleenroll": "POST",
       "simplereenroll": "POST", "serverkeygen": "POST"}
MAX_BODY = 256 * 1024
HOLD_MAX = 600  # seconds a held request waits for a release at most
BOUNDARY = "estTestCaBoundary"


def log(msg):
    print(f"est_ca: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- tiny DER encoder/walker

def der_len(n):
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def der_tlv(tag, content):
    return bytes([tag]) + der_len(len(content)) + content


def der_oid(dotted):
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return der_tlv(0x06, bytes(out))


def oid_text(content):
    arcs, val = [], 0
    for b in content:
        val = (val << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(val)
            val = 0
    if not arcs:
        raise ValueError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first] + arcs[1:])


def der_read(buf, pos, end):
    """One TLV at pos: (tag, content_start, content_end). Raises ValueError when malformed."""
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, first = buf[pos], buf[pos + 1]
    pos += 2
    if first & 0x80:
        nbytes = first & 0x7F
        if nbytes == 0 or nbytes > 4 or pos + nbytes > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[pos:pos + nbytes], "big")
        pos += nbytes
    else:
        length = first
    if pos + length > end:
        raise ValueError("DER length beyond end")
    return tag, pos, pos + length


def der_children(buf, start, end):
    out, pos = [], start
    while pos < end:
        tlv = der_read(buf, pos, end)
        out.append(tlv)
        pos = tlv[2]
    return out


def der_top(buf):
    tag, start, end = der_read(buf, 0, len(buf))
    if tag != 0x30 or end != len(buf):
        raise ValueError("not one DER SEQUENCE")
    return start, end


def cert_ekus(cert_der):
    """The EKU OIDs (dotted) of a DER certificate; empty when it has no EKU extension."""
    start, end = der_top(cert_der)
    _, tbs_s, tbs_e = der_children(cert_der, start, end)[0]
    for tag, s, e in der_children(cert_der, tbs_s, tbs_e):
        if tag != 0xA3:
            continue
        _, exts_s, exts_e = der_read(cert_der, s, e)
        for _, es, ee in der_children(cert_der, exts_s, exts_e):
            parts = der_children(cert_der, es, ee)
            if oid_text(cert_der[parts[0][1]:parts[0][2]]) != "2.5.29.37":
                continue
            _, vs, ve = parts[-1]
            _, ss, se = der_read(cert_der, vs, ve)
            return [oid_text(cert_der[s2:e2]) for _, s2, e2 in der_children(cert_der, ss, se)]
    return []


NAME_SHORT = {"2.5.4.3": "CN", "2.5.4.5": "serialNumber", "2.5.4.6": "C", "2.5.4.7": "L",
              "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
              "1.2.840.113549.1.9.1": "emailAddress",
              "0.9.2342.19200300.100.1.1": "UID", "0.9.2342.19200300.100.1.25": "DC"}
STRING_CODECS = {0x0C: "utf-8", 0x13: "latin-1", 0x16: "latin-1", 0x14: "latin-1",
                 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def csr_subject_arg(csr_der):
    """The CSR subject as an openssl -subj argument ("/CN=a/serialNumber=b")."""
    start, end = der_top(csr_der)
    _, cri_s, cri_e = der_children(csr_der, start, end)[0]
    _, name_s, name_e = der_children(csr_der, cri_s, cri_e)[1]
    rdns = []
    for _, rs, re_ in der_children(csr_der, name_s, name_e):
        avas = []
        for _, as_, ae in der_children(csr_der, rs, re_):
            (_, os_, oe), (vtag, vs, ve) = der_children(csr_der, as_, ae)[:2]
            oid = oid_text(csr_der[os_:oe])
            value = csr_der[vs:ve].decode(STRING_CODECS.get(vtag, "latin-1"))
            for ch in "\\/+=":
                value = value.replace(ch, "\\" + ch)
            avas.append(f"{NAME_SHORT.get(oid, oid)}={value}")
        rdns.append("+".join(avas))
    return "/" + "/".join(rdns) if rdns else "/"


OID_SMIME_CAPS = "1.2.840.113549.1.9.15"
OID_DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.37"
OID_ASYM_DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.54"


def csr_attributes(csr_der):
    """{attribute OID (dotted): [(tag, value bytes), ...]} of a DER CSR."""
    start, end = der_top(csr_der)
    _, cri_s, cri_e = der_children(csr_der, start, end)[0]
    parts = der_children(csr_der, cri_s, cri_e)
    attrs = {}
    if len(parts) < 4 or parts[3][0] != 0xA0:
        return attrs
    for _, as_, ae in der_children(csr_der, parts[3][1], parts[3][2]):
        (_, os_, oe), (_, vs, ve) = der_children(csr_der, as_, ae)[:2]
        attrs[oid_text(csr_der[os_:oe])] = [(t, csr_der[s2:e2])
                                            for t, s2, e2 in der_children(csr_der, vs, ve)]
    return attrs


def build_csrattrs():
    """CsrAttrs (RFC 7030 section 4.5.2): SEQUENCE OF (OID | Attribute)."""
    challenge = der_oid("1.2.840.113549.1.9.7")
    ec_key = der_tlv(0x30, der_oid("1.2.840.10045.2.1")
                     + der_tlv(0x31, der_oid("1.2.840.10045.3.1.7")))
    sig = der_oid("1.2.840.10045.4.3.2")
    return der_tlv(0x30, challenge + ec_key + sig)


# ---------------------------------------------------------------- the CA (openssl CLI)

class HttpError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


EE_EXT = """[ee]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def openssl(*args, data=None):
    res = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=30)
    return res.returncode, res.stdout, res.stderr


class Ca:
    def __init__(self, pki):
        self.pki = pki
        self.root = os.path.join(pki, "est-root.crt")
        self.sub = os.path.join(pki, "est-sub.crt")
        self.sub_key = os.path.join(pki, "est-sub.key")
        for path in (self.root, self.sub, self.sub_key):
            if not os.path.isfile(path):
                raise SystemExit(f"est_ca: missing {path} (run tests/pki/mkpki.sh)")
        self.tmp = tempfile.TemporaryDirectory(prefix="est_ca.")
        self.ext = os.path.join(self.tmp.name, "ext.cnf")
        with open(self.ext, "w") as f:
            f.write(EE_EXT)
        self.cacerts_der = self.pkcs7([self.root, self.sub])

    def pkcs7(self, cert_files):
        args = ["crl2pkcs7", "-nocrl", "-outform", "DER"]
        for path in cert_files:
            args += ["-certfile", path]
        rc, out, err = openssl(*args)
        if rc != 0:
            raise HttpError(500, "crl2pkcs7 failed: " + err.decode(errors="replace").strip())
        return out

    def sign_args(self, out):
        return ["-CA", self.sub, "-CAkey", self.sub_key, "-set_serial",
                "0x" + secrets.token_hex(15), "-days", "365", "-sha256",
                "-extfile", self.ext, "-extensions", "ee", "-out", out]

    def enroll(self, csr_der):
        """Verify the CSR, issue a certificate for its subject and key; certs-only PKCS#7."""
        with tempfile.TemporaryDirectory(dir=self.tmp.name) as d:
            csr, cert = os.path.join(d, "csr.der"), os.path.join(d, "cert.pem")
            with open(csr, "wb") as f:
                f.write(csr_der)
            rc, out, err = openssl("req", "-inform", "DER", "-in", csr, "-verify", "-noout")
            if rc != 0:
                raise HttpError(400, "cannot parse the CSR")
            if b"verify OK" not in out + err:
                raise HttpError(400, "the CSR signature does not verify")
            rc, _, err = openssl("x509", "-req", "-inform", "DER", "-in", csr,
                                 *self.sign_args(cert))
            if rc != 0:
                raise HttpError(400, "cannot issue: " + err.decode(errors="replace").strip())
            return self.pkcs7([cert])

    def encrypt_key(self, pkcs8, kek, key_id):
        """RFC 7030 4.4.2: EnvelopedData for the KEK (KEKRecipientInfo), in SignedData."""
        with tempfile.TemporaryDirectory(dir=self.tmp.name) as d:
            key, env, signed = (os.path.join(d, n) for n in ("k.der", "env.der", "s.der"))
            with open(key, "wb") as f:
                f.write(pkcs8)
            steps = [("cms", "-encrypt", "-binary", "-in", key, "-outform", "DER", "-out", env,
                      "-aes-128-cbc", "-aes128-wrap", "-secretkey", kek,
                      "-secretkeyid", key_id.hex()),
                     ("cms", "-sign", "-binary", "-nodetach", "-in", env, "-econtent_type",
                      "pkcs7-envelopedData", "-signer", self.sub, "-inkey", self.sub_key,
                      "-outform", "DER", "-out", signed)]
            for step in steps:
                rc, _, err = openssl(*step)
                if rc != 0:
                    raise HttpError(500, f"openssl cms: " + err.decode(errors="replace").strip())
            with open(signed, "rb") as f:
                return f.read()

    def serverkeygen(self, csr_der):
        """New P-256 key + certificate for the CSR's subject: (pkcs8, sec1, pkcs7) DER."""
        try:
            subj = csr_subject_arg(csr_der)
        except (ValueError, IndexError, UnicodeDecodeError):
            raise HttpError(400, "cannot parse the CSR")
        with tempfile.TemporaryDirectory(dir=self.tmp.name) as d:
            key, pub, cert = (os.path.join(d, n) for n in ("k.pem", "k.pub", "cert.pem"))
            steps = [("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-out", key),
                     ("pkey", "-in", key, "-pubout", "-out", pub),
                     ("x509", "-new", "-subj", subj, "-force_pubkey", pub,
                      *self.sign_args(cert))]
            for step in steps:
                rc, _, err = openssl(*step)
                if rc != 0:
                    raise HttpError(500, f"openssl {step[0]}: "
                                    + err.decode(errors="replace").strip())
            _, pkcs8, _ = openssl("pkcs8", "-topk8", "-nocrypt", "-in", key, "-outform", "DER")
            _, sec1, _ = openssl("ec", "-in", key, "-outform", "DER")
            return pkcs8, sec1, self.pkcs7([cert])


# ---------------------------------------------------------------- faults and counters

OPTIONAL_OPS = ("csrattrs", "serverkeygen")  # operations a CA may lack (404)
MP_MODES = {"mp-unclosed", "mp-no-key", "mp-no-cert", "mp-variant"}
MODES = {"normal", "binary", "delay", "status", "accepted", "garbage", "truncated", "html",
         "csrattrs", "bare-ct", "no-cte", "sec1-key", "parts-reversed", "drop",
         "layout", "hold"} | MP_MODES
# layout=L: (characters a line, line end); width None is one line without a break.
LAYOUTS = {"oneline": (None, b""), "lf64": (64, b"\n"), "crlf64": (64, b"\r\n"),
           "lf76": (76, b"\n"), "crlf76": (76, b"\r\n")}
IMPLIED_OP = {"csrattrs": "csrattrs", "sec1-key": "serverkeygen",
              "parts-reversed": "serverkeygen", **{m: "serverkeygen" for m in MP_MODES}}


@dataclass
class Fault:
    mode: str = "normal"
    status: int = 0
    layout: str | None = None
    retry_after: str | None = None
    delay: float = 0.0
    op: str | None = None
    count: int | None = None


def parse_fault(spec):
    """A Fault from a dict like the POST /control JSON. Raises ValueError."""
    unknown = set(spec) - {"mode", "retry_after", "delay", "op", "count", "reset_stats",
                           "release", *OPTIONAL_OPS}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    name, _, arg = str(spec.get("mode") or "normal").partition("=")
    if name not in MODES:
        raise ValueError(f"unknown mode {name!r}")
    f = Fault(mode=name, op=spec.get("op") or IMPLIED_OP.get(name))
    if spec.get("retry_after") is not None:
        f.retry_after = str(spec["retry_after"])
    f.delay = float(spec.get("delay") or 0)
    if spec.get("count") is not None:
        f.count = int(spec["count"])
        if f.count < 1:
            raise ValueError("count must be >= 1")
    if name == "delay":
        f.delay, f.mode = float(arg), "normal"
    elif name == "status":
        f.status = int(arg)
        if not 200 <= f.status <= 599:
            raise ValueError("status must be 200..599")
    elif name == "accepted":
        f.retry_after = arg or f.retry_after or "1"
    elif name == "csrattrs":
        if arg != "empty":
            raise ValueError("only csrattrs=empty exists")
    elif name == "layout":
        if arg not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(LAYOUTS)}")
        f.layout = arg
    elif arg:
        raise ValueError(f"mode {name} takes no argument")
    if f.op is not None and f.op not in OPS:
        raise ValueError(f"unknown op {f.op!r}")
    return f


class State:
    """Fault setting and counters shared by all request threads."""

    def __init__(self, fault, implemented):
        self.lock = threading.Lock()
        self.fault = fault
        self.implemented = dict(implemented)  # OPTIONAL_OPS -> bool
        self.release = threading.Event()  # set: held requests go on
        self.in_flight = 0
        self.held = 0
        self.reset_stats()

    def has_op(self, op):
        with self.lock:
            return self.implemented.get(op, True)

    def reset_stats(self):
        self.stats = {"total": 0, "paths": {}, "ops": {}, "status": {}, "issued": 0, "abandoned": 0,
                      "encrypted_keys": 0, "connections": 0, "last": None, "last_csr": None,
                      "last_body": None, "max_in_flight": self.in_flight}

    def enter(self):
        with self.lock:
            self.in_flight += 1
            self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self.in_flight)

    def leave(self):
        with self.lock:
            self.in_flight -= 1

    def hold(self):
        """Mode hold: wait for a release (bounded by HOLD_MAX)."""
        with self.lock:
            self.held += 1
            release = self.release
        try:
            release.wait(HOLD_MAX)
        finally:
            with self.lock:
                self.held -= 1

    def take_fault(self, op):
        """The fault for one request of op (None: answer normally); consumes a count."""
        with self.lock:
            f = self.fault
            if f.mode == "normal" and not f.delay or f.op not in (None, op):
                return None
            if f.count is not None:
                f.count -= 1
                if f.count <= 0:
                    self.fault = Fault()
            return f

    def count(self, section, key, n=1):
        with self.lock:
            bucket = self.stats[section]
            bucket[key] = bucket.get(key, 0) + n

    def bump(self, key):
        with self.lock:
            self.stats[key] += 1

    def note_request(self, method, path, headers):
        with self.lock:
            self.stats["total"] += 1
            self.stats["paths"][path] = self.stats["paths"].get(path, 0) + 1
            self.stats["last"] = {"method": method, "path": path,
                                  "headers": {k.lower(): v for k, v in headers.items()}}

    def snapshot(self):
        with self.lock:
            snap = json.loads(json.dumps(self.stats))
            snap.update(in_flight=self.in_flight, held=self.held)
            return snap


# ---------------------------------------------------------------- HTTP handler

def b64_lines(der, layout=None):
    """Base64 for an answer: Python's encodebytes (76 columns, LF) or a layout=L layout."""
    if layout is None:
        return base64.encodebytes(der)
    width, end = LAYOUTS[layout]
    text = base64.b64encode(der)
    if width is None:
        return text
    return b"".join(text[i:i + width] + end for i in range(0, len(text), width))


# A request body as strictly as libest's estserver reads it (RFC 7030 4.2.1 + RFC 2045 6.8
# lines). libest feeds the body to OpenSSL's base64 BIO, which decodes nothing before it has
# seen a line end: one long line gives it no CSR. Any failure gets libest's words.
LIBEST_BAD_CSR = "Problem reading DER encoded certificate request"
MAX_B64_LINE = 76


def decode_request_b64(body):
    """DER from a Base64 request body: lines of at most 76 characters, LF or CRLF between
    them (the last may lack it), only the Base64 alphabet. Else HttpError 400."""
    lines = body.split(b"\n")
    for i, line in enumerate(lines):
        if line.endswith(b"\r"):
            lines[i] = line = line[:-1]
        if len(line) > MAX_B64_LINE:
            log(f"request body line {i + 1} has {len(line)} characters (at most "
                f"{MAX_B64_LINE}, RFC 2045 6.8)")
            raise HttpError(400, LIBEST_BAD_CSR)
    if len(lines) < 2 and lines[0]:  # no line end at all: the BIO never starts
        log("request body is one line without a line end")
        raise HttpError(400, LIBEST_BAD_CSR)
    try:
        der = base64.b64decode(b"".join(lines), validate=True)
    except ValueError:
        log("request body is not Base64")
        raise HttpError(400, LIBEST_BAD_CSR)
    if not der:
        raise HttpError(400, LIBEST_BAD_CSR)
    return der


def subject_text(cert):
    if not cert:
        return "-"
    short = {"commonName": "CN", "serialNumber": "serialNumber", "organizationName": "O",
             "organizationalUnitName": "OU", "countryName": "C"}
    return ",".join(f"{short.get(k, k)}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "est_ca/1"
    timeout = 120  # idle keep-alive connections are closed after this

    def setup(self):
        super().setup()
        self.peer = None
        self.peer_der = None
        if isinstance(self.connection, ssl.SSLSocket):
            self.peer = self.connection.getpeercert()
            self.peer_der = self.connection.getpeercert(binary_form=True)

    # --- logging: one line per answer
    def log_request(self, code="-", size="-"):
        code = getattr(code, "value", code)
        log(f"{self.client_address[0]} {self.command} {self.path} {code} "
            f"subject={subject_text(self.peer)}")

    def log_message(self, fmt, *args):
        log(f"{self.client_address[0]} " + (fmt % args))

    # --- sending
    def reply(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=()):
        if isinstance(body, str):
            body = body.encode()
        if self.counted:
            self.server.state.count("status", str(status))
        self.send_response(status)
        if status not in (204, 304):
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if status not in (204, 304) and self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, obj):
        self.reply(200, json.dumps(obj, indent=1) + "\n", "application/json")

    # --- request plumbing
    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HttpError(400, "bad Content-Length")
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            raise HttpError(413, "body too large")
        return self.rfile.read(length)

    def read_chunked(self):
        body = b""
        while True:
            size = int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1000).strip():
                    pass
                return body
            if len(body) + size > MAX_BODY:
                self.close_connection = True
                raise HttpError(413, "body too large")
            body += self.rfile.read(size)
            self.rfile.readline(10)

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def dispatch(self):
        self.op = None
        self.counted = False
        path = urlsplit(self.path).path
        try:
            body = self.read_body()
            if self.server.control and path in ("/control", "/stats"):
                return self.control(path, body)
            if not self.server.est:
                raise HttpError(404, "not found")
            self.server.state.note_request(self.command, path, self.headers)
            self.counted = True
            self.server.state.enter()
            try:
                self.est(path, body)
            finally:
                self.server.state.leave()
        except HttpError as e:
            self.reply(e.status, str(e) + "\n")
        except (ConnectionError, TimeoutError):
            raise
        except Exception as e:  # a bug or an openssl surprise: still answer
            log(f"internal error: {e!r}")
            self.reply(500, f"internal error: {e}\n")

    # --- control endpoints
    def control(self, path, body):
        state = self.server.state
        if path == "/stats" and self.command == "GET":
            return self.reply_json(state.snapshot())
        if path != "/control" or self.command not in ("GET", "POST"):
            raise HttpError(405, "method not allowed")
        if self.command == "POST":
            try:
                spec = json.loads(body or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("JSON object expected")
                fault = parse_fault(spec) if "mode" in spec else None
                ops = {op: spec[op] for op in OPTIONAL_OPS if op in spec}
                if any(not isinstance(v, bool) for v in ops.values()):
                    raise ValueError("csrattrs and serverkeygen take true or false")
            except ValueError as e:
                raise HttpError(400, f"bad control request: {e}")
            if isinstance(spec.get("x8295"), dict) and self.server.x8295:
                self.server.x8295.control(spec["x8295"])
            with state.lock:
                if fault is not None:
                    state.fault = fault
                    if fault.mode == "hold" and state.release.is_set():
                        state.release = threading.Event()  # re-arm; unreleased ones wait on
                state.implemented.update(ops)
                if spec.get("reset_stats"):
                    state.reset_stats()
                if spec.get("release"):
                    state.release.set()
        with state.lock:
            current = {**asdict(state.fault), **state.implemented}
        self.reply_json(current)

    # --- EST
    def route(self, path):
        base = self.server.base
        if not path.startswith(base + "/"):
            raise HttpError(404, "not found")
        segs = path[len(base) + 1:].split("/")
        label = segs[0] if len(segs) == 2 else None
        if len(segs) > 2 or (label is not None and label not in self.server.labels):
            raise HttpError(404, "unknown label" if len(segs) == 2 else "not found")
        op = segs[-1]
        if op not in OPS or not self.server.state.has_op(op):
            raise HttpError(404, "unknown operation")
        if self.command != OPS[op]:
            raise HttpError(405, f"{op} needs {OPS[op]}")
        return op, label

    def check_ra(self):
        if self.server.ra_check and "1.3.6.1.5.5.7.3.28" not in cert_ekus(self.peer_der or b""):
            raise HttpError(403, "client certificate lacks id-kp-cmcRA")

    def est(self, path, body):
        try:
            self.check_ra()
        except ValueError:
            raise HttpError(403, "cannot parse the client certificate")
        x = self.server.x8295
        if x and x.handles(self, self.path, body, self.server.base, self.server.labels, HttpError):
            return
        op, label = self.route(path)
        self.op = op
        self.server.state.count("ops", op)
        fault = self.server.state.take_fault(op) or Fault()
        if fault.mode == "hold":
            self.server.state.hold()
            if self.client_gone():
                self.server.state.bump("abandoned")
                self.close_connection = True
                log(f"{self.client_address[0]} {self.command} {self.path} client gone "
                    "while held: not processed")
                return
        if fault.delay:
            time.sleep(fault.delay)
        if self.early_fault(fault):
            return
        getattr(self, "op_" + op)(body, fault)

    def client_gone(self):
        """True when the peer closed its connection (EOF or reset waiting)."""
        import select
        fd = self.connection.fileno()
        try:
            r, _, _ = select.select([fd], [], [], 0)
            if not r:
                return False
            raw = socket.socket(fileno=os.dup(fd))
            try:
                return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            finally:
                raw.close()
        except (ConnectionError, BlockingIOError, OSError):
            return True

    def early_fault(self, f):
        """Faults that answer before the request is processed; True when answered."""
        if f.mode == "drop":
            self.close_connection = True
            log(f"{self.client_address[0]} {self.command} {self.path} dropped")
            return True
        if f.mode == "status":
            headers = [("Retry-After", f.retry_after)] if f.retry_after else []
            if 300 <= f.status < 400:
                headers.append(("Location", "https://127.0.0.1:1/elsewhere"))
            self.reply(f.status, f"test CA: forced status {f.status}\n", headers=headers)
            return True
        if f.mode == "accepted":
            ra = f.retry_after
            self.reply(202, b"", headers=[("Retry-After", ra)] if ra and ra != "none" else [])
            return True
        if f.mode == "html":
            self.reply(200, "<html><body><h1>Proxy login required</h1></body></html>\n",
                       "text/html; charset=utf-8")
            return True
        if f.mode == "csrattrs":
            self.reply(204)
            return True
        return False

    def send_der(self, der, ctype, f):
        """A 200 with der encoded as the fault mode says (Base64 normally)."""
        headers = [("Content-Transfer-Encoding", "base64")]
        if f.mode == "binary":
            body, headers = der, []
        elif f.mode == "garbage":
            body = b"!!! this is *not* Base64 @@@ \x01\x02\n"
        elif f.mode == "truncated":
            body = b64_lines(der[:len(der) // 2], f.layout)
        else:
            body = b64_lines(der, f.layout)
        if f.mode == "no-cte":
            headers = []
        if f.mode == "bare-ct" and ctype == CT_P7:
            ctype = CT_P7_BARE
        self.reply(200, body, ctype, headers)

    def csr_from(self, body):
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != CT_PKCS10:
            raise HttpError(415, "Content-Type must be application/pkcs10")
        with self.server.state.lock:
            self.server.state.stats["last_body"] = body.decode("latin-1")
        csr = decode_request_b64(body)
        with self.server.state.lock:
            self.server.state.stats["last_csr"] = base64.b64encode(csr).decode()
        return csr

    def op_cacerts(self, body, f):
        self.send_der(self.server.ca.cacerts_der, CT_P7, f)

    def op_csrattrs(self, body, f):
        self.send_der(self.server.csrattrs, CT_CSRATTRS, f)

    def op_simpleenroll(self, body, f):
        p7 = self.server.ca.enroll(self.csr_from(body))
        self.server.state.bump("issued")
        self.send_der(p7, CT_P7, f)

    op_simplereenroll = op_simpleenroll

    def key_wrapping(self, csr):
        """The KEK identifier when the CSR asks for an encrypted key, else None."""
        try:
            attrs = csr_attributes(csr)
        except (ValueError, IndexError):
            raise HttpError(400, "cannot parse the CSR")
        if OID_SMIME_CAPS not in attrs:
            return None
        if OID_DECRYPT_KEY_ID in attrs:
            tag, key_id = attrs[OID_DECRYPT_KEY_ID][0]
            if tag != 0x04:
                raise HttpError(400, "DecryptKeyIdentifier must be an OCTET STRING")
            return key_id
        if OID_ASYM_DECRYPT_KEY_ID in attrs:
            raise HttpError(501, "asymmetric key encryption not implemented")
        return None

    def op_serverkeygen(self, body, f):
        csr = self.csr_from(body)
        if self.server.x8295 and self.server.x8295.serverkeygen(self, csr, self.server.ca,
                                                                HttpError):
            self.server.state.bump("issued")
            return
        key_id = self.key_wrapping(csr)
        pkcs8, sec1, p7 = self.server.ca.serverkeygen(csr)
        self.server.state.bump("issued")
        key, key_ct = (sec1 if f.mode == "sec1-key" else pkcs8), CT_PKCS8
        if key_id is not None:
            key = self.server.ca.encrypt_key(pkcs8, self.server.kek, key_id)
            key_ct = CT_SKG
            self.server.state.bump("encrypted_keys")
        if f.mode == "truncated":
            p7 = p7[:len(p7) // 2]
        parts = [(key_ct, key), (CT_P7, p7)]
        if f.mode == "parts-reversed":
            parts.reverse()
        if f.mode == "mp-variant":
            return self.reply(200, self.multipart_variant(parts),
                              'Multipart/Mixed; boundary="est ca:variant"')
        parts = {"mp-no-key": parts[1:], "mp-no-cert": parts[:1]}.get(f.mode, parts)
        self.reply(200, self.multipart(parts, f), f"multipart/mixed; boundary={BOUNDARY}")

    @staticmethod
    def multipart_variant(parts):
        """Valid RFC 2046 that a careless parser gets wrong (mode mp-variant)."""
        out = b"This is a multi-part message in MIME format.\n--est ca:variant-- is not it\n"
        for ctype, der in reversed(parts):
            out += b"--est ca:variant \ncontent-type: " + ctype.encode() + b"\n"
            out += b"content-description: part\n\n" + b64_lines(der)
        return out + b"--est ca:variant--\nepilogue\n--est ca:variant\n"

    def multipart(self, parts, f):
        out = b""
        for ctype, der in parts:
            head = f"--{BOUNDARY}\r\nContent-Type: {ctype}\r\n"
            if f.mode == "binary":
                data = der
            elif f.mode == "garbage":
                data = b"!!! not Base64 @@@\r\n"
            else:
                data = (b64_lines(der, f.layout) if f.layout
                        else b64_lines(der).replace(b"\n", b"\r\n"))
                head += "Content-Transfer-Encoding: base64\r\n" if f.mode != "no-cte" else ""
            out += head.encode() + b"\r\n" + data + b"\r\n"
        if f.mode == "mp-unclosed":
            return out
        return out + f"--{BOUNDARY}--\r\n".encode()


# ---------------------------------------------------------------- servers

class TlsServer(http.server.ThreadingHTTPServer):
    """HTTPS: the TLS handshake runs in the request thread, not in the accept loop."""
    daemon_threads = True
    request_queue_size = 64

    def finish_request(self, request, client_address):
        request.settimeout(10)
        try:
            conn = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log(f"{client_address[0]} TLS handshake failed: {e}")
            return
        self.state.bump("connections")
        try:
            conn.settimeout(None)
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            try:
                conn.close()
            except OSError:
                pass


class PlainServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


def make_ssl_ctx(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if args.tls_max == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(args.pki, args.server_cert + ".crt"),
                        os.path.join(args.pki, args.server_cert + ".key"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    trust = args.client_trust or [os.path.join(args.pki, n) for n in ("est-root.crt",
                                                                       "est-sub.crt")]
    for path in trust:
        ctx.load_verify_locations(cafile=path)
    return ctx


def write_port(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def bind(cls, host, port):
    cls.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return cls((host, port), Handler)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Test EST CA (RFC 7030) for estgw.")
    p.add_argument("--pki", required=True, help="directory written by tests/pki/mkpki.sh")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: pick a free port")
    p.add_argument("--port-file", help="write the bound HTTPS port here")
    p.add_argument("--label", action="append", default=[], help="accepted ArbitraryLabel")
    p.add_argument("--base", default="/.well-known/est")
    p.add_argument("--client-trust", action="append", help="PEM CA file(s) for client certs")
    p.add_argument("--no-ra-check", action="store_true", help="do not require id-kp-cmcRA")
    p.add_argument("--tls-max", choices=["1.2", "1.3"], default="1.3")
    p.add_argument("--control", action="store_true", help="control endpoints on HTTPS too")
    p.add_argument("--server-cert", default="ca-server",
                   help="TLS server certificate NAME.crt/NAME.key in --pki (default ca-server)")
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--control-port-file", help="plain-HTTP control listener; port here")
    p.add_argument("--mode", default="normal", help="fault mode, see the file header")
    p.add_argument("--retry-after")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--fault-op", choices=sorted(OPS))
    p.add_argument("--fault-count", type=int)
    p.add_argument("--no-serverkeygen", action="store_true",
                   help="answer serverkeygen 404, as a CA without it")
    p.add_argument("--no-csrattrs", action="store_true",
                   help="answer csrattrs 404, as a CA without it")
    p.add_argument("--kek", default="000102030405060708090a0b0c0d0e0f",
                   help="hex AES-128 KEK for encrypted server-generated keys")
    p.add_argument("--rfc8295", metavar="DIR",
                   help="serve the RFC 8295 endpoints; artefacts and requests.jsonl in DIR")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    try:
        fault = parse_fault({"mode": args.mode, "retry_after": args.retry_after,
                             "delay": args.delay, "op": args.fault_op,
                             "count": args.fault_count})
    except ValueError as e:
        raise SystemExit(f"est_ca: --mode: {e}")
    state = State(fault, {"csrattrs": not args.no_csrattrs,
                          "serverkeygen": not args.no_serverkeygen})
    ca = Ca(args.pki)
    server = bind(TlsServer, args.host, args.port)
    server.ssl_ctx = make_ssl_ctx(args)
    server.est, server.control = True, args.control
    shared = {"state": state, "ca": ca, "base": args.base.rstrip("/"),
              "labels": set(args.label), "ra_check": not args.no_ra_check,
              "csrattrs": build_csrattrs(), "kek": args.kek,
              "x8295": X8295(args.pki, args.rfc8295, args.kek) if args.rfc8295 else None}
    for k, v in shared.items():
        setattr(server, k, v)
    if args.control_port_file:
        ctl = bind(PlainServer, args.host, args.control_port)
        ctl.est, ctl.control = False, True
        for k, v in shared.items():
            setattr(ctl, k, v)
        threading.Thread(target=ctl.serve_forever, daemon=True).start()
        write_port(args.control_port_file, ctl.server_address[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = server.server_address[1]
    if args.port_file:
        write_port(args.port_file, port)
    log(f"listening on https://{args.host}:{port}{shared['base']} "
        f"labels={sorted(args.label)} mode={args.mode}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
