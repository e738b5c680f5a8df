/* dtls.h - what estgw needs from the DTLS library behind libcoap.
 *
 * One implementation per libcoap TLS backend (dtls_openssl.c today); the
 * rest of the gateway sees only these calls and an opaque session pointer
 * (what coap_session_get_tls() returns).
 */
#ifndef ESTGW_DTLS_H
#define ESTGW_DTLS_H

#include <stddef.h>
#include <stdint.h>

/** Credentials loaded once at start-up. */
struct estgw_dtls;

/** Load the server chain file and the client trust bundle.
 *  libcoap 4.3.1 (OpenSSL) reads a multi-certificate CA file into one
 *  reused X509 object, so only its last certificate really ends up trusted;
 *  estgw builds its own store and sets it on each connection instead. */
struct estgw_dtls *estgw_dtls_new(const char *chain_file,
				  const char *trust_file);
void estgw_dtls_free(struct estgw_dtls *d);

/** Trust the CAs of another PEM bundle for client certificates too (the
 *  cBRSKI manufacturer CAs whose IDevIDs may connect, SPEC H2). */
int estgw_dtls_add_trust(struct estgw_dtls *d, const char *file);

/** Per-connection set-up hook, run from libcoap's ClientHello processing:
 *  cipher list (CCM_8 first, server preference, AEAD only; SPEC G1), groups
 *  (P-256 first), DTLS 1.2 minimum, session-id context (resumption), the
 *  client trust store, and the full server chain (libcoap 4.3.1 sends only
 *  the leaf). Returns 1 on success, 0 to abort the handshake. */
int estgw_dtls_setup_session(struct estgw_dtls *d, void *tls);

/** The client certificate's subject as one RFC 2253 line ("-" if none).
 *  Works on resumed sessions. */
int estgw_dtls_peer_subject(void *tls, char *buf, size_t len);

/** The client certificate as DER (malloc'd), for policy checks. */
int estgw_dtls_peer_cert_der(void *tls, uint8_t **der, size_t *len);

/** tls-unique (RFC 5929): the first Finished message of the handshake;
 *  *len gets its length (12 for DTLS 1.2). */
int estgw_dtls_tls_unique(void *tls, uint8_t *out, size_t outsize,
			  size_t *len);

/** The negotiated cipher suite name, for debug logs. */
const char *estgw_dtls_cipher(void *tls);

/** The backend's version string. */
const char *estgw_dtls_backend_version(void);

#endif
