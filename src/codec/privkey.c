/* privkey.c - private keys, encrypted-key CMS and CSR attributes for
 * server-side key generation (docs/conformance.md B6, F3, F4, G6, G7).
 *
 * Owns: telling PKCS#8 from SEC1 (RFC 5915) and PKCS#1 (RFC 8017 A.1.2)
 * keys and wrapping the latter two into PKCS#8 PrivateKeyInfo (RFC 5958);
 * the outer check of a CMS ContentInfo carrying an encrypted key (RFC 5652,
 * RFC 7030 4.4.2); finding one attribute of a CSR by type (RFC 2986), and
 * whether a CSR asks for an encrypted key (RFC 7030 4.4.1, via est_csr_info).
 * Must not: log, or leave key bytes in memory it frees: every scratch
 * buffer that held key material is zeroed first. A flat cursor walks each
 * fixed shape; nothing recurses.
 */
#include "estgw/skg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TAG_INTEGER 0x02
#define TAG_BITSTRING 0x03
#define TAG_OCTETS 0x04
#define TAG_NULL 0x05
#define TAG_OID 0x06
#define TAG_SEQUENCE 0x30
#define TAG_SET 0x31
#define TAG_CTX0 0xa0
#define TAG_CTX1 0xa1
#define TAG_CTX1_PRIM 0x81

const uint8_t est_oid_extension_request[9] = {
	0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e,
};
/* id-ecPublicKey 1.2.840.10045.2.1 (RFC 5480 2.1.1) */
static const uint8_t oid_ec_public_key[] = {
	0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
};
/* rsaEncryption 1.2.840.113549.1.1.1 (RFC 8017 A.1) */
static const uint8_t oid_rsa[] = {
	0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
};
/* CMS content types: id-signedData, id-envelopedData (RFC 5652),
 * id-ct-authEnvelopedData 1.2.840.113549.1.9.16.1.23 (RFC 5083). */
static const uint8_t oid_signed_data[] = {
	0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
};
static const uint8_t oid_enveloped_data[] = {
	0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03,
};
static const uint8_t oid_auth_enveloped_data[] = {
	0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17,
};

/* ---- a flat cursor over DER ------------------------------------------- */

/** The whole of @p s is one element with tag @p want. */
static int exactly(struct est_slice s, uint8_t want, struct est_slice *content)
{
	struct est_der_cur c = { s.ptr, s.len };

	if (!s.ptr || est_der_expect(&c, want, content, NULL))
		return -EINVAL;
	return c.len == 0 ? 0 : -EINVAL;
}

static int peek(const struct est_der_cur *c, uint8_t tag)
{
	return c->len > 0 && c->p[0] == tag;
}

static int small_int(struct est_slice v, uint8_t want)
{
	return v.len == 1 && v.ptr[0] == want;
}

static int oid_is(struct est_slice v, const uint8_t *oid, size_t len)
{
	return v.len == len && memcmp(v.ptr, oid, len) == 0;
}

/* ---- writing DER forward into an exactly sized buffer ---------------- */

static size_t hdr_len(size_t len)
{
	size_t n = 2;

	for (size_t v = len; len >= 0x80 && v; v >>= 8)
		n++;
	return n;
}

static uint8_t *put_hdr(uint8_t *p, uint8_t tag, size_t len)
{
	size_t n = hdr_len(len) - 2;

	*p++ = tag;
	if (n == 0) {
		*p++ = (uint8_t)len;
		return p;
	}
	*p++ = (uint8_t)(0x80 | n);
	while (n--)
		*p++ = (uint8_t)(len >> (8 * n));
	return p;
}

static uint8_t *put(uint8_t *p, const void *src, size_t len)
{
	memcpy(p, src, len);
	return p + len;
}

/** PrivateKeyInfo { version 0, AlgorithmIdentifier { @p oid, @p param },
 *  OCTET STRING { @p inner parts } }: written from pieces so no scratch
 *  copy of the key exists. @p param is a whole TLV (curve OID or NULL). */
static int write_pkcs8(const uint8_t *oid, size_t oidlen,
		       const uint8_t *param, size_t paramlen,
		       const struct est_slice *inner, size_t ninner,
		       int inner_seq, uint8_t **out, size_t *outlen)
{
	static const uint8_t version0[] = { TAG_INTEGER, 1, 0 };
	size_t algid = hdr_len(oidlen) + oidlen + paramlen, ilen = 0, octets,
	       body, total;
	uint8_t *buf, *p;

	for (size_t i = 0; i < ninner; i++)
		ilen += inner[i].len;
	octets = inner_seq ? hdr_len(ilen) + ilen : ilen;
	body = sizeof(version0) + hdr_len(algid) + algid + hdr_len(octets) +
	       octets;
	total = hdr_len(body) + body;
	buf = malloc(total);
	if (!buf)
		return -ENOMEM;
	p = put_hdr(buf, TAG_SEQUENCE, body);
	p = put(p, version0, sizeof(version0));
	p = put_hdr(p, TAG_SEQUENCE, algid);
	p = put_hdr(p, TAG_OID, oidlen);
	p = put(p, oid, oidlen);
	p = put(p, param, paramlen);
	p = put_hdr(p, TAG_OCTETS, octets);
	if (inner_seq)
		p = put_hdr(p, TAG_SEQUENCE, ilen);
	for (size_t i = 0; i < ninner; i++)
		p = put(p, inner[i].ptr, inner[i].len);
	*out = buf;
	*outlen = total;
	return 0;
}

/* ---- the three key forms ---------------------------------------------- */

/** PrivateKeyInfo / OneAsymmetricKey (RFC 5958 2): after the version,
 *  AlgorithmIdentifier, OCTET STRING, [0] attributes, [1] publicKey. */
static int check_pkcs8(struct est_der_cur *c)
{
	struct est_slice v, oid;
	struct est_der_cur alg;

	if (est_der_expect(c, TAG_SEQUENCE, &v, NULL))
		return -EINVAL;
	alg.p = v.ptr;
	alg.len = v.len;
	if (est_der_expect(&alg, TAG_OID, &oid, NULL) || oid.len == 0)
		return -EINVAL;
	if (alg.len && (est_der_next(&alg, &(uint8_t){ 0 }, &v, NULL) || alg.len))
		return -EINVAL; /* at most one parameters element */
	if (est_der_expect(c, TAG_OCTETS, &v, NULL) || v.len == 0)
		return -EINVAL;
	if (peek(c, TAG_CTX0) && est_der_expect(c, TAG_CTX0, &v, NULL))
		return -EINVAL;
	if (peek(c, TAG_CTX1_PRIM) && est_der_expect(c, TAG_CTX1_PRIM, &v, NULL))
		return -EINVAL;
	return c->len == 0 ? 0 : -EINVAL;
}

/** ECPrivateKey (RFC 5915 3) after version 1: the private key, the curve
 *  (a namedCurve OID in [0]) and the optional [1] public key, wrapped. */
static int wrap_sec1(struct est_der_cur *c, uint8_t **out, size_t *outlen)
{
	static const uint8_t version1[] = { TAG_INTEGER, 1, 1 };
	struct est_slice inner[3] = { { version1, sizeof(version1) } };
	struct est_slice v, params, curve = { NULL, 0 }, pub = { NULL, 0 };
	size_t n = 2;

	if (est_der_expect(c, TAG_OCTETS, &v, &inner[1]) || v.len == 0)
		return -EINVAL;
	if (peek(c, TAG_CTX0)) {
		if (est_der_expect(c, TAG_CTX0, &params, NULL))
			return -EINVAL;
		struct est_der_cur pc = { params.ptr, params.len };
		if (est_der_expect(&pc, TAG_OID, &v, &curve) || v.len == 0 || pc.len)
			return -EINVAL; /* only namedCurve can be wrapped */
	}
	if (peek(c, TAG_CTX1)) {
		if (est_der_expect(c, TAG_CTX1, &v, &pub) || exactly(v, TAG_BITSTRING, &v))
			return -EINVAL;
		inner[n++] = pub;
	}
	if (c->len || !curve.ptr)
		return -EINVAL; /* trailing data, or a key of unknown curve */
	return write_pkcs8(oid_ec_public_key, sizeof(oid_ec_public_key),
			   curve.ptr, curve.len, inner, n, 1, out, outlen);
}

/** RSAPrivateKey (RFC 8017 A.1.2) after the version: eight more INTEGERs
 *  and, for version 1, otherPrimeInfos; wrapped whole. */
static int wrap_pkcs1(struct est_der_cur *c, struct est_slice whole, int multi,
		      uint8_t **out, size_t *outlen)
{
	static const uint8_t null_param[] = { TAG_NULL, 0 };
	struct est_slice v;

	for (int i = 0; i < 8; i++)
		if (est_der_expect(c, TAG_INTEGER, &v, NULL) || v.len == 0)
			return -EINVAL;
	if (multi && est_der_expect(c, TAG_SEQUENCE, &v, NULL))
		return -EINVAL;
	if (c->len)
		return -EINVAL;
	return write_pkcs8(oid_rsa, sizeof(oid_rsa), null_param,
			   sizeof(null_param), &whole, 1, 0, out, outlen);
}

static int copy_out(const uint8_t *der, size_t len, uint8_t **out,
		    size_t *outlen)
{
	uint8_t *buf = malloc(len);

	if (!buf)
		return -ENOMEM;
	memcpy(buf, der, len);
	*out = buf;
	*outlen = len;
	return 0;
}

int est_privkey_to_pkcs8(const uint8_t *der, size_t len, uint8_t **out,
			 size_t *outlen, enum est_key_form *form)
{
	struct est_slice all = { der, len }, body, ver;
	struct est_der_cur c;

	if (!out || !outlen || !form || exactly(all, TAG_SEQUENCE, &body))
		return -EINVAL;
	c.p = body.ptr;
	c.len = body.len;
	if (est_der_expect(&c, TAG_INTEGER, &ver, NULL) || c.len == 0)
		return -EINVAL;
	switch (c.p[0]) {
	case TAG_SEQUENCE:
		*form = EST_KEY_PKCS8;
		if ((!small_int(ver, 0) && !small_int(ver, 1)) || check_pkcs8(&c))
			return -EINVAL;
		return copy_out(der, len, out, outlen);
	case TAG_OCTETS:
		*form = EST_KEY_SEC1;
		return small_int(ver, 1) ? wrap_sec1(&c, out, outlen) : -EINVAL;
	case TAG_INTEGER:
		*form = EST_KEY_PKCS1;
		if (!small_int(ver, 0) && !small_int(ver, 1))
			return -EINVAL;
		return wrap_pkcs1(&c, all, small_int(ver, 1), out, outlen);
	default:
		return -EINVAL;
	}
}

/* ---- CMS --------------------------------------------------------------- */

int est_cms_key_check(const uint8_t *der, size_t len)
{
	struct est_slice all = { der, len }, body, oid, ctx, v;
	struct est_der_cur c;

	if (exactly(all, TAG_SEQUENCE, &body))
		return -EINVAL;
	c.p = body.ptr;
	c.len = body.len;
	if (est_der_expect(&c, TAG_OID, &oid, NULL) ||
	    est_der_expect(&c, TAG_CTX0, &ctx, NULL) || c.len)
		return -EINVAL;
	if (!oid_is(oid, oid_signed_data, sizeof(oid_signed_data)) &&
	    !oid_is(oid, oid_enveloped_data, sizeof(oid_enveloped_data)) &&
	    !oid_is(oid, oid_auth_enveloped_data, sizeof(oid_auth_enveloped_data)))
		return -EINVAL;
	return exactly(ctx, TAG_SEQUENCE, &v);
}

/* ---- CSR attributes ---------------------------------------------------- */

int est_csr_attr(const uint8_t *csr, size_t len, const uint8_t *oid,
		 size_t oidlen, struct est_slice *attr)
{
	struct est_slice subject, attrs, a, whole, type, vals;
	struct est_der_cur c, in;
	int found = 0;

	if (!oid || !attr || est_csr_parts(csr, len, &subject, &attrs))
		return -EINVAL;
	c.p = attrs.ptr;
	c.len = attrs.len;
	while (c.len) {
		if (est_der_expect(&c, TAG_SEQUENCE, &a, &whole))
			return -EINVAL;
		in.p = a.ptr;
		in.len = a.len;
		if (est_der_expect(&in, TAG_OID, &type, NULL) ||
		    est_der_expect(&in, TAG_SET, &vals, NULL) || in.len || vals.len == 0)
			return -EINVAL; /* Attribute ::= SEQUENCE { OID, SET } */
		if (!oid_is(type, oid, oidlen))
			continue;
		if (found)
			return -EINVAL; /* listed twice: ambiguous */
		found = 1;
		*attr = whole;
	}
	return found ? 0 : -ENOENT;
}

/* The attribute walk itself is est_csr_info's (csr_attrs.c). */
int est_csr_wants_encrypted_key(const uint8_t *csr, size_t len)
{
	struct est_csr_info info;

	if (est_csr_info(csr, len, &info) != 0)
		return -EINVAL;
	return info.has_smime_caps &&
	       (info.has_decrypt_key_id || info.has_asym_decrypt_key_id);
}
