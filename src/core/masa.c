/* masa.c - MASA answer -> pledge answer (H5; see estgw/masa.h).
 *
 * First matching row wins (RFC 8995 §5.6: 200 carries the voucher, 202
 * asks the registrar to come back after Retry-After, a 4xx carries a
 * text/plain reason for the pledge's administrator). What no row names
 * (3xx, 5xx, nonsense) is 5.02: the pledge cannot act on a MASA failure
 * other than by trying again later.
 */
#include "estgw/masa.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "estgw/cose.h"
#include "estgw/voucher.h"

#define C(c, d) EST_CODE(c, d)

/* Where an answer's code, Max-Age and diagnostic come from. */
enum masa_code_from { CODE_ROW, CODE_EST_TABLE };
enum masa_age_from { AGE_NONE, AGE_RETRY_AFTER, AGE_AS_EST };
enum masa_diag_from {
	DIAG_VOUCHER, /* the voucher checks: no diagnostic when it passes */
	DIAG_FIXED,   /* the row's text */
	DIAG_REASON,  /* "MASA: " + the body as printable text */
	DIAG_STATUS,  /* "MASA answered HTTP <status>" */
};

struct masa_row {
	long lo, hi;
	enum masa_kind kind;
	enum masa_code_from code_from;
	uint8_t code;
	enum masa_age_from age;
	enum masa_diag_from diag_from;
	const char *diag;
};

static const struct masa_row masa_rows[] = {
	{ 200, 200, MASA_VOUCHER, CODE_ROW, C(2, 4), AGE_NONE, DIAG_VOUCHER, NULL },
	{ 202, 202, MASA_PENDING, CODE_ROW, C(5, 3), AGE_RETRY_AFTER, DIAG_FIXED,
	  "MASA: voucher not ready, retry later" },
	/* same code as for EST (404 4.04, 403 4.03, 429 4.29 + Max-Age, RFC 8516) */
	{ 400, 499, MASA_FAILED, CODE_EST_TABLE, 0, AGE_AS_EST, DIAG_REASON, NULL },
};

static const struct masa_row masa_other = {
	0, 0, MASA_FAILED, CODE_ROW, C(5, 2), AGE_NONE, DIAG_STATUS, NULL
};

/* No HTTP answer: what the transport said. */
struct masa_err_row {
	enum est_upstream_err err;
	uint8_t code;
	const char *diag; /* NULL: "MASA unreachable: <errmsg>" */
};

static const struct masa_err_row masa_err_rows[] = {
	{ EST_UP_TIMEOUT, C(5, 4), "MASA did not answer in time" },
};

static const struct masa_err_row masa_err_other = { EST_UP_PROTOCOL, C(5, 2), NULL };

static const struct masa_row *row_of(long status)
{
	for (size_t i = 0; i < sizeof(masa_rows) / sizeof(masa_rows[0]); i++)
		if (status >= masa_rows[i].lo && status <= masa_rows[i].hi)
			return &masa_rows[i];
	return &masa_other;
}

static const struct masa_err_row *err_row_of(enum est_upstream_err err)
{
	for (size_t i = 0; i < sizeof(masa_err_rows) / sizeof(masa_err_rows[0]); i++)
		if (masa_err_rows[i].err == err)
			return &masa_err_rows[i];
	return &masa_err_other;
}

int masa_is_voucher_type(const char *ct)
{
	size_t n;

	if (!ct)
		return 0;
	n = strcspn(ct, "; \t");
	return (n == strlen(MASA_MT_VOUCHER) && strncasecmp(ct, MASA_MT_VOUCHER, n) == 0) ||
	       (n == strlen(MASA_MT_VOUCHER_LEGACY) &&
		strncasecmp(ct, MASA_MT_VOUCHER_LEGACY, n) == 0);
}

static enum masa_kind failed(struct est_coap_resp *out, uint8_t code, const char *diag)
{
	est_coap_resp_error(out, code, diag);
	return MASA_FAILED;
}

/* A 200: the voucher, checked against the request, stripped. */
static enum masa_kind voucher(const struct est_http_resp *in, const struct masa_expect *x,
			      struct est_coap_resp *out)
{
	struct cose_sign1 s;
	struct vr_fields f;
	uint8_t *stripped;
	size_t len;

	if (!masa_is_voucher_type(in->content_type))
		return failed(out, C(5, 2), "MASA answer is not application/voucher+cose");
	if (cose_sign1_parse(in->body, in->body_len, &s) != 0 ||
	    vr_decode(s.payload.ptr, s.payload.len, VR_VOUCHER, &f) != 0)
		return failed(out, C(5, 2), "MASA answer is not a COSE-signed voucher");
	if (!f.nonce.ptr || f.nonce.len != x->nonce_len ||
	    memcmp(f.nonce.ptr, x->nonce, x->nonce_len) != 0 || !f.serial.ptr ||
	    f.serial.len != strlen(x->serial) ||
	    memcmp(f.serial.ptr, x->serial, f.serial.len) != 0)
		return failed(out, C(5, 2),
			      "voucher nonce or serial-number does not match the request");
	if (cose_sign1_strip(in->body, in->body_len, &stripped, &len) != 0)
		return failed(out, C(5, 0), "out of memory");
	memset(out, 0, sizeof(*out));
	out->code = C(2, 4);
	out->cf = MASA_CF_VOUCHER_COSE;
	out->payload = stripped;
	out->len = len;
	return MASA_VOUCHER;
}

static enum masa_kind transport_error(const char *errmsg, enum est_upstream_err err,
				      struct est_coap_resp *out)
{
	const struct masa_err_row *r = err_row_of(err);
	char diag[200];

	if (r->diag)
		return failed(out, r->code, r->diag);
	snprintf(diag, sizeof(diag), "MASA unreachable: %s", errmsg ? errmsg : "?");
	return failed(out, r->code, diag);
}

enum masa_kind masa_translate(const struct est_http_resp *in, const char *errmsg,
			      const struct masa_expect *x,
			      const struct est_xlate_limits *lim,
			      struct est_coap_resp *out)
{
	const struct masa_row *r;
	uint8_t code;
	char text[160], diag[200];

	memset(out, 0, sizeof(*out));
	if (in->err != EST_UP_OK)
		return transport_error(errmsg, in->err, out);
	r = row_of(in->status);
	if (r->diag_from == DIAG_VOUCHER)
		return voucher(in, x, out);
	code = r->code_from == CODE_EST_TABLE ? est_status_to_code(in->status, EST_POST)
					      : r->code;
	switch (r->diag_from) {
	case DIAG_REASON:
		est_printable(text, sizeof(text), in->body, in->body_len);
		snprintf(diag, sizeof(diag), "MASA: %s", text[0] ? text : "refused");
		break;
	case DIAG_STATUS:
		snprintf(diag, sizeof(diag), "MASA answered HTTP %ld", in->status);
		break;
	default:
		snprintf(diag, sizeof(diag), "%s", r->diag);
		break;
	}
	est_coap_resp_error(out, code, diag);
	if (r->age == AGE_RETRY_AFTER ||
	    (r->age == AGE_AS_EST && est_status_has_max_age(in->status))) {
		out->has_max_age = 1;
		out->max_age = est_retry_max_age(in->retry_after, in->now, lim);
	}
	return r->kind;
}
