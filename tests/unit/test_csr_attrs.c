/* test_csr_attrs.c - the CSR attribute walker and the Name serialNumber
 * lookup (docs/conformance.md F3, G4, G6): real CSRs from the openssl CLI
 * (fixtures/mk_policy_fixtures.sh) and one hand-built input per malformed
 * case. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "estgw/codec.h"
#include "policy_fixtures.h"

/* --- a tiny DER writer for hand-built CSRs ------------------------------- */

struct buf {
	uint8_t b[2048];
	size_t n;
};

static void put_hex(struct buf *o, const char *hex)
{
	unsigned v;

	for (; *hex; hex++) {
		if (*hex == ' ')
			continue;
		assert_true(o->n < sizeof(o->b));
		assert_int_equal(sscanf(hex, "%2x", &v), 1);
		o->b[o->n++] = (uint8_t)v;
		hex++;
	}
}

/** @p tag + minimal length + @p hex content, appended to @p o. */
static void tlv(struct buf *o, uint8_t tag, const struct buf *in)
{
	assert_true(in->n < 0x100 && o->n + in->n + 3 <= sizeof(o->b));
	o->b[o->n++] = tag;
	if (in->n >= 0x80)
		o->b[o->n++] = 0x81;
	o->b[o->n++] = (uint8_t)in->n;
	memcpy(o->b + o->n, in->b, in->n);
	o->n += in->n;
}

#define NAME_SN001 "30 1a 31 0c 30 0a 06 03 55 04 03 0c 03 64 65 76" \
		   " 31 0a 30 08 06 03 55 04 05 13 01 31"
#define SPKI "30 0b 30 06 06 04 2a 03 04 05 03 01 00"
#define OID_CHALLENGE "06 09 2a 86 48 86 f7 0d 01 09 07"
#define OID_SMIME "06 09 2a 86 48 86 f7 0d 01 09 0f"
#define OID_DKID "06 0b 2a 86 48 86 f7 0d 01 09 10 02 25"
#define OID_AKID "06 0b 2a 86 48 86 f7 0d 01 09 10 02 36"

/** CSR { CRI { 0, @p name, SPKI, [0] { @p attrs } }, algid, BIT STRING }. */
static void make_csr(struct buf *o, const char *name, const char *attrs)
{
	struct buf a = { .n = 0 }, cri_in = { .n = 0 }, cri = { .n = 0 }, all = { .n = 0 };

	put_hex(&a, attrs);
	put_hex(&cri_in, "02 01 00");
	put_hex(&cri_in, name);
	put_hex(&cri_in, SPKI);
	tlv(&cri_in, 0xa0, &a);
	tlv(&cri, 0x30, &cri_in);
	all = cri;
	put_hex(&all, "30 0a 06 08 2a 86 48 ce 3d 04 03 02 03 01 00");
	o->n = 0;
	tlv(o, 0x30, &all);
}

/** The slices in @p ci point into a static buffer, valid until the next call. */
static int info_of(const char *name, const char *attrs, struct est_csr_info *ci)
{
	static struct buf csr;

	make_csr(&csr, name, attrs);
	return est_csr_info(csr.b, csr.n, ci);
}

static int slice_is(struct est_slice s, const char *text)
{
	return s.ptr && s.len == strlen(text) && memcmp(s.ptr, text, s.len) == 0;
}

/* --- real CSRs ----------------------------------------------------------- */

static void test_G4_openssl_csr_with_challenge(void **state)
{
	struct est_csr_info ci;

	assert_int_equal(est_csr_info(fx_csr_pop, sizeof(fx_csr_pop), &ci), 0);
	assert_true(ci.has_challenge);
	assert_true(slice_is(ci.challenge, "AAECAwQFBgcICQoL"));
	assert_true(slice_is(ci.serial, "SN001"));
	assert_false(ci.has_smime_caps || ci.has_decrypt_key_id || ci.has_asym_decrypt_key_id);
	/* the subject slice is the Name TLV inside the CSR */
	assert_true(ci.subject.ptr > fx_csr_pop && ci.subject.ptr[0] == 0x30);
}

static void test_G4_openssl_csr_without_attributes(void **state)
{
	struct est_csr_info ci;

	assert_int_equal(est_csr_info(fx_csr_plain, sizeof(fx_csr_plain), &ci), 0);
	assert_false(ci.has_challenge);
	assert_true(slice_is(ci.serial, "SN001"));
	assert_int_equal(est_csr_info(fx_csr_noserial, sizeof(fx_csr_noserial), &ci), 0);
	assert_null(ci.serial.ptr);
}

static void test_G4_cert_subject_serial(void **state)
{
	struct est_slice issuer, subject, serial;

	assert_int_equal(est_cert_names(fx_cert_dev, sizeof(fx_cert_dev), &issuer, &subject), 0);
	assert_int_equal(est_name_serial(subject, &serial), 0);
	assert_true(slice_is(serial, "SN001"));
	assert_int_equal(est_name_serial(issuer, &serial), -ENOENT);
}

/* --- hand-built: what the walker reports --------------------------------- */

static void test_F3_encryption_attributes_seen(void **state)
{
	struct est_csr_info ci;

	assert_int_equal(info_of(NAME_SN001,
				 "30 0f " OID_SMIME " 31 02 30 00"
				 "30 13 " OID_DKID " 31 04 04 02 01 02"
				 "30 13 " OID_AKID " 31 04 04 02 03 04", &ci), 0);
	assert_true(ci.has_smime_caps);
	assert_true(ci.has_decrypt_key_id);
	assert_true(ci.has_asym_decrypt_key_id);
	assert_false(ci.has_challenge);
	assert_true(slice_is(ci.serial, "1"));
}

static void test_G4_printable_challenge(void **state)
{
	struct est_csr_info ci;

	assert_int_equal(info_of(NAME_SN001, "30 10 " OID_CHALLENGE " 31 03 13 01 41", &ci), 0);
	assert_true(slice_is(ci.challenge, "A"));
}

static void test_G6_unknown_attribute_skipped(void **state)
{
	struct est_csr_info ci;

	assert_int_equal(info_of(NAME_SN001, "30 08 06 02 2a 03 31 02 05 00", &ci), 0);
	assert_false(ci.has_challenge);
}

/* --- hand-built: one malformed case each --------------------------------- */

struct bad {
	const char *name;
	const char *attrs;
};

static const struct bad bad_rows[] = {
	/* two challengePasswords: which one is the POP? */
	{ NAME_SN001, "30 10 " OID_CHALLENGE " 31 03 13 01 41 30 10 " OID_CHALLENGE " 31 03 13 01 42" },
	/* two values in the challengePassword SET */
	{ NAME_SN001, "30 13 " OID_CHALLENGE " 31 06 13 01 41 13 01 42" },
	/* challengePassword that is not a Printable/UTF8String */
	{ NAME_SN001, "30 10 " OID_CHALLENGE " 31 03 04 01 41" },
	/* empty value SET */
	{ NAME_SN001, "30 0d " OID_CHALLENGE " 31 00" },
	/* attribute type is not an OID */
	{ NAME_SN001, "30 07 02 01 01 31 02 05 00" },
	/* attribute with something after the SET */
	{ NAME_SN001, "30 0a 06 02 2a 03 31 02 05 00 05 00" },
	/* two serialNumbers in the subject */
	{ "30 18 31 0a 30 08 06 03 55 04 05 13 01 31 31 0a 30 08 06 03 55 04 05 13 01 32", "" },
	/* RDN that is an empty SET */
	{ "30 02 31 00", "" },
	/* AttributeTypeAndValue with a trailing element */
	{ "30 0e 31 0c 30 0a 06 03 55 04 05 13 01 31 05 00", "" },
};

static void test_G6_malformed_rows(void **state)
{
	struct est_csr_info ci;

	for (size_t i = 0; i < sizeof(bad_rows) / sizeof(bad_rows[0]); i++) {
		int rc = info_of(bad_rows[i].name, bad_rows[i].attrs, &ci);
		if (rc != -EINVAL)
			fail_msg("row %zu: got %d, want -EINVAL", i, rc);
	}
}

/** Every truncation of a real CSR is refused, never read past. */
static void test_G6_truncations(void **state)
{
	struct est_csr_info ci;

	for (size_t n = 0; n < sizeof(fx_csr_pop); n++)
		assert_int_equal(est_csr_info(fx_csr_pop, n, &ci), -EINVAL);
	assert_int_equal(est_csr_info(NULL, 0, &ci), -EINVAL);
}

static void test_G6_name_serial_edges(void **state)
{
	struct est_slice s, none = { NULL, 0 };
	static const uint8_t not_seq[] = { 0x31, 0x00 };
	static const uint8_t trailing[] = { 0x30, 0x00, 0x00 };
	static const uint8_t empty[] = { 0x30, 0x00 };

	assert_int_equal(est_name_serial(none, &s), -EINVAL);
	assert_int_equal(est_name_serial((struct est_slice){ not_seq, 2 }, &s), -EINVAL);
	assert_int_equal(est_name_serial((struct est_slice){ trailing, 3 }, &s), -EINVAL);
	assert_int_equal(est_name_serial((struct est_slice){ empty, 2 }, &s), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_G4_openssl_csr_with_challenge),
		cmocka_unit_test(test_G4_openssl_csr_without_attributes),
		cmocka_unit_test(test_G4_cert_subject_serial),
		cmocka_unit_test(test_F3_encryption_attributes_seen),
		cmocka_unit_test(test_G4_printable_challenge),
		cmocka_unit_test(test_G6_unknown_attribute_skipped),
		cmocka_unit_test(test_G6_malformed_rows),
		cmocka_unit_test(test_G6_truncations),
		cmocka_unit_test(test_G6_name_serial_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
