/* keygen.c - registrar-side key generation with mbedTLS (F4, G7 in
 * docs/conformance.md).
 *
 * Owns: the CTR_DRBG (seeded from mbedtls_entropy_func, i.e. the OS source,
 * per call: no generator state outlives a request), the P-256 key, and the
 * CSR for it: CertificationRequestInfo { 0, the device's subject, our
 * SubjectPublicKeyInfo, [0] { the device's extensionRequest } } signed
 * with ECDSA over SHA-256 (RFC 2986, RFC 5758 3.2). The DER is written
 * with mbedTLS's asn1write (backwards, from the end of each buffer).
 * Must not: log, keep keys, or free a buffer that held the key without
 * zeroing it (mbedtls_platform_zeroize).
 */
#include "pki/keygen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include "estgw/skg.h"

#define KEY_DER_MAX 256   /* a P-256 SEC1 ECPrivateKey is about 121 bytes */
#define CSR_OVERHEAD 512  /* SPKI, version, signature, headers */

static const char drbg_label[] = "estgw registrar keygen";

/** The random generator of one call. */
struct rng {
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
};

static int rng_init(struct rng *r)
{
	mbedtls_entropy_init(&r->entropy);
	mbedtls_ctr_drbg_init(&r->drbg);
	return mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy,
				     (const unsigned char *)drbg_label,
				     sizeof(drbg_label) - 1) == 0 ? 0 : -EIO;
}

static void rng_free(struct rng *r)
{
	mbedtls_ctr_drbg_free(&r->drbg); /* both zero their state */
	mbedtls_entropy_free(&r->entropy);
}

static int new_key(mbedtls_pk_context *pk, struct rng *r)
{
	if (mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0)
		return -ENOMEM;
	if (mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk),
				mbedtls_ctr_drbg_random, &r->drbg) != 0)
		return -EIO;
	return 0;
}

/** The key as PKCS#8: mbedTLS writes SEC1, the codec wraps it. */
static int key_pkcs8(mbedtls_pk_context *pk, struct estgw_keygen *out)
{
	unsigned char buf[KEY_DER_MAX];
	enum est_key_form form;
	int n = mbedtls_pk_write_key_der(pk, buf, sizeof(buf));
	int rc = -EIO;

	if (n > 0)
		rc = est_privkey_to_pkcs8(buf + sizeof(buf) - n, (size_t)n,
					  &out->pkcs8, &out->pkcs8_len, &form);
	mbedtls_platform_zeroize(buf, sizeof(buf));
	return rc == -EINVAL ? -EIO : rc;
}

/** Prepend @p len bytes at @p src before *p (asn1write style). */
static int put_raw(unsigned char **p, unsigned char *start,
		   const struct est_slice *s)
{
	return mbedtls_asn1_write_raw_buffer(p, start, s->ptr, s->len);
}

/** Prepend a constructed header for @p len content bytes. */
static int put_hdr(unsigned char **p, unsigned char *start, size_t len,
		   unsigned char tag)
{
	int a = mbedtls_asn1_write_len(p, start, len), b;

	if (a < 0)
		return a;
	b = mbedtls_asn1_write_tag(p, start, tag);
	return b < 0 ? b : a + b;
}

/** CertificationRequestInfo at the end of [buf, buf + size). */
static int write_cri(unsigned char *buf, size_t size, mbedtls_pk_context *pk,
		     const struct est_slice *subject,
		     const struct est_slice *extreq, unsigned char **start)
{
	unsigned char *p = buf + size;
	size_t len = 0, alen = 0;
	int ret;

	if (extreq->len)
		MBEDTLS_ASN1_CHK_ADD(alen, put_raw(&p, buf, extreq));
	MBEDTLS_ASN1_CHK_ADD(alen, put_hdr(&p, buf, alen,
					   MBEDTLS_ASN1_CONTEXT_SPECIFIC |
						   MBEDTLS_ASN1_CONSTRUCTED | 0));
	len += alen;
	ret = mbedtls_pk_write_pubkey_der(pk, buf, (size_t)(p - buf));
	if (ret < 0)
		return ret;
	p -= ret;
	len += (size_t)ret;
	MBEDTLS_ASN1_CHK_ADD(len, put_raw(&p, buf, subject));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_int(&p, buf, 0));
	MBEDTLS_ASN1_CHK_ADD(len, put_hdr(&p, buf, len,
					  MBEDTLS_ASN1_CONSTRUCTED |
						  MBEDTLS_ASN1_SEQUENCE));
	*start = p;
	return (int)len;
}

/** CertificationRequest { cri, ecdsa-with-SHA256, BIT STRING sig }. */
static int write_csr(unsigned char *buf, size_t size,
		     const struct est_slice *cri, const unsigned char *sig,
		     size_t siglen, unsigned char **start)
{
	unsigned char *p = buf + size;
	size_t len = 0, alen = 0;
	int ret;

	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_bitstring(&p, buf, sig,
								siglen * 8));
	/* RFC 5758 3.2: the parameters of ecdsa-with-SHA256 are absent. */
	MBEDTLS_ASN1_CHK_ADD(alen, mbedtls_asn1_write_oid(
					   &p, buf, MBEDTLS_OID_ECDSA_SHA256,
					   MBEDTLS_OID_SIZE(MBEDTLS_OID_ECDSA_SHA256)));
	MBEDTLS_ASN1_CHK_ADD(alen, put_hdr(&p, buf, alen,
					   MBEDTLS_ASN1_CONSTRUCTED |
						   MBEDTLS_ASN1_SEQUENCE));
	len += alen;
	MBEDTLS_ASN1_CHK_ADD(len, put_raw(&p, buf, cri));
	MBEDTLS_ASN1_CHK_ADD(len, put_hdr(&p, buf, len,
					  MBEDTLS_ASN1_CONSTRUCTED |
						  MBEDTLS_ASN1_SEQUENCE));
	*start = p;
	return (int)len;
}

/** Sign @p cri with @p pk into a malloc'd CSR. */
static int sign_csr(mbedtls_pk_context *pk, struct rng *r,
		    const struct est_slice *cri, struct estgw_keygen *out)
{
	unsigned char hash[32], sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE], *start;
	size_t siglen = 0, size = cri->len + CSR_OVERHEAD;
	unsigned char *buf;
	int n;

	if (mbedtls_sha256_ret(cri->ptr, cri->len, hash, 0) != 0 ||
	    mbedtls_pk_sign(pk, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig,
			    &siglen, mbedtls_ctr_drbg_random, &r->drbg) != 0)
		return -EIO;
	buf = malloc(size);
	if (!buf)
		return -ENOMEM;
	n = write_csr(buf, size, cri, sig, siglen, &start);
	if (n < 0) {
		free(buf);
		return -EIO;
	}
	memmove(buf, start, (size_t)n);
	out->csr = buf;
	out->csr_len = (size_t)n;
	return 0;
}

/** The device's subject and extensionRequest; -EINVAL when malformed. */
static int client_parts(const uint8_t *csr, size_t len,
			struct est_slice *subject, struct est_slice *extreq)
{
	struct est_slice attrs;
	int rc = est_csr_parts(csr, len, subject, &attrs);

	if (rc)
		return -EINVAL;
	rc = est_csr_attr(csr, len, est_oid_extension_request,
			  sizeof(est_oid_extension_request), extreq);
	if (rc == -ENOENT) {
		extreq->ptr = NULL;
		extreq->len = 0;
		return 0;
	}
	return rc ? -EINVAL : 0;
}

static int make_csr(mbedtls_pk_context *pk, struct rng *r,
		    const struct est_slice *subject,
		    const struct est_slice *extreq, struct estgw_keygen *out)
{
	size_t size = subject->len + extreq->len + CSR_OVERHEAD;
	unsigned char *buf = malloc(size), *start;
	struct est_slice cri;
	int n, rc;

	if (!buf)
		return -ENOMEM;
	n = write_cri(buf, size, pk, subject, extreq, &start);
	if (n < 0) {
		free(buf);
		return -EIO;
	}
	cri.ptr = start;
	cri.len = (size_t)n;
	rc = sign_csr(pk, r, &cri, out);
	free(buf);
	return rc;
}

int estgw_keygen_make(const uint8_t *client_csr, size_t len,
		      struct estgw_keygen *out)
{
	struct est_slice subject, extreq;
	mbedtls_pk_context pk;
	struct rng *r;
	int rc;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!client_csr || client_parts(client_csr, len, &subject, &extreq))
		return -EINVAL;
	r = malloc(sizeof(*r)); /* the entropy pool is large for a stack */
	if (!r)
		return -ENOMEM;
	mbedtls_pk_init(&pk);
	rc = rng_init(r);
	if (!rc)
		rc = new_key(&pk, r);
	if (!rc)
		rc = key_pkcs8(&pk, out);
	if (!rc)
		rc = make_csr(&pk, r, &subject, &extreq, out);
	mbedtls_pk_free(&pk); /* frees the key's numbers zeroed */
	rng_free(r);
	free(r);
	if (rc)
		estgw_keygen_free(out);
	return rc;
}

void estgw_keygen_free(struct estgw_keygen *kg)
{
	if (!kg)
		return;
	if (kg->pkcs8)
		mbedtls_platform_zeroize(kg->pkcs8, kg->pkcs8_len);
	free(kg->pkcs8);
	free(kg->csr);
	memset(kg, 0, sizeof(*kg));
}
