/* dtls_client.c - see dtls_client.h. */
#include "dtls_client.h"

#include <netdb.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

coap_session_t *test_dtls_open(coap_context_t *ctx, const char *cert,
			       const char *key, const char *ca,
			       const char *uri_text, coap_uri_t *uri)
{
	static coap_dtls_pki_t pki; /* libcoap keeps a pointer to it */
	coap_address_t dst;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM };
	struct addrinfo *ai = NULL;
	char host[256], port[8];

	if (coap_split_uri((const uint8_t *)uri_text, strlen(uri_text), uri) < 0 ||
	    uri->scheme != COAP_URI_SCHEME_COAPS || uri->host.length >= sizeof(host))
		return NULL;
	memcpy(host, uri->host.s, uri->host.length);
	host[uri->host.length] = '\0';
	snprintf(port, sizeof(port), "%u", uri->port);
	if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
		return NULL;
	coap_address_init(&dst);
	dst.size = ai->ai_addrlen;
	memcpy(&dst.addr, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	memset(&pki, 0, sizeof(pki));
	pki.version = COAP_DTLS_PKI_SETUP_VERSION;
	pki.verify_peer_cert = 1;
	pki.check_common_ca = 1;
	pki.cert_chain_validation = 1;
	pki.cert_chain_verify_depth = 4;
	pki.pki_key.key_type = COAP_PKI_KEY_PEM;
	pki.pki_key.key.pem.public_cert = cert;
	pki.pki_key.key.pem.private_key = key;
	pki.pki_key.key.pem.ca_file = ca;
	return coap_new_client_session_pki(ctx, NULL, &dst, COAP_PROTO_DTLS, &pki);
}

coap_context_t *test_tool_start(int argc, char **argv, const char *prog,
				struct test_args *a)
{
	int c;

	memset(a, 0, sizeof(*a));
	while ((c = getopt(argc, argv, "c:k:C:")) != -1) {
		switch (c) {
		case 'c': a->cert = optarg; break;
		case 'k': a->key = optarg; break;
		case 'C': a->ca = optarg; break;
		default: return NULL;
		}
	}
	if (optind + 1 != argc || !a->cert || !a->key || !a->ca) {
		fprintf(stderr, "usage: %s -c CERT -k KEY -C CAFILE coaps://HOST:PORT\n", prog);
		return NULL;
	}
	a->uri = argv[optind];
	coap_startup();
	coap_set_log_level(LOG_WARNING);
	return coap_new_context(NULL);
}
