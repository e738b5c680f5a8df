/* coap_load.c - the simulated devices over DTLS 1.2 + CoAP (libcoap client).
 *
 * One libcoap context, one client session (and UDP socket) per device, at
 * most r->concurrency devices in flight. A device: handshake, then GET crts,
 * POST sen, POST sren as enabled, each timed; then its session is released
 * (close_notify). Certificates and keys are set from the pre-made objects in
 * the TLS set-up hook, so the client does no PEM work per handshake.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <coap3/coap.h>
#include <openssl/ssl.h>

enum step { ST_HS, ST_CRTS, ST_SEN, ST_SREN, ST_DONE };

struct dev_run {
	struct load *ld;
	struct device *d;
	coap_session_t *s;
	enum step step;
	double t_start, t_step;
	int done, release;
};

struct load {
	coap_context_t *ctx;
	struct run *r;
	struct device_set *set;
	const struct coap_target *t;
	struct dev_run *runs;
	size_t next, active, finished;
	coap_address_t dst;
	int idle;
};

/* libcoap 4.3.1 runs no TLS set-up hook for client sessions, and the
 * ClientHello is out before coap_new_client_session_pki() returns: the
 * device's certificate, key and the server trust go onto its SSL right
 * after (they are first needed when the server's flight arrives, which only
 * coap_io_process() can read). */
static int set_device_creds(coap_session_t *s, struct device *d, X509_STORE *trust)
{
	coap_tls_library_t lib;
	SSL *ssl = coap_session_get_tls(s, &lib);

	return ssl && lib == COAP_TLS_LIBRARY_OPENSSL &&
	       SSL_use_certificate(ssl, d->cert) == 1 && SSL_use_PrivateKey(ssl, d->key) == 1 &&
	       (!trust || SSL_set1_verify_cert_store(ssl, trust) == 1) ? 0 : -1;
}

static void finish(struct dev_run *dr, const char *fail)
{
	struct run *r = dr->ld->r;

	if (dr->done)
		return;
	dr->done = 1;
	dr->release = !dr->ld->idle || fail;
	dr->ld->active--;
	dr->ld->finished++;
	if (fail) {
		run_fail(r, fail);
	} else {
		r->ok++;
		if (!dr->ld->idle)
			series_add(&r->lat[LAT_TOTAL], (bench_now() - dr->t_start) * 1e3);
	}
}

static void add_opt_uint(coap_optlist_t **ol, uint16_t num, unsigned v)
{
	uint8_t buf[4];

	coap_insert_optlist(ol, coap_new_optlist(num, coap_encode_var_safe(buf, sizeof(buf), v), buf));
}

static void add_path(coap_optlist_t **ol, const char *path)
{
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, "/");
		if (n)
			coap_insert_optlist(ol, coap_new_optlist(COAP_OPTION_URI_PATH, n,
								 (const uint8_t *)p));
		p += n + (p[n] == '/');
	}
}

static int send_step(struct dev_run *dr)
{
	static const char *const names[] = { "", "crts", "sen", "sren" };
	struct load *ld = dr->ld;
	int post = dr->step != ST_CRTS;
	coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON,
					post ? COAP_REQUEST_CODE_POST : COAP_REQUEST_CODE_GET,
					coap_new_message_id(dr->s), coap_session_max_pdu_size(dr->s));
	coap_optlist_t *ol = NULL;
	uint8_t tok[8];
	size_t tlen;
	char path[160];
	unsigned szx = 0;

	if (!pdu)
		return -1;
	while ((16u << szx) < ld->r->block && szx < 6)
		szx++;
	coap_session_new_token(dr->s, &tlen, tok);
	coap_add_token(pdu, tlen, tok);
	snprintf(path, sizeof(path), "%s/%s", ld->t->root, names[dr->step]);
	add_path(&ol, path);
	if (post) {
		add_opt_uint(&ol, COAP_OPTION_CONTENT_FORMAT, 286);
		add_opt_uint(&ol, COAP_OPTION_BLOCK1, szx);
	} else {
		add_opt_uint(&ol, COAP_OPTION_BLOCK2, szx);
	}
	if (!coap_add_optlist_pdu(pdu, &ol) ||
	    (post && !coap_add_data_large_request(dr->s, pdu, dr->d->csr_len, dr->d->csr,
						   NULL, NULL))) {
		coap_delete_optlist(ol);
		coap_delete_pdu(pdu);
		return -1;
	}
	coap_delete_optlist(ol);
	dr->t_step = bench_now();
	return coap_send(dr->s, pdu) == COAP_INVALID_MID ? -1 : 0;
}

/* Move to the next enabled operation, or finish the device. */
static void next_step(struct dev_run *dr)
{
	struct run *r = dr->ld->r;

	for (;;) {
		dr->step++;
		if (dr->step == ST_DONE) {
			finish(dr, NULL);
			return;
		}
		if ((dr->step == ST_CRTS && r->do_crts) || (dr->step == ST_SEN && r->do_sen) ||
		    (dr->step == ST_SREN && r->do_sren))
			break;
	}
	if (send_step(dr) != 0)
		finish(dr, "send");
}

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
				   const coap_pdu_t *rcvd, const coap_mid_t mid)
{
	static const enum lat_kind kind[] = { LAT_HS, LAT_CRTS, LAT_SEN, LAT_SREN };
	struct dev_run *dr = coap_session_get_app_data(s);
	coap_pdu_code_t code = coap_pdu_get_code(rcvd);
	unsigned cls = (unsigned)code >> 5, det = (unsigned)code & 31;
	coap_opt_iterator_t it;
	char what[24];

	if (!dr || dr->done || dr->step == ST_HS || dr->step == ST_DONE)
		return COAP_RESPONSE_OK;
	if (cls == 2 && det == 31)
		return COAP_RESPONSE_OK; /* Continue: more Block1 to go */
	if (cls == 2) {
		series_add(&dr->ld->r->lat[kind[dr->step]], (bench_now() - dr->t_step) * 1e3);
		next_step(dr);
		return COAP_RESPONSE_OK;
	}
	snprintf(what, sizeof(what), "%u.%02u%s", cls, det,
		 coap_check_option(rcvd, COAP_OPTION_MAXAGE, &it) ? "+Max-Age" : "");
	finish(dr, what);
	return COAP_RESPONSE_OK;
}

static void on_nack(coap_session_t *s, const coap_pdu_t *sent, const coap_nack_reason_t reason,
		    const coap_mid_t mid)
{
	struct dev_run *dr = coap_session_get_app_data(s);

	if (dr)
		finish(dr, reason == COAP_NACK_TOO_MANY_RETRIES ? "coap-timeout"
			   : reason == COAP_NACK_TLS_FAILED     ? "dtls-failed"
			   : reason == COAP_NACK_RST            ? "rst"
								: "nack");
}

static int on_event(coap_session_t *s, const coap_event_t ev)
{
	struct dev_run *dr = coap_session_get_app_data(s);

	if (!dr || dr->done)
		return 0;
	if (ev == COAP_EVENT_DTLS_CONNECTED && dr->step == ST_HS) {
		series_add(&dr->ld->r->lat[LAT_HS], (bench_now() - dr->t_start) * 1e3);
		if (dr->ld->idle)
			finish(dr, NULL);
		else
			next_step(dr);
	} else if (ev == COAP_EVENT_DTLS_ERROR || ev == COAP_EVENT_DTLS_CLOSED) {
		finish(dr, dr->step == ST_HS ? "dtls-handshake" : "dtls-closed");
	}
	return 0;
}

static void start_device(struct load *ld, size_t i)
{
	struct dev_run *dr = &ld->runs[i];
	coap_dtls_pki_t pki;

	memset(&pki, 0, sizeof(pki));
	pki.version = COAP_DTLS_PKI_SETUP_VERSION;
	pki.verify_peer_cert = ld->set->trust != NULL;
	pki.cert_chain_validation = 1;
	pki.cert_chain_verify_depth = 4;
	pki.pki_key.key_type = COAP_PKI_KEY_PEM; /* empty: see set_device_creds() */
	pki.pki_key.key.pem.public_cert = "";
	pki.pki_key.key.pem.private_key = "";
	pki.pki_key.key.pem.ca_file = "";
	dr->ld = ld;
	dr->d = &ld->set->dev[i];
	dr->t_start = bench_now();
	ld->active++;
	dr->s = coap_new_client_session_pki(ld->ctx, NULL, &ld->dst, COAP_PROTO_DTLS, &pki);
	if (!dr->s) {
		finish(dr, "session");
		return;
	}
	coap_session_set_app_data(dr->s, dr);
	if (set_device_creds(dr->s, dr->d, ld->set->trust) != 0) {
		finish(dr, "client-setup");
		dr->release = 1;
	}
}

/* Release what finished (never from inside a libcoap callback). */
static void release_done(struct load *ld, size_t upto)
{
	for (size_t i = 0; i < upto; i++) {
		struct dev_run *dr = &ld->runs[i];
		if (dr->release && dr->s) {
			coap_session_set_app_data(dr->s, NULL);
			coap_session_release(dr->s);
			dr->s = NULL;
		}
	}
}

static void check_timeouts(struct load *ld, double now)
{
	for (size_t i = 0; i < ld->next; i++) {
		struct dev_run *dr = &ld->runs[i];
		if (!dr->done && now - dr->t_start > ld->r->timeout_s)
			finish(dr, "bench-timeout");
	}
}

static int load_init(struct load *ld, struct run *r, struct device_set *set,
		     const struct coap_target *t, int idle)
{
	char port[8];
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;

	memset(ld, 0, sizeof(*ld));
	ld->r = r;
	ld->set = set;
	ld->t = t;
	ld->idle = idle;
	snprintf(port, sizeof(port), "%u", t->port);
	if (getaddrinfo(t->host, port, &hints, &res) != 0 || !res)
		return -1;
	coap_address_init(&ld->dst);
	ld->dst.size = res->ai_addrlen;
	memcpy(&ld->dst.addr, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	ld->runs = calloc(r->n ? r->n : 1, sizeof(*ld->runs));
	ld->ctx = coap_new_context(NULL);
	if (!ld->runs || !ld->ctx)
		return -1;
	coap_context_set_block_mode(ld->ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
	coap_context_set_max_idle_sessions(ld->ctx, 0);
	coap_register_response_handler(ld->ctx, on_response);
	coap_register_nack_handler(ld->ctx, on_nack);
	coap_register_event_handler(ld->ctx, on_event);
	return 0;
}

static void load_free(struct load *ld)
{
	for (size_t i = 0; i < ld->next; i++)
		ld->runs[i].release = 1;
	release_done(ld, ld->next);
	if (ld->ctx)
		coap_free_context(ld->ctx);
	free(ld->runs);
}

/* Run until every device has finished; sample the watched processes. */
static void drive(struct load *ld)
{
	double last_sample = 0, last_check = 0;

	while (ld->finished < ld->r->n) {
		double now;
		while (ld->active < ld->r->concurrency && ld->next < ld->r->n)
			start_device(ld, ld->next++);
		coap_io_process(ld->ctx, 5);
		if (!ld->idle)
			release_done(ld, ld->next);
		now = bench_now();
		if (now - last_sample > 0.05) {
			procs_sample(ld->r);
			last_sample = now;
		}
		if (now - last_check > 0.25) {
			check_timeouts(ld, now);
			last_check = now;
		}
	}
}

int coap_load_run(struct run *r, struct device_set *set, const struct coap_target *t)
{
	struct load ld;
	int rc = load_init(&ld, r, set, t, 0);

	if (rc == 0) {
		procs_start(r);
		drive(&ld);
		procs_stop(r);
	}
	load_free(&ld);
	return rc;
}

int coap_idle_run(struct run *r, struct device_set *set, const struct coap_target *t,
		  double hold_s)
{
	struct load ld;
	int rc = load_init(&ld, r, set, t, 1);

	if (rc == 0) {
		for (size_t i = 0; i < r->nprocs; i++) {
			r->idle_rss_before[i] = proc_rss_kb(r->procs[i].pid);
			r->idle_anon_before[i] = proc_anon_kb(r->procs[i].pid);
		}
		procs_start(r);
		drive(&ld);
		release_done(&ld, ld.next); /* the failed ones */
		for (double end = bench_now() + hold_s; bench_now() < end;)
			coap_io_process(ld.ctx, 50);
		procs_stop(r);
		r->idle_open = r->ok;
		for (size_t i = 0; i < r->nprocs; i++) {
			r->idle_rss_after[i] = proc_rss_kb(r->procs[i].pid);
			r->idle_anon_after[i] = proc_anon_kb(r->procs[i].pid);
		}
	}
	load_free(&ld);
	return rc;
}
