/* test_ratelimit.c - per-client token buckets (the [server] rate_limit key,
 * answered 4.29 by coap_server.c; RFC 8516). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/ratelimit.h"

static void test_burst_then_refused(void **state)
{
	struct estgw_rate *r = estgw_rate_new(3, 8);
	uint32_t retry = 0;

	assert_non_null(r);
	for (int i = 0; i < 3; i++)
		assert_int_equal(estgw_rate_take(r, "CN=a", 1000, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "CN=a", 1000, &retry), -EBUSY);
	assert_int_equal(retry, 20); /* one request per 20 s at 3/min */
	/* another client has its own bucket */
	assert_int_equal(estgw_rate_take(r, "CN=b", 1000, &retry), 0);
	estgw_rate_free(r);
}

static void test_refill_over_time(void **state)
{
	struct estgw_rate *r = estgw_rate_new(60, 4); /* one per second */
	uint32_t retry = 0;

	for (int i = 0; i < 60; i++)
		assert_int_equal(estgw_rate_take(r, "x", 0, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "x", 500, &retry), -EBUSY);
	assert_int_equal(retry, 1);
	assert_int_equal(estgw_rate_take(r, "x", 1000, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "x", 1000, &retry), -EBUSY);
	/* a long pause refills to the burst size, not beyond */
	for (int i = 0; i < 60; i++)
		assert_int_equal(estgw_rate_take(r, "x", 10000000, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "x", 10000000, &retry), -EBUSY);
	/* a clock that goes backwards refills nothing */
	assert_int_equal(estgw_rate_take(r, "x", 5, &retry), -EBUSY);
	estgw_rate_free(r);
}

static void test_table_full_reuses_oldest(void **state)
{
	struct estgw_rate *r = estgw_rate_new(1, 2);
	uint32_t retry;

	assert_int_equal(estgw_rate_take(r, "a", 1, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "b", 2, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "b", 3, &retry), -EBUSY);
	/* "c" takes a's slot (least recently used); b keeps its state */
	assert_int_equal(estgw_rate_take(r, "c", 4, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "b", 5, &retry), -EBUSY);
	/* a comes back as a new client */
	assert_int_equal(estgw_rate_take(r, "a", 6, &retry), 0);
	/* empty and NULL names share one bucket, "-" */
	assert_int_equal(estgw_rate_take(r, "", 7, &retry), 0);
	assert_int_equal(estgw_rate_take(r, NULL, 8, &retry), -EBUSY);
	estgw_rate_free(r);
}

/* Many more clients than the table holds: each new one evicts the least
 * recently used, a client used since keeps its state, and names are told
 * apart by their first 255 bytes. */
static void test_many_clients_lru(void **state)
{
	struct estgw_rate *r = estgw_rate_new(1, 64);
	uint32_t retry;
	char name[300];

	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "CN=device-%d", i);
		assert_int_equal(estgw_rate_take(r, name, 10, &retry), 0);
		/* "CN=keep" is used between every new client: never evicted */
		assert_int_equal(estgw_rate_take(r, "CN=keep", 10, &retry), i ? -EBUSY : 0);
	}
	/* the last 63 new ones are still tracked (spent), the first came back new */
	assert_int_equal(estgw_rate_take(r, "CN=device-999", 11, &retry), -EBUSY);
	assert_int_equal(estgw_rate_take(r, "CN=device-937", 11, &retry), -EBUSY);
	assert_int_equal(estgw_rate_take(r, "CN=device-0", 11, &retry), 0);
	memset(name, 'a', 299);
	name[299] = '\0';
	assert_int_equal(estgw_rate_take(r, name, 12, &retry), 0);
	name[280] = 'b'; /* past the first 255 bytes: the same client */
	assert_int_equal(estgw_rate_take(r, name, 12, &retry), -EBUSY);
	name[100] = 'b';
	assert_int_equal(estgw_rate_take(r, name, 12, &retry), 0);
	/* a synced bucket takes the shared count; an unknown client is ignored */
	estgw_rate_sync(r, "CN=device-0", 5 * ESTGW_RATE_COST, 0);
	assert_int_equal(estgw_rate_take(r, "CN=device-0", 12, &retry), 0);
	estgw_rate_sync(r, "CN=nobody", 0, 0);
	estgw_rate_free(r);
}

/* K1: the shared bucket's answer for request n arrives after this
 * instance took request n + 1 (and n + 2): those stay taken. */
static void test_sync_keeps_later_requests(void **state)
{
	struct estgw_rate *r = estgw_rate_new(6, 4);
	uint32_t retry = 0;
	uint64_t seq = 0;

	(void)state;
	assert_int_equal(estgw_rate_take_shared(r, "CN=d", 1, &retry, &seq), 0);
	assert_int_equal(seq, 1);
	assert_int_equal(estgw_rate_take_shared(r, "CN=d", 1, &retry, &seq), 0);
	assert_int_equal(seq, 2);
	/* the cluster had 2 left when it counted request 1: 1 after request 2 */
	estgw_rate_sync(r, "CN=d", 2 * ESTGW_RATE_COST, 1);
	assert_int_equal(estgw_rate_take_shared(r, "CN=d", 1, &retry, &seq), 0);
	assert_int_equal(seq, 3);
	/* a refused request is not numbered (it never goes to the cluster) */
	seq = 0;
	assert_int_equal(estgw_rate_take_shared(r, "CN=d", 1, &retry, &seq), -EBUSY);
	assert_int_equal(seq, 0);
	/* more taken here than the answer left: empty, not wrapped around */
	estgw_rate_sync(r, "CN=d", ESTGW_RATE_COST + 5, 1);
	assert_int_equal(estgw_rate_take(r, "CN=d", 1, &retry), -EBUSY);
	/* the answer for the last one: what it says, over the cap cut to full */
	estgw_rate_sync(r, "CN=d", 99 * ESTGW_RATE_COST, 3);
	for (int i = 0; i < 6; i++)
		assert_int_equal(estgw_rate_take(r, "CN=d", 1, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "CN=d", 1, &retry), -EBUSY);
	/* a seq from before an eviction (larger than the new count): none later */
	estgw_rate_sync(r, "CN=d", ESTGW_RATE_COST, 40);
	assert_int_equal(estgw_rate_take_shared(r, "CN=d", 1, &retry, &seq), 0);
	assert_int_equal(seq, 4);
	/* an answer for a client not tracked here is ignored */
	estgw_rate_sync(r, "CN=nobody", ESTGW_RATE_COST, 1);
	estgw_rate_free(r);
}

/* A reload with a new rate_limit: spent requests stay spent, the burst is
 * cut to the new size, and the refill runs at the new rate. */
static void test_set_new_limit(void **state)
{
	struct estgw_rate *r = estgw_rate_new(600, 4);
	uint32_t retry = 0;

	for (int i = 0; i < 3; i++)
		assert_int_equal(estgw_rate_take(r, "x", 1000, &retry), 0);
	estgw_rate_set(r, 2); /* 597 left: cut down to 2 */
	assert_int_equal(estgw_rate_take(r, "x", 1000, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "x", 1000, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "x", 1000, &retry), -EBUSY);
	assert_int_equal(retry, 30); /* one per 30 s at 2/min */
	/* a new client starts with the new burst */
	assert_int_equal(estgw_rate_take(r, "y", 1000, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "y", 1000, &retry), 0);
	assert_int_equal(estgw_rate_take(r, "y", 1000, &retry), -EBUSY);
	/* raising the limit gives no free requests: only the refill does */
	estgw_rate_set(r, 60);
	assert_int_equal(estgw_rate_take(r, "x", 1000, &retry), -EBUSY);
	assert_int_equal(retry, 1);
	assert_int_equal(estgw_rate_take(r, "x", 2000, &retry), 0);
	estgw_rate_set(r, 0);    /* ignored: 0 means no limiter at all */
	estgw_rate_set(NULL, 5); /* ignored */
	assert_int_equal(estgw_rate_take(r, "x", 2000, &retry), -EBUSY);
	estgw_rate_free(r);
}

static void test_bad_arguments(void **state)
{
	assert_null(estgw_rate_new(0, 4));
	assert_null(estgw_rate_new(4, 0));
	estgw_rate_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_refused),
		cmocka_unit_test(test_refill_over_time),
		cmocka_unit_test(test_table_full_reuses_oldest),
		cmocka_unit_test(test_set_new_limit),
		cmocka_unit_test(test_many_clients_lru),
		cmocka_unit_test(test_sync_keeps_later_requests),
		cmocka_unit_test(test_bad_arguments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
