/* keylog.h - the key log ([log] keylog_file) for both TLS sides: the DTLS
 * sessions with devices (dtls_openssl.c attaches it to libcoap's SSL_CTX)
 * and the HTTPS connections upstream (upstream.c hands curl's SSL_CTX over,
 * opaque). Field debugging only; off unless configured.
 */
#ifndef ESTGW_TLS_KEYLOG_H
#define ESTGW_TLS_KEYLOG_H

#include <stddef.h>

/** The key log ([log] keylog_file): the secrets of every DTLS handshake and
 *  of every upstream TLS connection, one NSS key log line each
 *  ("CLIENT_RANDOM <client random> <master secret>" and the TLS 1.3 labels,
 *  as OpenSSL gives them; the SSLKEYLOGFILE format Wireshark reads), so a
 *  capture can be decrypted. Open @p path append-only (created with mode
 *  0600; an existing file must be a regular file of mode 0600 owned by our
 *  user, no symbolic link); until then, and after estgw_keylog_close(),
 *  nothing is written.
 *  Returns 0 or a negative errno with the reason in @p err. */
int estgw_keylog_open(const char *path, char *err, size_t errlen);
void estgw_keylog_close(void);

/** Have connections made from @p ssl_ctx (an OpenSSL SSL_CTX *, e.g. the one
 *  curl hands to CURLOPT_SSL_CTX_FUNCTION) report their secrets to the key
 *  log; nothing when it is not open. The DTLS side is attached by
 *  estgw_dtls_setup_session(). */
void estgw_keylog_attach(void *ssl_ctx);

#endif
