/* brski.h - estgw as the constrained BRSKI Registrar (section H of
 * docs/conformance.md; docs/brski.md).
 *
 * Owns: /.well-known/brski/{rv,vs,es} semantics: the pledge voucher request
 * checks against the DTLS client certificate, the Registrar voucher request
 * (built, ES256-signed), the MASA exchange over upstream.c's curl multi (one
 * per PVR hash: resends join it or get the kept answer), the voucher handed
 * back with its unprotected header stripped; vs/es validation, log line and
 * counters. Answers go through the same proxy_done_fn as proxy.c.
 * Must not: include libcoap, curl or mbedTLS (brski_pki.c does the crypto).
 */
#ifndef ESTGW_BRSKI_H
#define ESTGW_BRSKI_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/codec.h"
#include "estgw/config.h"
#include "estgw/masa.h"
#include "core/proxy.h" /* enum proxy_rc, struct proxy_outcome, xchg_wait */

struct event_base;
struct upstream;
struct brski;

enum brski_res {
	BRSKI_NONE = -1,
	BRSKI_RV,
	BRSKI_VS,
	BRSKI_ES,
};

/** CoAP Content-Format of application/voucher+cose (CV, H1). */
#define BRSKI_CF_VOUCHER_COSE MASA_CF_VOUCHER_COSE
#define BRSKI_CF_CBOR 60
#define BRSKI_CF_JSON 50

/** brski_request.mfr besides an index into cfg->brski.mfr. */
#define BRSKI_MFR_NONE (-1)    /**< chains to no manufacturer bundle */
#define BRSKI_MFR_GENERIC (-2) /**< chains to [brski] manufacturer_trust */

/** One pledge request, with what the DTLS session knows. */
struct brski_request {
	enum brski_res res;
	int method;            /**< CoAP method code (2 = POST) */
	int cf, accept;        /**< EST_CF_NONE when absent */
	const uint8_t *body;
	size_t len;
	const uint8_t *peer;   /**< DTLS client certificate (DER), NULL: none */
	size_t peer_len;
	int mfr;               /**< the manufacturer line @p peer chains to, as the
				    DTLS verifier found it: an index into
				    cfg->brski.mfr, BRSKI_MFR_GENERIC or BRSKI_MFR_NONE */
	int cert_expired;      /**< @p peer is past notAfter (let through by G3) */
	const char *session;   /**< the DTLS session, for log lines */
};

/** Counters, logged at shutdown (/metrics has them as
 *  estgw_brski_requests_total and estgw_brski_masa_answers_total). */
struct brski_stats {
	uint64_t rv, rv_voucher, rv_rejected, rv_masa_error, rv_joined;
	uint64_t vs_ok, vs_fail, es_ok, es_fail, bad_status;
};

struct brski *brski_new(struct event_base *base, struct upstream *up,
			const struct estgw_config *cfg);
void brski_free(struct brski *b);
/** Append every vs/es record to the shared store's telemetry stream too
 *  ([cluster], K1; RFC 8995 §5.7, §5.9.4: the registrar keeps them). */
void brski_set_store(struct brski *b, const struct store_if *st);

/** Which resource the Uri-Path names: exactly /.well-known/brski/{rv,vs,es}. */
enum brski_res brski_route(const struct est_slice *segs, size_t nseg);

/** Handle @p rq, as proxy_submit does (enum proxy_rc): PROXY_ANSWERED
 *  with *now filled (checks, vs/es, a kept voucher or 202, busy), or
 *  PROXY_PENDING while the MASA exchange runs (@p fn runs once, later,
 *  from the loop; *wait for brski_cancel). */
enum proxy_rc brski_submit(struct brski *b, const struct brski_request *rq,
			   proxy_done_fn fn, void *arg, struct xchg_wait **wait,
			   struct proxy_outcome *now);

/** Forget a pending request; the MASA exchange goes on for the others. */
void brski_cancel(struct xchg_wait *w);

/** An enrollment answer (CF 281 or 287) went to a device: remember its
 *  certificates so a later es on a session with that client certificate
 *  is logged as coming from the enrolled LDevID (RFC 8995 5.9.4). */
void brski_note_enrolled(struct brski *b, int cf, const uint8_t *payload,
			 size_t len);

const struct brski_stats *brski_get_stats(const struct brski *b);

#endif
