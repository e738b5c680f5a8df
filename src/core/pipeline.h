/* pipeline.h - every request, from any transport, through the same steps.
 *
 * Owns: the order of the steps each request goes through, for EST and
 * cBRSKI alike (G9), and each step's refusal:
 *   1. open       5.03 + Max-Age while shutting down (D1)
 *   2. identity   4.01 without an authenticated client certificate (G2)
 *   3. route      4.04: EST paths (translate.c's table), cBRSKI rv/vs/es
 *                 and /.well-known/core (the table in pipeline.c; H1, A3)
 *   4. method     4.05 (A6)
 *   5. CF         4.15 (B2; H1, H3)
 *   6. Accept     4.06 (B3; H1)
 *   7. limit      4.29 + Max-Age over [server] rate_limit, one bucket per
 *                 client certificate subject for every path (RFC 8516, G9)
 *   -- the transport reassembles the body (blockwise.c) --
 *   8. policy     4.01 / 4.03 / 4.00 for EST operations (policy.c; G2-G4)
 *   9. dispatch   proxy.c (EST), brski.c (cBRSKI), or the discovery
 *                 listing (translate.c's est_link_format)
 * and what one target must learn from another's answers (a certificate
 * issued by sen/sren is told to brski.c for the es log line).
 * Steps 1-7 are pipeline_admit (every message of a request), 8-9
 * pipeline_dispatch (once, with the whole body).
 * Must not: include libcoap or any transport, read the clock, keep
 * per-request state (the transport's record holds the pl_job), or write the
 * per-request log line (the transport does, when its answer is sent). The
 * unit tests link it with fake proxy.c and brski.c entry points
 * (tests/unit/test_pipeline.c).
 */
#ifndef ESTGW_PIPELINE_H
#define ESTGW_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/brski.h"
#include "estgw/config.h"
#include "estgw/translate.h"
#include "core/policy.h"
#include "core/proxy.h"

struct pipeline;

#define PL_MAX_SEGS 8    /**< Uri-Path segments looked at; more: 4.04 */
#define PL_MAX_QUERIES 8 /**< Uri-Query values looked at */

/** Who asks: what the transport's session knows about its peer. */
struct pl_client {
	const char *name;          /**< client certificate subject: the rate-limit key */
	int authenticated;         /**< the session verified a client certificate */
	const uint8_t *cert;       /**< that certificate (DER), for policy and cBRSKI */
	size_t cert_len;
	enum estgw_client_kind kind;
	int cert_expired;
	int mfr;                   /**< cBRSKI manufacturer line (brski_request.mfr) */
	const uint8_t *tls_unique; /**< RFC 5929 tls-unique, NULL: unavailable (G4) */
	size_t tls_unique_len;
	const char *session;       /**< the session as written in cBRSKI log lines */
};

/** One request as the transport decoded it. */
struct pl_request {
	int method;                 /**< CoAP method code (RFC 7252 §12.1.1) */
	struct est_slice segs[PL_MAX_SEGS];
	size_t nseg;                /**< all Uri-Path segments, even beyond PL_MAX_SEGS */
	struct est_slice queries[PL_MAX_QUERIES];
	size_t nquery;
	int cf, accept;             /**< EST_CF_NONE when absent */
	int continuation;           /**< a later Block1 block (NUM > 0): checked, not counted */
	uint64_t now_ms;            /**< any monotonic clock, for the rate limit */
	const struct pl_client *client;
	const char *local_ip;       /**< numeric address the request came to, or NULL (H6) */
};

enum pl_target { PL_EST, PL_BRSKI, PL_DISCOVERY, PL_X8295 };

/** Where an admitted request goes. */
struct pl_route {
	enum pl_target target;
	struct est_route est; /**< PL_EST: operation and label */
	int resp_cf;          /**< PL_EST: Content-Format of the success answer */
	enum brski_res res;   /**< PL_BRSKI */
	struct est_x_route x; /**< PL_X8295: RFC 8295 operation, label, tail (I1);
			           for the skg/skc variants est is set too */
};

/** One request handed to a target, in the transport's own record (the
 *  pipeline allocates nothing per request). Set by pipeline_dispatch. */
struct pl_job {
	struct pipeline *pl;
	enum pl_target target;
	int enroll;              /**< sen/sren: an issued certificate goes to brski.c */
	struct xchg_wait *wait;  /**< PL_EST pending */
	struct xchg_wait *bwait; /**< PL_BRSKI pending */
	proxy_done_fn fn;        /**< the transport's callback */
	void *arg;
};

/** A pipeline for @p cfg, dispatching EST requests to @p px. NULL on
 *  allocation failure. @p cfg must outlive it or the next reload. */
struct pipeline *pipeline_new(const struct estgw_config *cfg, struct proxy *px);
void pipeline_free(struct pipeline *pl);

/** Route /.well-known/brski/{rv,vs,es} to @p b (NULL: 4.04) and list
 *  them in discovery (H1). */
void pipeline_set_brski(struct pipeline *pl, struct brski *b);

/** Use @p cfg from now on (SIGHUP): roots, policy, the rate (what a client
 *  has spent stays spent, up to the new burst; 0 drops the limiter, a limit
 *  set again starts from full buckets). -ENOMEM: nothing changed. */
int pipeline_reload(struct pipeline *pl, const struct estgw_config *cfg);

/** Shutting down: every new request is answered 5.03 + Max-Age. */
void pipeline_quiesce(struct pipeline *pl);

/** Steps 1-7 for one message of @p rq. 0: admitted, *route says where it
 *  goes. 1: refused, *out holds the answer (the receiver owns out->resp;
 *  out->note is for the log line). -ENOMEM. */
int pipeline_admit(struct pipeline *pl, const struct pl_request *rq,
		   struct pl_route *route, struct proxy_outcome *out);

/** Steps 8-9 for an admitted @p rq whose body (@p body, @p len) is
 *  complete. 1: answered at once (*now, the receiver owns now->resp; @p fn
 *  never runs). 0: pending, @p fn (@p arg) runs once from the loop with
 *  the answer; cancel with pipeline_cancel(@p job). -ENOMEM. */
int pipeline_dispatch(struct pipeline *pl, const struct pl_request *rq,
		      const struct pl_route *route, const uint8_t *body,
		      size_t len, struct pl_job *job, proxy_done_fn fn,
		      void *arg, struct proxy_outcome *now);

/** Forget the pending @p job: its callback will not run (the target's
 *  exchange may go on for others). A job not pending is left alone. */
void pipeline_cancel(struct pl_job *job);

#endif
