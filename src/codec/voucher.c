/* voucher.c - voucher(-request) CBOR with SID or name keys, the Registrar
 * voucher request, and vs/es status telemetry (pure; H1-H3 in
 * docs/conformance.md). */
#include "estgw/voucher.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "cbor_rd.h"

enum leaf_type { L_ENUM, L_TEXT, L_BYTES, L_BOOL };

/* One YANG leaf: SID deltas under 2501 (voucher-request) and 2451
 * (voucher), 0 when the leaf does not exist there. */
struct leaf {
	const char *name;
	uint8_t vr_delta, v_delta;
	enum leaf_type type;
	size_t off;
};

#define F(f) offsetof(struct vr_fields, f)
static const struct leaf leaves[] = {
	{ "assertion",                       1,  1,  L_ENUM,  F(assertion) },
	{ "created-on",                      2,  2,  L_TEXT,  F(created_on) },
	{ "domain-cert-revocation-checks",   3,  3,  L_BOOL,  F(rev_checks) },
	{ "expires-on",                      4,  4,  L_TEXT,  F(expires_on) },
	{ "idevid-issuer",                   5,  5,  L_BYTES, F(idevid_issuer) },
	{ "nonce",                           7,  7,  L_BYTES, F(nonce) },
	{ "pinned-domain-cert",              8,  8,  L_BYTES, F(pinned_cert) },
	{ "pinned-domain-pubk",              0,  9,  L_BYTES, F(pinned_pubk) },
	{ "pinned-domain-pubk-sha256",       0,  10, L_BYTES, F(pinned_sha256) },
	{ "prior-signed-voucher-request",    9,  0,  L_BYTES, F(prior_signed) },
	{ "proximity-registrar-cert",        10, 0,  L_BYTES, F(prox_cert) },
	{ "proximity-registrar-pubk-sha256", 11, 0,  L_BYTES, F(prox_sha256) },
	{ "proximity-registrar-pubk",        12, 0,  L_BYTES, F(prox_pubk) },
	{ "serial-number",                   13, 11, L_TEXT,  F(serial) },
};
#undef F
#define NLEAVES (sizeof(leaves) / sizeof(leaves[0]))

static const char *const assertion_names[] = { "verified", "logged", "proximity" };

static const struct leaf *leaf_by_sid(enum vr_kind kind, int64_t sid)
{
	int64_t top = kind == VR_REQUEST ? VR_SID_VOUCHER_REQUEST : VR_SID_VOUCHER;

	for (size_t i = 0; i < NLEAVES; i++) {
		uint8_t d = kind == VR_REQUEST ? leaves[i].vr_delta : leaves[i].v_delta;
		if (d && top + d == sid)
			return &leaves[i];
	}
	return NULL;
}

/* "module:name" or "name" */
static const struct leaf *leaf_by_name(enum vr_kind kind, const uint8_t *p, size_t n)
{
	const uint8_t *colon = memchr(p, ':', n);

	if (colon) {
		n -= (size_t)(colon + 1 - p);
		p = colon + 1;
	}
	for (size_t i = 0; i < NLEAVES; i++) {
		uint8_t d = kind == VR_REQUEST ? leaves[i].vr_delta : leaves[i].v_delta;
		if (d && strlen(leaves[i].name) == n && memcmp(leaves[i].name, p, n) == 0)
			return &leaves[i];
	}
	return NULL;
}

/* A map key under parent SID @p parent: delta, tag 47 absolute SID, or a
 * name. Returns the leaf or NULL (unknown: skip the value). */
static int read_key(struct cbr *r, enum vr_kind kind, int64_t parent,
		    const struct leaf **lf)
{
	struct cbr_item k;
	int64_t v;
	int rc = cbr_next(r, &k);

	if (rc)
		return rc == -ENODATA ? -EINVAL : rc;
	*lf = NULL;
	if (k.type == CBR_TEXT) {
		*lf = leaf_by_name(kind, k.ptr, k.len);
		return 0;
	}
	if (k.type == CBR_TAG) {
		if (k.val != VR_TAG_SID)
			return -EINVAL;
		if ((rc = cbr_next(r, &k)) != 0)
			return rc == -ENODATA ? -EINVAL : rc;
		if (k.type != CBR_UINT || cbr_int(&k, &v) != 0)
			return -EINVAL;
		*lf = leaf_by_sid(kind, v);
		return 0;
	}
	if (cbr_int(&k, &v) != 0 || v > INT32_MAX || v < INT32_MIN)
		return -EINVAL;
	*lf = leaf_by_sid(kind, parent + v);
	return 0;
}

static int read_leaf(struct cbr *r, const struct leaf *lf, struct vr_fields *out,
		     uint32_t *seen)
{
	struct cbr_item v;
	size_t idx = (size_t)(lf - leaves);
	int rc;

	if (*seen & (1u << idx))
		return -EINVAL; /* repeated leaf */
	*seen |= 1u << idx;
	if ((rc = cbr_next(r, &v)) != 0)
		return rc == -ENODATA ? -EINVAL : rc;
	void *dst = (char *)out + lf->off;
	switch (lf->type) {
	case L_ENUM:
		if (v.type == CBR_UINT && v.val <= VR_ASSERT_PROXIMITY) {
			*(int *)dst = (int)v.val;
			return 0;
		}
		if (v.type == CBR_TEXT)
			for (int i = 0; i < 3; i++)
				if (strlen(assertion_names[i]) == v.len &&
				    memcmp(assertion_names[i], v.ptr, v.len) == 0) {
					*(int *)dst = i;
					return 0;
				}
		return -EINVAL;
	case L_BOOL:
		if (v.type != CBR_TRUE && v.type != CBR_FALSE)
			return -EINVAL;
		*(int *)dst = v.type == CBR_TRUE;
		return 0;
	case L_TEXT:
	case L_BYTES:
		if (v.type != (lf->type == L_TEXT ? CBR_TEXT : CBR_BYTES))
			return -EINVAL;
		*(struct est_slice *)dst = (struct est_slice){ v.ptr, v.len };
		return 0;
	}
	return -EINVAL;
}

static int read_node(struct cbr *r, enum vr_kind kind, int64_t top,
		     struct vr_fields *out)
{
	struct cbr_item m;
	uint32_t seen = 0;
	int rc = cbr_next(r, &m);

	if (rc)
		return rc == -ENODATA ? -EINVAL : rc;
	if (m.type != CBR_MAP)
		return -EINVAL;
	for (uint64_t i = 0; i < m.val; i++) {
		const struct leaf *lf;
		if ((rc = read_key(r, kind, top, &lf)) != 0)
			return rc;
		rc = lf ? read_leaf(r, lf, out, &seen) : cbr_skip(r);
		if (rc)
			return rc;
	}
	return 0;
}

/* Is this top-level key our node? */
static int is_top_key(struct cbr *r, enum vr_kind kind, int *match)
{
	static const char *const names[] = { "ietf-voucher-request:voucher",
					     "ietf-voucher:voucher" };
	int64_t sid = kind == VR_REQUEST ? VR_SID_VOUCHER_REQUEST : VR_SID_VOUCHER;
	const char *name = names[kind == VR_REQUEST ? 0 : 1];
	struct cbr_item k;
	int64_t v;
	int rc = cbr_next(r, &k);

	if (rc)
		return rc == -ENODATA ? -EINVAL : rc;
	*match = 0;
	if (k.type == CBR_TAG) {
		if (k.val != VR_TAG_SID || (rc = cbr_next(r, &k)) != 0)
			return rc && rc != -ENODATA ? rc : -EINVAL;
		if (k.type != CBR_UINT)
			return -EINVAL;
	}
	if (k.type == CBR_TEXT)
		*match = strlen(name) == k.len && memcmp(name, k.ptr, k.len) == 0;
	else if (cbr_int(&k, &v) == 0)
		*match = v == sid;
	else
		return -EINVAL;
	return 0;
}

int vr_decode(const uint8_t *p, size_t len, enum vr_kind kind,
	      struct vr_fields *out)
{
	struct cbr r;
	struct cbr_item m;
	int found = 0, rc;

	memset(out, 0, sizeof(*out));
	out->assertion = VR_ASSERT_NONE;
	out->rev_checks = -1;
	if (!p || len == 0)
		return -EINVAL;
	cbr_init(&r, p, len);
	if ((rc = cbr_next(&r, &m)) != 0)
		return rc == -ENODATA ? -EINVAL : rc;
	if (m.type != CBR_MAP)
		return -EINVAL;
	for (uint64_t i = 0; i < m.val; i++) {
		int match;
		if ((rc = is_top_key(&r, kind, &match)) != 0)
			return rc;
		if (match && found)
			return -EINVAL;
		if (match) {
			found = 1;
			rc = read_node(&r, kind, kind == VR_REQUEST ?
				       VR_SID_VOUCHER_REQUEST : VR_SID_VOUCHER, out);
		} else {
			rc = cbr_skip(&r);
		}
		if (rc)
			return rc;
	}
	if (cbr_left(&r) != 0)
		return -EINVAL;
	return found ? 0 : -ENOENT;
}

int vr_encode_rvr(const struct rvr_in *in, uint8_t **out, size_t *len)
{
	struct cbw w = { 0 };
	size_t n = 0;

	if (!in->nonce.ptr || !in->serial.ptr || !in->idevid_issuer.ptr ||
	    !in->prior_signed.ptr)
		return -EINVAL;
	n = 4 + (in->assertion >= 0) + (in->created_on != NULL);
	cbw_map(&w, 1);
	cbw_uint(&w, VR_SID_VOUCHER_REQUEST);
	cbw_map(&w, n);
	if (in->assertion >= 0) {
		cbw_uint(&w, 1);
		cbw_uint(&w, (uint64_t)in->assertion);
	}
	if (in->created_on) {
		cbw_uint(&w, 2);
		cbw_text(&w, in->created_on, strlen(in->created_on));
	}
	cbw_uint(&w, 5);
	cbw_bytes(&w, in->idevid_issuer.ptr, in->idevid_issuer.len);
	cbw_uint(&w, 7);
	cbw_bytes(&w, in->nonce.ptr, in->nonce.len);
	cbw_uint(&w, 9);
	cbw_bytes(&w, in->prior_signed.ptr, in->prior_signed.len);
	cbw_uint(&w, 13);
	cbw_text(&w, (const char *)in->serial.ptr, in->serial.len);
	return cbw_finish(&w, out, len);
}

/* ---- vs / es ------------------------------------------------------------ */

static int key_is(const struct cbr_item *k, const char *name)
{
	return k->type == CBR_TEXT && strlen(name) == k->len &&
	       memcmp(name, k->ptr, k->len) == 0;
}

int brski_status_decode(const uint8_t *p, size_t len, struct brski_status *out)
{
	struct cbr r;
	struct cbr_item m, k, v;
	int have_version = 0, have_status = 0, rc;

	memset(out, 0, sizeof(*out));
	if (!p || len == 0)
		return -EINVAL;
	cbr_init(&r, p, len);
	if ((rc = cbr_next(&r, &m)) != 0 || m.type != CBR_MAP)
		return rc && rc != -ENODATA ? rc : -EINVAL;
	for (uint64_t i = 0; i < m.val; i++) {
		if ((rc = cbr_next(&r, &k)) != 0)
			return rc == -ENODATA ? -EINVAL : rc;
		if (key_is(&k, "reason-context")) {
			const uint8_t *at = r.p;
			if (out->has_context || (rc = cbr_next(&r, &v)) != 0 || v.type != CBR_MAP)
				return rc && rc != -ENODATA ? rc : -EINVAL;
			r.p = at;
			if ((rc = cbr_skip(&r)) != 0)
				return rc;
			out->has_context = 1;
			continue;
		}
		if (!key_is(&k, "version") && !key_is(&k, "status") &&
		    !key_is(&k, "reason")) {
			if ((rc = cbr_skip(&r)) != 0)
				return rc;
			continue;
		}
		if ((rc = cbr_next(&r, &v)) != 0)
			return rc == -ENODATA ? -EINVAL : rc;
		if (key_is(&k, "version")) {
			if (have_version || v.type != CBR_UINT)
				return -EINVAL;
			out->version = v.val;
			have_version = 1;
		} else if (key_is(&k, "status")) {
			if (have_status || (v.type != CBR_TRUE && v.type != CBR_FALSE))
				return -EINVAL;
			out->status = v.type == CBR_TRUE;
			have_status = 1;
		} else {
			if (out->reason.ptr || v.type != CBR_TEXT)
				return -EINVAL;
			out->reason = (struct est_slice){ v.ptr ? v.ptr : (const uint8_t *)"", v.len };
		}
	}
	if (cbr_left(&r) != 0 || !have_version || !have_status)
		return -EINVAL;
	if (!out->status && !out->reason.ptr)
		return -EINVAL;
	return 0;
}
