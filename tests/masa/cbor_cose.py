"""cbor_cose.py - CBOR (RFC 8949) and COSE_Sign1/ES256 (RFC 9052/9053) for the cBRSKI test
peers: the test MASA (masa.py) and the pledge in tests/integration/test_brski.py.

Owns: a small definite-length CBOR encoder/decoder, COSE_Sign1 parse/build, ECDSA P-256
signing and verification through the openssl CLI (raw r||s <-> DER done here).
Must not: share code with estgw (this is the independent side); Python stdlib + openssl only.
"""
import os
import struct
import subprocess
import tempfile


class Tag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value

    def __eq__(self, other):
        return isinstance(other, Tag) and (self.tag, self.value) == (other.tag, other.value)

    def __hash__(self):
        return hash((self.tag, repr(self.value)))

    def __repr__(self):
        return f"Tag({self.tag}, {self.value!r})"


def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < (1 << (8 * struct.calcsize(fmt))):
            return bytes([major << 5 | ai]) + struct.pack(fmt, n)
    raise ValueError("integer too large")


def dumps(v):
    """Encode: int, bytes, str, list, dict (keys in insertion order), bool, None, Tag."""
    if v is True:
        return b"\xf5"
    if v is False:
        return b"\xf4"
    if v is None:
        return b"\xf6"
    if isinstance(v, int):
        return _head(0, v) if v >= 0 else _head(1, -1 - v)
    if isinstance(v, (bytes, bytearray)):
        return _head(2, len(v)) + bytes(v)
    if isinstance(v, str):
        b = v.encode()
        return _head(3, len(b)) + b
    if isinstance(v, (list, tuple)):
        return _head(4, len(v)) + b"".join(dumps(x) for x in v)
    if isinstance(v, dict):
        return _head(5, len(v)) + b"".join(dumps(k) + dumps(x) for k, x in v.items())
    if isinstance(v, Tag):
        return _head(6, v.tag) + dumps(v.value)
    raise TypeError(type(v))


class DecodeError(ValueError):
    pass


def _load(b, i, depth):
    if depth > 32:
        raise DecodeError("nesting too deep")
    if i >= len(b):
        raise DecodeError("truncated")
    ib = b[i]
    major, ai = ib >> 5, ib & 31
    i += 1
    if ai < 24:
        n = ai
    elif ai in (24, 25, 26, 27):
        size = 1 << (ai - 24)
        if i + size > len(b):
            raise DecodeError("truncated head")
        n = int.from_bytes(b[i:i + size], "big")
        i += size
    else:
        raise DecodeError("indefinite or reserved length")
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major in (2, 3):
        if i + n > len(b):
            raise DecodeError("truncated string")
        s = b[i:i + n]
        return (bytes(s) if major == 2 else s.decode()), i + n
    if major == 4:
        out = []
        for _ in range(n):
            x, i = _load(b, i, depth + 1)
            out.append(x)
        return out, i
    if major == 5:
        out = {}
        for _ in range(n):
            k, i = _load(b, i, depth + 1)
            x, i = _load(b, i, depth + 1)
            out[k] = x
        return out, i
    if major == 6:
        x, i = _load(b, i, depth + 1)
        return Tag(n, x), i
    if ai == 20:
        return False, i
    if ai == 21:
        return True, i
    if ai == 22:
        return None, i
    raise DecodeError("unsupported simple value")


def loads(b):
    v, i = _load(bytes(b), 0, 0)
    if i != len(b):
        raise DecodeError("trailing bytes")
    return v


# ---- YANG-in-CBOR with SIDs (RFC 9254) -------------------------------------------------------

VR_SIDS = {1: "assertion", 2: "created-on", 3: "domain-cert-revocation-checks", 4: "expires-on",
           5: "idevid-issuer", 6: "last-renewal-date", 7: "nonce", 8: "pinned-domain-cert",
           9: "prior-signed-voucher-request", 10: "proximity-registrar-cert",
           11: "proximity-registrar-pubk-sha256", 12: "proximity-registrar-pubk",
           13: "serial-number"}
V_SIDS = {1: "assertion", 2: "created-on", 3: "domain-cert-revocation-checks", 4: "expires-on",
          5: "idevid-issuer", 6: "last-renewal-date", 7: "nonce", 8: "pinned-domain-cert",
          9: "pinned-domain-pubk", 10: "pinned-domain-pubk-sha256", 11: "serial-number"}


def yang_decode(data, top_sid, names):
    """{top: {delta|47(sid)|name: value}} -> {leaf name: value}."""
    top = loads(data)
    if not isinstance(top, dict):
        raise DecodeError("not a map")
    node = None
    for k, v in top.items():
        if isinstance(k, Tag) and k.tag == 47:
            k = k.value
        if k == top_sid or (isinstance(k, str) and k.endswith(":voucher")):
            node = v
    if not isinstance(node, dict):
        raise DecodeError("no voucher node")
    out = {}
    for k, v in node.items():
        if isinstance(k, Tag) and k.tag == 47:
            name = names.get(k.value - top_sid)
        elif isinstance(k, int):
            name = names.get(k)
        else:
            name = k.split(":")[-1]
        if name:
            out[name] = v
    return out


# ---- ECDSA P-256 through the openssl CLI -------------------------------------------------------

def _run(args, data=None):
    r = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    return r.returncode, r.stdout, r.stderr


def _der_len(n):
    return bytes([n]) if n < 128 else bytes([0x81, n])


def raw_to_der(raw):
    def integer(v):
        v = v.lstrip(b"\0") or b"\0"
        if v[0] & 0x80:
            v = b"\0" + v
        return b"\x02" + _der_len(len(v)) + v
    body = integer(raw[:32]) + integer(raw[32:])
    return b"\x30" + _der_len(len(body)) + body


def der_to_raw(der):
    if der[0] != 0x30:
        raise ValueError("not a SEQUENCE")
    i = 2 if der[1] < 128 else 3
    out = b""
    for _ in range(2):
        if der[i] != 0x02:
            raise ValueError("not an INTEGER")
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\0")
        out += v.rjust(32, b"\0")
        i += 2 + n
    return out


def sign_es256(key_file, data):
    rc, out, err = _run(["dgst", "-sha256", "-sign", key_file], data)
    if rc:
        raise RuntimeError(err.decode())
    return der_to_raw(out)


def cert_pubkey_pem(cert_der):
    rc, out, err = _run(["x509", "-inform", "DER", "-pubkey", "-noout"], cert_der)
    if rc:
        raise ValueError(err.decode())
    return out


def verify_es256(cert_der, data, raw_sig):
    if len(raw_sig) != 64:
        return False
    with tempfile.TemporaryDirectory() as d:
        pub, sig = os.path.join(d, "pub.pem"), os.path.join(d, "sig.der")
        with open(pub, "wb") as f:
            f.write(cert_pubkey_pem(cert_der))
        with open(sig, "wb") as f:
            f.write(raw_to_der(raw_sig))
        rc, _, _ = _run(["dgst", "-sha256", "-verify", pub, "-signature", sig], data)
        return rc == 0


# ---- COSE_Sign1 --------------------------------------------------------------------------------

def sig_structure(prot, payload):
    return dumps(["Signature1", prot, b"", payload])


def sign1(key_file, payload, bag=None):
    prot = dumps({1: -7})
    unprot = {}
    if bag:
        unprot[32] = bag[0] if len(bag) == 1 else list(bag)
    sig = sign_es256(key_file, sig_structure(prot, payload))
    return dumps(Tag(18, [prot, unprot, payload, sig]))


def parse_sign1(data):
    """-> (prot_bytes, prot_map, unprot_map, payload, sig, bag list)"""
    v = loads(data)
    if isinstance(v, Tag):
        if v.tag != 18:
            raise DecodeError("not tag 18")
        v = v.value
    if not (isinstance(v, list) and len(v) == 4 and isinstance(v[0], bytes)
            and isinstance(v[1], dict) and isinstance(v[2], bytes) and isinstance(v[3], bytes)):
        raise DecodeError("not a COSE_Sign1")
    prot_map = loads(v[0]) if v[0] else {}
    bag = v[1].get(32, prot_map.get(32, v[1].get(33, [])))
    if isinstance(bag, bytes):
        bag = [bag]
    return v[0], prot_map, v[1], v[2], v[3], list(bag)
