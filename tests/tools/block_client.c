/* block_client.c - a test device that sends exactly the CoAP messages it is
 * told to on one DTLS session to estgw, and prints every response with its
 * options byte for byte (E5-E8: Block1/Block2 options crafted by the
 * test, transfers interleaved on one session, a request sent as ACK).
 *
 * libcoap's block handling is off (no COAP_BLOCK_USE_LIBCOAP): the test
 * decides every Block1, Block2, Request-Tag and payload. Test-side code
 * only: it shares nothing with estgw and is not installed.
 *
 * usage: block_client -c CERT -k KEY -C CAFILE coaps://HOST:PORT
 * stdin, one request per line:
 *   TYPE METHOD PATH WAIT_MS [oNUM=HEX]... [p=HEX]
 *   TYPE con|non|ack, METHOD get|post|put|delete, PATH /a/b?q=1&r (Uri-Path
 *   and Uri-Query), WAIT_MS how long to wait for its response (0: none),
 *   oNUM=HEX an option (HEX may be empty), p=HEX the payload.
 * or "wait MS": take what arrives until one response came (a separate
 *   response to an earlier request sent with WAIT_MS 0) or MS elapsed.
 * or "check": take what has arrived; if estgw ended the session (its
 *   close_notify came), print "closed" and open a new session, as a device
 *   does before its next request; else print "open".
 * stdout, per request: "sent mid=M tok=T", then one line per response
 *   received, "resp mine=0|1 type=con|non|ack|rst code=C.DD [oNUM=HEX]...
 *   p=HEX", then "end done" (its own response came), "end timeout" or
 *   "end nowait" (WAIT_MS 0).
 * Exits 0 at end of input, 2 on a local failure.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <coap3/coap.h>

#include "dtls_client.h"

#define LINE_MAX_LEN 16384

static uint8_t my_token[8];
static size_t my_token_len;
static int got_mine, got_any;

static void print_hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
}

static const char *type_name(coap_pdu_type_t t)
{
	switch (t) {
	case COAP_MESSAGE_CON: return "con";
	case COAP_MESSAGE_NON: return "non";
	case COAP_MESSAGE_ACK: return "ack";
	default: return "rst";
	}
}

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
				   const coap_pdu_t *rcvd, const coap_mid_t id)
{
	coap_bin_const_t tok = coap_pdu_get_token(rcvd);
	int mine = tok.length == my_token_len &&
		   memcmp(tok.s, my_token, my_token_len) == 0;
	coap_opt_iterator_t it;
	coap_opt_t *o;
	size_t len = 0;
	const uint8_t *data = NULL;
	coap_pdu_code_t code = coap_pdu_get_code(rcvd);

	(void)s; (void)sent; (void)id;
	printf("resp mine=%d type=%s code=%d.%02d", mine,
	       type_name(coap_pdu_get_type(rcvd)), code >> 5, code & 0x1f);
	coap_option_iterator_init(rcvd, &it, COAP_OPT_ALL);
	while ((o = coap_option_next(&it))) {
		printf(" o%u=", (unsigned)it.number);
		print_hex(coap_opt_value(o), coap_opt_length(o));
	}
	printf(" p=");
	if (coap_get_data(rcvd, &len, &data))
		print_hex(data, len);
	printf("\n");
	fflush(stdout);
	if (mine)
		got_mine = 1;
	got_any = 1;
	return COAP_RESPONSE_OK;
}

static int unhex(const char *h, uint8_t *out, size_t cap, size_t *n)
{
	size_t len = strlen(h);

	if (len % 2 || len / 2 > cap)
		return -1;
	for (size_t i = 0; i < len / 2; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	*n = len / 2;
	return 0;
}

static int method_code(const char *m)
{
	static const char *const names[] = { "get", "post", "put", "delete" };

	for (int i = 0; i < 4; i++)
		if (strcmp(m, names[i]) == 0)
			return i + 1;
	return -1;
}

/* Uri-Path and Uri-Query options of @p path, in option order. */
static int add_path(coap_pdu_t *pdu, const char *path)
{
	const char *q = strchr(path, '?');
	size_t plen = q ? (size_t)(q - path) : strlen(path);

	for (size_t i = 0; i < plen;) {
		size_t n = 0;
		while (i + n < plen && path[i + n] != '/')
			n++;
		if (n && !coap_add_option(pdu, COAP_OPTION_URI_PATH, n,
					  (const uint8_t *)path + i))
			return -1;
		i += n + 1;
	}
	for (const char *p = q ? q + 1 : NULL; p && *p;) {
		size_t n = strcspn(p, "&");
		if (n && !coap_add_option(pdu, COAP_OPTION_URI_QUERY, n,
					  (const uint8_t *)p))
			return -1;
		p += n + (p[n] == '&');
	}
	return 0;
}

/* One input line -> a PDU (libcoap puts the options in number order). */
static coap_pdu_t *build(coap_session_t *s, char *line, int *wait_ms)
{
	char *save = NULL;
	char *type = strtok_r(line, " \n", &save);
	char *method = strtok_r(NULL, " \n", &save);
	char *path = strtok_r(NULL, " \n", &save);
	char *wait = strtok_r(NULL, " \n", &save);
	static uint8_t buf[LINE_MAX_LEN / 2];
	size_t n;
	int code = method ? method_code(method) : -1;

	if (!type || !path || !wait || code < 0)
		return NULL;
	coap_pdu_type_t t = strcmp(type, "con") == 0 ? COAP_MESSAGE_CON :
			    strcmp(type, "non") == 0 ? COAP_MESSAGE_NON :
			    strcmp(type, "ack") == 0 ? COAP_MESSAGE_ACK : COAP_MESSAGE_RST;
	coap_pdu_t *pdu = coap_pdu_init(t, (coap_pdu_code_t)code,
					coap_new_message_id(s),
					coap_session_max_pdu_size(s));
	if (!pdu)
		return NULL;
	*wait_ms = atoi(wait);
	coap_session_new_token(s, &my_token_len, my_token);
	coap_add_token(pdu, my_token_len, my_token);
	if (add_path(pdu, path) != 0)
		goto fail;
	for (char *tok; (tok = strtok_r(NULL, " \n", &save));) {
		char *eq = strchr(tok, '=');
		if (!eq)
			goto fail;
		*eq = '\0';
		if (unhex(eq + 1, buf, sizeof(buf), &n) != 0)
			goto fail;
		if (strcmp(tok, "p") == 0) {
			if (n && !coap_add_data(pdu, n, buf))
				goto fail;
		} else if (tok[0] == 'o') {
			if (!coap_add_option(pdu, (coap_option_num_t)atoi(tok + 1), n, buf))
				goto fail;
		} else {
			goto fail;
		}
	}
	return pdu;
fail:
	coap_delete_pdu(pdu);
	return NULL;
}

static coap_session_t *open_session(coap_context_t *ctx, const char *cert,
				    const char *key, const char *ca,
				    const char *uri_text)
{
	coap_uri_t uri;

	return test_dtls_open(ctx, cert, key, ca, uri_text, &uri);
}

static int peer_closed; /* a close_notify came on the session */

static int on_event(coap_session_t *s, const coap_event_t ev)
{
	(void)s;
	if (ev == COAP_EVENT_DTLS_CLOSED)
		peer_closed = 1;
	return 0;
}

static long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

int main(int argc, char **argv)
{
	static char line[LINE_MAX_LEN];
	struct test_args a;

	coap_context_t *ctx = test_tool_start(argc, argv, "block_client", &a);
	if (!ctx)
		return 2;
	coap_register_response_handler(ctx, on_response);
	coap_register_event_handler(ctx, on_event);
	coap_session_t *s = open_session(ctx, a.cert, a.key, a.ca, a.uri);
	if (!s) {
		fprintf(stderr, "block_client: cannot open a session\n");
		return 2;
	}
	int rc = 0;
	while (fgets(line, sizeof(line), stdin)) {
		int wait_ms = 0;
		if (strncmp(line, "wait ", 5) == 0) {
			long end = now_ms() + atoi(line + 5);
			got_any = 0;
			while (!got_any && now_ms() < end)
				coap_io_process(ctx, 50);
			printf("end %s\n", got_any ? "done" : "timeout");
			fflush(stdout);
			continue;
		}
		if (strncmp(line, "check", 5) == 0) {
			coap_io_process(ctx, COAP_IO_NO_WAIT);
			printf("%s\n", peer_closed ? "closed" : "open");
			fflush(stdout);
			if (peer_closed) {
				coap_session_release(s);
				peer_closed = 0;
				s = open_session(ctx, a.cert, a.key, a.ca, a.uri);
				if (!s) {
					fprintf(stderr, "block_client: cannot open a session\n");
					rc = 2;
					break;
				}
			}
			continue;
		}
		coap_pdu_t *pdu = build(s, line, &wait_ms);
		if (!pdu) {
			fprintf(stderr, "block_client: bad request line\n");
			rc = 2;
			break;
		}
		coap_mid_t mid = coap_pdu_get_mid(pdu);
		got_mine = 0;
		if (coap_send(s, pdu) == COAP_INVALID_MID) {
			fprintf(stderr, "block_client: cannot send\n");
			rc = 2;
			break;
		}
		printf("sent mid=%d tok=", (int)mid);
		print_hex(my_token, my_token_len);
		printf("\n");
		fflush(stdout);
		long end = now_ms() + wait_ms;
		while (!got_mine && now_ms() < end)
			coap_io_process(ctx, 50);
		/* with no wait, still let the datagram (and a handshake) go */
		if (wait_ms == 0)
			coap_io_process(ctx, COAP_IO_NO_WAIT);
		printf("end %s\n", got_mine ? "done" : wait_ms ? "timeout" : "nowait");
		fflush(stdout);
	}
	coap_session_release(s);
	coap_free_context(ctx);
	coap_cleanup();
	return rc;
}
