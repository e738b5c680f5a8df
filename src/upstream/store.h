/* store.h - the shared store of several instances ([cluster], K1): what
 * core asks of it, as a vtable (store_redis.c on hiredis in the daemon,
 * fakes in the unit tests). Without [cluster] there is no store and core
 * runs on its own memory alone (K2).
 *
 * Every operation is asynchronous on the loop and bounded: a callback runs
 * once, later, from the loop, never inside the call, and at the latest
 * [cluster] store_timeout ms after it (STORE_DOWN when the store did not
 * answer in time). An operation that returns NULL did nothing: the store is
 * down now, and the caller goes on with its own state at once.
 * Must not: know CoAP, EST or BRSKI; core never sees the wire format, the
 * key names or the sealing of answers.
 */
#ifndef ESTGW_STORE_H
#define ESTGW_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_KEY_LEN 32 /* == XCHG_KEY_LEN: a request key (SHA-256) */

struct estgw_store;
struct store_op;

/** What the store says about a request key. */
enum store_verdict {
	STORE_ANSWER,  /**< an answer another instance (or this one) kept */
	STORE_CLAIMED, /**< no answer; this instance holds the claim now */
	STORE_BUSY,    /**< another instance holds the claim (in flight) */
	STORE_DOWN,    /**< no verdict in time: go on with local state */
};

/** An answer in the store (the upstream's HTTP answer, opened). */
struct store_answer {
	long status;
	const char *content_type; /**< NULL: none */
	const uint8_t *body;
	size_t len;
	uint32_t ttl; /**< seconds it is still kept */
};

/** @p a is valid during the call only (STORE_ANSWER), else NULL. */
typedef void (*store_claim_fn)(void *arg, enum store_verdict v,
			       const struct store_answer *a);
/** The client's shared bucket once it counted this instance's requests
 *  up to the one numbered @p seq: @p units left, in ratelimit.c's units
 *  (60000 a request). */
typedef void (*store_rate_fn)(void *arg, const char *client, uint64_t units,
			      uint64_t seq);

struct store_ops {
	/** The kept answer for @p key, or else claim it for this instance
	 *  (one instance calls upstream for a key, K1). A claim held is
	 *  refreshed by the store until publish; a dead holder's claim
	 *  expires after [cluster] claim_ttl and the next asker takes it. */
	struct store_op *(*claim)(struct estgw_store *s,
				  const uint8_t key[STORE_KEY_LEN],
				  store_claim_fn fn, void *arg);
	/** The callback of @p op will not run. */
	void (*cancel)(struct store_op *op);
	/** Keep @p a under @p key (sealed) for a->ttl s, and release this
	 *  instance's claim of it; @p a NULL: release only. No callback. */
	void (*publish)(struct estgw_store *s, const uint8_t key[STORE_KEY_LEN],
			const struct store_answer *a);
	/** One request of @p client (its number @p seq) against the shared
	 *  bucket of @p per_minute; @p fn (may be NULL) gets what is left.
	 *  Requests of one client may be counted together: the answer then
	 *  names the last one. */
	void (*rate)(struct estgw_store *s, const char *client,
		     uint32_t per_minute, uint64_t seq, store_rate_fn fn, void *arg);
	/** Append a record (field, value pairs) to the telemetry stream. */
	void (*telemetry)(struct estgw_store *s, const char *const *fields,
			  size_t nfields);
};

/** A store as core holds it; NULL: no [cluster] (K2). */
struct store_if {
	const struct store_ops *ops;
	struct estgw_store *s;
};

#endif
