/* bare_server.c - the floor of our own stack (bench-only): a minimal libcoap
 * 4.3.1 DTLS PKI server with one answer and no EST.
 *
 * Any GET is answered 2.05 with a fixed payload of --payload bytes (default
 * 900, about a /crts answer), any POST 2.04 with the same; client
 * certificates are required and verified like estgw does. The DTLS settings
 * are estgw's (cipher list, groups, session-id context, per-connection trust
 * store), so estgw / bare isolates what estgw itself adds. --creds selects:
 *   pem   libcoap loads the PEM files itself in every ClientHello (stock use)
 *   once  parsed once and set from the TLS set-up hook, libcoap given empty
 *         paths (the trick estgw uses; docs/libraries.md "Handshake cost")
 * Usage: bare-server --listen 127.0.0.1:PORT --cert CHAIN --key KEY --trust PEM
 *                    [--creds pem|once] [--payload N] [--max-sessions N]
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <coap3/coap.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

struct creds {
	X509 *leaf;
	STACK_OF(X509) *chain;
	EVP_PKEY *key;
	X509_STORE *trust;
	int once;
};

static volatile sig_atomic_t quit;
static uint8_t *payload;
static size_t payload_len = 900;

static void on_signal(int sig)
{
	quit = 1;
}

static int load(struct creds *c, const char *cert, const char *key, const char *trust)
{
	FILE *f = fopen(cert, "r");
	X509 *x;

	if (!f)
		return -1;
	c->leaf = PEM_read_X509(f, NULL, NULL, NULL);
	c->chain = sk_X509_new_null();
	while (c->chain && (x = PEM_read_X509(f, NULL, NULL, NULL)))
		sk_X509_push(c->chain, x);
	fclose(f);
	f = fopen(key, "r");
	if (!f)
		return -1;
	c->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	c->trust = X509_STORE_new();
	ERR_clear_error();
	return c->leaf && c->key && c->trust &&
	       X509_STORE_load_file(c->trust, trust) == 1 ? 0 : -1;
}

static int on_tls_setup(void *tls, coap_dtls_pki_t *setup)
{
	SSL *ssl = tls;
	static const unsigned char sid[] = "bare";
	struct creds *c = setup->cn_call_back_arg;

	SSL_set_options(ssl, SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (!SSL_set_cipher_list(ssl, "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:"
				      "ECDHE-ECDSA-AES128-CCM:ECDHE-ECDSA-AES256-GCM-SHA384") ||
	    !SSL_set1_groups_list(ssl, "P-256:X25519:P-384") ||
	    !SSL_set_session_id_context(ssl, sid, sizeof(sid) - 1) ||
	    !SSL_set1_verify_cert_store(ssl, c->trust))
		return 0;
	if (c->once)
		return SSL_use_cert_and_key(ssl, c->leaf, c->key, c->chain, 1) == 1;
	return 1;
}

static void hnd_any(coap_resource_t *res, coap_session_t *s, const coap_pdu_t *req,
		    const coap_string_t *query, coap_pdu_t *resp)
{
	int post = coap_pdu_get_code(req) == COAP_REQUEST_CODE_POST;

	coap_pdu_set_code(resp, post ? COAP_RESPONSE_CODE(204) : COAP_RESPONSE_CODE(205));
	coap_add_data_large_response(res, s, req, resp, query, COAP_MEDIATYPE_APPLICATION_OCTET_STREAM,
				     -1, 0, payload_len, payload, NULL, NULL);
}

static int set_pki(coap_context_t *ctx, struct creds *c, const char *cert, const char *key,
		   const char *trust)
{
	coap_dtls_pki_t pki;

	memset(&pki, 0, sizeof(pki));
	pki.version = COAP_DTLS_PKI_SETUP_VERSION;
	pki.verify_peer_cert = 1;
	pki.check_common_ca = 1;
	pki.cert_chain_validation = 1;
	pki.cert_chain_verify_depth = 4;
	pki.additional_tls_setup_call_back = on_tls_setup;
	pki.cn_call_back_arg = c;
	pki.pki_key.key_type = COAP_PKI_KEY_PEM;
	pki.pki_key.key.pem.public_cert = c->once ? "" : cert;
	pki.pki_key.key.pem.private_key = c->once ? "" : key;
	pki.pki_key.key.pem.ca_file = c->once ? "" : trust;
	return coap_context_set_pki(ctx, &pki) ? 0 : -1;
}

static int add_endpoint(coap_context_t *ctx, const char *listen)
{
	char host[64];
	const char *colon = strrchr(listen, ':');
	coap_address_t addr;

	if (!colon || (size_t)(colon - listen) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
	coap_address_init(&addr);
	addr.addr.sin.sin_family = AF_INET;
	addr.addr.sin.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &addr.addr.sin.sin_addr) != 1)
		return -1;
	addr.size = sizeof(addr.addr.sin);
	return coap_new_endpoint(ctx, &addr, COAP_PROTO_DTLS) ? 0 : -1;
}

static void quiet_log(coap_log_t level, const char *message)
{
	if (level <= LOG_ERR && !strstr(message, "No Server Certificate defined"))
		fputs(message, stderr);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", 1, NULL, 'l' }, { "cert", 1, NULL, 'c' }, { "key", 1, NULL, 'k' },
		{ "trust", 1, NULL, 't' }, { "creds", 1, NULL, 'm' }, { "payload", 1, NULL, 'p' },
		{ "max-sessions", 1, NULL, 's' }, { NULL, 0, NULL, 0 },
	};
	const char *listen = NULL, *cert = NULL, *key = NULL, *trust = NULL;
	unsigned max_sessions = 20000;
	struct creds c = { .once = 1 };
	coap_context_t *ctx = NULL;
	coap_resource_t *any;
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'l': listen = optarg; break;
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 't': trust = optarg; break;
		case 'm': c.once = strcmp(optarg, "pem") != 0; break;
		case 'p': payload_len = (size_t)atol(optarg); break;
		case 's': max_sessions = (unsigned)atol(optarg); break;
		default: goto usage;
		}
	}
	if (!listen || !cert || !key || !trust)
		goto usage;
	payload = calloc(payload_len ? payload_len : 1, 1);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	coap_startup();
	coap_set_log_handler(quiet_log);
	coap_set_log_level(LOG_ERR);
	coap_dtls_set_log_level(LOG_ERR);
	if (!payload || load(&c, cert, key, trust) != 0 || !(ctx = coap_new_context(NULL))) {
		fprintf(stderr, "bare-server: cannot load the credentials\n");
		goto out;
	}
	coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
	coap_context_set_max_idle_sessions(ctx, max_sessions);
	coap_context_set_session_timeout(ctx, 3600);
	any = coap_resource_unknown_init2(hnd_any, 0);
	coap_register_request_handler(any, COAP_REQUEST_GET, hnd_any);
	coap_register_request_handler(any, COAP_REQUEST_POST, hnd_any);
	coap_add_resource(ctx, any);
	if (set_pki(ctx, &c, cert, key, trust) != 0 || add_endpoint(ctx, listen) != 0) {
		fprintf(stderr, "bare-server: cannot listen on %s\n", listen);
		goto out;
	}
	fprintf(stderr, "bare-server: ready on %s, credentials %s\n", listen,
		c.once ? "parsed once" : "PEM per handshake");
	while (!quit)
		coap_io_process(ctx, 1000);
	rc = 0;
out:
	if (ctx)
		coap_free_context(ctx);
	coap_cleanup();
	X509_free(c.leaf);
	sk_X509_pop_free(c.chain, X509_free);
	EVP_PKEY_free(c.key);
	X509_STORE_free(c.trust);
	free(payload);
	return rc;
usage:
	fprintf(stderr, "usage: bare-server --listen H:P --cert CHAIN --key KEY --trust PEM "
			"[--creds pem|once] [--payload N] [--max-sessions N]\n");
	return 2;
}
