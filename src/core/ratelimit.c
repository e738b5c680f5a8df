/* ratelimit.c - token buckets per client (see ratelimit.h).
 *
 * Units: one request costs 60000 units; a bucket gains per_minute units per
 * millisecond and holds at most per_minute requests, so all arithmetic is
 * integer and exact.
 */
#include "core/ratelimit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define COST ESTGW_RATE_COST /* units per request: ms per minute */
#define KEY_MAX 256

struct bucket {
	char key[KEY_MAX]; /* "" when the slot is free */
	uint64_t units;
	uint64_t last_ms;
};

struct estgw_rate {
	uint32_t per_minute;
	size_t n;
	struct bucket *b;
};

struct estgw_rate *estgw_rate_new(uint32_t per_minute, size_t max_clients)
{
	struct estgw_rate *r;

	if (!per_minute || !max_clients)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->b = calloc(max_clients, sizeof(*r->b));
	if (!r->b) {
		free(r);
		return NULL;
	}
	r->per_minute = per_minute;
	r->n = max_clients;
	return r;
}

void estgw_rate_free(struct estgw_rate *r)
{
	if (!r)
		return;
	free(r->b);
	free(r);
}

void estgw_rate_set(struct estgw_rate *r, uint32_t per_minute)
{
	const uint64_t cap = (uint64_t)per_minute * COST;

	if (!r || !per_minute)
		return;
	r->per_minute = per_minute;
	for (size_t i = 0; i < r->n; i++)
		if (r->b[i].units > cap)
			r->b[i].units = cap;
}

/** The client's bucket, or the least recently used one made new for it. */
static struct bucket *find(struct estgw_rate *r, const char *client,
			   uint64_t now_ms)
{
	struct bucket *lru = &r->b[0];

	for (size_t i = 0; i < r->n; i++) {
		struct bucket *b = &r->b[i];
		if (b->key[0] && strncmp(b->key, client, KEY_MAX - 1) == 0)
			return b;
		if (!b->key[0] || (lru->key[0] && b->last_ms < lru->last_ms))
			lru = b;
	}
	strncpy(lru->key, client, KEY_MAX - 1);
	lru->key[KEY_MAX - 1] = '\0';
	if (!lru->key[0])
		lru->key[0] = '-';
	lru->units = (uint64_t)r->per_minute * COST; /* a new client: full */
	lru->last_ms = now_ms;
	return lru;
}

int estgw_rate_take(struct estgw_rate *r, const char *client, uint64_t now_ms,
		    uint32_t *retry_s)
{
	const uint64_t cap = (uint64_t)r->per_minute * COST;
	struct bucket *b = find(r, client ? client : "-", now_ms);

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
		return 0;
	}
	uint64_t wait_ms = (COST - b->units + r->per_minute - 1) / r->per_minute;
	*retry_s = (uint32_t)((wait_ms + 999) / 1000);
	if (*retry_s == 0)
		*retry_s = 1;
	return -EBUSY;
}

void estgw_rate_sync(struct estgw_rate *r, const char *client, uint64_t units)
{
	const uint64_t cap = (uint64_t)r->per_minute * COST;

	if (!client || !*client)
		client = "-";
	for (size_t i = 0; i < r->n; i++) {
		struct bucket *b = &r->b[i];
		if (b->key[0] && strncmp(b->key, client, KEY_MAX - 1) == 0) {
			b->units = units < cap ? units : cap;
			return;
		}
	}
}
