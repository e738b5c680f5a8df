/* cms.c - shape checks of CMS, PKCS#12 and TAMP bodies (see cms.h).
 *
 * Bounded walks over DER with the cursor of der.c: every element must fit
 * its parent exactly, definite lengths only, single-byte tags. Nothing is
 * decrypted or verified: that stays with the device and the CA (RFC 8295
 * §5.1.2, §6.2.2; RFC 9148 §5 for EnvelopedData). I2.
 */
#include "estgw/cms.h"

#include <errno.h>
#include <string.h>

#define TAG_INTEGER 0x02
#define TAG_OCTETS 0x04
#define TAG_OID 0x06
#define TAG_SEQUENCE 0x30
#define TAG_SET 0x31
#define TAG_CTX0 0xa0
#define TAG_CTX1 0xa1

/* OID content bytes. pkcs7: 1.2.840.113549.1.7.x; smime ct:
 * 1.2.840.113549.1.9.16.1.x; infosec formats: 2.16.840.1.101.2.1.2.y.x
 * (y = 77 TAMP, RFC 5934 App. A; y = 78 key packages, RFC 5958, 6032,
 * 7191). */
#define PKCS7 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07
#define SMIME_CT 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01
#define TAMP 0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x02, 0x4d
#define KP 0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x02, 0x4e

static const struct {
	enum est_cms_type type;
	uint8_t oid[12];
	uint8_t len;
	const char *token; /* RFC 7193 §2 encapsulatingContent value, NULL: not sent */
} types[] = {
	{ EST_CMS_DATA, { PKCS7, 0x01 }, 9, NULL },
	{ EST_CMS_SIGNED, { PKCS7, 0x02 }, 9, "signedData" },
	{ EST_CMS_ENVELOPED, { PKCS7, 0x03 }, 9, "envelopedData" },
	{ EST_CMS_ENCRYPTED, { PKCS7, 0x06 }, 9, "encryptedData" },
	{ EST_CMS_AUTH_ENVELOPED, { SMIME_CT, 0x17 }, 11, "authEnvelopedData" },
	{ EST_CMS_COMPRESSED, { SMIME_CT, 0x09 }, 11, "compressedData" },
	{ EST_CMS_ENC_KEY_PKG, { KP, 0x02 }, 10, NULL },
	{ EST_CMS_SYM_KEY_PKG, { SMIME_CT, 0x19 }, 11, NULL },
	{ EST_CMS_ASYM_KEY_PKG, { KP, 0x05 }, 10, NULL },
	{ EST_CMS_FW_PKG, { SMIME_CT, 0x10 }, 11, NULL },
	{ EST_CMS_FW_RECEIPT, { SMIME_CT, 0x11 }, 11, NULL },
	{ EST_CMS_FW_ERROR, { SMIME_CT, 0x12 }, 11, NULL },
	{ EST_CMS_KP_RECEIPT, { KP, 0x03 }, 10, NULL },
	{ EST_CMS_KP_ERROR, { KP, 0x06 }, 10, NULL },
	{ EST_CMS_TAMP_STATUS_QUERY, { TAMP, 0x01 }, 10, NULL },
	{ EST_CMS_TAMP_STATUS_RESPONSE, { TAMP, 0x02 }, 10, NULL },
	{ EST_CMS_TAMP_UPDATE, { TAMP, 0x03 }, 10, NULL },
	{ EST_CMS_TAMP_UPDATE_CONFIRM, { TAMP, 0x04 }, 10, NULL },
	{ EST_CMS_TAMP_APEX_UPDATE, { TAMP, 0x05 }, 10, NULL },
	{ EST_CMS_TAMP_APEX_UPDATE_CONFIRM, { TAMP, 0x06 }, 10, NULL },
	{ EST_CMS_TAMP_COMMUNITY_UPDATE, { TAMP, 0x07 }, 10, NULL },
	{ EST_CMS_TAMP_COMMUNITY_UPDATE_CONFIRM, { TAMP, 0x08 }, 10, NULL },
	{ EST_CMS_TAMP_SEQ_ADJUST, { TAMP, 0x0a }, 10, NULL },
	{ EST_CMS_TAMP_SEQ_ADJUST_CONFIRM, { TAMP, 0x0b }, 10, NULL },
	{ EST_CMS_TAMP_ERROR, { TAMP, 0x09 }, 10, NULL },
};

#define N_TYPES (sizeof(types) / sizeof(types[0]))

enum est_cms_type est_cms_type_of_oid(const uint8_t *oid, size_t len)
{
	for (size_t i = 0; oid && i < N_TYPES; i++)
		if (types[i].len == len && memcmp(types[i].oid, oid, len) == 0)
			return types[i].type;
	return EST_CMS_OTHER;
}

const char *est_cms_token(enum est_cms_type t)
{
	for (size_t i = 0; i < N_TYPES; i++)
		if (types[i].type == t)
			return types[i].token;
	return NULL;
}

/* An OID's content: at least one byte, the last byte of each arc without
 * the continuation bit (X.690 §8.19). */
static int oid_ok(const struct est_slice *o)
{
	return o->len > 0 && o->len <= 64 && (o->ptr[o->len - 1] & 0x80) == 0;
}

/* Every element of @p s carries tag @p want; their number in *n. */
static int all_of(struct est_slice s, uint8_t want, size_t *n)
{
	struct est_der_cur c = { s.ptr, s.len };
	struct est_slice e;

	*n = 0;
	while (c.len) {
		if (est_der_expect(&c, want, &e, NULL))
			return -EINVAL;
		(*n)++;
	}
	return 0;
}

/* Any run of complete elements (the [0] certificates, [1] crls: their
 * CHOICE alternatives have several tags). */
static int any_run(struct est_slice s, size_t *n)
{
	struct est_der_cur c = { s.ptr, s.len };
	struct est_slice e;
	uint8_t tag;

	*n = 0;
	while (c.len) {
		if (est_der_next(&c, &tag, &e, NULL))
			return -EINVAL;
		(*n)++;
	}
	return 0;
}

/* SignedData (RFC 5652 §5.1): version, digestAlgorithms SET,
 * encapContentInfo { eContentType, [0] EXPLICIT OCTET STRING OPTIONAL },
 * [0] IMPLICIT certificates OPTIONAL, [1] IMPLICIT crls OPTIONAL,
 * signerInfos SET OF SEQUENCE. */
static int signed_data(struct est_slice sd, struct est_cms_info *info)
{
	struct est_der_cur c = { sd.ptr, sd.len }, e;
	struct est_slice v, oid, ec;
	size_t n;

	if (est_der_expect(&c, TAG_INTEGER, &v, NULL) || v.len == 0 || v.len > 1 ||
	    est_der_expect(&c, TAG_SET, &v, NULL) || all_of(v, TAG_SEQUENCE, &n) ||
	    est_der_expect(&c, TAG_SEQUENCE, &v, NULL))
		return -EINVAL;
	e.p = v.ptr;
	e.len = v.len;
	if (est_der_expect(&e, TAG_OID, &oid, NULL) || !oid_ok(&oid))
		return -EINVAL;
	info->econtent = est_cms_type_of_oid(oid.ptr, oid.len);
	if (e.len) {
		struct est_der_cur in;

		if (est_der_expect(&e, TAG_CTX0, &ec, NULL) || e.len)
			return -EINVAL;
		in.p = ec.ptr;
		in.len = ec.len;
		if (est_der_expect(&in, TAG_OCTETS, &v, NULL) || in.len)
			return -EINVAL;
		info->has_econtent = 1;
	}
	if (est_der_expect(&c, TAG_CTX0, &v, NULL) == 0) {
		if (any_run(v, &info->ncerts))
			return -EINVAL;
		info->has_certs = 1;
	}
	if (est_der_expect(&c, TAG_CTX1, &v, NULL) == 0) {
		if (any_run(v, &info->ncrls))
			return -EINVAL;
		info->has_crls = 1;
	}
	if (est_der_expect(&c, TAG_SET, &v, NULL) ||
	    all_of(v, TAG_SEQUENCE, &info->nsigners) || c.len)
		return -EINVAL;
	return 0;
}

int est_cms_check(const uint8_t *der, size_t len, struct est_cms_info *info)
{
	struct est_der_cur top = { der, len }, c, x;
	struct est_slice ci, oid, ctx, inner, whole;
	uint8_t tag;

	if (!der || !info)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	if (est_der_expect(&top, TAG_SEQUENCE, &ci, NULL) || top.len)
		return -EINVAL;
	c.p = ci.ptr;
	c.len = ci.len;
	if (est_der_expect(&c, TAG_OID, &oid, NULL) || !oid_ok(&oid) ||
	    est_der_expect(&c, TAG_CTX0, &ctx, NULL) || c.len)
		return -EINVAL;
	x.p = ctx.ptr;
	x.len = ctx.len;
	if (est_der_next(&x, &tag, &inner, &whole) || x.len)
		return -EINVAL; /* [0] EXPLICIT: exactly one element */
	info->outer = est_cms_type_of_oid(oid.ptr, oid.len);
	info->content = whole;
	if (info->outer == EST_CMS_SIGNED)
		return tag == TAG_SEQUENCE ? signed_data(inner, info) : -EINVAL;
	return 0;
}

int est_pkcs12_check(const uint8_t *der, size_t len)
{
	struct est_der_cur top = { der, len }, c;
	struct est_slice pfx, v, ci, ci_content;
	struct est_cms_info info;

	if (!der || est_der_expect(&top, TAG_SEQUENCE, &pfx, NULL) || top.len)
		return -EINVAL;
	c.p = pfx.ptr;
	c.len = pfx.len;
	if (est_der_expect(&c, TAG_INTEGER, &v, NULL) || v.len != 1 ||
	    v.ptr[0] != 3 || est_der_expect(&c, TAG_SEQUENCE, &ci_content, &ci))
		return -EINVAL;
	if (est_cms_check(ci.ptr, ci.len, &info) ||
	    (info.outer != EST_CMS_DATA && info.outer != EST_CMS_SIGNED))
		return -EINVAL;
	if (c.len && est_der_expect(&c, TAG_SEQUENCE, &v, NULL))
		return -EINVAL; /* macData */
	return c.len ? -EINVAL : 0;
}

static int is_tamp(enum est_cms_type t)
{
	return t >= EST_CMS_TAMP_FIRST && t < EST_CMS_TYPE_COUNT;
}

int est_tamp_type(const uint8_t *der, size_t len, enum est_cms_type *type)
{
	struct est_cms_info info;

	if (!type || est_cms_check(der, len, &info))
		return -EINVAL;
	if (is_tamp(info.outer)) {
		*type = info.outer;
		return 0;
	}
	if (info.outer == EST_CMS_SIGNED && is_tamp(info.econtent)) {
		*type = info.econtent;
		return 0;
	}
	return -ENOENT;
}
