/* coap_flood.c - CoAP-level attack traffic for the attack suite and the
 * bench (E4, L3): many DTLS sessions with unfinished Block1 uploads kept
 * alive by CoAP pings, or one session spraying Block1 block 0 under a new
 * Request-Tag each time. Test-side code only (libcoap as the client); it
 * shares nothing with estgw.
 *
 * usage: coap_flood -C CAFILE [-c CERT -k KEY]... -m reasm|spray|fixed
 *                   [-n SESSIONS] [-u UPLOADS] [-i PING_S] [-d SECONDS]
 *                   [-N COUNT] coaps://HOST:PORT
 *   reasm  SESSIONS sessions (the certificates taken in turn, one libcoap
 *          context each) send UPLOADS Block1 block 0 (M=1) POSTs to
 *          /.well-known/est/sen, each under its own Request-Tag, print
 *          "started", then ping every PING_S seconds until SECONDS passed
 *   spray  one session, COUNT block-0 POSTs one after the other, each with
 *          a new Request-Tag (until SECONDS passed)
 *   fixed  the same with one Request-Tag
 * At the end one JSON line: the response codes counted, and for spray and
 * fixed the requests answered per second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <coap3/coap.h>

#include "dtls_client.h"

#define MAX_SESS 1024
#define MAX_CERTS 64

static unsigned long codes[256];
static unsigned long answered;
static int got;

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
				   const coap_pdu_t *rcvd, const coap_mid_t id)
{
	(void)s; (void)sent; (void)id;
	codes[(uint8_t)coap_pdu_get_code(rcvd)]++;
	answered++;
	got = 1;
	return COAP_RESPONSE_OK;
}

static unsigned long pongs;

static void on_pong(coap_session_t *s, const coap_pdu_t *rcvd, const coap_mid_t id)
{
	(void)s; (void)rcvd; (void)id;
	pongs++;
}

static int connected[MAX_SESS];

static int on_event(coap_session_t *s, const coap_event_t ev)
{
	intptr_t i = (intptr_t)coap_session_get_app_data(s);

	if (ev == COAP_EVENT_DTLS_CONNECTED && i > 0)
		connected[i - 1] = 1;
	else if ((ev == COAP_EVENT_DTLS_ERROR || ev == COAP_EVENT_DTLS_CLOSED) && i > 0)
		connected[i - 1] = -1;
	return 0;
}

/* Block1 block 0 (M=1, 64 bytes) of a /sen POST under Request-Tag @p tag. */
static void send_block0(coap_session_t *s, uint32_t tag)
{
	static const uint8_t payload[64] = { 0x30, 0x82 };
	coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST,
					coap_new_message_id(s),
					coap_session_max_pdu_size(s));
	uint8_t tok[8], buf[4];
	size_t toklen;

	if (!pdu)
		return;
	coap_session_new_token(s, &toklen, tok);
	coap_add_token(pdu, toklen, tok);
	coap_add_option(pdu, COAP_OPTION_URI_PATH, 11, (const uint8_t *)".well-known");
	coap_add_option(pdu, COAP_OPTION_URI_PATH, 3, (const uint8_t *)"est");
	coap_add_option(pdu, COAP_OPTION_URI_PATH, 3, (const uint8_t *)"sen");
	coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT,
			coap_encode_var_safe(buf, sizeof(buf), 286), buf);
	coap_add_option(pdu, COAP_OPTION_BLOCK1, 1, (const uint8_t *)"\x0a"); /* 0, M, 64 */
	coap_add_option(pdu, 292 /* Request-Tag */, coap_encode_var_safe(buf, sizeof(buf), tag), buf);
	coap_add_data(pdu, sizeof(payload), payload);
	coap_send(s, pdu);
}

static void ping(coap_session_t *s)
{
	coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_EMPTY_CODE,
					coap_new_message_id(s), 0);
	if (pdu)
		coap_send(s, pdu);
}

static void run_all(coap_context_t **ctx, int n, int ms)
{
	double end = now_s() + ms / 1000.0;

	do {
		for (int i = 0; i < n; i++)
			coap_io_process(ctx[i], COAP_IO_NO_WAIT);
		usleep(200);
	} while (now_s() < end);
}

/* Wait until one response came on @p ctx or @p ms passed. */
static int wait_one(coap_context_t *ctx, int ms)
{
	double end = now_s() + ms / 1000.0;

	got = 0;
	while (!got && now_s() < end)
		coap_io_process(ctx, 10);
	return got;
}

int main(int argc, char **argv)
{
	const char *ca = NULL, *cert[MAX_CERTS], *key[MAX_CERTS], *mode = "reasm";
	int ncert = 0, nkey = 0, nsess = 1, uploads = 4, opt;
	double secs = 10, ping_s = 2;
	unsigned long count = 1000;
	static coap_context_t *ctx[MAX_SESS];
	static coap_session_t *sess[MAX_SESS];
	coap_uri_t uri;

	while ((opt = getopt(argc, argv, "C:c:k:m:n:u:i:d:N:")) != -1) {
		switch (opt) {
		case 'C': ca = optarg; break;
		case 'c': if (ncert < MAX_CERTS) cert[ncert++] = optarg; break;
		case 'k': if (nkey < MAX_CERTS) key[nkey++] = optarg; break;
		case 'm': mode = optarg; break;
		case 'n': nsess = atoi(optarg); break;
		case 'u': uploads = atoi(optarg); break;
		case 'i': ping_s = atof(optarg); break;
		case 'd': secs = atof(optarg); break;
		case 'N': count = strtoul(optarg, NULL, 10); break;
		default: return 2;
		}
	}
	if (optind >= argc || !ca || ncert < 1 || ncert != nkey || nsess < 1 ||
	    nsess > MAX_SESS)
		return 2;
	if (strcmp(mode, "reasm") != 0)
		nsess = 1;
	coap_startup();
	coap_set_log_level(LOG_EMERG);
	coap_dtls_set_log_level(LOG_EMERG);
	double t_end = now_s() + secs;
	for (int i = 0; i < nsess; i++) {
		ctx[i] = coap_new_context(NULL);
		if (!ctx[i])
			return 2;
		coap_register_response_handler(ctx[i], on_response);
		coap_register_event_handler(ctx[i], on_event);
		coap_register_pong_handler(ctx[i], on_pong);
		sess[i] = test_dtls_open(ctx[i], cert[i % ncert], key[i % ncert], ca,
					 argv[optind], &uri);
		if (!sess[i])
			return 2;
		coap_session_set_app_data(sess[i], (void *)(intptr_t)(i + 1));
		for (double end = now_s() + 10; !connected[i] && now_s() < end;)
			coap_io_process(ctx[i], 10);
		if (connected[i] != 1) {
			fprintf(stderr, "session %d: no handshake\n", i);
			return 2;
		}
	}
	if (strcmp(mode, "reasm") == 0) {
		for (int i = 0; i < nsess; i++)
			for (int u = 0; u < uploads; u++) {
				send_block0(sess[i], (uint32_t)(i * 1000 + u));
				wait_one(ctx[i], 5000);
			}
		printf("started\n");
		fflush(stdout);
		for (double next = now_s(); now_s() < t_end;) {
			if (now_s() >= next) {
				for (int i = 0; i < nsess; i++)
					ping(sess[i]);
				next = now_s() + ping_s;
			}
			run_all(ctx, nsess, 100);
		}
	} else {
		int spray = strcmp(mode, "spray") == 0;
		printf("started\n");
		fflush(stdout);
		double t0 = now_s();
		unsigned long sent = 0;
		while (sent < count && now_s() < t_end) {
			send_block0(sess[0], spray ? (uint32_t)sent : 7u);
			sent++;
			if (!wait_one(ctx[0], 5000))
				break;
		}
		double el = now_s() - t0;
		printf("{\"mode\": \"%s\", \"sent\": %lu, \"answered\": %lu, "
		       "\"per_second\": %.0f, \"c2_31\": %lu, \"c5_03\": %lu, \"c4_29\": %lu}\n",
		       mode, sent, answered, el > 0 ? (double)answered / el : 0,
		       codes[COAP_RESPONSE_CODE(231)], codes[COAP_RESPONSE_CODE(503)],
		       codes[COAP_RESPONSE_CODE(429)]);
		goto out;
	}
	printf("{\"mode\": \"reasm\", \"sessions\": %d, \"answered\": %lu, \"c2_31\": %lu, "
	       "\"c5_03\": %lu, \"pongs\": %lu}\n", nsess, answered,
	       codes[COAP_RESPONSE_CODE(231)], codes[COAP_RESPONSE_CODE(503)], pongs);
out:
	for (int i = 0; i < nsess; i++) {
		coap_session_release(sess[i]);
		coap_free_context(ctx[i]);
	}
	coap_cleanup();
	return 0;
}
