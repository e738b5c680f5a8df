/* keygen.h - registrar-side key generation (RFC 9148 5; F4, G7 in
 * docs/conformance.md).
 *
 * Owns: a new P-256 key from mbedTLS (CTR_DRBG seeded from the OS entropy
 * source) and a PKCS#10 CSR signed by it that carries the device CSR's
 * subject and requested extensions, for /simpleenroll with the RA
 * certificate when the CA has no /serverkeygen.
 * Must not: log, or leave key material behind: the key leaves only as
 * PKCS#8 in estgw_keygen.pkcs8, zeroed by estgw_keygen_free.
 */
#ifndef ESTGW_KEYGEN_H
#define ESTGW_KEYGEN_H

#include <stddef.h>
#include <stdint.h>

/** A generated key and the CSR for it. */
struct estgw_keygen {
	uint8_t *pkcs8; /**< PrivateKeyInfo DER (secret) */
	size_t pkcs8_len;
	uint8_t *csr;   /**< CertificationRequest DER, SHA-256 with ECDSA */
	size_t csr_len;
};

/** Generate a P-256 key and a CSR for it with the subject Name and the
 *  extensionRequest attribute (when present) copied byte for byte from
 *  @p client_csr; no other attribute is copied (the device's
 *  challengePassword belongs to its own DTLS session: the CA accepts the
 *  RA's request without it, RFC 7030 3.7). Returns 0, -EINVAL when the
 *  device CSR is malformed, -ENOMEM, or -EIO when the random generator or
 *  the key operations fail. @p out is zeroed on failure. */
int estgw_keygen_make(const uint8_t *client_csr, size_t len,
		      struct estgw_keygen *out);

/** Zero and free what estgw_keygen_make allocated. */
void estgw_keygen_free(struct estgw_keygen *kg);

#endif
