/* dtls_openssl.c - the OpenSSL side of libcoap-3-openssl (the only file that
 * touches OpenSSL types). Another libcoap backend means another file like this.
 */
#include "dtls.h"

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
#include "metrics.h"

/* SPEC G1: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 first, then AEAD ECDHE-ECDSA
 * suites only (no CBC, no RSA key exchange, no EXPORT/DES/NULL/RC4). */
static const char cipher_list[] =
	"ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:"
	"ECDHE-ECDSA-AES128-CCM:ECDHE-ECDSA-AES256-GCM-SHA384:"
	"ECDHE-ECDSA-AES256-CCM:ECDHE-ECDSA-CHACHA20-POLY1305";
static const char groups[] = "P-256:X25519:P-384";
static const unsigned char sid_ctx[] = "estgw";

struct estgw_dtls {
	char *chain_file;
	X509_STORE *trust;
};

static X509_STORE *load_store(const char *file)
{
	X509_STORE *st = X509_STORE_new();
	BIO *in = BIO_new_file(file, "r");
	X509 *x;
	int n = 0;

	if (!st || !in) {
		X509_STORE_free(st);
		BIO_free(in);
		return NULL;
	}
	/* A fresh X509 per certificate: the store keeps references. */
	while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL))) {
		if (X509_STORE_add_cert(st, x))
			n++;
		X509_free(x);
	}
	ERR_clear_error();
	BIO_free(in);
	if (n == 0) {
		X509_STORE_free(st);
		return NULL;
	}
	return st;
}

struct estgw_dtls *estgw_dtls_new(const char *chain_file, const char *trust_file)
{
	struct estgw_dtls *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->chain_file = strdup(chain_file);
	d->trust = load_store(trust_file);
	if (!d->chain_file || !d->trust) {
		log_err("dtls", "cannot load the client trust bundle %s", trust_file);
		estgw_dtls_free(d);
		return NULL;
	}
	return d;
}

void estgw_dtls_free(struct estgw_dtls *d)
{
	if (!d)
		return;
	X509_STORE_free(d->trust);
	free(d->chain_file);
	free(d);
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
	SSL_set_options(ssl, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_set_msg_callback(ssl, on_msg);
	if (!SSL_set_min_proto_version(ssl, DTLS1_2_VERSION) ||
	    !SSL_set_cipher_list(ssl, cipher_list) ||
	    !SSL_set1_groups_list(ssl, groups) ||
	    !SSL_set_session_id_context(ssl, sid_ctx, sizeof(sid_ctx) - 1) ||
	    !SSL_set1_verify_cert_store(ssl, d->trust)) {
		log_err("dtls", "cannot apply the DTLS cipher/group/trust settings");
		return 0;
	}
	if (SSL_use_certificate_chain_file(ssl, d->chain_file) != 1) {
		log_err("dtls", "cannot load the server chain from %s", d->chain_file);
		return 0;
	}
	return 1;
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

const char *estgw_dtls_cipher(void *tls)
{
	return tls ? SSL_get_cipher_name((SSL *)tls) : "-";
}

const char *estgw_dtls_backend_version(void)
{
	return OpenSSL_version(OPENSSL_VERSION);
}
