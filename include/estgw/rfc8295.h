/* rfc8295.h - the RFC 8295 EST extensions over CoAP: the pure tables.
 *
 * Owns (I1-I3, docs/rfc8295.md): the operation table (CoAP path under the
 * EST root = the RFC 8295 path component; method; which [rfc8295] enable
 * word serves it), the media types without an IANA CoAP Content-Format and
 * their configurable numbers, routing of <root>[/<label>]/<op>[/<tail>],
 * the option checks (4.04 when off, 4.05, 4.15, 4.06), the upstream HTTP
 * request (URL with tail and query, Base64 or binary bodies, Accept), and
 * the CoAP answer made from the CA's answer: Base64 or binary DER, each
 * body checked (cms.c) before any 2.xx, PAL URIs rewritten (pal.c), 2.04
 * for the /return POSTs. Must not: do I/O, keep globals, log.
 */
#ifndef ESTGW_RFC8295_H
#define ESTGW_RFC8295_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/config.h"
#include "estgw/pal.h"
#include "estgw/translate.h"

/** Registered Content-Formats RFC 8295 bodies use (IANA CoAP registry). */
#define EST_CF_APP_XML 41
#define EST_CF_APP_JSON 50

/** Media types of enum order = [rfc8295] cf tokens. */
enum est_x_mt {
	EST_X_MT_CMS,    /**< application/cms */
	EST_X_MT_CRLS,   /**< application/pkcs7-mime; smime-type=crls-only */
	EST_X_MT_PKCS12, /**< application/pkcs12 */
	EST_X_MT_TAMP_Q, /**< 5 of application/tamp-{status-query, update,
			      apex-update, community-update, sequence-adjust} */
	EST_X_MT_TAMP_R = EST_X_MT_TAMP_Q + 5, /**< 6 of application/tamp-
			      {status-response, update-confirm,
			      apex-update-confirm, community-update-confirm,
			      sequence-adjust-confirm, error} */
	EST_X_MT_COUNT = EST_X_MT_TAMP_R + 6
};

_Static_assert(EST_X_MT_COUNT == ESTGW_X_MT_COUNT, "ESTGW_X_MT_COUNT");

/** The [rfc8295] cf token of @p mt ("cms", "tamp-update", ...). */
const char *est_x_mt_token(enum est_x_mt mt);
/** Its media type as sent and matched upstream. */
const char *est_x_mt_media_type(enum est_x_mt mt);
/** Its default Content-Format (experimental range, RFC 7252 §12.3). */
uint32_t est_x_mt_default_cf(enum est_x_mt mt);
/** The media type of a token; -ENOENT. */
int est_x_mt_lookup(const char *tok, size_t len);

enum est_x_op {
	EST_X_PAL,
	EST_X_EECERTS,
	EST_X_CRLS,
	EST_X_SYMKEYS,
	EST_X_SYMKEYS_RET,
	EST_X_FIRMWARE,
	EST_X_FIRMWARE_RET,
	EST_X_TAMP,
	EST_X_TAMP_RET,
	EST_X_SKG_RET,
	EST_X_SKG_P12, /**< skg/skc answered as PKCS#12 (RFC 8295 §8.3) */
	EST_X_SKG_EKP, /**< skg/skc answered as an encrypted key package (§8.1) */
	EST_X_OP_COUNT
};

struct est_x_op_desc {
	enum est_x_op op;
	const char *name;      /**< CoAP path after root[/label]: "firmware/return" */
	const char *http_name; /**< RFC 8295 path component */
	enum est_method method;
	unsigned bit;          /**< EST_X_EN_* that serves it */
	int tail;              /**< more segments and Uri-Query go upstream */
	const char *rt;        /**< discovery rt, private: "estgw.8295.pal" */
};

const struct est_x_op_desc *est_x_op_desc(enum est_x_op op);

/** A resolved RFC 8295 path. */
struct est_x_route {
	const struct est_x_op_desc *op;
	char label[EST_LABEL_MAX + 1];
	size_t root_index;
	size_t tail_first; /**< index of the first tail segment in segs */
	size_t ntail;
};

/** Resolve <root>[/<label>]/<op>[/<tail>...] (I1): the first segment after
 *  the root is the operation when it names one, else it is the label and
 *  the next one must. skc/return is an alias of skg/return. Tail segments
 *  (pal, eecerts, crls only) are 1..64 bytes of [A-Za-z0-9._~-], not "."
 *  or "..". 0, or -ENOENT (not an RFC 8295 path; enabled or not). */
int est_x_route_path(const struct est_slice *segs, size_t nseg,
		     const char *const *roots, size_t nroots,
		     struct est_x_route *out);

/** The operation is served under @p c. */
int est_x_enabled(const struct estgw_rfc8295 *c, const struct est_x_op_desc *op);

/** skg/skc with @p accept: EST_X_SKG_P12 (the PKCS#12 CF) or EST_X_SKG_EKP
 *  (the application/cms CF) when [rfc8295] enable has serverkeygen; -1. */
int est_x_skg_variant(const struct estgw_rfc8295 *c, int accept);

/** 4.04 when off, 4.05, 4.15, 4.06 (I1); v->resp_cf: the answer's CF
 *  (EST_CF_NONE for /tamp without Accept: the CA's type decides). */
int est_x_check_request(const struct estgw_rfc8295 *c,
			const struct est_x_op_desc *op,
			const struct est_coap_req *req, struct est_verdict *v);

/** Largest body of @p op: the request for a /return, else the answer. */
size_t est_x_body_cap(const struct estgw_rfc8295 *c, const struct est_x_op_desc *op);

/** What to ask the CA. */
struct est_x_ask {
	const char *label;
	const struct est_slice *tail; /**< ntail segments */
	size_t ntail;
	const struct est_slice *query; /**< nquery Uri-Query values */
	size_t nquery;
	int req_cf, resp_cf;
	const uint8_t *body; /**< DER from the device (POST) */
	size_t len;
};

/** The HTTP request (I2): GETs with tail and query; /return bodies checked
 *  as one ContentInfo (TAMP: of the CF's type) and sent as MIME Base64
 *  (or binary DER with post_binary); skg variants: the CSR as for
 *  /serverkeygen. *accept: the Accept header to send, or NULL. -EINVAL:
 *  the body is not what the CF says (4.00); -ENOMEM. */
int est_x_build_http_request(const struct estgw_rfc8295 *c,
			     const struct est_x_op_desc *op, const char *base_url,
			     const struct est_x_ask *a, struct est_http_req *out,
			     const char **accept);

/** Where PAL URIs point (I3). */
struct est_x_pal_ctx {
	const char *up_base; /**< [upstream] url */
	const char *gw_base; /**< coaps://authority/root or /root (+ label) */
	unsigned enabled;    /**< EST_X_EN_* incl. EST_X_EN_RFC9148_SKG */
	struct est_pal_stats stats; /**< filled */
};

/** The CoAP answer for @p op from the CA's answer (I2, I3). Always fills
 *  @p out and returns 0, or -ENOMEM. */
int est_x_translate_response(const struct estgw_rfc8295 *c,
			     const struct est_x_op_desc *op, int resp_cf,
			     const struct est_http_resp *in,
			     const struct est_xlate_limits *lim,
			     struct est_x_pal_ctx *pal, struct est_coap_resp *out);

/** Discovery (I1, A3): links of the enabled operations under @p root,
 *  rt="estgw.8295.<op>" with their ct, filtered by the queries like
 *  est_link_format; appended to @p b (malloc'd text, *len its length). */
int est_x_link_format(const struct estgw_rfc8295 *c, const char *root,
		      const struct est_slice *queries, size_t nq, char **b,
		      size_t *len);

#endif
