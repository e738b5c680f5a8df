/* idevid.c - what the Registrar reads from an IDevID (pure DER walking):
 * subject serialNumber, extensions (AKI, id-pe-masa-url), and the MASA
 * request URL (RFC 8995 2.3.1, 2.3.2, 5.4; RFC 8366bis idevid-issuer). */
#include "estgw/voucher.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const uint8_t oid_serial_number[] = { 0x55, 0x04, 0x05 };
static const uint8_t oid_aki[] = { 0x55, 0x1d, 0x23 };
static const uint8_t oid_masa_url[] = { 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x20 };

/* Step over one TLV of @p want tag (0: any) at *p. */
static int take(const uint8_t **p, size_t *left, uint8_t want, uint8_t *tag,
		struct est_slice *content)
{
	size_t total;
	uint8_t t;
	int rc = est_der_tlv(*p, *left, &t, content, &total);

	if (rc)
		return rc;
	if (want && t != want)
		return -EINVAL;
	if (tag)
		*tag = t;
	*p += total;
	*left -= total;
	return 0;
}

/* The TBSCertificate fields from subject on: subject and the [3] part. */
static int tbs_parts(const uint8_t *cert, size_t len, struct est_slice *subject,
		     struct est_slice *exts)
{
	struct est_slice c, tbs, x;
	const uint8_t *p = cert;
	size_t left = len;
	uint8_t tag;
	int rc;

	if ((rc = take(&p, &left, 0x30, NULL, &c)) != 0 || left != 0)
		return rc ? rc : -EINVAL;
	p = c.ptr;
	left = c.len;
	if ((rc = take(&p, &left, 0x30, NULL, &tbs)) != 0)
		return rc;
	p = tbs.ptr;
	left = tbs.len;
	if (left && p[0] == 0xa0 && (rc = take(&p, &left, 0xa0, NULL, &x)) != 0)
		return rc;
	if ((rc = take(&p, &left, 0x02, NULL, &x)) != 0 ||   /* serial */
	    (rc = take(&p, &left, 0x30, NULL, &x)) != 0 ||   /* signature */
	    (rc = take(&p, &left, 0x30, NULL, &x)) != 0 ||   /* issuer */
	    (rc = take(&p, &left, 0x30, NULL, &x)) != 0 ||   /* validity */
	    (rc = take(&p, &left, 0x30, NULL, subject)) != 0 ||
	    (rc = take(&p, &left, 0x30, NULL, &x)) != 0)     /* spki */
		return rc;
	exts->ptr = NULL;
	exts->len = 0;
	while (left) {
		if ((rc = take(&p, &left, 0, &tag, &x)) != 0)
			return rc;
		if (tag == 0xa3) {
			const uint8_t *q = x.ptr;
			size_t ql = x.len;
			if ((rc = take(&q, &ql, 0x30, NULL, exts)) != 0 || ql)
				return rc ? rc : -EINVAL;
		} else if (tag != 0x81 && tag != 0x82) {
			return -EINVAL;
		}
	}
	return 0;
}

int idevid_serial(const uint8_t *cert, size_t len, struct est_slice *serial)
{
	struct est_slice subject, exts, set, atv, oid, val;
	int rc = tbs_parts(cert, len, &subject, &exts);

	if (rc)
		return rc;
	const uint8_t *p = subject.ptr;
	size_t left = subject.len;
	while (left) {
		if ((rc = take(&p, &left, 0x31, NULL, &set)) != 0)
			return rc;
		const uint8_t *q = set.ptr;
		size_t ql = set.len;
		while (ql) {
			if ((rc = take(&q, &ql, 0x30, NULL, &atv)) != 0)
				return rc;
			const uint8_t *a = atv.ptr;
			size_t al = atv.len;
			uint8_t vt;
			if ((rc = take(&a, &al, 0x06, NULL, &oid)) != 0 ||
			    (rc = take(&a, &al, 0, &vt, &val)) != 0)
				return rc;
			if (oid.len == sizeof(oid_serial_number) &&
			    memcmp(oid.ptr, oid_serial_number, oid.len) == 0) {
				if (vt != 0x13 && vt != 0x0c && vt != 0x16)
					return -EINVAL; /* Printable, UTF8, IA5 */
				*serial = val;
				return 0;
			}
		}
	}
	return -ENOENT;
}

int idevid_ext(const uint8_t *cert, size_t len, const uint8_t *oid,
	       size_t oidlen, struct est_slice *extn_value)
{
	struct est_slice subject, exts, ext, id, x;
	int rc = tbs_parts(cert, len, &subject, &exts);

	if (rc)
		return rc;
	const uint8_t *p = exts.ptr;
	size_t left = exts.len;
	while (left) {
		if ((rc = take(&p, &left, 0x30, NULL, &ext)) != 0)
			return rc;
		const uint8_t *q = ext.ptr;
		size_t ql = ext.len;
		if ((rc = take(&q, &ql, 0x06, NULL, &id)) != 0)
			return rc;
		if (ql && q[0] == 0x01 && (rc = take(&q, &ql, 0x01, NULL, &x)) != 0)
			return rc;
		const uint8_t *v0 = q;
		if ((rc = take(&q, &ql, 0x04, NULL, &x)) != 0 || ql)
			return rc ? rc : -EINVAL;
		if (id.len == oidlen && memcmp(id.ptr, oid, oidlen) == 0) {
			extn_value->ptr = v0;
			extn_value->len = (size_t)(q - v0);
			return 0;
		}
	}
	return -ENOENT;
}

int idevid_issuer(const uint8_t *cert, size_t len, struct est_slice *out)
{
	return idevid_ext(cert, len, oid_aki, sizeof(oid_aki), out);
}

int idevid_issuer_from_keyid(const uint8_t *keyid, size_t keyidlen,
			     uint8_t *out, size_t outsize, size_t *outlen)
{
	if (keyidlen == 0 || keyidlen > 64 || outsize < keyidlen + 6)
		return -EINVAL;
	out[0] = 0x04;
	out[1] = (uint8_t)(keyidlen + 4);
	out[2] = 0x30;
	out[3] = (uint8_t)(keyidlen + 2);
	out[4] = 0x80;
	out[5] = (uint8_t)keyidlen;
	memcpy(out + 6, keyid, keyidlen);
	*outlen = keyidlen + 6;
	return 0;
}

int idevid_masa_url(const uint8_t *cert, size_t len, struct est_slice *url)
{
	struct est_slice ev, s;
	uint8_t tag;
	size_t total;
	int rc = idevid_ext(cert, len, oid_masa_url, sizeof(oid_masa_url), &ev);

	if (rc)
		return rc;
	/* extnValue OCTET STRING holding an IA5String */
	if ((rc = est_der_tlv(ev.ptr, ev.len, &tag, &s, &total)) != 0)
		return rc;
	if ((rc = est_der_tlv(s.ptr, s.len, &tag, url, &total)) != 0)
		return rc;
	if (tag != 0x16 || total != s.len || url->len == 0)
		return -EINVAL;
	return 0;
}

int masa_request_url(const char *in, size_t len, char *out, size_t outsize)
{
	static const char scheme[] = "https://";
	const char *p = in, *end = in + len, *slash;
	int n;

	for (size_t i = 0; i < len; i++)
		if ((unsigned char)in[i] <= 0x20 || (unsigned char)in[i] >= 0x7f)
			return -EINVAL;
	if (len >= 8 && strncasecmp(in, scheme, 8) == 0)
		p += 8;
	else if (memchr(in, ':', len) && memmem(in, len, "://", 3))
		return -EINVAL; /* another scheme */
	slash = memchr(p, '/', (size_t)(end - p));
	const char *host_end = slash ? slash : end;
	if (host_end == p || memchr(p, '@', (size_t)(host_end - p)) ||
	    memchr(p, '?', (size_t)(end - p)) || memchr(p, '#', (size_t)(end - p)))
		return -EINVAL;
	const char *path = slash ? slash : "";
	size_t plen = slash ? (size_t)(end - slash) : 0;
	while (plen && path[plen - 1] == '/')
		plen--;
	if (plen == 0) {
		path = "/.well-known/brski";
		plen = strlen(path);
	}
	n = snprintf(out, outsize, "https://%.*s%.*s/requestvoucher",
		     (int)(host_end - p), p, (int)plen, path);
	if (n < 0 || (size_t)n >= outsize)
		return -EINVAL;
	return 0;
}
