/* rfc8295.c - the RFC 8295 EST extensions over CoAP (see rfc8295.h).
 *
 * No RFC gives the RFC 8295 path components CoAP short names or their
 * media types CoAP Content-Formats (RFC 9148 Table 1 and §8.1 cover RFC
 * 7030 only), so (I1, DECIDED): the CoAP path is the path component itself
 * under the EST root and label, each operation is off unless [rfc8295]
 * enable names it, and the media types IANA has not given a Content-Format
 * get one from the experimental range (RFC 7252 §12.3), configurable.
 * Bodies (I2): binary DER on CoAP (RFC 9148 §4.3); from the CA Base64 for
 * the pkcs7-mime and pkcs12 types (RFC 8951 §3, RFC 8295 §8.3.2), Base64 or
 * binary DER for application/cms and the TAMP types, where RFC 8295 says
 * only "DER-encoded" (detected: est_body_to_der); checked (cms.c) before
 * any 2.xx. Nothing is decrypted, no signature is checked (RFC 8295
 * §5.1.2, §6.2.2).
 */
#include "estgw/rfc8295.h"
#include "estgw/cms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define C(c, d) EST_CODE(c, d)

/* ---- media types -------------------------------------------------------- */

static const struct {
	const char *token, *type;
	enum est_cms_type tamp; /* the TAMP message of the type (RFC 5934 §4) */
} mts[EST_X_MT_COUNT] = {
	{ "cms", "application/cms", 0 },
	{ "crls", "application/pkcs7-mime", 0 },
	{ "pkcs12", "application/pkcs12", 0 },
	{ "tamp-status-query", "application/tamp-status-query", EST_CMS_TAMP_STATUS_QUERY },
	{ "tamp-update", "application/tamp-update", EST_CMS_TAMP_UPDATE },
	{ "tamp-apex-update", "application/tamp-apex-update", EST_CMS_TAMP_APEX_UPDATE },
	{ "tamp-community-update", "application/tamp-community-update",
	  EST_CMS_TAMP_COMMUNITY_UPDATE },
	{ "tamp-sequence-adjust", "application/tamp-sequence-adjust", EST_CMS_TAMP_SEQ_ADJUST },
	{ "tamp-status-response", "application/tamp-status-response",
	  EST_CMS_TAMP_STATUS_RESPONSE },
	{ "tamp-update-confirm", "application/tamp-update-confirm", EST_CMS_TAMP_UPDATE_CONFIRM },
	{ "tamp-apex-update-confirm", "application/tamp-apex-update-confirm",
	  EST_CMS_TAMP_APEX_UPDATE_CONFIRM },
	{ "tamp-community-update-confirm", "application/tamp-community-update-confirm",
	  EST_CMS_TAMP_COMMUNITY_UPDATE_CONFIRM },
	{ "tamp-sequence-adjust-confirm", "application/tamp-sequence-adjust-confirm",
	  EST_CMS_TAMP_SEQ_ADJUST_CONFIRM },
	{ "tamp-error", "application/tamp-error", EST_CMS_TAMP_ERROR },
};

const char *est_x_mt_token(enum est_x_mt mt)
{
	return (unsigned)mt < EST_X_MT_COUNT ? mts[mt].token : NULL;
}

const char *est_x_mt_media_type(enum est_x_mt mt)
{
	return (unsigned)mt < EST_X_MT_COUNT ? mts[mt].type : NULL;
}

uint32_t est_x_mt_default_cf(enum est_x_mt mt)
{
	return 65000u + (uint32_t)mt; /* 65000-65013 */
}

int est_x_mt_lookup(const char *tok, size_t len)
{
	for (int i = 0; tok && i < EST_X_MT_COUNT; i++)
		if (strlen(mts[i].token) == len && memcmp(mts[i].token, tok, len) == 0)
			return i;
	return -ENOENT;
}

/* ---- operations --------------------------------------------------------- */

static const struct est_x_op_desc ops[EST_X_OP_COUNT] = {
	{ EST_X_PAL, "pal", "pal", EST_GET, EST_X_EN_PAL, 1, "estgw.8295.pal" },
	{ EST_X_EECERTS, "eecerts", "eecerts", EST_GET, EST_X_EN_EECERTS, 1,
	  "estgw.8295.eecerts" },
	{ EST_X_CRLS, "crls", "crls", EST_GET, EST_X_EN_CRLS, 1, "estgw.8295.crls" },
	{ EST_X_SYMKEYS, "symmetrickeys", "symmetrickeys", EST_GET, EST_X_EN_SYMKEYS, 0,
	  "estgw.8295.symmetrickeys" },
	{ EST_X_SYMKEYS_RET, "symmetrickeys/return", "symmetrickeys/return", EST_POST,
	  EST_X_EN_SYMKEYS, 0, "estgw.8295.symmetrickeys.return" },
	{ EST_X_FIRMWARE, "firmware", "firmware", EST_GET, EST_X_EN_FIRMWARE, 0,
	  "estgw.8295.firmware" },
	{ EST_X_FIRMWARE_RET, "firmware/return", "firmware/return", EST_POST,
	  EST_X_EN_FIRMWARE, 0, "estgw.8295.firmware.return" },
	{ EST_X_TAMP, "tamp", "tamp", EST_GET, EST_X_EN_TAMP, 0, "estgw.8295.tamp" },
	{ EST_X_TAMP_RET, "tamp/return", "tamp/return", EST_POST, EST_X_EN_TAMP, 0,
	  "estgw.8295.tamp.return" },
	{ EST_X_SKG_RET, "skg/return", "serverkeygen/return", EST_POST, EST_X_EN_SKG, 0,
	  "estgw.8295.skg.return" },
	{ EST_X_SKG_P12, "skg", "serverkeygen", EST_POST, EST_X_EN_SKG, 0, NULL },
	{ EST_X_SKG_EKP, "skg", "serverkeygen", EST_POST, EST_X_EN_SKG, 0, NULL },
};

const struct est_x_op_desc *est_x_op_desc(enum est_x_op op)
{
	return (unsigned)op < EST_X_OP_COUNT ? &ops[op] : NULL;
}

int est_x_enabled(const struct estgw_rfc8295 *c, const struct est_x_op_desc *op)
{
	return c && op && (c->enable & op->bit) != 0;
}

/* ---- routing ------------------------------------------------------------ */

static int seg_is(const struct est_slice *s, const char *w)
{
	size_t n = strlen(w);

	return s->len == n && memcmp(s->ptr, w, n) == 0;
}

static int safe_seg(const struct est_slice *s)
{
	if (s->len == 0 || s->len > EST_LABEL_MAX || seg_is(s, ".") || seg_is(s, ".."))
		return 0;
	for (size_t i = 0; i < s->len; i++) {
		uint8_t c = s->ptr[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' ||
		      c == '-'))
			return 0;
	}
	return 1;
}

static const char *const words[] = {
	"pal", "eecerts", "crls", "symmetrickeys", "firmware", "tamp", "skg", "skc",
};

static int is_word(const struct est_slice *s)
{
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (seg_is(s, words[i]))
			return 1;
	return est_op_lookup((const char *)s->ptr, s->len) != NULL;
}

/* What follows root[/label]: the operation, or -1. */
static int op_of(const struct est_slice *s, size_t n)
{
	static const struct {
		const char *w;
		int plain, ret;
	} m[] = {
		{ "pal", EST_X_PAL, -1 }, { "eecerts", EST_X_EECERTS, -1 },
		{ "crls", EST_X_CRLS, -1 },
		{ "symmetrickeys", EST_X_SYMKEYS, EST_X_SYMKEYS_RET },
		{ "firmware", EST_X_FIRMWARE, EST_X_FIRMWARE_RET },
		{ "tamp", EST_X_TAMP, EST_X_TAMP_RET },
		{ "skg", -1, EST_X_SKG_RET }, { "skc", -1, EST_X_SKG_RET },
	};

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		if (!seg_is(&s[0], m[i].w))
			continue;
		if (m[i].plain >= 0 && ops[m[i].plain].tail)
			return m[i].plain;
		if (n == 1)
			return m[i].plain;
		if (n == 2 && seg_is(&s[1], "return"))
			return m[i].ret;
		return -1;
	}
	return -1;
}

static int route_rest(const struct est_slice *rest, size_t n, size_t base,
		      struct est_x_route *out)
{
	size_t at = 0;
	int op;

	if (n == 0)
		return -ENOENT;
	if (!is_word(&rest[0])) {
		if (n < 2 || !safe_seg(&rest[0]))
			return -ENOENT;
		memcpy(out->label, rest[0].ptr, rest[0].len);
		out->label[rest[0].len] = '\0';
		at = 1;
	}
	op = op_of(rest + at, n - at);
	if (op < 0)
		return -ENOENT;
	out->op = &ops[op];
	out->tail_first = base + at + 1;
	out->ntail = ops[op].tail ? n - at - 1 : 0;
	for (size_t i = 0; i < out->ntail; i++)
		if (!safe_seg(&rest[at + 1 + i]))
			return -ENOENT;
	return 0;
}

int est_x_route_path(const struct est_slice *segs, size_t nseg,
		     const char *const *roots, size_t nroots,
		     struct est_x_route *out)
{
	size_t used;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; segs && roots && i < nroots; i++) {
		if (!roots[i] || !est_root_match(roots[i], segs, nseg, &used))
			continue;
		if (route_rest(segs + used, nseg - used, used, out) == 0) {
			out->root_index = i;
			return 0;
		}
		memset(out, 0, sizeof(*out));
	}
	return -ENOENT;
}

/* ---- option checks ------------------------------------------------------ */

int est_x_skg_variant(const struct estgw_rfc8295 *c, int accept)
{
	if (!c || !(c->enable & EST_X_EN_SKG) || accept == EST_CF_NONE)
		return -1;
	if ((uint32_t)accept == c->cf[EST_X_MT_PKCS12])
		return EST_X_SKG_P12;
	if ((uint32_t)accept == c->cf[EST_X_MT_CMS])
		return EST_X_SKG_EKP;
	return -1;
}

static int fail(struct est_verdict *v, uint8_t code, const char *diag)
{
	v->code = code;
	v->diag = diag;
	v->resp_cf = EST_CF_NONE;
	return -EINVAL;
}

static int cf_in(const struct estgw_rfc8295 *c, int cf, int first, int n)
{
	for (int i = first; i < first + n; i++)
		if (cf != EST_CF_NONE && (uint32_t)cf == c->cf[i])
			return i;
	return -1;
}

/* The request Content-Format a POST takes. */
static int post_cf_ok(const struct estgw_rfc8295 *c, enum est_x_op op, int cf)
{
	switch (op) {
	case EST_X_TAMP_RET:
		return cf_in(c, cf, EST_X_MT_TAMP_R, 6) >= 0;
	case EST_X_SKG_P12:
	case EST_X_SKG_EKP:
		return cf == EST_CF_PKCS10;
	default:
		return cf != EST_CF_NONE && (uint32_t)cf == c->cf[EST_X_MT_CMS];
	}
}

/* The answer's CF for @p accept; -2: not offered. */
static int answer_cf(const struct estgw_rfc8295 *c, enum est_x_op op, int accept)
{
	int none = accept == EST_CF_NONE;

	switch (op) {
	case EST_X_PAL:
		return none ? EST_CF_APP_XML : (accept == EST_CF_APP_XML ||
						accept == EST_CF_APP_JSON) ? accept : -2;
	case EST_X_EECERTS:
		return none ? EST_CF_PKCS7_CERTS : (accept == EST_CF_PKCS7_CERTS ||
						    accept == EST_CF_PKIX_CERT) ? accept : -2;
	case EST_X_CRLS:
		return none || (uint32_t)accept == c->cf[EST_X_MT_CRLS] ?
			(int)c->cf[EST_X_MT_CRLS] : -2;
	case EST_X_SYMKEYS:
	case EST_X_FIRMWARE:
	case EST_X_SKG_EKP:
		return none || (uint32_t)accept == c->cf[EST_X_MT_CMS] ?
			(int)c->cf[EST_X_MT_CMS] : -2;
	case EST_X_TAMP:
		return none ? EST_CF_NONE : cf_in(c, accept, EST_X_MT_TAMP_Q, 5) >= 0 ?
			accept : -2;
	case EST_X_SKG_P12:
		return (int)c->cf[EST_X_MT_PKCS12];
	default: /* the /return POSTs answer 2.04 without a payload */
		return EST_CF_NONE;
	}
}

static const char *const accept_diags[EST_X_OP_COUNT] = {
	[EST_X_PAL] = "Accept must be 41 (XML) or 50 (JSON)",
	[EST_X_EECERTS] = "Accept must be 281 or 287",
	[EST_X_CRLS] = "Accept must be the crls-only Content-Format",
	[EST_X_SYMKEYS] = "Accept must be the application/cms Content-Format",
	[EST_X_FIRMWARE] = "Accept must be the application/cms Content-Format",
	[EST_X_TAMP] = "Accept must be a TAMP query Content-Format",
};

int est_x_check_request(const struct estgw_rfc8295 *c,
			const struct est_x_op_desc *op,
			const struct est_coap_req *req, struct est_verdict *v)
{
	int cf;

	if (!v)
		return -EINVAL;
	if (!c || !op || !req || !est_x_enabled(c, op))
		return fail(v, C(4, 4), "RFC 8295 operation not enabled");
	if (req->method != op->method)
		return fail(v, C(4, 5), "method not allowed");
	if (op->method == EST_POST && req->cf == EST_CF_NONE)
		return fail(v, C(4, 15), "Content-Format missing");
	if (op->method == EST_POST && !post_cf_ok(c, op->op, req->cf))
		return fail(v, C(4, 15), op->op == EST_X_TAMP_RET ?
			    "Content-Format must be a TAMP response type" :
			    "Content-Format must be the application/cms one");
	cf = answer_cf(c, op->op, req->accept);
	if (cf == -2)
		return fail(v, C(4, 6), accept_diags[op->op] ? accept_diags[op->op] :
			    "Accept not offered");
	v->code = 0;
	v->diag = NULL;
	v->resp_cf = cf;
	return 0;
}

size_t est_x_body_cap(const struct estgw_rfc8295 *c, const struct est_x_op_desc *op)
{
	if (!c || !op)
		return 0;
	switch (op->op) {
	case EST_X_PAL: return c->max_pal;
	case EST_X_EECERTS: return c->max_eecerts;
	case EST_X_CRLS: return c->max_crls;
	case EST_X_SYMKEYS: return c->max_symmetrickeys;
	case EST_X_FIRMWARE: return c->max_firmware;
	case EST_X_TAMP: return c->max_tamp;
	case EST_X_SKG_P12:
	case EST_X_SKG_EKP: return c->max_serverkeygen;
	default: return c->max_return;
	}
}

/* ---- the upstream request ----------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
};

static int sput(struct sbuf *b, const void *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *p = realloc(b->p, cap);

		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

/* A Uri-Query value as URL query text: unreserved characters and "=:@/,"
 * as they are, every other byte percent-encoded (RFC 3986 §2.1). */
static int put_query(struct sbuf *b, const struct est_slice *q)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = 0;

	for (size_t i = 0; i < q->len && !rc; i++) {
		uint8_t c = q->ptr[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~=:@/,", c)) {
			if (c)
				rc = sput(b, &c, 1);
			else
				rc = sput(b, "%00", 3);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			rc = sput(b, e, 3);
		}
	}
	return rc;
}

static char *build_url(const char *base, const struct est_x_op_desc *op,
		       const struct est_x_ask *a)
{
	struct sbuf b = { 0 };
	size_t blen = strlen(base);
	int rc;

	while (blen && base[blen - 1] == '/')
		blen--;
	rc = sput(&b, base, blen);
	if (!rc && a->label && *a->label)
		rc = sput(&b, "/", 1) || sput(&b, a->label, strlen(a->label));
	if (!rc)
		rc = sput(&b, "/", 1) || sput(&b, op->http_name, strlen(op->http_name));
	for (size_t i = 0; !rc && op->tail && i < a->ntail; i++)
		rc = sput(&b, "/", 1) || sput(&b, a->tail[i].ptr, a->tail[i].len);
	for (size_t i = 0; !rc && op->tail && i < a->nquery; i++)
		rc = sput(&b, i ? "&" : "?", 1) || put_query(&b, &a->query[i]);
	if (rc) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* application/cms with the encapsulatingContent of RFC 7193 §2 when the
 * outer type has one (innerContent is not sent: both are optional). */
static const char *cms_content_type(enum est_cms_type outer)
{
	switch (outer) {
	case EST_CMS_SIGNED: return "application/cms; encapsulatingContent=signedData";
	case EST_CMS_ENVELOPED: return "application/cms; encapsulatingContent=envelopedData";
	case EST_CMS_ENCRYPTED: return "application/cms; encapsulatingContent=encryptedData";
	case EST_CMS_AUTH_ENVELOPED:
		return "application/cms; encapsulatingContent=authEnvelopedData";
	case EST_CMS_COMPRESSED: return "application/cms; encapsulatingContent=compressedData";
	default: return "application/cms";
	}
}

/* A /return body: one ContentInfo (for tamp/return of the type its CF
 * names), as MIME Base64 or binary. */
static int return_body(const struct estgw_rfc8295 *c, const struct est_x_op_desc *op,
		       const struct est_x_ask *a, struct est_http_req *out)
{
	struct est_cms_info info;
	size_t cap;

	if (!a->body || est_cms_check(a->body, a->len, &info) != 0)
		return -EINVAL;
	if (op->op == EST_X_TAMP_RET) {
		int mt = cf_in(c, a->req_cf, EST_X_MT_TAMP_R, 6);
		enum est_cms_type t;

		if (mt < 0 || est_tamp_type(a->body, a->len, &t) != 0 || t != mts[mt].tamp)
			return -EINVAL;
		out->content_type = mts[mt].type;
	} else {
		out->content_type = cms_content_type(info.outer);
	}
	if (c->post_binary) {
		out->body = malloc(a->len);
		if (!out->body)
			return -ENOMEM;
		memcpy(out->body, a->body, a->len);
		out->body_len = a->len;
		return 0;
	}
	cap = est_b64_mime_len(a->len);
	if (cap == SIZE_MAX)
		return -EINVAL;
	out->body = malloc(cap + 1);
	if (!out->body)
		return -ENOMEM;
	out->transfer_encoding = "base64"; /* B5 */
	return est_b64_encode_mime(a->body, a->len, out->body, cap + 1, &out->body_len);
}

int est_x_build_http_request(const struct estgw_rfc8295 *c,
			     const struct est_x_op_desc *op, const char *base_url,
			     const struct est_x_ask *a, struct est_http_req *out,
			     const char **accept)
{
	int rc = 0;

	if (!out || !accept)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	*accept = NULL;
	if (!c || !op || !base_url || !a)
		return -EINVAL;
	if (op->op == EST_X_SKG_P12 || op->op == EST_X_SKG_EKP) {
		rc = est_build_http_request(est_op_desc(EST_OP_SKG), base_url,
					    a->label ? a->label : "", a->body, a->len, out);
		*accept = op->op == EST_X_SKG_P12 ? "application/pkcs12" : "application/cms";
		return rc;
	}
	out->method = op->method;
	out->url = build_url(base_url, op, a);
	if (!out->url)
		return -ENOMEM;
	if (op->op == EST_X_PAL)
		*accept = a->resp_cf == EST_CF_APP_JSON ? "application/json" : "application/xml";
	if (op->method == EST_POST)
		rc = return_body(c, op, a, out);
	if (rc)
		est_http_req_free(out);
	return rc;
}

/* ---- the answer --------------------------------------------------------- */

/* The media type of a Content-Type value equals @p want (case-insensitive,
 * parameters ignored, RFC 9110 §8.3.1). */
static int ct_is(const char *ct, const char *want)
{
	size_t n;

	if (!ct)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	n = strcspn(ct, "; \t");
	return n == strlen(want) && strncasecmp(ct, want, n) == 0;
}

static int bad(struct est_coap_resp *out, uint8_t code, const char *why)
{
	int rc = est_coap_resp_error(out, code, why);

	out->note = why;
	return rc;
}

static int give(struct est_coap_resp *out, uint8_t code, int cf, uint8_t *p, size_t n)
{
	memset(out, 0, sizeof(*out));
	out->code = code;
	out->cf = cf;
	out->payload = p;
	out->len = n;
	return 0;
}

/* RFC 8295 App. A writes application/pkcs7-smime for /crls: taken too. */
static int p7_type(const char *ct)
{
	return ct_is(ct, "application/pkcs7-mime") || ct_is(ct, "application/pkcs7-smime");
}

static int answer_pal(const struct estgw_rfc8295 *c, int resp_cf,
		      const struct est_http_resp *in, struct est_x_pal_ctx *pal,
		      struct est_coap_resp *out)
{
	int json = resp_cf == EST_CF_APP_JSON;
	struct est_pal_opts o = {
		.up_base = pal ? pal->up_base : "", .gw_base = pal ? pal->gw_base : "",
		.enabled = pal ? pal->enabled : 0, .rewrite = c->pal_rewrite,
	};
	char *text = NULL;
	size_t n = 0;
	int rc;

	if (!ct_is(in->content_type, json ? "application/json" : "application/xml"))
		return bad(out, C(5, 2), json ? "upstream PAL is not application/json"
					      : "upstream PAL is not application/xml");
	rc = est_pal_rewrite((const char *)in->body, in->body_len, json, &o, &text, &n,
			     pal ? &pal->stats : NULL);
	if (rc == -ENOMEM)
		return bad(out, C(5, 0), "out of memory") ? -ENOMEM : -ENOMEM;
	if (rc)
		return bad(out, C(5, 2), "upstream sent a malformed PAL");
	return give(out, C(2, 5), resp_cf, (uint8_t *)text, n);
}

/* A checked DER answer. */
static int answer_der(const struct estgw_rfc8295 *c, const struct est_x_op_desc *op,
		      int resp_cf, uint8_t *der, size_t len, struct est_coap_resp *out,
		      int *taken)
{
	struct est_cms_info info;
	uint8_t code = op->method == EST_POST ? C(2, 4) : C(2, 5);

	*taken = 0;
	switch (op->op) {
	case EST_X_EECERTS: {
		struct est_slice certs[EST_PKCS7_MAX_CERTS], pick;
		size_t n = 0;
		uint8_t *one;

		if (est_pkcs7_certs(der, len, certs, EST_PKCS7_MAX_CERTS, &n) || n == 0)
			return bad(out, C(5, 2), "upstream sent no certs-only PKCS#7");
		if (resp_cf != EST_CF_PKIX_CERT)
			break;
		if (est_pick_single_cert(certs, n, NULL, &pick) != 0 || n != 1)
			return bad(out, C(4, 6), "not exactly one certificate");
		if (!(one = malloc(pick.len)))
			return -ENOMEM;
		memcpy(one, pick.ptr, pick.len);
		return give(out, code, EST_CF_PKIX_CERT, one, pick.len);
	}
	case EST_X_CRLS:
		if (est_cms_check(der, len, &info) || info.outer != EST_CMS_SIGNED ||
		    !info.has_crls || info.ncrls == 0)
			return bad(out, C(5, 2), "upstream sent no crls-only PKCS#7");
		break;
	case EST_X_SKG_P12:
		if (est_pkcs12_check(der, len))
			return bad(out, C(5, 2), "upstream sent a malformed PKCS#12");
		break;
	case EST_X_SKG_EKP:
		if (est_cms_check(der, len, &info) ||
		    !(info.outer == EST_CMS_ENC_KEY_PKG || info.outer == EST_CMS_ENVELOPED ||
		      info.outer == EST_CMS_ENCRYPTED || info.outer == EST_CMS_AUTH_ENVELOPED ||
		      info.outer == EST_CMS_SIGNED))
			return bad(out, C(5, 2), "upstream sent no encrypted key package");
		break;
	default: /* symmetric keys, firmware: any ContentInfo (§5.1.2, §6.1.2) */
		if (est_cms_check(der, len, &info))
			return bad(out, C(5, 2), "upstream sent a malformed CMS ContentInfo");
		break;
	}
	*taken = 1;
	return give(out, code, resp_cf, der, len);
}

/* The TAMP query type the CA's Content-Type names; -1. */
static int tamp_mt(const char *ct)
{
	for (int i = EST_X_MT_TAMP_Q; i < EST_X_MT_TAMP_Q + 5; i++)
		if (ct_is(ct, mts[i].type))
			return i;
	return -1;
}

static int answer_200(const struct estgw_rfc8295 *c, const struct est_x_op_desc *op,
		      int resp_cf, const struct est_http_resp *in,
		      struct est_x_pal_ctx *pal, struct est_coap_resp *out)
{
	size_t cap = est_x_body_cap(c, op);
	const char *want = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	int rc, binary = 0, taken = 0, mt = -1;

	if (!in->body || in->body_len == 0)
		return bad(out, C(5, 2), "upstream sent an empty body");
	if (in->body_len > cap + cap / 2 + 1024)
		return bad(out, C(5, 2), "upstream answer over the [rfc8295] cap");
	switch (op->op) {
	case EST_X_PAL:
		return answer_pal(c, resp_cf, in, pal, out);
	case EST_X_EECERTS:
	case EST_X_CRLS:
		if (!p7_type(in->content_type))
			return bad(out, C(5, 2), "upstream type is not application/pkcs7-mime");
		break;
	case EST_X_TAMP:
		mt = tamp_mt(in->content_type);
		if (mt < 0)
			return bad(out, C(5, 2), "upstream type is not a TAMP query type");
		if (resp_cf != EST_CF_NONE && (uint32_t)resp_cf != c->cf[mt])
			return bad(out, C(4, 6), "the CA has another TAMP type for this device");
		resp_cf = (int)c->cf[mt];
		break;
	case EST_X_SKG_P12:
		want = "application/pkcs12";
		break;
	default:
		want = "application/cms";
		break;
	}
	if (want && !ct_is(in->content_type, want))
		return bad(out, C(5, 2), op->op == EST_X_SKG_P12 ?
			   "upstream type is not application/pkcs12" :
			   "upstream type is not application/cms");
	rc = est_body_to_der(in->body, in->body_len, &der, &len, &binary);
	if (rc == -ENOMEM)
		return bad(out, C(5, 0), "out of memory") ? -ENOMEM : -ENOMEM;
	if (rc)
		return bad(out, C(5, 2), "upstream sent a malformed body");
	if (len > cap) {
		free(der);
		return bad(out, C(5, 2), "upstream answer over the [rfc8295] cap");
	}
	if (mt >= 0) {
		enum est_cms_type t;

		if (est_tamp_type(der, len, &t) != 0 || t != mts[mt].tamp) {
			free(der);
			return bad(out, C(5, 2), "TAMP body does not match its Content-Type");
		}
	}
	rc = answer_der(c, op, resp_cf, der, len, out, &taken);
	if (!taken) {
		explicit_bzero(der, len); /* PKCS#12 holds a private key (G7) */
		free(der);
	}
	if (binary && out->code == (op->method == EST_POST ? C(2, 4) : C(2, 5)))
		out->note = "binary DER from upstream";
	return rc;
}

int est_x_translate_response(const struct estgw_rfc8295 *c,
			     const struct est_x_op_desc *op, int resp_cf,
			     const struct est_http_resp *in,
			     const struct est_xlate_limits *lim,
			     struct est_x_pal_ctx *pal, struct est_coap_resp *out)
{
	int ret = op && (op->op == EST_X_SYMKEYS_RET || op->op == EST_X_FIRMWARE_RET ||
			 op->op == EST_X_TAMP_RET || op->op == EST_X_SKG_RET);

	if (!out)
		return -EINVAL;
	if (!c || !op || !in)
		return est_coap_resp_error(out, C(5, 0), "internal error");
	/* transport errors and every status but the success ones: the EST
	 * table (D), for a GET or a POST */
	if (in->err != EST_UP_OK || (ret ? (in->status != 204 && in->status != 200)
					  : in->status != 200))
		return est_translate_response(est_op_desc(op->method == EST_POST ?
							  EST_OP_SEN : EST_OP_CRTS),
					      EST_CF_PKCS7_CERTS, NULL, 0, in, lim, out);
	if (ret) { /* RFC 8295 §5.2.2, §6.2.2, §7.2.2: 204, no content */
		give(out, C(2, 4), EST_CF_NONE, NULL, 0);
		if (in->status == 200)
			out->note = "upstream answered 200 to a /return: body dropped";
		return 0;
	}
	return answer_200(c, op, resp_cf, in, pal, out);
}

/* ---- discovery ---------------------------------------------------------- */

static int ct_text(const struct estgw_rfc8295 *c, enum est_x_op op, char *buf, size_t n)
{
	int first, cnt, w = 0;

	switch (op) {
	case EST_X_PAL: return snprintf(buf, n, "\"41 50\"");
	case EST_X_EECERTS: return snprintf(buf, n, "\"281 287\"");
	case EST_X_CRLS: return snprintf(buf, n, "%u", c->cf[EST_X_MT_CRLS]);
	case EST_X_TAMP: first = EST_X_MT_TAMP_Q; cnt = 5; break;
	case EST_X_TAMP_RET: first = EST_X_MT_TAMP_R; cnt = 6; break;
	default: return snprintf(buf, n, "%u", c->cf[EST_X_MT_CMS]);
	}
	w = snprintf(buf, n, "\"");
	for (int i = 0; i < cnt && w > 0 && (size_t)w < n; i++)
		w += snprintf(buf + w, n - (size_t)w, "%s%u", i ? " " : "", c->cf[first + i]);
	if (w > 0 && (size_t)w < n)
		w += snprintf(buf + w, n - (size_t)w, "\"");
	return w;
}

int est_x_link_format(const struct estgw_rfc8295 *c, const char *root,
		      const struct est_slice *queries, size_t nq, char **b,
		      size_t *len)
{
	size_t rlen;
	struct sbuf s;

	if (!c || !b || !len || !root)
		return -EINVAL;
	s.p = *b;
	s.len = *len;
	s.cap = *b ? *len + 1 : 0;
	rlen = strlen(root);
	while (rlen && root[rlen - 1] == '/')
		rlen--;
	for (int i = 0; i < EST_X_OP_COUNT; i++) {
		char ct[96], link[EST_LABEL_MAX + 256];
		int n;

		if (!ops[i].rt || !est_x_enabled(c, &ops[i]))
			continue;
		ct_text(c, (enum est_x_op)i, ct, sizeof(ct));
		if (!est_link_passes(ops[i].rt, ct, queries, nq))
			continue;
		n = snprintf(link, sizeof(link), "%s<%.*s/%s>;rt=\"%s\";ct=%s",
			     s.len ? "," : "", (int)rlen, root, ops[i].name, ops[i].rt, ct);
		if (n < 0 || (size_t)n >= sizeof(link) || sput(&s, link, (size_t)n)) {
			*b = s.p;
			return -ENOMEM;
		}
	}
	*b = s.p;
	*len = s.len;
	return 0;
}
