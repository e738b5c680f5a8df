/* masa.h - the MASA's answer to a Registrar voucher request, mapped to the
 * pledge's CoAP answer (H5 in docs/conformance.md; docs/brski.md).
 *
 * Owns: one table of MASA answers (status range -> kind, CoAP code, Max-Age,
 * diagnostic), the voucher checks (media type, COSE_Sign1 voucher, nonce
 * and serial-number as asked) and the voucher handed on with its
 * unprotected header stripped. A 4xx keeps the CoAP twin the EST table
 * gives it (est_status_to_code, D); Max-Age and untrusted text go through
 * translate.c's helpers.
 * Pure: buffers in, an answer out; no I/O, clock, globals or logging.
 */
#ifndef ESTGW_MASA_H
#define ESTGW_MASA_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/translate.h"

/** CoAP Content-Format of application/voucher+cose (CV, H1). */
#define MASA_CF_VOUCHER_COSE 836
/** The media type sent and accepted, and its older name. */
#define MASA_MT_VOUCHER "application/voucher+cose"
#define MASA_MT_VOUCHER_LEGACY "application/voucher-cose+cbor"

/** What an answer means for the registrar. */
enum masa_kind {
	MASA_VOUCHER, /**< 2.04 CF 836: keep it for resends of the same PVR */
	MASA_PENDING, /**< 202: 5.03 + Max-Age; resends wait as long */
	MASA_FAILED,  /**< any other: not kept, a resend asks again */
};

/** What the registrar asked for: the voucher must carry the same. */
struct masa_expect {
	const uint8_t *nonce;
	size_t nonce_len;
	const char *serial;
};

/** Map the MASA's answer @p in (@p errmsg: the transport's text when
 *  in->err is not EST_UP_OK) to the pledge's answer in @p out (its
 *  payload malloc'd: the stripped voucher, or the diagnostic text; out of
 *  memory: 5.00, its payload when even that fails). Returns the kind. */
enum masa_kind masa_translate(const struct est_http_resp *in, const char *errmsg,
			      const struct masa_expect *x,
			      const struct est_xlate_limits *lim,
			      struct est_coap_resp *out);

/** 1 when the Content-Type value names a voucher (either name, any
 *  parameters, case-insensitive), else 0. */
int masa_is_voucher_type(const char *content_type);

#endif
