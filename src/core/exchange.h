/* exchange.h - the exchange engine: one upstream exchange per request key.
 *
 * Owns: the exchange object and its states (below); the device requests
 * waiting on it (identical requests coalesce onto the exchange in flight,
 * J1); the concurrency limit and the bounded FIFO queue behind it, drained
 * by a zero-timeout loop event, never by recursion; the answer_within
 * deadline after which a waiter gets 5.03 + Max-Age while its exchange
 * goes on (RFC 9148 §4.7, D2); the kept answers (by key, with expiry and a
 * bound); one completion path with a guard, so that any callback may
 * cancel its waiter, abort its exchange or free the engine.
 * Used by proxy.c (EST) and brski.c (the cBRSKI MASA exchange).
 * Must not: know libcoap, curl, EST or BRSKI. The transport is a vtable
 * (upstream.c's functions in the daemon, a fake in the unit tests); the
 * owner maps answers to CoAP through its hooks.
 *
 * Life of an exchange:
 *
 *   RECEIVING --place--> QUEUED --slot--> UPSTREAM --answer--> ANSWERED
 *       |                  |                 |                    |
 *       +------------------+---abort---------+--> CANCELLED       +--> freed
 *
 * RECEIVING: made by its owner (xchg_new), findable by key, its request
 * still being built. xchg_place runs it (UPSTREAM) or queues it (QUEUED),
 * or refuses it (over the limits, or the transport cannot start it: the
 * exchange is freed). ANSWERED: the answer came; the owner's answered hook
 * ran, each waiter is being answered. CANCELLED: given up (xchg_abort,
 * the engine freed); its waiters are dropped without a call.
 *
 * A waiter ends exactly once: by its callback (the answer, or 5.03 at the
 * deadline) or by xchg_cancel before that. Callbacks run from the loop,
 * never from inside xchg_place or xchg_wait.
 *
 * With a shared store (xchg_set_store, [cluster], K1), a shared exchange
 * (xchg_share) asks the store first when placed:
 *
 *   RECEIVING --place--> STORE --answer--> ANSWERED (kept here too; no
 *                          |                upstream call, no answered hook)
 *                          +--claimed, or no verdict in time--> QUEUED/UPSTREAM
 *                          +--another instance's claim--> REMOTE --poll--> STORE
 *
 * In REMOTE the exchange asks again every XCHG_POLL_MS until the other
 * instance publishes its answer, or its claim goes (released after an
 * answer that is not kept, or expired after a kill: claim_ttl), and then
 * takes the claim itself. Its waiters get 5.03 + Max-Age at answer_within as
 * always; a REMOTE exchange nobody waits for any more is dropped. An
 * answered exchange publishes what its owner kept (xchg_keep) and releases
 * its claim. The store answers within its own timeout, so no waiter is held
 * longer by it; an exchange the store cannot answer runs on local state.
 */
#ifndef ESTGW_EXCHANGE_H
#define ESTGW_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "estgw/translate.h"
#include "upstream/store.h"
#include "upstream/upstream.h"

struct event_base;
struct xchg_engine;
struct xchg;
struct xchg_wait;

#define XCHG_KEY_LEN 32
#define XCHG_POLL_MS 200 /**< REMOTE: how often the store is asked again */
_Static_assert(XCHG_KEY_LEN == STORE_KEY_LEN, "one request key");

/** What the CoAP side sends back, plus what the log line needs (the
 *  answer to one device request, EST or cBRSKI). */
struct proxy_outcome {
	struct est_coap_resp resp; /**< owned by the receiver */
	long upstream_status;      /**< HTTP status, 0 when none came */
	char note[128];            /**< "cache", "kept", curl's error text ... */
};

/** Called once from the loop when a waiting request is answered. The
 *  receiver owns out->resp (est_coap_resp_free). */
typedef void (*proxy_done_fn)(void *arg, struct proxy_outcome *out);

enum xchg_state {
	XCHG_RECEIVING,
	XCHG_STORE,  /**< asking the shared store (K1): answer, or claim it */
	XCHG_REMOTE, /**< another instance holds the claim: asking again */
	XCHG_QUEUED,
	XCHG_UPSTREAM,
	XCHG_ANSWERED,
	XCHG_CANCELLED,
};

/** The upstream transport. start: @p cb runs later from the loop, never
 *  inside start; NULL when the exchange cannot even be set up. cancel:
 *  the callback will not run. */
struct xchg_transport {
	struct upstream_xfer *(*start)(struct upstream *up,
				       const struct est_http_req *req,
				       const struct upstream_opts *o,
				       upstream_cb cb, void *arg);
	void (*cancel)(struct upstream_xfer *x);
	struct upstream *up;
};

/** The owner's part. */
struct xchg_hooks {
	/** The answer came (or the queued exchange could not be started: an
	 *  EST_UP_PROTOCOL result), before any waiter is answered: log,
	 *  count, cache, keep (xchg_keep). May be NULL. */
	void (*answered)(struct xchg *ex, const struct upstream_result *r);
	/** The outcome for one waiter; @p param is the one given to
	 *  xchg_wait. Must fill @p out. */
	void (*outcome)(struct xchg *ex, int param,
			const struct upstream_result *r,
			struct proxy_outcome *out);
	/** Free the owner's data of an exchange. May be NULL. */
	void (*data_free)(void *data);
};

/** Limits; the engine reads them live (xchg_set_limits). */
struct xchg_limits {
	size_t max_running;        /**< exchanges upstream at once (>= 1) */
	size_t max_queued;         /**< more accepted behind them */
	uint32_t answer_within_ms; /**< 0: waiters wait for the answer */
	uint32_t timeout;          /**< s: the transport's total timeout */
	struct est_xlate_limits age; /**< Max-Age of the deadline's 5.03 */
	size_t max_kept;           /**< kept answers at most (>= 1) */
};

/** A kept answer (copied from an upstream result). */
struct xchg_kept {
	long status;
	char *content_type; /**< NULL when none */
	uint8_t *body;
	size_t len;
	uint8_t *extra;     /**< the owner's data kept beside it, or NULL:
				 secret (a key estgw made), zeroed when dropped */
	size_t extra_len;
	time_t expires;     /**< wall clock */
};

/** Clocks (tests replace them): monotonic milliseconds, wall seconds. */
struct xchg_clock {
	uint64_t (*mono_ms)(void);
	time_t (*wall)(void);
};

struct xchg_engine *xchg_engine_new(struct event_base *base,
				    const struct xchg_transport *t,
				    const struct xchg_hooks *h,
				    const struct xchg_limits *lim);
/** Abort every exchange (no waiter is called) and free the kept answers.
 *  From inside a callback the engine goes when the callback returns. */
void xchg_engine_free(struct xchg_engine *e);
void xchg_set_limits(struct xchg_engine *e, const struct xchg_limits *lim);
void xchg_set_clock(struct xchg_engine *e, const struct xchg_clock *c);

/** Share shared exchanges through @p st from now on (NULL: none, K2). */
void xchg_set_store(struct xchg_engine *e, const struct store_if *st);
/** This exchange's answer is shared: before it goes upstream the store is
 *  asked for a kept answer or the claim (K1). Call in RECEIVING. */
void xchg_share(struct xchg *ex);

/** 1 when a new exchange would be accepted now (run or queued), else 0. */
int xchg_room(const struct xchg_engine *e);
size_t xchg_running(const struct xchg_engine *e);
size_t xchg_queued(const struct xchg_engine *e);

/** The exchange not yet answered for @p key, or NULL. */
struct xchg *xchg_find(struct xchg_engine *e, const uint8_t key[XCHG_KEY_LEN]);

/** A new exchange in RECEIVING, findable under @p key, owning @p data
 *  (freed by the data_free hook with it); @p what names it in log lines.
 *  NULL on -ENOMEM (then @p data is still the caller's). */
struct xchg *xchg_new(struct xchg_engine *e, const uint8_t key[XCHG_KEY_LEN],
		      void *data, const char *what);

/** The request to send, for the owner to fill in RECEIVING (freed with
 *  the exchange, or once the transport has it). */
struct est_http_req *xchg_request(struct xchg *ex);
/** Per-exchange transport settings (copied; strings must outlive it). */
void xchg_set_opts(struct xchg *ex, const struct upstream_opts *o);

void *xchg_data(const struct xchg *ex);
enum xchg_state xchg_state(const struct xchg *ex);
const uint8_t *xchg_key(const struct xchg *ex);

/** Run @p ex now or queue it. 0: UPSTREAM or QUEUED. -EBUSY: running and
 *  queue full; -EIO: the transport could not start it. On an error the
 *  exchange is freed. FIFO: a new exchange never passes a queued one. */
int xchg_place(struct xchg *ex);

/** Wait on @p ex (RECEIVING, QUEUED or UPSTREAM): @p fn runs once from
 *  the loop with the outcome (the outcome hook's, for @p param), or with
 *  5.03 + Max-Age after answer_within. NULL on -ENOMEM. */
struct xchg_wait *xchg_wait(struct xchg *ex, int param, proxy_done_fn fn,
			    void *arg);

/** Forget a waiter: its callback will not run; the exchange goes on. A
 *  no-op from inside the waiter's own callback; NULL is ignored. */
void xchg_cancel(struct xchg_wait *w);

/** Give the exchange up: the transport is cancelled, its waiters are
 *  dropped without a call, it is freed (from inside one of its own
 *  callbacks: once that returns). */
void xchg_abort(struct xchg *ex);

/** Keep the answer @p r under @p key for @p ttl seconds (0: not at all;
 *  an answer already kept stays). The oldest goes past max_kept.
 *  0 or -ENOMEM. */
int xchg_keep(struct xchg_engine *e, const uint8_t key[XCHG_KEY_LEN],
	      const struct upstream_result *r, uint32_t ttl);
/** xchg_keep with @p extra (copied) kept beside the answer: what the owner
 *  needs to rebuild the device's answer, such as the key estgw made. */
int xchg_keep_extra(struct xchg_engine *e, const uint8_t key[XCHG_KEY_LEN],
		    const struct upstream_result *r, uint32_t ttl,
		    const uint8_t *extra, size_t extra_len);
/** The answer kept for @p key and not expired, or NULL. */
const struct xchg_kept *xchg_kept_find(struct xchg_engine *e,
				       const uint8_t key[XCHG_KEY_LEN]);
/** The wall clock the engine uses (for Max-Age from a kept expiry). */
time_t xchg_now(const struct xchg_engine *e);

#endif
