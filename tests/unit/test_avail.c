/* test_avail.c - the marks behind discovery's att/skg/skc links (A3:
 * RFC 9148 §4.1 lists them "only if implemented"; src/core/avail.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/avail.h"

#define OP(x) (1u << (x))
#define SKGC (OP(EST_OP_SKG) | OP(EST_OP_SKC))

static void test_A3_ops_per_upstream_operation(void **state)
{
	assert_int_equal(estgw_avail_ops(EST_OP_ATT), OP(EST_OP_ATT));
	assert_int_equal(estgw_avail_ops(EST_OP_SKG), SKGC);
	assert_int_equal(estgw_avail_ops(EST_OP_SKC), SKGC);
	for (enum est_op op = EST_OP_CRTS; op <= EST_OP_SREN; op++) {
		assert_int_equal(estgw_avail_ops(op), 0);
		assert_string_equal(estgw_avail_names(op), "");
	}
	assert_int_equal(estgw_avail_ops(EST_OP_COUNT), 0);
	assert_string_equal(estgw_avail_names(EST_OP_ATT), "att");
	assert_string_equal(estgw_avail_names(EST_OP_SKC), "skg, skc");
}

static void test_A3_404_and_501_take_out_other_answers_bring_back(void **state)
{
	struct estgw_avail a = { 0 };

	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 404), ESTGW_AVAIL_LOST);
	assert_int_equal(a.missing, OP(EST_OP_ATT));
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 501), ESTGW_AVAIL_SAME);
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 404), ESTGW_AVAIL_SAME);
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 200), ESTGW_AVAIL_BACK);
	assert_int_equal(a.missing, 0);
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 200), ESTGW_AVAIL_SAME);
	/* 501 alone takes it out too; any other status is an answer */
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 501), ESTGW_AVAIL_LOST);
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 503), ESTGW_AVAIL_BACK);
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 404), ESTGW_AVAIL_LOST);
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 204), ESTGW_AVAIL_BACK);
}

static void test_A3_skg_and_skc_share_serverkeygen(void **state)
{
	struct estgw_avail a = { 0 };

	assert_int_equal(estgw_avail_note(&a, EST_OP_SKC, 404), ESTGW_AVAIL_LOST);
	assert_int_equal(a.missing, SKGC);
	assert_int_equal(estgw_avail_note(&a, EST_OP_SKG, 501), ESTGW_AVAIL_SAME);
	/* att is a separate operation */
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 200), ESTGW_AVAIL_SAME);
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 404), ESTGW_AVAIL_LOST);
	assert_int_equal(a.missing, SKGC | OP(EST_OP_ATT));
	assert_int_equal(estgw_avail_note(&a, EST_OP_SKG, 200), ESTGW_AVAIL_BACK);
	assert_int_equal(a.missing, OP(EST_OP_ATT));
}

static void test_A3_no_answer_and_other_ops_change_nothing(void **state)
{
	struct estgw_avail a = { 0 };

	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 0), ESTGW_AVAIL_SAME);
	assert_int_equal(estgw_avail_note(&a, EST_OP_SEN, 404), ESTGW_AVAIL_SAME);
	assert_int_equal(estgw_avail_note(&a, EST_OP_CRTS, 501), ESTGW_AVAIL_SAME);
	assert_int_equal(a.missing, 0);
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 404), ESTGW_AVAIL_LOST);
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, 0), ESTGW_AVAIL_SAME);
	assert_int_equal(estgw_avail_note(&a, EST_OP_ATT, -1), ESTGW_AVAIL_SAME);
	assert_int_equal(a.missing, OP(EST_OP_ATT));
	assert_int_equal(estgw_avail_note(NULL, EST_OP_ATT, 404), ESTGW_AVAIL_SAME);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_A3_ops_per_upstream_operation),
		cmocka_unit_test(test_A3_404_and_501_take_out_other_answers_bring_back),
		cmocka_unit_test(test_A3_skg_and_skc_share_serverkeygen),
		cmocka_unit_test(test_A3_no_answer_and_other_ops_change_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
