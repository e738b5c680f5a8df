/* test_base64.c - Base64 codec (docs/conformance.md B1, B5): RFC 4648 vectors
 * and every malformed input the decoder must refuse. */
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
