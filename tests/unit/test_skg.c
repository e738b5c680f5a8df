/* test_skg.c - server-side key generation codecs and translation
 * (docs/conformance.md B6, F, G6): media types, the multipart/mixed parser on
 * hand-made bodies, the multipart-core writer against RFC 9148 Figure 2 and
 * Appendix A.3, key forms, the CMS check, CSR attributes, and the skg/skc
 * answers. Keys and certificates come from mk_skg_fixtures.sh (openssl CLI at
 * build time); the A.3 bytes are the RFC's published example.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "estgw/skg.h"
#include "estgw/translate.h"
#include "skg_fixtures.h"

#define C(c, d) EST_CODE(c, d)
#define N(a) (sizeof(a) / sizeof((a)[0]))
#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1

/* ---- helpers ------------------------------------------------------------ */

static uint8_t *unhex(const char *hex, size_t *len)
{
	size_t n = 0, cap = strlen(hex) / 2 + 1;
	uint8_t *out = malloc(cap);
	unsigned v;

	assert_non_null(out);
	for (const char *p = hex; *p;) {
		if (*p == ' ' || *p == '\n') {
			p++;
			continue;
		}
		assert_int_equal(sscanf(p, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
		p += 2;
	}
	*len = n;
	return out;
}

static char *b64(const uint8_t *der, size_t len)
{
	size_t cap = est_b64_encoded_len(len) + 1, n;
	char *out = malloc(cap);

	assert_non_null(out);
	assert_int_equal(est_b64_encode(der, len, out, cap, &n), 0);
	return out;
}

/** printf into a malloc'd string. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, f);
	assert_true(vasprintf(&s, f, ap) >= 0);
	va_end(ap);
	return s;
}

static int slice_is(const struct est_slice *s, const char *want)
{
	return s->len == strlen(want) && memcmp(s->ptr, want, s->len) == 0;
}

#define assert_slice(s, want)                                                  \
	do {                                                                   \
		if (!slice_is(&(s), want))                                     \
			fail_msg("got '%.*s' want '%s'", (int)(s).len,         \
				 (const char *)(s).ptr, want);                 \
	} while (0)

/* ---- RFC 9148 Appendix A.3: the /skg response ---------------------------- */

static const char a3_hex[] =
	"8419011C588A"
	"308187020100301306072a8648ce3d020106082a8648ce3d030107046d30"
	"6b020101042061336a86ac6e7af4a96f632830ad4e6aa0837679206094d7"
	"679a01ca8c6f0c37a14403420004c8b421f11c25e47e3ac57123bf2d9fdc"
	"494f028bc351cc80c03f150bf50cff958d75419d81a6a245dffae790be95"
	"cf75f602f9152618f816a2b23b5638e59fd9"
	"1901195901D3"
	"308201cf06092a864886f70d010702a08201c0308201bc0201013100300b"
	"06092a864886f70d010701a08201a23082019e30820144a0030201020209"
	"00b3313e8f3fc9538e300a06082a8648ce3d040302301631143012060355"
	"040a0c0b736b67206578616d706c65301e170d3139303930343037343430"
	"335a170d3339303833303037343430335a301631143012060355040a0c0b"
	"736b67206578616d706c653059301306072a8648ce3d020106082a8648ce"
	"3d03010703420004c8b421f11c25e47e3ac57123bf2d9fdc494f028bc351"
	"cc80c03f150bf50cff958d75419d81a6a245dffae790be95cf75f602f915"
	"2618f816a2b23b5638e59fd9a37b307930090603551d1304023000302c06"
	"096086480186f842010d041f161d4f70656e53534c2047656e6572617465"
	"64204365727469666963617465301d0603551d0e0416041496600d8716bf"
	"7fd0e752d0ac760777ad665d02a0301f0603551d2304183016801496600d"
	"8716bf7fd0e752d0ac760777ad665d02a0300a06082a8648ce3d04030203"
	"48003045022100e95bfa25a08976652246f2d96143da39fce0dc4c9b26b9"
	"cce1f24164cc2b12b602201351fd8eea65764e3459d324e4345ff5b2a915"
	"38c04976111796b3698bf6379ca1003100";

struct a3 {
	uint8_t *all;
	size_t len;
	const uint8_t *key, *p7;
	size_t key_len, p7_len;
};

static void a3_load(struct a3 *a)
{
	a->all = unhex(a3_hex, &a->len);
	assert_int_equal(a->len, 617);
	a->key = a->all + 6;
	a->key_len = 138;
	a->p7 = a->all + 6 + 138 + 6;
	a->p7_len = 467;
}

/* ---- media types -------------------------------------------------------- */

static void test_B6_mime_type_split(void **st)
{
	struct est_slice t, p;
	const char *v = " Multipart/Mixed ; boundary=\"x y\" ";

	assert_int_equal(est_mime_type(v, strlen(v), &t, &p), 0);
	assert_slice(t, "Multipart/Mixed");
	assert_slice(p, "; boundary=\"x y\"");
	assert_true(est_mime_is(&t, "multipart/mixed"));
	assert_false(est_mime_is(&t, "multipart/mixe"));
	v = "application/pkcs8";
	assert_int_equal(est_mime_type(v, strlen(v), &t, &p), 0);
	assert_int_equal(p.len, 0);
}

static void test_G6_mime_type_malformed(void **st)
{
	static const char *const bad[] = {
		"", "   ", "application", "application/", "/pkcs8",
		"application/pkcs8 x", "app lication/pkcs8", "a/b/c",
	};
	struct est_slice t, p;

	for (size_t i = 0; i < N(bad); i++)
		if (est_mime_type(bad[i], strlen(bad[i]), &t, &p) != -EINVAL)
			fail_msg("accepted '%s'", bad[i]);
}

static int param(const char *params, const char *name, char *out, size_t size)
{
	struct est_slice p = { (const uint8_t *)params, strlen(params) };
	size_t n;

	return est_mime_param(&p, name, out, size, &n);
}

static void test_B6_mime_param_forms(void **st)
{
	char v[32];

	assert_int_equal(param("; boundary=abc", "boundary", v, sizeof(v)), 0);
	assert_string_equal(v, "abc");
	assert_int_equal(param(";BOUNDARY=\"a b\\\"c\"", "boundary", v, sizeof(v)), 0);
	assert_string_equal(v, "a b\"c");
	assert_int_equal(param("; smime-type=certs-only; boundary=q", "boundary", v,
			       sizeof(v)), 0);
	assert_string_equal(v, "q");
	assert_int_equal(param(";; x=1 ; y = \"2\"", "y", v, sizeof(v)), 0);
	assert_string_equal(v, "2");
	assert_int_equal(param("; x=1", "boundary", v, sizeof(v)), -ENOENT);
	assert_int_equal(param("", "boundary", v, sizeof(v)), -ENOENT);
	assert_int_equal(param("; boundary=abcdef", "boundary", v, 4), -ENOSPC);
}

static void test_G6_mime_param_malformed(void **st)
{
	static const char *const bad[] = {
		"; boundary", "; boundary=", "; boundary=\"open", "; =x",
		"; boundary=a b", "; boundary=a; boundary=b", "; b=\"x\\",
	};
	char v[32];

	for (size_t i = 0; i < N(bad); i++)
		if (param(bad[i], "boundary", v, sizeof(v)) != -EINVAL)
			fail_msg("accepted '%s'", bad[i]);
}

/* ---- multipart/mixed: valid bodies --------------------------------------- */

struct parsed {
	struct est_mp_part parts[EST_MP_MAX_PARTS];
	size_t n;
	const char *why;
};

static int mp(const char *body, const char *boundary, struct parsed *p)
{
	memset(p, 0, sizeof(*p));
	return est_multipart_parse((const uint8_t *)body, strlen(body), boundary,
				   strlen(boundary), p->parts, EST_MP_MAX_PARTS,
				   &p->n, &p->why);
}

static void mp_ok(const char *body, const char *boundary, struct parsed *p,
		  size_t nparts)
{
	int rc = mp(body, boundary, p);

	if (rc != 0)
		fail_msg("parse failed (%d): %s", rc, p->why ? p->why : "?");
	assert_int_equal(p->n, nparts);
}

static void test_F2_multipart_crlf_two_parts(void **st)
{
	struct parsed p;

	mp_ok("--est\r\n"
	      "Content-Type: application/pkcs8\r\n"
	      "Content-Transfer-Encoding: base64\r\n"
	      "\r\n"
	      "MIGHAgEA\r\n"
	      "--est\r\n"
	      "Content-Type: application/pkcs7-mime; smime-type=certs-only\r\n"
	      "\r\n"
	      "MIIB\r\nzw==\r\n"
	      "--est--\r\n",
	      "est", &p, 2);
	assert_slice(p.parts[0].type, "application/pkcs8");
	assert_slice(p.parts[0].cte, "base64");
	assert_slice(p.parts[0].body, "MIGHAgEA");
	assert_slice(p.parts[1].type, "application/pkcs7-mime");
	assert_slice(p.parts[1].params, "; smime-type=certs-only");
	assert_int_equal(p.parts[1].cte.len, 0);
	assert_slice(p.parts[1].body, "MIIB\r\nzw==");
}

static void test_F2_multipart_bare_lf(void **st)
{
	struct parsed p;

	mp_ok("--b\nContent-Type: a/b\n\nAAAA\n--b\nContent-Type: c/d\n\nBBBB\n--b--",
	      "b", &p, 2);
	assert_slice(p.parts[0].body, "AAAA");
	assert_slice(p.parts[1].type, "c/d");
	assert_slice(p.parts[1].body, "BBBB");
}

static void test_F2_multipart_preamble_epilogue(void **st)
{
	struct parsed p;

	mp_ok("This is the preamble.\r\nIt says --b is coming.\r\n"
	      "--b\r\nContent-Type: a/b\r\n\r\nX\r\n--b--\r\n"
	      "epilogue text\r\n--b\r\nmore\r\n",
	      "b", &p, 1);
	assert_slice(p.parts[0].body, "X");
}

static void test_F2_multipart_quoted_boundary_with_space(void **st)
{
	struct est_slice t, prm;
	const char *ct = "multipart/mixed; boundary=\"a b:c=d?\"";
	char b[EST_MP_BOUNDARY_MAX + 1];
	size_t blen;
	struct parsed p;

	assert_int_equal(est_mime_type(ct, strlen(ct), &t, &prm), 0);
	assert_int_equal(est_mime_param(&prm, "boundary", b, sizeof(b), &blen), 0);
	assert_true(est_mp_boundary_ok(b, blen));
	mp_ok("--a b:c=d?\r\nContent-Type: x/y\r\n\r\nZ\r\n--a b:c=d?--", b, &p, 1);
	assert_slice(p.parts[0].body, "Z");
}

static void test_F2_multipart_transport_padding(void **st)
{
	struct parsed p;

	mp_ok("--b \t\r\nContent-Type: a/b\r\n\r\nX\r\n--b--  \r\n", "b", &p, 1);
	assert_slice(p.parts[0].body, "X");
}

static void test_F2_multipart_header_case_fold_unknown(void **st)
{
	struct parsed p;

	mp_ok("--b\r\n"
	      "content-ID: <1@x>\r\n"
	      "CONTENT-TYPE: application/pkcs7-mime;\r\n"
	      " smime-type=server-generated-key\r\n"
	      "content-transfer-encoding : BASE64\r\n"
	      "X-Other: whatever\r\n"
	      "\r\n"
	      "K\r\n--b--",
	      "b", &p, 1);
	assert_slice(p.parts[0].type, "application/pkcs7-mime");
	assert_slice(p.parts[0].params, ";\r\n smime-type=server-generated-key");
	assert_slice(p.parts[0].cte, "BASE64");
	assert_slice(p.parts[0].body, "K");
}

static void test_F2_multipart_part_without_headers(void **st)
{
	struct parsed p;

	mp_ok("--b\r\n\r\nRAW\r\n--b\r\nContent-Type: a/b\r\n\r\n--b--", "b", &p, 2);
	assert_int_equal(p.parts[0].type.len, 0);
	assert_slice(p.parts[0].body, "RAW");
	assert_slice(p.parts[1].type, "a/b");
	assert_int_equal(p.parts[1].body.len, 0);
}

static void test_F2_multipart_lookalike_lines_are_content(void **st)
{
	struct parsed p;

	/* "--bb" is another boundary and "x--b" is not at a line start. */
	mp_ok("--b\r\nContent-Type: a/b\r\n\r\nline1\r\n--bb\r\nx--b\r\n--b--\r\n",
	      "b", &p, 1);
	assert_slice(p.parts[0].body, "line1\r\n--bb\r\nx--b");
}

static void test_F2_multipart_binary_body(void **st)
{
	static const uint8_t body[] = "--b\r\nContent-Type: a/b\r\n\r\n\x30\x03\x02\x01\x00\r\n--b--";
	struct est_mp_part parts[2];
	size_t n;

	assert_int_equal(est_multipart_parse(body, sizeof(body) - 1, "b", 1, parts, 2,
					     &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_int_equal(parts[0].body.len, 5);
	assert_memory_equal(parts[0].body.ptr, "\x30\x03\x02\x01\x00", 5);
}

/* ---- multipart/mixed: broken bodies -------------------------------------- */

static void mp_bad(const char *body, const char *boundary, int rc,
		   const char *why)
{
	struct parsed p;
	int got = mp(body, boundary, &p);

	if (got != rc)
		fail_msg("rc %d, want %d (%s) for: %s", got, rc,
			 p.why ? p.why : "-", body);
	assert_non_null(p.why);
	if (!strstr(p.why, why))
		fail_msg("why '%s' lacks '%s'", p.why, why);
}

static void test_G6_multipart_no_opening_boundary(void **st)
{
	mp_bad("Content-Type: a/b\r\n\r\nX\r\n", "b", -EINVAL, "without opening boundary");
	mp_bad("", "b", -EINVAL, "without opening boundary");
	mp_bad("--bb\r\nX\r\n--bb--", "b", -EINVAL, "without opening boundary");
}

static void test_G6_multipart_no_closing_boundary(void **st)
{
	mp_bad("--b\r\nContent-Type: a/b\r\n\r\nX\r\n", "b", -EINVAL,
	       "without closing boundary");
	mp_bad("--b\r\nContent-Type: a/b\r\n\r\nX\r\n--b\r\nContent-Type: c/d\r\n\r\nY",
	       "b", -EINVAL, "without closing boundary");
	mp_bad("--b", "b", -EINVAL, "without closing boundary");
	mp_bad("--b\r\nContent-Type: a/b\r\n\r\nX\r\n--b", "b", -EINVAL,
	       "without closing boundary");
}

static void test_G6_multipart_no_parts(void **st)
{
	mp_bad("preamble\r\n--b--\r\n", "b", -EINVAL, "without body parts");
}

static void test_G6_multipart_header_without_colon(void **st)
{
	mp_bad("--b\r\nContent-Type a/b\r\n\r\nX\r\n--b--", "b", -EINVAL,
	       "malformed header line");
	mp_bad("--b\r\n: a/b\r\n\r\nX\r\n--b--", "b", -EINVAL, "malformed header line");
}

static void test_G6_multipart_headers_not_ended(void **st)
{
	mp_bad("--b\r\nContent-Type: a/b\r\n--b--", "b", -EINVAL, "no empty line");
}

static void test_G6_multipart_duplicate_content_type(void **st)
{
	mp_bad("--b\r\nContent-Type: a/b\r\ncontent-type: c/d\r\n\r\nX\r\n--b--", "b",
	       -EINVAL, "repeats a Content header");
	mp_bad("--b\r\nContent-Transfer-Encoding: base64\r\n"
	       "Content-Transfer-Encoding: binary\r\n\r\nX\r\n--b--",
	       "b", -EINVAL, "repeats a Content header");
}

static void test_G6_multipart_malformed_part_type(void **st)
{
	mp_bad("--b\r\nContent-Type: pkcs8\r\n\r\nX\r\n--b--", "b", -EINVAL,
	       "malformed Content-Type");
}

static void test_G6_multipart_folded_first_line(void **st)
{
	mp_bad("--b\r\n folded\r\n\r\nX\r\n--b--", "b", -EINVAL, "folded header");
}

static void test_G6_multipart_too_many_parts(void **st)
{
	char body[512] = "";

	for (int i = 0; i < EST_MP_MAX_PARTS + 1; i++)
		strcat(body, "--b\r\nContent-Type: a/b\r\n\r\nX\r\n");
	strcat(body, "--b--");
	mp_bad(body, "b", -E2BIG, "too many parts");
}

static void test_G6_multipart_too_many_headers(void **st)
{
	char body[1024] = "--b\r\n";

	for (int i = 0; i < EST_MP_MAX_HEADERS + 1; i++)
		strcat(body, "X-H: 1\r\n");
	strcat(body, "\r\nX\r\n--b--");
	mp_bad(body, "b", -E2BIG, "too many header fields");
}

static void test_G6_multipart_bad_boundary(void **st)
{
	char long_b[EST_MP_BOUNDARY_MAX + 2];

	memset(long_b, 'a', sizeof(long_b) - 1);
	long_b[sizeof(long_b) - 1] = '\0';
	mp_bad("--\r\n\r\nX\r\n----", "", -EINVAL, "boundary invalid");
	mp_bad("--x\r\n\r\nX\r\n--x--", long_b, -EINVAL, "boundary invalid");
	mp_bad("--a\"b\r\n\r\nX\r\n--a\"b--", "a\"b", -EINVAL, "boundary invalid");
	mp_bad("--a \r\n\r\nX\r\n--a --", "a ", -EINVAL, "boundary invalid");
	memset(long_b, 'a', EST_MP_BOUNDARY_MAX);
	long_b[EST_MP_BOUNDARY_MAX] = '\0';
	assert_true(est_mp_boundary_ok(long_b, EST_MP_BOUNDARY_MAX));
}

/* ---- multipart-core (RFC 8710, RFC 9148 Figure 2 and A.3) --------------- */

static void test_F3_mpcore_rfc9148_figure2(void **st)
{
	static const uint8_t key[] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };
	static const uint8_t p7[] = { 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10 };
	static const uint8_t want[] = {
		0x84, 0x19, 0x01, 0x1c, 0x48, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
		0xcd, 0xef, 0x19, 0x01, 0x19, 0x48, 0xfe, 0xdc, 0xba, 0x98, 0x76,
		0x54, 0x32, 0x10,
	};
	const struct est_mpcore_item items[] = {
		{ 284, { key, sizeof(key) } }, { 281, { p7, sizeof(p7) } },
	};
	uint8_t *out;
	size_t len;

	assert_int_equal(est_mpcore_encode(items, 2, &out, &len), 0);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	free(out);
}

static void test_F3_mpcore_rfc9148_a3(void **st)
{
	struct a3 a;
	uint8_t *out;
	size_t len;

	a3_load(&a);
	const struct est_mpcore_item items[] = {
		{ 284, { a.key, a.key_len } }, { 281, { a.p7, a.p7_len } },
	};
	assert_int_equal(est_mpcore_encode(items, 2, &out, &len), 0);
	assert_int_equal(len, a.len);
	assert_memory_equal(out, a.all, a.len);
	free(out);
	free(a.all);
}

static void test_F3_mpcore_minimal_forms(void **st)
{
	static const uint8_t want[] = { 0x86, 0x00, 0x40, 0x17, 0x41, 0xaa,
					0x18, 0x3e, 0x40 };
	const struct est_mpcore_item items[] = {
		{ 0, { NULL, 0 } }, { 23, { (const uint8_t *)"\xaa", 1 } },
		{ 62, { NULL, 0 } },
	};
	struct est_mpcore_item bad = { 65536, { NULL, 0 } };
	uint8_t *out;
	size_t len;

	assert_int_equal(est_mpcore_encode(items, 3, &out, &len), 0);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	free(out);
	assert_int_equal(est_mpcore_encode(&bad, 1, &out, &len), -EINVAL);
	assert_int_equal(est_mpcore_encode(NULL, 0, &out, &len), 0);
	assert_int_equal(len, 1);
	assert_int_equal(out[0], 0x80);
	free(out);
}

/* ---- key forms (B6) -------------------------------------------------------- */

static void expect_pkcs8(const uint8_t *in, size_t len, const uint8_t *want,
			 size_t wlen, enum est_key_form want_form)
{
	enum est_key_form form;
	uint8_t *out;
	size_t olen;

	assert_int_equal(est_privkey_to_pkcs8(in, len, &out, &olen, &form), 0);
	assert_int_equal(form, want_form);
	assert_int_equal(olen, wlen);
	assert_memory_equal(out, want, wlen);
	free(out);
}

static void test_B6_pkcs8_passes_through(void **st)
{
	expect_pkcs8(fx_ec_pkcs8, sizeof(fx_ec_pkcs8), fx_ec_pkcs8,
		     sizeof(fx_ec_pkcs8), EST_KEY_PKCS8);
	expect_pkcs8(fx_rsa_pkcs8, sizeof(fx_rsa_pkcs8), fx_rsa_pkcs8,
		     sizeof(fx_rsa_pkcs8), EST_KEY_PKCS8);
}

/* Wrapping gives byte for byte what `openssl pkcs8 -topk8` writes. */
static void test_B6_sec1_wrapped_like_openssl(void **st)
{
	expect_pkcs8(fx_ec_sec1, sizeof(fx_ec_sec1), fx_ec_pkcs8,
		     sizeof(fx_ec_pkcs8), EST_KEY_SEC1);
}

static void test_B6_pkcs1_wrapped_like_openssl(void **st)
{
	expect_pkcs8(fx_rsa_pkcs1, sizeof(fx_rsa_pkcs1), fx_rsa_pkcs8,
		     sizeof(fx_rsa_pkcs8), EST_KEY_PKCS1);
}

static void test_B6_sec1_without_public_key(void **st)
{
	enum est_key_form form;
	uint8_t *out, *again;
	size_t olen, alen;

	assert_int_equal(est_privkey_to_pkcs8(fx_ec_sec1_nopub, sizeof(fx_ec_sec1_nopub),
					      &out, &olen, &form), 0);
	assert_int_equal(form, EST_KEY_SEC1);
	assert_int_equal(olen, 2 + 3 + 21 + 2 + 2 + 3 + 34); /* no [1] inside */
	/* The result is PKCS#8 itself: it passes through unchanged. */
	assert_int_equal(est_privkey_to_pkcs8(out, olen, &again, &alen, &form), 0);
	assert_int_equal(form, EST_KEY_PKCS8);
	assert_memory_equal(again, out, olen);
	free(out);
	free(again);
}

static void test_G6_privkey_malformed(void **st)
{
	/* SEC1 without parameters: the curve is unknown. */
	static const uint8_t sec1_no_curve[] = { 0x30, 0x07, 0x02, 0x01, 0x01, 0x04, 0x02, 0xaa, 0xbb };
	/* SEC1 with version 0, PKCS#8 with version 2, a bare INTEGER. */
	static const uint8_t sec1_v0[] = { 0x30, 0x07, 0x02, 0x01, 0x00, 0x04, 0x02, 0xaa, 0xbb };
	static const uint8_t p8_v2[] = { 0x30, 0x0d, 0x02, 0x01, 0x02, 0x30, 0x04, 0x06,
					 0x02, 0x2a, 0x03, 0x04, 0x02, 0xaa, 0xbb };
	static const uint8_t integer[] = { 0x02, 0x01, 0x00 };
	static const uint8_t only_version[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
	/* PKCS#1 with too few INTEGERs. */
	static const uint8_t pkcs1_short[] = { 0x30, 0x09, 0x02, 0x01, 0x00, 0x02, 0x01,
					       0x05, 0x02, 0x01, 0x03 };
	const struct { const uint8_t *p; size_t len; } bad[] = {
		{ sec1_no_curve, sizeof(sec1_no_curve) }, { sec1_v0, sizeof(sec1_v0) },
		{ p8_v2, sizeof(p8_v2) }, { integer, sizeof(integer) },
		{ only_version, sizeof(only_version) }, { pkcs1_short, sizeof(pkcs1_short) },
		{ fx_ec_sec1, sizeof(fx_ec_sec1) - 1 }, /* truncated */
		{ fx_ee, sizeof(fx_ee) },               /* a certificate */
		{ fx_p7_ee, sizeof(fx_p7_ee) },
	};
	enum est_key_form form;
	uint8_t *out = NULL;
	size_t olen;

	for (size_t i = 0; i < N(bad); i++)
		if (est_privkey_to_pkcs8(bad[i].p, bad[i].len, &out, &olen, &form) != -EINVAL)
			fail_msg("case %zu accepted", i);
	assert_null(out);
}

static void test_G6_privkey_trailing_bytes(void **st)
{
	uint8_t buf[sizeof(fx_ec_pkcs8) + 1];
	enum est_key_form form;
	uint8_t *out;
	size_t olen;

	memcpy(buf, fx_ec_pkcs8, sizeof(fx_ec_pkcs8));
	buf[sizeof(fx_ec_pkcs8)] = 0;
	assert_int_equal(est_privkey_to_pkcs8(buf, sizeof(buf), &out, &olen, &form),
			 -EINVAL);
}

/* ---- CMS (F3) ------------------------------------------------------------ */

static void test_F3_cms_key_shapes(void **st)
{
	static const uint8_t data_ci[] = { 0x30, 0x0f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
					   0x0d, 0x01, 0x07, 0x01, 0xa0, 0x02, 0x30, 0x00 };

	assert_int_equal(est_cms_key_check(fx_cms_env, sizeof(fx_cms_env)), 0);
	assert_int_equal(est_cms_key_check(fx_cms_signed, sizeof(fx_cms_signed)), 0);
	assert_int_equal(est_cms_key_check(data_ci, sizeof(data_ci)), -EINVAL);
	assert_int_equal(est_cms_key_check(fx_ec_pkcs8, sizeof(fx_ec_pkcs8)), -EINVAL);
	assert_int_equal(est_cms_key_check(fx_cms_env, sizeof(fx_cms_env) - 1), -EINVAL);
	assert_int_equal(est_cms_key_check(NULL, 0), -EINVAL);
}

/* ---- CSR attributes (RFC 7030 4.4.1) -------------------------------------- */

/** A CSR (unsigned: the walkers do not verify) with @p attrs as the content
 *  of its [0] attributes field. */
static uint8_t *csr_with(const uint8_t *attrs, size_t alen, size_t *len)
{
	static const uint8_t head[] = {
		0x02, 0x01, 0x00,                                    /* version */
		0x30, 0x0c, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03,
		0x0c, 0x01, 0x78,                                    /* CN=x */
		0x30, 0x12, 0x30, 0x0b, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
		0x02, 0x01, 0x05, 0x00, 0x03, 0x03, 0x00, 0x04, 0x01, /* SPKI */
	};
	static const uint8_t tail[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
					0x3d, 0x04, 0x03, 0x02, 0x03, 0x02, 0x00, 0x00 };
	size_t cri = sizeof(head) + 2 + alen, outer = 2 + cri + sizeof(tail);
	size_t o = outer < 0x80 ? 2 : 3; /* DER: the shortest length form */
	uint8_t *p;

	assert_true(alen < 0x80 && cri < 0x80 && outer < 0x100);
	*len = o + outer;
	p = malloc(*len);
	assert_non_null(p);
	p[0] = 0x30;
	if (o == 3)
		p[1] = 0x81;
	p[o - 1] = (uint8_t)outer;
	p[o] = 0x30;
	p[o + 1] = (uint8_t)cri;
	memcpy(p + o + 2, head, sizeof(head));
	p[o + 2 + sizeof(head)] = 0xa0;
	p[o + 3 + sizeof(head)] = (uint8_t)alen;
	if (alen)
		memcpy(p + o + 4 + sizeof(head), attrs, alen);
	memcpy(p + o + 4 + sizeof(head) + alen, tail, sizeof(tail));
	assert_int_equal(est_csr_check(p, *len), 0);
	return p;
}

#define ATTR_SMIME 0x30, 0x0f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, \
		   0x09, 0x0f, 0x31, 0x02, 0x30, 0x00
#define ATTR_DKID 0x30, 0x13, 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, \
		  0x09, 0x10, 0x02, 0x25, 0x31, 0x04, 0x04, 0x02, 0x0a, 0x0b
#define ATTR_ADKID 0x30, 0x13, 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, \
		   0x09, 0x10, 0x02, 0x36, 0x31, 0x04, 0x04, 0x02, 0x0a, 0x0b

static int wants(const uint8_t *attrs, size_t alen)
{
	size_t len;
	uint8_t *csr = csr_with(attrs, alen, &len);
	int rc = est_csr_wants_encrypted_key(csr, len);

	free(csr);
	return rc;
}

static void test_F3_csr_wants_encrypted_key(void **st)
{
	static const uint8_t sym[] = { ATTR_SMIME, ATTR_DKID };
	static const uint8_t asym[] = { ATTR_ADKID, ATTR_SMIME };
	static const uint8_t caps_only[] = { ATTR_SMIME };
	static const uint8_t id_only[] = { ATTR_DKID };
	/* An attribute with an empty SET of values is malformed. */
	static const uint8_t bad[] = { ATTR_SMIME, 0x30, 0x0f, 0x06, 0x0b, 0x2a, 0x86, 0x48,
				       0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x25,
				       0x31, 0x00 };

	assert_int_equal(wants(sym, sizeof(sym)), 1);
	assert_int_equal(wants(asym, sizeof(asym)), 1);
	assert_int_equal(wants(caps_only, sizeof(caps_only)), 0);
	assert_int_equal(wants(id_only, sizeof(id_only)), 0);
	assert_int_equal(wants(NULL, 0), 0);
	assert_int_equal(wants(bad, sizeof(bad)), -EINVAL);
	assert_int_equal(est_csr_wants_encrypted_key(fx_csr_ext, sizeof(fx_csr_ext)), 0);
	assert_int_equal(est_csr_wants_encrypted_key(fx_ee, sizeof(fx_ee)), -EINVAL);
}

static void test_F4_csr_extension_request(void **st)
{
	static const uint8_t empty_set[] = { 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
					     0xf7, 0x0d, 0x01, 0x09, 0x0e, 0x31, 0x00 };
	struct est_slice a;
	size_t len;
	uint8_t *csr;

	assert_int_equal(est_csr_attr(fx_csr_ext, sizeof(fx_csr_ext),
				      est_oid_extension_request,
				      sizeof(est_oid_extension_request), &a), 0);
	assert_int_equal(a.ptr[0], 0x30);
	assert_true(a.ptr > fx_csr_ext && a.ptr + a.len <= fx_csr_ext + sizeof(fx_csr_ext));
	assert_int_equal(est_csr_attr(fx_csr_plain, sizeof(fx_csr_plain),
				      est_oid_extension_request,
				      sizeof(est_oid_extension_request), &a), -ENOENT);
	csr = csr_with(empty_set, sizeof(empty_set), &len); /* SET must not be empty */
	assert_int_equal(est_csr_attr(csr, len, est_oid_extension_request,
				      sizeof(est_oid_extension_request), &a), -EINVAL);
	free(csr);
}

/* ---- the skg/skc answers (F, B6, D) -------------------------------------- */

#define CT_MP "multipart/mixed; boundary=estTestCaBoundary"
#define CT_P8 "application/pkcs8"
#define CT_P7 "application/pkcs7-mime; smime-type=certs-only"
#define CT_SKG "application/pkcs7-mime; smime-type=server-generated-key"

/** One part: Content-Type @p ct (NULL: none), Base64 of @p der (or @p raw
 *  text when der is NULL). */
static char *part(const char *ct, const uint8_t *der, size_t len,
		  const char *raw)
{
	char *b = der ? b64(der, len) : NULL;
	char *s = fmt("--estTestCaBoundary\r\n%s%s%sContent-Transfer-Encoding: base64\r\n"
		      "\r\n%s\r\n",
		      ct ? "Content-Type: " : "", ct ? ct : "", ct ? "\r\n" : "",
		      b ? b : raw);
	free(b);
	return s;
}

static char *body2(char *a, char *b)
{
	char *s = fmt("%s%s--estTestCaBoundary--\r\n", a, b ? b : "");

	free(a);
	free(b);
	return s;
}

static void xlate(enum est_op op, int accept, const char *ct, const char *body,
		  const uint8_t *csr, size_t csr_len, struct est_coap_resp *r)
{
	struct est_http_resp in = {
		.err = EST_UP_OK, .status = 200, .content_type = ct,
		.body = (const uint8_t *)body, .body_len = body ? strlen(body) : 0,
	};

	assert_int_equal(est_translate_response(est_op_desc(op), accept, csr, csr_len,
						&in, NULL, r), 0);
}

static void expect_err(const struct est_coap_resp *r, uint8_t code, const char *diag)
{
	if (r->code != code)
		fail_msg("code %d.%02d want %d.%02d (%.*s)", EST_CODE_CLASS(r->code),
			 EST_CODE_DETAIL(r->code), EST_CODE_CLASS(code),
			 EST_CODE_DETAIL(code), (int)r->len, (const char *)r->payload);
	assert_int_equal(r->cf, EST_CF_NONE);
	if (!r->payload || !strstr((const char *)r->payload, diag))
		fail_msg("diag '%.*s' lacks '%s'", (int)r->len,
			 r->payload ? (const char *)r->payload : "", diag);
}

/** Expect 2.04 CF 62 [kcf, key, ccf, cert]. */
static void expect_mpcore(const struct est_coap_resp *r, unsigned kcf,
			  const uint8_t *key, size_t klen, unsigned ccf,
			  const uint8_t *cert, size_t clen)
{
	const struct est_mpcore_item items[] = { { kcf, { key, klen } },
						  { ccf, { cert, clen } } };
	uint8_t *want;
	size_t wlen;

	if (r->code != C(2, 4))
		fail_msg("code %d.%02d: %.*s", EST_CODE_CLASS(r->code),
			 EST_CODE_DETAIL(r->code), (int)r->len, (const char *)r->payload);
	assert_int_equal(r->cf, EST_CF_MULTIPART_CORE);
	assert_int_equal(est_mpcore_encode(items, 2, &want, &wlen), 0);
	assert_int_equal(r->len, wlen);
	assert_memory_equal(r->payload, want, wlen);
	free(want);
}

/* The A.3 key and PKCS#7 as a CA's multipart answer give exactly A.3. */
static void test_F3_skg_answer_is_rfc9148_a3(void **st)
{
	struct est_coap_resp r;
	struct a3 a;
	char *body;

	a3_load(&a);
	body = body2(part(CT_P8, a.key, a.key_len, NULL), part(CT_P7, a.p7, a.p7_len, NULL));
	xlate(EST_OP_SKG, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	assert_int_equal(r.code, C(2, 4));
	assert_int_equal(r.cf, EST_CF_MULTIPART_CORE);
	assert_int_equal(r.len, a.len);
	assert_memory_equal(r.payload, a.all, a.len);
	assert_null(r.note);
	est_coap_resp_free(&r);
	free(body);
	free(a.all);
}

static void test_F2_skg_parts_reversed(void **st)
{
	struct est_coap_resp r;
	struct a3 a;
	char *body;

	a3_load(&a);
	body = body2(part(CT_P7, a.p7, a.p7_len, NULL), part(CT_P8, a.key, a.key_len, NULL));
	xlate(EST_OP_SKG, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	assert_int_equal(r.len, a.len);
	assert_memory_equal(r.payload, a.all, a.len);
	est_coap_resp_free(&r);
	free(body);
	free(a.all);
}

static void test_F3_skc_single_cert_287(void **st)
{
	struct est_slice certs[4];
	struct est_coap_resp r;
	size_t n;
	struct a3 a;
	char *body;

	a3_load(&a);
	assert_int_equal(est_pkcs7_certs(a.p7, a.p7_len, certs, 4, &n), 0);
	body = body2(part(CT_P8, a.key, a.key_len, NULL), part(CT_P7, a.p7, a.p7_len, NULL));
	xlate(EST_OP_SKC, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	expect_mpcore(&r, 284, a.key, a.key_len, 287, certs[0].ptr, certs[0].len);
	est_coap_resp_free(&r);
	free(body);
	free(a.all);
}

static void test_F3_skc_picks_leaf_from_chain(void **st)
{
	struct est_coap_resp r;
	char *body;

	body = body2(part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL),
		     part(CT_P7, fx_p7_chain, sizeof(fx_p7_chain), NULL));
	xlate(EST_OP_SKC, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	expect_mpcore(&r, 284, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), 287, fx_ee, sizeof(fx_ee));
	est_coap_resp_free(&r);
	free(body);
	/* skg keeps the whole PKCS#7. */
	body = body2(part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL),
		     part(CT_P7, fx_p7_chain, sizeof(fx_p7_chain), NULL));
	xlate(EST_OP_SKG, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	expect_mpcore(&r, 284, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), 281, fx_p7_chain,
		      sizeof(fx_p7_chain));
	est_coap_resp_free(&r);
	free(body);
}

static void test_B6_skg_sec1_key_wrapped_and_noted(void **st)
{
	struct est_coap_resp r;
	char *body;

	body = body2(part(CT_P8, fx_ec_sec1, sizeof(fx_ec_sec1), NULL),
		     part(CT_P7, fx_p7_ee, sizeof(fx_p7_ee), NULL));
	xlate(EST_OP_SKG, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	expect_mpcore(&r, 284, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), 281, fx_p7_ee,
		      sizeof(fx_p7_ee));
	assert_non_null(r.note);
	assert_non_null(strstr(r.note, "SEC1"));
	est_coap_resp_free(&r);
	free(body);
}

static void test_B6_skg_pkcs1_key_wrapped(void **st)
{
	struct est_coap_resp r;
	char *body;

	body = body2(part(CT_P8, fx_rsa_pkcs1, sizeof(fx_rsa_pkcs1), NULL),
		     part(CT_P7, fx_p7_ee, sizeof(fx_p7_ee), NULL));
	xlate(EST_OP_SKG, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	expect_mpcore(&r, 284, fx_rsa_pkcs8, sizeof(fx_rsa_pkcs8), 281, fx_p7_ee,
		      sizeof(fx_p7_ee));
	assert_non_null(strstr(r.note, "PKCS#1"));
	est_coap_resp_free(&r);
	free(body);
}

/* F3: an encrypted key goes to the device as CF 280, as the CA sent it. */
static void test_F3_skg_encrypted_key_280(void **st)
{
	struct est_coap_resp r;
	char *body;

	body = body2(part(CT_SKG, fx_cms_signed, sizeof(fx_cms_signed), NULL),
		     part(CT_P7, fx_p7_ee, sizeof(fx_p7_ee), NULL));
	xlate(EST_OP_SKG, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	expect_mpcore(&r, 280, fx_cms_signed, sizeof(fx_cms_signed), 281, fx_p7_ee,
		      sizeof(fx_p7_ee));
	est_coap_resp_free(&r);
	free(body);
	body = body2(part(CT_P7, fx_p7_chain, sizeof(fx_p7_chain), NULL),
		     part(CT_SKG, fx_cms_env, sizeof(fx_cms_env), NULL));
	xlate(EST_OP_SKC, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	expect_mpcore(&r, 280, fx_cms_env, sizeof(fx_cms_env), 287, fx_ee, sizeof(fx_ee));
	est_coap_resp_free(&r);
	free(body);
}

/* B6: a bare application/pkcs7-mime part is the certificates when the
 * key part is typed, and the encrypted key when the certificates are. */
static void test_B6_skg_bare_pkcs7_mime(void **st)
{
	struct est_coap_resp r;
	char *body;

	body = body2(part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL),
		     part("application/pkcs7-mime", fx_p7_ee, sizeof(fx_p7_ee), NULL));
	xlate(EST_OP_SKG, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	expect_mpcore(&r, 284, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), 281, fx_p7_ee,
		      sizeof(fx_p7_ee));
	est_coap_resp_free(&r);
	free(body);
	body = body2(part("Application/PKCS7-MIME", fx_cms_signed, sizeof(fx_cms_signed), NULL),
		     part(CT_P7, fx_p7_ee, sizeof(fx_p7_ee), NULL));
	xlate(EST_OP_SKG, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	expect_mpcore(&r, 280, fx_cms_signed, sizeof(fx_cms_signed), 281, fx_p7_ee,
		      sizeof(fx_p7_ee));
	est_coap_resp_free(&r);
	free(body);
	body = body2(part("application/pkcs7-mime", fx_cms_signed, sizeof(fx_cms_signed), NULL),
		     part("application/pkcs7-mime", fx_p7_ee, sizeof(fx_p7_ee), NULL));
	xlate(EST_OP_SKG, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	expect_err(&r, C(5, 2), "ambiguous");
	est_coap_resp_free(&r);
	free(body);
}

/* The CSR asked for an encrypted key but the CA sent it in clear: passed
 * on as the CA sent it (the CF tells the device), and noted in the log. */
static void test_F3_skg_clear_key_for_encryption_request_noted(void **st)
{
	static const uint8_t attrs[] = { ATTR_SMIME, ATTR_DKID };
	struct est_coap_resp r;
	size_t clen;
	uint8_t *csr = csr_with(attrs, sizeof(attrs), &clen);
	char *body;

	body = body2(part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL),
		     part(CT_P7, fx_p7_ee, sizeof(fx_p7_ee), NULL));
	xlate(EST_OP_SKG, EST_CF_MULTIPART_CORE, CT_MP, body, csr, clen, &r);
	assert_int_equal(r.code, C(2, 4));
	assert_non_null(r.note);
	assert_non_null(strstr(r.note, "encrypted"));
	est_coap_resp_free(&r);
	free(body);
	free(csr);
}

static void test_F_skg_malformed_multipart_5_02(void **st)
{
	struct est_coap_resp r;
	char *ok_key = part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL);
	char *ok_p7 = part(CT_P7, fx_p7_ee, sizeof(fx_p7_ee), NULL);
	char *unclosed = fmt("%s%s", ok_key, ok_p7);
	char *no_key = body2(part(CT_P7, fx_p7_ee, sizeof(fx_p7_ee), NULL), NULL);
	char *no_cert = body2(part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL), NULL);
	char *not_b64 = body2(part(CT_P8, NULL, 0, "!!! not Base64 @@@"),
			      part(CT_P7, fx_p7_ee, sizeof(fx_p7_ee), NULL));
	char *p7_not_b64 = body2(part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL),
				 part(CT_P7, NULL, 0, "@@@"));
	char *two_keys = body2(part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL),
			       part(CT_SKG, fx_cms_env, sizeof(fx_cms_env), NULL));
	char *cert_as_key = body2(part(CT_P8, fx_ee, sizeof(fx_ee), NULL),
				  part(CT_P7, fx_p7_ee, sizeof(fx_p7_ee), NULL));
	char *p8_as_cms = body2(part(CT_SKG, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL),
				part(CT_P7, fx_p7_ee, sizeof(fx_p7_ee), NULL));
	char *truncated = body2(part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL),
				part(CT_P7, fx_p7_ee, sizeof(fx_p7_ee) / 2, NULL));
	char *key_as_p7 = body2(part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL),
				part(CT_P7, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL));
	char *qp = fmt("--estTestCaBoundary\r\nContent-Type: " CT_P8 "\r\n"
		       "Content-Transfer-Encoding: quoted-printable\r\n\r\nx=3D\r\n%s"
		       "--estTestCaBoundary--", ok_p7);
	const struct { const char *ct, *body, *diag; } rows[] = {
		{ CT_MP, unclosed, "upstream multipart without closing boundary" },
		{ CT_MP, "", "upstream multipart without opening boundary" },
		{ CT_MP, no_key, "upstream multipart has no key part" },
		{ CT_MP, no_cert, "upstream multipart has no certificate part" },
		{ CT_MP, not_b64, "upstream key part is not Base64 DER" },
		{ CT_MP, p7_not_b64, "upstream certificate part is not Base64 DER" },
		{ CT_MP, two_keys, "upstream multipart has two key parts" },
		{ CT_MP, cert_as_key, "upstream key part is not a private key" },
		{ CT_MP, p8_as_cms, "upstream encrypted key part is not CMS" },
		{ CT_MP, truncated, "upstream certificate part is not Base64 DER" },
		{ CT_MP, key_as_p7, "upstream certificate part is not a certs-only PKCS#7" },
		{ CT_MP, qp, "upstream key part is not Base64 DER" },
		{ "multipart/mixed", no_key, "without a valid boundary" },
		{ "multipart/mixed; boundary=\"\"", no_key, "without a valid boundary" },
		{ NULL, no_key, "without a valid boundary" },
		{ "text/html", no_key, "upstream sent text/html" },
		{ "multipart/mixed; boundary=other", no_key, "without opening boundary" },
	};

	for (size_t i = 0; i < N(rows); i++) {
		xlate(EST_OP_SKG, EST_CF_MULTIPART_CORE, rows[i].ct, rows[i].body, NULL, 0,
		      &r);
		expect_err(&r, C(5, 2), rows[i].diag);
		est_coap_resp_free(&r);
	}
	free(ok_key);
	free(ok_p7);
	free(unclosed);
	free(no_key);
	free(no_cert);
	free(not_b64);
	free(p7_not_b64);
	free(two_keys);
	free(cert_as_key);
	free(p8_as_cms);
	free(truncated);
	free(key_as_p7);
	free(qp);
}

static void test_F_skc_no_single_leaf_5_02(void **st)
{
	struct est_coap_resp r;
	char *body;

	/* Two end-entity certificates: which one goes with the key? */
	body = body2(part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL),
		     part(CT_P7, fx_p7_two_ee, sizeof(fx_p7_two_ee), NULL));
	xlate(EST_OP_SKC, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	expect_err(&r, C(5, 2), "no single end-entity certificate");
	est_coap_resp_free(&r);
	free(body);
	/* CA certificates only: the sub CA issues nothing here, so it counts
	 * as the end of the chain; skg would pass the PKCS#7 on as it is. */
	body = body2(part(CT_P8, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), NULL),
		     part(CT_P7, fx_p7_cas, sizeof(fx_p7_cas), NULL));
	xlate(EST_OP_SKC, EST_CF_MULTIPART_CORE, CT_MP, body, NULL, 0, &r);
	assert_int_equal(r.code, C(2, 4));
	est_coap_resp_free(&r);
	free(body);
}

static void test_B3_skg_accept_281_4_06(void **st)
{
	struct est_coap_resp r;

	xlate(EST_OP_SKG, EST_CF_PKCS7_CERTS, CT_MP, "x", NULL, 0, &r);
	expect_err(&r, C(4, 6), "Accept must be 62");
	est_coap_resp_free(&r);
}

/* D: a CA without /serverkeygen. */
static void test_D_skg_status_mapping(void **st)
{
	static const struct { long status; uint8_t code; } rows[] = {
		{ 404, C(4, 4) }, { 501, C(5, 1) }, { 405, C(4, 5) }, { 500, C(5, 0) },
	};
	struct est_coap_resp r;

	for (size_t i = 0; i < N(rows); i++) {
		struct est_http_resp in = { .err = EST_UP_OK, .status = rows[i].status };

		assert_int_equal(est_translate_response(est_op_desc(EST_OP_SKG),
							EST_CF_MULTIPART_CORE, NULL, 0,
							&in, NULL, &r), 0);
		assert_int_equal(r.code, rows[i].code);
		est_coap_resp_free(&r);
	}
}

/* ---- registrar-side keygen answers (F4) ---------------------------------- */

static void enroll(enum est_op op, int accept, long status, const uint8_t *p7,
		   size_t len, const uint8_t *csr, size_t csr_len,
		   struct est_coap_resp *r)
{
	char *body = p7 ? b64(p7, len) : NULL;
	struct est_http_resp in = {
		.err = EST_UP_OK, .status = status, .content_type = CT_P7,
		.body = (const uint8_t *)body, .body_len = body ? strlen(body) : 0,
	};

	assert_int_equal(est_translate_keygen_enroll(est_op_desc(op), accept, fx_ec_pkcs8,
						     sizeof(fx_ec_pkcs8), csr, csr_len,
						     &in, NULL, r), 0);
	free(body);
}

static void test_F4_registrar_skg_answer(void **st)
{
	struct est_coap_resp r;

	enroll(EST_OP_SKG, EST_CF_MULTIPART_CORE, 200, fx_p7_ee, sizeof(fx_p7_ee),
	       fx_csr_plain, sizeof(fx_csr_plain), &r);
	expect_mpcore(&r, 284, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), 281, fx_p7_ee,
		      sizeof(fx_p7_ee));
	est_coap_resp_free(&r);
}

/* skc: the certificate of the generated key's public key (the CSR's). */
static void test_F4_registrar_skc_picks_key_cert(void **st)
{
	struct est_coap_resp r;

	enroll(EST_OP_SKC, EST_CF_MULTIPART_CORE, 200, fx_p7_chain, sizeof(fx_p7_chain),
	       fx_csr_plain, sizeof(fx_csr_plain), &r);
	expect_mpcore(&r, 284, fx_ec_pkcs8, sizeof(fx_ec_pkcs8), 287, fx_ee,
		      sizeof(fx_ee));
	est_coap_resp_free(&r);
	enroll(EST_OP_SKC, EST_CF_MULTIPART_CORE, 200, fx_p7_cas, sizeof(fx_p7_cas),
	       fx_csr_plain, sizeof(fx_csr_plain), &r);
	expect_err(&r, C(5, 2), "no certificate for the generated key");
	est_coap_resp_free(&r);
}

static void test_F4_registrar_errors_map_per_spec_d(void **st)
{
	struct est_coap_resp r;
	struct est_http_resp in = { .err = EST_UP_CONNECT };

	enroll(EST_OP_SKG, EST_CF_MULTIPART_CORE, 404, NULL, 0, fx_csr_plain,
	       sizeof(fx_csr_plain), &r);
	assert_int_equal(r.code, C(4, 4));
	est_coap_resp_free(&r);
	enroll(EST_OP_SKG, EST_CF_MULTIPART_CORE, 202, NULL, 0, fx_csr_plain,
	       sizeof(fx_csr_plain), &r);
	assert_int_equal(r.code, C(5, 3));
	assert_true(r.has_max_age);
	est_coap_resp_free(&r);
	enroll(EST_OP_SKG, EST_CF_MULTIPART_CORE, 204, NULL, 0, fx_csr_plain,
	       sizeof(fx_csr_plain), &r);
	expect_err(&r, C(5, 2), "upstream answered 204 without a certificate or key");
	assert_false(r.has_max_age);
	est_coap_resp_free(&r);
	enroll(EST_OP_SKC, EST_CF_MULTIPART_CORE, 429, NULL, 0, fx_csr_plain,
	       sizeof(fx_csr_plain), &r);
	expect_err(&r, C(4, 29), "too many requests");
	assert_true(r.has_max_age); /* no Retry-After: the default */
	assert_int_equal(r.max_age, 60);
	est_coap_resp_free(&r);
	enroll(EST_OP_SKG, EST_CF_PKCS7_CERTS, 200, fx_p7_ee, sizeof(fx_p7_ee),
	       fx_csr_plain, sizeof(fx_csr_plain), &r);
	expect_err(&r, C(4, 6), "Accept must be 62");
	est_coap_resp_free(&r);
	assert_int_equal(est_translate_keygen_enroll(est_op_desc(EST_OP_SKG),
						     EST_CF_MULTIPART_CORE, fx_ec_pkcs8,
						     sizeof(fx_ec_pkcs8), NULL, 0, &in,
						     NULL, &r), 0);
	expect_err(&r, C(5, 2), "upstream unreachable");
	est_coap_resp_free(&r);
	assert_int_equal(est_translate_keygen_enroll(est_op_desc(EST_OP_SEN),
						     EST_CF_MULTIPART_CORE, fx_ec_pkcs8,
						     sizeof(fx_ec_pkcs8), NULL, 0, &in,
						     NULL, &r), 0);
	assert_int_equal(r.code, C(5, 0));
	est_coap_resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_B6_mime_type_split),
		cmocka_unit_test(test_G6_mime_type_malformed),
		cmocka_unit_test(test_B6_mime_param_forms),
		cmocka_unit_test(test_G6_mime_param_malformed),
		cmocka_unit_test(test_F2_multipart_crlf_two_parts),
		cmocka_unit_test(test_F2_multipart_bare_lf),
		cmocka_unit_test(test_F2_multipart_preamble_epilogue),
		cmocka_unit_test(test_F2_multipart_quoted_boundary_with_space),
		cmocka_unit_test(test_F2_multipart_transport_padding),
		cmocka_unit_test(test_F2_multipart_header_case_fold_unknown),
		cmocka_unit_test(test_F2_multipart_part_without_headers),
		cmocka_unit_test(test_F2_multipart_lookalike_lines_are_content),
		cmocka_unit_test(test_F2_multipart_binary_body),
		cmocka_unit_test(test_G6_multipart_no_opening_boundary),
		cmocka_unit_test(test_G6_multipart_no_closing_boundary),
		cmocka_unit_test(test_G6_multipart_no_parts),
		cmocka_unit_test(test_G6_multipart_header_without_colon),
		cmocka_unit_test(test_G6_multipart_headers_not_ended),
		cmocka_unit_test(test_G6_multipart_duplicate_content_type),
		cmocka_unit_test(test_G6_multipart_malformed_part_type),
		cmocka_unit_test(test_G6_multipart_folded_first_line),
		cmocka_unit_test(test_G6_multipart_too_many_parts),
		cmocka_unit_test(test_G6_multipart_too_many_headers),
		cmocka_unit_test(test_G6_multipart_bad_boundary),
		cmocka_unit_test(test_F3_mpcore_rfc9148_figure2),
		cmocka_unit_test(test_F3_mpcore_rfc9148_a3),
		cmocka_unit_test(test_F3_mpcore_minimal_forms),
		cmocka_unit_test(test_B6_pkcs8_passes_through),
		cmocka_unit_test(test_B6_sec1_wrapped_like_openssl),
		cmocka_unit_test(test_B6_pkcs1_wrapped_like_openssl),
		cmocka_unit_test(test_B6_sec1_without_public_key),
		cmocka_unit_test(test_G6_privkey_malformed),
		cmocka_unit_test(test_G6_privkey_trailing_bytes),
		cmocka_unit_test(test_F3_cms_key_shapes),
		cmocka_unit_test(test_F3_csr_wants_encrypted_key),
		cmocka_unit_test(test_F4_csr_extension_request),
		cmocka_unit_test(test_F3_skg_answer_is_rfc9148_a3),
		cmocka_unit_test(test_F2_skg_parts_reversed),
		cmocka_unit_test(test_F3_skc_single_cert_287),
		cmocka_unit_test(test_F3_skc_picks_leaf_from_chain),
		cmocka_unit_test(test_B6_skg_sec1_key_wrapped_and_noted),
		cmocka_unit_test(test_B6_skg_pkcs1_key_wrapped),
		cmocka_unit_test(test_F3_skg_encrypted_key_280),
		cmocka_unit_test(test_B6_skg_bare_pkcs7_mime),
		cmocka_unit_test(test_F3_skg_clear_key_for_encryption_request_noted),
		cmocka_unit_test(test_F_skg_malformed_multipart_5_02),
		cmocka_unit_test(test_F_skc_no_single_leaf_5_02),
		cmocka_unit_test(test_B3_skg_accept_281_4_06),
		cmocka_unit_test(test_D_skg_status_mapping),
		cmocka_unit_test(test_F4_registrar_skg_answer),
		cmocka_unit_test(test_F4_registrar_skc_picks_key_cert),
		cmocka_unit_test(test_F4_registrar_errors_map_per_spec_d),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
