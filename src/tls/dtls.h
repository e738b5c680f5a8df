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

/** Which configured trust a client certificate chains to (values as
 *  enum estgw_client_kind in policy.h). */
enum estgw_dtls_kind {
	ESTGW_DTLS_KIND_OTHER = 0,
	ESTGW_DTLS_KIND_IDEVID = 1,
	ESTGW_DTLS_KIND_LDEVID = 2,
};

/** Files and switches estgw_dtls_new() needs. */
struct estgw_dtls_conf {
	const char *chain_file;   /**< server chain, leaf first */
	const char *key_file;     /**< its private key */
	const char *trust_file;   /**< every accepted device CA */
	const char *idevid_file;  /**< manufacturer CAs, or NULL */
	const char *ldevid_file;  /**< EST CA certificates, or NULL */
	int allow_expired_idevid; /**< let an expired leaf under idevid_file through */
};

/** Parse the server chain, its key, the client trust bundle and the
 *  optional IDevID/LDevID bundles once. The chain and key are set on each
 *  connection by reference, so libcoap can be told to load nothing itself
 *  (coap_server.c, libcoap 4.3.1 only). libcoap 4.3.1 (OpenSSL) reads a multi-certificate
 *  CA file into one reused X509 object, so only its last certificate really
 *  ends up trusted; estgw builds its own store and sets it on each
 *  connection instead. */
struct estgw_dtls *estgw_dtls_new(const struct estgw_dtls_conf *conf);
void estgw_dtls_free(struct estgw_dtls *d);

/** No manufacturer bundle (estgw_dtls_peer_manufacturer). */
#define ESTGW_DTLS_MFR_NONE (-1)

/** A cBRSKI manufacturer bundle (H2): its CAs are trusted for client
 *  certificates too (the IDevIDs that may connect), and it is kept as its
 *  own store under @p id (any value but ESTGW_DTLS_MFR_NONE) for
 *  estgw_dtls_peer_manufacturer(). Bundles are asked in the order added. */
int estgw_dtls_add_manufacturer(struct estgw_dtls *d, const char *file, int id);

/** Per-connection set-up hook, run from libcoap's ClientHello processing:
 *  cipher list (CCM_8 first, server preference, AEAD only; G1), groups
 *  (P-256 first), DTLS 1.2 minimum, session-id context (resumption), the
 *  client trust store and its CA names, and the full server chain and key
 *  parsed at start-up (libcoap 4.3.1 sends only the leaf, and re-parses its
 *  PEM files in every ClientHello). Returns 1 on success, 0 to abort the
 *  handshake. With allow_expired_idevid our verify callback replaces
 *  libcoap's: it lets through CERT_HAS_EXPIRED on the leaf only, and only
 *  when the chain holds a certificate of the IDevID bundle (G3). */
int estgw_dtls_setup_session(struct estgw_dtls *d, void *tls);

/** Classify the client certificate of a finished handshake: *kind from the
 *  IDevID/LDevID bundles (a chain to any certificate of the bundle, time
 *  not looked at: the handshake checked it), *expired when the leaf is past
 *  its notAfter (only possible with allow_expired_idevid; G3). */
int estgw_dtls_peer_kind(struct estgw_dtls *d, void *tls,
			 enum estgw_dtls_kind *kind, int *expired);

/** The id of the first manufacturer bundle the client certificate of a
 *  finished handshake chains to (the peer's chain as helpers, a chain to
 *  any certificate of the bundle, time not looked at: the handshake checked
 *  it), or ESTGW_DTLS_MFR_NONE. The same verifier as the handshake, so
 *  cBRSKI never re-verifies the IDevID with another library. */
int estgw_dtls_peer_manufacturer(struct estgw_dtls *d, void *tls);

/** The client certificate's subject as one RFC 2253 line ("-" if none).
 *  Works on resumed sessions. */
int estgw_dtls_peer_subject(void *tls, char *buf, size_t len);

/** The client certificate as DER (malloc'd), for policy checks. */
int estgw_dtls_peer_cert_der(void *tls, uint8_t **der, size_t *len);

/** tls-unique (RFC 5929): the first Finished message of the handshake;
 *  *len gets its length (12 for DTLS 1.2). */
int estgw_dtls_tls_unique(void *tls, uint8_t *out, size_t outsize,
			  size_t *len);

/** An idle session's record buffers (OpenSSL 3.0 keeps two of about 13 KB per
 *  DTLS connection) go back to the heap: 1 when they are not held any more
 *  (also when they were gone already), 0 when they are in use or the library
 *  cannot do it safely (OpenSSL before 3.0.14, 3.1.6, 3.2.2, 3.3.1:
 *  CVE-2024-4741). OpenSSL makes them again when it reads the next datagram,
 *  but not before a write: call estgw_dtls_wake() before anything may send on
 *  the session without a datagram read first (the close_notify when the
 *  session is freed). */
int estgw_dtls_idle(void *tls);
void estgw_dtls_wake(void *tls);

/** An idle session's handshake buffer (16 KiB that OpenSSL keeps after a DTLS
 *  handshake) given back to the kernel page by page (tls/hs_trim.c): the
 *  bytes given back, 0 when nothing was. Once per quiet spell, after
 *  estgw_dtls_idle() said 1. */
int estgw_dtls_trim(void *tls);

/** The negotiated cipher suite name, for debug logs. */
const char *estgw_dtls_cipher(void *tls);

/** The backend's version string. */
const char *estgw_dtls_backend_version(void);

#endif
