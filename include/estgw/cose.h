/* cose.h - COSE_Sign1 (RFC 9052 4.2, 4.4) for cBRSKI voucher objects
 * (H2 in docs/conformance.md).
 *
 * Owns: parsing a (tagged or untagged) COSE_Sign1 into slices of the input,
 * the Sig_structure ("ToBeSigned") built from the *received* protected header
 * bytes (never a re-encoding), writing a COSE_Sign1 with an x5bag (RFC 9360),
 * stripping the unprotected header byte-for-byte, and ECDSA signature form
 * conversion (COSE raw r||s <-> ASN.1 DER, RFC 9053 2.1).
 * Pure: no crypto, I/O, logging or globals. The hash/sign/verify calls are in
 * src/brski_pki.c (mbedTLS). Returns 0 or a negative errno: -EINVAL malformed,
 * -ENOTSUP a form we do not take (indefinite lengths), -E2BIG more x5bag
 * certificates than COSE_MAX_BAG, -ENOMEM.
 */
#ifndef ESTGW_COSE_H
#define ESTGW_COSE_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/codec.h"

#define COSE_TAG_SIGN1 18
#define COSE_HDR_ALG 1
#define COSE_HDR_KID 4
#define COSE_HDR_X5BAG 32
#define COSE_HDR_X5CHAIN 33
#define COSE_ALG_ES256 (-7)
#define COSE_ES256_SIG_LEN 64
#define COSE_MAX_BAG 8
/** Largest COSE object accepted or written. */
#define COSE_MAX_LEN 65536

/** A parsed COSE_Sign1; every slice points into the parsed buffer. */
struct cose_sign1 {
	struct est_slice prot;    /**< protected header: the bstr's bytes */
	struct est_slice unprot;  /**< the unprotected map, as encoded */
	struct est_slice payload; /**< the payload bstr's bytes */
	struct est_slice sig;     /**< the signature bstr's bytes */
	int64_t alg;              /**< 0 when the protected header has none */
	int tagged;               /**< tag 18 was present */
	struct est_slice x5bag[COSE_MAX_BAG]; /**< x5bag or x5chain certs */
	size_t nx5bag;
};

/** Parse @p in (up to COSE_MAX_LEN bytes, nothing trailing). The protected
 *  header must be an empty bstr or a map; alg is read from it. x5bag (32) or
 *  x5chain (33) is read from either header, as one bstr or an array of
 *  bstr. A nil payload (detached) is -ENOTSUP. */
int cose_sign1_parse(const uint8_t *in, size_t len, struct cose_sign1 *out);

/** Sig_structure = ["Signature1", protected, h'', payload] (RFC 9052 4.4),
 *  malloc'd into *out. */
int cose_tbs(const struct est_slice *prot, const struct est_slice *payload,
	     uint8_t **out, size_t *len);

/** The protected header we write: {1: alg}, encoded. @p buf needs 16 bytes;
 *  *len gets the length. */
int cose_prot_alg(int64_t alg, uint8_t *buf, size_t *len);

/** Write a tagged COSE_Sign1 with unprotected {32: bag} (a single bstr for
 *  one certificate, an array for several, RFC 9360 2; no header for none). */
int cose_sign1_write(const struct est_slice *prot, const struct est_slice *bag,
		     size_t nbag, const struct est_slice *payload,
		     const uint8_t *sig, size_t siglen, uint8_t **out,
		     size_t *len);

/** The same object with an empty unprotected header: protected bytes,
 *  payload and signature copied as received; the tag kept if present. */
int cose_sign1_strip(const uint8_t *in, size_t len, uint8_t **out,
		     size_t *outlen);

/** ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) -> raw r||s, each
 *  @p half bytes (32 for P-256). */
int cose_sig_der_to_raw(const uint8_t *der, size_t len, uint8_t *raw,
			size_t half);

/** raw r||s (2 * @p half bytes) -> DER into @p der (needs 2 * half + 9
 *  bytes); *len gets the length. */
int cose_sig_raw_to_der(const uint8_t *raw, size_t half, uint8_t *der,
			size_t dersize, size_t *len);

#endif
