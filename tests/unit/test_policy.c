/* test_policy.c - estgw_policy_check() row by row (docs/conformance.md G2,
 * G3, G4; RFC 7030 3.5, 4.2.2; RFC 9148 3, 9.1): POP linking, operations per
 * certificate kind, expired IDevIDs, serialNumber and re-enroll subject.
 * Fixtures from fixtures/mk_policy_fixtures.sh; the session's tls-unique is
 * 00 01 .. 0b. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/policy.h"
#include "policy_fixtures.h"

#define ALL ((1u << EST_OP_COUNT) - 1)
#define NO_SREN (ALL & ~(1u << EST_OP_SREN))

static const uint8_t tls_unique[12] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };

static struct estgw_config cfg_with(int pop, int match_serial, int allow_expired)
{
	struct estgw_config c;

	memset(&c, 0, sizeof(c));
	c.policy.pop = pop;
	c.policy.match_serial = match_serial;
	c.policy.allow_expired_idevid = allow_expired;
	c.policy.idevid_ops = NO_SREN;
	c.policy.ldevid_ops = ALL;
	c.policy.other_ops = ALL;
	return c;
}

static struct estgw_policy_req req_with(enum est_op op, const uint8_t *csr, size_t len)
{
	struct estgw_policy_req r = {
		.op = op,
		.kind = ESTGW_CLIENT_OTHER,
		.cert = fx_cert_dev,
		.cert_len = sizeof(fx_cert_dev),
		.csr = csr,
		.csr_len = len,
		.tls_unique = tls_unique,
		.tls_unique_len = sizeof(tls_unique),
	};
	return r;
}

#define CSR(x) fx_##x, sizeof(fx_##x)

/** Run the policy; returns the CoAP code (0: allowed). */
static uint8_t decide(const struct estgw_config *c, const struct estgw_policy_req *r,
		      struct estgw_policy_verdict *v)
{
	int rc = estgw_policy_check(c, r, v);

	assert_int_equal(rc, v->code ? -EACCES : 0);
	if (v->code)
		assert_non_null(v->diag);
	return v->code;
}

/* ---- POP linking (G4) --------------------------------------------------- */

static void test_G4_pop_match_allowed(void **state)
{
	struct estgw_config c = cfg_with(ESTGW_POP_REQUIRED, 0, 0);
	struct estgw_policy_req r = req_with(EST_OP_SEN, CSR(csr_pop));
	struct estgw_policy_verdict v;

	assert_int_equal(decide(&c, &r, &v), 0);
	r.op = EST_OP_SKG;
	assert_int_equal(decide(&c, &r, &v), 0);
}

static void test_G4_pop_mismatch_4_01(void **state)
{
	static const int modes[] = { ESTGW_POP_IF_PRESENT, ESTGW_POP_REQUIRED };
	struct estgw_policy_verdict v;

	for (size_t i = 0; i < 2; i++) {
		struct estgw_config c = cfg_with(modes[i], 0, 0);
		struct estgw_policy_req r = req_with(EST_OP_SEN, CSR(csr_wrong_pop));
		assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 1));
		assert_non_null(strstr(v.diag, "tls-unique"));
		r.op = EST_OP_SKC;
		assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 1));
	}
}

static void test_G4_pop_not_base64_4_01(void **state)
{
	struct estgw_config c = cfg_with(ESTGW_POP_IF_PRESENT, 0, 0);
	struct estgw_policy_req r = req_with(EST_OP_SEN, CSR(csr_not_b64));
	struct estgw_policy_verdict v;

	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 1));
}

static void test_G4_pop_absent_per_mode(void **state)
{
	struct estgw_policy_verdict v;
	struct estgw_config c = cfg_with(ESTGW_POP_IF_PRESENT, 0, 0);
	struct estgw_policy_req r = req_with(EST_OP_SEN, CSR(csr_plain));

	assert_int_equal(decide(&c, &r, &v), 0);
	c.policy.pop = ESTGW_POP_REQUIRED;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 1));
	assert_non_null(strstr(v.diag, "lacks"));
}

static void test_G4_pop_off_ignores_challenge(void **state)
{
	struct estgw_config c = cfg_with(ESTGW_POP_OFF, 0, 0);
	struct estgw_policy_req r = req_with(EST_OP_SEN, CSR(csr_wrong_pop));
	struct estgw_policy_verdict v;

	assert_int_equal(decide(&c, &r, &v), 0);
}

static void test_G4_no_tls_unique_4_01(void **state)
{
	struct estgw_config c = cfg_with(ESTGW_POP_IF_PRESENT, 0, 0);
	struct estgw_policy_req r = req_with(EST_OP_SEN, CSR(csr_pop));
	struct estgw_policy_verdict v;

	r.tls_unique = NULL;
	r.tls_unique_len = 0;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 1));
	/* a longer tls-unique than the challenge holds */
	static const uint8_t longer[13] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	r.tls_unique = longer;
	r.tls_unique_len = sizeof(longer);
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 1));
}

static void test_G6_malformed_csr_4_00(void **state)
{
	static const uint8_t junk[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
	struct estgw_config c = cfg_with(ESTGW_POP_IF_PRESENT, 0, 0);
	struct estgw_policy_req r = req_with(EST_OP_SEN, junk, sizeof(junk));
	struct estgw_policy_verdict v;

	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 0));
	r.csr = NULL;
	r.csr_len = 0;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 0));
}

/* ---- operations per certificate kind (G2) ------------------------------- */

static void test_G2_idevid_may_not_reenroll(void **state)
{
	struct estgw_config c = cfg_with(ESTGW_POP_IF_PRESENT, 0, 0);
	struct estgw_policy_req r = req_with(EST_OP_SREN, CSR(csr_plain));
	struct estgw_policy_verdict v;

	r.kind = ESTGW_CLIENT_IDEVID;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
	assert_non_null(strstr(v.diag, "not allowed"));
	r.kind = ESTGW_CLIENT_LDEVID;
	assert_int_equal(decide(&c, &r, &v), 0);
	r.kind = ESTGW_CLIENT_IDEVID;
	r.op = EST_OP_SEN;
	assert_int_equal(decide(&c, &r, &v), 0);
}

static void test_G2_ops_table_per_kind(void **state)
{
	struct estgw_config c = cfg_with(ESTGW_POP_OFF, 0, 0);
	struct estgw_policy_req r = req_with(EST_OP_CRTS, NULL, 0);
	struct estgw_policy_verdict v;

	c.policy.other_ops = 1u << EST_OP_CRTS;
	assert_int_equal(decide(&c, &r, &v), 0);
	r.op = EST_OP_ATT;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
	r.kind = ESTGW_CLIENT_LDEVID;
	c.policy.ldevid_ops = 0;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
	r.op = EST_OP_COUNT; /* out of range never passes */
	c.policy.ldevid_ops = ~0u;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
}

static void test_G2_reenroll_subject_must_match(void **state)
{
	struct estgw_config c = cfg_with(ESTGW_POP_OFF, 0, 0);
	struct estgw_policy_req r = req_with(EST_OP_SREN, CSR(csr_other));
	struct estgw_policy_verdict v;

	r.kind = ESTGW_CLIENT_LDEVID;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
	assert_non_null(strstr(v.diag, "subject"));
	r.csr = fx_csr_sn999;
	r.csr_len = sizeof(fx_csr_sn999);
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
	r.cert = NULL; /* no certificate to compare with */
	r.csr = fx_csr_plain;
	r.csr_len = sizeof(fx_csr_plain);
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
}

/* ---- serialNumber (match_serial) ---------------------------------------- */

static void test_G2_match_serial(void **state)
{
	struct estgw_config c = cfg_with(ESTGW_POP_OFF, 1, 0);
	struct estgw_policy_req r = req_with(EST_OP_SEN, CSR(csr_plain));
	struct estgw_policy_verdict v;

	assert_int_equal(decide(&c, &r, &v), 0);
	r.csr = fx_csr_sn999;
	r.csr_len = sizeof(fx_csr_sn999);
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
	assert_non_null(strstr(v.diag, "serialNumber"));
	r.csr = fx_csr_noserial; /* CSR without serialNumber, cert with one */
	r.csr_len = sizeof(fx_csr_noserial);
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
	r.cert = fx_cert_noserial; /* neither has one: nothing differs */
	r.cert_len = sizeof(fx_cert_noserial);
	assert_int_equal(decide(&c, &r, &v), 0);
	r.csr = fx_csr_plain; /* cert without, CSR with */
	r.csr_len = sizeof(fx_csr_plain);
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
	c.policy.match_serial = 0;
	r.csr = fx_csr_sn999;
	r.csr_len = sizeof(fx_csr_sn999);
	assert_int_equal(decide(&c, &r, &v), 0);
}

/* ---- expired IDevIDs (G3) ----------------------------------------------- */

static void test_G3_expired_idevid_sen_only(void **state)
{
	struct estgw_config c = cfg_with(ESTGW_POP_IF_PRESENT, 0, 1);
	struct estgw_policy_req r = req_with(EST_OP_SEN, CSR(csr_pop));
	struct estgw_policy_verdict v;

	r.kind = ESTGW_CLIENT_IDEVID;
	r.cert_expired = 1;
	assert_int_equal(decide(&c, &r, &v), 0);
	assert_non_null(v.note);
	assert_non_null(strstr(v.note, "expired IDevID"));
	r.op = EST_OP_CRTS;
	r.csr = NULL;
	r.csr_len = 0;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
	r.op = EST_OP_SKG;
	r.csr = fx_csr_pop;
	r.csr_len = sizeof(fx_csr_pop);
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
}

static void test_G3_expired_refused_otherwise(void **state)
{
	struct estgw_config c = cfg_with(ESTGW_POP_IF_PRESENT, 0, 0);
	struct estgw_policy_req r = req_with(EST_OP_SEN, CSR(csr_plain));
	struct estgw_policy_verdict v;

	r.kind = ESTGW_CLIENT_IDEVID;
	r.cert_expired = 1;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3)); /* not allowed */
	c.policy.allow_expired_idevid = 1;
	r.kind = ESTGW_CLIENT_LDEVID; /* an expired LDevID is never accepted */
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
	r.kind = ESTGW_CLIENT_OTHER;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 3));
}

/** The expired-IDevID note survives the later checks; a later refusal wins. */
static void test_G3_expired_then_pop_mismatch(void **state)
{
	struct estgw_config c = cfg_with(ESTGW_POP_IF_PRESENT, 0, 1);
	struct estgw_policy_req r = req_with(EST_OP_SEN, CSR(csr_wrong_pop));
	struct estgw_policy_verdict v;

	r.kind = ESTGW_CLIENT_IDEVID;
	r.cert_expired = 1;
	assert_int_equal(decide(&c, &r, &v), EST_CODE(4, 1));
	assert_null(v.note);
}

static void test_kind_names(void **state)
{
	assert_string_equal(estgw_client_kind_name(ESTGW_CLIENT_IDEVID), "idevid");
	assert_string_equal(estgw_client_kind_name(ESTGW_CLIENT_LDEVID), "ldevid");
	assert_string_equal(estgw_client_kind_name(ESTGW_CLIENT_OTHER), "other");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_G4_pop_match_allowed),
		cmocka_unit_test(test_G4_pop_mismatch_4_01),
		cmocka_unit_test(test_G4_pop_not_base64_4_01),
		cmocka_unit_test(test_G4_pop_absent_per_mode),
		cmocka_unit_test(test_G4_pop_off_ignores_challenge),
		cmocka_unit_test(test_G4_no_tls_unique_4_01),
		cmocka_unit_test(test_G6_malformed_csr_4_00),
		cmocka_unit_test(test_G2_idevid_may_not_reenroll),
		cmocka_unit_test(test_G2_ops_table_per_kind),
		cmocka_unit_test(test_G2_reenroll_subject_must_match),
		cmocka_unit_test(test_G2_match_serial),
		cmocka_unit_test(test_G3_expired_idevid_sen_only),
		cmocka_unit_test(test_G3_expired_refused_otherwise),
		cmocka_unit_test(test_G3_expired_then_pop_mismatch),
		cmocka_unit_test(test_kind_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
