/* cose.c - COSE_Sign1 parse/build/strip and ECDSA signature forms (pure). */
#include "estgw/cose.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cbor_rd.h"

/* x5bag/x5chain: one bstr, or an array of bstr (RFC 9360 2). */
static int read_bag(struct cbr *r, struct cose_sign1 *out)
{
	struct cbr_item it;
	int rc = cbr_next(r, &it);

	if (rc)
		return rc;
	if (it.type == CBR_BYTES) {
		if (it.len == 0) /* no certificate is empty, in an array or not */
			return -EINVAL;
		out->x5bag[0] = (struct est_slice){ it.ptr, it.len };
		out->nx5bag = 1;
		return 0;
	}
	if (it.type != CBR_ARRAY || it.val == 0)
		return -EINVAL;
	if (it.val > COSE_MAX_BAG)
		return -E2BIG;
	size_t n = (size_t)it.val;
	for (size_t i = 0; i < n; i++) {
		rc = cbr_next(r, &it);
		if (rc)
			return rc;
		if (it.type != CBR_BYTES || it.len == 0)
			return -EINVAL;
		out->x5bag[i] = (struct est_slice){ it.ptr, it.len };
	}
	out->nx5bag = n;
	return 0;
}

/* Walk a header map; pick alg (protected only) and x5bag/x5chain. */
static int read_header(const uint8_t *p, size_t len, int protected_hdr,
		       struct cose_sign1 *out)
{
	struct cbr r;
	struct cbr_item it;
	int rc;

	cbr_init(&r, p, len);
	if ((rc = cbr_next(&r, &it)) != 0)
		return rc;
	if (it.type != CBR_MAP)
		return -EINVAL;
	for (uint64_t i = 0; i < it.val; i++) {
		struct cbr_item k, v;
		int64_t label;
		if ((rc = cbr_next(&r, &k)) != 0)
			return rc;
		if (cbr_int(&k, &label) != 0) { /* text labels: skip */
			if (k.type != CBR_TEXT)
				return -EINVAL;
			label = 0;
		}
		if (label == COSE_HDR_ALG && protected_hdr) {
			if ((rc = cbr_next(&r, &v)) != 0)
				return rc;
			if (cbr_int(&v, &out->alg) != 0) /* text alg names: unsupported */
				return -ENOTSUP;
		} else if ((label == COSE_HDR_X5BAG || label == COSE_HDR_X5CHAIN) &&
			   out->nx5bag == 0) {
			if ((rc = read_bag(&r, out)) != 0)
				return rc;
		} else if ((rc = cbr_skip(&r)) != 0) {
			return rc;
		}
	}
	return cbr_left(&r) == 0 ? 0 : -EINVAL;
}

int cose_sign1_parse(const uint8_t *in, size_t len, struct cose_sign1 *out)
{
	struct cbr r;
	struct cbr_item it;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!in || len == 0 || len > COSE_MAX_LEN)
		return -EINVAL;
	cbr_init(&r, in, len);
	if ((rc = cbr_next(&r, &it)) != 0)
		return rc;
	if (it.type == CBR_TAG) {
		if (it.val != COSE_TAG_SIGN1)
			return -EINVAL;
		out->tagged = 1;
		if ((rc = cbr_next(&r, &it)) != 0)
			return rc == -ENODATA ? -EINVAL : rc;
	}
	if (it.type != CBR_ARRAY || it.val != 4)
		return -EINVAL;
	/* protected: bstr (empty, or a serialized map) */
	if ((rc = cbr_next(&r, &it)) != 0 || it.type != CBR_BYTES)
		return rc && rc != -ENODATA ? rc : -EINVAL;
	out->prot = (struct est_slice){ it.ptr, it.len };
	/* unprotected: a map, kept as encoded */
	const uint8_t *u0 = r.p;
	if ((rc = cbr_skip(&r)) != 0)
		return rc;
	out->unprot = (struct est_slice){ u0, (size_t)(r.p - u0) };
	/* payload */
	if ((rc = cbr_next(&r, &it)) != 0)
		return rc == -ENODATA ? -EINVAL : rc;
	if (it.type == CBR_NULL)
		return -ENOTSUP;
	if (it.type != CBR_BYTES)
		return -EINVAL;
	out->payload = (struct est_slice){ it.ptr, it.len };
	/* signature */
	if ((rc = cbr_next(&r, &it)) != 0 || it.type != CBR_BYTES)
		return rc && rc != -ENODATA ? rc : -EINVAL;
	out->sig = (struct est_slice){ it.ptr, it.len };
	if (cbr_left(&r) != 0)
		return -EINVAL;
	if (out->prot.len && (rc = read_header(out->prot.ptr, out->prot.len, 1, out)) != 0)
		return rc;
	return read_header(out->unprot.ptr, out->unprot.len, 0, out);
}

int cose_tbs(const struct est_slice *prot, const struct est_slice *payload,
	     uint8_t **out, size_t *len)
{
	struct cbw w = { 0 };

	cbw_array(&w, 4);
	cbw_text(&w, "Signature1", 10);
	cbw_bytes(&w, prot->ptr, prot->len);
	cbw_bytes(&w, NULL, 0);
	cbw_bytes(&w, payload->ptr, payload->len);
	return cbw_finish(&w, out, len);
}

int cose_prot_alg(int64_t alg, uint8_t *buf, size_t *len)
{
	struct cbw w = { 0 };
	uint8_t *p;
	size_t n;
	int rc;

	cbw_map(&w, 1);
	cbw_uint(&w, COSE_HDR_ALG);
	cbw_int(&w, alg);
	if ((rc = cbw_finish(&w, &p, &n)) != 0)
		return rc;
	if (n > 16) {
		free(p);
		return -ENOSPC;
	}
	memcpy(buf, p, n);
	*len = n;
	free(p);
	return 0;
}

int cose_sign1_write(const struct est_slice *prot, const struct est_slice *bag,
		     size_t nbag, const struct est_slice *payload,
		     const uint8_t *sig, size_t siglen, uint8_t **out,
		     size_t *len)
{
	struct cbw w = { 0 };

	cbw_tag(&w, COSE_TAG_SIGN1);
	cbw_array(&w, 4);
	cbw_bytes(&w, prot->ptr, prot->len);
	cbw_map(&w, nbag ? 1 : 0);
	if (nbag) {
		cbw_uint(&w, COSE_HDR_X5BAG);
		if (nbag > 1)
			cbw_array(&w, nbag);
		for (size_t i = 0; i < nbag; i++)
			cbw_bytes(&w, bag[i].ptr, bag[i].len);
	}
	cbw_bytes(&w, payload->ptr, payload->len);
	cbw_bytes(&w, sig, siglen);
	if (!w.err && w.len > COSE_MAX_LEN)
		w.err = -E2BIG;
	return cbw_finish(&w, out, len);
}

int cose_sign1_strip(const uint8_t *in, size_t len, uint8_t **out,
		     size_t *outlen)
{
	struct cose_sign1 s;
	struct cbw w = { 0 };
	int rc = cose_sign1_parse(in, len, &s);

	if (rc)
		return rc;
	if (s.tagged)
		cbw_tag(&w, COSE_TAG_SIGN1);
	cbw_array(&w, 4);
	cbw_bytes(&w, s.prot.ptr, s.prot.len);
	cbw_map(&w, 0);
	cbw_bytes(&w, s.payload.ptr, s.payload.len);
	cbw_bytes(&w, s.sig.ptr, s.sig.len);
	return cbw_finish(&w, out, outlen);
}

/* One DER INTEGER (positive) into a fixed-size big-endian field. */
static int int_to_fixed(const struct est_slice *v, uint8_t *dst, size_t half)
{
	const uint8_t *p = v->ptr;
	size_t n = v->len;

	if (n == 0 || (p[0] & 0x80))
		return -EINVAL; /* empty or negative */
	if (n > 1 && p[0] == 0 && !(p[1] & 0x80))
		return -EINVAL; /* not minimal */
	while (n > 0 && *p == 0) {
		p++;
		n--;
	}
	if (n > half)
		return -EINVAL;
	memset(dst, 0, half - n);
	memcpy(dst + half - n, p, n);
	return 0;
}

int cose_sig_der_to_raw(const uint8_t *der, size_t len, uint8_t *raw,
			size_t half)
{
	struct est_slice seq, r, s;
	uint8_t tag;
	size_t total, t2;
	int rc;

	if ((rc = est_der_tlv(der, len, &tag, &seq, &total)) != 0)
		return rc;
	if (tag != 0x30 || total != len)
		return -EINVAL;
	if ((rc = est_der_tlv(seq.ptr, seq.len, &tag, &r, &t2)) != 0 || tag != 0x02)
		return rc ? rc : -EINVAL;
	const uint8_t *p = seq.ptr + t2;
	size_t left = seq.len - t2;
	if ((rc = est_der_tlv(p, left, &tag, &s, &t2)) != 0 || tag != 0x02)
		return rc ? rc : -EINVAL;
	if (t2 != left)
		return -EINVAL;
	if (int_to_fixed(&r, raw, half) || int_to_fixed(&s, raw + half, half))
		return -EINVAL;
	return 0;
}

/* Minimal DER INTEGER of a big-endian unsigned value. */
static size_t put_int(const uint8_t *v, size_t n, uint8_t *dst)
{
	while (n > 1 && *v == 0) {
		v++;
		n--;
	}
	size_t pad = (v[0] & 0x80) ? 1 : 0;
	dst[0] = 0x02;
	dst[1] = (uint8_t)(n + pad);
	dst[2] = 0;
	memcpy(dst + 2 + pad, v, n);
	return 2 + pad + n;
}

int cose_sig_raw_to_der(const uint8_t *raw, size_t half, uint8_t *der,
			size_t dersize, size_t *len)
{
	uint8_t body[2 * (2 + 1 + 66)];
	size_t n;

	if (half == 0 || half > 66 || dersize < 2 * half + 9)
		return -ENOSPC;
	n = put_int(raw, half, body);
	n += put_int(raw + half, half, body + n);
	if (n < 128) {
		der[0] = 0x30;
		der[1] = (uint8_t)n;
		memcpy(der + 2, body, n);
		*len = n + 2;
	} else {
		der[0] = 0x30;
		der[1] = 0x81;
		der[2] = (uint8_t)n;
		memcpy(der + 3, body, n);
		*len = n + 3;
	}
	return 0;
}
