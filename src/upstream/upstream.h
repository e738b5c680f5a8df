/* upstream.h - HTTPS exchanges with the EST server: libcurl multi on libevent.
 *
 * Owns: the curl multi handle, its sockets and timer on the event_base, TLS
 * settings (trust, RA client certificate), limits and error classification.
 * Must not: know EST semantics (translate.c does) or libcoap.
 */
#ifndef ESTGW_UPSTREAM_H
#define ESTGW_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/config.h"
#include "estgw/translate.h"

struct event_base;
struct upstream;
struct upstream_xfer;

/** The outcome of one exchange; valid only during the callback. */
struct upstream_result {
	enum est_upstream_err err; /**< EST_UP_OK when an HTTP answer came */
	long status;
	const char *content_type; /**< NULL when absent */
	const char *retry_after;  /**< NULL when absent */
	const uint8_t *body;
	size_t body_len;
	const char *errmsg;       /**< curl's text on transport errors */
	double seconds;           /**< total time of the exchange */
	int reused;               /**< the connection was reused */
};

typedef void (*upstream_cb)(void *arg, const struct upstream_result *r);

/** Create the curl multi on @p base with the [upstream] settings. */
struct upstream *upstream_new(struct event_base *base,
			      const struct estgw_config *cfg);
void upstream_free(struct upstream *up);

/** libcurl's process-wide set-up and tear-down (main calls them once,
 *  before any upstream_new and after the last upstream_free). */
int upstream_global_init(void);
void upstream_global_cleanup(void);

/** The libcurl version in use, for --version. */
const char *upstream_lib_version(void);

/** Use @p cfg for new exchanges (SIGHUP): its trust, RA certificate, key
 *  and limits; connections opened before are not reused. Transfers in
 *  flight finish with what they started with. */
void upstream_reload(struct upstream *up, const struct estgw_config *cfg);

/** Start @p req; @p cb runs once, later, from the loop, never from inside
 *  this call. While it runs the callback may cancel this transfer (a
 *  no-op: it is freed when the callback returns) or any other, and start
 *  new ones; the result is valid only during the callback. Returns NULL
 *  when the transfer could not even be set up. */
struct upstream_xfer *upstream_send(struct upstream *up,
				    const struct est_http_req *req,
				    upstream_cb cb, void *arg);

/** Per-request settings for HTTPS peers other than the EST server (the
 *  cBRSKI MASA, H2). NULL / 0 fields keep the [upstream] value, except
 *  that no Content-Transfer-Encoding header is sent. */
struct upstream_opts {
	const char *trust;       /**< CA file for the server certificate */
	const char *certificate; /**< TLS client certificate (PEM) */
	const char *private_key;
	const char *accept;      /**< Accept header value, NULL: none */
	uint32_t timeout;        /**< seconds for the exchange */
	uint32_t max_response;   /**< bytes accepted, 0: [upstream] max_response */
};

/** upstream_send() with @p o applied. */
struct upstream_xfer *upstream_send_opts(struct upstream *up,
					 const struct est_http_req *req,
					 const struct upstream_opts *o,
					 upstream_cb cb, void *arg);

/** Abort a transfer; its callback will not run. From inside the
 *  transfer's own callback: nothing to do (it is freed afterwards). */
void upstream_cancel(struct upstream_xfer *x);

/** Transfers currently in flight. */
size_t upstream_in_flight(const struct upstream *up);

#endif
