/* proxy.h - EST requests from devices to the EST server and back.
 *
 * Owns: one job per upstream exchange, with every device request waiting on
 * it (identical requests from the same client coalesce onto one exchange,
 * J1); the bound on concurrent exchanges and the queue behind it; the
 * answers kept for devices that resend an identical CSR; and the /cacerts
 * cache answered at once (libcoap clients before 4.3.5 lose multi-block
 * separate responses). Knows neither libcoap nor curl.
 */
#ifndef ESTGW_PROXY_H
#define ESTGW_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/config.h"
#include "estgw/translate.h"

struct event_base;
struct upstream;
struct proxy;
struct proxy_wait;

/** What the CoAP side sends back, plus what the log line needs. */
struct proxy_outcome {
	struct est_coap_resp resp; /**< owned by the receiver */
	long upstream_status;      /**< HTTP status, 0 when none came */
	char note[128];            /**< "cache", "kept", curl's error text ... */
};

/** Called once from the loop when a pending request is answered. The
 *  receiver owns out->resp (est_coap_resp_free). */
typedef void (*proxy_done_fn)(void *arg, struct proxy_outcome *out);

/** One device request. */
struct proxy_request {
	const struct est_route *route;
	int resp_cf;          /**< from est_check_request */
	const char *client;   /**< authenticated client identity */
	const uint8_t *body;  /**< CSR (POST operations) */
	size_t len;
};

struct proxy *proxy_new(struct event_base *base, struct upstream *up,
			const struct estgw_config *cfg);
void proxy_free(struct proxy *px);

/** Use @p cfg from now on (SIGHUP): URL, limits, refresh period. Jobs in
 *  flight keep what they started with. */
void proxy_reload(struct proxy *px, const struct estgw_config *cfg);

/** Start or join the upstream work for @p rq. Returns 1 when answered at
 *  once (*now filled, @p fn never called), 0 when pending (@p fn runs later;
 *  *wait set for proxy_cancel), or a negative errno. */
int proxy_submit(struct proxy *px, const struct proxy_request *rq,
		 proxy_done_fn fn, void *arg, struct proxy_wait **wait,
		 struct proxy_outcome *now);

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
 *  is answered 5.03 + Max-Age through @p fn the same way (D2), except
 *  skg/skc, whose key is not kept: they wait for the exchange. */
void proxy_cancel(struct proxy_wait *w);

#endif
