/* test_blockwise.c - Block1 reassembly, kept answers and Block2 slices
 * (src/downstream/blockwise.c; RFC 7959, E1 E4-E8): one case per malformed or
 * out-of-bound input, the bounds, and the happy paths. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "downstream/blockwise.h"
#include "estgw/translate.h"

#define T0 1000

static struct bw_pool pool;
static struct bw_session sess;
static uint8_t body[4096];

static int setup(void **state)
{
	memset(&pool, 0, sizeof(pool));
	memset(&sess, 0, sizeof(sess));
	pool.lim = (struct bw_limits){
		.max_body = 1024, .per_session = 2, .total = 3,
		.total_bytes = 2048, .lifetime = 247,
		.keep_per_session = 2, .keep_total_bytes = 4096,
	};
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)(i * 7 + 3);
	return 0;
}

static int teardown(void **state)
{
	bw_session_clear(&pool, &sess);
	assert_int_equal(pool.count, 0);
	assert_int_equal(pool.bytes, 0);
	assert_int_equal(pool.kept, 0);
	assert_int_equal(pool.kept_bytes, 0);
	return 0;
}

/* Feed block NUM of size 2^(SZX+4) of body[] (M set unless it is the last
 * of @p total bytes) under @p key; a value of -1 for b2 means no Block2. */
struct opt {
	uint8_t v[3];
	size_t len;
};

static struct opt blk(uint32_t num, int m, int szx)
{
	struct bw_block b = { .num = num, .m = (uint8_t)m, .szx = (uint8_t)szx };
	struct opt o;

	o.len = bw_block_encode(&b, o.v);
	return o;
}

static void feed_raw(struct bw_session *s, const char *key, const struct opt *b1,
		     const struct opt *b2, const uint8_t *data, size_t len,
		     time_t now, struct bw_out *out)
{
	struct bw_req rq = {
		.key = key, .answer_key = key,
		.block1 = b1 ? b1->v : NULL, .block1_len = b1 ? b1->len : 0,
		.block2 = b2 ? b2->v : NULL, .block2_len = b2 ? b2->len : 0,
		.data = data, .len = len, .now = now,
	};
	bw_feed(&pool, s, &rq, out);
}

static void feed_blk(const char *key, uint32_t num, int szx, size_t total,
		     time_t now, struct bw_out *out)
{
	size_t bs = bw_size((uint8_t)szx), off = num * bs;
	size_t n = total - off < bs ? total - off : bs;
	struct opt b1 = blk(num, off + n < total, szx);

	feed_raw(&sess, key, &b1, NULL, body + off, n, now, out);
}

static void assert_error(const struct bw_out *out, uint8_t code)
{
	assert_int_equal(out->verdict, BW_ERROR);
	assert_int_equal(out->code, code);
	assert_non_null(out->diag);
}

/* ---- the option value --------------------------------------------------- */

static void test_option_codec(void **state)
{
	struct bw_block b;
	uint8_t v[4] = { 0 };

	assert_int_equal(bw_block_parse(v, 0, &b), 0);
	assert_int_equal(b.num, 0);
	assert_int_equal(b.m, 0);
	assert_int_equal(b.szx, 0);
	v[0] = 0x1a; /* NUM 1, M, SZX 2 */
	assert_int_equal(bw_block_parse(v, 1, &b), 0);
	assert_int_equal(b.num, 1);
	assert_int_equal(b.m, 1);
	assert_int_equal(b.szx, 2);
	v[0] = 0xff; v[1] = 0xff; v[2] = 0xf6; /* NUM 2^20-1 */
	assert_int_equal(bw_block_parse(v, 3, &b), 0);
	assert_int_equal(b.num, 0xfffff);
	assert_int_equal(b.szx, 6);
	assert_int_equal(bw_block_parse(v, 4, &b), -EINVAL);
	for (uint32_t num = 0; num < 0x100000; num = num * 3 + 1) {
		struct bw_block in = { .num = num, .m = num & 1, .szx = num % 7 }, back;
		uint8_t out[3];
		size_t n = bw_block_encode(&in, out);
		assert_true(n <= 3);
		assert_int_equal(bw_block_parse(out, n, &back), 0);
		assert_int_equal(back.num, in.num);
		assert_int_equal(back.m, in.m);
		assert_int_equal(back.szx, in.szx);
	}
	struct bw_block zero = { 0 };
	assert_int_equal(bw_block_encode(&zero, v), 0);
}

/* ---- whole bodies --------------------------------------------------------- */

static void test_no_block1_is_whole_body(void **state)
{
	struct bw_out out;

	feed_raw(&sess, "k", NULL, NULL, body, 100, T0, &out);
	assert_int_equal(out.verdict, BW_READY);
	assert_ptr_equal(out.body, body);
	assert_int_equal(out.len, 100);
	assert_null(out.owned);
	assert_int_equal(out.echo, 0);
	assert_int_equal(out.block2_szx, -1);
	assert_int_equal(pool.count, 0);
}

static void test_block1_zero_last_is_whole_body_with_echo(void **state)
{
	struct opt b1 = blk(0, 0, 6), b2 = blk(0, 0, 2);
	struct bw_out out;

	feed_raw(&sess, "k", &b1, &b2, body, 1000, T0, &out);
	assert_int_equal(out.verdict, BW_READY);
	assert_int_equal(out.len, 1000);
	assert_true(out.echo); /* E5 */
	assert_int_equal(out.echo_b1.num, 0);
	assert_int_equal(out.echo_b1.m, 0);
	assert_int_equal(out.echo_b1.szx, 6);
	assert_int_equal(out.block2_szx, 2);
}

static void test_E1_whole_body_too_large_4_13(void **state)
{
	struct bw_out out;

	feed_raw(&sess, "k", NULL, NULL, body, 1025, T0, &out);
	assert_error(&out, EST_CODE(4, 13));
	assert_int_equal(out.size1, 1024);
}

static void test_E1_size1_over_limit_4_13(void **state)
{
	struct bw_req rq = { .key = "k", .has_size1 = 1, .size1 = 5000,
			     .data = body, .len = 10, .now = T0 };
	struct opt b1 = blk(0, 1, 0);
	struct bw_out out;

	rq.block1 = b1.v;
	rq.block1_len = b1.len;
	rq.len = 16;
	bw_feed(&pool, &sess, &rq, &out);
	assert_error(&out, EST_CODE(4, 13));
	assert_int_equal(out.size1, 1024);
	assert_int_equal(pool.count, 0);
}

/* ---- malformed options ---------------------------------------------------- */

static void test_E9_block1_szx7_reserved_4_00(void **state)
{
	struct opt b1 = blk(0, 0, 7);
	struct bw_out out;

	feed_raw(&sess, "k", &b1, NULL, body, 10, T0, &out);
	assert_error(&out, EST_CODE(4, 0));
	b1 = blk(3, 1, 7);
	feed_raw(&sess, "k", &b1, NULL, body, 1024, T0, &out);
	assert_error(&out, EST_CODE(4, 0));
}

static void test_block2_szx7_reserved_4_00(void **state)
{
	struct opt b2 = blk(0, 0, 7);
	struct bw_out out;

	feed_raw(&sess, "k", NULL, &b2, body, 10, T0, &out);
	assert_error(&out, EST_CODE(4, 0));
}

static void test_block_option_too_long_4_02(void **state)
{
	struct opt b = { .v = { 0 }, .len = 3 };
	struct bw_req rq = { .key = "k", .data = body, .len = 16, .now = T0 };
	uint8_t four[4] = { 0, 0, 0, 0x0e };
	struct bw_out out;

	rq.block1 = four;
	rq.block1_len = 4;
	bw_feed(&pool, &sess, &rq, &out);
	assert_error(&out, EST_CODE(4, 2));
	rq.block1 = b.v;
	rq.block1_len = b.len;
	rq.block2 = four;
	rq.block2_len = 4;
	bw_feed(&pool, &sess, &rq, &out);
	assert_error(&out, EST_CODE(4, 2));
}

static void test_nonfinal_block_wrong_size_4_00(void **state)
{
	struct opt b1 = blk(0, 1, 2); /* 64 bytes */
	struct bw_out out;

	feed_raw(&sess, "k", &b1, NULL, body, 63, T0, &out);
	assert_error(&out, EST_CODE(4, 0));
	assert_int_equal(out.echo, 0); /* not the last block */
	feed_raw(&sess, "k", &b1, NULL, body, 65, T0, &out);
	assert_error(&out, EST_CODE(4, 0));
	assert_int_equal(pool.count, 0);
}

static void test_last_block_larger_than_size_4_00_with_echo(void **state)
{
	struct bw_out out;
	struct opt b1 = blk(1, 0, 0);

	feed_blk("k", 0, 0, 40, T0, &out);
	assert_int_equal(out.verdict, BW_MORE);
	feed_raw(&sess, "k", &b1, NULL, body + 16, 17, T0, &out);
	assert_error(&out, EST_CODE(4, 0));
	assert_true(out.echo); /* E5: error answers to the last block too */
	assert_int_equal(out.echo_b1.num, 1);
	assert_int_equal(out.echo_b1.m, 0);
	b1 = blk(0, 0, 0);
	feed_raw(&sess, "j", &b1, NULL, body, 17, T0, &out);
	assert_error(&out, EST_CODE(4, 0));
}

/* ---- reassembly ----------------------------------------------------------- */

static void test_reassembles_in_order(void **state)
{
	struct bw_out out;
	const size_t total = 200; /* 32-byte blocks: 0..6, last of 8 bytes */

	for (uint32_t n = 0; n < 6; n++) {
		feed_blk("k", n, 1, total, T0 + n, &out);
		assert_int_equal(out.verdict, BW_MORE);
		assert_int_equal(out.code, EST_CODE(2, 31));
		assert_true(out.echo);
		assert_int_equal(out.echo_b1.num, n);
		assert_int_equal(out.echo_b1.m, 1);
		assert_int_equal(out.echo_b1.szx, 1);
		assert_int_equal(pool.bytes, 32 * (n + 1));
	}
	feed_blk("k", 6, 1, total, T0 + 6, &out);
	assert_int_equal(out.verdict, BW_READY);
	assert_int_equal(out.len, total);
	assert_memory_equal(out.body, body, total);
	assert_non_null(out.owned);
	assert_true(out.echo);
	assert_int_equal(out.echo_b1.num, 6);
	assert_int_equal(out.echo_b1.m, 0);
	assert_int_equal(out.block2_szx, -1);
	assert_int_equal(pool.count, 0);
	assert_int_equal(pool.bytes, 0);
	free(out.owned);
}

static void test_E4_missing_first_block_4_08(void **state)
{
	struct bw_out out;

	feed_blk("k", 1, 0, 64, T0, &out);
	assert_error(&out, EST_CODE(4, 8));
	assert_int_equal(out.echo, 0);
	feed_blk("k", 3, 0, 64, T0, &out); /* a last block with nothing before */
	assert_error(&out, EST_CODE(4, 8));
	assert_true(out.echo);
}

static void test_E4_gap_4_08_drops_body(void **state)
{
	struct bw_out out;

	feed_blk("k", 0, 0, 100, T0, &out);
	feed_blk("k", 2, 0, 100, T0, &out);
	assert_error(&out, EST_CODE(4, 8));
	assert_int_equal(pool.count, 0);
	feed_blk("k", 1, 0, 100, T0, &out); /* the body is gone */
	assert_error(&out, EST_CODE(4, 8));
}

static void test_E4_out_of_order_4_08(void **state)
{
	struct bw_out out;
	struct opt b1 = blk(1, 1, 0);

	feed_blk("k", 0, 0, 100, T0, &out);
	feed_blk("k", 1, 0, 100, T0, &out);
	feed_blk("k", 2, 0, 100, T0, &out);
	feed_blk("k", 1, 0, 100, T0, &out); /* an older block again */
	assert_error(&out, EST_CODE(4, 8));
	assert_int_equal(pool.count, 0);
	/* a repeat of the last block with other bytes is out of order */
	feed_blk("k", 0, 0, 100, T0, &out);
	feed_blk("k", 1, 0, 100, T0, &out);
	feed_raw(&sess, "k", &b1, NULL, body + 17, 16, T0, &out);
	assert_error(&out, EST_CODE(4, 8));
}

static void test_repeat_of_last_block_is_2_31_again(void **state)
{
	struct bw_out out;

	feed_blk("k", 0, 0, 40, T0, &out);
	feed_blk("k", 1, 0, 40, T0, &out);
	feed_blk("k", 1, 0, 40, T0, &out); /* retransmission */
	assert_int_equal(out.verdict, BW_MORE);
	assert_int_equal(out.echo_b1.num, 1);
	assert_int_equal(pool.bytes, 32);
	feed_blk("k", 2, 0, 40, T0, &out);
	assert_int_equal(out.verdict, BW_READY);
	assert_int_equal(out.len, 40);
	assert_memory_equal(out.body, body, 40);
	free(out.owned);
}

static void test_block0_restarts_body(void **state)
{
	struct bw_out out;

	feed_blk("k", 0, 0, 100, T0, &out);
	feed_blk("k", 1, 0, 100, T0, &out);
	feed_blk("k", 0, 0, 40, T0, &out);
	assert_int_equal(pool.count, 1);
	assert_int_equal(pool.bytes, 16);
	feed_blk("k", 1, 0, 40, T0, &out);
	feed_blk("k", 2, 0, 40, T0, &out);
	assert_int_equal(out.verdict, BW_READY);
	assert_int_equal(out.len, 40);
	free(out.owned);
}

static void test_smaller_szx_midway(void **state)
{
	struct bw_out out;
	struct opt b1;

	feed_blk("k", 0, 2, 200, T0, &out); /* 64 bytes */
	b1 = blk(4, 1, 0);                  /* offset 64 in 16-byte blocks */
	feed_raw(&sess, "k", &b1, NULL, body + 64, 16, T0, &out);
	assert_int_equal(out.verdict, BW_MORE);
	b1 = blk(5, 0, 0);
	feed_raw(&sess, "k", &b1, NULL, body + 80, 10, T0, &out);
	assert_int_equal(out.verdict, BW_READY);
	assert_int_equal(out.len, 90);
	assert_memory_equal(out.body, body, 90);
	free(out.owned);
}

static void test_E1_body_over_max_4_13_drops(void **state)
{
	struct bw_out out;

	for (uint32_t n = 0; n < 20; n++) {
		feed_blk("k", n, 2, 4000, T0, &out); /* 64-byte blocks */
		if (out.verdict == BW_ERROR)
			break;
	}
	assert_error(&out, EST_CODE(4, 13));
	assert_int_equal(out.size1, 1024);
	assert_int_equal(pool.count, 0);
	assert_int_equal(pool.bytes, 0);
	/* a far block number is refused before anything is allocated */
	struct opt far = blk(0xfffff, 1, 6);
	feed_raw(&sess, "j", &far, NULL, body, 1024, T0, &out);
	assert_error(&out, EST_CODE(4, 13));
	assert_int_equal(pool.count, 0);
}

static void test_E4_per_session_drops_oldest(void **state)
{
	struct bw_out out;

	feed_blk("a", 0, 0, 100, T0, &out);
	feed_blk("b", 0, 0, 100, T0 + 1, &out);
	feed_blk("c", 0, 0, 100, T0 + 2, &out); /* a goes */
	assert_int_equal(out.verdict, BW_MORE);
	assert_int_equal(sess.nxfers, 2);
	feed_blk("a", 1, 0, 100, T0 + 3, &out);
	assert_error(&out, EST_CODE(4, 8));
	feed_blk("b", 1, 0, 100, T0 + 3, &out);
	assert_int_equal(out.verdict, BW_MORE);
}

static void test_E4_total_count_5_03(void **state)
{
	struct bw_session other[2];
	struct bw_out out;
	struct opt b1 = blk(0, 1, 0);

	memset(other, 0, sizeof(other));
	feed_raw(&other[0], "a", &b1, NULL, body, 16, T0, &out);
	feed_raw(&other[0], "b", &b1, NULL, body, 16, T0, &out);
	feed_raw(&other[1], "a", &b1, NULL, body, 16, T0, &out);
	assert_int_equal(pool.count, 3);
	feed_blk("a", 0, 0, 100, T0, &out);
	assert_error(&out, EST_CODE(5, 3));
	bw_session_clear(&pool, &other[0]);
	bw_session_clear(&pool, &other[1]);
	feed_blk("a", 0, 0, 100, T0, &out);
	assert_int_equal(out.verdict, BW_MORE);
}

static void test_E4_total_bytes_5_03(void **state)
{
	struct bw_session other;
	struct bw_out out;
	struct opt b1;

	memset(&other, 0, sizeof(other));
	pool.lim.max_body = 4096;
	for (uint32_t n = 0; n < 2; n++) { /* 2048 bytes held elsewhere */
		b1 = blk(n, 1, 6);
		feed_raw(&other, "a", &b1, NULL, body, 1024, T0, &out);
		assert_int_equal(out.verdict, BW_MORE);
	}
	feed_blk("k", 0, 0, 100, T0, &out);
	assert_error(&out, EST_CODE(5, 3));
	assert_int_equal(pool.count, 1);
	bw_session_clear(&pool, &other);
}

static void test_E4_expired_body_4_08(void **state)
{
	struct bw_out out;

	feed_blk("k", 0, 0, 40, T0, &out);
	feed_blk("k", 1, 0, 40, T0 + 247, &out);
	assert_int_equal(out.verdict, BW_MORE);
	feed_blk("k", 2, 0, 40, T0 + 247 + 248, &out);
	assert_error(&out, EST_CODE(4, 8));
	assert_int_equal(pool.count, 0);
	/* a clock that went backwards expires too */
	feed_blk("k", 0, 0, 40, T0, &out);
	feed_blk("k", 1, 0, 40, T0 - 10, &out);
	assert_error(&out, EST_CODE(4, 8));
}

/* E4: a body expires by time in every session, not only when its own
 * session sends again (a pinged session held its slots for ever). */
static void test_E4_idle_session_bodies_expire_by_time(void **state)
{
	struct bw_session idle = { .owner = "CN=idle" };
	struct bw_out out;
	struct opt b1 = blk(0, 1, 0);

	feed_raw(&idle, "a", &b1, NULL, body, 16, T0, &out);
	feed_raw(&idle, "b", &b1, NULL, body, 16, T0 + 100, &out);
	assert_int_equal(pool.count, 2);
	feed_blk("k", 0, 0, 100, T0 + 248, &out); /* another session: a goes */
	assert_int_equal(out.verdict, BW_MORE);
	assert_int_equal(pool.count, 2);
	assert_int_equal(idle.nxfers, 1);
	bw_expire(&pool, T0 + 100 + 248);       /* and b, with no request at all */
	assert_int_equal(idle.nxfers, 0);
	assert_int_equal(bw_owner_count(&pool, "CN=idle"), 0);
	bw_session_clear(&pool, &idle);
}

/* E4: one identity's sessions together hold per_client bodies; a new one
 * drops the identity's oldest, in whichever session it is. */
static void test_E4_per_client_drops_its_oldest(void **state)
{
	struct bw_session s1 = { .owner = "CN=x" }, s2 = { .owner = "CN=x" };
	struct bw_out out;
	struct opt b1 = blk(0, 1, 0), b1n = blk(1, 1, 0);

	pool.lim.total = 8;
	pool.lim.per_client = 2;
	feed_raw(&s1, "a", &b1, NULL, body, 16, T0, &out);
	feed_raw(&s2, "b", &b1, NULL, body, 16, T0 + 1, &out);
	feed_raw(&s2, "c", &b1, NULL, body, 16, T0 + 2, &out); /* s1's a goes */
	assert_int_equal(out.verdict, BW_MORE);
	assert_int_equal(bw_owner_count(&pool, "CN=x"), 2);
	assert_int_equal(s1.nxfers, 0);
	feed_raw(&s1, "a", &b1n, NULL, body + 16, 16, T0 + 3, &out);
	assert_error(&out, EST_CODE(4, 8));
	feed_blk("k", 0, 0, 100, T0 + 3, &out); /* another identity is not touched */
	assert_int_equal(out.verdict, BW_MORE);
	assert_int_equal(bw_owner_count(&pool, "CN=x"), 2);
	bw_session_clear(&pool, &s1);
	bw_session_clear(&pool, &s2);
	assert_int_equal(bw_owner_count(&pool, "CN=x"), 0);
}

/* E4: the last `reserve` slots only go to an identity that holds none:
 * however many sessions the others open, a new device gets one. */
static void test_E4_reserve_for_identities_holding_none(void **state)
{
	struct bw_session s[4];
	struct bw_out out;
	struct opt b1 = blk(0, 1, 0);
	char key[8];

	pool.lim.total = 4;
	pool.lim.per_session = 4;
	pool.lim.reserve = 1;
	memset(s, 0, sizeof(s));
	for (int i = 0; i < 4; i++)
		s[i].owner = "CN=greedy";
	for (int i = 0; i < 3; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		feed_raw(&s[i], key, &b1, NULL, body, 16, T0, &out);
		assert_int_equal(out.verdict, BW_MORE);
	}
	feed_raw(&s[3], "k3", &b1, NULL, body, 16, T0, &out);
	assert_error(&out, EST_CODE(5, 3));   /* the reserve is not for it */
	sess.owner = "CN=newcomer";
	feed_blk("k", 0, 0, 100, T0, &out);
	assert_int_equal(out.verdict, BW_MORE);
	assert_int_equal(pool.count, 4);
	for (int i = 0; i < 4; i++)
		bw_session_clear(&pool, &s[i]);
	assert_int_equal(bw_owner_count(&pool, "CN=greedy"), 0);
}

static void test_E7_early_block2_in_block0_remembered(void **state)
{
	struct bw_out out;
	struct opt b1 = blk(0, 1, 0), b2 = blk(0, 0, 1);

	feed_raw(&sess, "k", &b1, &b2, body, 16, T0, &out);
	assert_int_equal(out.verdict, BW_MORE);
	feed_blk("k", 1, 0, 40, T0, &out);
	feed_blk("k", 2, 0, 40, T0, &out);
	assert_int_equal(out.verdict, BW_READY);
	assert_int_equal(out.block2_szx, 1);
	free(out.owned);
	/* RFC 7959 Figure 14: Block2 in the last block wins */
	feed_raw(&sess, "k", &b1, &b2, body, 16, T0, &out);
	b1 = blk(1, 0, 0);
	b2 = blk(0, 0, 3);
	feed_raw(&sess, "k", &b1, &b2, body + 16, 5, T0, &out);
	assert_int_equal(out.verdict, BW_READY);
	assert_int_equal(out.block2_szx, 3);
	free(out.owned);
}

/* ---- kept answers --------------------------------------------------------- */

static struct bw_answer answer(const char *text)
{
	struct bw_answer a = { .code = EST_CODE(2, 4), .cf = 281 };

	a.len = strlen(text);
	a.payload = malloc(a.len);
	memcpy(a.payload, text, a.len);
	return a;
}

static void test_E8_repeated_last_block_repeats_answer(void **state)
{
	struct bw_out out;
	const size_t total = 40;
	struct opt last = blk(2, 0, 0);
	struct bw_req rq = { .key = "k", .answer_key = "POST k", .block1 = last.v,
			     .block1_len = last.len, .data = body + 32, .len = 8,
			     .now = T0 };

	feed_blk("k", 0, 0, total, T0, &out);
	feed_blk("k", 1, 0, total, T0, &out);
	bw_feed(&pool, &sess, &rq, &out);
	assert_int_equal(out.verdict, BW_READY);
	free(out.owned);
	struct bw_answer a = answer("the certificate");
	assert_int_equal(bw_keep(&pool, &sess, "POST k", &rq, &a, T0), 0);
	assert_null(a.payload);
	assert_int_equal(pool.kept_bytes, 15 + 8);
	/* the same last block again, as a new message */
	rq.now = T0 + 30;
	bw_feed(&pool, &sess, &rq, &out);
	assert_int_equal(out.verdict, BW_REPEAT);
	assert_non_null(out.answer);
	assert_int_equal(out.answer->code, EST_CODE(2, 4));
	assert_memory_equal(out.answer->payload, "the certificate", 15);
	assert_true(out.echo);
	assert_int_equal(out.echo_b1.num, 2);
	assert_int_equal(out.echo_b1.m, 0);
	/* other bytes in that block: not a repeat */
	rq.data = body + 33;
	bw_feed(&pool, &sess, &rq, &out);
	assert_error(&out, EST_CODE(4, 8));
	/* past the lifetime: forgotten */
	rq.data = body + 32;
	rq.now = T0 + 248;
	bw_feed(&pool, &sess, &rq, &out);
	assert_error(&out, EST_CODE(4, 8));
	assert_int_equal(pool.kept, 0);
}

static void test_E6_find_by_key(void **state)
{
	struct bw_answer a = answer("crts 281"), b = answer("crts 287");

	assert_int_equal(bw_keep(&pool, &sess, "GET crts 281", NULL, &a, T0), 0);
	assert_int_equal(bw_keep(&pool, &sess, "GET crts 287", NULL, &b, T0), 0);
	const struct bw_answer *f = bw_find(&pool, &sess, "GET crts 281", T0);
	assert_non_null(f);
	assert_memory_equal(f->payload, "crts 281", 8);
	struct bw_answer same = { .code = f->code, .cf = f->cf,
				  .payload = (uint8_t *)"crts 281", .len = 8 };
	uint8_t etag[8];
	bw_etag(&same, etag);
	assert_memory_equal(f->etag, etag, 8); /* bw_keep set the ETag */
	f = bw_find(&pool, &sess, "GET crts 287", T0);
	assert_memory_equal(f->payload, "crts 287", 8);
	assert_null(bw_find(&pool, &sess, "GET att", T0));
	/* a new answer under the same key replaces the old one */
	struct bw_answer c = answer("crts 281 new");
	assert_int_equal(bw_keep(&pool, &sess, "GET crts 281", NULL, &c, T0), 0);
	assert_int_equal(pool.kept, 2);
	f = bw_find(&pool, &sess, "GET crts 281", T0);
	assert_int_equal(f->len, 12);
}

/* A session that sends nothing more: the idle sweep drops its kept answers
 * and bodies in progress once past the lifetime, not before (J2). */
static void test_J2_expire_idle_session(void **state)
{
	struct bw_answer a = answer("crts 281");
	struct bw_out o;

	assert_int_equal(bw_keep(&pool, &sess, "GET crts 281", NULL, &a, T0), 0);
	feed_blk("POST sen", 0, 0, 40, T0, &o); /* a body in progress */
	assert_int_equal(o.verdict, BW_MORE);
	bw_expire_session(&pool, &sess, T0 + 247);
	assert_int_equal(pool.kept, 1);
	assert_int_equal(pool.count, 1);
	bw_expire_session(&pool, &sess, T0 + 248);
	assert_int_equal(pool.kept, 0);
	assert_int_equal(pool.kept_bytes, 0);
	assert_int_equal(pool.count, 0);
	assert_int_equal(pool.bytes, 0);
	assert_null(bw_find(&pool, &sess, "GET crts 281", T0 + 248));
}

static void test_etag_differs_per_body(void **state)
{
	struct bw_answer a = { .code = EST_CODE(2, 5), .cf = 281,
			       .payload = body, .len = 100 };
	uint8_t e1[8], e2[8];

	bw_etag(&a, e1);
	a.cf = 287;
	bw_etag(&a, e2);
	assert_memory_not_equal(e1, e2, 8);
	a.cf = 281;
	a.len = 99;
	bw_etag(&a, e2);
	assert_memory_not_equal(e1, e2, 8);
	a.len = 100;
	bw_etag(&a, e2);
	assert_memory_equal(e1, e2, 8);
}

static void test_keep_bounds(void **state)
{
	struct bw_answer a = answer("one"), b = answer("two"), c = answer("three");

	assert_int_equal(bw_keep(&pool, &sess, "a", NULL, &a, T0), 0);
	assert_int_equal(bw_keep(&pool, &sess, "b", NULL, &b, T0 + 1), 0);
	assert_int_equal(bw_keep(&pool, &sess, "c", NULL, &c, T0 + 2), 0); /* a goes */
	assert_int_equal(sess.nkept, 2);
	assert_null(bw_find(&pool, &sess, "a", T0 + 2));
	assert_int_equal(pool.kept_bytes, 3 + 5);
	/* over the byte budget: not kept, left to the caller */
	struct bw_answer big = { .code = EST_CODE(2, 5), .cf = 281 };
	big.len = 4096;
	big.payload = calloc(1, big.len);
	assert_int_equal(bw_keep(&pool, &sess, "d", NULL, &big, T0 + 3), -ENOSPC);
	assert_non_null(big.payload);
	bw_answer_clear(&big);
	assert_null(big.payload);
	/* nothing kept when keep_per_session is 0 */
	pool.lim.keep_per_session = 0;
	struct bw_answer d = answer("four");
	assert_int_equal(bw_keep(&pool, &sess, "e", NULL, &d, T0 + 3), -ENOSPC);
	bw_answer_clear(&d);
}

/* ---- Block2 slices -------------------------------------------------------- */

static void test_block2_whole_when_it_fits(void **state)
{
	struct bw_slice sl;

	assert_int_equal(bw_block2(500, NULL, -1, 1000, &sl), 0);
	assert_int_equal(sl.block, 0);
	assert_int_equal(sl.n, 500);
	assert_int_equal(bw_block2(0, NULL, -1, 1000, &sl), 0);
	assert_int_equal(sl.n, 0);
}

static void test_block2_first_block_when_too_big(void **state)
{
	struct bw_slice sl;

	assert_int_equal(bw_block2(3000, NULL, -1, 1000, &sl), 0);
	assert_int_equal(sl.block, 1);
	assert_int_equal(sl.b2.szx, 5); /* 512: the largest that fits in 1000 */
	assert_int_equal(sl.b2.num, 0);
	assert_int_equal(sl.b2.m, 1);
	assert_int_equal(sl.n, 512);
}

static void test_block2_requested_blocks(void **state)
{
	struct bw_block rq = { .num = 2, .szx = 0 };
	struct bw_slice sl;

	assert_int_equal(bw_block2(40, &rq, -1, 1000, &sl), 0);
	assert_int_equal(sl.block, 1);
	assert_int_equal(sl.off, 32);
	assert_int_equal(sl.n, 8);
	assert_int_equal(sl.b2.num, 2);
	assert_int_equal(sl.b2.m, 0);
	rq.num = 3; /* past the end */
	assert_int_equal(bw_block2(40, &rq, -1, 1000, &sl), -ERANGE);
	rq.num = 0; /* block 0 of a short answer is the whole of it */
	assert_int_equal(bw_block2(10, &rq, -1, 1000, &sl), 0);
	assert_int_equal(sl.block, 1);
	assert_int_equal(sl.n, 10);
	assert_int_equal(sl.b2.m, 0);
	rq.szx = 7;
	assert_int_equal(bw_block2(10, &rq, -1, 1000, &sl), -EINVAL);
}

static void test_E7_block2_preference_applies(void **state)
{
	struct bw_slice sl;

	assert_int_equal(bw_block2(100, NULL, 1, 1000, &sl), 0);
	assert_int_equal(sl.block, 1);
	assert_int_equal(sl.b2.szx, 1);
	assert_int_equal(sl.n, 32);
	assert_int_equal(sl.b2.m, 1);
	assert_int_equal(bw_block2(100, NULL, 7, 1000, &sl), -EINVAL);
}

static void test_block2_smaller_than_asked_keeps_offset(void **state)
{
	struct bw_block rq = { .num = 1, .szx = 6 }; /* offset 1024 */
	struct bw_slice sl;

	assert_int_equal(bw_block2(3000, &rq, -1, 600, &sl), 0);
	assert_int_equal(sl.b2.szx, 5);
	assert_int_equal(sl.b2.num, 2);
	assert_int_equal(sl.off, 1024);
	assert_int_equal(sl.n, 512);
	assert_int_equal(bw_block2(3000, &rq, -1, 15, &sl), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_option_codec, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_block1_is_whole_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block1_zero_last_is_whole_body_with_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E1_whole_body_too_large_4_13, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E1_size1_over_limit_4_13, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E9_block1_szx7_reserved_4_00, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block2_szx7_reserved_4_00, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_option_too_long_4_02, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nonfinal_block_wrong_size_4_00, setup, teardown),
		cmocka_unit_test_setup_teardown(test_last_block_larger_than_size_4_00_with_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reassembles_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E4_missing_first_block_4_08, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E4_gap_4_08_drops_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E4_out_of_order_4_08, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repeat_of_last_block_is_2_31_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block0_restarts_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_smaller_szx_midway, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E1_body_over_max_4_13_drops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E4_per_session_drops_oldest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E4_total_count_5_03, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E4_total_bytes_5_03, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E4_expired_body_4_08, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E4_idle_session_bodies_expire_by_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E4_per_client_drops_its_oldest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E4_reserve_for_identities_holding_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E7_early_block2_in_block0_remembered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E8_repeated_last_block_repeats_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E6_find_by_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_J2_expire_idle_session, setup, teardown),
		cmocka_unit_test_setup_teardown(test_etag_differs_per_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keep_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block2_whole_when_it_fits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block2_first_block_when_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block2_requested_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_E7_block2_preference_applies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block2_smaller_than_asked_keeps_offset, setup, teardown),
	};
	return cmocka_run_group_tests_name("blockwise", tests, NULL, NULL);
}
