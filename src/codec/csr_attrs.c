/* csr_attrs.c - bounded walker over a PKCS#10 CSR's attributes and over the
 * serialNumber of an X.501 Name (docs/conformance.md F3, G4, G6).
 *
 * Owns: finding challengePassword (RFC 2985 5.4.1; RFC 7030 3.5 puts the
 * Base64 tls-unique there), the presence of SMIMECapabilities (RFC 2985
 * 5.4.2), DecryptKeyIdentifier (RFC 7030 4.4.1.1) and
 * AsymmetricDecryptKeyIdentifier (RFC 7030 4.4.1.2), and the subject's
 * serialNumber (X.520, 2.5.4.5).
 * Must not: recurse, allocate or log. It walks with est_der_tlv() only, at a
 * depth fixed by the code; the whole CSR is first checked by est_csr_check().
 */
#include "estgw/codec.h"

#include <errno.h>
#include <string.h>

#define TAG_OID       0x06
#define TAG_UTF8      0x0c
#define TAG_PRINTABLE 0x13
#define TAG_SEQUENCE  0x30
#define TAG_SET       0x31
#define TAG_CTX0      0xa0

/* 1.2.840.113549.1.9.7 challengePassword */
static const uint8_t oid_challenge[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07 };
/* 1.2.840.113549.1.9.15 smimeCapabilities */
static const uint8_t oid_smime_caps[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0f };
/* 1.2.840.113549.1.9.16.2.37 id-aa-decryptKeyID */
static const uint8_t oid_decrypt_kid[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
					   0x09, 0x10, 0x02, 0x25 };
/* 1.2.840.113549.1.9.16.2.54 id-aa-asymmDecryptKeyID */
static const uint8_t oid_asym_kid[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
					0x09, 0x10, 0x02, 0x36 };
/* 2.5.4.5 serialNumber */
static const uint8_t oid_serial[] = { 0x55, 0x04, 0x05 };

static int oid_is(struct est_slice oid, const uint8_t *want, size_t len)
{
	return oid.len == len && memcmp(oid.ptr, want, len) == 0;
}

#define OID_IS(s, a) oid_is((s), (a), sizeof(a))

/** The one value of a SET OF with exactly one element; it must be a
 *  PrintableString or UTF8String (DirectoryString choices for ASCII text). */
static int single_string(struct est_slice set, struct est_slice *value)
{
	struct est_der_cur c = { set.ptr, set.len };
	uint8_t tag;

	if (est_der_next(&c, &tag, value, NULL) || c.len != 0)
		return -EINVAL;
	return tag == TAG_PRINTABLE || tag == TAG_UTF8 ? 0 : -EINVAL;
}

/** One Attribute ::= SEQUENCE { type OID, values SET } into @p out. */
static int csr_attr(struct est_slice attr, struct est_csr_info *out)
{
	struct est_der_cur c = { attr.ptr, attr.len };
	struct est_slice oid, set;

	if (est_der_expect(&c, TAG_OID, &oid, NULL) || est_der_expect(&c, TAG_SET, &set, NULL) ||
	    c.len != 0 || oid.len == 0 || set.len == 0)
		return -EINVAL;
	if (OID_IS(oid, oid_challenge)) {
		if (out->has_challenge)
			return -EINVAL; /* two passwords: ambiguous */
		out->has_challenge = 1;
		return single_string(set, &out->challenge);
	}
	if (OID_IS(oid, oid_smime_caps))
		out->has_smime_caps = 1;
	else if (OID_IS(oid, oid_decrypt_kid))
		out->has_decrypt_key_id = 1;
	else if (OID_IS(oid, oid_asym_kid))
		out->has_asym_decrypt_key_id = 1;
	return 0;
}

int est_name_serial(struct est_slice name, struct est_slice *serial)
{
	struct est_der_cur names = { name.ptr, name.len }, rdn, atv;
	struct est_slice seq, set, oid, val;
	uint8_t tag;
	int found = 0;

	if (!name.ptr || est_der_expect(&names, TAG_SEQUENCE, &seq, NULL) || names.len)
		return -EINVAL;
	names.p = seq.ptr;
	names.len = seq.len;
	while (names.len) {
		if (est_der_expect(&names, TAG_SET, &set, NULL) || set.len == 0)
			return -EINVAL;
		rdn.p = set.ptr;
		rdn.len = set.len;
		while (rdn.len) {
			struct est_slice a;

			if (est_der_expect(&rdn, TAG_SEQUENCE, &a, NULL))
				return -EINVAL;
			atv.p = a.ptr;
			atv.len = a.len;
			if (est_der_expect(&atv, TAG_OID, &oid, NULL) || est_der_next(&atv, &tag, &val, NULL) ||
			    atv.len)
				return -EINVAL;
			if (!OID_IS(oid, oid_serial))
				continue;
			if (found++)
				return -EINVAL; /* two serialNumbers: ambiguous */
			*serial = val;
		}
	}
	return found ? 0 : -ENOENT;
}

int est_csr_info(const uint8_t *csr, size_t len, struct est_csr_info *out)
{
	struct est_der_cur c = { csr, len };
	struct est_slice v, attrs, attr;
	uint8_t tag;
	int ret = est_csr_check(csr, len);

	if (ret)
		return ret;
	memset(out, 0, sizeof(*out));
	/* The shape is known good now: SEQUENCE { CRI SEQUENCE { version,
	 * subject, spki, [0] attributes }, ... }. */
	if (est_der_expect(&c, TAG_SEQUENCE, &v, NULL))
		return -EINVAL;
	c.p = v.ptr;
	c.len = v.len;
	if (est_der_expect(&c, TAG_SEQUENCE, &v, NULL))
		return -EINVAL;
	c.p = v.ptr;
	c.len = v.len;
	if (est_der_next(&c, &tag, &v, NULL) ||
	    est_der_expect(&c, TAG_SEQUENCE, &v, &out->subject) ||
	    est_der_expect(&c, TAG_SEQUENCE, &v, NULL) || est_der_expect(&c, TAG_CTX0, &attrs, NULL))
		return -EINVAL;
	ret = est_name_serial(out->subject, &out->serial);
	if (ret == -ENOENT)
		out->serial.ptr = NULL;
	else if (ret)
		return ret;
	c.p = attrs.ptr;
	c.len = attrs.len;
	while (c.len) {
		if (est_der_expect(&c, TAG_SEQUENCE, &attr, NULL))
			return -EINVAL;
		ret = csr_attr(attr, out);
		if (ret)
			return ret;
	}
	return 0;
}
