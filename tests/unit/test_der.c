/* test_der.c - DER walkers (docs/conformance.md B4, B5, G6): TLV headers,
 * body detection, PKCS#7 certs-only, certificate and CSR fields. Real
 * fixtures come from fixtures/mkfixtures.sh (openssl CLI) at build time;
 * malformed inputs are built here from small pieces. mbedTLS is the
 * independent cross-check. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <mbedtls/x509_crt.h>

#include "estgw/codec.h"
#include "codec_fixtures.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* --- a tiny DER writer for hand-built inputs ---------------------------- */

struct buf {
	uint8_t b[4096];
	size_t n;
};

static void put(struct buf *o, const void *p, size_t len)
{
	assert_true(len <= sizeof(o->b) - o->n);
	memcpy(o->b + o->n, p, len);
	o->n += len;
}

static void put_hex(struct buf *o, const char *hex)
{
	unsigned v;

	while (*hex) {
		if (*hex == ' ') {
			hex++;
			continue;
		}
		assert_true(o->n < sizeof(o->b));
		assert_int_equal(sscanf(hex, "%2x", &v), 1);
		o->b[o->n++] = (uint8_t)v;
		hex += 2;
	}
}

/** Append tag + minimal length + @p in's bytes. */
static void put_tlv(struct buf *o, uint8_t tag, const struct buf *in)
{
	uint8_t h[4] = { tag };
	size_t hl = 2;

	if (in->n < 0x80) {
		h[1] = (uint8_t)in->n;
	} else if (in->n < 0x100) {
		h[1] = 0x81;
		h[2] = (uint8_t)in->n;
		hl = 3;
	} else {
		h[1] = 0x82;
		h[2] = (uint8_t)(in->n >> 8);
		h[3] = (uint8_t)in->n;
		hl = 4;
	}
	put(o, h, hl);
	put(o, in->b, in->n);
}

static int slice_eq(struct est_slice s, const void *p, size_t len)
{
	return s.len == len && memcmp(s.ptr, p, len) == 0;
}

#define OID_SIGNED_DATA "06 09 2a 86 48 86 f7 0d 01 07 02"
#define OID_DATA        "06 09 2a 86 48 86 f7 0d 01 07 01"
#define SD_HEAD         "02 01 01 31 00 30 0b " OID_DATA

/** ContentInfo { @p oid_hex, [0] { SEQUENCE { @p sd } } } + @p trail_hex. */
static void p7_wrap(struct buf *o, const char *oid_hex, const struct buf *sd,
		    const char *trail_hex)
{
	struct buf seq = { .n = 0 }, ctx = { .n = 0 }, ci = { .n = 0 };

	put_tlv(&seq, 0x30, sd);
	put_tlv(&ctx, 0xa0, &seq);
	put_hex(&ci, oid_hex);
	put(&ci, ctx.b, ctx.n);
	o->n = 0;
	put_tlv(o, 0x30, &ci);
	put_hex(o, trail_hex);
}

/** A certs-only PKCS#7 whose SignedData content is SD_HEAD, @p mid_hex, SET{}. */
static void p7_simple(struct buf *o, const char *mid_hex)
{
	struct buf sd = { .n = 0 };

	put_hex(&sd, SD_HEAD);
	put_hex(&sd, mid_hex);
	put_hex(&sd, "31 00");
	p7_wrap(o, OID_SIGNED_DATA, &sd, "");
}

static int p7_count(const uint8_t *der, size_t len, size_t *n)
{
	struct est_slice certs[EST_PKCS7_MAX_CERTS];

	return est_pkcs7_certs(der, len, certs, ARRAY_LEN(certs), n);
}

/* --- est_der_tlv ------------------------------------------------------- */

static int tlv_hex(const char *hex, uint8_t *tag, struct est_slice *c, size_t *total)
{
	struct buf b = { .n = 0 };
	static uint8_t keep[64];

	put_hex(&b, hex);
	memcpy(keep, b.b, b.n);
	return est_der_tlv(keep, b.n, tag, c, total);
}

static void g6_tlv_short_and_long_form(void **state)
{
	uint8_t tag, big[300] = { 0x04, 0x82, 0x01, 0x00 };
	struct est_slice c;
	size_t total;

	assert_int_equal(tlv_hex("30 00", &tag, &c, &total), 0);
	assert_int_equal(tag, 0x30);
	assert_int_equal(c.len, 0);
	assert_int_equal(total, 2);
	assert_int_equal(tlv_hex("02 01 05 ff", &tag, &c, &total), 0);
	assert_int_equal(c.len, 1);
	assert_int_equal(c.ptr[0], 5);
	assert_int_equal(total, 3);
	assert_int_equal(est_der_tlv(big, sizeof(big), &tag, &c, &total), 0);
	assert_int_equal(c.len, 256);
	assert_ptr_equal(c.ptr, big + 4);
	assert_int_equal(total, 260);
	big[1] = 0x81;
	big[2] = 0x80;
	assert_int_equal(est_der_tlv(big, sizeof(big), &tag, &c, &total), 0);
	assert_int_equal(c.len, 128);
	assert_int_equal(total, 131);
	/* the same length with a leading zero octet is not DER */
	big[1] = 0x82;
	big[2] = 0x00;
	big[3] = 0x80;
	assert_int_equal(est_der_tlv(big, sizeof(big), &tag, &c, &total), -EINVAL);
}

static void g6_tlv_truncated(void **state)
{
	uint8_t tag;
	struct est_slice c;
	size_t total;

	assert_int_equal(est_der_tlv((const uint8_t *)"", 0, &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 01", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 03 02 01", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 81", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 82 01", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 82 01 00 00", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 81 80 00", &tag, &c, &total), -EINVAL);
}

static void g6_tlv_indefinite_and_bad_lengths(void **state)
{
	uint8_t tag;
	struct est_slice c;
	size_t total;

	assert_int_equal(tlv_hex("30 80 00 00", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 ff 00 00", &tag, &c, &total), -EINVAL);
	/* non-minimal: long form for < 128, leading zero octet */
	assert_int_equal(tlv_hex("30 81 01 00", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 82 00 80", &tag, &c, &total), -EINVAL);
	/* multi-byte tag */
	assert_int_equal(tlv_hex("1f 01 00", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("bf 81 00 00", &tag, &c, &total), -EINVAL);
}

static void g6_tlv_length_overflow(void **state)
{
	uint8_t tag;
	struct est_slice c;
	size_t total;

	/* 2^31 - 1 passes the form check but not the buffer check */
	assert_int_equal(tlv_hex("30 84 7f ff ff ff 00", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 84 80 00 00 00 00", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 84 ff ff ff ff 00", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 85 01 00 00 00 00 00", &tag, &c, &total), -EINVAL);
	assert_int_equal(tlv_hex("30 88 ff ff ff ff ff ff ff f0 00", &tag, &c, &total),
			 -EINVAL);
}

/* --- est_der_is_single_sequence / est_body_to_der ----------------------- */

static void b5_single_sequence(void **state)
{
	assert_true(est_der_is_single_sequence((const uint8_t *)"\x30\x00", 2));
	assert_false(est_der_is_single_sequence((const uint8_t *)"\x30\x00\x00", 3));
	assert_false(est_der_is_single_sequence((const uint8_t *)"\x31\x00", 2));
	assert_false(est_der_is_single_sequence((const uint8_t *)"\x30\x01", 2));
	assert_false(est_der_is_single_sequence((const uint8_t *)"", 0));
	assert_false(est_der_is_single_sequence(NULL, 0));
	assert_true(est_der_is_single_sequence(fx_p7_3, sizeof(fx_p7_3)));
	assert_true(est_der_is_single_sequence(fx_csr, sizeof(fx_csr)));
	assert_false(est_der_is_single_sequence(fx_p7_3, sizeof(fx_p7_3) - 1));
	assert_false(est_der_is_single_sequence(fx_p7_3_b64, sizeof(fx_p7_3_b64)));
}

static void expect_body(const uint8_t *body, size_t len, const uint8_t *want,
			size_t wantlen, int binary)
{
	uint8_t *der = NULL;
	size_t n = 0;
	int was_binary = -1;

	assert_int_equal(est_body_to_der(body, len, &der, &n, &was_binary), 0);
	assert_int_equal(was_binary, binary);
	assert_int_equal(n, wantlen);
	assert_memory_equal(der, want, n);
	free(der);
}

static void expect_body_reject(const void *body, size_t len)
{
	uint8_t *der = NULL;
	size_t n = 0;
	int was_binary = -1;

	assert_int_equal(est_body_to_der(body, len, &der, &n, &was_binary), -EINVAL);
	assert_null(der);
}

static void b5_body_base64_lf(void **state)
{
	expect_body(fx_p7_3_b64, sizeof(fx_p7_3_b64), fx_p7_3, sizeof(fx_p7_3), 0);
}

/* Re-wrap the Base64 text at 76 columns with CRLF, no padding stripped. */
static void b5_body_base64_crlf(void **state)
{
	static uint8_t text[2048], crlf[2200];
	size_t n, i, o = 0;

	assert_int_equal(est_b64_encode(fx_p7_3, sizeof(fx_p7_3), (char *)text,
					sizeof(text), &n), 0);
	for (i = 0; i < n; i++) {
		crlf[o++] = text[i];
		if (i % 76 == 75) {
			crlf[o++] = '\r';
			crlf[o++] = '\n';
		}
	}
	crlf[o++] = '\r';
	crlf[o++] = '\n';
	expect_body(crlf, o, fx_p7_3, sizeof(fx_p7_3), 0);
	expect_body(text, n, fx_p7_3, sizeof(fx_p7_3), 0);
}

/** Cut the one-line Base64 @p text into lines of @p width joined by @p sep,
 *  with @p sep after the last line too when @p trailing. */
static size_t rewrap(const uint8_t *text, size_t n, size_t width,
		     const char *sep, int trailing, uint8_t *out)
{
	size_t i, o = 0, k, slen = strlen(sep);

	for (i = 0; i < n; i += k) {
		k = n - i < width ? n - i : width;
		memcpy(out + o, text + i, k);
		o += k;
		if (i + k < n || trailing) {
			memcpy(out + o, sep, slen);
			o += slen;
		}
	}
	return o;
}

/* RFC 8951: a CA may send any line layout. One line, 64 and 76 columns
 * (PEM and MIME), odd widths, LF or CRLF, with or without a final break:
 * all decode to the same DER. */
static void b5_body_base64_layouts(void **state)
{
	static const size_t widths[] = { 4, 60, 64, 72, 76, 80, 1000, 4096 };
	static const char *const seps[] = { "\n", "\r\n" };
	static uint8_t text[2048], body[3000];
	size_t n, w, s, t, len;

	assert_int_equal(est_b64_encode(fx_p7_3, sizeof(fx_p7_3), (char *)text,
					sizeof(text), &n), 0);
	assert_true(n > 76 * 3);
	expect_body(text, n, fx_p7_3, sizeof(fx_p7_3), 0); /* one line */
	for (w = 0; w < sizeof(widths) / sizeof(widths[0]); w++)
		for (s = 0; s < 2; s++)
			for (t = 0; t < 2; t++) {
				len = rewrap(text, n, widths[w], seps[s], (int)t, body);
				assert_true(len < sizeof(body));
				expect_body(body, len, fx_p7_3, sizeof(fx_p7_3), 0);
			}
}

static void b5_body_binary(void **state)
{
	expect_body(fx_p7_3, sizeof(fx_p7_3), fx_p7_3, sizeof(fx_p7_3), 1);
	expect_body(fx_csr, sizeof(fx_csr), fx_csr, sizeof(fx_csr), 1);
	expect_body((const uint8_t *)"\x30\x00", 2, (const uint8_t *)"\x30\x00", 2, 1);
}

static void b5_body_garbage(void **state)
{
	static const char html[] = "<html><body>502 Bad Gateway</body></html>";

	expect_body_reject(html, strlen(html));
	expect_body_reject("", 0);
	expect_body_reject("\r\n", 2);
	expect_body_reject("AgEA", 4);           /* INTEGER 0: not a SEQUENCE */
	expect_body_reject("MAAA", 4);           /* 30 00 00: trailing byte */
	expect_body_reject("MAE=", 4);           /* 30 01: truncated */
	expect_body_reject("\x30\x00\x00", 3);   /* binary with trailing byte */
	expect_body_reject(fx_p7_3, sizeof(fx_p7_3) - 1);
	expect_body_reject(fx_p7_3_b64, sizeof(fx_p7_3_b64) - 8);
}

/* --- est_pkcs7_certs ---------------------------------------------------- */

/* The chain comes back in full, each slice a certificate mbedTLS accepts. */
static void b4_pkcs7_three_certs(void **state)
{
	const uint8_t *want[] = { fx_root, fx_sub, fx_ee };
	const size_t wantlen[] = { sizeof(fx_root), sizeof(fx_sub), sizeof(fx_ee) };
	struct est_slice certs[3];
	size_t n, i, k, found = 0;

	assert_int_equal(est_pkcs7_certs(fx_p7_3, sizeof(fx_p7_3), certs, 3, &n), 0);
	assert_int_equal(n, 3);
	for (i = 0; i < n; i++) {
		assert_true(certs[i].ptr >= fx_p7_3);
		assert_true(certs[i].ptr + certs[i].len <= fx_p7_3 + sizeof(fx_p7_3));
		for (k = 0; k < 3; k++)
			found += slice_eq(certs[i], want[k], wantlen[k]);
	}
	assert_int_equal(found, 3);
}

static void b4_pkcs7_one_cert(void **state)
{
	struct est_slice cert;
	size_t n;

	assert_int_equal(est_pkcs7_certs(fx_p7_1, sizeof(fx_p7_1), &cert, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_true(slice_eq(cert, fx_root, sizeof(fx_root)));
}

static void b4_pkcs7_no_certificates_field(void **state)
{
	size_t n = 99;

	assert_int_equal(p7_count(fx_p7_0, sizeof(fx_p7_0), &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(est_pkcs7_certs(fx_p7_0, sizeof(fx_p7_0), NULL, 0, &n), 0);
	assert_int_equal(n, 0);
}

static void b4_pkcs7_empty_certificates(void **state)
{
	struct buf p7;
	size_t n = 99;

	p7_simple(&p7, "a0 00");
	assert_int_equal(p7_count(p7.b, p7.n, &n), 0);
	assert_int_equal(n, 0);
}

static void b4_pkcs7_with_crls(void **state)
{
	struct est_slice cert;
	struct buf p7;
	size_t n;

	assert_int_equal(est_pkcs7_certs(fx_p7_crl, sizeof(fx_p7_crl), &cert, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_true(slice_eq(cert, fx_root, sizeof(fx_root)));
	p7_simple(&p7, "a0 02 30 00 a1 02 30 00");
	assert_int_equal(p7_count(p7.b, p7.n, &n), 0);
	assert_int_equal(n, 1);
	p7_simple(&p7, "a1 00");
	assert_int_equal(p7_count(p7.b, p7.n, &n), 0);
	assert_int_equal(n, 0);
	p7_simple(&p7, "a1 00 a0 02 30 00");   /* [1] before [0] */
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
}

static void b4_pkcs7_too_many(void **state)
{
	struct est_slice certs[3];
	size_t n;

	assert_int_equal(est_pkcs7_certs(fx_p7_3, sizeof(fx_p7_3), certs, 2, &n), -E2BIG);
	assert_int_equal(est_pkcs7_certs(fx_p7_1, sizeof(fx_p7_1), NULL, 0, &n), -E2BIG);
}

static void b4_pkcs7_wrong_oid(void **state)
{
	struct buf sd = { .n = 0 }, p7;
	size_t n;

	put_hex(&sd, SD_HEAD "31 00");
	p7_wrap(&p7, OID_SIGNED_DATA, &sd, "");
	assert_int_equal(p7_count(p7.b, p7.n, &n), 0);
	p7_wrap(&p7, OID_DATA, &sd, "");
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
	p7_wrap(&p7, "06 08 2a 86 48 86 f7 0d 01 07", &sd, "");
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
	p7_wrap(&p7, "04 09 2a 86 48 86 f7 0d 01 07 02", &sd, "");
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
}

static void b4_pkcs7_trailing_bytes(void **state)
{
	static uint8_t copy[2048];
	struct buf sd = { .n = 0 }, p7;
	size_t n;

	memcpy(copy, fx_p7_3, sizeof(fx_p7_3));
	copy[sizeof(fx_p7_3)] = 0;
	assert_int_equal(p7_count(copy, sizeof(fx_p7_3) + 1, &n), -EINVAL);
	put_hex(&sd, SD_HEAD "31 00");
	p7_wrap(&p7, OID_SIGNED_DATA, &sd, "00");
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
	sd.n = 0;
	put_hex(&sd, SD_HEAD "31 00 05 00");   /* after signerInfos */
	p7_wrap(&p7, OID_SIGNED_DATA, &sd, "");
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
}

static void b4_pkcs7_truncated(void **state)
{
	size_t len, n;

	for (len = 0; len < sizeof(fx_p7_3); len++)
		assert_int_equal(p7_count(fx_p7_3, len, &n), -EINVAL);
}

static void b4_pkcs7_nested_wrong_tags(void **state)
{
	struct buf p7, sd = { .n = 0 };
	size_t n;

	p7_simple(&p7, "a0 03 02 01 00");          /* certificate not a SEQUENCE */
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
	p7_simple(&p7, "a0 04 30 00 a3 00");       /* other CertificateChoices */
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
	p7_simple(&p7, "a0 03 30 00 00");          /* certificates truncated */
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
	p7_simple(&p7, "80 02 30 00");             /* certificates primitive */
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
	put_hex(&sd, "02 01 01 30 00 30 0b " OID_DATA "31 00");   /* digestAlgs SEQ */
	p7_wrap(&p7, OID_SIGNED_DATA, &sd, "");
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
	sd.n = 0;
	put_hex(&sd, "02 00 31 00 30 0b " OID_DATA "31 00");      /* empty version */
	p7_wrap(&p7, OID_SIGNED_DATA, &sd, "");
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
	sd.n = 0;
	put_hex(&sd, SD_HEAD);                                     /* no signerInfos */
	p7_wrap(&p7, OID_SIGNED_DATA, &sd, "");
	assert_int_equal(p7_count(p7.b, p7.n, &n), -EINVAL);
}

/* Deep nesting (about 1000 levels, built inside out) is just an element of
 * the wrong type for every walker: nothing recurses. */
static void g6_deep_nesting(void **state)
{
	static uint8_t deep[4000];
	size_t pos = sizeof(deep), n;
	struct est_slice s;

	while (pos >= 6) {
		size_t len = sizeof(deep) - pos;

		if (len < 0x80) {
			deep[--pos] = (uint8_t)len;
		} else if (len < 0x100) {
			deep[--pos] = (uint8_t)len;
			deep[--pos] = 0x81;
		} else {
			deep[--pos] = (uint8_t)len;
			deep[--pos] = (uint8_t)(len >> 8);
			deep[--pos] = 0x82;
		}
		deep[--pos] = 0x30;
	}
	assert_true(est_der_is_single_sequence(deep + pos, sizeof(deep) - pos));
	assert_int_equal(p7_count(deep + pos, sizeof(deep) - pos, &n), -EINVAL);
	assert_int_equal(est_csr_check(deep + pos, sizeof(deep) - pos), -EINVAL);
	assert_int_equal(est_cert_spki(deep + pos, sizeof(deep) - pos, &s), -EINVAL);
}

/* --- certificates ------------------------------------------------------- */

struct fx {
	const uint8_t *der;
	size_t len;
};

static const struct fx fx_certs[] = {
	{ fx_root, sizeof(fx_root) },
	{ fx_sub, sizeof(fx_sub) },
	{ fx_ee, sizeof(fx_ee) },
};

/* Our slices match what mbedTLS finds in the same certificate. */
static void b4_cert_fields_match_mbedtls(void **state)
{
	struct est_slice spki, issuer, subject;
	mbedtls_x509_crt crt;
	size_t i;

	for (i = 0; i < ARRAY_LEN(fx_certs); i++) {
		mbedtls_x509_crt_init(&crt);
		assert_int_equal(mbedtls_x509_crt_parse_der(&crt, fx_certs[i].der,
							    fx_certs[i].len), 0);
		assert_int_equal(est_cert_spki(fx_certs[i].der, fx_certs[i].len, &spki), 0);
		assert_int_equal(est_cert_names(fx_certs[i].der, fx_certs[i].len,
						&issuer, &subject), 0);
		assert_true(slice_eq(spki, crt.pk_raw.p, crt.pk_raw.len));
		assert_true(slice_eq(issuer, crt.issuer_raw.p, crt.issuer_raw.len));
		assert_true(slice_eq(subject, crt.subject_raw.p, crt.subject_raw.len));
		mbedtls_x509_crt_free(&crt);
	}
}

static void b4_cert_chain_names(void **state)
{
	struct est_slice ri, rs, si, ss, ei, es;

	assert_int_equal(est_cert_names(fx_root, sizeof(fx_root), &ri, &rs), 0);
	assert_int_equal(est_cert_names(fx_sub, sizeof(fx_sub), &si, &ss), 0);
	assert_int_equal(est_cert_names(fx_ee, sizeof(fx_ee), &ei, &es), 0);
	assert_true(slice_eq(ri, rs.ptr, rs.len));   /* self-signed root */
	assert_true(slice_eq(si, rs.ptr, rs.len));
	assert_true(slice_eq(ei, ss.ptr, ss.len));
	assert_false(slice_eq(es, ss.ptr, ss.len));
}

/* B4: the end entity is found by the CSR's public key. */
static void b4_cert_spki_equals_csr_spki(void **state)
{
	struct est_slice cs, es, rs;

	assert_int_equal(est_csr_spki(fx_csr, sizeof(fx_csr), &cs), 0);
	assert_int_equal(est_cert_spki(fx_ee, sizeof(fx_ee), &es), 0);
	assert_int_equal(est_cert_spki(fx_root, sizeof(fx_root), &rs), 0);
	assert_true(slice_eq(es, cs.ptr, cs.len));
	assert_false(slice_eq(rs, cs.ptr, cs.len));
}

/** A small Certificate: [0] version if @p v3, empty names and validity,
 *  an EC-looking SPKI, then @p tail_hex inside the TBSCertificate. */
static void cert_build(struct buf *o, int v3, const char *tail_hex)
{
	struct buf tbs = { .n = 0 }, spki = { .n = 0 }, cert = { .n = 0 };

	if (v3)
		put_hex(&tbs, "a0 03 02 01 02");
	put_hex(&tbs, "02 01 01 30 05 06 03 2a 03 04 30 00 30 00 30 00");
	put_hex(&spki, "30 05 06 03 2a 03 05 03 02 00 00");
	put_tlv(&tbs, 0x30, &spki);
	put_hex(&tbs, tail_hex);
	put_tlv(&cert, 0x30, &tbs);
	put_hex(&cert, "30 05 06 03 2a 03 04 03 01 00");
	o->n = 0;
	put_tlv(o, 0x30, &cert);
}

static int cert_ok(int v3, const char *tail_hex)
{
	struct est_slice spki;
	struct buf c;

	cert_build(&c, v3, tail_hex);
	return est_cert_spki(c.b, c.n, &spki);
}

static void b4_cert_optional_fields(void **state)
{
	assert_int_equal(cert_ok(0, ""), 0);
	assert_int_equal(cert_ok(1, ""), 0);
	assert_int_equal(cert_ok(1, "a3 00"), 0);
	assert_int_equal(cert_ok(1, "81 01 00 82 01 00 a3 02 30 00"), 0);
	assert_int_equal(cert_ok(1, "82 01 00"), 0);
	assert_int_equal(cert_ok(1, "a3 00 81 01 00"), -EINVAL);   /* out of order */
	assert_int_equal(cert_ok(1, "a3 00 a3 00"), -EINVAL);      /* repeated */
	assert_int_equal(cert_ok(1, "a4 00"), -EINVAL);            /* unknown */
	assert_int_equal(cert_ok(1, "05 00"), -EINVAL);
	assert_int_equal(cert_ok(1, "a3 05 00"), -EINVAL);         /* truncated */
}

static void b4_cert_malformed(void **state)
{
	static uint8_t copy[1024];
	struct est_slice spki, is, sub;
	size_t len = sizeof(fx_ee);
	size_t off;

	memcpy(copy, fx_ee, len);
	copy[len] = 0;
	assert_int_equal(est_cert_spki(copy, len + 1, &spki), -EINVAL);
	assert_int_equal(est_cert_names(copy, len - 1, &is, &sub), -EINVAL);
	assert_int_equal(est_cert_spki(NULL, 0, &spki), -EINVAL);
	/* SPKI re-tagged as a SET */
	assert_int_equal(est_cert_spki(copy, len, &spki), 0);
	off = (size_t)(spki.ptr - copy);
	copy[off] = 0x31;
	assert_int_equal(est_cert_spki(copy, len, &spki), -EINVAL);
	copy[off] = 0x30;
	/* subject re-tagged */
	assert_int_equal(est_cert_names(copy, len, &is, &sub), 0);
	off = (size_t)(sub.ptr - copy);
	copy[off] = 0x31;
	assert_int_equal(est_cert_names(copy, len, &is, &sub), -EINVAL);
	copy[off] = 0x30;
	/* TBSCertificate re-tagged (outer header is 4 bytes long) */
	copy[4] = 0x31;
	assert_int_equal(est_cert_spki(copy, len, &spki), -EINVAL);
	copy[4] = 0x30;
	/* a CSR is not a certificate, nor the other way round */
	assert_int_equal(est_cert_spki(fx_csr, sizeof(fx_csr), &spki), -EINVAL);
	assert_int_equal(est_csr_check(fx_ee, sizeof(fx_ee)), -EINVAL);
}

static void b4_cert_truncated(void **state)
{
	struct est_slice spki;
	size_t len;

	for (len = 0; len < sizeof(fx_sub); len++)
		assert_int_equal(est_cert_spki(fx_sub, len, &spki), -EINVAL);
}

/* --- CSR ---------------------------------------------------------------- */

/** A small CertificationRequest: CRI = @p cri_hex, signed with junk. */
static void csr_build(struct buf *o, const char *cri_hex, const char *trail_hex)
{
	struct buf cri = { .n = 0 }, req = { .n = 0 };

	put_hex(&cri, cri_hex);
	put_tlv(&req, 0x30, &cri);
	put_hex(&req, "30 05 06 03 2a 03 04 03 01 00");
	put_hex(&req, trail_hex);
	o->n = 0;
	put_tlv(o, 0x30, &req);
}

static int csr_ok(const char *cri_hex)
{
	struct buf c;

	csr_build(&c, cri_hex, "");
	return est_csr_check(c.b, c.n);
}

#define CSR_SPKI "30 0b 30 05 06 03 2a 03 05 03 02 00 00"

static void b2_csr_fixture(void **state)
{
	struct est_slice spki;

	assert_int_equal(est_csr_check(fx_csr, sizeof(fx_csr)), 0);
	assert_int_equal(est_csr_spki(fx_csr, sizeof(fx_csr), &spki), 0);
	assert_true(spki.ptr > fx_csr && spki.ptr + spki.len < fx_csr + sizeof(fx_csr));
	assert_int_equal(spki.ptr[0], 0x30);
}

static void b2_csr_shapes(void **state)
{
	struct est_slice spki;
	struct buf c;

	assert_int_equal(csr_ok("02 01 00 30 00 " CSR_SPKI " a0 00"), 0);
	assert_int_equal(csr_ok("02 01 00 30 00 " CSR_SPKI
				" a0 0f 30 0d 06 03 2a 03 06 31 06 0c 04 74 65 73 74"), 0);
	assert_int_equal(csr_ok("02 01 01 30 00 " CSR_SPKI " a0 00"), -EINVAL); /* v2 */
	assert_int_equal(csr_ok("02 01 00 30 00 " CSR_SPKI), -EINVAL);  /* no attrs */
	assert_int_equal(csr_ok("02 01 00 30 00 " CSR_SPKI " a0 02 31 00"), -EINVAL);
	assert_int_equal(csr_ok("02 01 00 31 00 " CSR_SPKI " a0 00"), -EINVAL);
	assert_int_equal(csr_ok("02 01 00 30 02 30 00 " CSR_SPKI " a0 00"), -EINVAL);
	assert_int_equal(csr_ok("02 01 00 30 00 30 00 a0 00"), -EINVAL); /* bad SPKI */
	/* SPKI BIT STRING: unused-bits octet 0..7, and 0 for an empty one */
	assert_int_equal(csr_ok("02 01 00 30 00 30 0a 30 05 06 03 2a 03 05 03 01 00 a0 00"), 0);
	assert_int_equal(csr_ok("02 01 00 30 00 30 0a 30 05 06 03 2a 03 05 03 01 01 a0 00"),
			 -EINVAL);
	assert_int_equal(csr_ok("02 01 00 30 00 30 0b 30 05 06 03 2a 03 05 03 02 08 00 a0 00"),
			 -EINVAL);
	assert_int_equal(csr_ok("02 01 00 30 00 30 09 30 05 06 03 2a 03 05 03 00 a0 00"),
			 -EINVAL);
	/* AlgorithmIdentifier: OID first, at most one parameter */
	assert_int_equal(csr_ok("02 01 00 30 00 30 0d 30 07 06 03 2a 03 05 05 00 03 02 00 00"
				" a0 00"), 0);
	assert_int_equal(csr_ok("02 01 00 30 00 30 0f 30 09 06 03 2a 03 05 05 00 05 00"
				" 03 02 00 00 a0 00"), -EINVAL);
	assert_int_equal(csr_ok("02 01 00 30 00 30 0b 30 05 04 03 2a 03 05 03 02 00 00 a0 00"),
			 -EINVAL);
	assert_int_equal(csr_ok("02 01 00 30 00 " CSR_SPKI " a0 00 05 00"), -EINVAL);
	csr_build(&c, "02 01 00 30 00 " CSR_SPKI " a0 00", "");
	assert_int_equal(est_csr_spki(c.b, c.n, &spki), 0);
	assert_int_equal(spki.len, 13);
	csr_build(&c, "02 01 00 30 00 " CSR_SPKI " a0 00", "05 00");
	assert_int_equal(est_csr_check(c.b, c.n), -EINVAL);   /* after signature */
}

static void b2_csr_trailing_and_truncated(void **state)
{
	static uint8_t copy[1024];
	struct est_slice spki;
	size_t len;

	memcpy(copy, fx_csr, sizeof(fx_csr));
	copy[sizeof(fx_csr)] = 0x30;
	assert_int_equal(est_csr_check(copy, sizeof(fx_csr) + 1), -EINVAL);
	assert_int_equal(est_csr_spki(copy, sizeof(fx_csr) + 1, &spki), -EINVAL);
	for (len = 0; len < sizeof(fx_csr); len++)
		assert_int_equal(est_csr_check(fx_csr, len), -EINVAL);
	assert_int_equal(est_csr_check(NULL, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(g6_tlv_short_and_long_form),
		cmocka_unit_test(g6_tlv_truncated),
		cmocka_unit_test(g6_tlv_indefinite_and_bad_lengths),
		cmocka_unit_test(g6_tlv_length_overflow),
		cmocka_unit_test(b5_single_sequence),
		cmocka_unit_test(b5_body_base64_lf),
		cmocka_unit_test(b5_body_base64_crlf),
		cmocka_unit_test(b5_body_base64_layouts),
		cmocka_unit_test(b5_body_binary),
		cmocka_unit_test(b5_body_garbage),
		cmocka_unit_test(b4_pkcs7_three_certs),
		cmocka_unit_test(b4_pkcs7_one_cert),
		cmocka_unit_test(b4_pkcs7_no_certificates_field),
		cmocka_unit_test(b4_pkcs7_empty_certificates),
		cmocka_unit_test(b4_pkcs7_with_crls),
		cmocka_unit_test(b4_pkcs7_too_many),
		cmocka_unit_test(b4_pkcs7_wrong_oid),
		cmocka_unit_test(b4_pkcs7_trailing_bytes),
		cmocka_unit_test(b4_pkcs7_truncated),
		cmocka_unit_test(b4_pkcs7_nested_wrong_tags),
		cmocka_unit_test(g6_deep_nesting),
		cmocka_unit_test(b4_cert_fields_match_mbedtls),
		cmocka_unit_test(b4_cert_chain_names),
		cmocka_unit_test(b4_cert_spki_equals_csr_spki),
		cmocka_unit_test(b4_cert_optional_fields),
		cmocka_unit_test(b4_cert_malformed),
		cmocka_unit_test(b4_cert_truncated),
		cmocka_unit_test(b2_csr_fixture),
		cmocka_unit_test(b2_csr_shapes),
		cmocka_unit_test(b2_csr_trailing_and_truncated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
