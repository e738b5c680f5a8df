/* pki.h - start-up checks of the certificates and keys the config names.
 *
 * Owns: reading the PEM files with mbedTLS and checking that each can serve
 * its role (chains parse, keys parse and match their leaf, trust bundles are
 * not empty, the RA certificate carries id-kp-cmcRA). Private to estgw.
 * Must not: log, or keep anything loaded: the DTLS and HTTPS sides load the
 * files again with their own libraries.
 */
#ifndef ESTGW_PKI_H
#define ESTGW_PKI_H

#include <stddef.h>

struct estgw_config;

/** Check every certificate and key file named in @p cfg (already loaded by
 *  estgw_config_load). Returns 0 or a negative errno (-EINVAL: bad content,
 *  -EIO: unreadable, -ENOMEM) with one line "file:line: [section] key: reason"
 *  in @p err; the line is the key's line in the config file.
 *  A world-readable RA key (upstream.private_key) is an error (-EACCES).
 *  Problems that do not stop the gateway (a world-readable server key, an
 *  expired leaf, a trust-bundle entry mbedTLS cannot parse, a DTLS server
 *  certificate without id-kp-cmcRA, G8) are written to
 *  @p warn in the same format, one per line, separated by '\n' (empty if
 *  none; truncated to @p warnlen). Either buffer may be NULL. */
int estgw_config_verify_pki(const struct estgw_config *cfg, char *err,
			    size_t errlen, char *warn, size_t warnlen);

/** "mbed TLS 2.28.x", for --version. */
const char *estgw_pki_lib_version(void);

/** 1 if the DER certificate lists id-kp-cmcRA (1.3.6.1.5.5.7.3.28) in its
 *  extended key usage, 0 if it does not (anyExtendedKeyUsage alone or no EKU
 *  extension count as "does not"), -EINVAL if it does not parse. */
int estgw_pki_cert_has_cmcra(const unsigned char *der, size_t len);

/** SHA-256 over the concatenation of @p n buffers (for request keys). */
struct estgw_buf {
	const void *ptr;
	size_t len;
};
void estgw_pki_sha256(const struct estgw_buf *parts, size_t n,
		      unsigned char out[32]);

#endif
