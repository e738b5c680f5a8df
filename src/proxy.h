/* proxy.h - one EST request from a device to the EST server and back.
 *
 * Owns: the request object joining a CoAP exchange (by callback) and an
 * upstream transfer, the /cacerts cache answered at once (RFC 9148 §5 makes
 * /crts frequent; libcoap clients before 4.3.5 lose multi-block separate
 * responses), and the translation calls. Knows neither libcoap nor curl.
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
struct proxy_job;

/** What the CoAP side sends back, plus what the log line needs. */
struct proxy_outcome {
	struct est_coap_resp resp; /**< owned by the receiver */
	long upstream_status;      /**< HTTP status, 0 when none came */
	char note[128];            /**< "cache", curl's error text, ... for the log */
};

/** Called once from the loop when a pending job is answered. The receiver
 *  owns out->resp (est_coap_resp_free). The job is gone after the call. */
typedef void (*proxy_done_fn)(void *arg, struct proxy_outcome *out);

struct proxy *proxy_new(struct event_base *base, struct upstream *up,
			const struct estgw_config *cfg);
void proxy_free(struct proxy *px);

/** Use @p cfg from now on (SIGHUP): URL, limits, refresh period. Jobs in
 *  flight keep what they started with. */
void proxy_reload(struct proxy *px, const struct estgw_config *cfg);

/** Start the upstream work for @p route. Returns 1 when answered at once
 *  (*now filled, @p fn never called), 0 when pending (@p fn runs later,
 *  *job set for proxy_cancel), or a negative errno. */
int proxy_submit(struct proxy *px, const struct est_route *route, int resp_cf,
		 const uint8_t *body, size_t len, proxy_done_fn fn, void *arg,
		 struct proxy_job **job, struct proxy_outcome *now);

/** Forget a pending job: its callback will not run. */
void proxy_cancel(struct proxy_job *job);

#endif
