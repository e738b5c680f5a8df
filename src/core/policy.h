/* policy.h - who may do what: the gateway's security decisions per request
 * (RFC 9148 3, 5, 9.1, 9.2; RFC 7030 3.5, 4.2.2; G2, G3, G4 in
 * docs/conformance.md).
 *
 * Owns: POP linking (tls-unique in the CSR's challengePassword), which kind
 * of client certificate may use which operation, the expired-IDevID rule,
 * the serialNumber match and the re-enroll subject rule.
 * Must not: do I/O, log, or keep state: every input is passed in (the DTLS
 * glue finds the certificate's kind and expiry, coap_server.c logs), so the
 * unit tests call it directly. Pure like translate.c.
 */
#ifndef ESTGW_POLICY_H
#define ESTGW_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/config.h"
#include "estgw/translate.h"

/** Which configured trust the client certificate chains to. */
enum estgw_client_kind {
	ESTGW_CLIENT_OTHER,  /**< neither [policy] idevid_trust nor ldevid_trust */
	ESTGW_CLIENT_IDEVID, /**< a manufacturer CA (idevid_trust) */
	ESTGW_CLIENT_LDEVID, /**< the EST CA (ldevid_trust) */
};

/** What one request brings to the policy. */
struct estgw_policy_req {
	enum est_op op;
	enum estgw_client_kind kind;
	int cert_expired;                /**< the client cert is past notAfter */
	const uint8_t *cert;             /**< client certificate DER */
	size_t cert_len;
	const uint8_t *csr;              /**< request body for POSTs, else NULL */
	size_t csr_len;
	const uint8_t *tls_unique;       /**< RFC 5929; NULL when unavailable */
	size_t tls_unique_len;
};

/** The decision: code 0 lets the request go upstream. */
struct estgw_policy_verdict {
	uint8_t code;     /**< CoAP error code, 0 when allowed */
	const char *diag; /**< static text for the error payload and the log */
	const char *note; /**< static remark for the log when allowed, or NULL */
};

/** Decide on @p req under @p pol. Returns 0 when allowed (v->note may say
 *  why it is notable, e.g. an expired IDevID), -EACCES when v->code holds
 *  the error: 4.01 for a POP failure (no or wrong tls-unique), 4.03 for an
 *  operation the certificate may not use, a serialNumber or re-enroll
 *  subject mismatch, or an expired certificate outside the IDevID rule;
 *  4.00 for a CSR the walker refuses. */
int estgw_policy_check(const struct estgw_config *cfg,
		       const struct estgw_policy_req *req,
		       struct estgw_policy_verdict *v);

/** Name of a client kind for log lines ("idevid", "ldevid", "other"). */
const char *estgw_client_kind_name(enum estgw_client_kind k);

#endif
