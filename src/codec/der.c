/* der.c - bounded DER walking: PKCS#7 certs-only, X.509 and PKCS#10 (B5,
 * G6 in docs/conformance.md).
 *
 * Owns: reading TLV headers, telling binary DER from Base64 bodies, and the
 * flat walkers that find certificates, names and SubjectPublicKeyInfo.
 * Must not: recurse, take a nesting depth from the input, or read a byte it
 * has not checked against the remaining buffer. Every walker is a fixed
 * sequence of steps over a cursor; trailing bytes are -EINVAL everywhere.
 * Only DER is accepted: definite, minimal lengths and single-byte tags.
 */
#include "estgw/codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TAG_INTEGER   0x02
#define TAG_BITSTRING 0x03
#define TAG_OID       0x06
#define TAG_SEQUENCE  0x30
#define TAG_SET       0x31
#define TAG_CTX0      0xa0  /* [0] constructed */
#define TAG_CTX1      0xa1  /* [1] constructed */

/* id-signedData 1.2.840.113549.1.7.2 (RFC 5652 5.1) */
static const uint8_t oid_signed_data[] = {
	0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
};

/** A read cursor over the content of one constructed element. */

/** The fields of a TBSCertificate that callers ask for. */
struct cert_parts {
	struct est_slice issuer;
	struct est_slice subject;
	struct est_slice spki;
};

/** Decode a long-form length of @p n bytes; rejects non-minimal forms. */
static int der_long_len(const uint8_t *p, unsigned n, size_t *clen)
{
	uint32_t v = 0;
	unsigned i;

	if (n == 0 || n > 4 || p[0] == 0)
		return -EINVAL; /* indefinite, too long or leading zero */
	for (i = 0; i < n; i++)
		v = v << 8 | p[i];
	if (v < 0x80 || v > 0x7fffffff)
		return -EINVAL; /* short form would do, or beyond 2^31 */
	*clen = v;
	return 0;
}

int est_der_tlv(const uint8_t *p, size_t len, uint8_t *tag,
		struct est_slice *content, size_t *total)
{
	size_t hdr = 2, clen;
	int ret;

	if (len < 2 || (p[0] & 0x1f) == 0x1f)
		return -EINVAL; /* short, or a multi-byte tag */
	if (p[1] < 0x80) {
		clen = p[1];
	} else {
		hdr += p[1] & 0x7f;
		if (hdr > len)
			return -EINVAL;
		ret = der_long_len(p + 2, p[1] & 0x7f, &clen);
		if (ret)
			return ret;
	}
	if (clen > len - hdr)
		return -EINVAL;
	*tag = p[0];
	content->ptr = p + hdr;
	content->len = clen;
	*total = hdr + clen;
	return 0;
}

static void cur_init(struct est_der_cur *c, struct est_slice s)
{
	c->p = s.ptr;
	c->len = s.len;
}

static int cur_empty(const struct est_der_cur *c)
{
	return c->len == 0;
}

/** Take the next element, whatever its tag; @p whole covers the TLV. */
int est_der_next(struct est_der_cur *c, uint8_t *tag, struct est_slice *content,
		   struct est_slice *whole)
{
	size_t total;
	int ret = est_der_tlv(c->p, c->len, tag, content, &total);

	if (ret)
		return ret;
	if (whole) {
		whole->ptr = c->p;
		whole->len = total;
	}
	c->p += total;
	c->len -= total;
	return 0;
}

/** Take the next element, which must carry @p want. */
int est_der_expect(struct est_der_cur *c, uint8_t want, struct est_slice *content,
		    struct est_slice *whole)
{
	struct est_der_cur save = *c;
	uint8_t tag;
	int ret = est_der_next(c, &tag, content, whole);

	if (ret)
		return ret;
	if (tag != want) {
		*c = save;
		return -EINVAL;
	}
	return 0;
}

/** Take the next element only if it carries @p want: 1 taken, 0 absent. */
static int cur_optional(struct est_der_cur *c, uint8_t want, struct est_slice *content)
{
	if (cur_empty(c) || c->p[0] != want)
		return 0;
	return est_der_expect(c, want, content, NULL) ? -EINVAL : 1;
}

/** The whole of @p s is exactly one element with tag @p want. */
static int der_exact(struct est_slice s, uint8_t want, struct est_slice *content)
{
	struct est_der_cur c;
	int ret;

	cur_init(&c, s);
	ret = est_der_expect(&c, want, content, NULL);
	if (ret)
		return ret;
	return cur_empty(&c) ? 0 : -EINVAL;
}

/** Every element of @p s carries @p want (a SEQUENCE OF / SET OF). */
static int der_all_of(struct est_slice s, uint8_t want)
{
	struct est_der_cur c;
	struct est_slice e;
	int ret;

	cur_init(&c, s);
	while (!cur_empty(&c)) {
		ret = est_der_expect(&c, want, &e, NULL);
		if (ret)
			return ret;
	}
	return 0;
}

/** A non-empty INTEGER; the content goes to @p v. */
static int der_integer(struct est_der_cur *c, struct est_slice *v)
{
	int ret = est_der_expect(c, TAG_INTEGER, v, NULL);

	if (ret)
		return ret;
	return v->len ? 0 : -EINVAL;
}

/** A BIT STRING: unused-bits octet 0..7, and 0 when there are no bits. */
static int der_bitstring(struct est_der_cur *c)
{
	struct est_slice v;
	int ret = est_der_expect(c, TAG_BITSTRING, &v, NULL);

	if (ret)
		return ret;
	if (v.len == 0 || v.ptr[0] > 7 || (v.len == 1 && v.ptr[0] != 0))
		return -EINVAL;
	return 0;
}

/** AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL } */
static int der_algid(struct est_der_cur *c)
{
	struct est_slice seq, oid, par;
	struct est_der_cur in;
	uint8_t tag;
	int ret = est_der_expect(c, TAG_SEQUENCE, &seq, NULL);

	if (ret)
		return ret;
	cur_init(&in, seq);
	ret = est_der_expect(&in, TAG_OID, &oid, NULL);
	if (ret || oid.len == 0)
		return -EINVAL;
	if (!cur_empty(&in) && est_der_next(&in, &tag, &par, NULL))
		return -EINVAL;
	return cur_empty(&in) ? 0 : -EINVAL;
}

/** Name ::= SEQUENCE OF RelativeDistinguishedName (each a SET). */
static int der_name(struct est_der_cur *c, struct est_slice *whole)
{
	struct est_slice v;
	int ret = est_der_expect(c, TAG_SEQUENCE, &v, whole);

	if (ret)
		return ret;
	return der_all_of(v, TAG_SET);
}

/** SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier, BIT STRING } */
static int der_spki(struct est_der_cur *c, struct est_slice *whole)
{
	struct est_slice v;
	struct est_der_cur in;
	int ret = est_der_expect(c, TAG_SEQUENCE, &v, whole);

	if (ret)
		return ret;
	cur_init(&in, v);
	if (der_algid(&in) || der_bitstring(&in))
		return -EINVAL;
	return cur_empty(&in) ? 0 : -EINVAL;
}

/** A SIGNED{} wrapper: SEQUENCE { tbs SEQUENCE, AlgorithmIdentifier,
 *  BIT STRING } filling @p buf exactly; @p tbs gets the inner content. */
static int der_signed(const uint8_t *buf, size_t len, struct est_slice *tbs)
{
	struct est_slice all = { buf, len }, v;
	struct est_der_cur c;
	int ret;

	if (!buf)
		return -EINVAL;
	ret = der_exact(all, TAG_SEQUENCE, &v);
	if (ret)
		return ret;
	cur_init(&c, v);
	if (est_der_expect(&c, TAG_SEQUENCE, tbs, NULL) || der_algid(&c) ||
	    der_bitstring(&c))
		return -EINVAL;
	return cur_empty(&c) ? 0 : -EINVAL;
}

int est_der_is_single_sequence(const uint8_t *buf, size_t len)
{
	struct est_slice all = { buf, len }, v;

	if (!buf)
		return 0;
	return der_exact(all, TAG_SEQUENCE, &v) == 0;
}

/** Decode a Base64 body into a fresh buffer holding one DER SEQUENCE. */
static int body_from_b64(const uint8_t *body, size_t len, uint8_t **out,
			 size_t *outlen)
{
	size_t size = len / 4 * 3 + 3, n = 0;
	uint8_t *buf = malloc(size);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = est_b64_decode((const char *)body, len, buf, size, &n);
	if (ret == 0 && !est_der_is_single_sequence(buf, n))
		ret = -EINVAL;
	if (ret) {
		explicit_bzero(buf, size); /* the body may be a private key */
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	*outlen = n;
	return 0;
}

/* Binary first: a Base64 body that decodes to a SEQUENCE starts with 'M'
 * (or whitespace), never with 0x30 ('0'), so the two forms cannot be
 * confused for any acceptable body. */
int est_body_to_der(const uint8_t *body, size_t len, uint8_t **out,
		    size_t *outlen, int *was_binary)
{
	uint8_t *buf;
	int ret;

	if (!body)
		return -EINVAL;
	if (!est_der_is_single_sequence(body, len)) {
		ret = body_from_b64(body, len, out, outlen);
		if (ret == 0)
			*was_binary = 0;
		return ret;
	}
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, body, len);
	*out = buf;
	*outlen = len;
	*was_binary = 1;
	return 0;
}

/** ContentInfo ::= SEQUENCE { id-signedData, [0] EXPLICIT SignedData }:
 *  @p sd gets the content of the SignedData SEQUENCE. */
static int p7_content_info(const uint8_t *der, size_t len, struct est_slice *sd)
{
	struct est_slice all = { der, len }, v, oid, ctx;
	struct est_der_cur c;
	int ret;

	if (!der)
		return -EINVAL;
	ret = der_exact(all, TAG_SEQUENCE, &v);
	if (ret)
		return ret;
	cur_init(&c, v);
	if (est_der_expect(&c, TAG_OID, &oid, NULL) || est_der_expect(&c, TAG_CTX0, &ctx, NULL))
		return -EINVAL;
	if (!cur_empty(&c) || oid.len != sizeof(oid_signed_data) ||
	    memcmp(oid.ptr, oid_signed_data, sizeof(oid_signed_data)) != 0)
		return -EINVAL;
	return der_exact(ctx, TAG_SEQUENCE, sd);
}

/** SignedData ::= SEQUENCE { version, digestAlgorithms SET, encapContentInfo,
 *  [0] certificates OPTIONAL, [1] crls OPTIONAL, signerInfos SET }.
 *  @p certs gets the certificates content (empty when absent). */
static int p7_signed_data(struct est_slice sd, struct est_slice *certs)
{
	struct est_slice v;
	struct est_der_cur c;
	int ret;

	cur_init(&c, sd);
	if (der_integer(&c, &v) || est_der_expect(&c, TAG_SET, &v, NULL) ||
	    est_der_expect(&c, TAG_SEQUENCE, &v, NULL))
		return -EINVAL;
	certs->ptr = NULL;
	certs->len = 0;
	ret = cur_optional(&c, TAG_CTX0, certs);
	if (ret >= 0)
		ret = cur_optional(&c, TAG_CTX1, &v);
	if (ret < 0 || est_der_expect(&c, TAG_SET, &v, NULL))
		return -EINVAL;
	return cur_empty(&c) ? 0 : -EINVAL;
}

int est_pkcs7_certs(const uint8_t *der, size_t len, struct est_slice *certs,
		    size_t maxcerts, size_t *n)
{
	struct est_slice sd, set, v;
	struct est_der_cur c;
	size_t count = 0;
	int ret;

	ret = p7_content_info(der, len, &sd);
	if (ret == 0)
		ret = p7_signed_data(sd, &set);
	if (ret)
		return ret;
	cur_init(&c, set);
	while (!cur_empty(&c)) {
		if (count == maxcerts)
			return -E2BIG;
		ret = est_der_expect(&c, TAG_SEQUENCE, &v, &certs[count]);
		if (ret)
			return ret;
		count++;
	}
	*n = count;
	return 0;
}

/** What may follow the SPKI in a TBSCertificate: [1] issuerUniqueID,
 *  [2] subjectUniqueID (primitive in DER), [3] extensions, in order. */
static int cert_tail(struct est_der_cur *c)
{
	static const uint8_t order[] = { 0x81, 0x82, 0xa3 };
	struct est_slice v;
	size_t k = 0;
	uint8_t tag;

	while (!cur_empty(c)) {
		if (est_der_next(c, &tag, &v, NULL))
			return -EINVAL;
		while (k < sizeof(order) && order[k] != tag)
			k++;
		if (k == sizeof(order))
			return -EINVAL; /* unknown, repeated or out of order */
		k++;
	}
	return 0;
}

/** Walk a Certificate to the fields of its TBSCertificate (RFC 5280 4.1). */
static int cert_walk(const uint8_t *cert, size_t len, struct cert_parts *parts)
{
	struct est_slice tbs, v;
	struct est_der_cur c;
	int ret = der_signed(cert, len, &tbs);

	if (ret)
		return ret;
	cur_init(&c, tbs);
	ret = cur_optional(&c, TAG_CTX0, &v);
	if (ret < 0 || (ret == 1 && der_exact(v, TAG_INTEGER, &v)))
		return -EINVAL;
	if (der_integer(&c, &v) || der_algid(&c) ||
	    der_name(&c, &parts->issuer) ||
	    est_der_expect(&c, TAG_SEQUENCE, &v, NULL) ||
	    der_name(&c, &parts->subject) || der_spki(&c, &parts->spki))
		return -EINVAL;
	return cert_tail(&c);
}

int est_cert_spki(const uint8_t *cert, size_t len, struct est_slice *spki)
{
	struct cert_parts parts;
	int ret = cert_walk(cert, len, &parts);

	if (ret == 0)
		*spki = parts.spki;
	return ret;
}

int est_cert_names(const uint8_t *cert, size_t len, struct est_slice *issuer,
		   struct est_slice *subject)
{
	struct cert_parts parts;
	int ret = cert_walk(cert, len, &parts);

	if (ret)
		return ret;
	*issuer = parts.issuer;
	*subject = parts.subject;
	return 0;
}

/** What the CSR walker hands out. */
struct csr_parts {
	struct est_slice subject; /* the Name TLV */
	struct est_slice spki;    /* the SubjectPublicKeyInfo TLV */
	struct est_slice attrs;   /* content of [0] attributes */
};

/** CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject Name,
 *  SubjectPublicKeyInfo, attributes [0] IMPLICIT SET OF Attribute }
 *  (RFC 2986 4.1: attributes is not OPTIONAL; each is a SEQUENCE). */
static int csr_walk(const uint8_t *csr, size_t len, struct csr_parts *parts)
{
	struct est_slice cri, v;
	struct est_der_cur c;
	int ret = der_signed(csr, len, &cri);

	if (ret)
		return ret;
	cur_init(&c, cri);
	if (der_integer(&c, &v) || v.len != 1 || v.ptr[0] != 0)
		return -EINVAL;
	if (der_name(&c, &parts->subject) || der_spki(&c, &parts->spki) ||
	    est_der_expect(&c, TAG_CTX0, &parts->attrs, NULL) ||
	    der_all_of(parts->attrs, TAG_SEQUENCE))
		return -EINVAL;
	return cur_empty(&c) ? 0 : -EINVAL;
}

int est_csr_spki(const uint8_t *csr, size_t len, struct est_slice *spki)
{
	struct csr_parts parts;
	int ret = csr_walk(csr, len, &parts);

	if (ret == 0)
		*spki = parts.spki;
	return ret;
}

int est_csr_parts(const uint8_t *csr, size_t len, struct est_slice *subject,
		  struct est_slice *attrs)
{
	struct csr_parts parts;
	int ret = csr_walk(csr, len, &parts);

	if (ret)
		return ret;
	*subject = parts.subject;
	*attrs = parts.attrs;
	return 0;
}

int est_csr_check(const uint8_t *csr, size_t len)
{
	struct csr_parts parts;

	return csr_walk(csr, len, &parts);
}
