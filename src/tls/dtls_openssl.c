/* dtls_openssl.c - the OpenSSL side of libcoap-3-openssl (the only file that
 * touches OpenSSL types). Another libcoap backend means another file like this.
 * The one X.509 verifier: the handshake, and every later question of which
 * configured bundle a client certificate chains to (IDevID/LDevID kind, the
 * cBRSKI manufacturer line), is answered here with stores built once.
 * The key log is keylog.c's.
 */
#include "tls/dtls.h"
#include "tls/hs_trim.h"
#include "tls/keylog.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "estgw/log.h"
#include "ops/metrics.h"

/* G1: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 first, then AEAD ECDHE-ECDSA
 * suites only (no CBC, no RSA key exchange, no EXPORT/DES/NULL/RC4). */
static const char cipher_list[] =
	"ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:"
	"ECDHE-ECDSA-AES128-CCM:ECDHE-ECDSA-AES256-GCM-SHA384:"
	"ECDHE-ECDSA-AES256-CCM:ECDHE-ECDSA-CHACHA20-POLY1305";
static const char groups[] = "P-256:X25519:P-384";
static const unsigned char sid_ctx[] = "estgw";
/* "CLIENT_RANDOM <64 hex> <96 hex>" and the TLS 1.3 labels fit easily */

/* A cBRSKI manufacturer bundle and the caller's id for it. */
struct mfr_store {
	X509_STORE *st;
	int id;
};

/* Everything is parsed once here; the per-connection hook only takes
 * references (see dtls.h and docs/libraries.md "Handshake cost"). */
struct estgw_dtls {
	X509 *leaf;
	STACK_OF(X509) *chain;           /* the rest of the server chain */
	EVP_PKEY *key;
	X509_STORE *trust;  /* every accepted device CA (the handshake) */
	STACK_OF(X509_NAME) *ca_names;   /* CertificateRequest CA list */
	X509_STORE *idevid; /* manufacturer CAs, or NULL */
	X509_STORE *ldevid; /* EST CA certificates, or NULL */
	const SSL_CTX *names_on; /* the SSL_CTX given ca_names, or NULL */
	const SSL_CTX *ciphers_on; /* the SSL_CTX given cipher_list, or NULL */
	struct mfr_store *mfr; /* cBRSKI manufacturer bundles, in order */
	size_t nmfr;
	int allow_expired_idevid;
};

/* X509_STORE ex_data index 0 is the "app data" slot every OpenSSL class
 * reserves; the handshake store carries our struct there for the verify
 * callback (no global needed). */
#define STORE_APP_DATA 0

/* Add every certificate of a PEM file to @p st; the count added. */
static int add_certs(X509_STORE *st, const char *file)
{
	BIO *in = BIO_new_file(file, "r");
	X509 *x;
	int n = 0;

	if (!in)
		return 0;
	/* A fresh X509 per certificate: the store keeps references. */
	while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL))) {
		if (X509_STORE_add_cert(st, x))
			n++;
		X509_free(x);
	}
	ERR_clear_error();
	BIO_free(in);
	return n;
}

static X509_STORE *load_store(const char *file)
{
	X509_STORE *st = X509_STORE_new();
	int n = st ? add_certs(st, file) : 0;

	if (n == 0) {
		X509_STORE_free(st);
		return NULL;
	}
	return st;
}

/** An optional bundle: NULL file is fine, an unreadable one is not. */
static int load_optional(const char *file, X509_STORE **st)
{
	*st = NULL;
	if (!file)
		return 0;
	*st = load_store(file);
	if (!*st) {
		log_err("dtls", "cannot load the certificate bundle %s", file);
		return -EINVAL;
	}
	return 0;
}

/* The server chain file: leaf first, then the intermediates. */
static int load_chain(struct estgw_dtls *d, const char *file)
{
	BIO *in = BIO_new_file(file, "r");
	X509 *x;

	if (!in)
		return -ENOENT;
	d->leaf = PEM_read_bio_X509(in, NULL, NULL, NULL);
	d->chain = sk_X509_new_null();
	while (d->leaf && d->chain &&
	       (x = PEM_read_bio_X509(in, NULL, NULL, NULL))) {
		if (!sk_X509_push(d->chain, x)) {
			X509_free(x);
			break;
		}
	}
	ERR_clear_error();
	BIO_free(in);
	return d->leaf && d->chain ? 0 : -EINVAL;
}

static EVP_PKEY *load_key(const char *file)
{
	BIO *in = BIO_new_file(file, "r");
	EVP_PKEY *key = in ? PEM_read_bio_PrivateKey(in, NULL, NULL, NULL) : NULL;

	BIO_free(in);
	return key;
}

struct estgw_dtls *estgw_dtls_new(const struct estgw_dtls_conf *conf)
{
	struct estgw_dtls *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->allow_expired_idevid = conf->allow_expired_idevid;
	if (load_chain(d, conf->chain_file) != 0) {
		log_err("dtls", "cannot load the server chain %s", conf->chain_file);
		goto fail;
	}
	d->key = load_key(conf->key_file);
	if (!d->key || X509_check_private_key(d->leaf, d->key) != 1) {
		log_err("dtls", "cannot load the server key %s (or it does not match)",
			conf->key_file);
		goto fail;
	}
	d->trust = load_store(conf->trust_file);
	d->ca_names = SSL_load_client_CA_file(conf->trust_file);
	if (!d->trust || !d->ca_names) {
		log_err("dtls", "cannot load the client trust bundle %s", conf->trust_file);
		goto fail;
	}
	if (load_optional(conf->idevid_file, &d->idevid) != 0 ||
	    load_optional(conf->ldevid_file, &d->ldevid) != 0 ||
	    !X509_STORE_set_ex_data(d->trust, STORE_APP_DATA, d))
		goto fail;
	return d;
fail:
	ERR_clear_error();
	estgw_dtls_free(d);
	return NULL;
}

static int add_trust(struct estgw_dtls *d, const char *file)
{
	if (add_certs(d->trust, file) == 0 ||
	    !SSL_add_file_cert_subjects_to_stack(d->ca_names, file)) {
		log_err("dtls", "cannot load client trust from %s", file);
		return -EINVAL;
	}
	d->names_on = NULL; /* the CTX gets the longer list again */
	return 0;
}

int estgw_dtls_add_manufacturer(struct estgw_dtls *d, const char *file, int id)
{
	struct mfr_store *m;
	X509_STORE *st;

	if (id == ESTGW_DTLS_MFR_NONE || add_trust(d, file) != 0)
		return -EINVAL;
	m = realloc(d->mfr, (d->nmfr + 1) * sizeof(*m));
	if (!m)
		return -ENOMEM;
	d->mfr = m;
	st = load_store(file);
	if (!st) {
		log_err("dtls", "cannot load the manufacturer bundle %s", file);
		return -EINVAL;
	}
	d->mfr[d->nmfr++] = (struct mfr_store){ st, id };
	return 0;
}

void estgw_dtls_free(struct estgw_dtls *d)
{
	if (!d)
		return;
	X509_free(d->leaf);
	sk_X509_pop_free(d->chain, X509_free);
	EVP_PKEY_free(d->key);
	/* a handshake still running on this store must not reach freed memory */
	if (d->trust)
		X509_STORE_set_ex_data(d->trust, STORE_APP_DATA, NULL);
	X509_STORE_free(d->trust);
	X509_STORE_free(d->idevid);
	X509_STORE_free(d->ldevid);
	for (size_t i = 0; i < d->nmfr; i++)
		X509_STORE_free(d->mfr[i].st);
	free(d->mfr);
	sk_X509_NAME_pop_free(d->ca_names, X509_NAME_free);
	free(d);
}

/** 1 when one of @p chain's certificates is in @p st. */
static int chain_meets(STACK_OF(X509) *chain, X509_STORE *st)
{
	STACK_OF(X509_OBJECT) *objs = st ? X509_STORE_get0_objects(st) : NULL;

	for (int i = 0; objs && i < sk_X509_num(chain); i++)
		for (int j = 0; j < sk_X509_OBJECT_num(objs); j++) {
			X509 *c = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, j));
			if (c && X509_cmp(c, sk_X509_value(chain, i)) == 0)
				return 1;
		}
	return 0;
}

/* Replaces libcoap's verify callback when expired IDevIDs are allowed: with
 * our set-up (peer verification on, no self-signed, no CRLs) libcoap's
 * callback keeps OpenSSL's verdict except for its context-wide
 * allow_expired_certs, which we leave off; this one overrides only an
 * expired leaf whose chain reaches the manufacturer bundle (G3). */
static int verify_expired_idevid(int ok, X509_STORE_CTX *ctx)
{
	struct estgw_dtls *d;

	if (ok)
		return 1;
	if (X509_STORE_CTX_get_error(ctx) != X509_V_ERR_CERT_HAS_EXPIRED ||
	    X509_STORE_CTX_get_error_depth(ctx) != 0)
		return 0;
	d = X509_STORE_get_ex_data(X509_STORE_CTX_get0_store(ctx), STORE_APP_DATA);
	if (!d || !d->allow_expired_idevid ||
	    !chain_meets(X509_STORE_CTX_get0_chain(ctx), d->idevid))
		return 0;
	X509_STORE_CTX_set_error(ctx, X509_V_OK);
	return 1;
}

/* The CA names sent in CertificateRequest (libcoap sets them only when it
 * loads its PEM files itself), set once on libcoap's context-wide SSL_CTX:
 * each connection uses the CTX's list by reference, where a list set per
 * connection was a copy of every name for as long as the session lasted
 * (about 0.6 KB per CA and session). A new struct estgw_dtls (reload) sets
 * its own list on the CTX with its first handshake. */
static void set_ca_names(struct estgw_dtls *d, SSL *ssl)
{
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
	STACK_OF(X509_NAME) *copy;

	if (!ctx || d->names_on == ctx)
		return;
	copy = SSL_dup_CA_list(d->ca_names);
	if (!copy)
		return;
	SSL_CTX_set_client_CA_list(ctx, copy);
	d->names_on = ctx;
}

/* The cipher list once on libcoap's SSL_CTX, which every connection
 * without a list of its own reads: a list set per connection costs two
 * stacks (about 0.6 KB) for as long as the session lives. A connection that
 * has a list of its own (not the CTX's) gets ours too. 1, or 0 on failure. */
static int set_ciphers(struct estgw_dtls *d, SSL *ssl)
{
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);

	if (ctx && d->ciphers_on != ctx) {
		if (!SSL_CTX_set_cipher_list(ctx, cipher_list))
			return 0;
		d->ciphers_on = ctx;
	}
	if (!ctx || SSL_get_ciphers(ssl) != SSL_CTX_get_ciphers(ctx))
		return SSL_set_cipher_list(ssl, cipher_list);
	return 1;
}

/* A fatal alert during the handshake is a failed handshake; its
 * description is the reason ("peer_" when the client sent it). */
static void on_msg(int write_p, int version, int content_type, const void *buf,
		   size_t len, SSL *ssl, void *arg)
{
	const unsigned char *p = buf;
	char reason[64];
	size_t n;

	if (content_type != SSL3_RT_ALERT || len < 2 || p[0] != SSL3_AL_FATAL ||
	    SSL_is_init_finished(ssl))
		return;
	n = (size_t)snprintf(reason, sizeof(reason), "%s%s", write_p ? "" : "peer_",
			     SSL_alert_desc_string_long(p[1]));
	for (size_t i = 0; i < n && i < sizeof(reason); i++)
		reason[i] = reason[i] == ' ' ? '_' : (char)tolower((unsigned char)reason[i]);
	metrics_handshake_failure(reason);
}

int estgw_dtls_setup_session(struct estgw_dtls *d, void *tls)
{
	SSL *ssl = tls;

	if (!ssl || !d)
		return 0;
	/* libcoap's context-wide SSL_CTX; the master secret comes later in
	 * this handshake, so it is logged. */
	estgw_keylog_attach(SSL_get_SSL_CTX(ssl));
	estgw_hs_trim_learn(ssl);
	SSL_set_options(ssl, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_set_msg_callback(ssl, on_msg);
	if (!SSL_set_min_proto_version(ssl, DTLS1_2_VERSION) ||
	    !set_ciphers(d, ssl) ||
	    !SSL_set1_groups_list(ssl, groups) ||
	    !SSL_set_session_id_context(ssl, sid_ctx, sizeof(sid_ctx) - 1) ||
	    !SSL_set1_verify_cert_store(ssl, d->trust)) {
		log_err("dtls", "cannot apply the DTLS cipher/group/trust settings");
		return 0;
	}
	if (d->allow_expired_idevid)
		SSL_set_verify(ssl, SSL_get_verify_mode(ssl), verify_expired_idevid);
	/* References to the objects parsed at start-up: no file or PEM work
	 * per handshake. Overrides whatever libcoap set from its PEM paths. */
	if (SSL_use_cert_and_key(ssl, d->leaf, d->key, d->chain, 1) != 1) {
		log_err("dtls", "cannot set the server chain and key");
		return 0;
	}
	set_ca_names(d, ssl);
	return 1;
}

/** 1 when @p cert (with the peer's @p chain as helpers) chains to a
 *  certificate of @p st; time is not checked (the handshake did). */
static int chains_to(X509_STORE *st, X509 *cert, STACK_OF(X509) *chain)
{
	X509_STORE_CTX *ctx;
	int ok = 0;

	if (!st || !(ctx = X509_STORE_CTX_new()))
		return 0;
	if (X509_STORE_CTX_init(ctx, st, cert, chain)) {
		X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN |
						      X509_V_FLAG_NO_CHECK_TIME);
		ok = X509_verify_cert(ctx) == 1;
	}
	X509_STORE_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

int estgw_dtls_peer_kind(struct estgw_dtls *d, void *tls,
			 enum estgw_dtls_kind *kind, int *expired)
{
	X509 *cert = tls ? SSL_get1_peer_certificate(tls) : NULL;
	STACK_OF(X509) *chain;

	*kind = ESTGW_DTLS_KIND_OTHER;
	*expired = 0;
	if (!cert || !d)
		return -ENOENT;
	chain = SSL_get_peer_cert_chain(tls);
	*expired = X509_cmp_current_time(X509_get0_notAfter(cert)) < 0;
	if (chains_to(d->idevid, cert, chain))
		*kind = ESTGW_DTLS_KIND_IDEVID;
	else if (chains_to(d->ldevid, cert, chain))
		*kind = ESTGW_DTLS_KIND_LDEVID;
	X509_free(cert);
	return 0;
}

int estgw_dtls_peer_manufacturer(struct estgw_dtls *d, void *tls)
{
	X509 *cert = tls ? SSL_get1_peer_certificate(tls) : NULL;
	STACK_OF(X509) *chain;
	int id = ESTGW_DTLS_MFR_NONE;

	if (!cert || !d)
		goto out;
	chain = SSL_get_peer_cert_chain(tls);
	for (size_t i = 0; i < d->nmfr && id == ESTGW_DTLS_MFR_NONE; i++)
		if (chains_to(d->mfr[i].st, cert, chain))
			id = d->mfr[i].id;
out:
	X509_free(cert);
	return id;
}

int estgw_dtls_peer_subject(void *tls, char *buf, size_t len)
{
	X509 *cert = tls ? SSL_get1_peer_certificate(tls) : NULL;
	BIO *bio;
	int n;

	if (!cert) {
		snprintf(buf, len, "-");
		return -ENOENT;
	}
	bio = BIO_new(BIO_s_mem());
	if (!bio) {
		X509_free(cert);
		snprintf(buf, len, "-");
		return -ENOMEM;
	}
	X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0,
			   XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	n = BIO_read(bio, buf, (int)(len - 1));
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(bio);
	X509_free(cert);
	return 0;
}

int estgw_dtls_peer_cert_der(void *tls, uint8_t **der, size_t *len)
{
	X509 *cert = tls ? SSL_get1_peer_certificate(tls) : NULL;
	unsigned char *p = NULL;
	int n;

	if (!cert)
		return -ENOENT;
	n = i2d_X509(cert, &p);
	X509_free(cert);
	if (n <= 0)
		return -EINVAL;
	*der = malloc((size_t)n);
	if (!*der) {
		OPENSSL_free(p);
		return -ENOMEM;
	}
	memcpy(*der, p, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(p);
	return 0;
}

int estgw_dtls_tls_unique(void *tls, uint8_t *out, size_t outsize, size_t *len)
{
	SSL *ssl = tls;
	size_t n;

	if (!ssl)
		return -ENOENT;
	/* The first Finished of the handshake is the client's on a full
	 * handshake and the server's on an abbreviated (resumed) one. */
	if (SSL_session_reused(ssl))
		n = SSL_get_finished(ssl, out, outsize);
	else
		n = SSL_get_peer_finished(ssl, out, outsize);
	if (n == 0 || n > outsize)
		return -EINVAL;
	*len = n;
	return 0;
}

/* ---- idle sessions: record buffers back (J2) ---------------------------- */

/* SSL_free_buffers() could free a buffer still in use before these releases
 * (CVE-2024-4741): one row per affected line, its first fixed release. */
static const struct {
	unsigned long line, fixed;
} free_buffers_fixed[] = {
	{ 0x30000000UL, 0x300000e0UL }, /* 3.0.14 */
	{ 0x30100000UL, 0x30100060UL }, /* 3.1.6 */
	{ 0x30200000UL, 0x30200020UL }, /* 3.2.2 */
	{ 0x30300000UL, 0x30300010UL }, /* 3.3.1 */
};

static int free_buffers_safe(void)
{
	static int safe = -1;
	unsigned long v = OpenSSL_version_num() & 0xfffffff0UL;

	if (safe >= 0)
		return safe;
	safe = v >= 0x30400000UL; /* later lines never had the bug */
	for (size_t i = 0; i < sizeof(free_buffers_fixed) / sizeof(free_buffers_fixed[0]); i++)
		if ((v & 0xfff00000UL) == free_buffers_fixed[i].line)
			safe = v >= free_buffers_fixed[i].fixed;
	if (!safe)
		log_info("dtls", "%s: idle sessions keep their record buffers "
			 "(SSL_free_buffers needs 3.0.14 or later, CVE-2024-4741)",
			 OpenSSL_version(OPENSSL_VERSION));
	return safe;
}

int estgw_dtls_idle(void *tls)
{
	SSL *ssl = tls;

	/* SSL_free_buffers refuses (0) while a record is half read or written;
	 * it says 1 also when there was nothing to free, so ask for a pending
	 * read first. */
	if (!ssl || !free_buffers_safe() || SSL_in_init(ssl) || SSL_has_pending(ssl))
		return 0;
	return SSL_free_buffers(ssl);
}

int estgw_dtls_trim(void *tls)
{
	return estgw_hs_trim(tls);
}

void estgw_dtls_wake(void *tls)
{
	/* makes only what is missing */
	if (tls && !SSL_alloc_buffers(tls))
		ERR_clear_error();
}

const char *estgw_dtls_cipher(void *tls)
{
	return tls ? SSL_get_cipher_name((SSL *)tls) : "-";
}

const char *estgw_dtls_backend_version(void)
{
	return OpenSSL_version(OPENSSL_VERSION);
}
