/* session_holder.c - many test devices at once: opens DTLS sessions to estgw
 * one after another, sends GET /.well-known/est/crts on each, and keeps every
 * session open (idle) until told to stop. For the session cap and the
 * idle-memory tests ([server] max_sessions, J2).
 *
 * Test-side code only: it shares nothing with estgw and is not installed.
 * Every session uses the same device certificate; estgw tells sessions apart
 * by address (each has its own UDP socket and port).
 *
 * usage: session_holder -c CERT -k KEY -C CAFILE coaps://HOST:PORT
 * stdin, one command per line:
 *   open N   open N more sessions; prints "opened N ok=K" (K answered 2.05),
 *            then "code OUTCOME COUNT" for every other outcome (C.DD, timeout,
 *            session) and "end"
 *   quit     (or end of input) release every session (close_notify) and exit
 * Exits 0, or 2 on a local failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dtls_client.h"

#define ANSWER_MS 20000
#define MAX_OUTCOMES 8

static int answered; /* the response to the current session's GET came */
static coap_pdu_code_t last_code;

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
				   const coap_pdu_t *rcvd, const coap_mid_t id)
{
	(void)s;
	(void)sent;
	(void)id;
	last_code = coap_pdu_get_code(rcvd);
	answered = 1;
	return COAP_RESPONSE_OK;
}

static long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* GET /.well-known/est/crts on @p s; the outcome ("2.05", "timeout", ...). */
static void get_crts(coap_context_t *ctx, coap_session_t *s, char *outcome, size_t len)
{
	static const char *const path[] = { ".well-known", "est", "crts" };
	coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET,
					coap_new_message_id(s),
					coap_session_max_pdu_size(s));
	uint8_t tok[8];
	size_t tlen;

	snprintf(outcome, len, "pdu");
	if (!pdu)
		return;
	coap_session_new_token(s, &tlen, tok);
	coap_add_token(pdu, tlen, tok);
	for (size_t i = 0; i < 3; i++)
		coap_add_option(pdu, COAP_OPTION_URI_PATH, strlen(path[i]),
				(const uint8_t *)path[i]);
	answered = 0;
	if (coap_send(s, pdu) == COAP_INVALID_MID)
		return;
	for (long end = now_ms() + ANSWER_MS; !answered && now_ms() < end;)
		coap_io_process(ctx, 100);
	if (answered)
		snprintf(outcome, len, "%d.%02d", last_code >> 5, last_code & 0x1f);
	else
		snprintf(outcome, len, "timeout");
}

struct outcomes {
	char name[MAX_OUTCOMES][16];
	unsigned count[MAX_OUTCOMES];
	unsigned n;
};

static void count(struct outcomes *o, const char *what)
{
	unsigned k = 0;

	while (k < o->n && strcmp(o->name[k], what) != 0)
		k++;
	if (k == o->n && o->n < MAX_OUTCOMES)
		snprintf(o->name[o->n++], sizeof(o->name[0]), "%s", what);
	if (k < o->n)
		o->count[k]++;
}

int main(int argc, char **argv)
{
	struct test_args a;
	coap_session_t **held = NULL;
	size_t nheld = 0;
	char line[128];

	coap_context_t *ctx = test_tool_start(argc, argv, "session_holder", &a);
	if (!ctx)
		return 2;
	/* the Block2 answer (/crts) is fetched whole by libcoap */
	coap_context_set_block_mode(ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
	coap_register_response_handler(ctx, on_response);
	while (fgets(line, sizeof(line), stdin)) {
		struct outcomes o = { .n = 0 };
		unsigned n = 0, ok = 0;

		if (strncmp(line, "quit", 4) == 0)
			break;
		if (sscanf(line, "open %u", &n) != 1 || n == 0 || n > 100000) {
			fprintf(stderr, "session_holder: bad command %s", line);
			continue;
		}
		coap_session_t **more = realloc(held, (nheld + n) * sizeof(*held));
		if (!more)
			return 2;
		held = more;
		for (unsigned i = 0; i < n; i++) {
			char outcome[16] = "session";
			coap_uri_t uri;
			coap_session_t *s = test_dtls_open(ctx, a.cert, a.key, a.ca,
							   a.uri, &uri);
			if (s) {
				held[nheld++] = s;
				get_crts(ctx, s, outcome, sizeof(outcome));
			}
			if (strcmp(outcome, "2.05") == 0)
				ok++;
			else
				count(&o, outcome);
		}
		printf("opened %u ok=%u\n", n, ok);
		for (unsigned k = 0; k < o.n; k++)
			printf("code %s %u\n", o.name[k], o.count[k]);
		printf("end\n");
		fflush(stdout);
	}
	for (size_t i = 0; i < nheld; i++)
		coap_session_release(held[i]);
	free(held);
	coap_free_context(ctx);
	coap_cleanup();
	return 0;
}
