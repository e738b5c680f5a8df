/* translate.h - the pure EST-coaps <-> RFC 7030 translation core.
 *
 * Owns every RFC table of the gateway (requirement IDs as in
 * docs/conformance.md): short path -> operation (A1, A2, A6, C), request
 * Content-Format/Accept checks (B2, B3), the upstream HTTP request (C, B5),
 * HTTP status -> CoAP code (D), the CoAP answer built from an upstream
 * answer (B4, B5, B6, D), and /.well-known/core link format (A3, A4).
 * Must not: include libcoap or curl, do I/O, keep globals, or log. Buffers in,
 * buffers out; the unit tests and fuzz targets call these functions directly.
 */
#ifndef ESTGW_TRANSLATE_H
#define ESTGW_TRANSLATE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "estgw/codec.h"

/** CoAP response codes as on the wire: (class << 5) | detail. */
#define EST_CODE(c, d) ((uint8_t)(((c) << 5) | (d)))
#define EST_CODE_CLASS(x) ((x) >> 5)
#define EST_CODE_DETAIL(x) ((x)&0x1f)

/** CoAP request methods (RFC 7252 12.1.1 codes). */
enum est_method { EST_GET = 1, EST_POST = 2, EST_PUT = 3, EST_DELETE = 4 };

/** Content-Formats (RFC 9148 Table 5, RFC 6690, RFC 8710). */
enum {
	EST_CF_NONE = -1,
	EST_CF_LINK = 40,
	EST_CF_MULTIPART_CORE = 62,
	EST_CF_PKCS7_SKG = 280,
	EST_CF_PKCS7_CERTS = 281,
	EST_CF_PKCS8 = 284,
	EST_CF_CSRATTRS = 285,
	EST_CF_PKCS10 = 286,
	EST_CF_PKIX_CERT = 287,
};

enum est_op {
	EST_OP_CRTS,
	EST_OP_SEN,
	EST_OP_SREN,
	EST_OP_ATT,
	EST_OP_SKG,
	EST_OP_SKC,
	EST_OP_COUNT
};

/** One row of the operation table (RFC 9148 Table 1; C). */
struct est_op_desc {
	enum est_op op;
	const char *short_name; /**< "crts" */
	const char *http_name;  /**< "cacerts" */
	enum est_method method; /**< the one method allowed (A6) */
	const char *rt;         /**< "ace.est.crts" */
	const char *link_ct;    /**< "\"281 287\"" as written in link format */
	uint8_t success;        /**< 2.05 for GET, 2.04 for POST */
};

const struct est_op_desc *est_op_desc(enum est_op op);
/** Look up a short path segment; NULL when it is not an EST short name. */
const struct est_op_desc *est_op_lookup(const char *name, size_t len);

/** Longest accepted ArbitraryLabel segment. */
#define EST_LABEL_MAX 64

/** A resolved request path (A1, A2). */
struct est_route {
	const struct est_op_desc *op;
	char label[EST_LABEL_MAX + 1]; /**< "" when there is none */
	size_t root_index;             /**< which entry of roots matched */
};

/** Resolve Uri-Path segments against the served roots (each written like
 *  "/.well-known/est" or "/est"). Accepts <root>/<short> and
 *  <root>/<label>/<short>. A label is 1..EST_LABEL_MAX characters of
 *  [A-Za-z0-9._~-], not "." or ".." (they would walk the upstream URL), and
 *  not itself a short name. Roots are tried in order; the first that
 *  resolves wins.
 *  @return 0, or -ENOENT (answer 4.04). */
int est_route_path(const struct est_slice *segs, size_t nseg,
		   const char *const *roots, size_t nroots,
		   struct est_route *out);

/** 1 when the segments of @p root ("/a/b", empty segments skipped) are the
 *  start of @p segs, with *used how many it took; else 0. */
int est_root_match(const char *root, const struct est_slice *segs,
		   size_t nseg, size_t *used);

/** The option-level view of a CoAP request the checks need. */
struct est_coap_req {
	enum est_method method;
	int cf;     /**< Content-Format, EST_CF_NONE when absent */
	int accept; /**< Accept, EST_CF_NONE when absent */
};

/** Outcome of a check: code 0 means go on. */
struct est_verdict {
	uint8_t code;     /**< CoAP error code, 0 when accepted */
	const char *diag; /**< static diagnostic text for the payload and log */
	int resp_cf;      /**< Content-Format of the success answer */
};

/** Method, Content-Format and Accept rules for @p op (A6, B2, B3).
 *  Fills @p v; returns 0 when accepted, -EINVAL when v->code holds an error. */
int est_check_request(const struct est_op_desc *op,
		      const struct est_coap_req *req, struct est_verdict *v);

/** The upstream HTTP request for one operation (C, B5). */
struct est_http_req {
	char *url;                /**< malloc'd: base[/label]/http_name */
	enum est_method method;   /**< EST_GET or EST_POST */
	const char *content_type; /**< static, NULL for GET */
	const char *transfer_encoding; /**< static: "base64" for EST bodies (sent
				       as Content-Transfer-Encoding by the
				       transport unless cleared: [upstream]
				       send_cte), NULL for none (B5) */
	char *body;               /**< malloc'd MIME Base64 (64-character lines,
				       each ending in CRLF; B5), NULL for GET */
	size_t body_len;
};

/** Build the HTTP request. @p base_url is the configured upstream URL
 *  (trailing '/' tolerated); @p label may be "" ; @p payload is the binary
 *  DER the device sent (must pass est_csr_check for POST operations, else
 *  -EINVAL -> 4.00). */
int est_build_http_request(const struct est_op_desc *op, const char *base_url,
			   const char *label, const uint8_t *payload,
			   size_t len, struct est_http_req *out);
void est_http_req_free(struct est_http_req *r);

/** Transport-level outcome of an upstream exchange. */
enum est_upstream_err {
	EST_UP_OK = 0,    /**< an HTTP answer came back */
	EST_UP_CONNECT,   /**< connection refused / unreachable */
	EST_UP_DNS,       /**< name resolution failed */
	EST_UP_TLS,       /**< TLS handshake or verification failed */
	EST_UP_TIMEOUT,   /**< connect or total timeout */
	EST_UP_TOO_LARGE, /**< body over the configured limit */
	EST_UP_PROTOCOL,  /**< anything else (malformed HTTP, aborted) */
};

/** What came back from upstream. */
struct est_http_resp {
	enum est_upstream_err err;
	long status;              /**< HTTP status when err == EST_UP_OK */
	const char *content_type; /**< header value or NULL */
	const char *retry_after;  /**< header value or NULL */
	const uint8_t *body;
	size_t body_len;
	time_t now; /**< current time, for an HTTP-date Retry-After */
};

/** Limits that shape translated answers. */
struct est_xlate_limits {
	uint32_t max_age_default; /**< 202/429/503 without (valid) Retry-After */
	uint32_t max_age_min;     /**< clamp for Retry-After-derived Max-Age */
	uint32_t max_age_max;
};

/** The CoAP answer to send. */
struct est_coap_resp {
	uint8_t code;
	int cf;           /**< EST_CF_NONE: no Content-Format option */
	uint8_t *payload; /**< malloc'd; DER, or diagnostic text on errors */
	size_t len;
	int has_max_age;
	uint32_t max_age;
	const char *note; /**< static remark for the log (e.g. "binary DER"), or NULL */
};

/** HTTP status -> CoAP code (D), for a GET or POST operation. */
uint8_t est_status_to_code(long status, enum est_method method);

/** 1 when the answer to @p status carries a Max-Age taken from Retry-After
 *  (202 and 503: 5.03; 429: 4.29, RFC 8516), else 0. */
int est_status_has_max_age(long status);

/** Parse a Retry-After value (delta-seconds or IMF-fixdate HTTP-date,
 *  RFC 9110 10.2.3) into seconds from @p now. -EINVAL when unparsable.
 *  Delta-seconds saturate at UINT32_MAX; a date in the past gives 0. The
 *  obsolete rfc850-date and asctime-date forms are accepted too, as RFC 9110
 *  5.6.7 requires of recipients. */
int est_retry_after_seconds(const char *v, time_t now, uint32_t *secs);

/** The Max-Age for an answer that tells the device to come back (D, D2;
 *  RFC 9148 §4.7, RFC 8516 §3): the Retry-After seconds of @p retry_after
 *  (an HTTP-date counted from @p now), clamped to [max_age_min,
 *  max_age_max]; lim->max_age_default when it is NULL or unusable. */
uint32_t est_retry_max_age(const char *retry_after, time_t now,
			   const struct est_xlate_limits *lim);

/** Untrusted text (@p n bytes of @p src) as printable ASCII for a log line
 *  or a diagnostic payload: each byte outside 0x20..0x7e, and '"' (which
 *  would end a quoted log field), becomes '?'; cut to @p dstlen - 1 bytes,
 *  NUL-terminated. Returns the length written. */
size_t est_printable(char *dst, size_t dstlen, const void *src, size_t n);

/** Turn an upstream answer into the CoAP answer for @p op with the Accept
 *  already checked (@p resp_cf from est_check_request). @p csr is the
 *  request body for sen/sren (used by Accept 287 to find the end-entity
 *  certificate), NULL/0 otherwise. Always fills @p out (an error answer on
 *  failure) and returns 0, or -ENOMEM. A @p resp_cf the operation does not
 *  offer gives 4.06. */
int est_translate_response(const struct est_op_desc *op, int resp_cf,
			   const uint8_t *csr, size_t csr_len,
			   const struct est_http_resp *in,
			   const struct est_xlate_limits *lim,
			   struct est_coap_resp *out);
/** Free the payload (zeroed first: a CF 62 answer holds a private key,
 *  G7) and reset @p r. */
void est_coap_resp_free(struct est_coap_resp *r);

/** Registrar-side key generation (F4): the /skg or /skc answer (@p op)
 *  from the upstream /simpleenroll answer @p in to the CSR estgw made
 *  (@p csr) for the key it generated (@p key, PKCS#8 DER). skg: [284, key,
 *  281, PKCS#7]; skc: [284, key, 287, the certificate of the key's public
 *  key]. Status and transport errors map as in est_translate_response
 *  (D); a 200 without a certificate for the key is 5.02. Always fills @p out
 *  and returns 0, or -ENOMEM. The payload holds the key: it is the
 *  receiver's to zero. */
int est_translate_keygen_enroll(const struct est_op_desc *op, int resp_cf,
				const uint8_t *key, size_t key_len,
				const uint8_t *csr, size_t csr_len,
				const struct est_http_resp *in,
				const struct est_xlate_limits *lim,
				struct est_coap_resp *out);

/** Fill @p out with an error answer: code + a malloc'd copy of @p diag as
 *  payload (NUL-terminated, len without the NUL), no Content-Format. @p out
 *  is overwritten, not freed first. */
int est_coap_resp_error(struct est_coap_resp *out, uint8_t code,
			const char *diag);

/** Choose the one certificate for Accept 287 (B4). With @p want_spki
 *  (sen/sren): the certificate whose SubjectPublicKeyInfo equals it. Without
 *  (crts): the only certificate, else the only self-signed one. -ENOENT when
 *  none or ambiguous (answer 4.06). */
int est_pick_single_cert(const struct est_slice *certs, size_t n,
			 const struct est_slice *want_spki,
			 struct est_slice *out);

/** Bit in est_link_opts.ops_enabled: also list the cBRSKI resources
 *  under /.well-known/brski (H1). */
#define EST_LINKS_BRSKI (1u << 31)

/** What discovery lists (A3). */
struct est_link_opts {
	const char *root;          /**< the root to list under, e.g. "/est" */
	unsigned ops_enabled;      /**< bit (1u << op) per operation served */
	int with_root_link;        /**< add </root>;rt="ace.est" */
	const char *jpy_uri;       /**< "jpy://[addr]:port": <uri>;rt=brski.rjp, listed
				    *   only for an rt= query it matches (H6), or NULL */
};

/** Build the /.well-known/core answer, filtered by the Uri-Query values in
 *  @p queries (A4: "rt=" and "ct=", exact or prefix when ending in '*';
 *  other parameters ignored). @p out is malloc'd text (may be empty). */
int est_link_format(const struct est_link_opts *o,
		    const struct est_slice *queries, size_t nq, char **out,
		    size_t *outlen);

/** 1 when a link with @p rt and @p ct (link-format attribute values, as
 *  in the table) passes every "rt=" / "ct=" query (A4), else 0. */
int est_link_passes(const char *rt, const char *ct,
		    const struct est_slice *queries, size_t nq);

#endif
