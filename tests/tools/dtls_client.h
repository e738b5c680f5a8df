/* dtls_client.h - the test tools' one way to open a DTLS session to a
 * coaps:// URI with a client certificate (libcoap + its OpenSSL backend). */
#ifndef ESTGW_TEST_DTLS_CLIENT_H
#define ESTGW_TEST_DTLS_CLIENT_H

#include <coap3/coap.h>

/** A client session to @p uri_text (coaps only) authenticated with @p cert /
 *  @p key, trusting @p ca; *uri gets the parsed URI. NULL on any error. */
coap_session_t *test_dtls_open(coap_context_t *ctx, const char *cert,
			       const char *key, const char *ca,
			       const char *uri_text, coap_uri_t *uri);

/** The credentials and URI of a tool that takes only -c CERT -k KEY -C CAFILE
 *  and one coaps:// URI. */
struct test_args {
	const char *cert, *key, *ca, *uri;
};

/** Parse those arguments (a usage line naming @p prog on error), start
 *  libcoap quietly and make its context: NULL on any error. */
coap_context_t *test_tool_start(int argc, char **argv, const char *prog,
				struct test_args *a);

#endif
