/* test_masa.c - the MASA answer table (src/core/masa.c, H5): every row and the
 * voucher checks, with the voucher of the constrained-voucher examples
 * (fixtures/cv/voucher.hex; its nonce and serial-number are written out
 * here, read off the example by hand).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/masa.h"

#define C(c, d) EST_CODE(c, d)

static const uint8_t cv_nonce[] = { 0x57, 0xee, 0xd7, 0x86, 0xad, 0x40, 0x49, 0x07 };
static const char cv_serial[] = "JADA123456789";
static const struct masa_expect cv_expect = { cv_nonce, sizeof(cv_nonce), cv_serial };
static const struct est_xlate_limits lim = { 60, 2, 3600 };

struct blob {
	uint8_t b[4096];
	size_t n;
};

static void load_voucher(struct blob *o)
{
	const char *root = getenv("ESTGW_SOURCE_ROOT");
	char path[512];
	unsigned v;
	FILE *f;
	int c;

	snprintf(path, sizeof(path), "%s/tests/unit/fixtures/cv/voucher.hex",
		 root ? root : ".");
	f = fopen(path, "r");
	assert_non_null(f);
	o->n = 0;
	while ((c = fgetc(f)) != EOF) {
		if (c == '#') {
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
		} else if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
			ungetc(c, f);
			assert_int_equal(fscanf(f, "%2x", &v), 1);
			assert_true(o->n < sizeof(o->b));
			o->b[o->n++] = (uint8_t)v;
		}
	}
	fclose(f);
	/* tag 18, array of 4, protected {1: -7}, unprotected {} */
	assert_memory_equal(o->b, "\xd2\x84\x43\xa1\x01\x26\xa0", 7);
}

static struct est_http_resp http(long status, const char *ct, const char *body)
{
	struct est_http_resp in = {
		.err = EST_UP_OK,
		.status = status,
		.content_type = ct,
		.body = (const uint8_t *)body,
		.body_len = body ? strlen(body) : 0,
		.now = 1000,
	};
	return in;
}

/* Map @p in; check kind, code, diagnostic text and Max-Age (0: none). */
static void expect(const struct est_http_resp *in, const char *errmsg, enum masa_kind kind,
		   uint8_t code, const char *diag, uint32_t max_age)
{
	struct est_coap_resp out;

	assert_int_equal(masa_translate(in, errmsg, &cv_expect, &lim, &out), kind);
	assert_int_equal(out.code, code);
	assert_int_equal(out.cf, EST_CF_NONE);
	assert_non_null(out.payload);
	assert_int_equal(out.len, strlen(diag));
	assert_memory_equal(out.payload, diag, out.len);
	assert_int_equal(out.has_max_age, max_age != 0);
	if (max_age)
		assert_int_equal(out.max_age, max_age);
	est_coap_resp_free(&out);
}

static void test_H5_masa_no_answer(void **st)
{
	struct est_http_resp in = http(0, NULL, NULL);

	in.err = EST_UP_TIMEOUT;
	expect(&in, "Operation timed out", MASA_FAILED, C(5, 4), "MASA did not answer in time", 0);
	in.err = EST_UP_CONNECT;
	expect(&in, "Connection refused", MASA_FAILED, C(5, 2),
	       "MASA unreachable: Connection refused", 0);
	in.err = EST_UP_TLS;
	expect(&in, NULL, MASA_FAILED, C(5, 2), "MASA unreachable: ?", 0);
}

static void test_H5_masa_202_pending_with_max_age(void **st)
{
	struct est_http_resp in = http(202, "text/plain", "wait");

	expect(&in, NULL, MASA_PENDING, C(5, 3), "MASA: voucher not ready, retry later", 60);
	in.retry_after = "30";
	expect(&in, NULL, MASA_PENDING, C(5, 3), "MASA: voucher not ready, retry later", 30);
	in.retry_after = "1"; /* clamped to max_age_min */
	expect(&in, NULL, MASA_PENDING, C(5, 3), "MASA: voucher not ready, retry later", 2);
	in.retry_after = "Thu, 01 Jan 1970 00:20:00 GMT"; /* a date: 1200 - now */
	expect(&in, NULL, MASA_PENDING, C(5, 3), "MASA: voucher not ready, retry later", 200);
}

static void test_H5_masa_4xx_keeps_the_est_code_and_reason(void **st)
{
	struct est_http_resp in = http(404, "text/plain", "unknown device");

	expect(&in, NULL, MASA_FAILED, C(4, 4), "MASA: unknown device", 0);
	in = http(403, "text/plain", "not \"yours\"\n");
	expect(&in, NULL, MASA_FAILED, C(4, 3), "MASA: not ?yours??", 0);
	in = http(401, NULL, NULL);
	expect(&in, NULL, MASA_FAILED, C(4, 1), "MASA: refused", 0);
	in = http(400, NULL, "bad");
	expect(&in, NULL, MASA_FAILED, C(4, 0), "MASA: bad", 0);
	in = http(418, NULL, "teapot");
	expect(&in, NULL, MASA_FAILED, C(4, 0), "MASA: teapot", 0);
	in = http(429, NULL, "slow down");
	expect(&in, NULL, MASA_FAILED, C(4, 29), "MASA: slow down", 60);
	in.retry_after = "120";
	expect(&in, NULL, MASA_FAILED, C(4, 29), "MASA: slow down", 120);
}

static void test_H5_masa_4xx_reason_is_cut(void **st)
{
	char body[400], want[200];
	struct est_http_resp in;

	memset(body, 'r', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	in = http(404, "text/plain", body);
	snprintf(want, sizeof(want), "MASA: %.159s", body);
	expect(&in, NULL, MASA_FAILED, C(4, 4), want, 0);
}

static void test_H5_masa_other_status_5_02(void **st)
{
	static const long statuses[] = { 100, 201, 204, 302, 500, 501, 503, 504, 600 };
	char diag[64];

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		struct est_http_resp in = http(statuses[i], NULL, "x");
		in.retry_after = "30"; /* never a Max-Age on these */
		snprintf(diag, sizeof(diag), "MASA answered HTTP %ld", statuses[i]);
		expect(&in, NULL, MASA_FAILED, C(5, 2), diag, 0);
	}
}

static void test_H5_masa_200_not_a_voucher(void **st)
{
	struct blob v;
	struct est_http_resp in = http(200, "application/cbor", "x");

	expect(&in, NULL, MASA_FAILED, C(5, 2), "MASA answer is not application/voucher+cose", 0);
	in = http(200, NULL, "x");
	expect(&in, NULL, MASA_FAILED, C(5, 2), "MASA answer is not application/voucher+cose", 0);
	in = http(200, "application/voucher+cose", "garbage");
	expect(&in, NULL, MASA_FAILED, C(5, 2), "MASA answer is not a COSE-signed voucher", 0);
	load_voucher(&v);
	in.body = v.b;
	in.body_len = v.n - 1; /* cut short */
	expect(&in, NULL, MASA_FAILED, C(5, 2), "MASA answer is not a COSE-signed voucher", 0);
}

static void test_H5_masa_voucher_must_match_the_request(void **st)
{
	static const uint8_t other_nonce[] = { 0x57, 0xee, 0xd7, 0x86, 0xad, 0x40, 0x49, 0x08 };
	const struct masa_expect wrong[] = {
		{ other_nonce, sizeof(other_nonce), cv_serial },
		{ cv_nonce, sizeof(cv_nonce) - 1, cv_serial },
		{ cv_nonce, sizeof(cv_nonce), "JADA123456780" },
		{ cv_nonce, sizeof(cv_nonce), "JADA12345678" },
	};
	struct est_http_resp in = http(200, "application/voucher+cose", NULL);
	struct est_coap_resp out;
	struct blob v;

	load_voucher(&v);
	in.body = v.b;
	in.body_len = v.n;
	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		assert_int_equal(masa_translate(&in, NULL, &wrong[i], &lim, &out), MASA_FAILED);
		assert_int_equal(out.code, C(5, 2));
		assert_string_equal((char *)out.payload,
				    "voucher nonce or serial-number does not match the request");
		est_coap_resp_free(&out);
	}
}

/* The voucher goes on 2.04 CF 836 with its unprotected header emptied. */
static void test_H5_masa_voucher_2_04_unprotected_header_stripped(void **st)
{
	static const char *const types[] = {
		"application/voucher+cose", "Application/Voucher+COSE; charset=x",
		"application/voucher-cose+cbor",
	};
	struct est_http_resp in = http(200, NULL, NULL);
	struct est_coap_resp out;
	struct blob v, with_kid;

	load_voucher(&v);
	/* the same voucher with {4: h'0102'} as its unprotected header */
	memcpy(with_kid.b, v.b, 6);
	memcpy(with_kid.b + 6, "\xa1\x04\x42\x01\x02", 5);
	memcpy(with_kid.b + 11, v.b + 7, v.n - 7);
	with_kid.n = v.n + 4;
	in.body = with_kid.b;
	in.body_len = with_kid.n;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		in.content_type = types[i];
		in.retry_after = "30";
		assert_int_equal(masa_translate(&in, NULL, &cv_expect, &lim, &out), MASA_VOUCHER);
		assert_int_equal(out.code, C(2, 4));
		assert_int_equal(out.cf, MASA_CF_VOUCHER_COSE);
		assert_int_equal(out.has_max_age, 0);
		assert_int_equal(out.len, v.n);
		assert_memory_equal(out.payload, v.b, v.n);
		est_coap_resp_free(&out);
	}
}

static void test_H5_masa_voucher_media_types(void **st)
{
	assert_true(masa_is_voucher_type("application/voucher+cose"));
	assert_true(masa_is_voucher_type("application/voucher-cose+cbor"));
	assert_true(masa_is_voucher_type("APPLICATION/VOUCHER+COSE ; x=y"));
	assert_false(masa_is_voucher_type("application/voucher+cose2"));
	assert_false(masa_is_voucher_type("application/voucher"));
	assert_false(masa_is_voucher_type(""));
	assert_false(masa_is_voucher_type(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_H5_masa_no_answer),
		cmocka_unit_test(test_H5_masa_202_pending_with_max_age),
		cmocka_unit_test(test_H5_masa_4xx_keeps_the_est_code_and_reason),
		cmocka_unit_test(test_H5_masa_4xx_reason_is_cut),
		cmocka_unit_test(test_H5_masa_other_status_5_02),
		cmocka_unit_test(test_H5_masa_200_not_a_voucher),
		cmocka_unit_test(test_H5_masa_voucher_must_match_the_request),
		cmocka_unit_test(test_H5_masa_voucher_2_04_unprotected_header_stripped),
		cmocka_unit_test(test_H5_masa_voucher_media_types),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
