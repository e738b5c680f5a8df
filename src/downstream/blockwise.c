/* blockwise.c - Block1 reassembly, kept answers and Block2 slices
 * (RFC 7959), pure: see blockwise.h for what it owns.
 *
 * A body in progress is one buffer that only grows at its end: a block is
 * accepted when it starts where the buffer ends, or is an exact repeat of
 * the block accepted last (a retransmission). Anything else is 4.08 and
 * drops the body (RFC 7959 §2.3, §2.9.2).
 */
#include "downstream/blockwise.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/translate.h"

struct bw_xfer {
	struct bw_xfer *next;
	struct bw_xfer *lru_prev, *lru_next; /* the pool's, by last feed */
	struct bw_session *sess;
	struct bw_owner *owner;
	char *key;
	uint8_t *buf;
	size_t len, cap;
	size_t last_off, last_len; /* the block accepted last */
	int b2_szx;                /* Block2 SZX seen in any block, -1 */
	time_t last;
};

/* A client identity holding bodies in progress (E4). */
struct bw_owner {
	struct bw_owner *next;
	char *name;
	size_t n;
};

struct bw_kept {
	struct bw_kept *next;
	char *key;
	struct bw_answer a;
	int has_last;              /* the final Block1 block, for E8 */
	struct bw_block last_b1;
	uint8_t *last_data;
	size_t last_len;
	size_t bytes;              /* counted in pool->kept_bytes */
	time_t born;
};

/* ---- the option value (RFC 7959 §2.2) ---------------------------------- */

int bw_block_parse(const uint8_t *v, size_t len, struct bw_block *b)
{
	uint32_t x = 0;

	if (len > 3 || (len && !v))
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		x = x << 8 | v[i];
	b->num = x >> 4;
	b->m = (x >> 3) & 1;
	b->szx = x & 7;
	return 0;
}

size_t bw_block_encode(const struct bw_block *b, uint8_t out[3])
{
	uint32_t x = (b->num & 0xfffff) << 4 | (uint32_t)(b->m ? 8 : 0) | (b->szx & 7);
	size_t n = x > 0xffff ? 3 : x > 0xff ? 2 : x ? 1 : 0;

	for (size_t i = 0; i < n; i++)
		out[i] = (uint8_t)(x >> (8 * (n - 1 - i)));
	return n;
}

/* ---- identities (E4) ---------------------------------------------------- */

static const char *owner_name(const struct bw_session *s)
{
	return s->owner && *s->owner ? s->owner : "-";
}

static struct bw_owner *owner_find(const struct bw_pool *pool, const char *name)
{
	for (struct bw_owner *o = pool->owners; o; o = o->next)
		if (strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

size_t bw_owner_count(const struct bw_pool *pool, const char *owner)
{
	const struct bw_owner *o = owner_find(pool, owner && *owner ? owner : "-");

	return o ? o->n : 0;
}

static struct bw_owner *owner_get(struct bw_pool *pool, const char *name)
{
	struct bw_owner *o = owner_find(pool, name);

	if (o)
		return o;
	o = calloc(1, sizeof(*o));
	if (!o || !(o->name = strdup(name))) {
		free(o);
		return NULL;
	}
	o->next = pool->owners;
	pool->owners = o;
	return o;
}

static void owner_put(struct bw_pool *pool, struct bw_owner *o)
{
	struct bw_owner **pp = &pool->owners;

	if (!o || --o->n > 0)
		return;
	while (*pp && *pp != o)
		pp = &(*pp)->next;
	if (*pp)
		*pp = o->next;
	free(o->name);
	free(o);
}

/* ---- the pool's least-recently-fed list --------------------------------- */

static void lru_unlink(struct bw_pool *pool, struct bw_xfer *x)
{
	if (x->lru_prev)
		x->lru_prev->lru_next = x->lru_next;
	else if (pool->lru_old == x)
		pool->lru_old = x->lru_next;
	if (x->lru_next)
		x->lru_next->lru_prev = x->lru_prev;
	else if (pool->lru_new == x)
		pool->lru_new = x->lru_prev;
	x->lru_prev = x->lru_next = NULL;
}

static void lru_touch(struct bw_pool *pool, struct bw_xfer *x, time_t now)
{
	lru_unlink(pool, x);
	x->last = now;
	x->lru_prev = pool->lru_new;
	if (pool->lru_new)
		pool->lru_new->lru_next = x;
	else
		pool->lru_old = x;
	pool->lru_new = x;
}

/* ---- bodies in progress ------------------------------------------------- */

static void xfer_free(struct bw_pool *pool, struct bw_session *s,
		      struct bw_xfer *x)
{
	struct bw_xfer **pp = &s->xfers;

	while (*pp && *pp != x)
		pp = &(*pp)->next;
	if (*pp)
		*pp = x->next;
	lru_unlink(pool, x);
	owner_put(pool, x->owner);
	pool->bytes -= x->len;
	pool->count--;
	s->nxfers--;
	free(x->buf);
	free(x->key);
	free(x);
}

static void kept_free(struct bw_pool *pool, struct bw_session *s,
		      struct bw_kept *k)
{
	struct bw_kept **pp = &s->kept;

	while (*pp && *pp != k)
		pp = &(*pp)->next;
	if (*pp)
		*pp = k->next;
	pool->kept_bytes -= k->bytes;
	pool->kept--;
	s->nkept--;
	bw_answer_clear(&k->a);
	free(k->last_data);
	free(k->key);
	free(k);
}

static int stale(const struct bw_pool *pool, time_t last, time_t now)
{
	return now - last > (time_t)pool->lim.lifetime || now < last;
}

void bw_expire(struct bw_pool *pool, time_t now)
{
	struct bw_xfer *x;

	/* oldest first: stop at the first one still alive, but a clock that
	 * went back makes every one stale (as the per-session check did) */
	while ((x = pool->lru_old) && stale(pool, x->last, now))
		xfer_free(pool, x->sess, x);
}

static void expire(struct bw_pool *pool, struct bw_session *s, time_t now)
{
	struct bw_xfer *x, *xn;
	struct bw_kept *k, *kn;

	bw_expire(pool, now);
	for (x = s->xfers; x; x = xn) { /* a clock gone back: the LRU may be unsorted */
		xn = x->next;
		if (stale(pool, x->last, now))
			xfer_free(pool, s, x);
	}
	for (k = s->kept; k; k = kn) {
		kn = k->next;
		if (now - k->born > (time_t)pool->lim.lifetime || now < k->born)
			kept_free(pool, s, k);
	}
}

static struct bw_xfer *xfer_find(struct bw_session *s, const char *key)
{
	for (struct bw_xfer *x = s->xfers; x; x = x->next)
		if (strcmp(x->key, key) == 0)
			return x;
	return NULL;
}

/* The identity's least recently fed body, in any of its sessions. */
static struct bw_xfer *owner_oldest(struct bw_pool *pool, const struct bw_owner *o)
{
	for (struct bw_xfer *x = pool->lru_old; x; x = x->lru_next)
		if (x->owner == o)
			return x;
	return NULL;
}

/* A slot for a new body of @p s: its session's oldest goes at
 * per_session, its identity's oldest at per_client; an identity that
 * holds bodies may not take the last `reserve` slots (E4). */
static struct bw_xfer *xfer_new(struct bw_pool *pool, struct bw_session *s,
				const char *key, time_t now)
{
	struct bw_owner *o;
	struct bw_xfer *x;

	if (s->xfers && s->nxfers >= pool->lim.per_session) {
		struct bw_xfer *oldest = s->xfers;
		for (x = s->xfers; x; x = x->next)
			if (x->last <= oldest->last)
				oldest = x;
		xfer_free(pool, s, oldest);
	}
	o = owner_find(pool, owner_name(s));
	if (o && pool->lim.per_client && o->n >= pool->lim.per_client &&
	    (x = owner_oldest(pool, o)))
		xfer_free(pool, x->sess, x); /* may free o: look it up again */
	o = owner_find(pool, owner_name(s));
	if (pool->count >= pool->lim.total ||
	    (o && pool->count + pool->lim.reserve >= pool->lim.total))
		return NULL;
	if (!(o = owner_get(pool, owner_name(s))))
		return NULL;
	x = calloc(1, sizeof(*x));
	if (!x || !(x->key = strdup(key))) {
		free(x);
		if (o->n == 0) { /* made for this body */
			o->n = 1;
			owner_put(pool, o);
		}
		return NULL;
	}
	o->n++;
	x->owner = o;
	x->sess = s;
	x->b2_szx = -1;
	lru_touch(pool, x, now);
	x->next = s->xfers;
	s->xfers = x;
	s->nxfers++;
	pool->count++;
	return x;
}

static int xfer_append(struct bw_pool *pool, struct bw_xfer *x,
		       const uint8_t *data, size_t len)
{
	if (pool->bytes + len > pool->lim.total_bytes)
		return -ENOSPC;
	if (x->len + len > x->cap) {
		size_t cap = x->cap ? x->cap : 256;
		while (cap < x->len + len)
			cap *= 2;
		uint8_t *p = realloc(x->buf, cap);
		if (!p)
			return -ENOMEM;
		x->buf = p;
		x->cap = cap;
	}
	if (len)
		memcpy(x->buf + x->len, data, len);
	x->len += len;
	pool->bytes += len;
	return 0;
}

/* ---- feeding one request ------------------------------------------------ */

/* The feed functions return 0 once *out is final. */
static int fail(struct bw_out *out, uint8_t code, const char *diag)
{
	out->verdict = BW_ERROR;
	out->code = code;
	out->diag = diag;
	return 0;
}

static int too_large(const struct bw_pool *pool, struct bw_out *out)
{
	fail(out, EST_CODE(4, 13), "request body too large");
	out->size1 = (uint32_t)pool->lim.max_body;
	return 0;
}

static void echo(struct bw_out *out, const struct bw_block *b1)
{
	out->echo = 1;
	out->echo_b1 = *b1;
}

/* The kept answer whose final Block1 block is exactly this one (E8). */
static const struct bw_answer *repeat_of(struct bw_session *s,
					 const struct bw_req *rq,
					 const struct bw_block *b1)
{
	if (!rq->answer_key)
		return NULL;
	for (struct bw_kept *k = s->kept; k; k = k->next)
		if (k->has_last && strcmp(k->key, rq->answer_key) == 0 &&
		    k->last_b1.num == b1->num && k->last_b1.szx == b1->szx &&
		    k->last_len == rq->len &&
		    (rq->len == 0 || memcmp(k->last_data, rq->data, rq->len) == 0))
			return &k->a;
	return NULL;
}

/* One block of a body in more than one block. */
static int feed_block(struct bw_pool *pool, struct bw_session *s,
		       const struct bw_req *rq, const struct bw_block *b1,
		       int b2_szx, struct bw_out *out)
{
	const size_t bs = bw_size(b1->szx);
	const size_t off = (size_t)b1->num * bs;
	struct bw_xfer *x = xfer_find(s, rq->key);

	if (!b1->m)
		echo(out, b1); /* the answer to a last block, even an error (E5) */
	if (b1->m ? rq->len != bs : rq->len > bs)
		return fail(out, EST_CODE(4, 0), b1->m ?
			    "Block1 payload is not the block size" :
			    "last Block1 payload larger than the block size");
	if (!x && !b1->m && (out->answer = repeat_of(s, rq, b1))) {
		out->verdict = BW_REPEAT;
		return 0;
	}
	if (off + rq->len > pool->lim.max_body) {
		if (x)
			xfer_free(pool, s, x);
		return too_large(pool, out);
	}
	if (b1->num == 0) {
		if (x)
			xfer_free(pool, s, x);
		if (!(x = xfer_new(pool, s, rq->key, rq->now)))
			return fail(out, EST_CODE(5, 3),
				    "too many block-wise transfers in progress");
	}
	if (!x)
		return fail(out, EST_CODE(4, 8), "missing Block1 block");
	if (off == x->len) {
		int rc = xfer_append(pool, x, rq->data, rq->len);
		if (rc != 0) {
			xfer_free(pool, s, x);
			return fail(out, EST_CODE(5, 3), "busy");
		}
		x->last_off = off;
		x->last_len = rq->len;
	} else if (!(b1->m && off == x->last_off && rq->len == x->last_len &&
		     memcmp(x->buf + off, rq->data, rq->len) == 0)) {
		/* neither the next block nor a repeat of the last one */
		int gap = off > x->len;
		xfer_free(pool, s, x);
		return fail(out, EST_CODE(4, 8), gap ? "missing Block1 block" :
			    "Block1 out of order");
	}
	lru_touch(pool, x, rq->now);
	if (b2_szx >= 0)
		x->b2_szx = b2_szx;
	if (b1->m) {
		out->verdict = BW_MORE;
		out->code = EST_CODE(2, 31);
		echo(out, b1);
		return 0;
	}
	/* last block: hand the buffer over */
	out->verdict = BW_READY;
	out->block2_szx = x->b2_szx;
	out->owned = x->buf;
	out->body = x->buf;
	out->len = x->len;
	pool->bytes -= x->len;
	x->buf = NULL;
	x->len = 0;
	xfer_free(pool, s, x);
	return 0;
}

static int feed(struct bw_pool *pool, struct bw_session *s,
		const struct bw_req *rq, struct bw_out *out)
{
	struct bw_block b1, b2;
	int b2_szx = -1;
	if (rq->block2) {
		if (bw_block_parse(rq->block2, rq->block2_len, &b2) != 0)
			return fail(out, EST_CODE(4, 2), "malformed Block2 option");
		if (b2.szx > BW_SZX_MAX)
			return fail(out, EST_CODE(4, 0), "Block2 SZX 7 is reserved");
		b2_szx = b2.szx;
	}
	if (rq->block1) {
		if (bw_block_parse(rq->block1, rq->block1_len, &b1) != 0)
			return fail(out, EST_CODE(4, 2), "malformed Block1 option");
		if (b1.szx > BW_SZX_MAX) /* RFC 7959 §2.2 */
			return fail(out, EST_CODE(4, 0), "Block1 SZX 7 is reserved");
	}
	if (rq->has_size1 && rq->size1 > pool->lim.max_body)
		return too_large(pool, out);
	if (rq->block1 && (b1.num > 0 || b1.m))
		return feed_block(pool, s, rq, &b1, b2_szx, out);
	/* the whole body in this request */
	if (rq->block1) {
		echo(out, &b1);
		if (rq->len > bw_size(b1.szx))
			return fail(out, EST_CODE(4, 0),
				    "last Block1 payload larger than the block size");
	}
	if (rq->len > pool->lim.max_body)
		return too_large(pool, out);
	out->verdict = BW_READY;
	out->body = rq->data;
	out->len = rq->len;
	out->block2_szx = b2_szx;
	return 0;
}

void bw_feed(struct bw_pool *pool, struct bw_session *s,
	     const struct bw_req *rq, struct bw_out *out)
{
	memset(out, 0, sizeof(*out));
	out->block2_szx = -1;
	expire(pool, s, rq->now);
	feed(pool, s, rq, out);
}

/* ---- kept answers (E6, E8) ---------------------------------------------- */

void bw_answer_clear(struct bw_answer *a)
{
	if (a->payload) {
		explicit_bzero(a->payload, a->len);
		free(a->payload);
	}
	a->payload = NULL;
	a->len = 0;
}

void bw_etag(const struct bw_answer *a, uint8_t out[8])
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const uint8_t head[3] = { a->code, (uint8_t)(a->cf >> 8), (uint8_t)a->cf };

	for (size_t i = 0; i < sizeof(head); i++)
		h = (h ^ head[i]) * 0x100000001b3ULL;
	for (size_t i = 0; i < a->len; i++)
		h = (h ^ a->payload[i]) * 0x100000001b3ULL;
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(h >> (56 - 8 * i));
}

static struct bw_kept *kept_find(struct bw_session *s, const char *key)
{
	for (struct bw_kept *k = s->kept; k; k = k->next)
		if (strcmp(k->key, key) == 0)
			return k;
	return NULL;
}

int bw_keep(struct bw_pool *pool, struct bw_session *s, const char *answer_key,
	    const struct bw_req *last, struct bw_answer *a, time_t now)
{
	struct bw_block b1;
	int has_last = last && last->block1 &&
		       bw_block_parse(last->block1, last->block1_len, &b1) == 0 &&
		       !b1.m && b1.num > 0;
	size_t bytes = a->len + (has_last ? last->len : 0);
	struct bw_kept *k;

	expire(pool, s, now);
	if ((k = kept_find(s, answer_key)))
		kept_free(pool, s, k);
	if (s->kept && s->nkept >= pool->lim.keep_per_session) {
		struct bw_kept *oldest = s->kept;
		for (k = s->kept; k; k = k->next)
			if (k->born <= oldest->born)
				oldest = k;
		kept_free(pool, s, oldest);
	}
	if (pool->lim.keep_per_session == 0 ||
	    pool->kept_bytes + bytes > pool->lim.keep_total_bytes)
		return -ENOSPC;
	if (!(k = calloc(1, sizeof(*k))) || !(k->key = strdup(answer_key)) ||
	    (has_last && last->len && !(k->last_data = malloc(last->len)))) {
		if (k)
			free(k->key);
		free(k);
		return -ENOMEM;
	}
	if (has_last) {
		k->has_last = 1;
		k->last_b1 = b1;
		k->last_len = last->len;
		if (last->len)
			memcpy(k->last_data, last->data, last->len);
	}
	bw_etag(a, a->etag);
	k->a = *a;
	a->payload = NULL;
	k->bytes = bytes;
	k->born = now;
	k->next = s->kept;
	s->kept = k;
	s->nkept++;
	pool->kept++;
	pool->kept_bytes += bytes;
	return 0;
}

const struct bw_answer *bw_find(struct bw_pool *pool, struct bw_session *s,
				const char *answer_key, time_t now)
{
	expire(pool, s, now);
	struct bw_kept *k = kept_find(s, answer_key);

	return k ? &k->a : NULL;
}

void bw_expire_session(struct bw_pool *pool, struct bw_session *s, time_t now)
{
	expire(pool, s, now);
}

void bw_session_clear(struct bw_pool *pool, struct bw_session *s)
{
	while (s->xfers)
		xfer_free(pool, s, s->xfers);
	while (s->kept)
		kept_free(pool, s, s->kept);
}

/* ---- Block2 (RFC 7959 §2.4) --------------------------------------------- */

int bw_block2(size_t len, const struct bw_block *req, int pref_szx,
	      size_t room, struct bw_slice *out)
{
	int want = req ? req->szx : pref_szx >= 0 ? pref_szx : BW_SZX_MAX;

	memset(out, 0, sizeof(*out));
	if (want > BW_SZX_MAX)
		return -EINVAL;
	if (!req && pref_szx < 0 && len <= room) {
		out->n = len; /* the whole answer in one message */
		return 0;
	}
	if (room < bw_size(0))
		return -ENOSPC;
	uint8_t szx = (uint8_t)want;
	while (szx > 0 && bw_size(szx) > room)
		szx--;
	/* a smaller size than asked: the same offset in smaller blocks */
	uint64_t off = req ? (uint64_t)req->num * bw_size(req->szx) : 0;
	if (off && off >= len)
		return -ERANGE;
	if (off / bw_size(szx) > 0xfffff)
		return -ERANGE;
	out->block = 1;
	out->off = (size_t)off;
	out->n = len - out->off < bw_size(szx) ? len - out->off : bw_size(szx);
	out->b2.num = (uint32_t)(off / bw_size(szx));
	out->b2.szx = szx;
	out->b2.m = out->off + out->n < len;
	return 0;
}
