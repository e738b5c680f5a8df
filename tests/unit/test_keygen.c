/* test_keygen.c - registrar-side key generation (keygen.c,
 * docs/conformance.md F4, G7). The CSR estgw makes is checked with the
 * openssl CLI (an independent implementation): its signature verifies, its
 * public key is the generated key's, its subject and extensionRequest are the
 * device CSR's bytes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "estgw/skg.h"
#include "pki/keygen.h"
#include "skg_fixtures.h"

/* challengePassword 1.2.840.113549.1.9.7 */
static const uint8_t oid_challenge[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
					 0x01, 0x09, 0x07 };

static char dir[] = "/tmp/estgw-keygen-XXXXXX";

static const char *openssl(void)
{
	const char *p = getenv("OPENSSL");

	return p && *p ? p : "openssl";
}

static int setup(void **st)
{
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **st)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void put_file(const char *name, const uint8_t *p, size_t len)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/** Run a shell command in the temp dir; its stdout (up to @p size). */
static size_t run(char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static size_t run(char *out, size_t size, const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	size_t n;
	int len;
	FILE *p;

	len = snprintf(cmd, sizeof(cmd), "cd %s && ", dir);
	va_start(ap, fmt);
	vsnprintf(cmd + len, sizeof(cmd) - (size_t)len, fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, size, p);
	if (pclose(p) != 0)
		fail_msg("failed: %s", cmd);
	return n;
}

static void slices_equal(struct est_slice a, struct est_slice b)
{
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.ptr, b.ptr, a.len);
}

/* The CSR verifies with openssl and carries the generated key. */
static void test_F4_csr_signed_by_generated_key(void **st)
{
	struct estgw_keygen kg;
	char a[512], b[512], text[4096];
	size_t na, nb;

	assert_int_equal(estgw_keygen_make(fx_csr_ext, sizeof(fx_csr_ext), &kg), 0);
	put_file("new.csr", kg.csr, kg.csr_len);
	put_file("new.key", kg.pkcs8, kg.pkcs8_len);
	run(text, sizeof(text), "%s req -inform DER -in new.csr -verify -noout 2>&1",
	    openssl());
	assert_non_null(strstr(text, "verify OK"));
	na = run(a, sizeof(a), "%s pkey -inform DER -in new.key -pubout -outform DER",
		 openssl());
	nb = run(b, sizeof(b), "%s req -inform DER -in new.csr -pubkey -noout | "
		 "%s pkey -pubin -outform DER", openssl(), openssl());
	assert_true(na > 60);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na);
	/* PKCS#8 as openssl reads it, a P-256 key. */
	memset(text, 0, sizeof(text));
	run(text, sizeof(text) - 1, "%s pkey -inform DER -in new.key -noout -text 2>&1",
	    openssl());
	assert_non_null(strstr(text, "prime256v1"));
	memset(text, 0, sizeof(text));
	run(text, sizeof(text) - 1, "%s asn1parse -inform DER -in new.key", openssl());
	assert_non_null(strstr(text, "id-ecPublicKey"));
	estgw_keygen_free(&kg);
	assert_null(kg.pkcs8);
}

/* Subject and extensionRequest are the device's, byte for byte. */
static void test_F4_csr_copies_subject_and_extensions(void **st)
{
	struct est_slice s1, a1, s2, a2, e1, e2;
	struct estgw_keygen kg;
	char text[4096] = "";

	assert_int_equal(estgw_keygen_make(fx_csr_ext, sizeof(fx_csr_ext), &kg), 0);
	assert_int_equal(est_csr_parts(fx_csr_ext, sizeof(fx_csr_ext), &s1, &a1), 0);
	assert_int_equal(est_csr_parts(kg.csr, kg.csr_len, &s2, &a2), 0);
	slices_equal(s1, s2);
	assert_int_equal(est_csr_attr(fx_csr_ext, sizeof(fx_csr_ext),
				      est_oid_extension_request,
				      sizeof(est_oid_extension_request), &e1), 0);
	assert_int_equal(est_csr_attr(kg.csr, kg.csr_len, est_oid_extension_request,
				      sizeof(est_oid_extension_request), &e2), 0);
	slices_equal(e1, e2);
	slices_equal(e2, a2); /* the only attribute */
	put_file("ext.csr", kg.csr, kg.csr_len);
	run(text, sizeof(text) - 1, "%s req -inform DER -in ext.csr -noout -text", openssl());
	assert_non_null(strstr(text, "DNS:device-007.example"));
	assert_non_null(strstr(text, "serialNumber"));
	estgw_keygen_free(&kg);
}

/* The device's challengePassword is not copied (it belongs to its DTLS
 * session); without extensions the attributes are empty. */
static void test_F4_csr_drops_other_attributes(void **st)
{
	struct est_slice s, attrs, a;
	struct estgw_keygen kg;

	assert_int_equal(est_csr_attr(fx_csr_pw, sizeof(fx_csr_pw), oid_challenge,
				      sizeof(oid_challenge), &a), 0);
	assert_int_equal(estgw_keygen_make(fx_csr_pw, sizeof(fx_csr_pw), &kg), 0);
	assert_int_equal(est_csr_parts(kg.csr, kg.csr_len, &s, &attrs), 0);
	assert_int_equal(attrs.len, 0);
	estgw_keygen_free(&kg);
	assert_int_equal(estgw_keygen_make(fx_csr_plain, sizeof(fx_csr_plain), &kg), 0);
	assert_int_equal(est_csr_parts(kg.csr, kg.csr_len, &s, &attrs), 0);
	assert_int_equal(attrs.len, 0);
	estgw_keygen_free(&kg);
}

/* G7: every call draws a fresh key. */
static void test_G7_fresh_key_each_time(void **st)
{
	struct estgw_keygen a, b;

	assert_int_equal(estgw_keygen_make(fx_csr_plain, sizeof(fx_csr_plain), &a), 0);
	assert_int_equal(estgw_keygen_make(fx_csr_plain, sizeof(fx_csr_plain), &b), 0);
	assert_int_equal(a.pkcs8_len, b.pkcs8_len);
	assert_memory_not_equal(a.pkcs8, b.pkcs8, a.pkcs8_len);
	assert_memory_not_equal(a.csr, b.csr, a.csr_len < b.csr_len ? a.csr_len : b.csr_len);
	estgw_keygen_free(&a);
	estgw_keygen_free(&b);
	estgw_keygen_free(NULL);
}

static void test_G6_bad_device_csr(void **st)
{
	struct estgw_keygen kg;

	assert_int_equal(estgw_keygen_make(fx_ee, sizeof(fx_ee), &kg), -EINVAL);
	assert_null(kg.pkcs8);
	assert_null(kg.csr);
	assert_int_equal(estgw_keygen_make(fx_csr_ext, sizeof(fx_csr_ext) - 1, &kg), -EINVAL);
	assert_int_equal(estgw_keygen_make(NULL, 0, &kg), -EINVAL);
	assert_int_equal(estgw_keygen_make(fx_csr_ext, sizeof(fx_csr_ext), NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_F4_csr_signed_by_generated_key),
		cmocka_unit_test(test_F4_csr_copies_subject_and_extensions),
		cmocka_unit_test(test_F4_csr_drops_other_attributes),
		cmocka_unit_test(test_G7_fresh_key_each_time),
		cmocka_unit_test(test_G6_bad_device_csr),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
