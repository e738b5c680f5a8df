/* dtls_cookie.h - the stateless DTLS cookie (RFC 6347 §4.2.1, L1).
 *
 * Cookie = HMAC-SHA256(secret, client address and port, the ClientHello's
 * version, random, session_id, cipher_suites, compression_methods),
 * truncated. The secret rotates; a cookie made with the previous secret is
 * still accepted. The datagram pre-filter (downstream/dtls_prefilter.c)
 * makes and checks cookies before libcoap sees a datagram; OpenSSL, inside
 * libcoap, is told by estgw_cookie_install() to accept only cookies the
 * pre-filter approved lately, so both sides use one HMAC.
 */
#ifndef ESTGW_DTLS_COOKIE_H
#define ESTGW_DTLS_COOKIE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ESTGW_COOKIE_LEN 20

/** Secrets: the current one and the one before it. */
struct estgw_cookie {
	uint8_t cur[32], prev[32];
	time_t born;        /**< when cur was made */
	unsigned rotate;    /**< seconds a secret is current */
};

/** Fresh random secrets; -EIO when the RNG fails. */
int estgw_cookie_init(struct estgw_cookie *c, unsigned rotate, time_t now);

/** The cookie for @p peer (address bytes, port: the caller's encoding) and
 *  the ClientHello parameters @p params into @p out. */
void estgw_cookie_make(struct estgw_cookie *c, time_t now,
		       const uint8_t *peer, size_t peer_len,
		       const uint8_t *params, size_t params_len,
		       uint8_t out[ESTGW_COOKIE_LEN]);

/** 1 when @p cookie is the one estgw_cookie_make gives now or gave with
 *  the previous secret, 0 otherwise (constant time). */
int estgw_cookie_check(struct estgw_cookie *c, time_t now,
		       const uint8_t *peer, size_t peer_len,
		       const uint8_t *params, size_t params_len,
		       const uint8_t *cookie, size_t cookie_len);

/** Start watching for the SSL_CTXs OpenSSL creates (libcoap creates its
 *  DTLS one inside coap_new_context()); estgw_cookie_capture_end() stops.
 *  The watch is an OpenSSL ex_data "new" callback, registered once. */
int estgw_cookie_capture_begin(void);
/** Stop watching; the number of DTLS SSL_CTXs seen since _begin (1 with
 *  libcoap 4.3.1's OpenSSL backend). */
int estgw_cookie_capture_end(void);

/** Replace the cookie callbacks of the DTLS SSL_CTX(s) captured: OpenSSL
 *  then accepts only the cookies lately passed to estgw_cookie_approve(), and
 *  never generates one that would be accepted. Call again after anything
 *  that may set them again. 0, or -ENOENT when nothing was captured. */
int estgw_cookie_install(void);

/** The next ClientHello handed to OpenSSL carries @p cookie (checked by
 *  the pre-filter for its source): OpenSSL accepts it while it is one of
 *  the last ESTGW_COOKIE_APPROVED approvals (it asks twice per handshake,
 *  DTLSv1_listen then SSL_accept, both in one libcoap read). The pre-filter
 *  approves at most one datagram per endpoint before libcoap reads one per
 *  endpoint, so with several endpoints (at most ESTGW_MAX_LISTEN, 8) one
 *  remembered cookie would be overwritten before OpenSSL asked. A cookie in
 *  the set was valid for the source of the datagram that carried it. */
#define ESTGW_COOKIE_APPROVED 8
void estgw_cookie_approve(const uint8_t *cookie, size_t len);

/** Cookies OpenSSL accepted / refused through the installed callbacks. */
void estgw_cookie_counts(unsigned long *accepted, unsigned long *refused);

#endif
