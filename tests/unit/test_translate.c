/* test_translate.c - the translation core, one test per table row.
 * Requirement IDs (docs/conformance.md) are in the test names. Certificates
 * and PKCS#7 bundles come from mk_translate_fixtures.sh (openssl CLI at
 * build time).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "estgw/translate.h"
#include "translate_fixtures.h"

#define C(c, d) EST_CODE(c, d)
#define S(lit) { (const uint8_t *)(lit), sizeof(lit) - 1 }
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ A1, C */

static void check_op(enum est_op op, const char *shortn, const char *http,
		     enum est_method m, const char *rt, const char *ct,
		     uint8_t success)
{
	const struct est_op_desc *d = est_op_desc(op);

	assert_non_null(d);
	assert_int_equal(d->op, op);
	assert_string_equal(d->short_name, shortn);
	assert_string_equal(d->http_name, http);
	assert_int_equal(d->method, m);
	assert_string_equal(d->rt, rt);
	assert_string_equal(d->link_ct, ct);
	assert_int_equal(d->success, success);
	assert_ptr_equal(est_op_lookup(shortn, strlen(shortn)), d);
}

static void test_C_op_crts(void **st)
{
	check_op(EST_OP_CRTS, "crts", "cacerts", EST_GET, "ace.est.crts",
		 "\"281 287\"", C(2, 5));
}

static void test_C_op_sen(void **st)
{
	check_op(EST_OP_SEN, "sen", "simpleenroll", EST_POST, "ace.est.sen",
		 "\"281 287\"", C(2, 4));
}

static void test_C_op_sren(void **st)
{
	check_op(EST_OP_SREN, "sren", "simplereenroll", EST_POST,
		 "ace.est.sren", "\"281 287\"", C(2, 4));
}

static void test_C_op_att(void **st)
{
	check_op(EST_OP_ATT, "att", "csrattrs", EST_GET, "ace.est.att", "285",
		 C(2, 5));
}

static void test_C_op_skg(void **st)
{
	check_op(EST_OP_SKG, "skg", "serverkeygen", EST_POST, "ace.est.skg",
		 "62", C(2, 4));
}

static void test_C_op_skc(void **st)
{
	check_op(EST_OP_SKC, "skc", "serverkeygen", EST_POST, "ace.est.skc",
		 "62", C(2, 4));
}

static void test_A1_op_lookup_unknown(void **st)
{
	assert_null(est_op_lookup("crt", 3));
	assert_null(est_op_lookup("crtsx", 5));
	assert_null(est_op_lookup("CRTS", 4));
	assert_null(est_op_lookup("", 0));
	assert_null(est_op_lookup(NULL, 0));
	assert_null(est_op_desc(EST_OP_COUNT));
}

/* ------------------------------------------------------------ A1, A2 route */

static const char *const roots[] = { "/.well-known/est", "/est" };

static int route(const char *const *segs, size_t n, struct est_route *r)
{
	struct est_slice s[8];
	size_t i;

	for (i = 0; i < n; i++) {
		s[i].ptr = (const uint8_t *)segs[i];
		s[i].len = strlen(segs[i]);
	}
	return est_route_path(s, n, roots, N(roots), r);
}

static void test_A1_route_default_root(void **st)
{
	const char *p[] = { ".well-known", "est", "crts" };
	struct est_route r;

	assert_int_equal(route(p, 3, &r), 0);
	assert_int_equal(r.op->op, EST_OP_CRTS);
	assert_string_equal(r.label, "");
	assert_int_equal(r.root_index, 0);
}

static void test_A1_route_extra_root(void **st)
{
	const char *p[] = { "est", "sen" };
	struct est_route r;

	assert_int_equal(route(p, 2, &r), 0);
	assert_int_equal(r.op->op, EST_OP_SEN);
	assert_string_equal(r.label, "");
	assert_int_equal(r.root_index, 1);
}

static void test_A1_route_root_trailing_slash(void **st)
{
	const char *const rs[] = { "/est/" };
	struct est_slice s[] = { S("est"), S("att") };
	struct est_route r;

	assert_int_equal(est_route_path(s, 2, rs, 1, &r), 0);
	assert_int_equal(r.op->op, EST_OP_ATT);
}

static void test_A2_route_label(void **st)
{
	const char *p[] = { ".well-known", "est", "Profile-1.x_~", "sren" };
	struct est_route r;

	assert_int_equal(route(p, 4, &r), 0);
	assert_int_equal(r.op->op, EST_OP_SREN);
	assert_string_equal(r.label, "Profile-1.x_~");
	assert_int_equal(r.root_index, 0);
}

static void test_A2_route_label_extra_root(void **st)
{
	const char *p[] = { "est", "iot", "skc" };
	struct est_route r;

	assert_int_equal(route(p, 3, &r), 0);
	assert_int_equal(r.op->op, EST_OP_SKC);
	assert_string_equal(r.label, "iot");
	assert_int_equal(r.root_index, 1);
}

static void test_A2_route_label_bad_chars(void **st)
{
	static const char *const bad[] = { "a b", "a/b", "a%2F", "\xc3\xa4",
					   "a?b", "", ".", ".." };
	struct est_route r;
	size_t i;

	for (i = 0; i < N(bad); i++) {
		const char *p[] = { "est", bad[i], "crts" };

		assert_int_equal(route(p, 3, &r), -ENOENT);
		assert_null(r.op);
	}
}

static void test_A2_route_label_is_short_name(void **st)
{
	const char *p[] = { "est", "crts", "sen" };
	struct est_route r;

	assert_int_equal(route(p, 3, &r), -ENOENT);
}

static void test_A2_route_label_too_long(void **st)
{
	char label[EST_LABEL_MAX + 2];
	const char *p[] = { "est", label, "crts" };
	struct est_route r;

	memset(label, 'a', sizeof(label) - 1);
	label[EST_LABEL_MAX] = '\0';
	assert_int_equal(route(p, 3, &r), 0);
	assert_int_equal(strlen(r.label), EST_LABEL_MAX);
	label[EST_LABEL_MAX] = 'a';
	label[EST_LABEL_MAX + 1] = '\0';
	assert_int_equal(route(p, 3, &r), -ENOENT);
}

static void test_A2_route_extra_segments(void **st)
{
	const char *p1[] = { "est", "a", "b", "crts" };
	const char *p2[] = { "est", "crts", "x" };
	const char *p3[] = { "est", "crts", "" };
	const char *p4[] = { "est" };
	const char *p5[] = { ".well-known", "est", "a", "b", "sen" };
	struct est_route r;

	assert_int_equal(route(p1, 4, &r), -ENOENT);
	assert_int_equal(route(p2, 3, &r), -ENOENT);
	assert_int_equal(route(p3, 3, &r), -ENOENT);
	assert_int_equal(route(p4, 1, &r), -ENOENT);
	assert_int_equal(route(p5, 5, &r), -ENOENT);
	assert_int_equal(route(NULL, 0, &r), -ENOENT);
}

static void test_A1_route_unknown_short_name(void **st)
{
	const char *p1[] = { "est", "crt" };
	const char *p2[] = { ".well-known", "est", "lbl", "cacerts" };
	const char *p3[] = { "other", "crts" };
	struct est_route r;

	assert_int_equal(route(p1, 2, &r), -ENOENT);
	assert_int_equal(route(p2, 4, &r), -ENOENT);
	assert_int_equal(route(p3, 2, &r), -ENOENT);
}

/* --------------------------------------------------------- A6, B2, B3 check */

static int check(enum est_op op, enum est_method m, int cf, int accept,
		 struct est_verdict *v)
{
	struct est_coap_req req = { m, cf, accept };

	return est_check_request(est_op_desc(op), &req, v);
}

static void expect_reject(enum est_op op, enum est_method m, int cf,
			  int accept, uint8_t code)
{
	struct est_verdict v;

	assert_int_equal(check(op, m, cf, accept, &v), -EINVAL);
	assert_int_equal(v.code, code);
	assert_non_null(v.diag);
	assert_true(strlen(v.diag) > 0);
}

static void expect_accept(enum est_op op, enum est_method m, int cf,
			  int accept, int resp_cf)
{
	struct est_verdict v;

	assert_int_equal(check(op, m, cf, accept, &v), 0);
	assert_int_equal(v.code, 0);
	assert_int_equal(v.resp_cf, resp_cf);
}

static void test_A6_crts_post_4_05(void **st)
{
	expect_reject(EST_OP_CRTS, EST_POST, EST_CF_PKCS10, EST_CF_NONE, C(4, 5));
	expect_reject(EST_OP_CRTS, EST_PUT, EST_CF_NONE, EST_CF_NONE, C(4, 5));
}

static void test_A6_att_delete_4_05(void **st)
{
	expect_reject(EST_OP_ATT, EST_DELETE, EST_CF_NONE, EST_CF_NONE, C(4, 5));
}

static void test_A6_sen_get_4_05(void **st)
{
	expect_reject(EST_OP_SEN, EST_GET, EST_CF_NONE, EST_CF_NONE, C(4, 5));
	expect_reject(EST_OP_SREN, EST_PUT, EST_CF_PKCS10, EST_CF_NONE, C(4, 5));
	expect_reject(EST_OP_SKG, EST_GET, EST_CF_NONE, EST_CF_NONE, C(4, 5));
	expect_reject(EST_OP_SKC, EST_GET, EST_CF_NONE, EST_CF_NONE, C(4, 5));
}

static void test_B2_sen_cf_missing_4_15(void **st)
{
	expect_reject(EST_OP_SEN, EST_POST, EST_CF_NONE, EST_CF_NONE, C(4, 15));
	expect_reject(EST_OP_SKG, EST_POST, EST_CF_NONE, EST_CF_NONE, C(4, 15));
}

static void test_B2_sren_cf_wrong_4_15(void **st)
{
	expect_reject(EST_OP_SREN, EST_POST, EST_CF_PKCS7_CERTS, EST_CF_NONE,
		      C(4, 15));
	expect_reject(EST_OP_SKC, EST_POST, 0, EST_CF_NONE, C(4, 15));
}

static void test_B3_crts_accept_absent_281(void **st)
{
	expect_accept(EST_OP_CRTS, EST_GET, EST_CF_NONE, EST_CF_NONE,
		      EST_CF_PKCS7_CERTS);
	expect_accept(EST_OP_SEN, EST_POST, EST_CF_PKCS10, EST_CF_NONE,
		      EST_CF_PKCS7_CERTS);
}

static void test_B3_sen_accept_281_287(void **st)
{
	expect_accept(EST_OP_SEN, EST_POST, EST_CF_PKCS10, EST_CF_PKCS7_CERTS,
		      EST_CF_PKCS7_CERTS);
	expect_accept(EST_OP_SREN, EST_POST, EST_CF_PKCS10, EST_CF_PKIX_CERT,
		      EST_CF_PKIX_CERT);
	expect_accept(EST_OP_CRTS, EST_GET, EST_CF_NONE, EST_CF_PKIX_CERT,
		      EST_CF_PKIX_CERT);
}

static void test_B3_crts_accept_other_4_06(void **st)
{
	expect_reject(EST_OP_CRTS, EST_GET, EST_CF_NONE, EST_CF_CSRATTRS,
		      C(4, 6));
	expect_reject(EST_OP_SEN, EST_POST, EST_CF_PKCS10, 0, C(4, 6));
	expect_reject(EST_OP_SREN, EST_POST, EST_CF_PKCS10,
		      EST_CF_MULTIPART_CORE, C(4, 6));
}

static void test_B3_att_accept_285(void **st)
{
	expect_accept(EST_OP_ATT, EST_GET, EST_CF_NONE, EST_CF_NONE,
		      EST_CF_CSRATTRS);
	expect_accept(EST_OP_ATT, EST_GET, EST_CF_NONE, EST_CF_CSRATTRS,
		      EST_CF_CSRATTRS);
	expect_reject(EST_OP_ATT, EST_GET, EST_CF_NONE, EST_CF_PKCS7_CERTS,
		      C(4, 6));
}

static void test_B3_skg_accept_62(void **st)
{
	expect_accept(EST_OP_SKG, EST_POST, EST_CF_PKCS10, EST_CF_NONE,
		      EST_CF_MULTIPART_CORE);
	expect_accept(EST_OP_SKC, EST_POST, EST_CF_PKCS10,
		      EST_CF_MULTIPART_CORE, EST_CF_MULTIPART_CORE);
	expect_reject(EST_OP_SKC, EST_POST, EST_CF_PKCS10, EST_CF_PKIX_CERT,
		      C(4, 6));
	expect_reject(EST_OP_SKG, EST_POST, EST_CF_PKCS10, EST_CF_PKCS7_CERTS,
		      C(4, 6));
}

static void test_A6_get_content_format_ignored(void **st)
{
	expect_accept(EST_OP_CRTS, EST_GET, EST_CF_PKCS10, EST_CF_NONE,
		      EST_CF_PKCS7_CERTS);
	expect_accept(EST_OP_ATT, EST_GET, 0, EST_CF_NONE, EST_CF_CSRATTRS);
}

/* ---------------------------------------------------------- C, B5 request */

static void expect_url(enum est_op op, const char *base, const char *label,
		       const char *url)
{
	struct est_http_req r;
	const struct est_op_desc *d = est_op_desc(op);

	assert_int_equal(est_build_http_request(d, base, label, fx_csr,
						sizeof(fx_csr), &r), 0);
	assert_string_equal(r.url, url);
	assert_int_equal(r.method, d->method);
	if (d->method == EST_GET) {
		assert_null(r.body);
		assert_null(r.content_type);
	} else {
		assert_non_null(r.body);
		assert_string_equal(r.content_type, "application/pkcs10");
	}
	est_http_req_free(&r);
	assert_null(r.url);
}

static void test_C_url_crts(void **st)
{
	expect_url(EST_OP_CRTS, "https://ca.example/.well-known/est/", "",
		   "https://ca.example/.well-known/est/cacerts");
	expect_url(EST_OP_CRTS, "https://ca.example/.well-known/est", NULL,
		   "https://ca.example/.well-known/est/cacerts");
}

static void test_C_url_sen_label(void **st)
{
	expect_url(EST_OP_SEN, "https://ca.example/.well-known/est", "prof1",
		   "https://ca.example/.well-known/est/prof1/simpleenroll");
}

static void test_C_url_sren(void **st)
{
	expect_url(EST_OP_SREN, "https://ca:8443/est//", "",
		   "https://ca:8443/est/simplereenroll");
}

static void test_C_url_att(void **st)
{
	expect_url(EST_OP_ATT, "https://ca/.well-known/est", "p",
		   "https://ca/.well-known/est/p/csrattrs");
}

static void test_C_url_skg_skc(void **st)
{
	expect_url(EST_OP_SKG, "https://ca/.well-known/est", "",
		   "https://ca/.well-known/est/serverkeygen");
	expect_url(EST_OP_SKC, "https://ca/.well-known/est", "x",
		   "https://ca/.well-known/est/x/serverkeygen");
}

/* B5: the CSR goes up as MIME Base64, 64-character lines each ending
 * in CRLF (libest's estserver cannot read one long line). The expected text
 * is the one-line encoding cut by this test. */
static void test_B5_post_body_mime_lines(void **st)
{
	static char one[4096], want[4200];
	struct est_http_req r;
	uint8_t der[sizeof(fx_csr) + 8];
	size_t n, i, w = 0;

	assert_true(sizeof(fx_csr) > 2 * 48); /* at least three lines */
	assert_int_equal(est_b64_encode(fx_csr, sizeof(fx_csr), one, sizeof(one),
					&n), 0);
	for (i = 0; i < n; i += 64) {
		size_t k = n - i < 64 ? n - i : 64;

		memcpy(want + w, one + i, k);
		w += k;
		memcpy(want + w, "\r\n", 2);
		w += 2;
	}
	assert_int_equal(est_build_http_request(est_op_desc(EST_OP_SEN),
						"https://ca", "", fx_csr,
						sizeof(fx_csr), &r), 0);
	assert_string_equal(r.content_type, "application/pkcs10");
	assert_int_equal(r.body_len, w);
	assert_int_equal(strlen(r.body), r.body_len);
	assert_memory_equal(r.body, want, w);
	assert_int_equal(est_b64_decode(r.body, r.body_len, der, sizeof(der),
					&n), 0);
	assert_int_equal(n, sizeof(fx_csr));
	assert_memory_equal(der, fx_csr, n);
	est_http_req_free(&r);
}

/* Every POST operation gets the same body. */
static void test_B5_all_posts_mime_lines(void **st)
{
	static const enum est_op posts[] = { EST_OP_SEN, EST_OP_SREN, EST_OP_SKG,
					     EST_OP_SKC };
	struct est_http_req ref, r;
	size_t i;

	assert_int_equal(est_build_http_request(est_op_desc(EST_OP_SEN),
						"https://ca", "", fx_csr,
						sizeof(fx_csr), &ref), 0);
	for (i = 0; i < sizeof(posts) / sizeof(posts[0]); i++) {
		assert_int_equal(est_build_http_request(est_op_desc(posts[i]),
							"https://ca", "l", fx_csr,
							sizeof(fx_csr), &r), 0);
		assert_int_equal(r.body_len, ref.body_len);
		assert_memory_equal(r.body, ref.body, r.body_len);
		assert_memory_equal(r.body + 64, "\r\n", 2);
		est_http_req_free(&r);
	}
	est_http_req_free(&ref);
}

static void test_B1_post_bad_csr_einval(void **st)
{
	static const uint8_t junk[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
	const struct est_op_desc *sen = est_op_desc(EST_OP_SEN);
	struct est_http_req r;

	assert_int_equal(est_build_http_request(sen, "https://ca", "", junk,
						sizeof(junk), &r), -EINVAL);
	assert_null(r.url);
	assert_null(r.body);
	assert_int_equal(est_build_http_request(sen, "https://ca", "", NULL, 0,
						&r), -EINVAL);
	assert_int_equal(est_build_http_request(sen, "https://ca", "", fx_root,
						sizeof(fx_root), &r), -EINVAL);
}

static void test_A2_url_bad_label_einval(void **st)
{
	struct est_http_req r;

	assert_int_equal(est_build_http_request(est_op_desc(EST_OP_CRTS),
						"https://ca", "..", NULL, 0,
						&r), -EINVAL);
	assert_int_equal(est_build_http_request(est_op_desc(EST_OP_CRTS),
						"https://ca", "a/b", NULL, 0,
						&r), -EINVAL);
}

/* ---------------------------------------------------------------- D status */

static void expect_status(long status, uint8_t on_get, uint8_t on_post)
{
	assert_int_equal(est_status_to_code(status, EST_GET), on_get);
	assert_int_equal(est_status_to_code(status, EST_POST), on_post);
}

static void test_D_200_to_2_05_2_04(void **st) { expect_status(200, C(2, 5), C(2, 4)); }
static void test_D_202_to_5_03(void **st) { expect_status(202, C(5, 3), C(5, 3)); }
/* 204 on a POST is no enrollment (RFC 9148 Table 4): 5.02; on a GET (only
 * /att) it means "no attributes" like 404 (RFC 7030 §4.5.2). */
static void test_D_204_to_4_04_5_02(void **st) { expect_status(204, C(4, 4), C(5, 2)); }

static void test_D_3xx_to_5_02(void **st)
{
	expect_status(300, C(5, 2), C(5, 2));
	expect_status(301, C(5, 2), C(5, 2));
	expect_status(302, C(5, 2), C(5, 2));
	expect_status(399, C(5, 2), C(5, 2));
}

static void test_D_400_to_4_00(void **st) { expect_status(400, C(4, 0), C(4, 0)); }
static void test_D_401_to_4_01(void **st) { expect_status(401, C(4, 1), C(4, 1)); }
static void test_D_403_to_4_03(void **st) { expect_status(403, C(4, 3), C(4, 3)); }
static void test_D_404_to_4_04(void **st) { expect_status(404, C(4, 4), C(4, 4)); }
static void test_D_405_to_4_05(void **st) { expect_status(405, C(4, 5), C(4, 5)); }
static void test_D_406_to_4_06(void **st) { expect_status(406, C(4, 6), C(4, 6)); }
static void test_D_413_to_4_13(void **st) { expect_status(413, C(4, 13), C(4, 13)); }
static void test_D_415_to_4_15(void **st) { expect_status(415, C(4, 15), C(4, 15)); }

static void test_D_other_4xx_to_4_00(void **st)
{
	expect_status(402, C(4, 0), C(4, 0));
	expect_status(409, C(4, 0), C(4, 0));
	expect_status(428, C(4, 0), C(4, 0));
	expect_status(430, C(4, 0), C(4, 0));
	expect_status(499, C(4, 0), C(4, 0));
}

/* RFC 8516: 4.29 Too Many Requests, not a generic 4.00. */
static void test_D_429_to_4_29(void **st) { expect_status(429, C(4, 29), C(4, 29)); }

/* The rows whose answer carries a Max-Age from Retry-After: 202, 429, 503. */
static void test_D_max_age_rows(void **st)
{
	static const long with[] = { 202, 429, 503 };
	static const long without[] = { 200, 204, 302, 400, 404, 413, 428, 430,
					500, 502, 504, 599, 0, 600 };
	size_t i;

	for (i = 0; i < sizeof(with) / sizeof(with[0]); i++)
		assert_int_equal(est_status_has_max_age(with[i]), 1);
	for (i = 0; i < sizeof(without) / sizeof(without[0]); i++)
		assert_int_equal(est_status_has_max_age(without[i]), 0);
}

static void test_D_500_to_5_00(void **st) { expect_status(500, C(5, 0), C(5, 0)); }
static void test_D_501_to_5_01(void **st) { expect_status(501, C(5, 1), C(5, 1)); }
static void test_D_502_to_5_02(void **st) { expect_status(502, C(5, 2), C(5, 2)); }
static void test_D_503_to_5_03(void **st) { expect_status(503, C(5, 3), C(5, 3)); }
static void test_D_504_to_5_04(void **st) { expect_status(504, C(5, 4), C(5, 4)); }

static void test_D_other_5xx_to_5_00(void **st)
{
	expect_status(505, C(5, 0), C(5, 0));
	expect_status(599, C(5, 0), C(5, 0));
}

static void test_D_odd_to_5_02(void **st)
{
	expect_status(100, C(5, 2), C(5, 2));
	expect_status(101, C(5, 2), C(5, 2));
	expect_status(201, C(5, 2), C(5, 2));
	expect_status(0, C(5, 2), C(5, 2));
	expect_status(-1, C(5, 2), C(5, 2));
	expect_status(600, C(5, 2), C(5, 2));
	expect_status(99999, C(5, 2), C(5, 2));
}

/* ---------------------------------------------------------- D Retry-After */

/* Sun, 06 Nov 1994 08:49:00 GMT */
#define T_1994 ((time_t)784111740)

static void expect_retry(const char *v, time_t now, uint32_t secs)
{
	uint32_t s = 12345;

	assert_int_equal(est_retry_after_seconds(v, now, &s), 0);
	assert_int_equal(s, secs);
}

static void test_D_retry_after_delta(void **st)
{
	expect_retry("120", 0, 120);
	expect_retry("0", 0, 0);
	expect_retry(" 7\t", 0, 7);
	expect_retry("0000000000000000000000000030", 0, 30);
}

static void test_D_retry_after_date(void **st)
{
	expect_retry("Sun, 06 Nov 1994 08:49:37 GMT", T_1994, 37);
	expect_retry("Mon, 07 Nov 1994 08:49:00 GMT", T_1994, 86400);
	expect_retry("Thu, 29 Feb 1996 00:00:00 GMT", T_1994 - 1,
		     (uint32_t)(825552000 - (T_1994 - 1)));
}

static void test_D_retry_after_obsolete_dates(void **st)
{
	/* RFC 9110 5.6.7: recipients MUST accept all three formats. */
	expect_retry("Sunday, 06-Nov-94 08:49:37 GMT", T_1994, 37);
	expect_retry("Sun Nov  6 08:49:37 1994", T_1994, 37);
	expect_retry("Sun Nov 16 08:49:00 1994", T_1994, 10 * 86400);
}

static void test_D_retry_after_past_date(void **st)
{
	expect_retry("Sun, 06 Nov 1994 08:49:37 GMT", T_1994 + 3600, 0);
	expect_retry("Sun, 06 Nov 1994 08:49:00 GMT", T_1994, 0);
}

/* The Max-Age from a Retry-After, shared by the EST and MASA mappings. */
static void test_D_retry_max_age_clamped_or_default(void **st)
{
	const struct est_xlate_limits lim = { 60, 5, 3600 };

	assert_int_equal(est_retry_max_age("120", 0, &lim), 120);
	assert_int_equal(est_retry_max_age("2", 0, &lim), 5);       /* max_age_min */
	assert_int_equal(est_retry_max_age("99999", 0, &lim), 3600); /* max_age_max */
	assert_int_equal(est_retry_max_age("Sun, 06 Nov 1994 08:50:37 GMT", T_1994, &lim), 97);
	assert_int_equal(est_retry_max_age(NULL, 0, &lim), 60);      /* none: default */
	assert_int_equal(est_retry_max_age("soon", 0, &lim), 60);
}

/* Untrusted text for logs and diagnostics: printable ASCII, no '"'. */
static void test_D_printable_copy_of_untrusted_text(void **st)
{
	char out[8];

	assert_int_equal(est_printable(out, sizeof(out), "ok", 2), 2);
	assert_string_equal(out, "ok");
	assert_int_equal(est_printable(out, sizeof(out), "a\"b\n\x01\x7f\xc3", 7), 7);
	assert_string_equal(out, "a?b????");
	assert_int_equal(est_printable(out, sizeof(out), "0123456789", 10), 7);
	assert_string_equal(out, "0123456");
	assert_int_equal(est_printable(out, sizeof(out), "x", 0), 0);
	assert_string_equal(out, "");
	assert_int_equal(est_printable(out, 0, "x", 1), 0);
}

static void test_D_retry_after_garbage(void **st)
{
	static const char *const bad[] = {
		"", " ", "abc", "12a", "-5", "+5", "1 2", "1.5",
		"Sun, 06 Nov 1994 08:49:37 UTC",
		"sun, 06 nov 1994 08:49:37 gmt",
		"Sun, 6 Nov 1994 08:49:37 GMT",
		"Sun, 06 Nov 94 08:49:37 GMT",
		"Sun, 31 Nov 1994 08:49:37 GMT",
		"Sun, 29 Feb 1900 08:49:37 GMT",
		"Sun, 06 Nov 1994 24:00:00 GMT",
		"Sun, 06 Nov 1994 08:60:00 GMT",
		"Sun, 06 Nov 1994 08:49:61 GMT",
		"Sun, 06 Foo 1994 08:49:37 GMT",
		"Sun, 06 Nov 1994 08:49:37 GMT x",
		"Sun, 06 Nov 1994 08:49:37",
		"Sunday, 06-Nov-1994 08:49:37 GMT",
		"Sun Nov 6 08:49:37 1994",
	};
	uint32_t s;
	size_t i;

	for (i = 0; i < N(bad); i++)
		assert_int_equal(est_retry_after_seconds(bad[i], T_1994, &s),
				 -EINVAL);
	assert_int_equal(est_retry_after_seconds(NULL, T_1994, &s), -EINVAL);
}

/* Dates past 2038 on a 32-bit time_t (Debian 12 armhf): the seconds are
 * counted in 64 bits, not by timegm(). Expected values from `date -u -d`. */
static void test_D_retry_after_date_after_2038(void **st)
{
	/* 2^31 s after the epoch: one past the largest 32-bit time_t */
	expect_retry("Tue, 19 Jan 2038 03:14:08 GMT", 0, 2147483648u);
	/* 2100 is not a leap year; 2100-01-01 is 4102444800 */
	expect_retry("Fri, 01 Jan 2100 00:00:00 GMT", T_1994,
		     (uint32_t)(4102444800ll - T_1994));
	expect_retry("Mon, 01 Mar 2100 00:00:00 GMT", T_1994,
		     (uint32_t)(4107542400ll - T_1994));
	/* a leap second counts as the next second, as with timegm() */
	expect_retry("Sat, 31 Dec 2016 23:59:60 GMT", 1483228800 - 10, 10);
}

static void test_D_retry_after_huge(void **st)
{
	expect_retry("4294967295", 0, UINT32_MAX);
	expect_retry("4294967296", 0, UINT32_MAX);
	expect_retry("99999999999999999999999999999999", 0, UINT32_MAX);
	expect_retry("Fri, 31 Dec 9999 23:59:59 GMT", 0, UINT32_MAX);
}

/* --------------------------------------------------- D translate: errors */

static const struct est_xlate_limits lim = { 30, 5, 3600 };

struct up {
	enum est_upstream_err err;
	long status;
	const char *ct, *ra;
	const uint8_t *body;
	size_t len;
};

static void xlate(enum est_op op, int resp_cf, const uint8_t *csr,
		  size_t csr_len, const struct up *u, struct est_coap_resp *out)
{
	struct est_http_resp in = { u->err, u->status, u->ct, u->ra,
				    u->body, u->len, T_1994 };

	memset(out, 0xa5, sizeof(*out));
	assert_int_equal(est_translate_response(est_op_desc(op), resp_cf, csr,
						csr_len, &in, &lim, out), 0);
}

static void expect_error(const struct est_coap_resp *r, uint8_t code,
			 const char *diag)
{
	assert_int_equal(r->code, code);
	assert_int_equal(r->cf, EST_CF_NONE);
	assert_int_equal(r->len, strlen(diag));
	assert_memory_equal(r->payload, diag, r->len);
}

static void expect_transport(enum est_upstream_err err, uint8_t code,
			     const char *diag)
{
	struct up u = { err, 0, NULL, NULL, NULL, 0 };
	struct est_coap_resp r;

	xlate(EST_OP_SEN, EST_CF_PKCS7_CERTS, fx_csr, sizeof(fx_csr), &u, &r);
	expect_error(&r, code, diag);
	assert_false(r.has_max_age);
	est_coap_resp_free(&r);
}

static void test_D_transport_connect_5_02(void **st)
{
	expect_transport(EST_UP_CONNECT, C(5, 2), "upstream unreachable");
}

static void test_D_transport_dns_5_02(void **st)
{
	expect_transport(EST_UP_DNS, C(5, 2), "upstream name not resolved");
}

static void test_D_transport_tls_5_02(void **st)
{
	expect_transport(EST_UP_TLS, C(5, 2), "upstream TLS failure");
}

static void test_D_transport_protocol_5_02(void **st)
{
	expect_transport(EST_UP_PROTOCOL, C(5, 2), "upstream protocol error");
}

static void test_D_transport_too_large_5_02(void **st)
{
	expect_transport(EST_UP_TOO_LARGE, C(5, 2), "upstream answer too large");
}

static void test_D_transport_timeout_5_04(void **st)
{
	expect_transport(EST_UP_TIMEOUT, C(5, 4), "upstream timeout");
}

static void expect_code_max_age(enum est_op op, int resp_cf, long status,
				const char *ra, uint8_t code, uint32_t max_age)
{
	struct up u = { EST_UP_OK, status, "text/plain", ra, NULL, 0 };
	struct est_coap_resp r;

	xlate(op, resp_cf, fx_csr, sizeof(fx_csr), &u, &r);
	assert_int_equal(r.code, code);
	assert_int_equal(r.cf, EST_CF_NONE);
	assert_true(r.has_max_age);
	assert_int_equal(r.max_age, max_age);
	assert_true(r.len > 0);
	est_coap_resp_free(&r);
}

static void expect_max_age(long status, const char *ra, uint32_t max_age)
{
	struct up u = { EST_UP_OK, status, "text/plain", ra, NULL, 0 };
	struct est_coap_resp r;

	xlate(EST_OP_SEN, EST_CF_PKCS7_CERTS, fx_csr, sizeof(fx_csr), &u, &r);
	assert_int_equal(r.code, C(5, 3));
	assert_int_equal(r.cf, EST_CF_NONE);
	assert_true(r.has_max_age);
	assert_int_equal(r.max_age, max_age);
	assert_true(r.len > 0);
	est_coap_resp_free(&r);
}

static void test_D_202_retry_after_delta_max_age(void **st)
{
	expect_max_age(202, "120", 120);
}

static void test_D_202_retry_after_date_max_age(void **st)
{
	expect_max_age(202, "Sun, 06 Nov 1994 08:59:00 GMT", 600);
}

static void test_D_202_no_retry_after_default(void **st)
{
	expect_max_age(202, NULL, lim.max_age_default);
	expect_max_age(202, "soon", lim.max_age_default);
}

static void test_D_202_retry_after_clamped(void **st)
{
	expect_max_age(202, "1", lim.max_age_min);
	expect_max_age(202, "Sun, 06 Nov 1994 08:00:00 GMT", lim.max_age_min);
	expect_max_age(202, "86400", lim.max_age_max);
}

static void test_D_503_max_age(void **st)
{
	expect_max_age(503, "60", 60);
	expect_max_age(503, NULL, lim.max_age_default);
	expect_max_age(503, "999999999999", lim.max_age_max);
}

/* RFC 8516 §3: 4.29 + Max-Age = Retry-After, clamped as for 503. */
static void test_D_429_retry_after_max_age(void **st)
{
	struct up u = { EST_UP_OK, 429, "text/plain", "20", NULL, 0 };
	struct est_coap_resp r;

	xlate(EST_OP_SEN, EST_CF_PKCS7_CERTS, fx_csr, sizeof(fx_csr), &u, &r);
	expect_error(&r, C(4, 29), "upstream busy, too many requests");
	assert_true(r.has_max_age);
	assert_int_equal(r.max_age, 20);
	est_coap_resp_free(&r);
	expect_code_max_age(EST_OP_SEN, EST_CF_PKCS7_CERTS, 429,
			    "Sun, 06 Nov 1994 08:51:00 GMT", C(4, 29), 120);
	expect_code_max_age(EST_OP_SEN, EST_CF_PKCS7_CERTS, 429, "1", C(4, 29),
			    lim.max_age_min);
	expect_code_max_age(EST_OP_SEN, EST_CF_PKCS7_CERTS, 429, "86400",
			    C(4, 29), lim.max_age_max);
	expect_code_max_age(EST_OP_CRTS, EST_CF_PKCS7_CERTS, 429, "7", C(4, 29),
			    7);
	expect_code_max_age(EST_OP_SKG, EST_CF_MULTIPART_CORE, 429, "9",
			    C(4, 29), 9);
}

static void test_D_429_no_retry_after_default(void **st)
{
	expect_code_max_age(EST_OP_SEN, EST_CF_PKCS7_CERTS, 429, NULL, C(4, 29),
			    lim.max_age_default);
	expect_code_max_age(EST_OP_SREN, EST_CF_PKCS7_CERTS, 429, "later",
			    C(4, 29), lim.max_age_default);
}

static void expect_http_error(enum est_op op, long status, uint8_t code,
			      const char *diag)
{
	static const char html[] = "<html>Not Found</html>";
	struct up u = { EST_UP_OK, status, "text/html", "10",
			(const uint8_t *)html, sizeof(html) - 1 };
	struct est_coap_resp r;

	xlate(op, EST_CF_PKCS7_CERTS, fx_csr, sizeof(fx_csr), &u, &r);
	expect_error(&r, code, diag);
	assert_false(r.has_max_age);
	est_coap_resp_free(&r);
}

static void test_D_404_answer_4_04(void **st)
{
	expect_http_error(EST_OP_CRTS, 404, C(4, 4), "upstream answered 404");
}

static void test_D_401_answer_4_01(void **st)
{
	expect_http_error(EST_OP_SEN, 401, C(4, 1), "upstream answered 401");
}

static void test_D_302_answer_5_02(void **st)
{
	expect_http_error(EST_OP_SEN, 302, C(5, 2), "upstream answered 302");
}

static void test_D_500_answer_5_00(void **st)
{
	expect_http_error(EST_OP_SREN, 500, C(5, 0), "upstream answered 500");
}

static void test_D_204_att_answer_4_04(void **st)
{
	expect_http_error(EST_OP_ATT, 204, C(4, 4), "upstream answered 204");
}

/* A POST answered 204 has no certificate (or key): 5.02 with a
 * diagnostic, never an empty 2.04 (RFC 9148 §4.1, Table 4). */
static void test_D_204_post_answer_5_02(void **st)
{
	static const struct {
		enum est_op op;
		int cf;
	} posts[] = {
		{ EST_OP_SEN, EST_CF_PKCS7_CERTS },
		{ EST_OP_SEN, EST_CF_PKIX_CERT },
		{ EST_OP_SREN, EST_CF_PKCS7_CERTS },
		{ EST_OP_SKG, EST_CF_MULTIPART_CORE },
		{ EST_OP_SKC, EST_CF_MULTIPART_CORE },
	};
	struct up u = { EST_UP_OK, 204, NULL, "30", NULL, 0 };
	struct est_coap_resp r;
	size_t i;

	for (i = 0; i < sizeof(posts) / sizeof(posts[0]); i++) {
		xlate(posts[i].op, posts[i].cf, fx_csr, sizeof(fx_csr), &u, &r);
		expect_error(&r, C(5, 2),
			     "upstream answered 204 without a certificate or key");
		assert_false(r.has_max_age);
		est_coap_resp_free(&r);
	}
}

/* -------------------------------------------------- B4, B5, B6: 200 bodies */

/** Base64 of @p der (malloc'd text, no line breaks). */
static char *b64(const uint8_t *der, size_t len, size_t *outlen)
{
	size_t cap = est_b64_encoded_len(len) + 1;
	char *t = malloc(cap);

	assert_non_null(t);
	assert_int_equal(est_b64_encode(der, len, t, cap, outlen), 0);
	return t;
}

static void xlate_200(enum est_op op, int resp_cf, const char *ct,
		      const uint8_t *der, size_t len, const uint8_t *csr,
		      size_t csr_len, struct est_coap_resp *r)
{
	size_t tlen;
	char *text = b64(der, len, &tlen);
	struct up u = { EST_UP_OK, 200, ct, NULL, (const uint8_t *)text, tlen };

	xlate(op, resp_cf, csr, csr_len, &u, r);
	free(text);
}

static void expect_ok(const struct est_coap_resp *r, uint8_t code, int cf,
		      const uint8_t *der, size_t len)
{
	assert_int_equal(r->code, code);
	assert_int_equal(r->cf, cf);
	assert_false(r->has_max_age);
	assert_int_equal(r->len, len);
	assert_memory_equal(r->payload, der, len);
}

static void expect_ct(const char *ct, int ok)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_CRTS, EST_CF_PKCS7_CERTS, ct, fx_p7_ca_chain,
		  sizeof(fx_p7_ca_chain), NULL, 0, &r);
	if (ok)
		expect_ok(&r, C(2, 5), EST_CF_PKCS7_CERTS, fx_p7_ca_chain,
			  sizeof(fx_p7_ca_chain));
	else
		assert_int_equal(r.code, C(5, 2));
	est_coap_resp_free(&r);
}

static void test_B6_ct_with_params(void **st)
{
	expect_ct("application/pkcs7-mime; smime-type=certs-only", 1);
	expect_ct("application/pkcs7-mime ;smime-type=certs-only", 1);
}

static void test_B6_ct_without_params(void **st)
{
	expect_ct("application/pkcs7-mime", 1);
	expect_ct(" application/pkcs7-mime ", 1);
}

static void test_B6_ct_uppercase(void **st)
{
	expect_ct("APPLICATION/PKCS7-MIME; smime-type=CERTS-ONLY", 1);
	expect_ct("Application/Pkcs7-Mime", 1);
}

static void test_B6_ct_missing_tolerated(void **st)
{
	expect_ct(NULL, 1);
	expect_ct("", 1);
}

static void test_B6_ct_text_html_5_02(void **st)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_CRTS, EST_CF_PKCS7_CERTS, "text/html; charset=utf-8",
		  fx_p7_ca_chain, sizeof(fx_p7_ca_chain), NULL, 0, &r);
	expect_error(&r, C(5, 2), "upstream sent text/html");
	est_coap_resp_free(&r);
	expect_ct("application/pkcs7-mimex", 0);
	expect_ct("application/pkcs7-mime x", 0);
	expect_ct("application/csrattrs", 0);
	expect_ct(";x=y", 0);
}

static void test_B6_ct_diag_sanitized(void **st)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_CRTS, EST_CF_PKCS7_CERTS, "a\x01\x7f/b\xff", fx_p7_root,
		  sizeof(fx_p7_root), NULL, 0, &r);
	expect_error(&r, C(5, 2), "upstream sent a?" "?/b?");
	est_coap_resp_free(&r);
}

static void test_B5_base64_line_breaks(void **st)
{
	struct up u = { EST_UP_OK, 200, "application/pkcs7-mime", NULL,
			(const uint8_t *)fx_p7_ee_chain_b64,
			sizeof(fx_p7_ee_chain_b64) - 1 };
	struct est_coap_resp r;

	xlate(EST_OP_SEN, EST_CF_PKCS7_CERTS, fx_csr, sizeof(fx_csr), &u, &r);
	expect_ok(&r, C(2, 4), EST_CF_PKCS7_CERTS, fx_p7_ee_chain,
		  sizeof(fx_p7_ee_chain));
	assert_null(r.note);
	est_coap_resp_free(&r);
}

static void test_B5_binary_der_tolerated(void **st)
{
	struct up u = { EST_UP_OK, 200, "application/pkcs7-mime", NULL,
			fx_p7_ee_chain, sizeof(fx_p7_ee_chain) };
	struct est_coap_resp r;

	xlate(EST_OP_SREN, EST_CF_PKCS7_CERTS, fx_csr, sizeof(fx_csr), &u, &r);
	expect_ok(&r, C(2, 4), EST_CF_PKCS7_CERTS, fx_p7_ee_chain,
		  sizeof(fx_p7_ee_chain));
	assert_string_equal(r.note, "binary DER from upstream");
	est_coap_resp_free(&r);
}

static void expect_body_5_02(enum est_op op, const uint8_t *body, size_t len,
			     const char *diag)
{
	struct up u = { EST_UP_OK, 200, NULL, NULL, body, len };
	struct est_coap_resp r;

	xlate(op, op == EST_OP_ATT ? EST_CF_CSRATTRS : EST_CF_PKCS7_CERTS,
	      fx_csr, sizeof(fx_csr), &u, &r);
	expect_error(&r, C(5, 2), diag);
	est_coap_resp_free(&r);
}

static void test_B5_garbage_body_5_02(void **st)
{
	static const char junk[] = "<html>oops</html>";
	static const uint8_t trunc[] = { 0x30, 0x82, 0x01, 0x00, 0x02 };

	expect_body_5_02(EST_OP_CRTS, (const uint8_t *)junk, sizeof(junk) - 1,
			 "upstream sent a malformed body");
	expect_body_5_02(EST_OP_SEN, trunc, sizeof(trunc),
			 "upstream sent a malformed body");
	expect_body_5_02(EST_OP_CRTS, NULL, 0, "upstream sent an empty body");
}

static void test_B5_pkcs7_no_cert_5_02(void **st)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_CRTS, EST_CF_PKCS7_CERTS, NULL, fx_p7_empty,
		  sizeof(fx_p7_empty), NULL, 0, &r);
	expect_error(&r, C(5, 2), "upstream sent no certificate");
	est_coap_resp_free(&r);
}

static void test_B5_pkcs7_too_many_5_02(void **st)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_CRTS, EST_CF_PKCS7_CERTS, NULL, fx_p7_33,
		  sizeof(fx_p7_33), NULL, 0, &r);
	expect_error(&r, C(5, 2), "upstream sent too many certificates");
	est_coap_resp_free(&r);
}

static void test_B5_not_pkcs7_5_02(void **st)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_CRTS, EST_CF_PKCS7_CERTS, NULL, fx_root,
		  sizeof(fx_root), NULL, 0, &r);
	expect_error(&r, C(5, 2), "upstream sent a malformed PKCS#7");
	est_coap_resp_free(&r);
}

static void test_B3_crts_281_payload_is_pkcs7(void **st)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_CRTS, EST_CF_PKCS7_CERTS,
		  "application/pkcs7-mime; smime-type=certs-only", fx_p7_root,
		  sizeof(fx_p7_root), NULL, 0, &r);
	expect_ok(&r, C(2, 5), EST_CF_PKCS7_CERTS, fx_p7_root,
		  sizeof(fx_p7_root));
	est_coap_resp_free(&r);
}

static void test_B3_resp_cf_not_offered_4_06(void **st)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_CRTS, EST_CF_CSRATTRS, NULL, fx_p7_root,
		  sizeof(fx_p7_root), NULL, 0, &r);
	assert_int_equal(r.code, C(4, 6));
	est_coap_resp_free(&r);
}

static void expect_single(enum est_op op, const uint8_t *p7, size_t p7len,
			  const uint8_t *csr, size_t csr_len,
			  const uint8_t *cert, size_t cert_len)
{
	struct est_coap_resp r;

	xlate_200(op, EST_CF_PKIX_CERT, "application/pkcs7-mime", p7, p7len,
		  csr, csr_len, &r);
	if (cert)
		expect_ok(&r, est_op_desc(op)->success, EST_CF_PKIX_CERT, cert,
			  cert_len);
	else
		expect_error(&r, C(4, 6), "no single certificate");
	est_coap_resp_free(&r);
}

static void test_B4_crts_287_one_cert(void **st)
{
	expect_single(EST_OP_CRTS, fx_p7_root, sizeof(fx_p7_root), NULL, 0,
		      fx_root, sizeof(fx_root));
}

static void test_B4_crts_287_chain_one_root(void **st)
{
	expect_single(EST_OP_CRTS, fx_p7_ca_chain, sizeof(fx_p7_ca_chain),
		      NULL, 0, fx_root, sizeof(fx_root));
	expect_single(EST_OP_CRTS, fx_p7_ee_chain, sizeof(fx_p7_ee_chain),
		      NULL, 0, fx_root, sizeof(fx_root));
}

static void test_B4_crts_287_two_roots_4_06(void **st)
{
	expect_single(EST_OP_CRTS, fx_p7_two_roots, sizeof(fx_p7_two_roots),
		      NULL, 0, NULL, 0);
}

static void test_B4_sen_287_match_csr_spki(void **st)
{
	expect_single(EST_OP_SEN, fx_p7_ee_chain, sizeof(fx_p7_ee_chain),
		      fx_csr, sizeof(fx_csr), fx_ee, sizeof(fx_ee));
	expect_single(EST_OP_SREN, fx_p7_ee_chain, sizeof(fx_p7_ee_chain),
		      fx_csr, sizeof(fx_csr), fx_ee, sizeof(fx_ee));
}

static void test_B4_sen_287_other_key_4_06(void **st)
{
	expect_single(EST_OP_SEN, fx_p7_ee_chain, sizeof(fx_p7_ee_chain),
		      fx_csr_other, sizeof(fx_csr_other), NULL, 0);
}

static void test_B4_sen_287_same_key_twice_4_06(void **st)
{
	expect_single(EST_OP_SEN, fx_p7_ee_twice, sizeof(fx_p7_ee_twice),
		      fx_csr, sizeof(fx_csr), NULL, 0);
}

static void test_B4_sen_287_no_csr_4_00(void **st)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_SEN, EST_CF_PKIX_CERT, NULL, fx_p7_ee_chain,
		  sizeof(fx_p7_ee_chain), NULL, 0, &r);
	expect_error(&r, C(4, 0), "CSR unreadable");
	est_coap_resp_free(&r);
}

static void test_B4_pick_none(void **st)
{
	struct est_slice one = { fx_root, sizeof(fx_root) }, out;

	assert_int_equal(est_pick_single_cert(&one, 0, NULL, &out), -ENOENT);
	assert_int_equal(est_pick_single_cert(NULL, 0, NULL, &out), -ENOENT);
	assert_int_equal(est_pick_single_cert(&one, 1, NULL, &out), 0);
	assert_ptr_equal(out.ptr, fx_root);
}

/* csrattrs: SEQUENCE { challengePassword OID } */
static const uint8_t attrs[] = { 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48,
				 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x07 };

static void test_B_att_200_285(void **st)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_ATT, EST_CF_CSRATTRS, "application/csrattrs", attrs,
		  sizeof(attrs), NULL, 0, &r);
	expect_ok(&r, C(2, 5), EST_CF_CSRATTRS, attrs, sizeof(attrs));
	est_coap_resp_free(&r);
}

static void test_B6_att_wrong_ct_5_02(void **st)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_ATT, EST_CF_CSRATTRS, "application/pkcs7-mime", attrs,
		  sizeof(attrs), NULL, 0, &r);
	expect_error(&r, C(5, 2), "upstream sent application/pkcs7-mime");
	est_coap_resp_free(&r);
}

static void test_B_att_not_sequence_5_02(void **st)
{
	static const uint8_t octets[] = { 0x04, 0x02, 0x01, 0x02 };
	struct est_coap_resp r;

	xlate_200(EST_OP_ATT, EST_CF_CSRATTRS, NULL, octets, sizeof(octets),
		  NULL, 0, &r);
	assert_int_equal(r.code, C(5, 2));
	est_coap_resp_free(&r);
}

/* A serverkeygen answer needs a multipart boundary (F2; the multipart
 * cases themselves are in test_skg.c). */
static void test_F_skg_skc_no_boundary_5_02(void **st)
{
	struct est_coap_resp r;

	xlate_200(EST_OP_SKG, EST_CF_MULTIPART_CORE, "multipart/mixed",
		  fx_p7_root, sizeof(fx_p7_root), fx_csr, sizeof(fx_csr), &r);
	expect_error(&r, C(5, 2), "upstream multipart without a valid boundary");
	est_coap_resp_free(&r);
	xlate_200(EST_OP_SKC, EST_CF_MULTIPART_CORE, "multipart/mixed",
		  fx_p7_root, sizeof(fx_p7_root), fx_csr, sizeof(fx_csr), &r);
	expect_error(&r, C(5, 2), "upstream multipart without a valid boundary");
	est_coap_resp_free(&r);
}

static void test_D1_error_payload_is_copy(void **st)
{
	char diag[] = "some text";
	struct est_coap_resp r;

	assert_int_equal(est_coap_resp_error(&r, C(4, 0), diag), 0);
	diag[0] = 'X';
	expect_error(&r, C(4, 0), "some text");
	est_coap_resp_free(&r);
	assert_null(r.payload);
	assert_int_equal(est_coap_resp_error(&r, C(5, 0), NULL), 0);
	assert_null(r.payload);
	assert_int_equal(r.len, 0);
}

/* ------------------------------------------------------ A3, A4 discovery */

#define ALL_OPS ((1u << EST_OP_COUNT) - 1)
#define L_ROOT "</est>;rt=\"ace.est\""
#define L_CRTS "</est/crts>;rt=\"ace.est.crts\";ct=\"281 287\""
#define L_SEN "</est/sen>;rt=\"ace.est.sen\";ct=\"281 287\""
#define L_SREN "</est/sren>;rt=\"ace.est.sren\";ct=\"281 287\""
#define L_ATT "</est/att>;rt=\"ace.est.att\";ct=285"
#define L_SKG "</est/skg>;rt=\"ace.est.skg\";ct=62"
#define L_SKC "</est/skc>;rt=\"ace.est.skc\";ct=62"

static void expect_links(const char *root, unsigned ops, int with_root,
			 const char *q1, const char *q2, const char *want)
{
	struct est_link_opts o = { .root = root, .ops_enabled = ops,
				   .with_root_link = with_root };
	struct est_slice q[2];
	size_t nq = 0, len;
	char *text;

	if (q1) {
		q[nq].ptr = (const uint8_t *)q1;
		q[nq++].len = strlen(q1);
	}
	if (q2) {
		q[nq].ptr = (const uint8_t *)q2;
		q[nq++].len = strlen(q2);
	}
	assert_int_equal(est_link_format(&o, q, nq, &text, &len), 0);
	assert_string_equal(text, want);
	assert_int_equal(len, strlen(want));
	free(text);
}

/* H6: a join proxy's GET /.well-known/core?rt=brski.rjp finds the JPY
 * port; every other listing stays as it was. */
static void test_H6_jpy_link(void **st)
{
	struct est_link_opts o = { .root = "/est", .ops_enabled = ALL_OPS | EST_LINKS_BRSKI,
				   .with_root_link = 1, .jpy_uri = "jpy://[fd00::1]:5685" };
	struct est_slice q[2] = { { (const uint8_t *)"rt=brski.rjp", 12 },
				  { (const uint8_t *)"rt=ace.est*", 11 } };
	struct est_link_opts plain = o;
	char *text, *want;
	size_t len, wlen;

	(void)st;
	assert_int_equal(est_link_format(&o, q, 1, &text, &len), 0);
	assert_string_equal(text, "<jpy://[fd00::1]:5685>;rt=brski.rjp");
	free(text);
	assert_int_equal(est_link_format(&o, q + 1, 1, &text, &len), 0);
	assert_null(strstr(text, "jpy:"));
	free(text);
	/* no query: the listing without JPY, byte for byte */
	plain.jpy_uri = NULL;
	assert_int_equal(est_link_format(&o, NULL, 0, &text, &len), 0);
	assert_int_equal(est_link_format(&plain, NULL, 0, &want, &wlen), 0);
	assert_string_equal(text, want);
	free(text);
	free(want);
	/* rt=brski* asks for every cBRSKI rt, the JPY one included */
	q[0].ptr = (const uint8_t *)"rt=brski*";
	q[0].len = 9;
	assert_int_equal(est_link_format(&o, q, 1, &text, &len), 0);
	assert_non_null(strstr(text, ",<jpy://[fd00::1]:5685>;rt=brski.rjp"));
	free(text);
}

static void test_A3_links_all(void **st)
{
	expect_links("/est", ALL_OPS, 1, NULL, NULL,
		     L_ROOT "," L_CRTS "," L_SEN "," L_SREN "," L_ATT "," L_SKG
			    "," L_SKC);
}

static void test_A3_links_mandatory_only(void **st)
{
	unsigned ops = 1u << EST_OP_CRTS | 1u << EST_OP_SEN |
		       1u << EST_OP_SREN;

	expect_links("/est", ops, 0, NULL, NULL,
		     L_CRTS "," L_SEN "," L_SREN);
}

static void test_A3_links_well_known_root(void **st)
{
	expect_links("/.well-known/est", 1u << EST_OP_CRTS | 1u << EST_OP_ATT,
		     1, NULL, NULL,
		     "</.well-known/est>;rt=\"ace.est\","
		     "</.well-known/est/crts>;rt=\"ace.est.crts\";"
		     "ct=\"281 287\","
		     "</.well-known/est/att>;rt=\"ace.est.att\";ct=285");
}

static void test_A4_rt_ace_est_prefix(void **st)
{
	expect_links("/est", ALL_OPS, 1, "rt=ace.est*", NULL,
		     L_ROOT "," L_CRTS "," L_SEN "," L_SREN "," L_ATT "," L_SKG
			    "," L_SKC);
	expect_links("/est", ALL_OPS, 1, "rt=ace.est.s*", NULL,
		     L_SEN "," L_SREN "," L_SKG "," L_SKC);
}

static void test_A4_rt_exact_sen(void **st)
{
	expect_links("/est", ALL_OPS, 1, "rt=ace.est.sen", NULL, L_SEN);
	expect_links("/est", ALL_OPS, 1, "rt=ace.est", NULL, L_ROOT);
}

static void test_A4_ct_285(void **st)
{
	expect_links("/est", ALL_OPS, 1, "ct=285", NULL, L_ATT);
}

static void test_A4_ct_in_list(void **st)
{
	expect_links("/est", ALL_OPS, 1, "ct=287", NULL,
		     L_CRTS "," L_SEN "," L_SREN);
	expect_links("/est", ALL_OPS, 1, "ct=28*", NULL,
		     L_CRTS "," L_SEN "," L_SREN "," L_ATT);
}

static void test_A4_rt_and_ct(void **st)
{
	expect_links("/est", ALL_OPS, 1, "rt=ace.est*", "ct=62",
		     L_SKG "," L_SKC);
}

static void test_A4_no_match_empty(void **st)
{
	expect_links("/est", ALL_OPS, 1, "rt=core.rd", NULL, "");
	expect_links("/est", ALL_OPS, 1, "ct=281 287", NULL, "");
	expect_links("/est", ALL_OPS, 1, "rt=", NULL, "");
	expect_links("/est", 0, 0, NULL, NULL, "");
}

static void test_A4_unknown_query_ignored(void **st)
{
	expect_links("/est", 1u << EST_OP_CRTS, 0, "if=sensor", "junk",
		     L_CRTS);
	expect_links("/est", 1u << EST_OP_CRTS, 0, "rtx=a", "rt", L_CRTS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_C_op_crts),
		cmocka_unit_test(test_C_op_sen),
		cmocka_unit_test(test_C_op_sren),
		cmocka_unit_test(test_C_op_att),
		cmocka_unit_test(test_C_op_skg),
		cmocka_unit_test(test_C_op_skc),
		cmocka_unit_test(test_A1_op_lookup_unknown),
		cmocka_unit_test(test_A1_route_default_root),
		cmocka_unit_test(test_A1_route_extra_root),
		cmocka_unit_test(test_A1_route_root_trailing_slash),
		cmocka_unit_test(test_A2_route_label),
		cmocka_unit_test(test_A2_route_label_extra_root),
		cmocka_unit_test(test_A2_route_label_bad_chars),
		cmocka_unit_test(test_A2_route_label_is_short_name),
		cmocka_unit_test(test_A2_route_label_too_long),
		cmocka_unit_test(test_A2_route_extra_segments),
		cmocka_unit_test(test_A1_route_unknown_short_name),
		cmocka_unit_test(test_A6_crts_post_4_05),
		cmocka_unit_test(test_A6_att_delete_4_05),
		cmocka_unit_test(test_A6_sen_get_4_05),
		cmocka_unit_test(test_B2_sen_cf_missing_4_15),
		cmocka_unit_test(test_B2_sren_cf_wrong_4_15),
		cmocka_unit_test(test_B3_crts_accept_absent_281),
		cmocka_unit_test(test_B3_sen_accept_281_287),
		cmocka_unit_test(test_B3_crts_accept_other_4_06),
		cmocka_unit_test(test_B3_att_accept_285),
		cmocka_unit_test(test_B3_skg_accept_62),
		cmocka_unit_test(test_A6_get_content_format_ignored),
		cmocka_unit_test(test_C_url_crts),
		cmocka_unit_test(test_C_url_sen_label),
		cmocka_unit_test(test_C_url_sren),
		cmocka_unit_test(test_C_url_att),
		cmocka_unit_test(test_C_url_skg_skc),
		cmocka_unit_test(test_B5_post_body_mime_lines),
		cmocka_unit_test(test_B5_all_posts_mime_lines),
		cmocka_unit_test(test_B1_post_bad_csr_einval),
		cmocka_unit_test(test_A2_url_bad_label_einval),
		cmocka_unit_test(test_D_200_to_2_05_2_04),
		cmocka_unit_test(test_D_202_to_5_03),
		cmocka_unit_test(test_D_204_to_4_04_5_02),
		cmocka_unit_test(test_D_3xx_to_5_02),
		cmocka_unit_test(test_D_400_to_4_00),
		cmocka_unit_test(test_D_401_to_4_01),
		cmocka_unit_test(test_D_403_to_4_03),
		cmocka_unit_test(test_D_404_to_4_04),
		cmocka_unit_test(test_D_405_to_4_05),
		cmocka_unit_test(test_D_406_to_4_06),
		cmocka_unit_test(test_D_413_to_4_13),
		cmocka_unit_test(test_D_415_to_4_15),
		cmocka_unit_test(test_D_other_4xx_to_4_00),
		cmocka_unit_test(test_D_429_to_4_29),
		cmocka_unit_test(test_D_max_age_rows),
		cmocka_unit_test(test_D_500_to_5_00),
		cmocka_unit_test(test_D_501_to_5_01),
		cmocka_unit_test(test_D_502_to_5_02),
		cmocka_unit_test(test_D_503_to_5_03),
		cmocka_unit_test(test_D_504_to_5_04),
		cmocka_unit_test(test_D_other_5xx_to_5_00),
		cmocka_unit_test(test_D_odd_to_5_02),
		cmocka_unit_test(test_D_retry_after_delta),
		cmocka_unit_test(test_D_retry_after_date),
		cmocka_unit_test(test_D_retry_after_obsolete_dates),
		cmocka_unit_test(test_D_retry_after_past_date),
		cmocka_unit_test(test_D_retry_after_garbage),
		cmocka_unit_test(test_D_retry_after_date_after_2038),
		cmocka_unit_test(test_D_retry_after_huge),
		cmocka_unit_test(test_D_transport_connect_5_02),
		cmocka_unit_test(test_D_transport_dns_5_02),
		cmocka_unit_test(test_D_transport_tls_5_02),
		cmocka_unit_test(test_D_transport_protocol_5_02),
		cmocka_unit_test(test_D_transport_too_large_5_02),
		cmocka_unit_test(test_D_transport_timeout_5_04),
		cmocka_unit_test(test_D_202_retry_after_delta_max_age),
		cmocka_unit_test(test_D_202_retry_after_date_max_age),
		cmocka_unit_test(test_D_202_no_retry_after_default),
		cmocka_unit_test(test_D_202_retry_after_clamped),
		cmocka_unit_test(test_D_503_max_age),
		cmocka_unit_test(test_D_404_answer_4_04),
		cmocka_unit_test(test_D_401_answer_4_01),
		cmocka_unit_test(test_D_302_answer_5_02),
		cmocka_unit_test(test_D_500_answer_5_00),
		cmocka_unit_test(test_D_204_att_answer_4_04),
		cmocka_unit_test(test_D_204_post_answer_5_02),
		cmocka_unit_test(test_D_429_retry_after_max_age),
		cmocka_unit_test(test_D_429_no_retry_after_default),
		cmocka_unit_test(test_B6_ct_with_params),
		cmocka_unit_test(test_B6_ct_without_params),
		cmocka_unit_test(test_B6_ct_uppercase),
		cmocka_unit_test(test_B6_ct_missing_tolerated),
		cmocka_unit_test(test_B6_ct_text_html_5_02),
		cmocka_unit_test(test_B6_ct_diag_sanitized),
		cmocka_unit_test(test_B5_base64_line_breaks),
		cmocka_unit_test(test_B5_binary_der_tolerated),
		cmocka_unit_test(test_B5_garbage_body_5_02),
		cmocka_unit_test(test_B5_pkcs7_no_cert_5_02),
		cmocka_unit_test(test_B5_pkcs7_too_many_5_02),
		cmocka_unit_test(test_B5_not_pkcs7_5_02),
		cmocka_unit_test(test_B3_crts_281_payload_is_pkcs7),
		cmocka_unit_test(test_B3_resp_cf_not_offered_4_06),
		cmocka_unit_test(test_B4_crts_287_one_cert),
		cmocka_unit_test(test_B4_crts_287_chain_one_root),
		cmocka_unit_test(test_B4_crts_287_two_roots_4_06),
		cmocka_unit_test(test_B4_sen_287_match_csr_spki),
		cmocka_unit_test(test_B4_sen_287_other_key_4_06),
		cmocka_unit_test(test_B4_sen_287_same_key_twice_4_06),
		cmocka_unit_test(test_B4_sen_287_no_csr_4_00),
		cmocka_unit_test(test_B4_pick_none),
		cmocka_unit_test(test_B_att_200_285),
		cmocka_unit_test(test_B6_att_wrong_ct_5_02),
		cmocka_unit_test(test_B_att_not_sequence_5_02),
		cmocka_unit_test(test_F_skg_skc_no_boundary_5_02),
		cmocka_unit_test(test_D1_error_payload_is_copy),
		cmocka_unit_test(test_D_retry_max_age_clamped_or_default),
		cmocka_unit_test(test_D_printable_copy_of_untrusted_text),
		cmocka_unit_test(test_A3_links_all),
		cmocka_unit_test(test_H6_jpy_link),
		cmocka_unit_test(test_A3_links_mandatory_only),
		cmocka_unit_test(test_A3_links_well_known_root),
		cmocka_unit_test(test_A4_rt_ace_est_prefix),
		cmocka_unit_test(test_A4_rt_exact_sen),
		cmocka_unit_test(test_A4_ct_285),
		cmocka_unit_test(test_A4_ct_in_list),
		cmocka_unit_test(test_A4_rt_and_ct),
		cmocka_unit_test(test_A4_no_match_empty),
		cmocka_unit_test(test_A4_unknown_query_ignored),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
