#!/usr/bin/env python3
"""masa.py - a test MASA (RFC 8995 5.5, constrained-voucher COSE vouchers) for estgw's cBRSKI
tests.

Owns: HTTPS on loopback (TLS client certificate optional, recorded), the checks a real MASA
makes on a Registrar voucher request (RFC 8995 5.5.1-5.5.6), COSE-signed vouchers, fault
switches and a JSON request log for assertions.
Must not: share code with estgw. Python 3 standard library + the openssl CLI (cbor_cose.py).

Usage:
  masa.py --cert masa-tls.crt --key masa-tls.key --client-ca domain-ca.crt
          --mfg-ca bmfg-ca.crt --sign-cert bmfg-ca.crt --sign-key bmfg-ca.key
          [--serials TEST0001,TEST0002] [--port 0] --port-file F --control-port-file F

POST /.well-known/brski/requestvoucher (Content-Type application/voucher+cose or the legacy
application/voucher-cose+cbor, else 415; Accept, when present, one of those or */*, else 406):
  1. COSE_Sign1 (tag 18 optional); x5bag one bstr or an array (400 if not).
  2. The x5bag certificate with EKU id-kp-cmcRA signed the RVR (403 "no cmcRA signer",
     403 "RVR signature").
  3. RVR leaves: serial-number, idevid-issuer, nonce, prior-signed-voucher-request required,
     proximity-registrar-cert forbidden (400).
  4. The PVR (prior-signed) was signed by an IDevID in the x5bag that verifies against
     --mfg-ca (403); proximity-registrar-pubk-sha256, -pubk or -cert (in that order); serial-number equal in PVR, RVR and the IDevID subject; nonce equal;
     idevid-issuer = OCTET STRING of the IDevID's AKI; the PVR's proximity key or certificate
     is in the registrar's part of the x5bag (403 each).
  5. Unknown serial (not in --serials) -> 404.
  6. 200 application/voucher+cose: {2451: {1: 2, 2: now, 3: false, 7: nonce,
     8: the CA that issued the RVR signer (or the signer itself), 11: serial}}, signed with
     --sign-key, unprotected {32: --sign-cert}.
Control (plain HTTP, its own port): GET /log -> JSON list of request records; POST /control
  {"mode": "normal"|"status"|"accepted"|"delay"|"garbage", "status": N, "retry_after": S,
   "delay": S}; GET /control -> the fault.
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cbor_cose as cc  # noqa: E402

TYPES = ("application/voucher+cose", "application/voucher-cose+cbor")
CMCRA_TEXT = ("CMC Registration Authority", "1.3.6.1.5.5.7.3.28")


class Reject(Exception):
    def __init__(self, status, text):
        super().__init__(text)
        self.status, self.text = status, text


def openssl(args, data=None):
    r = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    return r.returncode, r.stdout.decode(errors="replace")


def cert_text(der, *args):
    return openssl(["x509", "-inform", "DER", "-noout", *args], der)[1]


def is_cmcra(der):
    return any(t in cert_text(der, "-ext", "extendedKeyUsage") for t in CMCRA_TEXT)


def subject_serial(der):
    out = cert_text(der, "-subject", "-nameopt", "sep_multiline,sname")
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("serialNumber="):
            return line.split("=", 1)[1]
    return None


def aki_keyid(der):
    out = cert_text(der, "-ext", "authorityKeyIdentifier")
    for line in out.splitlines()[1:]:
        hexs = line.strip().replace("keyid:", "").replace(":", "")
        if hexs and all(c in "0123456789ABCDEFabcdef" for c in hexs):
            return bytes.fromhex(hexs)
    return None


def spki_der(der):
    pem = cc.cert_pubkey_pem(der)
    r = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem,
                       capture_output=True, check=True)
    return r.stdout


def names(der):
    out = cert_text(der, "-subject", "-issuer", "-nameopt", "RFC2253")
    subj = iss = None
    for line in out.splitlines():
        if line.startswith("subject="):
            subj = line[8:].strip()
        elif line.startswith("issuer="):
            iss = line[7:].strip()
    return subj, iss


def verifies_against(der, ca_file):
    pem = subprocess.run(["openssl", "x509", "-inform", "DER"], input=der, capture_output=True,
                         check=True).stdout
    rc, _ = openssl(["verify", "-CAfile", ca_file], pem)
    return rc == 0


class Masa:
    def __init__(self, a):
        self.a = a
        self.lock = threading.Lock()
        self.log = []
        self.fault = {"mode": "normal"}
        self.serials = set(a.serials.split(",")) if a.serials else None
        with open(a.sign_cert, "rb") as f:
            pem = f.read()
        self.sign_der = subprocess.run(["openssl", "x509", "-outform", "DER"], input=pem,
                                       capture_output=True, check=True).stdout

    def check(self, body, rec):
        try:
            prot, pmap, _, payload, sig, bag = cc.parse_sign1(body)
        except (cc.DecodeError, ValueError, UnicodeDecodeError) as e:
            raise Reject(400, f"RVR is not a COSE_Sign1: {e}")
        rec["x5bag_count"] = len(bag)
        if pmap.get(1) != -7:
            raise Reject(400, "RVR algorithm is not ES256")
        signers = [c for c in bag if is_cmcra(c)]
        if not signers:
            raise Reject(403, "no cmcRA signer in the x5bag")
        signer = signers[0]
        rec["signer_der_b64"] = base64.b64encode(signer).decode()
        if not cc.verify_es256(signer, cc.sig_structure(prot, payload), sig):
            raise Reject(403, "RVR signature does not verify")
        rec["rvr_signature_ok"] = True
        try:
            rvr = cc.yang_decode(payload, 2501, cc.VR_SIDS)
        except (cc.DecodeError, ValueError, UnicodeDecodeError) as e:
            raise Reject(400, f"RVR payload: {e}")
        rec["rvr"] = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in rvr.items()}
        for leaf in ("serial-number", "idevid-issuer", "nonce", "prior-signed-voucher-request"):
            if leaf not in rvr:
                raise Reject(400, f"RVR has no {leaf}")
        if "proximity-registrar-cert" in rvr:
            raise Reject(400, "RVR must not carry proximity-registrar-cert")
        pvr_bytes = rvr["prior-signed-voucher-request"]
        try:
            pprot, _, _, ppayload, psig, _ = cc.parse_sign1(pvr_bytes)
            pvr = cc.yang_decode(ppayload, 2501, cc.VR_SIDS)
        except (cc.DecodeError, ValueError, UnicodeDecodeError) as e:
            raise Reject(400, f"prior-signed-voucher-request: {e}")
        idevids = [c for c in bag if c != signer and verifies_against(c, self.a.mfg_ca)]
        if not idevids:
            raise Reject(403, "no IDevID from a known manufacturer in the x5bag")
        idevid = idevids[0]
        if not cc.verify_es256(idevid, cc.sig_structure(pprot, ppayload), psig):
            raise Reject(403, "PVR signature does not verify with the IDevID")
        serial = subject_serial(idevid)
        rec["idevid_serial"] = serial
        if not (serial == rvr["serial-number"] == pvr.get("serial-number")):
            raise Reject(403, "serial-number differs between IDevID, PVR and RVR")
        if pvr.get("nonce") != rvr["nonce"]:
            raise Reject(403, "nonce differs between PVR and RVR")
        keyid = aki_keyid(idevid)
        want = bytes([4, len(keyid) + 4, 0x30, len(keyid) + 2, 0x80, len(keyid)]) + keyid
        if rvr["idevid-issuer"] != want:
            raise Reject(403, "idevid-issuer is not the IDevID's AKI")
        reg_part = [c for c in bag if c not in idevids and not verifies_against(c, self.a.mfg_ca)]
        prox_pubk = pvr.get("proximity-registrar-pubk")
        prox_cert = pvr.get("proximity-registrar-cert")
        prox_hash = pvr.get("proximity-registrar-pubk-sha256")
        if prox_hash is not None:
            ok = any(hashlib.sha256(spki_der(c)).digest() == prox_hash for c in reg_part)
        elif prox_pubk is not None:
            ok = any(spki_der(c) == prox_pubk for c in reg_part)
        elif prox_cert is not None:
            ok = prox_cert in reg_part
        else:
            ok = False
        if not ok:
            raise Reject(403, "the PVR's proximity registrar is not the RVR signer's chain")
        rec["proximity_ok"] = True
        if self.serials is not None and serial not in self.serials:
            raise Reject(404, f"unknown device {serial}")
        _, signer_issuer = names(signer)
        pinned = signer
        for c in reg_part:
            if c != signer and names(c)[0] == signer_issuer:
                pinned = c
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        voucher = cc.dumps({2451: {1: 2, 2: now, 3: False, 7: rvr["nonce"], 8: pinned,
                                   11: serial}})
        return cc.sign1(self.a.sign_key, voucher, [self.sign_der])


def make_handler(masa):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("masa: " + fmt % args + "\n")

        def send(self, code, body=b"", ctype="text/plain; charset=utf-8", extra=()):
            self.send_response(code)
            if body:
                self.send_header("Content-Type", ctype)
            for k, v in extra:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            der = self.connection.getpeercert(binary_form=True)
            rec = {"path": self.path, "headers": dict(self.headers.items()),
                   "sni": getattr(self.connection, "estgw_sni", None),
                   "client_cert_b64": base64.b64encode(der).decode() if der else None,
                   "body_b64": base64.b64encode(body).decode(), "time": time.time()}
            with masa.lock:
                masa.log.append(rec)
                fault = dict(masa.fault)
            code, out, ctype, extra = self.answer(body, rec, fault)
            rec["status"] = code
            if code != 200:
                rec["error"] = out.decode(errors="replace")
            self.send(code, out, ctype, extra)

        def answer(self, body, rec, fault):
            mode = fault.get("mode", "normal")
            if mode == "delay":
                time.sleep(float(fault.get("delay", 60)))
            if mode == "status":
                ra = fault.get("retry_after")
                return int(fault["status"]), b"test MASA: forced error", \
                    "text/plain; charset=utf-8", (("Retry-After", str(ra)),) if ra else ()
            if mode == "accepted":
                return 202, b"", None, (("Retry-After", str(fault.get("retry_after", 5))),)
            if mode == "garbage":
                return 200, b"this is not a voucher", TYPES[0], ()
            if self.path != "/.well-known/brski/requestvoucher":
                return 404, b"no such resource", "text/plain; charset=utf-8", ()
            ct = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ct not in TYPES:
                return 415, b"unsupported media type", "text/plain; charset=utf-8", ()
            acc = self.headers.get("Accept")
            if acc and not any(t in acc for t in TYPES + ("*/*",)):
                return 406, b"cannot answer that Accept", "text/plain; charset=utf-8", ()
            try:
                v = masa.check(body, rec)
            except Reject as e:
                return e.status, e.text.encode(), "text/plain; charset=utf-8", ()
            return 200, v, TYPES[0], ()
    return H


def make_control(masa):
    class C(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def reply(self, obj):
            b = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def do_GET(self):
            with masa.lock:
                self.reply(masa.log if self.path == "/log" else masa.fault)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            f = json.loads(self.rfile.read(n) or b"{}")
            with masa.lock:
                masa.fault = f
                self.reply(masa.fault)
    return C


def main():
    p = argparse.ArgumentParser()
    for o in ("--cert", "--key", "--client-ca", "--mfg-ca", "--sign-cert", "--sign-key",
              "--port-file", "--control-port-file"):
        p.add_argument(o, required=True)
    p.add_argument("--serials", default="")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args()
    masa = Masa(a)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(a.cert, a.key)
    ctx.load_verify_locations(a.client_ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL

    def on_sni(sock, name, _ctx):
        sock.estgw_sni = name
    ctx.sni_callback = on_sni
    srv = ThreadingHTTPServer((a.host, a.port), make_handler(masa))
    srv.daemon_threads = True
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    ctl = ThreadingHTTPServer((a.host, 0), make_control(masa))
    ctl.daemon_threads = True
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    with open(a.control_port_file + ".tmp", "w") as f:
        f.write(str(ctl.server_address[1]))
    os.rename(a.control_port_file + ".tmp", a.control_port_file)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
