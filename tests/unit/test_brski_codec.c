/* test_brski_codec.c - cBRSKI codecs (docs/conformance.md H1-H5): COSE_Sign1
 * on the constrained-voucher example vectors (fixtures/cv, transcribed from
 * the published draft examples), sign->verify, signature forms, x5bag forms,
 * SID/name decoding, RVR encoding, idevid-issuer, MASA URLs, vs/es status. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pki/brski_pki.h"
#include "estgw/cose.h"
#include "estgw/voucher.h"

struct blob {
	uint8_t b[8192];
	size_t n;
};

/* Read a fixtures/cv/NAME.hex file (hex pairs, whitespace, '#' comments). */
static void load_hex(const char *name, struct blob *o)
{
	const char *root = getenv("ESTGW_SOURCE_ROOT");
	char path[512];
	FILE *f;
	int c, hi = -1;

	snprintf(path, sizeof(path), "%s/tests/unit/fixtures/cv/%s.hex",
		 root ? root : ".", name);
	f = fopen(path, "r");
	assert_non_null(f);
	o->n = 0;
	while ((c = fgetc(f)) != EOF) {
		if (c == '#') {
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
			continue;
		}
		int v = (c >= '0' && c <= '9') ? c - '0' :
			(c >= 'A' && c <= 'F') ? c - 'A' + 10 :
			(c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
		if (v < 0)
			continue;
		if (hi < 0) {
			hi = v;
		} else {
			assert_true(o->n < sizeof(o->b));
			o->b[o->n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	fclose(f);
	assert_int_equal(hi, -1);
}

static void hex(const char *h, struct blob *o)
{
	unsigned v;

	o->n = 0;
	for (; *h; ) {
		if (*h == ' ') {
			h++;
			continue;
		}
		assert_int_equal(sscanf(h, "%2x", &v), 1);
		o->b[o->n++] = (uint8_t)v;
		h += 2;
	}
}

static int slice_eq(struct est_slice s, const void *p, size_t n)
{
	return s.ptr && s.len == n && memcmp(s.ptr, p, n) == 0;
}

/* ---- COSE on the published vectors (H2) ---------------------------------- */

static void test_H2_cose_verify_cv_pvr(void **st)
{
	struct blob pvr, cert;
	struct cose_sign1 s;

	load_hex("pvr", &pvr);
	load_hex("pledge", &cert);
	assert_int_equal(cose_sign1_parse(pvr.b, pvr.n, &s), 0);
	assert_true(s.tagged);
	assert_int_equal(s.alg, COSE_ALG_ES256);
	assert_int_equal(s.sig.len, 64);
	assert_int_equal(s.nx5bag, 0);
	assert_int_equal(brski_cose_verify(&s, cert.b, cert.n), 0);
	/* a flipped payload bit fails */
	pvr.b[20] ^= 1;
	assert_int_equal(cose_sign1_parse(pvr.b, pvr.n, &s), 0);
	assert_int_equal(brski_cose_verify(&s, cert.b, cert.n), -EBADMSG);
}

static void test_H2_cose_verify_cv_rvr_x5bag_array(void **st)
{
	struct blob rvr, reg, pvr;
	struct cose_sign1 s;
	struct vr_fields f;

	load_hex("rvr", &rvr);
	load_hex("registrar", &reg);
	load_hex("pvr", &pvr);
	assert_int_equal(cose_sign1_parse(rvr.b, rvr.n, &s), 0);
	assert_int_equal(s.nx5bag, 2);
	assert_true(slice_eq(s.x5bag[0], reg.b, reg.n));
	assert_int_equal(brski_cose_verify(&s, reg.b, reg.n), 0);
	assert_int_equal(brski_cose_verify(&s, s.x5bag[1].ptr, s.x5bag[1].len), -EBADMSG);
	assert_int_equal(vr_decode(s.payload.ptr, s.payload.len, VR_REQUEST, &f), 0);
	assert_int_equal(f.assertion, VR_ASSERT_PROXIMITY);
	assert_true(slice_eq(f.serial, "JADA123456789", 13));
	assert_true(slice_eq(f.prior_signed, pvr.b, pvr.n));
	assert_true(slice_eq(f.created_on, "2022-12-06T20:04:15.754Z", 24));
	assert_null(f.prox_pubk.ptr);
}

static void test_H2_cose_verify_cv_voucher(void **st)
{
	struct blob v, ca;
	struct cose_sign1 s;
	struct vr_fields f;
	uint8_t nonce[] = { 0x57, 0xEE, 0xD7, 0x86, 0xAD, 0x40, 0x49, 0x07 };

	load_hex("voucher", &v);
	load_hex("masa_ca", &ca);
	assert_int_equal(cose_sign1_parse(v.b, v.n, &s), 0);
	assert_int_equal(brski_cose_verify(&s, ca.b, ca.n), 0);
	assert_int_equal(vr_decode(s.payload.ptr, s.payload.len, VR_VOUCHER, &f), 0);
	assert_int_equal(f.assertion, VR_ASSERT_PROXIMITY);
	assert_int_equal(f.rev_checks, 0);
	assert_true(slice_eq(f.nonce, nonce, sizeof(nonce)));
	assert_true(slice_eq(f.serial, "JADA123456789", 13));
	assert_int_equal(f.pinned_cert.len, 583);
	/* the voucher-request decoder does not take a voucher */
	assert_int_equal(vr_decode(s.payload.ptr, s.payload.len, VR_REQUEST, &f), -ENOENT);
}

static void test_H2_cv_pvr_fields(void **st)
{
	struct blob pvr, reg;
	struct cose_sign1 s;
	struct vr_fields f;
	struct est_slice spki;
	uint8_t nonce[] = { 0x23, 0xBF, 0xBB, 0xC9, 0xC2, 0xBC, 0xF2, 0x13 };

	load_hex("pvr", &pvr);
	load_hex("registrar", &reg);
	assert_int_equal(cose_sign1_parse(pvr.b, pvr.n, &s), 0);
	assert_int_equal(vr_decode(s.payload.ptr, s.payload.len, VR_REQUEST, &f), 0);
	assert_true(slice_eq(f.nonce, nonce, sizeof(nonce)));
	assert_int_equal(est_cert_spki(reg.b, reg.n, &spki), 0);
	assert_true(slice_eq(f.prox_pubk, spki.ptr, spki.len)); /* 91-byte SPKI */
}

/* ---- sign -> verify, strip, signature forms ------------------------------ */

static struct brski_signer *fixture_signer(const char **certfile)
{
	const char *dir = getenv("BRSKI_UNIT_PKI");
	static char key[512], crt[512];
	char why[200];

	assert_non_null(dir);
	snprintf(key, sizeof(key), "%s/signer.key", dir);
	snprintf(crt, sizeof(crt), "%s/signer.crt", dir);
	*certfile = crt;
	struct brski_signer *sg = brski_signer_new(key, why, sizeof(why));
	if (!sg)
		print_error("%s\n", why);
	assert_non_null(sg);
	return sg;
}

static void test_H2_cose_sign_verify_round_trip(void **st)
{
	const char *crtfile;
	struct brski_signer *sg = fixture_signer(&crtfile);
	struct est_slice *certs;
	size_t ncert;
	uint8_t msg[] = { 0xa1, 0x01, 0x02 };
	struct est_slice payload = { msg, sizeof(msg) };
	uint8_t *out, *stripped;
	size_t len, slen;
	struct cose_sign1 s, s2;

	assert_int_equal(brski_certs_load(crtfile, &certs, &ncert), 0);
	/* one certificate: x5bag is a single bstr */
	assert_int_equal(brski_cose_sign(sg, &payload, certs, 1, &out, &len), 0);
	assert_int_equal(out[0], 0xd2);
	assert_int_equal(cose_sign1_parse(out, len, &s), 0);
	assert_int_equal(s.nx5bag, 1);
	assert_int_equal(s.unprot.ptr[3], 0x59); /* {32: bstr(...)} */
	assert_int_equal(brski_cose_verify(&s, certs[0].ptr, certs[0].len), 0);
	/* stripped: same signature still verifies, unprotected is {} */
	assert_int_equal(cose_sign1_strip(out, len, &stripped, &slen), 0);
	assert_int_equal(cose_sign1_parse(stripped, slen, &s2), 0);
	assert_int_equal(s2.unprot.len, 1);
	assert_int_equal(s2.unprot.ptr[0], 0xa0);
	assert_int_equal(s2.nx5bag, 0);
	assert_int_equal(brski_cose_verify(&s2, certs[0].ptr, certs[0].len), 0);
	free(stripped);
	free(out);
	/* two certificates: an array */
	struct est_slice two[2] = { certs[0], certs[0] };
	assert_int_equal(brski_cose_sign(sg, &payload, two, 2, &out, &len), 0);
	assert_int_equal(cose_sign1_parse(out, len, &s), 0);
	assert_int_equal(s.nx5bag, 2);
	assert_int_equal(s.unprot.ptr[3], 0x82); /* {32: [..]} */
	free(out);
	brski_certs_free(certs, ncert);
	brski_signer_free(sg);
}

/* x5bag/x5chain of an empty bstr, alone or in an array: no certificate is
 * empty (G6; found by the long fuzz campaign); in the protected header an
 * x5chain survives the strip. */
static void test_G6_cose_empty_x5chain_rejected(void **st)
{
	struct blob in;
	struct cose_sign1 s, t;
	uint8_t *out;
	size_t len;

	/* [h'a1 1821 40' ({33: h''}), {}, h'', h'00'] */
	hex("84 44 a1 18 21 40 a0 40 41 00", &in);
	assert_int_equal(cose_sign1_parse(in.b, in.n, &s), -EINVAL);
	/* [h'', {33: [h'']}, h'', h'00'] */
	hex("84 40 a1 18 21 81 40 40 41 00", &in);
	assert_int_equal(cose_sign1_parse(in.b, in.n, &s), -EINVAL);
	/* [h'a1 1821 41 aa' ({33: h'aa'}), {}, h'', h'00']: kept by the strip */
	hex("84 45 a1 18 21 41 aa a0 40 41 00", &in);
	assert_int_equal(cose_sign1_parse(in.b, in.n, &s), 0);
	assert_int_equal(s.nx5bag, 1);
	assert_int_equal(cose_sign1_strip(in.b, in.n, &out, &len), 0);
	assert_int_equal(cose_sign1_parse(out, len, &t), 0);
	assert_int_equal(t.nx5bag, 1);
	assert_true(t.x5bag[0].ptr > t.prot.ptr && t.x5bag[0].ptr < t.prot.ptr + t.prot.len);
	free(out);
}

static void test_H2_sig_der_raw(void **st)
{
	struct blob der;
	uint8_t raw[64], back[80];
	size_t n;

	/* r with a leading 00 (high bit), s short (31 bytes) */
	hex("30 44 02 21 00 80 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f"
	    " 02 1f 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f", &der);
	assert_int_equal(cose_sig_der_to_raw(der.b, der.n, raw, 32), 0);
	assert_int_equal(raw[0], 0x80);
	assert_int_equal(raw[32], 0x00);
	assert_int_equal(raw[33], 0x01);
	assert_int_equal(cose_sig_raw_to_der(raw, 32, back, sizeof(back), &n), 0);
	assert_int_equal(n, der.n);
	assert_memory_equal(back, der.b, n);
	/* malformed: negative integer, trailing bytes, 33-byte value */
	hex("30 06 02 01 80 02 01 01", &der);
	assert_int_equal(cose_sig_der_to_raw(der.b, der.n, raw, 32), -EINVAL);
	hex("30 06 02 01 01 02 01 01 00", &der);
	assert_int_equal(cose_sig_der_to_raw(der.b, der.n, raw, 32), -EINVAL);
	hex("30 06 02 01 01 02 01 01", &der);
	assert_int_equal(cose_sig_der_to_raw(der.b, der.n, raw, 32), 0);
	assert_int_equal(raw[31], 1);
}

static void test_H5_cose_der_signature_rejected(void **st)
{
	struct blob pvr, cert;
	struct cose_sign1 s;
	uint8_t der[80];
	size_t n;

	load_hex("pvr", &pvr);
	load_hex("pledge", &cert);
	assert_int_equal(cose_sign1_parse(pvr.b, pvr.n, &s), 0);
	assert_int_equal(cose_sig_raw_to_der(s.sig.ptr, 32, der, sizeof(der), &n), 0);
	s.sig = (struct est_slice){ der, n };
	assert_int_equal(brski_cose_verify(&s, cert.b, cert.n), -EBADMSG);
	s.alg = -35; /* ES384 */
	assert_int_equal(brski_cose_verify(&s, cert.b, cert.n), -ENOTSUP);
}

static void test_H2_cose_malformed(void **st)
{
	static const char *const bad[] = {
		"",                               /* empty */
		"d3 84 40 a0 40 40",              /* tag 19 */
		"83 40 a0 40",                    /* 3 elements */
		"84 a0 a0 40 40",                 /* protected not a bstr */
		"84 40 80 40 40",                 /* unprotected not a map: ok-skip? no */
		"84 40 a0 40 01",                 /* signature not a bstr */
		"84 41 01 a0 40 40",              /* protected not a map */
		"84 40 a1 18 20 01 40 40",        /* x5bag an int */
		"84 40 a1 18 20 80 40 40",        /* x5bag empty array */
		"84 40 a0 40 40 00",              /* trailing byte */
		"84 40 a0 40 5a ff ff ff ff",     /* truncated signature */
		"84 40 a0 40",                    /* missing items */
		"9f 40 a0 40 40 ff",              /* indefinite array */
		"84 40 a1 01 01 40 40 40",        /* map count lies */
	};
	struct blob b;
	struct cose_sign1 s;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hex(bad[i], &b);
		int rc = cose_sign1_parse(b.b, b.n, &s);
		if (rc == 0)
			fail_msg("case %zu (%s) parsed", i, bad[i]);
	}
	hex("84 40 a0 f6 40", &b); /* detached payload */
	assert_int_equal(cose_sign1_parse(b.b, b.n, &s), -ENOTSUP);
	hex("84 40 a1 18 20 89 41 00 41 00 41 00 41 00 41 00 41 00 41 00 41 00 41 00 40 40", &b);
	assert_int_equal(cose_sign1_parse(b.b, b.n, &s), -E2BIG);
	hex("84 40 a1 18 21 41 30 40 40", &b); /* x5chain single bstr */
	assert_int_equal(cose_sign1_parse(b.b, b.n, &s), 0);
	assert_int_equal(s.nx5bag, 1);
	assert_false(s.tagged);
}

/* ---- voucher-request decoding: SID delta, tag 47, names ----------------- */

static void test_H2_vr_sid_forms(void **st)
{
	struct blob b;
	struct vr_fields f;

	/* {2501: {1: 2, 7: h'0102030405060708', 13: "S1"}} deltas */
	hex("a1 19 09 c5 a3 01 02 07 48 01 02 03 04 05 06 07 08 0d 62 53 31", &b);
	assert_int_equal(vr_decode(b.b, b.n, VR_REQUEST, &f), 0);
	assert_int_equal(f.assertion, 2);
	assert_int_equal(f.nonce.len, 8);
	assert_true(slice_eq(f.serial, "S1", 2));
	/* absolute SIDs with tag 47: 47(2514) serial, 47(2508) nonce */
	hex("a1 d8 2f 19 09 c5 a2 d8 2f 19 09 d2 62 53 32 d8 2f 19 09 cc 48 01 02 03 04 05 06 07 08", &b);
	assert_int_equal(vr_decode(b.b, b.n, VR_REQUEST, &f), 0);
	assert_true(slice_eq(f.serial, "S2", 2));
	assert_int_equal(f.nonce.len, 8);
	/* names, mixed with a delta; assertion as text; unknown leaf skipped */
	hex("a1 78 1c 69 65 74 66 2d 76 6f 75 63 68 65 72 2d 72 65 71 75 65 73 74 3a 76 6f 75 63 68 65 72"
	    " a4 69 61 73 73 65 72 74 69 6f 6e 69 70 72 6f 78 69 6d 69 74 79"
	    " 6d 73 65 72 69 61 6c 2d 6e 75 6d 62 65 72 62 53 33"
	    " 07 41 aa"
	    " 18 63 a1 01 02", &b);
	assert_int_equal(vr_decode(b.b, b.n, VR_REQUEST, &f), 0);
	assert_int_equal(f.assertion, 2);
	assert_true(slice_eq(f.serial, "S3", 2));
	assert_int_equal(f.nonce.len, 1);
}

static void test_H2_vr_malformed(void **st)
{
	static const char *const bad[] = {
		"80",                             /* not a map */
		"a1 19 09 c5 01",                 /* node not a map */
		"a1 19 09 c5 a1 0d 41 00",        /* serial as bytes */
		"a1 19 09 c5 a1 07 61 41",        /* nonce as text */
		"a1 19 09 c5 a1 01 05",           /* assertion out of range */
		"a1 19 09 c5 a2 07 40 07 40",     /* repeated leaf */
		"a2 19 09 c5 a0 19 09 c5 a0",     /* repeated node */
		"a1 19 09 c5 a1 d8 30 01 02",     /* tag 48 as key */
		"a1 19 09 c5 a1 f9 00 00 02",     /* float key */
		"a1 19 09 c5 a1 07",              /* truncated */
	};
	struct blob b;
	struct vr_fields f;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hex(bad[i], &b);
		if (vr_decode(b.b, b.n, VR_REQUEST, &f) == 0)
			fail_msg("case %zu (%s) decoded", i, bad[i]);
	}
	hex("a1 19 09 93 a0", &b); /* a voucher, not a request */
	assert_int_equal(vr_decode(b.b, b.n, VR_REQUEST, &f), -ENOENT);
}

static void test_H2_rvr_encode(void **st)
{
	struct blob pvr;
	uint8_t iss[] = { 0x04, 0x02, 0x30, 0x00 }, nonce[8] = { 1 };
	struct rvr_in in = {
		.assertion = 2,
		.created_on = "2026-11-24T10:00:00Z",
		.idevid_issuer = { iss, sizeof(iss) },
		.nonce = { nonce, sizeof(nonce) },
		.serial = { (const uint8_t *)"S1", 2 },
	};
	struct vr_fields f;
	uint8_t *out;
	size_t len;

	load_hex("pvr", &pvr);
	in.prior_signed = (struct est_slice){ pvr.b, pvr.n };
	assert_int_equal(vr_encode_rvr(&in, &out, &len), 0);
	assert_memory_equal(out, "\xa1\x19\x09\xc5\xa6\x01\x02\x02\x74", 9);
	assert_int_equal(vr_decode(out, len, VR_REQUEST, &f), 0);
	assert_true(slice_eq(f.prior_signed, pvr.b, pvr.n));
	assert_true(slice_eq(f.idevid_issuer, iss, sizeof(iss)));
	assert_null(f.prox_cert.ptr);
	free(out);
	in.nonce.ptr = NULL;
	assert_int_equal(vr_encode_rvr(&in, &out, &len), -EINVAL);
}

/* ---- IDevID facts and MASA URLs ----------------------------------------- */

static void test_H2_idevid_issuer_serial_masa_url(void **st)
{
	struct blob cert, reg;
	struct est_slice v;
	uint8_t want[] = { 0x04, 0x18, 0x30, 0x16, 0x80, 0x14, 0xCB, 0x8D, 0x98, 0xCA,
			   0x74, 0xC5, 0x1B, 0x58, 0xDD, 0xE7, 0xAC, 0xEF, 0x86, 0x9A,
			   0x94, 0x43, 0xA8, 0xD6, 0x66, 0xA6 };
	uint8_t built[40];
	size_t n;

	load_hex("pledge", &cert);
	load_hex("registrar", &reg);
	assert_int_equal(idevid_issuer(cert.b, cert.n, &v), 0);
	assert_true(slice_eq(v, want, sizeof(want))); /* as in the CV RVR */
	assert_int_equal(idevid_issuer_from_keyid(want + 6, 20, built, sizeof(built), &n), 0);
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(built, want, n);
	assert_int_equal(idevid_serial(cert.b, cert.n, &v), 0);
	assert_true(slice_eq(v, "JADA123456789", 13));
	assert_int_equal(idevid_masa_url(cert.b, cert.n, &v), 0);
	assert_true(slice_eq(v, "masa.stok.nl", 12));
	assert_int_equal(idevid_serial(reg.b, reg.n, &v), -ENOENT);
	assert_int_equal(idevid_masa_url(reg.b, reg.n, &v), -ENOENT);
	cert.b[5] ^= 0xff; /* break the TBS length */
	assert_true(idevid_serial(cert.b, cert.n, &v) < 0);
}

/* Find @p pat in @p b (a spot to corrupt). */
static size_t find(const struct blob *b, const char *pat_hex)
{
	struct blob pat;

	hex(pat_hex, &pat);
	for (size_t i = 0; i + pat.n <= b->n; i++)
		if (memcmp(b->b + i, pat.b, pat.n) == 0)
			return i;
	fail_msg("pattern %s not found", pat_hex);
	return 0;
}

static void test_G6_idevid_malformed(void **st)
{
	struct blob c;
	struct est_slice v;

	load_hex("pledge", &c);
	c.n -= 1; /* truncated */
	assert_int_equal(idevid_serial(c.b, c.n, &v), -EINVAL);
	assert_int_equal(idevid_masa_url(c.b, c.n, &v), -EINVAL);
	assert_int_equal(idevid_issuer(c.b, c.n, &v), -EINVAL);
	load_hex("pledge", &c);
	c.b[find(&c, "16 0C 6D 61 73 61")] = 0x0c; /* masa-url as UTF8String */
	assert_int_equal(idevid_masa_url(c.b, c.n, &v), -EINVAL);
	load_hex("pledge", &c);
	c.b[find(&c, "13 0D 4A 41 44 41")] = 0x1e; /* serialNumber as BMPString */
	assert_int_equal(idevid_serial(c.b, c.n, &v), -EINVAL);
	load_hex("pledge", &c);
	c.b[find(&c, "04 18 30 16 80 14")] = 0x05; /* AKI extnValue not an OCTET STRING */
	assert_int_equal(idevid_issuer(c.b, c.n, &v), -EINVAL);
	load_hex("pledge", &c);
	c.b[find(&c, "A3 57 30 55")] = 0xa4; /* [4] where [3] extensions belong */
	assert_int_equal(idevid_issuer(c.b, c.n, &v), -EINVAL);
	load_hex("pledge", &c);
	c.b[find(&c, "2B 06 01 05 05 07 01 20") + 7] = 0x21; /* another OID: no MASA URL */
	assert_int_equal(idevid_masa_url(c.b, c.n, &v), -ENOENT);
	assert_int_equal(idevid_serial((const uint8_t *)"\x30\x00", 2, &v), -EINVAL);
	assert_int_equal(idevid_issuer_from_keyid(c.b, 0, c.b, 10, &c.n), -EINVAL);
}

static void test_H2_keyid_fallback_matches_ski(void **st)
{
	struct blob ca;
	uint8_t id[20];
	uint8_t ski[] = { 0xCB, 0x8D, 0x98, 0xCA, 0x74, 0xC5, 0x1B, 0x58, 0xDD, 0xE7,
			  0xAC, 0xEF, 0x86, 0x9A, 0x94, 0x43, 0xA8, 0xD6, 0x66, 0xA6 };

	load_hex("masa_ca", &ca); /* its SKI is the SHA-1 of its key */
	assert_int_equal(brski_cert_keyid(ca.b, ca.n, id), 0);
	assert_memory_equal(id, ski, 20);
}

static void test_H2_masa_url_forms(void **st)
{
	static const struct {
		const char *in, *out;
	} ok[] = {
		{ "masa.example.com", "https://masa.example.com/.well-known/brski/requestvoucher" },
		{ "masa.example.com:8443", "https://masa.example.com:8443/.well-known/brski/requestvoucher" },
		{ "https://m.example", "https://m.example/.well-known/brski/requestvoucher" },
		{ "HTTPS://m.example/", "https://m.example/.well-known/brski/requestvoucher" },
		{ "https://m.example/vendor/brski", "https://m.example/vendor/brski/requestvoucher" },
		{ "m.example/x/", "https://m.example/x/requestvoucher" },
		{ "[::1]:4443", "https://[::1]:4443/.well-known/brski/requestvoucher" },
	};
	static const char *const bad[] = {
		"", "http://m.example", "ftp://m", "https://", "https:///x",
		"m example", "m.example/\x01", "u@m.example", "m.example/?q", "/path",
	};
	char out[128];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(masa_request_url(ok[i].in, strlen(ok[i].in), out, sizeof(out)), 0);
		assert_string_equal(out, ok[i].out);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (masa_request_url(bad[i], strlen(bad[i]), out, sizeof(out)) == 0)
			fail_msg("'%s' accepted as %s", bad[i], out);
	assert_int_equal(masa_request_url("m.example", 9, out, 20), -EINVAL);
}

/* ---- vs / es status (H3) ------------------------------------------------ */

static void test_H3_status_decode(void **st)
{
	struct blob b;
	struct brski_status s;

	/* CV appendix enrollstatus: {"version": 1, "status": true} */
	hex("A2 67 76 65 72 73 69 6F 6E 01 66 73 74 61 74 75 73 F5", &b);
	assert_int_equal(brski_status_decode(b.b, b.n, &s), 0);
	assert_int_equal(s.version, 1);
	assert_int_equal(s.status, 1);
	assert_null(s.reason.ptr);
	/* false with reason and reason-context */
	hex("A4 67 76 65 72 73 69 6F 6E 01 66 73 74 61 74 75 73 F4 66 72 65 61 73 6F 6E 63 62 61 64"
	    " 6e 72 65 61 73 6f 6e 2d 63 6f 6e 74 65 78 74 a1 61 61 01", &b);
	assert_int_equal(brski_status_decode(b.b, b.n, &s), 0);
	assert_int_equal(s.status, 0);
	assert_true(slice_eq(s.reason, "bad", 3));
	assert_true(s.has_context);
	static const char *const bad[] = {
		"A1 67 76 65 72 73 69 6F 6E 01",                            /* no status */
		"A1 66 73 74 61 74 75 73 F5",                               /* no version */
		"A2 67 76 65 72 73 69 6F 6E 01 66 73 74 61 74 75 73 F4",    /* false, no reason */
		"A2 67 76 65 72 73 69 6F 6E 61 31 66 73 74 61 74 75 73 F5", /* version text */
		"A2 67 76 65 72 73 69 6F 6E 01 66 73 74 61 74 75 73 01",    /* status int */
		"A3 67 76 65 72 73 69 6F 6E 01 66 73 74 61 74 75 73 F5 66 72 65 61 73 6F 6E 01", /* reason int */
		"A3 67 76 65 72 73 69 6F 6E 01 66 73 74 61 74 75 73 F5 6e 72 65 61 73 6f 6e 2d 63 6f 6e 74 65 78 74 01",
		"A2 67 76 65 72 73 69 6F 6E 01 66 73 74 61 74 75 73",       /* truncated */
		"82 01 02", "",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hex(bad[i], &b);
		if (brski_status_decode(b.b, b.n, &s) == 0)
			fail_msg("case %zu decoded", i);
	}
}

static void test_H3_status_decode_json(void **st)
{
	static const char *const good[] = {
		"{\"version\": 1, \"status\": true}",
		" {\"status\":false,\"version\":1,\"reason\":\"no \\\"EST\\\" \\u00e9\"} ",
		"{\"version\":2,\"status\":true,\"reason-context\":{\"a\":[1,-2.5e3,null,{}]},\"x\":[]}",
	};
	static const char *const bad[] = {
		"", "[]", "{}", "{\"version\":1}", "{\"status\":true}",
		"{\"version\":1,\"status\":false}",           /* failure without reason */
		"{\"version\":-1,\"status\":true}",           /* not a uint */
		"{\"version\":1.5,\"status\":true}",
		"{\"version\":\"1\",\"status\":true}",
		"{\"version\":1,\"status\":1}",
		"{\"version\":1,\"status\":true,\"reason\":3}",
		"{\"version\":1,\"status\":true,\"reason-context\":[]}",
		"{\"version\":1,\"version\":1,\"status\":true}", /* repeated */
		"{\"version\":1,\"status\":true",             /* unterminated */
		"{\"version\":1,\"status\":true}x",           /* trailing */
		"{\"version\":1,\"status\":tru}",
		"{\"version\":1,\"status\":true,\"reason\":\"a\\q\"}", /* bad escape */
		"{\"version\":1,\"status\":true,\"reason\":\"\\u12\"}",
		"{\"version\":1,\"status\":true,\"r\":\"a\x01\"}",     /* control char */
		"{\"version\":01,\"status\":true}",
		"{\"version\":1,\"status\":true,\"d\":[[[[[[[[[[1]]]]]]]]]]}", /* too deep */
		"{\"version\" 1,\"status\":true}",
		"{\"version\":1,,\"status\":true}",
	};
	struct brski_status s;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (brski_status_decode_json((const uint8_t *)good[i], strlen(good[i]), &s) != 0)
			fail_msg("good case %zu (%s) rejected", i, good[i]);
	assert_int_equal(brski_status_decode_json((const uint8_t *)good[1], strlen(good[1]), &s), 0);
	assert_int_equal(s.status, 0);
	assert_int_equal(s.version, 1);
	assert_true(slice_eq(s.reason, "no \\\"EST\\\" \\u00e9", 17));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (brski_status_decode_json((const uint8_t *)bad[i], strlen(bad[i]), &s) == 0)
			fail_msg("bad case %zu (%s) accepted", i, bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_H2_cose_verify_cv_pvr),
		cmocka_unit_test(test_G6_cose_empty_x5chain_rejected),
		cmocka_unit_test(test_H2_cose_verify_cv_rvr_x5bag_array),
		cmocka_unit_test(test_H2_cose_verify_cv_voucher),
		cmocka_unit_test(test_H2_cv_pvr_fields),
		cmocka_unit_test(test_H2_cose_sign_verify_round_trip),
		cmocka_unit_test(test_H2_sig_der_raw),
		cmocka_unit_test(test_H5_cose_der_signature_rejected),
		cmocka_unit_test(test_H2_cose_malformed),
		cmocka_unit_test(test_H2_vr_sid_forms),
		cmocka_unit_test(test_H2_vr_malformed),
		cmocka_unit_test(test_H2_rvr_encode),
		cmocka_unit_test(test_H2_idevid_issuer_serial_masa_url),
		cmocka_unit_test(test_G6_idevid_malformed),
		cmocka_unit_test(test_H2_keyid_fallback_matches_ski),
		cmocka_unit_test(test_H2_masa_url_forms),
		cmocka_unit_test(test_H3_status_decode),
		cmocka_unit_test(test_H3_status_decode_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
