/* translate.c - the pure EST-coaps <-> RFC 7030 translation core.
 *
 * Owns the RFC tables as data: short path -> operation (A1, A6, C),
 * request Content-Format/Accept rules (B2, B3), HTTP status -> CoAP
 * code (D), upstream transport errors, Retry-After parsing, the CoAP
 * answer built from an upstream answer (B4, B5, B6) and the
 * /.well-known/core link format (A3, A4).
 * Must not: include libcoap or curl, do I/O, keep globals, or log.
 */
#include "estgw/translate.h"
#include "estgw/skg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define C(c, d) EST_CODE(c, d)

/* ------------------------------------------------------------------------
 * Operation table (RFC 9148 Table 1, §4.1 discovery example; A1, A3,
 * A6, C). The seed copy of Table 1 spells the /cacerts short name "/crt";
 * §4.1, the discovery example and the IANA rt registration (Table 6) all
 * use "crts" / "ace.est.crts", so "crts" it is.
 */
static const struct est_op_desc op_table[EST_OP_COUNT] = {
	{ EST_OP_CRTS, "crts", "cacerts", EST_GET, "ace.est.crts",
	  "\"281 287\"", C(2, 5) },
	{ EST_OP_SEN, "sen", "simpleenroll", EST_POST, "ace.est.sen",
	  "\"281 287\"", C(2, 4) },
	{ EST_OP_SREN, "sren", "simplereenroll", EST_POST, "ace.est.sren",
	  "\"281 287\"", C(2, 4) },
	{ EST_OP_ATT, "att", "csrattrs", EST_GET, "ace.est.att", "285",
	  C(2, 5) },
	{ EST_OP_SKG, "skg", "serverkeygen", EST_POST, "ace.est.skg", "62",
	  C(2, 4) },
	{ EST_OP_SKC, "skc", "serverkeygen", EST_POST, "ace.est.skc", "62",
	  C(2, 4) },
};

/** How the 200 body of an operation is handled. */
enum body_kind { BODY_CERTS, BODY_ATTRS, BODY_KEYGEN };

/** Request and answer rules per operation, indexed by enum est_op. */
struct op_rules {
	int req_cf;             /**< required request CF, EST_CF_NONE for GET */
	int accept_default;     /**< answer CF when Accept is absent (B3) */
	int accept_alt;         /**< the other accepted CF, or EST_CF_NONE */
	const char *accept_diag; /**< 4.06 diagnostic */
	enum body_kind kind;
	const char *up_type;    /**< expected upstream media type (B6) */
	int match_csr;          /**< Accept 287 picks by the CSR's key (B4) */
};

static const struct op_rules op_rules[EST_OP_COUNT] = {
	[EST_OP_CRTS] = { EST_CF_NONE, EST_CF_PKCS7_CERTS, EST_CF_PKIX_CERT,
			  "Accept must be 281 or 287", BODY_CERTS,
			  "application/pkcs7-mime", 0 },
	[EST_OP_SEN] = { EST_CF_PKCS10, EST_CF_PKCS7_CERTS, EST_CF_PKIX_CERT,
			 "Accept must be 281 or 287", BODY_CERTS,
			 "application/pkcs7-mime", 1 },
	[EST_OP_SREN] = { EST_CF_PKCS10, EST_CF_PKCS7_CERTS, EST_CF_PKIX_CERT,
			  "Accept must be 281 or 287", BODY_CERTS,
			  "application/pkcs7-mime", 1 },
	[EST_OP_ATT] = { EST_CF_NONE, EST_CF_CSRATTRS, EST_CF_NONE,
			 "Accept must be 285", BODY_ATTRS,
			 "application/csrattrs", 0 },
	[EST_OP_SKG] = { EST_CF_PKCS10, EST_CF_MULTIPART_CORE, EST_CF_NONE,
			 "Accept must be 62", BODY_KEYGEN, "multipart/mixed",
			 0 },
	[EST_OP_SKC] = { EST_CF_PKCS10, EST_CF_MULTIPART_CORE, EST_CF_NONE,
			 "Accept must be 62", BODY_KEYGEN, "multipart/mixed",
			 0 },
};

const struct est_op_desc *est_op_desc(enum est_op op)
{
	if ((unsigned)op >= EST_OP_COUNT)
		return NULL;
	return &op_table[op];
}

static int bytes_eq(const void *a, size_t alen, const char *s)
{
	size_t slen = strlen(s);

	return alen == slen && (slen == 0 || memcmp(a, s, slen) == 0);
}

const struct est_op_desc *est_op_lookup(const char *name, size_t len)
{
	size_t i;

	if (!name)
		return NULL;
	for (i = 0; i < EST_OP_COUNT; i++)
		if (bytes_eq(name, len, op_table[i].short_name))
			return &op_table[i];
	return NULL;
}

/* ------------------------------------------------------------------------
 * Routing (A1, A2).
 */
static int label_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' ||
	       c == '-';
}

/** An ArbitraryLabel: 1..EST_LABEL_MAX of [A-Za-z0-9._~-], not "." or ".."
 *  (they would walk the upstream URL), not a short name. */
static int label_ok(const uint8_t *p, size_t len)
{
	size_t i;

	if (len == 0 || len > EST_LABEL_MAX)
		return 0;
	if (bytes_eq(p, len, ".") || bytes_eq(p, len, ".."))
		return 0;
	for (i = 0; i < len; i++)
		if (!label_char(p[i]))
			return 0;
	return est_op_lookup((const char *)p, len) == NULL;
}

int est_root_match(const char *root, const struct est_slice *segs,
		   size_t nseg, size_t *used)
{
	size_t n = 0, len;

	for (;;) {
		while (*root == '/')
			root++;
		if (*root == '\0')
			break;
		len = strcspn(root, "/");
		if (n == nseg || segs[n].len != len ||
		    memcmp(segs[n].ptr, root, len) != 0)
			return 0;
		root += len;
		n++;
	}
	*used = n;
	return 1;
}

/** Resolve what follows a root: <short> or <label>/<short>. */
static int route_rest(const struct est_slice *rest, size_t n,
		      struct est_route *out)
{
	const struct est_slice *s;

	if (n < 1 || n > 2)
		return -ENOENT;
	s = &rest[n - 1];
	out->op = est_op_lookup((const char *)s->ptr, s->len);
	if (!out->op)
		return -ENOENT;
	if (n == 2) {
		if (!label_ok(rest[0].ptr, rest[0].len))
			return -ENOENT;
		memcpy(out->label, rest[0].ptr, rest[0].len);
		out->label[rest[0].len] = '\0';
	}
	return 0;
}

int est_route_path(const struct est_slice *segs, size_t nseg,
		   const char *const *roots, size_t nroots,
		   struct est_route *out)
{
	size_t i, used;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!segs || !roots)
		return -ENOENT;
	for (i = 0; i < nroots; i++) {
		if (!roots[i] || !est_root_match(roots[i], segs, nseg, &used))
			continue;
		if (route_rest(segs + used, nseg - used, out) == 0) {
			out->root_index = i;
			return 0;
		}
		memset(out, 0, sizeof(*out));
	}
	return -ENOENT;
}

/* ------------------------------------------------------------------------
 * Request checks (A6, B2, B3).
 */
static int verdict_fail(struct est_verdict *v, uint8_t code, const char *diag)
{
	v->code = code;
	v->diag = diag;
	v->resp_cf = EST_CF_NONE;
	return -EINVAL;
}

static int accept_ok(const struct op_rules *r, int accept)
{
	return accept == r->accept_default ||
	       (r->accept_alt != EST_CF_NONE && accept == r->accept_alt);
}

int est_check_request(const struct est_op_desc *op,
		      const struct est_coap_req *req, struct est_verdict *v)
{
	const struct op_rules *r;

	if (!v)
		return -EINVAL;
	if (!op || !req || (unsigned)op->op >= EST_OP_COUNT)
		return verdict_fail(v, C(4, 4), "no such resource");
	r = &op_rules[op->op];
	if (req->method != op->method)
		return verdict_fail(v, C(4, 5), "method not allowed");
	/* B2. A GET's Content-Format and payload are ignored. */
	if (r->req_cf != EST_CF_NONE && req->cf == EST_CF_NONE)
		return verdict_fail(v, C(4, 15), "Content-Format 286 missing");
	if (r->req_cf != EST_CF_NONE && req->cf != r->req_cf)
		return verdict_fail(v, C(4, 15), "Content-Format must be 286");
	/* B3, RFC 9148 §4.3: no Accept means 281 (the op default). */
	if (req->accept != EST_CF_NONE && !accept_ok(r, req->accept))
		return verdict_fail(v, C(4, 6), r->accept_diag);
	v->code = 0;
	v->diag = NULL;
	v->resp_cf = req->accept == EST_CF_NONE ? r->accept_default
						: req->accept;
	return 0;
}

/* ------------------------------------------------------------------------
 * Upstream request (C, B5).
 */
static char *build_url(const char *base, const char *label,
		       const char *http_name)
{
	size_t blen = strlen(base), llen = strlen(label), cap;
	char *url;

	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	cap = blen + llen + strlen(http_name) + 3;
	url = malloc(cap);
	if (!url)
		return NULL;
	if (llen)
		snprintf(url, cap, "%.*s/%s/%s", (int)blen, base, label,
			 http_name);
	else
		snprintf(url, cap, "%.*s/%s", (int)blen, base, http_name);
	return url;
}

/** The CSR as MIME Base64 (B1, B5): 64-character lines, each ending
 *  in CRLF. Not one long line: libest's estserver (OpenSSL's base64 BIO)
 *  refuses that with 400 "Problem reading DER encoded certificate request";
 *  why 64 and the last CRLF: base64.c. Every body estgw POSTs to the CA
 *  (sen, sren, skg, skc, and the registrar-made CSR) is made here. */
static int encode_csr(const uint8_t *der, size_t len, struct est_http_req *out)
{
	size_t cap;
	int rc;

	if (!der || len == 0 || est_csr_check(der, len) != 0)
		return -EINVAL;
	cap = est_b64_mime_len(len);
	if (cap == SIZE_MAX)
		return -EINVAL;
	cap++;
	out->body = malloc(cap);
	if (!out->body)
		return -ENOMEM;
	rc = est_b64_encode_mime(der, len, out->body, cap, &out->body_len);
	if (rc)
		return rc;
	out->content_type = "application/pkcs10";
	out->transfer_encoding = "base64"; /* old servers want it said (B5) */
	return 0;
}

int est_build_http_request(const struct est_op_desc *op, const char *base_url,
			   const char *label, const uint8_t *payload,
			   size_t len, struct est_http_req *out)
{
	int rc = 0;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!op || !base_url || (unsigned)op->op >= EST_OP_COUNT)
		return -EINVAL;
	if (!label)
		label = "";
	if (*label && !label_ok((const uint8_t *)label, strlen(label)))
		return -EINVAL;
	out->method = op->method;
	out->url = build_url(base_url, label, op->http_name);
	if (!out->url)
		return -ENOMEM;
	if (op->method == EST_POST)
		rc = encode_csr(payload, len, out);
	if (rc)
		est_http_req_free(out);
	return rc;
}

void est_http_req_free(struct est_http_req *r)
{
	if (!r)
		return;
	free(r->url);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* ------------------------------------------------------------------------
 * HTTP status -> CoAP code (D; RFC 9148 §4.5, §5; RFC 8075 §7). First
 * matching row wins; 200 is answered by answer_ok. A row with "retry" also
 * gets a Max-Age from Retry-After (est_translate_response):
 * - 202: 5.03, RFC 9148 §4.7;
 * - 429: 4.29 Too Many Requests, RFC 8516 §3: its Max-Age is the time after
 *   which the client may retry, as Retry-After is for HTTP;
 * - 503: 5.03.
 * 204 on a POST is a failure, 5.02 (RFC 9148 §4.1 and Table 4: success is
 * 2.04 with the certificate, or the key and certificate; an answer without
 * them is no enrollment). 204 on a GET can only be /att: RFC 7030 §4.5.2
 * gives 204 and 404 the same meaning, no CSR attributes available, so both
 * are 4.04.
 */
struct status_row {
	long lo, hi;
	uint8_t on_get, on_post;
	uint8_t retry;          /**< Max-Age from Retry-After */
	const char *diag_get;   /**< NULL: "upstream answered <status>" */
	const char *diag_post;
};

static const struct status_row status_rows[] = {
	{ 200, 200, C(2, 5), C(2, 4), 0, NULL, NULL },
	{ 202, 202, C(5, 3), C(5, 3), 1, "request pending, retry later",
	  "request pending, retry later" },
	{ 204, 204, C(4, 4), C(5, 2), 0, NULL,
	  "upstream answered 204 without a certificate or key" },
	{ 300, 399, C(5, 2), C(5, 2), 0, NULL, NULL }, /* never followed */
	{ 400, 400, C(4, 0), C(4, 0), 0, NULL, NULL },
	{ 401, 401, C(4, 1), C(4, 1), 0, NULL, NULL },
	{ 403, 403, C(4, 3), C(4, 3), 0, NULL, NULL },
	{ 404, 404, C(4, 4), C(4, 4), 0, NULL, NULL },
	{ 405, 405, C(4, 5), C(4, 5), 0, NULL, NULL },
	{ 406, 406, C(4, 6), C(4, 6), 0, NULL, NULL },
	{ 413, 413, C(4, 13), C(4, 13), 0, NULL, NULL },
	{ 415, 415, C(4, 15), C(4, 15), 0, NULL, NULL },
	{ 429, 429, C(4, 29), C(4, 29), 1, "upstream busy, too many requests",
	  "upstream busy, too many requests" },
	{ 400, 499, C(4, 0), C(4, 0), 0, NULL, NULL },
	{ 500, 500, C(5, 0), C(5, 0), 0, NULL, NULL },
	{ 501, 501, C(5, 1), C(5, 1), 0, NULL, NULL },
	{ 502, 502, C(5, 2), C(5, 2), 0, NULL, NULL },
	{ 503, 503, C(5, 3), C(5, 3), 1, "upstream unavailable",
	  "upstream unavailable" },
	{ 504, 504, C(5, 4), C(5, 4), 0, NULL, NULL },
	{ 500, 599, C(5, 0), C(5, 0), 0, NULL, NULL },
};

/* 1xx, other 2xx, nonsense: a bad gateway answer. */
static const struct status_row status_other = {
	0, 0, C(5, 2), C(5, 2), 0, NULL, NULL
};

static const struct status_row *status_row_of(long status)
{
	size_t i;

	for (i = 0; i < sizeof(status_rows) / sizeof(status_rows[0]); i++)
		if (status >= status_rows[i].lo && status <= status_rows[i].hi)
			return &status_rows[i];
	return &status_other;
}

uint8_t est_status_to_code(long status, enum est_method method)
{
	const struct status_row *r = status_row_of(status);

	return method == EST_POST ? r->on_post : r->on_get;
}

int est_status_has_max_age(long status)
{
	return status_row_of(status)->retry;
}

/* ------------------------------------------------------------------------
 * Retry-After (RFC 9110 §10.2.3): delta-seconds or HTTP-date. RFC 9110
 * §5.6.7 says a recipient MUST accept all three HTTP-date formats, so the
 * obsolete rfc850-date and asctime-date are accepted besides IMF-fixdate.
 * Format letters: %a day (3), %A day (full), %b month, %d 2DIGIT day,
 * %e day as SP DIGIT or 2DIGIT, %Y 4DIGIT, %y 2DIGIT, %H %M %S 2DIGIT.
 */
static const char *const date_formats[] = {
	"%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate */
	"%A, %d-%b-%y %H:%M:%S GMT", /* rfc850-date */
	"%a %b %e %H:%M:%S %Y",      /* asctime-date */
};

static const char *const day_names[] = {
	"Sunday", "Monday", "Tuesday", "Wednesday",
	"Thursday", "Friday", "Saturday",
};

static const char *const month_names[] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

struct text {
	const char *p, *end;
};

struct date_parts {
	int year, two_digit_year, mon, mday, hour, min, sec;
};

static int take_digits(struct text *t, size_t n, int *val)
{
	size_t i;

	if ((size_t)(t->end - t->p) < n)
		return -EINVAL;
	*val = 0;
	for (i = 0; i < n; i++) {
		if (t->p[i] < '0' || t->p[i] > '9')
			return -EINVAL;
		*val = *val * 10 + (t->p[i] - '0');
	}
	t->p += n;
	return 0;
}

/** Match one name of @p names (its first @p prefix characters, or the whole
 *  name when prefix is 0), case-sensitively (RFC 9110 §5.6.7). */
static int take_name(struct text *t, const char *const *names, size_t n,
		     size_t prefix, int *idx)
{
	size_t i, len;

	for (i = 0; i < n; i++) {
		len = prefix ? prefix : strlen(names[i]);
		if ((size_t)(t->end - t->p) >= len &&
		    memcmp(t->p, names[i], len) == 0) {
			t->p += len;
			*idx = (int)i;
			return 0;
		}
	}
	return -EINVAL;
}

static int take_day_sp(struct text *t, int *val)
{
	if (t->p < t->end && *t->p == ' ') {
		t->p++;
		return take_digits(t, 1, val);
	}
	return take_digits(t, 2, val);
}

static int take_field(struct text *t, char f, struct date_parts *d)
{
	int ignored;

	switch (f) {
	case 'a': return take_name(t, day_names, 7, 3, &ignored);
	case 'A': return take_name(t, day_names, 7, 0, &ignored);
	case 'b': return take_name(t, month_names, 12, 3, &d->mon);
	case 'd': return take_digits(t, 2, &d->mday);
	case 'e': return take_day_sp(t, &d->mday);
	case 'Y': return take_digits(t, 4, &d->year);
	case 'y': d->two_digit_year = 1; return take_digits(t, 2, &d->year);
	case 'H': return take_digits(t, 2, &d->hour);
	case 'M': return take_digits(t, 2, &d->min);
	case 'S': return take_digits(t, 2, &d->sec);
	default: return -EINVAL;
	}
}

static int match_format(const char *fmt, struct text t, struct date_parts *d)
{
	memset(d, 0, sizeof(*d));
	for (; *fmt; fmt++) {
		if (*fmt == '%') {
			if (take_field(&t, *++fmt, d))
				return -EINVAL;
		} else if (t.p < t.end && *t.p == *fmt) {
			t.p++;
		} else {
			return -EINVAL;
		}
	}
	return t.p == t.end ? 0 : -EINVAL;
}

static int days_in_month(int year, int mon)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30,
				      31, 31, 30, 31, 30, 31 };
	int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return days[mon] + (mon == 1 && leap);
}

/** RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the
 *  past century. */
static int full_year(int yy, time_t now)
{
	struct tm tm;
	int cur, year;

	if (!gmtime_r(&now, &tm))
		return 1900 + yy;
	cur = tm.tm_year + 1900;
	year = cur - cur % 100 + yy;
	if (year > cur + 50)
		year -= 100;
	return year;
}

/** Seconds since 1970-01-01 of a valid Gregorian date, in 64 bits: timegm()
 *  returns a 32-bit time_t on 32-bit ABIs without time64 (Debian 12 armhf),
 *  which cannot hold dates after 2038 (RFC 9110 §5.6.7 allows any 4-digit
 *  year). A leap second (:60) counts as the next second, as timegm does. */
static int64_t epoch_seconds(const struct date_parts *d)
{
	static const int before_month[12] = { 0, 31, 59, 90, 120, 151,
					      181, 212, 243, 273, 304, 334 };
	int64_t y = d->year, days;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	/* days from 0000-01-01 to the 1st of January of year y, minus that
	 * of 1970 (leap years before y: (y-1)/4 - (y-1)/100 + (y-1)/400) */
	days = 365 * y + (y + 3) / 4 - (y + 99) / 100 + (y + 399) / 400 - 719528;
	days += before_month[d->mon] + (d->mon > 1 && leap) + d->mday - 1;
	return ((days * 24 + d->hour) * 60 + d->min) * 60 + d->sec;
}

static int parse_http_date(struct text t, time_t now, int64_t *when)
{
	struct date_parts d;
	size_t i;

	for (i = 0; i < sizeof(date_formats) / sizeof(date_formats[0]); i++)
		if (match_format(date_formats[i], t, &d) == 0)
			break;
	if (i == sizeof(date_formats) / sizeof(date_formats[0]))
		return -EINVAL;
	if (d.two_digit_year)
		d.year = full_year(d.year, now);
	if (d.mday < 1 || d.mday > days_in_month(d.year, d.mon) ||
	    d.hour > 23 || d.min > 59 || d.sec > 60)
		return -EINVAL;
	*when = epoch_seconds(&d);
	return 0;
}

/** 1*DIGIT, saturating at UINT32_MAX. */
static int parse_delta(struct text t, uint32_t *secs)
{
	uint64_t v = 0;

	if (t.p == t.end)
		return -EINVAL;
	for (; t.p < t.end; t.p++) {
		if (*t.p < '0' || *t.p > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(*t.p - '0');
		if (v > UINT32_MAX)
			v = (uint64_t)UINT32_MAX + 1; /* stays saturated */
	}
	*secs = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
	return 0;
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

int est_retry_after_seconds(const char *v, time_t now, uint32_t *secs)
{
	struct text t;
	int64_t when;

	if (!v || !secs)
		return -EINVAL;
	t.p = v;
	t.end = v + strlen(v);
	while (t.p < t.end && is_ows(*t.p))
		t.p++;
	while (t.end > t.p && is_ows(t.end[-1]))
		t.end--;
	if (parse_delta(t, secs) == 0)
		return 0;
	if (parse_http_date(t, now, &when) != 0)
		return -EINVAL;
	if (when <= (int64_t)now)
		*secs = 0;
	else if (when - (int64_t)now > (int64_t)UINT32_MAX)
		*secs = UINT32_MAX; /* both fit in 64 bits: no overflow */
	else
		*secs = (uint32_t)(when - (int64_t)now);
	return 0;
}

/* ------------------------------------------------------------------------
 * CoAP answers.
 */
void est_coap_resp_free(struct est_coap_resp *r)
{
	if (!r)
		return;
	if (r->payload) /* a CF 62 answer holds a private key (G7) */
		explicit_bzero(r->payload, r->len);
	free(r->payload);
	memset(r, 0, sizeof(*r));
	r->cf = EST_CF_NONE;
}

/** A payload-less answer; on -ENOMEM paths too. */
static void resp_bare(struct est_coap_resp *out, uint8_t code)
{
	memset(out, 0, sizeof(*out));
	out->code = code;
	out->cf = EST_CF_NONE;
}

int est_coap_resp_error(struct est_coap_resp *out, uint8_t code,
			const char *diag)
{
	size_t len = diag ? strlen(diag) : 0;

	if (!out)
		return -EINVAL;
	resp_bare(out, code);
	if (len == 0)
		return 0;
	out->payload = malloc(len + 1); /* NUL kept for the log, not sent */
	if (!out->payload)
		return -ENOMEM;
	memcpy(out->payload, diag, len + 1);
	out->len = len;
	return 0;
}

/** Hand the malloc'd @p der over to @p out as a success answer. */
static int resp_give(struct est_coap_resp *out, uint8_t code, int cf,
		     uint8_t *der, size_t len)
{
	resp_bare(out, code);
	out->cf = cf;
	out->payload = der;
	out->len = len;
	return 0;
}

/* Transport errors (D, last two rows). */
struct up_err_row {
	enum est_upstream_err err;
	uint8_t code;
	const char *diag;
};

static const struct up_err_row up_err_rows[] = {
	{ EST_UP_CONNECT, C(5, 2), "upstream unreachable" },
	{ EST_UP_DNS, C(5, 2), "upstream name not resolved" },
	{ EST_UP_TLS, C(5, 2), "upstream TLS failure" },
	{ EST_UP_TIMEOUT, C(5, 4), "upstream timeout" },
	{ EST_UP_TOO_LARGE, C(5, 2), "upstream answer too large" },
	{ EST_UP_PROTOCOL, C(5, 2), "upstream protocol error" },
};

static int answer_transport(enum est_upstream_err err,
			    struct est_coap_resp *out)
{
	size_t i;

	for (i = 0; i < sizeof(up_err_rows) / sizeof(up_err_rows[0]); i++)
		if (up_err_rows[i].err == err)
			return est_coap_resp_error(out, up_err_rows[i].code,
						   up_err_rows[i].diag);
	return est_coap_resp_error(out, C(5, 2), "upstream failure");
}

uint32_t est_retry_max_age(const char *retry_after, time_t now,
			   const struct est_xlate_limits *lim)
{
	uint32_t s;

	if (!retry_after || est_retry_after_seconds(retry_after, now, &s) != 0)
		return lim->max_age_default;
	if (s < lim->max_age_min)
		s = lim->max_age_min;
	if (s > lim->max_age_max)
		s = lim->max_age_max;
	return s;
}

size_t est_printable(char *dst, size_t dstlen, const void *src, size_t n)
{
	const uint8_t *p = src;
	size_t i;

	if (dstlen == 0)
		return 0;
	if (n > dstlen - 1)
		n = dstlen - 1;
	for (i = 0; i < n; i++)
		dst[i] = (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"') ? (char)p[i] : '?';
	dst[n] = '\0';
	return n;
}

/** Any answer but 200 (D, D2): the row's code and diagnostic, and for
 *  a "retry" row the Max-Age. */
static int answer_status(const struct est_op_desc *op,
			 const struct est_http_resp *in,
			 const struct est_xlate_limits *lim,
			 struct est_coap_resp *out)
{
	const struct status_row *r = status_row_of(in->status);
	int post = op->method == EST_POST;
	const char *diag = post ? r->diag_post : r->diag_get;
	char text[48];
	int rc;

	if (!diag) {
		snprintf(text, sizeof(text), "upstream answered %ld", in->status);
		diag = text;
	}
	rc = est_coap_resp_error(out, post ? r->on_post : r->on_get, diag);
	if (r->retry) {
		out->has_max_age = 1;
		out->max_age = est_retry_max_age(in->retry_after, in->now, lim);
	}
	return rc;
}

/** Find the media type of a Content-Type value (@p type, @p len); -EINVAL
 *  when something other than parameters follows it. */
static int media_type(const char *ct, const char **type, size_t *len)
{
	const char *p = ct;

	while (is_ows(*p))
		p++;
	*type = p;
	*len = strcspn(p, "; \t");
	p += *len;
	while (is_ows(*p))
		p++;
	return (*p == '\0' || *p == ';') ? 0 : -EINVAL;
}

/** B6: media type compared case-insensitively, parameters ignored; a
 *  missing (or blank) Content-Type is tolerated. On a mismatch fills @p out
 *  and returns 1 (or -ENOMEM); 0 when the type is fine. */
static int check_content_type(const char *ct, const char *want,
			      struct est_coap_resp *out)
{
	char diag[64];
	const char *type;
	size_t len;
	int bad, rc;

	if (!ct)
		return 0;
	bad = media_type(ct, &type, &len);
	if (!bad && len == 0 && *type == '\0')
		return 0;
	if (!bad && len == strlen(want) && strncasecmp(type, want, len) == 0)
		return 0;
	if (bad || len == 0) {
		strcpy(diag, "upstream sent a malformed Content-Type");
	} else {
		memcpy(diag, "upstream sent ", 14);
		est_printable(diag + 14, sizeof(diag) - 14, type, len);
	}
	rc = est_coap_resp_error(out, C(5, 2), diag);
	return rc ? rc : 1;
}

static int copy_answer(const struct est_slice *s, uint8_t code, int cf,
		       struct est_coap_resp *out)
{
	uint8_t *p = malloc(s->len ? s->len : 1);

	if (!p) {
		resp_bare(out, C(5, 0));
		return -ENOMEM;
	}
	memcpy(p, s->ptr, s->len);
	return resp_give(out, code, cf, p, s->len);
}

/** Accept 287 (B4): one certificate out of the chain. */
static int answer_single(const struct est_op_desc *op,
			 const struct est_slice *certs, size_t n,
			 const uint8_t *csr, size_t csr_len,
			 struct est_coap_resp *out)
{
	struct est_slice want, pick;
	const struct est_slice *wantp = NULL;

	if (op_rules[op->op].match_csr) {
		if (!csr || est_csr_spki(csr, csr_len, &want) != 0)
			return est_coap_resp_error(out, C(4, 0),
						   "CSR unreadable");
		wantp = &want;
	}
	if (est_pick_single_cert(certs, n, wantp, &pick) != 0)
		return est_coap_resp_error(out, C(4, 6),
					   "no single certificate");
	return copy_answer(&pick, op->success, EST_CF_PKIX_CERT, out);
}

/** A certs-only PKCS#7 answer (crts, sen, sren). Takes @p der. */
static int answer_certs(const struct est_op_desc *op, int resp_cf,
			const uint8_t *csr, size_t csr_len, uint8_t *der,
			size_t len, struct est_coap_resp *out)
{
	struct est_slice certs[EST_PKCS7_MAX_CERTS];
	size_t n = 0;
	int rc;

	rc = est_pkcs7_certs(der, len, certs, EST_PKCS7_MAX_CERTS, &n);
	if (rc == 0 && n == 0)
		rc = est_coap_resp_error(out, C(5, 2),
					 "upstream sent no certificate");
	else if (rc == -E2BIG)
		rc = est_coap_resp_error(out, C(5, 2),
					 "upstream sent too many certificates");
	else if (rc != 0)
		rc = est_coap_resp_error(out, C(5, 2),
					 "upstream sent a malformed PKCS#7");
	else if (resp_cf == EST_CF_PKIX_CERT)
		rc = answer_single(op, certs, n, csr, csr_len, out);
	else
		return resp_give(out, op->success, EST_CF_PKCS7_CERTS, der,
				 len);
	free(der);
	return rc;
}

/** A csrattrs answer (att): one DER SEQUENCE, CF 285. Takes @p der. */
static int answer_attrs(const struct est_op_desc *op, uint8_t *der,
			size_t len, struct est_coap_resp *out)
{
	if (!est_der_is_single_sequence(der, len)) {
		free(der);
		return est_coap_resp_error(out, C(5, 2),
					   "upstream sent malformed csrattrs");
	}
	return resp_give(out, op->success, EST_CF_CSRATTRS, der, len);
}

static int answer_keygen(const struct est_op_desc *op, int resp_cf,
			 const uint8_t *csr, size_t csr_len,
			 const struct est_http_resp *in,
			 struct est_coap_resp *out);

/** An HTTP 200 (B4, B5, B6). */
static int answer_ok(const struct est_op_desc *op, int resp_cf,
		     const uint8_t *csr, size_t csr_len,
		     const struct est_http_resp *in, struct est_coap_resp *out)
{
	const struct op_rules *r = &op_rules[op->op];
	uint8_t *der = NULL;
	size_t len = 0;
	int rc, binary = 0;

	if (r->kind == BODY_KEYGEN) /* F */
		return answer_keygen(op, resp_cf, csr, csr_len, in, out);
	if (!accept_ok(r, resp_cf))
		return est_coap_resp_error(out, C(4, 6), r->accept_diag);
	rc = check_content_type(in->content_type, r->up_type, out);
	if (rc)
		return rc < 0 ? rc : 0;
	if (!in->body || in->body_len == 0)
		return est_coap_resp_error(out, C(5, 2),
					   "upstream sent an empty body");
	rc = est_body_to_der(in->body, in->body_len, &der, &len, &binary);
	if (rc == -ENOMEM) {
		resp_bare(out, C(5, 0));
		return rc;
	}
	if (rc)
		return est_coap_resp_error(out, C(5, 2),
					   "upstream sent a malformed body");
	if (r->kind == BODY_ATTRS)
		rc = answer_attrs(op, der, len, out);
	else
		rc = answer_certs(op, resp_cf, csr, csr_len, der, len, out);
	if (binary)
		out->note = "binary DER from upstream"; /* B5 */
	return rc;
}

static const struct est_xlate_limits default_limits = { 60, 1, 86400 };

int est_translate_response(const struct est_op_desc *op, int resp_cf,
			   const uint8_t *csr, size_t csr_len,
			   const struct est_http_resp *in,
			   const struct est_xlate_limits *lim,
			   struct est_coap_resp *out)
{
	if (!out)
		return -EINVAL;
	if (!lim)
		lim = &default_limits;
	if (!op || !in || (unsigned)op->op >= EST_OP_COUNT)
		return est_coap_resp_error(out, C(5, 0), "internal error");
	if (in->err != EST_UP_OK)
		return answer_transport(in->err, out);
	if (in->status != 200)
		return answer_status(op, in, lim, out);
	return answer_ok(op, resp_cf, csr, csr_len, in, out);
}

/* ------------------------------------------------------------------------
 * Accept 287 selection (B4).
 */
static int slice_eq(const struct est_slice *a, const struct est_slice *b)
{
	return a->len == b->len &&
	       (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

static int cert_has_spki(const struct est_slice *cert,
			 const struct est_slice *want)
{
	struct est_slice spki;

	return est_cert_spki(cert->ptr, cert->len, &spki) == 0 &&
	       slice_eq(&spki, want);
}

static int cert_self_signed(const struct est_slice *cert)
{
	struct est_slice issuer, subject;

	return est_cert_names(cert->ptr, cert->len, &issuer, &subject) == 0 &&
	       slice_eq(&issuer, &subject);
}

int est_pick_single_cert(const struct est_slice *certs, size_t n,
			 const struct est_slice *want_spki,
			 struct est_slice *out)
{
	size_t i, hits = 0, at = 0;
	int hit;

	if (!certs || !out || n == 0)
		return -ENOENT;
	if (!want_spki && n == 1) {
		*out = certs[0];
		return 0;
	}
	for (i = 0; i < n; i++) {
		hit = want_spki ? cert_has_spki(&certs[i], want_spki)
				: cert_self_signed(&certs[i]);
		if (hit) {
			hits++;
			at = i;
		}
	}
	if (hits != 1)
		return -ENOENT;
	*out = certs[at];
	return 0;
}

/* ------------------------------------------------------------------------
 * Discovery (A3, A4; RFC 6690 §4.1; RFC 9148 §4.1).
 */

/** Does one value in the list @p vals (space-separated, quotes ignored)
 *  equal @p v, or start with it when @p v ends in '*'? */
static int attr_matches(const char *vals, const uint8_t *v, size_t vlen)
{
	int prefix = vlen > 0 && v[vlen - 1] == '*';
	size_t tl;

	if (prefix)
		vlen--;
	while (*vals) {
		vals += strspn(vals, "\" ");
		tl = strcspn(vals, "\" ");
		if (tl == 0)
			break;
		if ((prefix ? tl >= vlen : tl == vlen) &&
		    (vlen == 0 || memcmp(vals, v, vlen) == 0))
			return 1;
		vals += tl;
	}
	return 0;
}

/** Apply every "rt=" / "ct=" query to a link; other queries are ignored
 *  (A4 DECIDED). A missing attribute fails its filter. */
static int link_passes(const char *rt, const char *ct,
		       const struct est_slice *q, size_t nq)
{
	const char *vals;
	size_t i;

	for (i = 0; i < nq; i++) {
		if (!q[i].ptr || q[i].len < 3 || q[i].ptr[2] != '=')
			continue;
		if (memcmp(q[i].ptr, "rt", 2) == 0)
			vals = rt;
		else if (memcmp(q[i].ptr, "ct", 2) == 0)
			vals = ct;
		else
			continue;
		if (!vals || !attr_matches(vals, q[i].ptr + 3, q[i].len - 3))
			return 0;
	}
	return 1;
}

int est_link_passes(const char *rt, const char *ct,
		    const struct est_slice *queries, size_t nq)
{
	return link_passes(rt, ct, queries, nq);
}

/** A growing link-format text in a buffer sized up front. */
struct link_buf {
	char *p;
	size_t len, cap;
};

static void link_add(struct link_buf *b, const char *root, size_t rlen,
		     const char *shortn, const char *rt, const char *ct)
{
	int n;

	n = snprintf(b->p + b->len, b->cap - b->len, "%s<%.*s%s%s>;rt=\"%s\"%s%s",
		     b->len ? "," : "", (int)rlen, root, shortn ? "/" : "",
		     shortn ? shortn : "", rt, ct ? ";ct=" : "", ct ? ct : "");
	if (n > 0 && (size_t)n < b->cap - b->len)
		b->len += (size_t)n;
}

/* cBRSKI resources (constrained-voucher App. "pledge discovery on the
 * registrar"; H1): path, rt, ct as written in link format. */
static const struct {
	const char *path, *rt, *ct;
} brski_links[] = {
	{ "/.well-known/brski", "brski", NULL },
	{ "/.well-known/brski/rv", "brski.rv", "836" },
	{ "/.well-known/brski/vs", "brski.vs", "\"50 60\"" },
	{ "/.well-known/brski/es", "brski.es", "\"50 60\"" },
};

/* The registrar's JPY port (draft-ietf-anima-constrained-join-proxy-20,
 * discovery of the registrar by a join proxy; H6): "<jpy://[addr]:port>;
 * rt=brski.rjp", explicit port, root path, the rt value as the draft
 * writes it. */
static void jpy_link_add(struct link_buf *b, const char *uri)
{
	int n = snprintf(b->p + b->len, b->cap - b->len, "%s<%s>;rt=brski.rjp",
			 b->len ? "," : "", uri);

	if (n > 0 && (size_t)n < b->cap - b->len)
		b->len += (size_t)n;
}

/* An rt= query is present and @p rt passes all filters: the JPY link is
 * for join proxies that ask for it, not part of a device's listing (H6
 * DECIDED: other discovery answers stay as they were). */
static int rt_asked(const char *rt, const struct est_slice *q, size_t nq)
{
	int asked = 0;

	for (size_t i = 0; i < nq; i++)
		if (q[i].ptr && q[i].len >= 3 && memcmp(q[i].ptr, "rt=", 3) == 0)
			asked = 1;
	return asked && link_passes(rt, NULL, q, nq);
}

int est_link_format(const struct est_link_opts *o,
		    const struct est_slice *queries, size_t nq, char **out,
		    size_t *outlen)
{
	const char *root;
	struct link_buf b = { 0 };
	size_t rlen, i;

	if (!o || !out || !outlen || (nq && !queries))
		return -EINVAL;
	root = o->root ? o->root : "/.well-known/est";
	rlen = strlen(root);
	while (rlen > 0 && root[rlen - 1] == '/')
		rlen--;
	b.cap = (EST_OP_COUNT + 1) * (rlen + 64) + 1 + 4 * 64 +
		(o->jpy_uri ? strlen(o->jpy_uri) + 32 : 0);
	b.p = malloc(b.cap);
	if (!b.p)
		return -ENOMEM;
	b.p[0] = '\0';
	if (o->with_root_link && link_passes("ace.est", NULL, queries, nq))
		link_add(&b, rlen ? root : "/", rlen ? rlen : 1, NULL,
			 "ace.est", NULL);
	for (i = 0; i < EST_OP_COUNT; i++) {
		const struct est_op_desc *d = &op_table[i];

		if ((o->ops_enabled & (1u << i)) &&
		    link_passes(d->rt, d->link_ct, queries, nq))
			link_add(&b, root, rlen, d->short_name, d->rt,
				 d->link_ct);
	}
	for (i = 0; (o->ops_enabled & EST_LINKS_BRSKI) && i < sizeof(brski_links) / sizeof(brski_links[0]); i++)
		if (link_passes(brski_links[i].rt, brski_links[i].ct, queries, nq))
			link_add(&b, brski_links[i].path, strlen(brski_links[i].path),
				 NULL, brski_links[i].rt, brski_links[i].ct);
	if (o->jpy_uri && rt_asked("brski.rjp", queries, nq))
		jpy_link_add(&b, o->jpy_uri);
	*out = b.p;
	*outlen = b.len;
	return 0;
}

/* ------------------------------------------------------------------------
 * Server-side key generation (F, B6; RFC 9148 4.8, 5; RFC 7030 4.4.2).
 * An upstream /serverkeygen answer is multipart/mixed with a key part and a
 * certificate part in either order; the device gets application/
 * multipart-core [key CF, key, cert CF, cert]. Buffers that held a key are
 * zeroed before they are freed (G7).
 */

/** What a body part carries. */
enum kg_role { KG_IGNORE, KG_KEY, KG_ENC_KEY, KG_CERTS, KG_BARE_P7, KG_BAD };

/** The parts chosen from a serverkeygen answer. */
struct kg_pick {
	const struct est_mp_part *key, *certs;
	int key_cf; /* 284 or 280 */
};

/** A 5.02 for a malformed serverkeygen answer; the static @p why also goes
 *  to the log line (D1: the device and the operator see the reason). */
static int kg_fail(struct est_coap_resp *out, const char *why)
{
	int rc = est_coap_resp_error(out, C(5, 2), why);

	out->note = why;
	return rc;
}

static void free_secret(uint8_t *p, size_t len)
{
	if (p)
		explicit_bzero(p, len);
	free(p);
}

static enum kg_role kg_role_of(const struct est_mp_part *p)
{
	char st[32];
	size_t n;
	int rc;

	if (est_mime_is(&p->type, "application/pkcs8"))
		return KG_KEY;
	if (!est_mime_is(&p->type, "application/pkcs7-mime"))
		return KG_IGNORE; /* unknown parts are skipped */
	rc = est_mime_param(&p->params, "smime-type", st, sizeof(st), &n);
	if (rc == -ENOENT)
		return KG_BARE_P7;
	if (rc == -ENOSPC)
		return KG_IGNORE;
	if (rc)
		return KG_BAD;
	if (strcasecmp(st, "server-generated-key") == 0)
		return KG_ENC_KEY;
	if (strcasecmp(st, "certs-only") == 0)
		return KG_CERTS;
	return KG_IGNORE;
}

/** A bare application/pkcs7-mime (B6) fills whichever role the typed
 *  parts left open: the certificates first, then an encrypted key. Two
 *  bare parts with neither role known are ambiguous. */
static const char *kg_place_bare(struct kg_pick *k,
				 const struct est_mp_part **bare, size_t nbare)
{
	if (nbare > 1 && !k->certs && !k->key)
		return "upstream multipart parts are ambiguous (bare pkcs7-mime)";
	for (size_t i = 0; i < nbare; i++) {
		if (!k->certs) {
			k->certs = bare[i];
		} else if (!k->key) {
			k->key = bare[i];
			k->key_cf = EST_CF_PKCS7_SKG;
		} else {
			return "upstream multipart has too many pkcs7-mime parts";
		}
	}
	return NULL;
}

/** Choose the key and the certificate part; NULL or a diagnostic. */
static const char *kg_assign(const struct est_mp_part *parts, size_t n,
			     struct kg_pick *k)
{
	const struct est_mp_part *bare[EST_MP_MAX_PARTS];
	size_t nbare = 0;
	const char *why;

	memset(k, 0, sizeof(*k));
	for (size_t i = 0; i < n; i++) {
		enum kg_role role = kg_role_of(&parts[i]);

		switch (role) {
		case KG_KEY:
		case KG_ENC_KEY:
			if (k->key)
				return "upstream multipart has two key parts";
			k->key = &parts[i];
			k->key_cf = role == KG_KEY ? EST_CF_PKCS8 : EST_CF_PKCS7_SKG;
			break;
		case KG_CERTS:
			if (k->certs)
				return "upstream multipart has two certificate parts";
			k->certs = &parts[i];
			break;
		case KG_BARE_P7:
			bare[nbare++] = &parts[i];
			break;
		case KG_BAD:
			return "upstream multipart part has malformed parameters";
		case KG_IGNORE:
			break;
		}
	}
	why = kg_place_bare(k, bare, nbare);
	if (why)
		return why;
	if (!k->key)
		return "upstream multipart has no key part";
	if (!k->certs)
		return "upstream multipart has no certificate part";
	return NULL;
}

/** A part's content as DER: Base64 (RFC 8951) or, tolerated, binary. The
 *  Content-Transfer-Encoding is not relied on (B5) but an encoding
 *  nobody uses for DER is refused. */
static int kg_part_der(const struct est_mp_part *p, uint8_t **der,
		       size_t *len, int *binary)
{
	static const char *const ok[] = { "base64", "binary", "7bit", "8bit" };
	size_t i;

	if (p->cte.len) {
		for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
			if (p->cte.len == strlen(ok[i]) &&
			    strncasecmp((const char *)p->cte.ptr, ok[i],
					p->cte.len) == 0)
				break;
		if (i == sizeof(ok) / sizeof(ok[0]))
			return -EINVAL;
	}
	if (p->body.len == 0)
		return -EINVAL;
	return est_body_to_der(p->body.ptr, p->body.len, der, len, binary);
}

/** The one certificate for /skc out of the CA's PKCS#7: the only one, or
 *  the only one that is neither self-signed nor the issuer of another. */
static int kg_pick_leaf(const struct est_slice *certs, size_t n,
			struct est_slice *out)
{
	struct est_slice iss[EST_PKCS7_MAX_CERTS], sub[EST_PKCS7_MAX_CERTS];
	size_t hits = 0, at = 0, i, j;

	if (n == 1) {
		*out = certs[0];
		return 0;
	}
	for (i = 0; i < n; i++)
		if (est_cert_names(certs[i].ptr, certs[i].len, &iss[i], &sub[i]))
			return -EINVAL;
	for (i = 0; i < n; i++) {
		int leaf = !slice_eq(&iss[i], &sub[i]);
		for (j = 0; j < n && leaf; j++)
			if (j != i && slice_eq(&sub[i], &iss[j]))
				leaf = 0;
		if (leaf) {
			hits++;
			at = i;
		}
	}
	if (hits != 1)
		return -ENOENT;
	*out = certs[at];
	return 0;
}

/** The certificate representation: the PKCS#7 itself (281) for skg, the
 *  single certificate (287) for skc. Points into @p p7. NULL or a diag. */
static const char *kg_cert_item(const struct est_op_desc *op,
				const uint8_t *p7, size_t len,
				struct est_mpcore_item *item)
{
	struct est_slice certs[EST_PKCS7_MAX_CERTS];
	size_t n = 0;
	int rc = est_pkcs7_certs(p7, len, certs, EST_PKCS7_MAX_CERTS, &n);

	if (rc == -E2BIG)
		return "upstream sent too many certificates";
	if (rc)
		return "upstream certificate part is not a certs-only PKCS#7";
	if (n == 0)
		return "upstream sent no certificate";
	if (op->op == EST_OP_SKG) {
		item->cf = EST_CF_PKCS7_CERTS;
		item->data.ptr = p7;
		item->data.len = len;
		return NULL;
	}
	if (kg_pick_leaf(certs, n, &item->data) != 0)
		return "upstream sent no single end-entity certificate";
	item->cf = EST_CF_PKIX_CERT;
	return NULL;
}

static const char *const key_form_note[] = {
	[EST_KEY_PKCS8] = NULL,
	[EST_KEY_SEC1] = "key part was a bare SEC1 key, wrapped into PKCS#8",
	[EST_KEY_PKCS1] = "key part was a bare PKCS#1 key, wrapped into PKCS#8",
};

/** The key representation from a decoded key part: PKCS#8 (wrapped when
 *  it came as SEC1 or PKCS#1, B6) or the CMS as is (F3).
 *  Takes @p der; *key is malloc'd. NULL or a diag. */
static const char *kg_key_bytes(int cf, uint8_t *der, size_t len,
				uint8_t **key, size_t *klen,
				const char **note, int *nomem)
{
	enum est_key_form form = EST_KEY_PKCS8;
	int rc;

	if (cf == EST_CF_PKCS7_SKG) {
		if (est_cms_key_check(der, len) != 0) {
			free_secret(der, len);
			return "upstream encrypted key part is not CMS";
		}
		*key = der;
		*klen = len;
		return NULL;
	}
	rc = est_privkey_to_pkcs8(der, len, key, klen, &form);
	free_secret(der, len);
	if (rc == -ENOMEM)
		*nomem = 1;
	if (rc)
		return "upstream key part is not a private key";
	*note = key_form_note[form];
	return NULL;
}

/** Build the CF 62 answer [kcf, key, cert cf, cert] (F3). */
static int kg_answer(const struct est_op_desc *op, unsigned kcf,
		     const uint8_t *key, size_t klen,
		     const struct est_mpcore_item *cert,
		     struct est_coap_resp *out)
{
	struct est_mpcore_item items[2] = { { kcf, { key, klen } }, *cert };
	uint8_t *cbor;
	size_t len;
	int rc = est_mpcore_encode(items, 2, &cbor, &len);

	if (rc == -ENOMEM) {
		resp_bare(out, C(5, 0));
		return rc;
	}
	if (rc)
		return est_coap_resp_error(out, C(5, 0), "cannot encode answer");
	return resp_give(out, op->success, EST_CF_MULTIPART_CORE, cbor, len);
}

/** The boundary of a multipart/mixed Content-Type; NULL or a diag. */
static const char *kg_boundary(const char *ct, char *b, size_t bsize,
			       size_t *blen)
{
	struct est_slice type, params;

	if (!ct || est_mime_type(ct, strlen(ct), &type, &params) != 0 ||
	    est_mime_param(&params, "boundary", b, bsize, blen) != 0 ||
	    !est_mp_boundary_ok(b, *blen))
		return "upstream multipart without a valid boundary";
	return NULL;
}

/** Decode both chosen parts and answer. */
static int kg_build(const struct est_op_desc *op, const struct kg_pick *k,
		    const uint8_t *csr, size_t csr_len,
		    struct est_coap_resp *out)
{
	struct est_mpcore_item cert;
	uint8_t *kder = NULL, *key = NULL, *p7 = NULL;
	size_t klen = 0, keylen = 0, p7len = 0;
	const char *why = NULL, *note = NULL;
	int bin_k = 0, bin_c = 0, nomem = 0, rc;

	rc = kg_part_der(k->key, &kder, &klen, &bin_k);
	if (rc)
		why = "upstream key part is not Base64 DER";
	else
		why = kg_key_bytes(k->key_cf, kder, klen, &key, &keylen, &note,
				   &nomem);
	if (!why && kg_part_der(k->certs, &p7, &p7len, &bin_c) != 0)
		why = "upstream certificate part is not Base64 DER";
	if (!why)
		why = kg_cert_item(op, p7, p7len, &cert);
	if (rc == -ENOMEM || nomem) {
		resp_bare(out, C(5, 0));
		rc = -ENOMEM;
	} else if (why) {
		rc = kg_fail(out, why);
	} else {
		rc = kg_answer(op, (unsigned)k->key_cf, key, keylen, &cert, out);
		if (!note && k->key_cf == EST_CF_PKCS8 && csr &&
		    est_csr_wants_encrypted_key(csr, csr_len) == 1)
			note = "CSR asked for an encrypted key, upstream sent it in clear";
		if (!note && (bin_k || bin_c))
			note = "binary DER from upstream"; /* B5 */
		out->note = note;
	}
	free_secret(key, keylen);
	free(p7);
	return rc;
}

static int answer_keygen(const struct est_op_desc *op, int resp_cf,
			 const uint8_t *csr, size_t csr_len,
			 const struct est_http_resp *in,
			 struct est_coap_resp *out)
{
	const struct op_rules *r = &op_rules[op->op];
	struct est_mp_part parts[EST_MP_MAX_PARTS];
	char b[EST_MP_BOUNDARY_MAX + 1], diag[96];
	const char *why;
	struct kg_pick k;
	size_t blen = 0, n = 0;
	int rc;

	if (!accept_ok(r, resp_cf))
		return est_coap_resp_error(out, C(4, 6), r->accept_diag);
	rc = check_content_type(in->content_type, r->up_type, out);
	if (rc)
		return rc < 0 ? rc : 0;
	why = kg_boundary(in->content_type, b, sizeof(b), &blen);
	if (why)
		return kg_fail(out, why);
	if (!in->body || est_multipart_parse(in->body, in->body_len, b, blen,
					     parts, EST_MP_MAX_PARTS, &n,
					     &why) != 0) {
		why = why ? why : "multipart is empty";
		snprintf(diag, sizeof(diag), "upstream %s", why);
		rc = est_coap_resp_error(out, C(5, 2), diag);
		out->note = why;
		return rc;
	}
	why = kg_assign(parts, n, &k);
	if (why)
		return kg_fail(out, why);
	return kg_build(op, &k, csr, csr_len, out);
}

int est_translate_keygen_enroll(const struct est_op_desc *op, int resp_cf,
				const uint8_t *key, size_t key_len,
				const uint8_t *csr, size_t csr_len,
				const struct est_http_resp *in,
				const struct est_xlate_limits *lim,
				struct est_coap_resp *out)
{
	struct est_coap_resp enr;
	struct est_mpcore_item cert;
	int rc, cf;

	if (!out)
		return -EINVAL;
	if (!op || (op->op != EST_OP_SKG && op->op != EST_OP_SKC) || !key ||
	    !key_len || !in)
		return est_coap_resp_error(out, C(5, 0), "internal error");
	if (!accept_ok(&op_rules[op->op], resp_cf))
		return est_coap_resp_error(out, C(4, 6),
					   op_rules[op->op].accept_diag);
	/* The /simpleenroll answer for the CSR estgw signed: 281, or 287
	 * picked by the generated key (B4). */
	cf = op->op == EST_OP_SKG ? EST_CF_PKCS7_CERTS : EST_CF_PKIX_CERT;
	rc = est_translate_response(est_op_desc(EST_OP_SEN), cf, csr, csr_len,
				    in, lim, &enr);
	if (rc == -ENOMEM) {
		resp_bare(out, C(5, 0));
		return rc;
	}
	if (rc)
		return est_coap_resp_error(out, C(5, 0), "internal error");
	if (EST_CODE_CLASS(enr.code) != 2 || enr.cf != cf) {
		if (EST_CODE_CLASS(enr.code) == 2 || enr.code == C(4, 6)) {
			est_coap_resp_free(&enr); /* no certificate matches */
			return kg_fail(out, "upstream sent no certificate for the "
					    "generated key");
		}
		*out = enr; /* the error answer as D maps it */
		return 0;
	}
	cert.cf = (unsigned)cf;
	cert.data.ptr = enr.payload;
	cert.data.len = enr.len;
	rc = kg_answer(op, EST_CF_PKCS8, key, key_len, &cert, out);
	out->note = enr.note;
	est_coap_resp_free(&enr);
	return rc;
}
