/* pop_client.c - a test device for POP linking (docs/conformance.md G4,
 * RFC 7030 3.5): opens a DTLS session to estgw with libcoap, reads the
 * session's tls-unique (RFC 5929: the first Finished message) with OpenSSL,
 * makes a fresh P-256 key and a CSR whose challengePassword is the Base64 of
 * that tls-unique (or of a wrong one, or none), and POSTs it on the same
 * session.
 *
 * Test-side code only: it shares nothing with estgw (no codec, no
 * translate) and is not installed.
 *
 * usage: pop_client -c CERT -k KEY -C CAFILE [-p right|wrong|none]
 *                   [-n CN] [-s SERIAL] [-o OUT] [-a ACCEPT] URI
 * Prints the response code ("2.04", "4.01 diagnostic") on stderr like
 * coap-client, writes the payload to OUT, and exits 0 on 2.xx, 1 on another
 * code, 2 on a local or transport failure.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <coap3/coap.h>

#include "dtls_client.h"
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct opts {
	const char *cert, *key, *ca, *pop, *cn, *serial, *out, *uri;
	int accept;
};

struct result {
	int done;
	coap_pdu_code_t code;
	unsigned char *data;
	size_t len;
};

static struct result res; /* the response handler has no user pointer */

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
				   const coap_pdu_t *rcvd, const coap_mid_t id)
{
	size_t len = 0, off = 0, total = 0;
	const uint8_t *data = NULL;

	(void)s; (void)sent; (void)id;
	res.code = coap_pdu_get_code(rcvd);
	if (coap_get_data_large(rcvd, &len, &data, &off, &total) && data) {
		free(res.data);
		res.data = malloc(len ? len : 1);
		if (res.data)
			memcpy(res.data, data, len);
		res.len = len;
	}
	res.done = 1;
	return COAP_RESPONSE_OK;
}

static int wait_response(coap_context_t *ctx, int seconds)
{
	time_t end = time(NULL) + seconds;

	while (!res.done && time(NULL) < end)
		coap_io_process(ctx, 200);
	return res.done ? 0 : -1;
}

/* The Base64 text of @p in (OpenSSL's encoder; no line breaks). */
static void b64(const unsigned char *in, size_t len, char *out, size_t outlen)
{
	if (outlen < 4 * ((len + 2) / 3) + 1) {
		out[0] = '\0';
		return;
	}
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* A CSR for a new P-256 key; challengePassword = @p password unless NULL. */
static unsigned char *make_csr(const struct opts *o, const char *password,
			       int *len)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	unsigned char *der = NULL;

	if (!key || !req || !name ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					(const unsigned char *)o->cn, -1, -1, 0) ||
	    (o->serial && !X509_NAME_add_entry_by_txt(name, "serialNumber", MBSTRING_ASC,
						      (const unsigned char *)o->serial,
						      -1, -1, 0)) ||
	    !X509_REQ_set_version(req, 0) || !X509_REQ_set_subject_name(req, name) ||
	    !X509_REQ_set_pubkey(req, key) ||
	    (password && !X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword,
						    MBSTRING_ASC,
						    (const unsigned char *)password, -1)) ||
	    !X509_REQ_sign(req, key, EVP_sha256()))
		*len = -1;
	else
		*len = i2d_X509_REQ(req, &der);
	X509_NAME_free(name);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
	return *len > 0 ? der : NULL;
}

static coap_pdu_t *request(coap_session_t *s, coap_pdu_code_t code,
			   const coap_uri_t *uri)
{
	coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON, code,
					coap_new_message_id(s),
					coap_session_max_pdu_size(s));
	uint8_t tok[8];
	size_t toklen, i = 0;

	if (!pdu)
		return NULL;
	coap_session_new_token(s, &toklen, tok);
	coap_add_token(pdu, toklen, tok);
	/* Uri-Path options, one per segment (4.3.1 has no uri-to-options) */
	while (i < uri->path.length) {
		size_t n = 0;
		while (i + n < uri->path.length && uri->path.s[i + n] != '/')
			n++;
		if (n)
			coap_add_option(pdu, COAP_OPTION_URI_PATH, n, uri->path.s + i);
		i += n + 1;
	}
	return pdu;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	int c;

	o->pop = "right";
	o->cn = "device-001";
	o->serial = "SN001";
	o->accept = -1;
	while ((c = getopt(argc, argv, "c:k:C:p:n:s:o:a:")) != -1) {
		switch (c) {
		case 'c': o->cert = optarg; break;
		case 'k': o->key = optarg; break;
		case 'C': o->ca = optarg; break;
		case 'p': o->pop = optarg; break;
		case 'n': o->cn = optarg; break;
		case 's': o->serial = *optarg ? optarg : NULL; break;
		case 'o': o->out = optarg; break;
		case 'a': o->accept = atoi(optarg); break;
		default: return -1;
		}
	}
	if (optind + 1 != argc || !o->cert || !o->key || !o->ca)
		return -1;
	o->uri = argv[optind];
	return 0;
}

static coap_session_t *open_session(coap_context_t *ctx, const struct opts *o,
				    coap_uri_t *uri)
{
	return test_dtls_open(ctx, o->cert, o->key, o->ca, o->uri, uri);
}

/* The tls-unique as the client sees it: its own Finished on a full
 * handshake (the peer's on a resumed one). */
static int tls_unique(coap_session_t *s, unsigned char *out, size_t *len)
{
	coap_tls_library_t lib;
	SSL *ssl = coap_session_get_tls(s, &lib);

	if (!ssl || lib != COAP_TLS_LIBRARY_OPENSSL)
		return -1;
	*len = SSL_session_reused(ssl) ? SSL_get_peer_finished(ssl, out, 64) :
					 SSL_get_finished(ssl, out, 64);
	return *len > 0 && *len <= 64 ? 0 : -1;
}

static int send_csr(coap_context_t *ctx, coap_session_t *s, const struct opts *o,
		    const coap_uri_t *uri)
{
	unsigned char tu[64], *csr;
	char pw[128];
	size_t tulen = 0;
	uint8_t buf[4];
	int len;

	if (tls_unique(s, tu, &tulen) != 0) {
		fprintf(stderr, "pop_client: no tls-unique\n");
		return -1;
	}
	if (strcmp(o->pop, "wrong") == 0)
		tu[0] ^= 0x55;
	b64(tu, tulen, pw, sizeof(pw));
	csr = make_csr(o, strcmp(o->pop, "none") == 0 ? NULL : pw, &len);
	coap_pdu_t *pdu = csr ? request(s, COAP_REQUEST_CODE_POST, uri) : NULL;
	if (!pdu) {
		OPENSSL_free(csr);
		return -1;
	}
	coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT,
			coap_encode_var_safe(buf, sizeof(buf), 286), buf);
	if (o->accept >= 0)
		coap_add_option(pdu, COAP_OPTION_ACCEPT,
				coap_encode_var_safe(buf, sizeof(buf), (unsigned)o->accept), buf);
	coap_add_data(pdu, (size_t)len, csr);
	OPENSSL_free(csr);
	res.done = 0;
	return coap_send(s, pdu) == COAP_INVALID_MID ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	coap_uri_t uri, core;
	coap_context_t *ctx;
	coap_session_t *s;
	int rc = 2;

	if (parse_args(argc, argv, &o) != 0) {
		fprintf(stderr, "usage: pop_client -c CERT -k KEY -C CAFILE [-p right|wrong|none] "
				"[-n CN] [-s SERIAL] [-o OUT] [-a ACCEPT] coaps://HOST:PORT/PATH\n");
		return 2;
	}
	coap_startup();
	coap_set_log_level(LOG_WARNING);
	ctx = coap_new_context(NULL);
	if (!ctx)
		return 2;
	coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
	coap_register_response_handler(ctx, on_response);
	s = open_session(ctx, &o, &uri);
	/* First a GET on the same session: the handshake completes and the
	 * tls-unique exists before the CSR is made. */
	core = uri;
	core.path.s = (const uint8_t *)".well-known/core";
	core.path.length = 16;
	core.query.length = 0;
	coap_pdu_t *get = s ? request(s, COAP_REQUEST_CODE_GET, &core) : NULL;
	if (!get || coap_send(s, get) == COAP_INVALID_MID || wait_response(ctx, 20) != 0) {
		fprintf(stderr, "pop_client: no DTLS session / no answer to GET\n");
	} else if (send_csr(ctx, s, &o, &uri) != 0 || wait_response(ctx, 30) != 0) {
		fprintf(stderr, "pop_client: no answer to the POST\n");
	} else {
		fprintf(stderr, "%d.%02d %.*s\n", res.code >> 5, res.code & 0x1f,
			(res.code >> 5) == 2 ? 0 : (int)res.len, res.data ? (char *)res.data : "");
		if (o.out && (res.code >> 5) == 2) {
			FILE *f = fopen(o.out, "wb");
			if (f) {
				fwrite(res.data ? res.data : (unsigned char *)"", 1, res.len, f);
				fclose(f);
			}
		}
		rc = (res.code >> 5) == 2 ? 0 : 1;
	}
	free(res.data);
	if (s)
		coap_session_release(s);
	coap_free_context(ctx);
	coap_cleanup();
	return rc;
}
