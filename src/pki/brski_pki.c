/* brski_pki.c - mbedTLS for cBRSKI: ES256 over COSE Sig_structures, the
 * registrar's signing key, EKU and key-id facts, manufacturer CA bundles
 * parsed for the x5bag. No chain verification: OpenSSL in the DTLS glue
 * (dtls_openssl.c) is the one X.509 verifier; mbedTLS only parses here.
 * Must not: log (callers do), or keep key material beyond the signer object.
 */
#include "pki/brski_pki.h"

#include "estgw/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha1.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#define OID_CMC_RA MBEDTLS_OID_KP "\x1c"

static int is_p256(const mbedtls_pk_context *pk)
{
	return mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY &&
	       mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

static int tbs_hash(const struct cose_sign1 *s, uint8_t hash[32])
{
	uint8_t *tbs;
	size_t n;
	int rc = cose_tbs(&s->prot, &s->payload, &tbs, &n);

	if (rc)
		return rc;
	rc = mbedtls_sha256_ret(tbs, n, hash, 0) ? -EINVAL : 0;
	free(tbs);
	return rc;
}

int brski_cose_verify(const struct cose_sign1 *s, const uint8_t *cert,
		      size_t len)
{
	mbedtls_x509_crt crt;
	uint8_t hash[32], der[80];
	size_t derlen;
	int rc;

	if (s->alg != COSE_ALG_ES256)
		return -ENOTSUP;
	if (s->sig.len != COSE_ES256_SIG_LEN)
		return -EBADMSG; /* e.g. a DER signature (design pitfall 2) */
	mbedtls_x509_crt_init(&crt);
	if (mbedtls_x509_crt_parse_der(&crt, cert, len) != 0) {
		rc = -EINVAL;
	} else if (!is_p256(&crt.pk)) {
		rc = -ENOTSUP;
	} else if ((rc = tbs_hash(s, hash)) == 0) {
		rc = cose_sig_raw_to_der(s->sig.ptr, 32, der, sizeof(der), &derlen);
		if (rc == 0 && mbedtls_pk_verify(&crt.pk, MBEDTLS_MD_SHA256, hash,
						 32, der, derlen) != 0)
			rc = -EBADMSG;
	}
	mbedtls_x509_crt_free(&crt);
	return rc;
}

struct brski_signer {
	mbedtls_pk_context pk;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
};

struct brski_signer *brski_signer_new(const char *keyfile, char *why,
				      size_t whylen)
{
	static const char pers[] = "estgw-brski";
	struct brski_signer *sg = calloc(1, sizeof(*sg));
	int ret;

	if (!sg) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	mbedtls_pk_init(&sg->pk);
	mbedtls_entropy_init(&sg->entropy);
	mbedtls_ctr_drbg_init(&sg->drbg);
	ret = mbedtls_ctr_drbg_seed(&sg->drbg, mbedtls_entropy_func, &sg->entropy,
				    (const unsigned char *)pers, sizeof(pers) - 1);
	if (ret == 0)
		ret = mbedtls_pk_parse_keyfile(&sg->pk, keyfile, NULL);
	if (ret != 0) {
		char text[100];
		mbedtls_strerror(ret, text, sizeof(text));
		snprintf(why, whylen, "%s: %s", keyfile, text);
		brski_signer_free(sg);
		return NULL;
	}
	if (!is_p256(&sg->pk)) {
		snprintf(why, whylen, "%s: not a P-256 key (ES256 needs one)", keyfile);
		brski_signer_free(sg);
		return NULL;
	}
	return sg;
}

void brski_signer_free(struct brski_signer *sg)
{
	if (!sg)
		return;
	mbedtls_pk_free(&sg->pk);
	mbedtls_ctr_drbg_free(&sg->drbg);
	mbedtls_entropy_free(&sg->entropy);
	mbedtls_platform_zeroize(sg, sizeof(*sg));
	free(sg);
}

int brski_cose_sign(struct brski_signer *sg, const struct est_slice *payload,
		    const struct est_slice *bag, size_t nbag, uint8_t **out,
		    size_t *len)
{
	struct cose_sign1 s;
	uint8_t prot[16], hash[32], der[MBEDTLS_ECDSA_MAX_LEN], raw[64];
	size_t plen, derlen = 0;
	int rc;

	if ((rc = cose_prot_alg(COSE_ALG_ES256, prot, &plen)) != 0)
		return rc;
	memset(&s, 0, sizeof(s));
	s.prot = (struct est_slice){ prot, plen };
	s.payload = *payload;
	if ((rc = tbs_hash(&s, hash)) != 0)
		return rc;
	if (mbedtls_pk_sign(&sg->pk, MBEDTLS_MD_SHA256, hash, 32, der, &derlen,
			    mbedtls_ctr_drbg_random, &sg->drbg) != 0)
		return -EINVAL;
	if ((rc = cose_sig_der_to_raw(der, derlen, raw, 32)) != 0)
		return rc;
	return cose_sign1_write(&s.prot, bag, nbag, payload, raw, sizeof(raw),
				out, len);
}

int brski_cert_eku(const uint8_t *der, size_t len, unsigned *bits)
{
	mbedtls_x509_crt crt;

	*bits = 0;
	mbedtls_x509_crt_init(&crt);
	if (mbedtls_x509_crt_parse_der(&crt, der, len) != 0) {
		mbedtls_x509_crt_free(&crt);
		return -EINVAL;
	}
	if (crt.ext_types & MBEDTLS_X509_EXT_EXTENDED_KEY_USAGE) {
		for (const mbedtls_x509_sequence *s = &crt.ext_key_usage; s; s = s->next) {
			if (MBEDTLS_OID_CMP(OID_CMC_RA, &s->buf) == 0)
				*bits |= BRSKI_EKU_CMCRA;
			if (MBEDTLS_OID_CMP(MBEDTLS_OID_SERVER_AUTH, &s->buf) == 0)
				*bits |= BRSKI_EKU_SERVER;
			if (MBEDTLS_OID_CMP(MBEDTLS_OID_CLIENT_AUTH, &s->buf) == 0)
				*bits |= BRSKI_EKU_CLIENT;
		}
	}
	mbedtls_x509_crt_free(&crt);
	return 0;
}

int brski_cert_keyid(const uint8_t *der, size_t len, uint8_t out[20])
{
	struct est_slice spki, body, alg, bits;
	uint8_t tag;
	size_t alg_total, total;
	int rc = est_cert_spki(der, len, &spki);

	if (rc)
		return rc;
	/* SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier, BIT STRING } */
	if ((rc = est_der_tlv(spki.ptr, spki.len, &tag, &body, &total)) != 0 ||
	    (rc = est_der_tlv(body.ptr, body.len, &tag, &alg, &alg_total)) != 0)
		return rc;
	if ((rc = est_der_tlv(body.ptr + alg_total, body.len - alg_total, &tag, &bits,
			      &total)) != 0 || tag != 0x03 || bits.len < 2)
		return rc ? rc : -EINVAL;
	/* the key bits without the unused-bits octet (RFC 5280 4.2.1.2 (1)) */
	return mbedtls_sha1_ret(bits.ptr + 1, bits.len - 1, out) ? -EINVAL : 0;
}

struct brski_trust {
	mbedtls_x509_crt ca;
};

struct brski_trust *brski_trust_load(const char *file)
{
	struct brski_trust *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	mbedtls_x509_crt_init(&t->ca);
	if (mbedtls_x509_crt_parse_file(&t->ca, file) < 0 || t->ca.raw.len == 0) {
		brski_trust_free(t);
		return NULL;
	}
	return t;
}

void brski_trust_free(struct brski_trust *t)
{
	if (!t)
		return;
	mbedtls_x509_crt_free(&t->ca);
	free(t);
}

size_t brski_trust_chain(const struct brski_trust *t, const uint8_t *der,
			 size_t len, struct est_slice *out, size_t max)
{
	struct est_slice issuer, subject, ci, cs;
	size_t n = 0;

	if (est_cert_names(der, len, &issuer, &subject) != 0)
		return 0;
	while (n < max) {
		const mbedtls_x509_crt *found = NULL;
		if (issuer.len == subject.len &&
		    memcmp(issuer.ptr, subject.ptr, issuer.len) == 0)
			break; /* reached a self-signed certificate */
		for (const mbedtls_x509_crt *c = &t->ca; c && c->raw.len; c = c->next) {
			if (est_cert_names(c->raw.p, c->raw.len, &ci, &cs) == 0 &&
			    cs.len == issuer.len && memcmp(cs.ptr, issuer.ptr, cs.len) == 0) {
				found = c;
				break;
			}
		}
		if (!found)
			break;
		out[n++] = (struct est_slice){ found->raw.p, found->raw.len };
		est_cert_names(found->raw.p, found->raw.len, &issuer, &subject);
	}
	return n;
}

int brski_certs_load(const char *file, struct est_slice **certs, size_t *n)
{
	mbedtls_x509_crt crt;
	size_t count = 0, i = 0;

	*certs = NULL;
	*n = 0;
	mbedtls_x509_crt_init(&crt);
	if (mbedtls_x509_crt_parse_file(&crt, file) != 0 || crt.raw.len == 0) {
		mbedtls_x509_crt_free(&crt);
		return -EINVAL;
	}
	for (mbedtls_x509_crt *c = &crt; c && c->raw.len; c = c->next)
		count++;
	struct est_slice *s = calloc(count, sizeof(*s));
	for (mbedtls_x509_crt *c = &crt; s && c && c->raw.len; c = c->next, i++) {
		uint8_t *p = malloc(c->raw.len);
		if (!p) {
			brski_certs_free(s, i);
			s = NULL;
			break;
		}
		memcpy(p, c->raw.p, c->raw.len);
		s[i] = (struct est_slice){ p, c->raw.len };
	}
	mbedtls_x509_crt_free(&crt);
	if (!s)
		return -ENOMEM;
	*certs = s;
	*n = count;
	return 0;
}

void brski_certs_free(struct est_slice *certs, size_t n)
{
	for (size_t i = 0; certs && i < n; i++)
		free((void *)certs[i].ptr);
	free(certs);
}

/* ---- start-up checks (H4) ----------------------------------------------- */

__attribute__((format(printf, 6, 7)))
static int cfg_fail(const struct estgw_config *cfg, char *err, size_t errlen,
		    unsigned line, const char *key, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err || !errlen)
		return -EINVAL;
	n = snprintf(err, errlen, "%s:%u: [brski] %s: ", cfg->path ? cfg->path : "?",
		     line, key);
	if (n >= 0 && (size_t)n < errlen) {
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int check_trust_file(const struct estgw_config *cfg, char *err,
			    size_t errlen, unsigned line, const char *key,
			    const char *file)
{
	struct brski_trust *t;

	if (!file)
		return cfg_fail(cfg, err, errlen, line, key, "required when [brski] is enabled");
	t = brski_trust_load(file);
	if (!t)
		return cfg_fail(cfg, err, errlen, line, key, "%s: no certificate found", file);
	brski_trust_free(t);
	return 0;
}

int brski_verify_config(const struct estgw_config *cfg, char *err,
			size_t errlen)
{
	const unsigned on = cfg->brski.enabled_src.line;
	struct est_slice *certs = NULL;
	struct brski_signer *sg;
	char why[200];
	unsigned eku = 0, need;
	size_t n = 0;
	int rc;

	if (!cfg->brski.enabled)
		return 0;
	if ((rc = check_trust_file(cfg, err, errlen, cfg->brski.manufacturer_trust ?
				   cfg->brski.manufacturer_trust_src.line : on,
				   "manufacturer_trust", cfg->brski.manufacturer_trust)) ||
	    (rc = check_trust_file(cfg, err, errlen, cfg->brski.masa_trust ?
				   cfg->brski.masa_trust_src.line : on, "masa_trust",
				   cfg->brski.masa_trust)))
		return rc;
	for (size_t i = 0; i < cfg->brski.nmfr; i++)
		if ((rc = check_trust_file(cfg, err, errlen, cfg->brski.mfr[i].line,
					   "manufacturer", cfg->brski.mfr[i].ca)))
			return rc;
	if (!cfg->brski.masa_certificate != !cfg->brski.masa_private_key)
		return cfg_fail(cfg, err, errlen, on, "masa_certificate",
				"masa_certificate and masa_private_key go together");
	if (brski_certs_load(cfg->server.certificate, &certs, &n) != 0 ||
	    brski_cert_eku(certs[0].ptr, certs[0].len, &eku) != 0) {
		brski_certs_free(certs, n);
		return cfg_fail(cfg, err, errlen, on, "enabled",
				"[server] certificate %s does not parse", cfg->server.certificate);
	}
	brski_certs_free(certs, n);
	need = BRSKI_EKU_CMCRA | BRSKI_EKU_SERVER |
	       (cfg->brski.masa_certificate ? 0 : BRSKI_EKU_CLIENT);
	if ((eku & need) != need)
		return cfg_fail(cfg, err, errlen, on, "enabled",
				"the registrar certificate ([server] certificate %s) lacks "
				"extendedKeyUsage%s%s%s (cBRSKI needs id-kp-cmcRA and serverAuth, "
				"and clientAuth when it is also the MASA client certificate)",
				cfg->server.certificate,
				(need & ~eku & BRSKI_EKU_CMCRA) ? " id-kp-cmcRA" : "",
				(need & ~eku & BRSKI_EKU_SERVER) ? " serverAuth" : "",
				(need & ~eku & BRSKI_EKU_CLIENT) ? " clientAuth" : "");
	sg = brski_signer_new(cfg->server.private_key, why, sizeof(why));
	if (!sg)
		return cfg_fail(cfg, err, errlen, on, "enabled",
				"registrar key ([server] private_key): %s", why);
	brski_signer_free(sg);
	return 0;
}

void brski_sha256(const uint8_t *p, size_t len, uint8_t out[32])
{
	mbedtls_sha256_ret(p, len, out, 0);
}
