/* brski_pki.h - the mbedTLS side of cBRSKI (H2, H4 in docs/conformance.md):
 * ES256 for COSE_Sign1, the registrar's signing key, certificate fields of
 * pledges and the registrar (parsed, never chain-verified: dtls_openssl.c
 * is the one X.509 verifier). Only this file and pki.c include mbedTLS;
 * cose.c stays pure.
 */
#ifndef ESTGW_BRSKI_PKI_H
#define ESTGW_BRSKI_PKI_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/codec.h"
#include "estgw/cose.h"

/** Verify @p s (ES256 only) with the public key of DER certificate @p cert.
 *  0 good, -EBADMSG bad signature (also a 64-byte signature that is not a
 *  valid r||s), -ENOTSUP another alg or a non-P-256 key, -EINVAL the
 *  certificate does not parse. */
int brski_cose_verify(const struct cose_sign1 *s, const uint8_t *cert,
		      size_t len);

struct brski_signer;

/** Load a P-256 private key (PEM/DER file). NULL with a reason in @p why. */
struct brski_signer *brski_signer_new(const char *keyfile, char *why,
				      size_t whylen);
void brski_signer_free(struct brski_signer *sg);

/** COSE_Sign1 over @p payload: protected {1: -7}, unprotected {32: bag},
 *  deterministic ECDSA (RFC 6979), raw r||s. *out malloc'd. */
int brski_cose_sign(struct brski_signer *sg, const struct est_slice *payload,
		    const struct est_slice *bag, size_t nbag, uint8_t **out,
		    size_t *len);

/** Extended key usage bits of a DER certificate. */
#define BRSKI_EKU_CMCRA 1u
#define BRSKI_EKU_SERVER 2u
#define BRSKI_EKU_CLIENT 4u
int brski_cert_eku(const uint8_t *der, size_t len, unsigned *bits);

/** The public key's SHA-1 key identifier (RFC 5280 4.2.1.2 method 1), for
 *  idevid-issuer when the IDevID has no AKI. */
int brski_cert_keyid(const uint8_t *der, size_t len, uint8_t out[20]);

/** A bundle of CA certificates (PEM file) kept loaded, parsed only: chain
 *  questions are the DTLS verifier's (estgw_dtls_peer_manufacturer). */
struct brski_trust;
struct brski_trust *brski_trust_load(const char *file);
void brski_trust_free(struct brski_trust *t);
/** The chain from @p der's issuer up to a self-signed root, as found in
 *  @p t (slices into the trust store, valid while it lives). */
size_t brski_trust_chain(const struct brski_trust *t, const uint8_t *der,
			 size_t len, struct est_slice *out, size_t max);

/** Read every certificate of a PEM file as DER slices (malloc'd copies;
 *  brski_certs_free). */
int brski_certs_load(const char *file, struct est_slice **certs, size_t *n);
void brski_certs_free(struct est_slice *certs, size_t n);

/** Plain SHA-256. */
void brski_sha256(const uint8_t *p, size_t len, uint8_t out[32]);

struct estgw_config;

/** Start-up checks of [brski] when enabled (H4): manufacturer_trust
 *  and masa_trust set and loadable; the registrar certificate ([server]
 *  certificate) carries id-kp-cmcRA and serverAuth, and clientAuth too when
 *  it is also the MASA client certificate (no masa_certificate); the
 *  registrar key is P-256 (ES256); manufacturer lines load. Returns 0 or a
 *  negative errno with "file:line: [brski] key: reason" in @p err. */
int brski_verify_config(const struct estgw_config *cfg, char *err,
			size_t errlen);

#endif
