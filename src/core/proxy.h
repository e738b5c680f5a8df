/* proxy.h - EST requests from devices to the EST server and back.
 *
 * Owns: the EST use of the exchange engine (exchange.h): the request key
 * (identical requests from the same client coalesce onto one exchange,
 * J1), the upstream HTTP request, the mapping of each answer for each
 * waiting device (translate.c), which answers are kept for devices that
 * resend an identical CSR; and the /cacerts cache answered at once
 * (libcoap clients before 4.3.5 lose multi-block separate responses).
 * Knows neither libcoap nor curl.
 */
#ifndef ESTGW_PROXY_H
#define ESTGW_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/config.h"
#include "estgw/rfc8295.h"
#include "estgw/translate.h"
#include "core/exchange.h" /* struct proxy_outcome, proxy_done_fn, xchg_wait */

struct event_base;
struct upstream;
struct proxy;

/** What proxy_submit (and brski_submit) did with a request: every call
 *  ends in exactly one of these, and no callback runs inside the call. */
enum proxy_rc {
	/** Waiting upstream: @p fn runs exactly once, later, from the loop
	 *  (the answer, or 5.03 + Max-Age after answer_within), unless
	 *  proxy_cancel(*wait) comes first. */
	PROXY_PENDING = 0,
	/** Answered now (a cached or kept answer, a local error, busy, out
	 *  of memory): *now is filled, the receiver owns now->resp, @p fn
	 *  never runs and *wait is NULL. */
	PROXY_ANSWERED = 1,
};

/** One device request. */
struct proxy_request {
	const struct est_route *route;
	int resp_cf;          /**< from est_check_request */
	const char *client;   /**< authenticated client identity */
	const uint8_t *body;  /**< CSR (POST operations) */
	size_t len;
};

/** One device request for an RFC 8295 operation (I1-I3). */
struct proxy_x_request {
	const struct est_x_route *route; /**< operation, label */
	int req_cf, resp_cf;             /**< from est_x_check_request */
	const char *client;
	const struct est_slice *tail;    /**< extra path segments (pal, eecerts, crls) */
	size_t ntail;
	const struct est_slice *query;   /**< Uri-Query values, forwarded */
	size_t nquery;
	const char *root;                /**< the EST root the device used (PAL URIs) */
	const uint8_t *body;             /**< a /return's DER, or the CSR (skg variants) */
	size_t len;
};

/** proxy_submit for an RFC 8295 operation: the same engine, keys, kept
 *  answers (GETs for [rfc8295] keep seconds, the skg variants for
 *  keep_issued) and 5.03 + Max-Age after answer_within (D2). A GET answer
 *  over [rfc8295] separate_max that would go out as a separate response
 *  is kept and answered 5.03 + Max-Age 1 instead: the retry is answered
 *  at once, in the ACK, and its Block2 follow-ups from the block-wise
 *  store (libcoap clients before 4.3.5 lose separate multi-block answers). */
enum proxy_rc proxy_submit_8295(struct proxy *px, const struct proxy_x_request *rq,
				proxy_done_fn fn, void *arg, struct xchg_wait **wait,
				struct proxy_outcome *now);

struct proxy *proxy_new(struct event_base *base, struct upstream *up,
			const struct estgw_config *cfg);
void proxy_free(struct proxy *px);

/** Use @p cfg from now on (SIGHUP): URL, limits, refresh period. Jobs in
 *  flight keep what they started with. */
void proxy_reload(struct proxy *px, const struct estgw_config *cfg);

/** Start or join the upstream work for @p rq (see enum proxy_rc). */
enum proxy_rc proxy_submit(struct proxy *px, const struct proxy_request *rq,
			   proxy_done_fn fn, void *arg, struct xchg_wait **wait,
			   struct proxy_outcome *now);

/** Share kept answers and in-flight claims through @p st ([cluster],
 *  K1); NULL (the default): this instance alone (K2). Before requests. */
void proxy_set_store(struct proxy *px, const struct store_if *st);
/** The store set, or NULL (the pipeline's shared rate limit uses it). */
const struct store_if *proxy_store(const struct proxy *px);

/** True while the first /cacerts fetch (the /crts cache) or the start-up
 *  /csrattrs probe is in flight. */
int proxy_warming(const struct proxy *px);

/** The resources discovery leaves out, as (1u << EST_OP_x) bits: att or
 *  skg/skc after the EST server answered 404/501 for the unlabeled
 *  /csrattrs or /serverkeygen, until it answers otherwise (A3). */
unsigned proxy_ops_missing(const struct proxy *px);

/** Forget a pending request: its callback will not run. The upstream
 *  exchange goes on; a certificate it brings is kept (keep_issued). A
 *  pending request with no answer after [upstream] answer_within seconds
 *  is answered 5.03 + Max-Age through @p fn the same way (D2); skg/skc
 *  answers are kept too, with registrar keygen (F4) the key estgw made. */
void proxy_cancel(struct xchg_wait *w);

#endif
