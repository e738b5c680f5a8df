/* ratelimit.c - token buckets per client (see ratelimit.h).
 *
 * Units: one request costs 60000 units; a bucket gains per_minute units per
 * millisecond and holds at most per_minute requests, so all arithmetic is
 * integer and exact. The table is a hash of names with a use list, so a
 * request costs the same with 4 or 4096 clients tracked, and memory grows
 * with the clients seen, not with the bound.
 */
#include "core/ratelimit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define COST ESTGW_RATE_COST /* units per request: ms per minute */
#define KEY_MAX 256 /* a name is told apart by its first KEY_MAX - 1 bytes */

/* One client's bucket: in a hash chain, and in the use list (most recent
 * first), which gives the least recently used bucket when the table is
 * full. Allocated when its client first comes, with its name. */
struct bucket {
	struct bucket *hnext;
	struct bucket *prev, *next;
	uint64_t units;
	uint64_t last_ms;
	uint64_t shared;  /* requests sent to the cluster's bucket (K1) */
	uint32_t hash;
	char key[];
};

struct estgw_rate {
	uint32_t per_minute;
	size_t max, n;          /* buckets allowed, in use */
	size_t mask;            /* hash heads - 1 */
	struct bucket **head;
	struct bucket *first, *last; /* the use list */
};

static uint32_t name_hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

struct estgw_rate *estgw_rate_new(uint32_t per_minute, size_t max_clients)
{
	struct estgw_rate *r;
	size_t heads = 16;

	if (!per_minute || !max_clients)
		return NULL;
	while (heads < max_clients / 2 && heads < ((size_t)1 << 20))
		heads <<= 1;
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->head = calloc(heads, sizeof(*r->head));
	if (!r->head) {
		free(r);
		return NULL;
	}
	r->per_minute = per_minute;
	r->max = max_clients;
	r->mask = heads - 1;
	return r;
}

void estgw_rate_free(struct estgw_rate *r)
{
	if (!r)
		return;
	for (struct bucket *b = r->first, *next; b; b = next) {
		next = b->next;
		free(b);
	}
	free(r->head);
	free(r);
}

void estgw_rate_set(struct estgw_rate *r, uint32_t per_minute)
{
	const uint64_t cap = (uint64_t)per_minute * COST;

	if (!r || !per_minute)
		return;
	r->per_minute = per_minute;
	for (struct bucket *b = r->first; b; b = b->next)
		if (b->units > cap)
			b->units = cap;
}

static void unlink_use(struct estgw_rate *r, struct bucket *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		r->first = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		r->last = b->prev;
}

static void push_use(struct estgw_rate *r, struct bucket *b)
{
	b->prev = NULL;
	b->next = r->first;
	if (r->first)
		r->first->prev = b;
	else
		r->last = b;
	r->first = b;
}

static void unlink_hash(struct estgw_rate *r, struct bucket *b)
{
	for (struct bucket **pp = &r->head[b->hash & r->mask]; *pp; pp = &(*pp)->hnext)
		if (*pp == b) {
			*pp = b->hnext;
			return;
		}
}

/* The name a client is counted under: at most KEY_MAX - 1 bytes, "-" for
 * none. */
static const char *key_of(const char *client, size_t *len)
{
	if (!client || !*client)
		client = "-";
	*len = strnlen(client, KEY_MAX - 1);
	return client;
}

static struct bucket *lookup(struct estgw_rate *r, const char *key, size_t len,
			     uint32_t h)
{
	for (struct bucket *b = r->head[h & r->mask]; b; b = b->hnext)
		if (b->hash == h && strncmp(b->key, key, len) == 0 && !b->key[len])
			return b;
	return NULL;
}

/** The client's bucket, made (full) for a new client; when the table is
 *  full the least recently used bucket goes. NULL: out of memory. */
static struct bucket *find(struct estgw_rate *r, const char *client,
			   uint64_t now_ms)
{
	size_t len;
	const char *key = key_of(client, &len);
	uint32_t h = name_hash(key, len);
	struct bucket *b = lookup(r, key, len, h);

	if (b) {
		unlink_use(r, b);
		push_use(r, b);
		return b;
	}
	if (r->n >= r->max && r->last) {
		struct bucket *old = r->last;
		unlink_use(r, old);
		unlink_hash(r, old);
		free(old);
		r->n--;
	}
	b = malloc(sizeof(*b) + len + 1);
	if (!b)
		return NULL;
	memcpy(b->key, key, len);
	b->key[len] = '\0';
	b->hash = h;
	b->units = (uint64_t)r->per_minute * COST; /* a new client: full */
	b->last_ms = now_ms;
	b->shared = 0;
	b->hnext = r->head[h & r->mask];
	r->head[h & r->mask] = b;
	push_use(r, b);
	r->n++;
	return b;
}

int estgw_rate_take_shared(struct estgw_rate *r, const char *client, uint64_t now_ms,
			   uint32_t *retry_s, uint64_t *seq)
{
	const uint64_t cap = (uint64_t)r->per_minute * COST;
	struct bucket *b = find(r, client, now_ms);

	if (!b) { /* out of memory: refused, as if over the limit */
		*retry_s = 1;
		return -EBUSY;
	}

	if (now_ms > b->last_ms) {
		uint64_t dt = now_ms - b->last_ms;
		/* dt * per_minute cannot overflow before the cap is reached */
		b->units = dt >= COST ? cap : b->units + dt * r->per_minute;
		if (b->units > cap)
			b->units = cap;
		b->last_ms = now_ms; /* never backwards: no free refill */
	}
	if (b->units >= COST) {
		b->units -= COST;
		if (seq)
			*seq = ++b->shared;
		return 0;
	}
	uint64_t wait_ms = (COST - b->units + r->per_minute - 1) / r->per_minute;
	*retry_s = (uint32_t)((wait_ms + 999) / 1000);
	if (*retry_s == 0)
		*retry_s = 1;
	return -EBUSY;
}

int estgw_rate_take(struct estgw_rate *r, const char *client, uint64_t now_ms,
		    uint32_t *retry_s)
{
	return estgw_rate_take_shared(r, client, now_ms, retry_s, NULL);
}

static struct bucket *tracked(struct estgw_rate *r, const char *client)
{
	size_t len;
	const char *key = key_of(client, &len);

	return lookup(r, key, len, name_hash(key, len));
}

void estgw_rate_sync(struct estgw_rate *r, const char *client, uint64_t units,
		     uint64_t seq)
{
	const uint64_t cap = (uint64_t)r->per_minute * COST;
	struct bucket *b = tracked(r, client);
	uint64_t later;

	if (!b)
		return;
	/* taken here after @p seq: not in @p units yet (a bucket evicted and
	 * made again counts from 0, so a larger seq means none) */
	later = b->shared > seq ? b->shared - seq : 0;
	if (units > cap)
		units = cap;
	b->units = later > units / COST ? 0 : units - later * COST;
}
