/* test_jpy.c - the JPY message codec (H6): the well-formed message
 * and every malformed one the relay drops, byte by byte; the answer's
 * encoding and its framing overhead. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "estgw/jpy.h"

#define MAXH 32

static int dec(const uint8_t *b, size_t n, struct jpy_msg *m)
{
	return jpy_decode(b, n, MAXH, m);
}

#define DEC(...) do { \
	static const uint8_t in_[] = { __VA_ARGS__ }; \
	rc = dec(in_, sizeof(in_), &m); \
} while (0)

static void test_H6_well_formed(void **st)
{
	struct jpy_msg m;
	int rc;

	(void)st;
	DEC(0x82, 0x42, 0xaa, 0xbb, 0x43, 0x16, 0xfe, 0xfd);
	assert_int_equal(rc, 0);
	assert_int_equal(m.hdr_len, 2);
	assert_int_equal(m.hdr[0], 0xaa);
	assert_int_equal(m.content_len, 3);
	assert_int_equal(m.content[0], 0x16);
	/* empty header: opaque, allowed */
	DEC(0x82, 0x40, 0x41, 0x16);
	assert_int_equal(rc, 0);
	assert_int_equal(m.hdr_len, 0);
	/* non-shortest heads are well-formed CBOR (RFC 8949 §3) */
	DEC(0x98, 0x02, 0x58, 0x01, 0x01, 0x59, 0x00, 0x01, 0x16);
	assert_int_equal(rc, 0);
	assert_int_equal(m.content_len, 1);
}

static void test_H6_wrong_shape(void **st)
{
	struct jpy_msg m;
	int rc;

	(void)st;
	DEC(0x16, 0xfe, 0xfd, 0x00); /* a bare DTLS record: not CBOR array */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x81, 0x41, 0x01); /* one element */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x83, 0x41, 0x01, 0x41, 0x02, 0x41, 0x03); /* three */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82, 0x61, 0x61, 0x41, 0x16); /* text header */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82, 0x41, 0x01, 0x61, 0x16); /* text content */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82, 0x41, 0x01, 0x01); /* integer content */
	assert_int_equal(rc, -EBADMSG);
	DEC(0xa1, 0x41, 0x01, 0x41, 0x16); /* a map */
	assert_int_equal(rc, -EBADMSG);
	DEC(0xc6, 0x82, 0x41, 0x01, 0x41, 0x16); /* tagged */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82, 0x41, 0x01, 0x40); /* empty content */
	assert_int_equal(rc, -EBADMSG);
}

static void test_H6_indefinite_and_reserved(void **st)
{
	struct jpy_msg m;
	int rc;

	(void)st;
	DEC(0x9f, 0x41, 0x01, 0x41, 0x16, 0xff); /* indefinite array */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82, 0x5f, 0x41, 0x01, 0xff, 0x41, 0x16); /* indefinite bstr */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82, 0x41, 0x01, 0x5c, 0x16); /* reserved additional info 28 */
	assert_int_equal(rc, -EBADMSG);
}

static void test_H6_truncated_and_trailing(void **st)
{
	struct jpy_msg m;
	int rc;

	(void)st;
	rc = dec((const uint8_t *)"", 0, &m);
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82); /* array head only */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82, 0x42, 0x01); /* header shorter than its length */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82, 0x41, 0x01, 0x45, 0x16, 0xfe); /* content shorter */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82, 0x41, 0x01, 0x59, 0x00); /* length head cut */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82, 0x41, 0x01, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x16);
	assert_int_equal(rc, -EBADMSG); /* a 2^64-1 length */
	DEC(0x82, 0x41, 0x01, 0x41, 0x16, 0x00); /* one byte after the array */
	assert_int_equal(rc, -EBADMSG);
	DEC(0x82, 0x41, 0x01, 0x41, 0x16, 0x82, 0x41, 0x01, 0x41, 0x16); /* two */
	assert_int_equal(rc, -EBADMSG);
}

static void test_H6_header_bound(void **st)
{
	uint8_t b[2 + MAXH + 1 + 2 + 1];
	struct jpy_msg m;
	size_t n = 0;

	(void)st;
	b[n++] = 0x82;
	b[n++] = 0x58;
	b[n++] = MAXH + 1;
	memset(b + n, 0x5a, MAXH + 1);
	n += MAXH + 1;
	b[n++] = 0x41;
	b[n++] = 0x16;
	assert_int_equal(jpy_decode(b, n, MAXH, &m), -EMSGSIZE);
	assert_null(m.hdr);
	assert_int_equal(jpy_decode(b, n, MAXH + 1, &m), 0);
	assert_int_equal(m.hdr_len, MAXH + 1);
}

static void test_H6_encode_round_trip(void **st)
{
	uint8_t hdr[40], content[300], out[400];
	struct jpy_msg m;
	long n;

	(void)st;
	for (size_t i = 0; i < sizeof(hdr); i++)
		hdr[i] = (uint8_t)i;
	for (size_t i = 0; i < sizeof(content); i++)
		content[i] = (uint8_t)(i * 7);
	n = jpy_encode(hdr, 5, content, 20, out, sizeof(out));
	assert_int_equal(n, 1 + 1 + 5 + 1 + 20);
	assert_int_equal(out[0], 0x82);
	assert_int_equal(out[1], 0x45);
	assert_int_equal(out[7], 0x54);
	n = jpy_encode(hdr, 40, content, 300, out, sizeof(out));
	assert_int_equal(n, (long)jpy_overhead(40, 300) + 300);
	assert_int_equal(out[1], 0x58);
	assert_int_equal(out[2], 40);
	assert_int_equal(out[43], 0x59);
	assert_int_equal(out[44], 0x01);
	assert_int_equal(out[45], 0x2c);
	assert_int_equal(jpy_decode(out, (size_t)n, 40, &m), 0);
	assert_memory_equal(m.hdr, hdr, 40);
	assert_memory_equal(m.content, content, 300);
	assert_int_equal(jpy_encode(hdr, 40, content, 300, out, 345), -ENOSPC);
	assert_int_equal(jpy_encode(hdr, 0, content, 1, out, 4), 4);
	assert_int_equal(out[1], 0x40);
}

/* The draft's "3-6 bytes" of framing (plus the header) for UDP sizes. */
static void test_H6_overhead(void **st)
{
	(void)st;
	assert_int_equal(jpy_overhead(0, 1) , 3);
	assert_int_equal(jpy_overhead(8, 23), 3 + 8);
	assert_int_equal(jpy_overhead(8, 24), 4 + 8);
	assert_int_equal(jpy_overhead(24, 1024), 6 + 24);
	assert_int_equal(jpy_overhead(255, 65535), 6 + 255);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_H6_well_formed),
		cmocka_unit_test(test_H6_wrong_shape),
		cmocka_unit_test(test_H6_indefinite_and_reserved),
		cmocka_unit_test(test_H6_truncated_and_trailing),
		cmocka_unit_test(test_H6_header_bound),
		cmocka_unit_test(test_H6_encode_round_trip),
		cmocka_unit_test(test_H6_overhead),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
