/* test_base64.c - Base64 codec (B1, B5): RFC 4648 vectors, the exact
 * MIME line layout of request bodies, and every malformed input the decoder
 * must refuse. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "estgw/codec.h"

struct vec {
	const char *raw;
	const char *b64;
};

/* RFC 4648 section 10 */
static const struct vec rfc4648[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
};

#define NVEC (sizeof(rfc4648) / sizeof(rfc4648[0]))

/** Decode a C string; returns the codec's result, output in @p out. */
static int dec(const char *s, uint8_t *out, size_t outsize, size_t *n)
{
	*n = (size_t)-1;
	return est_b64_decode(s, strlen(s), out, outsize, n);
}

static void expect_decode(const char *s, const char *want)
{
	uint8_t out[64];
	size_t n;

	assert_int_equal(dec(s, out, sizeof(out), &n), 0);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);
}

static void expect_reject(const char *s)
{
	uint8_t out[64];
	size_t n;

	assert_int_equal(dec(s, out, sizeof(out), &n), -EINVAL);
}

static void b5_rfc4648_encode(void **state)
{
	char out[16];
	size_t i, n;

	for (i = 0; i < NVEC; i++) {
		size_t len = strlen(rfc4648[i].raw);

		assert_int_equal(est_b64_encoded_len(len), strlen(rfc4648[i].b64));
		assert_int_equal(est_b64_encode((const uint8_t *)rfc4648[i].raw, len,
						out, sizeof(out), &n), 0);
		assert_int_equal(n, strlen(rfc4648[i].b64));
		assert_string_equal(out, rfc4648[i].b64);
	}
}

static void b5_rfc4648_decode_padded(void **state)
{
	size_t i;

	for (i = 0; i < NVEC; i++)
		expect_decode(rfc4648[i].b64, rfc4648[i].raw);
}

static void b5_rfc4648_decode_unpadded(void **state)
{
	expect_decode("Zg", "f");
	expect_decode("Zm8", "fo");
	expect_decode("Zm9vYg", "foob");
	expect_decode("Zm9vYmE", "fooba");
}

/* mbedtls_base64_decode returns 15 of 16 bytes for this (docs/libraries.md). */
static void b5_unpadded_decodes_fully(void **state)
{
	uint8_t raw[16], out[32];
	char text[32];
	size_t i, n;

	for (i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)(0xa5 ^ (i * 37));
	assert_int_equal(est_b64_encode(raw, sizeof(raw), text, sizeof(text), &n), 0);
	assert_int_equal(n, 24);
	assert_string_equal(text + 22, "==");
	text[22] = '\0';
	assert_int_equal(est_b64_decode(text, 22, out, sizeof(out), &n), 0);
	assert_int_equal(n, 16);
	assert_memory_equal(out, raw, 16);
}

static void b5_whitespace_skipped(void **state)
{
	expect_decode("Zm9v\r\nYmFy\r\n", "foobar");
	expect_decode("Zm9v\nYmFy\n", "foobar");
	expect_decode("Zm9v\rYmFy", "foobar");
	expect_decode(" Zm 9v\tYm\tFy ", "foobar");
	expect_decode("Zm9vYg=\r\n=", "foob");
	expect_decode("Zm9vYg ==\n", "foob");
	expect_decode("\r\n \t", "");
}

static void b5_bad_characters(void **state)
{
	static const char *const bad[] = {
		"Zm9v-mFy", "Zm9v_mFy", "Zm9v*mFy", "Zm9v.YmFy", "Zm9v\vYmFy",
		"Zm9v\fYmFy", "Zm9v\x80YmFy", "Zm9v\xffYmFy",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_reject(bad[i]);
}

static void b5_embedded_nul_rejected(void **state)
{
	uint8_t out[16];
	size_t n;

	assert_int_equal(est_b64_decode("Zm9v\0YmFy", 9, out, sizeof(out), &n), -EINVAL);
}

static void b5_bad_padding(void **state)
{
	expect_reject("Zg=");     /* padding incomplete */
	expect_reject("Zm8==");   /* one '=' too many */
	expect_reject("Zm9v=");   /* pad after a full quantum */
	expect_reject("Zm9v==");
	expect_reject("Zg===");
	expect_reject("=");
	expect_reject("==");
	expect_reject("====");
}

static void b5_misplaced_padding(void **state)
{
	expect_reject("Z=g=");
	expect_reject("=Zg=");
	expect_reject("Zg==Zg==");   /* padding only at the very end */
	expect_reject("Zm8=Zm8=");
	expect_reject("Zg=\n=Zg");
}

static void b5_dangling_symbol(void **state)
{
	expect_reject("Z");
	expect_reject("Zm9vY");
	expect_reject("Zm9vY=");
	expect_reject("Zm9vY==");
	expect_reject("Zm9vY===");
	expect_reject("Zm9v\nY\n");
}

static void b5_nonzero_pad_bits(void **state)
{
	expect_reject("Zh==");   /* 'h' leaves 0001 in the unused bits */
	expect_reject("Zh");
	expect_reject("Zm9=");   /* '9' leaves 01 */
	expect_reject("Zm9");
	expect_decode("Zg==", "f");
	expect_decode("Zm8=", "fo");
}

static void b5_decode_output_too_small(void **state)
{
	uint8_t out[6];
	size_t n;

	assert_int_equal(dec("Zm9vYmFy", out, 6, &n), 0);
	assert_int_equal(dec("Zm9vYmFy", out, 5, &n), -ENOSPC);
	assert_int_equal(dec("Zm9vYmE=", out, 5, &n), 0);
	assert_int_equal(dec("Zm9vYmE=", out, 4, &n), -ENOSPC);
	assert_int_equal(dec("Zm9vYg", out, 3, &n), -ENOSPC);
	assert_int_equal(dec("Zg==", out, 0, &n), -ENOSPC);
	assert_int_equal(dec("", out, 0, &n), 0);
	assert_int_equal(n, 0);
}

static void b5_encode_output_too_small(void **state)
{
	char out[9];
	size_t n;

	assert_int_equal(est_b64_encode((const uint8_t *)"foobar", 6, out, 9, &n), 0);
	assert_int_equal(est_b64_encode((const uint8_t *)"foobar", 6, out, 8, &n), -ENOSPC);
	assert_int_equal(est_b64_encode((const uint8_t *)"f", 1, out, 4, &n), -ENOSPC);
	assert_int_equal(est_b64_encode(NULL, 0, out, 1, &n), 0);
	assert_int_equal(n, 0);
	assert_string_equal(out, "");
	assert_int_equal(est_b64_encode(NULL, 0, out, 0, &n), -ENOSPC);
}

static void b5_encoded_len_saturates(void **state)
{
	assert_int_equal(est_b64_encoded_len(0), 0);
	assert_int_equal(est_b64_encoded_len(3), 4);
	assert_int_equal(est_b64_encoded_len(4), 8);
	assert_int_equal(est_b64_encoded_len(SIZE_MAX), SIZE_MAX);
	assert_int_equal(est_b64_encoded_len(SIZE_MAX / 4 * 3 + 3), SIZE_MAX);
}

/* Every length 0..70 and every byte value survive the round trip. */
static void b1_round_trip(void **state)
{
	uint8_t raw[256], back[256];
	char text[360];
	size_t len, i, n, m;

	for (i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)i;
	for (len = 0; len <= sizeof(raw); len += len < 70 ? 1 : 186) {
		assert_int_equal(est_b64_encode(raw, len, text, sizeof(text), &n), 0);
		assert_int_equal(n, est_b64_encoded_len(len));
		assert_int_equal(est_b64_decode(text, n, back, sizeof(back), &m), 0);
		assert_int_equal(m, len);
		assert_memory_equal(back, raw, len);
	}
}

/* The documented output bound, (inlen / 4 + 1) * 3, is always enough. */
static void b5_documented_bound(void **state)
{
	uint8_t out[(8 / 4 + 1) * 3];
	size_t n;

	assert_int_equal(dec("Zm9vYmFy", out, sizeof(out), &n), 0);
	assert_int_equal(dec("Zm9vYg==", out, sizeof(out), &n), 0);
}

/* --- MIME lines for request bodies (B5; RFC 2045 §6.8) ------------- */

/** MIME-encode @p len bytes of @p raw into @p text; returns the length. */
static size_t mime(const uint8_t *raw, size_t len, char *text, size_t size)
{
	size_t n = (size_t)-1;

	assert_int_equal(est_b64_encode_mime(raw, len, text, size, &n), 0);
	assert_int_equal(n, strlen(text));
	assert_int_equal(n, est_b64_mime_len(len));
	return n;
}

static void b5_mime_line_is_64(void **state)
{
	assert_int_equal(EST_B64_LINE, 64);
	assert_true(EST_B64_LINE <= 76);  /* RFC 2045 §6.8 */
	assert_int_equal(EST_B64_LINE % 4, 0); /* whole quanta per line */
}

/* Nothing in, nothing out: no lone CRLF. */
static void b5_mime_empty(void **state)
{
	char text[4] = "x";
	size_t n = 9;

	assert_int_equal(est_b64_mime_len(0), 0);
	assert_int_equal(est_b64_encode_mime(NULL, 0, text, sizeof(text), &n), 0);
	assert_int_equal(n, 0);
	assert_string_equal(text, "");
	assert_int_equal(est_b64_encode_mime(NULL, 0, text, 0, &n), -ENOSPC);
}

/* A short text is one line, and it ends in CRLF too. */
static void b5_mime_short_line(void **state)
{
	char text[16];

	assert_int_equal(mime((const uint8_t *)"f", 1, text, sizeof(text)), 6);
	assert_string_equal(text, "Zg==\r\n");
	assert_int_equal(mime((const uint8_t *)"foobar", 6, text, sizeof(text)), 10);
	assert_string_equal(text, "Zm9vYmFy\r\n");
}

static const char foobar8[] = "foobarfoobarfoobarfoobarfoobarfoobarfoobarfoobar";
#define LINE64 "Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFy"

/* 48 bytes fill one line exactly: 64 characters, one CRLF, no empty line. */
static void b5_mime_exact_line(void **state)
{
	char text[80];

	assert_int_equal(sizeof(foobar8) - 1, 48);
	assert_int_equal(strlen(LINE64), 64);
	assert_int_equal(mime((const uint8_t *)foobar8, 48, text, sizeof(text)), 66);
	assert_string_equal(text, LINE64 "\r\n");
}

/* 47 bytes: still one line of 64 (the last quantum padded). */
static void b5_mime_one_short_of_a_line(void **state)
{
	char text[80];

	assert_int_equal(mime((const uint8_t *)foobar8, 47, text, sizeof(text)), 66);
	assert_string_equal(text, "Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmE=\r\n");
}

/* 49 bytes: a full line, then a second line with the one byte left. */
static void b5_mime_one_past_a_line(void **state)
{
	uint8_t raw[49];
	char text[80];

	memcpy(raw, foobar8, 48);
	raw[48] = 'f';
	assert_int_equal(mime(raw, 49, text, sizeof(text)), 72);
	assert_string_equal(text, LINE64 "\r\nZg==\r\n");
}

/* Two and three exact lines: every line 64, CRLF after each, nothing more. */
static void b5_mime_exact_multiples(void **state)
{
	uint8_t raw[144];
	char text[220];
	size_t k;

	for (k = 0; k < 3; k++)
		memcpy(raw + 48 * k, foobar8, 48);
	assert_int_equal(mime(raw, 96, text, sizeof(text)), 132);
	assert_string_equal(text, LINE64 "\r\n" LINE64 "\r\n");
	assert_int_equal(mime(raw, 144, text, sizeof(text)), 198);
	assert_string_equal(text, LINE64 "\r\n" LINE64 "\r\n" LINE64 "\r\n");
}

/** Check the layout of a MIME text: lines of exactly 64 but the last
 *  (1..64), each ending in CRLF, no CR or LF elsewhere, no empty line. */
static void expect_mime_layout(const char *t, size_t n)
{
	size_t i = 0, line;

	assert_true(n >= 6);
	while (i < n) {
		line = strcspn(t + i, "\r\n");
		assert_true(line > 0 && line <= 64);
		assert_true(i + line + 2 <= n);
		assert_memory_equal(t + i + line, "\r\n", 2);
		i += line + 2;
		if (i < n)
			assert_int_equal(line, 64);
	}
	assert_int_equal(i, n);
}

/* Every length 0..400: the layout holds, the text without its CRLFs is the
 * one-line encoding, and it decodes back. */
static void b5_mime_layout_all_lengths(void **state)
{
	static uint8_t raw[400], back[400];
	static char text[700], flat[700], one[600];
	size_t len, i, n, f, m, o;

	for (i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)(i * 7 + 3);
	for (len = 0; len <= sizeof(raw); len++) {
		n = mime(raw, len, text, sizeof(text));
		assert_int_equal(n, est_b64_encoded_len(len) +
				    2 * ((len + 47) / 48));
		if (len)
			expect_mime_layout(text, n);
		for (i = 0, f = 0; i < n; i++)
			if (text[i] != '\r' && text[i] != '\n')
				flat[f++] = text[i];
		assert_int_equal(est_b64_encode(raw, len, one, sizeof(one), &o), 0);
		assert_int_equal(f, o);
		assert_memory_equal(flat, one, o);
		assert_int_equal(est_b64_decode(text, n, back, sizeof(back), &m), 0);
		assert_int_equal(m, len);
		assert_memory_equal(back, raw, len);
	}
}

static void b5_mime_output_too_small(void **state)
{
	char text[80];
	size_t n;

	/* needs est_b64_mime_len + 1 for the NUL */
	assert_int_equal(est_b64_encode_mime((const uint8_t *)"f", 1, text, 6, &n),
			 -ENOSPC);
	assert_int_equal(est_b64_encode_mime((const uint8_t *)"f", 1, text, 7, &n), 0);
	assert_int_equal(est_b64_encode_mime((const uint8_t *)foobar8, 48, text,
					     66, &n), -ENOSPC);
	assert_int_equal(est_b64_encode_mime((const uint8_t *)foobar8, 48, text,
					     67, &n), 0);
}

static void b5_mime_len_values(void **state)
{
	assert_int_equal(est_b64_mime_len(1), 6);
	assert_int_equal(est_b64_mime_len(47), 66);
	assert_int_equal(est_b64_mime_len(48), 66);
	assert_int_equal(est_b64_mime_len(49), 72);
	assert_int_equal(est_b64_mime_len(96), 132);
	assert_int_equal(est_b64_mime_len(SIZE_MAX), SIZE_MAX);
	assert_int_equal(est_b64_mime_len(SIZE_MAX / 66 * 48), SIZE_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(b5_rfc4648_encode),
		cmocka_unit_test(b5_rfc4648_decode_padded),
		cmocka_unit_test(b5_rfc4648_decode_unpadded),
		cmocka_unit_test(b5_unpadded_decodes_fully),
		cmocka_unit_test(b5_whitespace_skipped),
		cmocka_unit_test(b5_bad_characters),
		cmocka_unit_test(b5_embedded_nul_rejected),
		cmocka_unit_test(b5_bad_padding),
		cmocka_unit_test(b5_misplaced_padding),
		cmocka_unit_test(b5_dangling_symbol),
		cmocka_unit_test(b5_nonzero_pad_bits),
		cmocka_unit_test(b5_decode_output_too_small),
		cmocka_unit_test(b5_encode_output_too_small),
		cmocka_unit_test(b5_encoded_len_saturates),
		cmocka_unit_test(b1_round_trip),
		cmocka_unit_test(b5_documented_bound),
		cmocka_unit_test(b5_mime_line_is_64),
		cmocka_unit_test(b5_mime_empty),
		cmocka_unit_test(b5_mime_short_line),
		cmocka_unit_test(b5_mime_exact_line),
		cmocka_unit_test(b5_mime_one_short_of_a_line),
		cmocka_unit_test(b5_mime_one_past_a_line),
		cmocka_unit_test(b5_mime_exact_multiples),
		cmocka_unit_test(b5_mime_layout_all_lengths),
		cmocka_unit_test(b5_mime_output_too_small),
		cmocka_unit_test(b5_mime_len_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
