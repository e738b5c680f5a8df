"""rfc8295_ca.py - the RFC 8295 endpoints of the test CA (est_ca.py --rfc8295 DIR).

Owns: the artefacts RFC 8295 answers carry, made with the openssl CLI when the CA starts
(none committed): a certs-only PKCS#7 for /eecerts, a crls-only PKCS#7 with 4,000 revocations
(over 64 KiB) for /crls, SignedData of a symmetric key package (RFC 6031 OID) for
/symmetrickeys, SignedData of 1 MiB of random firmware (RFC 4108 id-ct-firmwarePackage) for
/firmware, SignedData of a TAMP status query (RFC 5934) for /tamp; the XML and JSON PALs
(RFC 8295 2.1) whose URIs point into this CA; the /return checks; PKCS#12 (RFC 8295 8.3,
openssl pkcs12 -export) and encrypted-key-package (8.1, openssl cms -encrypt) answers of
/serverkeygen chosen by Accept. Every RFC 8295 request is written as one JSON line to
DIR/requests.jsonl: method, path, query, Accept, Content-Type, Content-Transfer-Encoding,
the body's encoding and the SHA-256 of its DER.
Must not: share code with estgw.

Labels: "bin" answers application/cms and TAMP bodies as binary DER (default: Base64);
"typo" answers /crls and /eecerts with the RFC 8295 App. A spelling application/pkcs7-smime.
Control (POST /control {"x8295": {...}}): "delay": seconds before a /firmware answer;
"status_once": the next RFC 8295 GET answers that status (202: with Retry-After 1);
"tamp_type": the TAMP media type /tamp answers (default status-query).
"""
import base64
import hashlib
import json
import os
import secrets
import subprocess
import threading
import time
from urllib.parse import urlsplit

PCS = {"pal": "GET", "eecerts": "GET", "crls": "GET", "symmetrickeys": "GET",
       "firmware": "GET", "tamp": "GET", "symmetrickeys/return": "POST",
       "firmware/return": "POST", "tamp/return": "POST", "serverkeygen/return": "POST"}
TAIL_OK = {"pal", "eecerts", "crls"}
OID_SKEY = "1.2.840.113549.1.9.16.1.25"
OID_FW = "1.2.840.113549.1.9.16.1.16"
TAMP_OIDS = {"status-query": "2.16.840.1.101.2.1.2.77.1",
             "update": "2.16.840.1.101.2.1.2.77.3",
             "status-response": "2.16.840.1.101.2.1.2.77.2",
             "error": "2.16.840.1.101.2.1.2.77.9"}
FW_SIZE = 1024 * 1024
N_REVOKED = 4000


def run(*args, data=None):
    res = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError("openssl " + args[0] + ": " + res.stderr.decode(errors="replace"))
    return res.stdout


class X8295:
    def __init__(self, pki, outdir, kek):
        self.pki, self.dir, self.kek = pki, outdir, kek
        os.makedirs(outdir, exist_ok=True)
        self.lock = threading.Lock()
        self.log_path = os.path.join(outdir, "requests.jsonl")
        self.delay = 0.0
        self.status_once = None
        self.tamp_type = "status-query"
        sub, key = os.path.join(pki, "est-sub.crt"), os.path.join(pki, "est-sub.key")
        self.signer = ("-signer", sub, "-inkey", key)
        self.make(sub, key)

    # --- artefacts
    def path(self, name):
        return os.path.join(self.dir, name)

    def signed(self, name, oid, content):
        with open(self.path(name + ".bin"), "wb") as f:
            f.write(content)
        run("cms", "-sign", "-binary", "-nodetach", "-econtent_type", oid, "-in",
            self.path(name + ".bin"), *self.signer, "-outform", "DER", "-out", self.path(name + ".der"))

    def make(self, sub, key):
        run("crl2pkcs7", "-nocrl", "-certfile", sub, "-outform", "DER", "-out", self.path("eecerts.der"))
        cnf, idx = self.path("ca.cnf"), self.path("index.txt")
        with open(idx, "w") as f:
            for i in range(N_REVOKED):
                f.write(f"R\t351231235959Z\t250101000000Z\t{0x1000 + i:08X}\tunknown\t/CN=revoked-{i}\n")
        with open(self.path("crlnumber"), "w") as f:
            f.write("01\n")
        with open(cnf, "w") as f:
            f.write(f"[ca]\ndefault_ca = x\n[x]\ndatabase = {idx}\ncrlnumber = {self.path('crlnumber')}\n"
                    "default_md = sha256\ndefault_crl_days = 30\n")
        run("ca", "-config", cnf, "-gencrl", "-keyfile", key, "-cert", sub, "-out", self.path("crl.pem"))
        run("crl2pkcs7", "-in", self.path("crl.pem"), "-outform", "DER", "-out", self.path("crls.der"))
        self.signed("symkey", OID_SKEY, secrets.token_bytes(32))
        self.signed("firmware", OID_FW, secrets.token_bytes(FW_SIZE))
        for t, oid in TAMP_OIDS.items():
            self.signed("tamp-" + t, oid, b"\x30\x03\x02\x01\x01")  # a small DER body
        self.bodies = {n: open(self.path(n + ".der"), "rb").read()
                       for n in ("eecerts", "crls", "symkey", "firmware")}

    # --- control and log
    def control(self, spec):
        with self.lock:
            if "delay" in spec:
                self.delay = float(spec["delay"])
            if "status_once" in spec:
                self.status_once = spec["status_once"]
            if "tamp_type" in spec:
                self.tamp_type = spec["tamp_type"]

    def note(self, h, path, query, der=None, encoding=None):
        rec = {"method": h.command, "path": path, "query": query,
               "accept": h.headers.get("Accept"), "content_type": h.headers.get("Content-Type"),
               "cte": h.headers.get("Content-Transfer-Encoding"), "encoding": encoding,
               "der_sha256": hashlib.sha256(der).hexdigest() if der is not None else None,
               "der_len": len(der) if der is not None else None}
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    # --- routing: True when this was an RFC 8295 request (answered)
    def handles(self, h, raw_path, body, base, labels, err):
        u = urlsplit(raw_path)
        if not u.path.startswith(base + "/"):
            return False
        segs = u.path[len(base) + 1:].split("/")
        label = None
        if segs and segs[0] not in PCS and segs[0] not in ("serverkeygen",) and segs[0] in labels:
            label, segs = segs[0], segs[1:]
        if not segs:
            return False
        pc, tail = segs[0], segs[1:]
        if len(segs) >= 2 and "/".join(segs[:2]) in PCS and segs[1] == "return":
            pc, tail = "/".join(segs[:2]), segs[2:]
        if pc not in PCS or (tail and pc not in TAIL_OK):
            return False
        if h.command != PCS[pc]:
            raise err(405, f"{pc} needs {PCS[pc]}")
        getattr(self, "op_" + pc.replace("/", "_"))(h, u.path, u.query, tail, label, body, err)
        return True

    def forced(self, h):
        with self.lock:
            st, self.status_once = self.status_once, None
        if st is None:
            return False
        h.reply(st, b"" if st in (202, 204) else f"test CA: status {st}\n",
                headers=[("Retry-After", "1")] if st == 202 else [])
        return True

    def send(self, h, der, ctype, label, b64):
        if b64 and label != "bin":
            h.reply(200, base64.encodebytes(der), ctype, [("Content-Transfer-Encoding", "base64")])
        else:
            h.reply(200, der, ctype)

    # --- GETs
    def op_pal(self, h, path, query, tail, label, body, err):
        self.note(h, path, query)
        if self.forced(h):
            return
        accept = (h.headers.get("Accept") or "").split(";")[0].strip().lower()
        if accept not in ("application/xml", "application/json"):
            raise err(406, "PAL comes as application/xml or application/json")
        b = f"https://{h.headers.get('Host')}{path[:path.index('/pal')]}"
        entries = [("0002", f"{b}/cacerts"), ("0003", f"{b}/eecerts/1234"), ("0005", f"{b}/crls"),
                   ("0024", f"{b}/symmetrickeys"), ("0026", f"{b}/firmware?v=2&x=1"),
                   ("0028", f"{b}/tamp"), ("0022", f"{b}/serverkeygen"),
                   ("0003", "https://other.example/est/eecerts/9"),
                   ("0001", f"{b}/pal?page=2")]
        if accept == "application/xml":
            x = '<?xml version="1.0" encoding="UTF-8"?>\n<pal xmlns="urn:ietf:params:xml:ns:pal">\n'
            for t, uri in entries:
                x += (f"  <message><type>{t}</type><date>2026-01-01T00:00:00Z</date><size>100</size>"
                      f"<info><uri>{uri.replace('&', '&amp;')}</uri></info></message>\n")
            h.reply(200, x + "</pal>\n", "application/xml")
        else:
            objs = [{"type": t, "size": 100, "info": {"uri": uri}} for t, uri in entries]
            text = json.dumps(objs, indent=1).replace("/", "\\/")  # RFC 8259 allows \/
            h.reply(200, text + "\n", "application/json")

    def op_eecerts(self, h, path, query, tail, label, body, err):
        self.note(h, path, query)
        if not self.forced(h):
            self.send(h, self.bodies["eecerts"], "application/pkcs7-smime; smime-type=certs-only"
                      if label == "typo" else "application/pkcs7-mime; smime-type=certs-only", None, True)

    def op_crls(self, h, path, query, tail, label, body, err):
        self.note(h, path, query)
        if not self.forced(h):
            self.send(h, self.bodies["crls"], "application/pkcs7-smime; smime-type=crls-only"
                      if label == "typo" else "application/pkcs7-mime; smime-type=crls-only", None, True)

    def op_symmetrickeys(self, h, path, query, tail, label, body, err):
        self.note(h, path, query)
        if not self.forced(h):
            self.send(h, self.bodies["symkey"], "application/cms; encapsulatingContent=signedData; "
                      "innerContent=symmetricKeyPackage", label, True)

    def op_firmware(self, h, path, query, tail, label, body, err):
        self.note(h, path, query)
        if self.forced(h):
            return
        with self.lock:
            d = self.delay
        if d:
            time.sleep(d)
        self.send(h, self.bodies["firmware"], "application/cms; encapsulatingContent=signedData; "
                  "innerContent=firmwarePackage", label, True)

    def op_tamp(self, h, path, query, tail, label, body, err):
        self.note(h, path, query)
        if self.forced(h):
            return
        with self.lock:
            t = self.tamp_type
        with open(self.path(f"tamp-{t}.der"), "rb") as f:
            self.send(h, f.read(), "application/tamp-" + t, label, True)

    # --- the /return POSTs (RFC 8295 5.2, 6.2, 7.2, 8.2): 204, 400 on non-DER
    def returned(self, h, path, query, body, err, types):
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in types:
            raise err(415, "Content-Type must be " + " or ".join(sorted(types)))
        b64 = (h.headers.get("Content-Transfer-Encoding") or "").lower() == "base64"
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True) if b64 else body
        except ValueError:
            raise err(400, "bad Base64")
        self.note(h, path, query, der, "base64" if b64 else "binary")
        rc = subprocess.run(["openssl", "asn1parse", "-inform", "DER"], input=der,
                            capture_output=True, timeout=30).returncode
        if rc != 0 or not der or der[0] != 0x30:
            raise err(400, "the body is not DER")
        with open(self.path("last-return.der"), "wb") as f:
            f.write(der)
        h.reply(204)

    def op_symmetrickeys_return(self, h, path, query, tail, label, body, err):
        self.returned(h, path, query, body, err, {"application/cms"})

    op_firmware_return = op_serverkeygen_return = op_symmetrickeys_return

    def op_tamp_return(self, h, path, query, tail, label, body, err):
        self.returned(h, path, query, body, err,
                      {"application/tamp-" + t for t in ("status-response", "update-confirm",
                       "apex-update-confirm", "community-update-confirm",
                       "sequence-adjust-confirm", "error")})

    # --- /serverkeygen variants chosen by Accept
    def serverkeygen(self, h, csr, ca, err):
        """The PKCS#12 or encrypted key package answer; False for plain RFC 7030."""
        accept = (h.headers.get("Accept") or "").split(";")[0].strip().lower()
        if accept not in ("application/pkcs12", "application/cms"):
            return False
        self.note(h, urlsplit(h.path).path, "", csr, "base64")
        pkcs8, _, p7 = ca.serverkeygen(csr)
        d = self.path("skg")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "key.der"), "wb") as f:
            f.write(pkcs8)
        if accept == "application/pkcs12":
            certs = run("pkcs7", "-inform", "DER", "-print_certs", data=p7)
            with open(os.path.join(d, "cert.pem"), "wb") as f:
                f.write(certs)
            run("pkey", "-inform", "DER", "-in", os.path.join(d, "key.der"), "-out", os.path.join(d, "key.pem"))
            der = run("pkcs12", "-export", "-inkey", os.path.join(d, "key.pem"), "-in",
                      os.path.join(d, "cert.pem"), "-passout", "pass:estgw-test")
            name, ctype = "last.p12", "application/pkcs12"
        else:
            der = run("cms", "-encrypt", "-binary", "-in", os.path.join(d, "key.der"), "-outform", "DER",
                      "-aes-128-cbc", "-aes128-wrap", "-secretkey", self.kek, "-secretkeyid", "0102")
            name, ctype = "last.ekp", "application/cms; encapsulatingContent=envelopedData"
        with open(self.path(name), "wb") as f:
            f.write(der)
        h.reply(200, base64.encodebytes(der), ctype, [("Content-Transfer-Encoding", "base64")])
        return True
