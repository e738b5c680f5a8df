/* fuzz_blockwise.c - libFuzzer: Block1 reassembly, kept answers and Block2
 * slices (src/downstream/blockwise.c; E1, E4-E8) fed a stream of requests on
 * two sessions with small limits. Checks the counters against what the
 * sessions hold, every READY body against the limit, every slice against
 * the answer, and that clearing the sessions leaves nothing behind.
 *
 * Each record: flags, key, Block1 length (low 2 bits) + Block2 length,
 * Size1, clock step, payload length, then the option and payload bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "downstream/blockwise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct cursor {
	const uint8_t *p;
	size_t n;
};

static int take(struct cursor *c, size_t n, const uint8_t **out)
{
	if (c->n < n)
		return -1;
	*out = c->p;
	c->p += n;
	c->n -= n;
	return 0;
}

static uint8_t byte(struct cursor *c)
{
	const uint8_t *b;

	return take(c, 1, &b) == 0 ? b[0] : 0;
}

static void check_counts(const struct bw_pool *pool)
{
	if (pool->count > pool->lim.total || pool->bytes > pool->lim.total_bytes ||
	    pool->kept_bytes > pool->lim.keep_total_bytes)
		abort();
}

static void check_slice(const struct bw_answer *a, const struct bw_block *b2,
			int pref)
{
	struct bw_slice sl;

	for (size_t room = 8; room <= 1200; room = room * 3 + 5) {
		if (bw_block2(a->len, b2, pref, room, &sl) != 0)
			continue;
		if (sl.off > a->len || sl.n > a->len - sl.off)
			abort();
		if (!sl.block && (sl.n != a->len || sl.off))
			abort();
		if (sl.block && (bw_size(sl.b2.szx) > (room < 16 ? 16 : room) ||
				 sl.n > bw_size(sl.b2.szx) ||
				 sl.b2.m != (sl.off + sl.n < a->len)))
			abort();
	}
}

static void one(struct bw_pool *pool, struct bw_session *s, struct cursor *c,
		time_t *now)
{
	static const char *const keys[] = { "/sen#", "/sen#01", "/skg#", "/att#" };
	uint8_t flags = byte(c), lens = byte(c);
	const char *key = keys[byte(c) & 3];
	const uint8_t *b1 = NULL, *b2 = NULL, *pl = NULL;
	size_t b1len = lens & 3, b2len = (lens >> 2) & 3, plen = byte(c) * 5u;
	struct bw_req rq = { .key = key, .answer_key = key };
	struct bw_out out;
	struct bw_block blk2;

	*now += byte(c) & 0x7f;
	rq.now = *now;
	rq.has_size1 = flags & 4;
	rq.size1 = (uint32_t)byte(c) << 4;
	if (((flags & 1) && take(c, b1len, &b1) != 0) ||
	    ((flags & 2) && take(c, b2len, &b2) != 0))
		return;
	if (take(c, plen, &pl) != 0)
		plen = 0;
	rq.block1 = (flags & 1) ? (b1 ? b1 : (const uint8_t *)"") : NULL;
	rq.block1_len = (flags & 1) ? b1len : 0;
	rq.block2 = (flags & 2) ? (b2 ? b2 : (const uint8_t *)"") : NULL;
	rq.block2_len = (flags & 2) ? b2len : 0;
	rq.data = pl;
	rq.len = plen;
	bw_feed(pool, s, &rq, &out);
	check_counts(pool);
	if (out.verdict == BW_READY) {
		if (out.len > pool->lim.max_body || (out.len && !out.body))
			abort();
		if (flags & 8) { /* answer it and keep the answer */
			struct bw_answer a = { .code = 0x44, .cf = 281 };
			a.len = out.len;
			a.payload = malloc(out.len ? out.len : 1);
			if (!a.payload)
				abort();
			if (out.len)
				memcpy(a.payload, out.body, out.len);
			if (bw_keep(pool, s, key, &rq, &a, *now) != 0)
				bw_answer_clear(&a);
			check_counts(pool);
		}
		free(out.owned);
	} else if (out.verdict == BW_REPEAT) {
		if (!out.answer)
			abort();
	} else if (out.owned) {
		abort();
	}
	const struct bw_answer *k = bw_find(pool, s, key, *now);
	if (k) {
		int have = rq.block2 && bw_block_parse(rq.block2, rq.block2_len, &blk2) == 0;
		check_slice(k, have ? &blk2 : NULL, flags & 16 ? (flags >> 5) : -1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bw_pool pool = { .lim = {
		.max_body = 600, .per_session = 2, .per_client = 3, .reserve = 1,
		.total = 4, .total_bytes = 900,
		.lifetime = 300, .keep_per_session = 2, .keep_total_bytes = 1500,
	} };
	struct bw_session s[3];
	struct cursor c = { data, size };
	time_t now = 1000;

	memset(s, 0, sizeof(s));
	s[0].owner = s[1].owner = "CN=one"; /* one identity, two sessions (E4) */
	s[2].owner = "CN=two";
	for (int i = 0; c.n && i < 256; i++)
		one(&pool, &s[i % 3], &c, &now);
	if (bw_owner_count(&pool, "CN=one") > pool.lim.per_client ||
	    bw_owner_count(&pool, "CN=one") + bw_owner_count(&pool, "CN=two") != pool.count)
		abort();
	for (int i = 0; i < 3; i++)
		bw_session_clear(&pool, &s[i]);
	if (pool.count || pool.bytes || pool.kept || pool.kept_bytes || pool.owners ||
	    pool.lru_old || pool.lru_new)
		abort();
	return 0;
}
