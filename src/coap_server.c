/* coap_server.c - libcoap DTLS server on the libevent loop (the only file
 * that includes libcoap).
 *
 * Every EST path goes through one handler (libcoap's "unknown resource"),
 * which routes with translate.c, checks options, reassembles Block1 itself
 * (bounded: libcoap 4.3.1's own single-body mode allocates whatever Size1 or
 * a far block number asks for), and hands the body to proxy.c. An answer
 * that is not ready at once goes out as a separate response (libcoap async).
 * One log line is written per request when its answer is sent.
 */
#include "coap_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <coap3/coap.h>
#include <event2/event.h>

#include "brski.h"
#include "dtls.h"
#include "estgw/log.h"
#include "estgw/translate.h"
#include "policy.h"
#include "metrics.h"
#include "proxy.h"
#include "ratelimit.h"

#define MAX_SEGS 8             /* Uri-Path segments looked at */
#define MAX_QUERIES 8          /* Uri-Query options looked at */
#define REASM_LIFETIME 247     /* seconds: EXCHANGE_LIFETIME (RFC 7252 4.8.2) */
#define CLIENT_MAX 256
#define RATE_CLIENTS 4096      /* clients the rate limit tracks at once */

struct reasm {
	struct reasm *next;
	char key[160]; /* path + Request-Tag */
	uint8_t *buf;
	size_t len;
	time_t last;
};

struct sess_data {
	struct coap_server *srv;
	coap_session_t *session;
	char client[CLIENT_MAX];
	struct reasm *reasm;
	size_t nreasm;
	uint8_t *cert;              /* client certificate DER, for the policy */
	size_t cert_len;
	enum estgw_client_kind kind;
	int cert_expired;
	int counted; /* in the open-sessions gauge */
	struct sess_data *prev, *next;
};

struct pending {
	struct coap_server *srv;
	coap_async_t *async;
	struct xchg_wait *wait;   /* EST request waiting upstream */
	struct xchg_wait *bwait;  /* cBRSKI rv waiting for the MASA */
	int enroll;               /* sen/sren: tell brski what was issued */
	int done;
	struct proxy_outcome out;
	struct timespec start;
	char path[96];
	char client[CLIENT_MAX];
	struct pending *prev, *next;
};

struct coap_server {
	struct event_base *base;
	const struct estgw_config *cfg;
	struct proxy *px;
	struct brski *brski; /* NULL unless [brski] enabled */
	struct estgw_dtls *dtls;
	coap_context_t *ctx;
	struct event *ev;
	const char *roots[2];
	size_t nroots;
	size_t reasm_bytes;
	size_t reasm_count; /* Block1 bodies in progress, all sessions */
	struct estgw_rate *rate; /* NULL: no rate limit */
	struct sess_data *sessions;
	struct pending *pendings;
	int draining; /* shutting down: no new requests */
};

/* Request facts gathered once, used for routing, checks and the log line. */
struct req_info {
	struct est_slice segs[MAX_SEGS];
	size_t nseg;
	char path[96];
	struct est_route route;
	struct est_coap_req opts;
	struct timespec start;
};

/* ---- small helpers ----------------------------------------------------- */

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static const char *method_name(int m)
{
	static const char *const names[] = { "?", "GET", "POST", "PUT",
					     "DELETE", "FETCH", "PATCH", "iPATCH" };
	return (m >= 0 && m < 8) ? names[m] : "?";
}

static int opt_uint(const coap_pdu_t *pdu, uint16_t num, unsigned *val)
{
	coap_opt_iterator_t it;
	coap_opt_t *o = coap_check_option(pdu, num, &it);

	if (!o)
		return 0;
	*val = coap_decode_var_bytes(coap_opt_value(o), coap_opt_length(o));
	return 1;
}

/* The one line per request: who, what, upstream status, CoAP code, time. */
static void log_request(const char *client, int method, const char *path,
			long upstream, const char *note, uint8_t code,
			double ms)
{
	char up[24];
	int cached = note && strcmp(note, "cache") == 0;

	if (upstream > 0)
		snprintf(up, sizeof(up), "%ld", upstream);
	else
		snprintf(up, sizeof(up), "%s", cached ? "cache" : "-");
	if (cached || !note || !*note)
		note = NULL;
	metrics_request(path, code);
	log_info("req", "client=\"%s\" %s %s upstream=%s code=%d.%02d %.1fms%s%s%s",
		 client, method_name(method), path, up, EST_CODE_CLASS(code),
		 EST_CODE_DETAIL(code), ms, note ? " (" : "", note ? note : "",
		 note ? ")" : "");
}

static void release_payload(coap_session_t *s, void *p)
{
	free(p);
}

/* An answer payload lent to libcoap until its last block is sent. It is
 * zeroed before it is freed: a CF 62 answer carries a private key (G7). */
struct payload_hold {
	uint8_t *p;
	size_t len;
};

static void release_held(coap_session_t *s, void *arg)
{
	struct payload_hold *h = arg;

	explicit_bzero(h->p, h->len);
	free(h->p);
	free(h);
}

static struct coap_server *srv_of(coap_session_t *s);

/* Put an answer into @p resp; takes the payload out of @p a. A 5.03 always
 * tells the device when to come back (D1): [upstream] retry_default
 * unless the answer has its own Max-Age. */
static void put_answer(coap_resource_t *r, coap_session_t *s,
		       const coap_pdu_t *req, const coap_string_t *q,
		       coap_pdu_t *resp, struct est_coap_resp *a)
{
	uint8_t buf[4];

	if (a->code == EST_CODE(5, 3) && !a->has_max_age) {
		a->has_max_age = 1;
		a->max_age = srv_of(s)->cfg->upstream.retry_default;
	}
	coap_pdu_set_code(resp, (coap_pdu_code_t)a->code);
	if (a->has_max_age)
		coap_add_option(resp, COAP_OPTION_MAXAGE,
				coap_encode_var_safe(buf, sizeof(buf), a->max_age),
				buf);
	if (EST_CODE_CLASS(a->code) == 2 && a->cf != EST_CF_NONE) {
		struct payload_hold *h = a->payload ? malloc(sizeof(*h)) : NULL;
		if (a->payload && !h) {
			coap_pdu_set_code(resp, COAP_RESPONSE_CODE(500));
			return;
		}
		if (h) {
			h->p = a->payload;
			h->len = a->len;
			a->payload = NULL;
		}
		coap_add_data_large_response(r, s, req, resp, q, (uint16_t)a->cf,
					     -1, 0, a->len, h ? h->p : (uint8_t *)"",
					     h ? release_held : NULL, h);
	} else if (a->payload && a->len) {
		coap_add_data(resp, a->len, a->payload);
	}
}

static void answer_error(coap_pdu_t *resp, uint8_t code, const char *diag)
{
	coap_pdu_set_code(resp, (coap_pdu_code_t)code);
	if (diag)
		coap_add_data(resp, strlen(diag), (const uint8_t *)diag);
}

/* A 5.03 estgw makes itself, with Max-Age [upstream] retry_default
 * (D1; RFC 9148 §4.7: the device learns when to come back). */
static void answer_busy(struct coap_server *srv, coap_pdu_t *resp,
			const char *diag)
{
	uint8_t buf[4];

	coap_pdu_set_code(resp, COAP_RESPONSE_CODE(503));
	coap_add_option(resp, COAP_OPTION_MAXAGE,
			coap_encode_var_safe(buf, sizeof(buf),
					     srv->cfg->upstream.retry_default),
			buf);
	coap_add_data(resp, strlen(diag), (const uint8_t *)diag);
}

/* ---- per-session state -------------------------------------------------- */

static void reasm_drop(struct coap_server *srv, struct sess_data *sd,
		       struct reasm *r)
{
	struct reasm **pp = &sd->reasm;

	while (*pp && *pp != r)
		pp = &(*pp)->next;
	if (*pp)
		*pp = r->next;
	srv->reasm_bytes -= r->len;
	srv->reasm_count--;
	sd->nreasm--;
	metrics_block1(-1);
	free(r->buf);
	free(r);
}

static void sess_free(struct sess_data *sd)
{
	struct coap_server *srv = sd->srv;

	while (sd->reasm)
		reasm_drop(srv, sd, sd->reasm);
	if (sd->counted)
		metrics_dtls_sessions(-1);
	if (sd->prev)
		sd->prev->next = sd->next;
	else
		srv->sessions = sd->next;
	if (sd->next)
		sd->next->prev = sd->prev;
	coap_session_set_app_data(sd->session, NULL);
	free(sd->cert);
	free(sd);
}

/* What the policy needs about the client certificate, once per session. */
static void sess_identify(struct coap_server *srv, struct sess_data *sd,
			  void *tls)
{
	enum estgw_dtls_kind kind;

	if (estgw_dtls_peer_cert_der(tls, &sd->cert, &sd->cert_len) != 0)
		sd->cert = NULL;
	if (estgw_dtls_peer_kind(srv->dtls, tls, &kind, &sd->cert_expired) == 0)
		sd->kind = kind == ESTGW_DTLS_KIND_IDEVID ? ESTGW_CLIENT_IDEVID :
			   kind == ESTGW_DTLS_KIND_LDEVID ? ESTGW_CLIENT_LDEVID :
							    ESTGW_CLIENT_OTHER;
}

static struct sess_data *sess_get(struct coap_server *srv, coap_session_t *s)
{
	struct sess_data *sd = coap_session_get_app_data(s);
	coap_tls_library_t lib;

	if (sd)
		return sd;
	sd = calloc(1, sizeof(*sd));
	if (!sd)
		return NULL;
	sd->srv = srv;
	sd->session = s;
	void *tls = coap_session_get_tls(s, &lib);
	estgw_dtls_peer_subject(tls, sd->client, sizeof(sd->client));
	sess_identify(srv, sd, tls);
	sd->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = sd;
	srv->sessions = sd;
	coap_session_set_app_data(s, sd);
	return sd;
}

static int on_event(coap_session_t *s, const coap_event_t ev)
{
	struct sess_data *sd;
	coap_tls_library_t lib;

	switch (ev) {
	case COAP_EVENT_SERVER_SESSION_DEL:
		sd = coap_session_get_app_data(s);
		if (sd)
			sess_free(sd);
		break;
	case COAP_EVENT_DTLS_CONNECTED:
		sd = sess_get(coap_get_app_data(coap_session_get_context(s)), s);
		if (sd && !sd->counted) {
			sd->counted = 1;
			metrics_dtls_sessions(1);
		}
		log_debug("dtls", "%s: handshake done, %s", coap_session_str(s),
			  estgw_dtls_cipher(coap_session_get_tls(s, &lib)));
		break;
	case COAP_EVENT_DTLS_ERROR:
		log_info("dtls", "%s: handshake failed or session error",
			 coap_session_str(s));
		break;
	default:
		break;
	}
	return 0;
}

/* ---- Block1 reassembly (E1, E4) ----------------------------------------- */

static void reasm_expire(struct coap_server *srv, struct sess_data *sd,
			 time_t now)
{
	struct reasm *r = sd->reasm, *next;

	for (; r; r = next) {
		next = r->next;
		if (now - r->last > REASM_LIFETIME)
			reasm_drop(srv, sd, r);
	}
}

static struct reasm *reasm_find(struct sess_data *sd, const char *key)
{
	for (struct reasm *r = sd->reasm; r; r = r->next)
		if (strcmp(r->key, key) == 0)
			return r;
	return NULL;
}

static struct reasm *reasm_new(struct coap_server *srv, struct sess_data *sd,
			       const char *key)
{
	if (sd->nreasm >= srv->cfg->server.reasm_per_session) {
		struct reasm *oldest = sd->reasm;
		for (struct reasm *r = sd->reasm; r; r = r->next)
			if (r->last < oldest->last)
				oldest = r;
		reasm_drop(srv, sd, oldest);
	}
	if (srv->reasm_count >= srv->cfg->server.reasm_total)
		return NULL; /* every slot busy: the caller answers 5.03 */
	struct reasm *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	snprintf(r->key, sizeof(r->key), "%s", key);
	r->next = sd->reasm;
	sd->reasm = r;
	sd->nreasm++;
	srv->reasm_count++;
	metrics_block1(1);
	return r;
}

static int reasm_append(struct coap_server *srv, struct reasm *r,
			const uint8_t *data, size_t len)
{
	if (srv->reasm_bytes + len > srv->cfg->server.reasm_total_bytes)
		return -ENOSPC;
	uint8_t *p = realloc(r->buf, r->len + len ? r->len + len : 1);
	if (!p)
		return -ENOMEM;
	memcpy(p + r->len, data, len);
	r->buf = p;
	r->len += len;
	srv->reasm_bytes += len;
	return 0;
}

static void reasm_key(const coap_pdu_t *req, const char *path, char *key,
		      size_t keylen)
{
	coap_opt_iterator_t it;
	coap_opt_t *o = coap_check_option(req, COAP_OPTION_RTAG, &it);
	size_t n = (size_t)snprintf(key, keylen, "%s#", path);

	if (!o)
		return;
	const uint8_t *v = coap_opt_value(o);
	for (uint32_t i = 0; i < coap_opt_length(o) && n + 3 < keylen; i++)
		n += (size_t)snprintf(key + n, keylen - n, "%02x", v[i]);
}

/* Outcome of feeding one request PDU to reassembly. */
enum body_state { BODY_READY, BODY_MORE, BODY_ERROR };

static enum body_state too_large(struct coap_server *srv, coap_pdu_t *resp)
{
	uint8_t buf[4];

	coap_pdu_set_code(resp, COAP_RESPONSE_CODE(413));
	coap_add_option(resp, COAP_OPTION_SIZE1,
			coap_encode_var_safe(buf, sizeof(buf),
					     srv->cfg->server.max_body),
			buf);
	coap_add_data(resp, 22, (const uint8_t *)"request body too large");
	return BODY_ERROR;
}

/* Collect the request body. On BODY_READY body and len are set; *owned is a
 * buffer to free afterwards (NULL when the body points into the PDU). */
static enum body_state collect_body(struct coap_server *srv, coap_session_t *s,
				    const coap_pdu_t *req, const char *path,
				    coap_pdu_t *resp, const uint8_t **body,
				    size_t *len, uint8_t **owned)
{
	const size_t max = srv->cfg->server.max_body;
	struct sess_data *sd = sess_get(srv, s);
	coap_block_b_t b1;
	const uint8_t *data = NULL;
	size_t dlen = 0;
	unsigned size1;
	char key[160];

	*owned = NULL;
	coap_get_data(req, &dlen, &data);
	if (opt_uint(req, COAP_OPTION_SIZE1, &size1) && size1 > max)
		return too_large(srv, resp);
	if (!coap_get_block_b(s, req, COAP_OPTION_BLOCK1, &b1) ||
	    (b1.num == 0 && !b1.m)) {
		if (dlen > max)
			return too_large(srv, resp);
		*body = data;
		*len = dlen;
		return BODY_READY;
	}
	if (!sd) {
		answer_error(resp, COAP_RESPONSE_CODE(500), "out of memory");
		return BODY_ERROR;
	}
	size_t off = (size_t)b1.num << (b1.szx + 4);
	time_t now = time(NULL);
	reasm_key(req, path, key, sizeof(key));
	reasm_expire(srv, sd, now);
	struct reasm *r = reasm_find(sd, key);
	if (off + dlen > max) {
		if (r)
			reasm_drop(srv, sd, r);
		return too_large(srv, resp);
	}
	if (b1.num == 0) {
		if (r)
			reasm_drop(srv, sd, r);
		r = reasm_new(srv, sd, key);
		if (!r) {
			answer_busy(srv, resp,
				    "too many block-wise transfers in progress");
			return BODY_ERROR;
		}
	}
	if (!r || off > r->len) {
		if (r)
			reasm_drop(srv, sd, r);
		answer_error(resp, COAP_RESPONSE_CODE(408), "missing Block1 block");
		return BODY_ERROR;
	}
	r->last = now;
	if (off == r->len) {
		if (reasm_append(srv, r, data, dlen) != 0) {
			reasm_drop(srv, sd, r);
			answer_busy(srv, resp, "busy");
			return BODY_ERROR;
		}
	} else if (off + dlen != r->len && b1.m) {
		/* neither the next block nor a repeat of the last one */
		reasm_drop(srv, sd, r);
		answer_error(resp, COAP_RESPONSE_CODE(408), "Block1 out of order");
		return BODY_ERROR;
	}
	if (b1.m) {
		coap_pdu_set_code(resp, COAP_RESPONSE_CODE(231));
		return BODY_MORE;
	}
	/* Last block: hand the buffer over. */
	*owned = r->buf;
	*body = r->buf;
	*len = r->len;
	srv->reasm_bytes -= r->len;
	r->len = 0;
	r->buf = NULL;
	reasm_drop(srv, sd, r);
	return BODY_READY;
}

/* ---- request handling ------------------------------------------------- */

static int read_request(struct coap_server *srv, const coap_pdu_t *req,
			struct req_info *ri)
{
	coap_opt_iterator_t it;
	coap_opt_t *o;
	unsigned v;
	size_t n = 0;

	memset(ri, 0, sizeof(*ri));
	clock_gettime(CLOCK_MONOTONIC, &ri->start);
	coap_option_iterator_init(req, &it, COAP_OPT_ALL);
	while ((o = coap_option_next(&it))) {
		if (it.number != COAP_OPTION_URI_PATH)
			continue;
		if (ri->nseg < MAX_SEGS) {
			ri->segs[ri->nseg].ptr = coap_opt_value(o);
			ri->segs[ri->nseg].len = coap_opt_length(o);
		}
		ri->nseg++;
		n += (size_t)snprintf(ri->path + n, n < sizeof(ri->path) ? sizeof(ri->path) - n : 0,
				      "/%.*s", (int)coap_opt_length(o), coap_opt_value(o));
		if (n >= sizeof(ri->path))
			n = sizeof(ri->path) - 1;
	}
	if (ri->nseg == 0)
		snprintf(ri->path, sizeof(ri->path), "/");
	ri->opts.method = (enum est_method)coap_pdu_get_code(req);
	ri->opts.cf = opt_uint(req, COAP_OPTION_CONTENT_FORMAT, &v) ? (int)v : EST_CF_NONE;
	ri->opts.accept = opt_uint(req, COAP_OPTION_ACCEPT, &v) ? (int)v : EST_CF_NONE;
	if (ri->nseg > MAX_SEGS)
		return -ENOENT;
	return est_route_path(ri->segs, ri->nseg, srv->roots, srv->nroots,
			      &ri->route);
}

static void pending_unlink(struct pending *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		p->srv->pendings = p->next;
	if (p->next)
		p->next->prev = p->prev;
}

static void on_proxy_done(void *arg, struct proxy_outcome *out)
{
	struct pending *p = arg;

	p->wait = NULL;
	p->bwait = NULL;
	p->out = *out;
	p->done = 1;
	coap_async_trigger(p->async); /* the handler runs again from libcoap */
}

static struct coap_server *srv_of(coap_session_t *s)
{
	return coap_get_app_data(coap_session_get_context(s));
}

/* Register the async for @p p: empty ACK now, separate response later. */
static int park(struct coap_server *srv, coap_session_t *s,
		const coap_pdu_t *req, struct pending *p)
{
	p->async = coap_register_async(s, req, 0);
	if (!p->async)
		return -ENOMEM;
	coap_async_set_app_data(p->async, p);
	p->next = srv->pendings;
	if (srv->pendings)
		srv->pendings->prev = p;
	srv->pendings = p;
	return 0;
}

/* The handler runs a second time for a separate response. */
static void answer_pending(coap_resource_t *r, coap_session_t *s,
			   const coap_pdu_t *req, const coap_string_t *q,
			   coap_pdu_t *resp, struct pending *p)
{
	int method = coap_pdu_get_code(req);

	if (!p->done) { /* cannot happen: libcoap re-ACKs until triggered */
		answer_error(resp, COAP_RESPONSE_CODE(500), "internal error");
		return;
	}
	uint8_t code = p->out.resp.code;
	if (p->enroll && srv_of(s)->brski && code == EST_CODE(2, 4))
		brski_note_enrolled(srv_of(s)->brski, p->out.resp.cf,
				    p->out.resp.payload, p->out.resp.len);
	put_answer(r, s, req, q, resp, &p->out.resp);
	log_request(p->client, method, p->path, p->out.upstream_status,
		    p->out.note, code, ms_since(&p->start));
	est_coap_resp_free(&p->out.resp);
	pending_unlink(p);
	free(p);
}

static void go_upstream(struct coap_server *srv, coap_resource_t *r,
			coap_session_t *s, const coap_pdu_t *req,
			const coap_string_t *q, coap_pdu_t *resp,
			const struct req_info *ri, int resp_cf,
			const uint8_t *body, size_t len, const char *client)
{
	struct pending *p = calloc(1, sizeof(*p));
	struct proxy_outcome now;
	int rc;

	if (!p) {
		answer_error(resp, COAP_RESPONSE_CODE(500), "out of memory");
		log_request(client, ri->opts.method, ri->path, 0, NULL,
			    EST_CODE(5, 0), ms_since(&ri->start));
		return;
	}
	p->srv = srv;
	p->start = ri->start;
	snprintf(p->path, sizeof(p->path), "%s", ri->path);
	snprintf(p->client, sizeof(p->client), "%s", client);
	struct proxy_request rq = {
		.route = &ri->route,
		.resp_cf = resp_cf,
		.client = client,
		.body = body,
		.len = len,
	};
	p->enroll = ri->route.op->op == EST_OP_SEN || ri->route.op->op == EST_OP_SREN;
	rc = proxy_submit(srv->px, &rq, on_proxy_done, p, &p->wait, &now);
	if (rc == 0) {
		if (park(srv, s, req, p) == 0)
			return; /* empty ACK now, separate response later */
		proxy_cancel(p->wait);
		est_coap_resp_error(&now.resp, EST_CODE(5, 3), "busy");
		now.upstream_status = 0;
		snprintf(now.note, sizeof(now.note), "async registration failed");
	}
	if (p->enroll && srv->brski && now.resp.code == EST_CODE(2, 4))
		brski_note_enrolled(srv->brski, now.resp.cf, now.resp.payload,
				    now.resp.len);
	free(p);
	uint8_t code = now.resp.code;
	put_answer(r, s, req, q, resp, &now.resp);
	log_request(client, ri->opts.method, ri->path, now.upstream_status,
		    now.note, code, ms_since(&ri->start));
	est_coap_resp_free(&now.resp);
}

/* RFC 8516: 4.29 + Max-Age when the client is over [server] rate_limit.
 * Only the first block of a request counts. Returns 1 when refused. */
static int rate_refused(struct coap_server *srv, coap_session_t *s,
			const coap_pdu_t *req, coap_pdu_t *resp,
			const char *client)
{
	struct timespec now;
	coap_block_b_t b1;
	uint32_t retry = 0;
	uint8_t buf[4];

	if (!srv->rate || (coap_get_block_b(s, req, COAP_OPTION_BLOCK1, &b1) && b1.num > 0))
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (estgw_rate_take(srv->rate, client, (uint64_t)now.tv_sec * 1000 +
				(uint64_t)now.tv_nsec / 1000000, &retry) == 0)
		return 0;
	coap_pdu_set_code(resp, COAP_RESPONSE_CODE(429));
	coap_add_option(resp, COAP_OPTION_MAXAGE,
			coap_encode_var_safe(buf, sizeof(buf), retry), buf);
	coap_add_data(resp, 17, (const uint8_t *)"too many requests");
	return 1;
}

/* G2-G4: the policy decides before anything goes upstream. Answers
 * and logs a refusal; returns 1 when refused. */
static int policy_refused(struct coap_server *srv, coap_session_t *s,
			  struct sess_data *sd, const struct req_info *ri,
			  const uint8_t *body, size_t len, coap_pdu_t *resp)
{
	coap_tls_library_t lib;
	struct estgw_policy_verdict v;
	uint8_t tu[64];
	size_t tulen = 0;
	struct estgw_policy_req pr = {
		.op = ri->route.op->op,
		.kind = sd ? sd->kind : ESTGW_CLIENT_OTHER,
		.cert_expired = sd ? sd->cert_expired : 0,
		.cert = sd ? sd->cert : NULL,
		.cert_len = sd ? sd->cert_len : 0,
		.csr = ri->route.op->method == EST_POST ? body : NULL,
		.csr_len = len,
	};
	const char *client = sd ? sd->client : "-";

	if (estgw_dtls_tls_unique(coap_session_get_tls(s, &lib), tu, sizeof(tu),
				  &tulen) == 0) {
		pr.tls_unique = tu;
		pr.tls_unique_len = tulen;
	}
	if (estgw_policy_check(srv->cfg, &pr, &v) == 0) {
		if (v.note)
			log_info("policy", "client=\"%s\" (%s) %s: %s", client,
				 estgw_client_kind_name(pr.kind), ri->path, v.note);
		return 0;
	}
	log_warn("policy", "client=\"%s\" (%s) %s refused: %s", client,
		    estgw_client_kind_name(pr.kind), ri->path, v.diag);
	answer_error(resp, v.code, v.diag);
	log_request(client, ri->opts.method, ri->path, 0, v.diag, v.code,
		    ms_since(&ri->start));
	return 1;
}

/* /.well-known/brski/{rv,vs,es} (H): body collected like EST, then
 * brski.c answers at once or later through on_proxy_done. */
static void go_brski(struct coap_server *srv, coap_resource_t *r,
		     coap_session_t *s, const coap_pdu_t *req,
		     const coap_string_t *q, coap_pdu_t *resp,
		     const struct req_info *ri, enum brski_res res,
		     const char *client)
{
	const uint8_t *body = NULL;
	size_t len = 0;
	uint8_t *owned = NULL, *peer = NULL;
	struct proxy_outcome now;
	struct pending *p;
	coap_tls_library_t lib;
	int rc;

	switch (collect_body(srv, s, req, ri->path, resp, &body, &len, &owned)) {
	case BODY_MORE:
		return;
	case BODY_ERROR:
		log_request(client, ri->opts.method, ri->path, 0, "body rejected",
			    (uint8_t)coap_pdu_get_code(resp), ms_since(&ri->start));
		return;
	case BODY_READY:
		break;
	}
	struct brski_request rq = {
		.res = res, .method = ri->opts.method, .cf = ri->opts.cf,
		.accept = ri->opts.accept, .body = body, .len = len,
		.session = coap_session_str(s),
	};
	if (estgw_dtls_peer_cert_der(coap_session_get_tls(s, &lib), &peer, &rq.peer_len) == 0)
		rq.peer = peer;
	p = calloc(1, sizeof(*p));
	rc = p ? (int)brski_submit(srv->brski, &rq, on_proxy_done, p, &p->bwait, &now) : -ENOMEM;
	free(peer);
	free(owned);
	if (rc == 0) {
		p->srv = srv;
		p->start = ri->start;
		snprintf(p->path, sizeof(p->path), "%s", ri->path);
		snprintf(p->client, sizeof(p->client), "%s", client);
		if (park(srv, s, req, p) == 0)
			return;
		brski_cancel(p->bwait);
		rc = -ENOMEM;
	}
	free(p);
	if (rc < 0) {
		answer_error(resp, COAP_RESPONSE_CODE(500), "out of memory");
		log_request(client, ri->opts.method, ri->path, 0, NULL,
			    EST_CODE(5, 0), ms_since(&ri->start));
		return;
	}
	uint8_t code = now.resp.code;
	put_answer(r, s, req, q, resp, &now.resp);
	log_request(client, ri->opts.method, ri->path, now.upstream_status,
		    now.note, code, ms_since(&ri->start));
	est_coap_resp_free(&now.resp);
}

static void hnd_est(coap_resource_t *r, coap_session_t *s,
		    const coap_pdu_t *req, const coap_string_t *q,
		    coap_pdu_t *resp)
{
	struct coap_server *srv = coap_get_app_data(coap_session_get_context(s));
	coap_async_t *a = coap_find_async(s, coap_pdu_get_token(req));
	struct est_verdict v;
	struct req_info ri;
	const uint8_t *body = NULL;
	size_t len = 0;
	uint8_t *owned = NULL;

	if (a) {
		answer_pending(r, s, req, q, resp, coap_async_get_app_data(a));
		return;
	}
	struct sess_data *sd = sess_get(srv, s);
	const char *client = sd ? sd->client : "-";
	if (srv->draining) {
		read_request(srv, req, &ri);
		answer_busy(srv, resp, "shutting down");
		log_request(client, ri.opts.method, ri.path, 0, "shutting down",
			    EST_CODE(5, 3), ms_since(&ri.start));
		return;
	}
	int routed = read_request(srv, req, &ri);
	enum brski_res br = srv->brski ? brski_route(ri.segs, ri.nseg) : BRSKI_NONE;
	if (br != BRSKI_NONE) {
		go_brski(srv, r, s, req, q, resp, &ri, br, client);
		return;
	}
	if (routed != 0) {
		answer_error(resp, COAP_RESPONSE_CODE(404), "no such resource");
		log_request(client, ri.opts.method, ri.path, 0, NULL,
			    EST_CODE(4, 4), ms_since(&ri.start));
		return;
	}
	if (est_check_request(ri.route.op, &ri.opts, &v) != 0) {
		answer_error(resp, v.code, v.diag);
		log_request(client, ri.opts.method, ri.path, 0, v.diag, v.code,
			    ms_since(&ri.start));
		return;
	}
	if (rate_refused(srv, s, req, resp, client)) {
		log_request(client, ri.opts.method, ri.path, 0, "rate limit",
			    EST_CODE(4, 29), ms_since(&ri.start));
		return;
	}
	switch (collect_body(srv, s, req, ri.path, resp, &body, &len, &owned)) {
	case BODY_MORE:
		return;
	case BODY_ERROR:
		log_request(client, ri.opts.method, ri.path, 0, "body rejected",
			    (uint8_t)coap_pdu_get_code(resp), ms_since(&ri.start));
		return;
	case BODY_READY:
		break;
	}
	if (ri.route.op->method == EST_GET)
		len = 0; /* a GET carries no body upstream */
	if (policy_refused(srv, s, sd, &ri, body, len, resp)) {
		free(owned);
		return;
	}
	go_upstream(srv, r, s, req, q, resp, &ri, v.resp_cf, body, len, client);
	free(owned);
}

/* GET /.well-known/core (A3, A4). */
static void hnd_core(coap_resource_t *r, coap_session_t *s,
		     const coap_pdu_t *req, const coap_string_t *q,
		     coap_pdu_t *resp)
{
	struct coap_server *srv = coap_get_app_data(coap_session_get_context(s));
	struct est_slice qs[MAX_QUERIES];
	struct est_link_opts lo = {
		.root = srv->roots[srv->nroots - 1],
		.ops_enabled = (1u << EST_OP_CRTS) | (1u << EST_OP_SEN) |
			       (1u << EST_OP_SREN) | (1u << EST_OP_ATT) |
			       (srv->cfg->server.serverkeygen == ESTGW_SKG_OFF ? 0 :
				(1u << EST_OP_SKG) | (1u << EST_OP_SKC)), /* F */
		.with_root_link = 1,
	};
	coap_opt_iterator_t it;
	coap_opt_t *o;
	size_t nq = 0;
	char *text = NULL;
	size_t tlen = 0;
	struct timespec t0;
	struct sess_data *sd = sess_get(srv, s);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	lo.ops_enabled &= ~proxy_ops_missing(srv->px); /* 404/501 upstream */
	if (srv->brski)
		lo.ops_enabled |= EST_LINKS_BRSKI;
	coap_option_iterator_init(req, &it, COAP_OPT_ALL);
	while ((o = coap_option_next(&it)) && nq < MAX_QUERIES) {
		if (it.number != COAP_OPTION_URI_QUERY)
			continue;
		qs[nq].ptr = coap_opt_value(o);
		qs[nq].len = coap_opt_length(o);
		nq++;
	}
	if (est_link_format(&lo, qs, nq, &text, &tlen) != 0) {
		answer_error(resp, COAP_RESPONSE_CODE(500), "out of memory");
		return;
	}
	coap_pdu_set_code(resp, COAP_RESPONSE_CODE(205));
	coap_add_data_large_response(r, s, req, resp, q, EST_CF_LINK, -1, 0,
				     tlen, (const uint8_t *)(text ? text : ""),
				     text ? release_payload : NULL, text);
	log_request(sd ? sd->client : "-", EST_GET, "/.well-known/core", 0,
		    NULL, EST_CODE(2, 5), ms_since(&t0));
}

/* ---- libcoap set-up ----------------------------------------------------- */

static void on_coap_log(coap_log_t level, const char *message)
{
	size_t n = strlen(message);

	/* Expected with credentials set once per context (see dtls.h). */
	if (strstr(message, "No Server Certificate defined"))
		return;
	while (n && (message[n - 1] == '\n' || message[n - 1] == '\r'))
		n--;
	estgw_log(level <= LOG_DEBUG ? (int)level : LOG_DEBUG, "coap", "%.*s",
		  (int)n, message);
}

/* libcoap passes its copy of our coap_dtls_pki_t; cn_call_back_arg carries
 * our credentials (libcoap ignores it while validate_cn_call_back is NULL). */
static int on_tls_setup(void *tls, coap_dtls_pki_t *setup)
{
	return estgw_dtls_setup_session(setup->cn_call_back_arg, tls);
}

/* docs/libraries.md "Handshake cost": libcoap 4.3.1 re-reads the PEM paths
 * of its copy of coap_dtls_pki_t in every ClientHello and ignores the
 * result. Given empty paths it loads nothing (logging "No Server
 * Certificate defined", filtered in on_coap_log) and on_tls_setup installs
 * the chain and key parsed once. Relies on 4.3.1 internals: any other
 * version gets the paths (tests/integration: TestHandshakeCost). */
static int creds_parsed_once(void)
{
	return LIBCOAP_VERSION == 4003001U &&
	       strcmp(coap_package_version(), "libcoap 4.3.1") == 0;
}

/* cn_call_back_arg carries the credentials in force when libcoap's copy
 * was made; coap_server_reload() makes a new copy with the new ones. */
static int setup_pki(struct coap_server *srv)
{
	coap_dtls_pki_t pki;
	int once = creds_parsed_once();

	memset(&pki, 0, sizeof(pki));
	pki.version = COAP_DTLS_PKI_SETUP_VERSION;
	pki.verify_peer_cert = 1; /* G2: every client by certificate */
	pki.check_common_ca = 1;
	pki.allow_self_signed = 0;
	pki.allow_expired_certs = 0;
	pki.cert_chain_validation = 1;
	pki.cert_chain_verify_depth = 4;
	pki.additional_tls_setup_call_back = on_tls_setup;
	pki.cn_call_back_arg = srv->dtls;
	pki.pki_key.key_type = COAP_PKI_KEY_PEM;
	pki.pki_key.key.pem.public_cert = once ? "" : srv->cfg->server.certificate;
	pki.pki_key.key.pem.private_key = once ? "" : srv->cfg->server.private_key;
	pki.pki_key.key.pem.ca_file = once ? "" : srv->cfg->server.client_trust;
	if (!coap_context_set_pki(srv->ctx, &pki)) {
		log_err("coap", "cannot set the DTLS credentials");
		return -EINVAL;
	}
	log_info("dtls", "server credentials %s (%s)",
		 once ? "parsed once" : "reloaded by libcoap per handshake",
		 coap_package_version());
	return 0;
}

/* The DTLS credentials of @p cfg: server chain and key, client trust, the
 * IDevID/LDevID bundles of [policy], and with [brski] the pledges' CAs. */
static struct estgw_dtls *load_dtls(const struct estgw_config *cfg)
{
	const struct estgw_dtls_conf dc = {
		.chain_file = cfg->server.certificate,
		.key_file = cfg->server.private_key,
		.trust_file = cfg->server.client_trust,
		.idevid_file = cfg->policy.idevid_trust,
		.ldevid_file = cfg->policy.ldevid_trust,
		.allow_expired_idevid = cfg->policy.allow_expired_idevid,
	};
	struct estgw_dtls *d = estgw_dtls_new(&dc);

	if (!d || !cfg->brski.enabled) /* pledges' IDevIDs too (H2) */
		return d;
	int bad = estgw_dtls_add_trust(d, cfg->brski.manufacturer_trust) != 0;
	for (size_t i = 0; !bad && i < cfg->brski.nmfr; i++)
		bad = estgw_dtls_add_trust(d, cfg->brski.mfr[i].ca) != 0;
	if (bad) {
		estgw_dtls_free(d);
		return NULL;
	}
	return d;
}

/* One [server] listen address, parsed by config.c: bound as it is. */
static int add_endpoint(struct coap_server *srv, const struct estgw_addr *a)
{
	coap_address_t addr;

	coap_address_init(&addr);
	if (a->salen > sizeof(addr.addr))
		return -EAFNOSUPPORT;
	addr.size = a->salen;
	memcpy(&addr.addr, &a->sa, a->salen);
	if (!coap_new_endpoint(srv->ctx, &addr, COAP_PROTO_DTLS)) {
		log_err("coap", "cannot listen on %s (DTLS)", a->text);
		return -EADDRINUSE;
	}
	log_info("coap", "listening on %s (DTLS)", a->text);
	return 0;
}

static int add_resources(struct coap_server *srv)
{
	static const coap_request_t methods[] = {
		COAP_REQUEST_GET, COAP_REQUEST_POST, COAP_REQUEST_PUT,
		COAP_REQUEST_DELETE, COAP_REQUEST_FETCH, COAP_REQUEST_PATCH,
		COAP_REQUEST_IPATCH,
	};
	coap_resource_t *core, *any;

	core = coap_resource_init(coap_make_str_const(".well-known/core"), 0);
	any = coap_resource_unknown_init2(hnd_est, 0);
	if (!core || !any)
		return -ENOMEM;
	coap_register_request_handler(core, COAP_REQUEST_GET, hnd_core);
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		coap_register_request_handler(any, methods[i], hnd_est);
	coap_add_resource(srv->ctx, core);
	coap_add_resource(srv->ctx, any);
	return 0;
}

static void on_coap_io(evutil_socket_t fd, short what, void *arg)
{
	struct coap_server *srv = arg;

	coap_io_process(srv->ctx, COAP_IO_NO_WAIT);
}

struct coap_server *coap_server_new(struct event_base *base,
				    const struct estgw_config *cfg,
				    struct proxy *px)
{
	struct coap_server *srv = calloc(1, sizeof(*srv));

	if (!srv)
		return NULL;
	srv->base = base;
	srv->cfg = cfg;
	srv->px = px;
	srv->roots[srv->nroots++] = "/.well-known/est";
	if (cfg->server.root)
		srv->roots[srv->nroots++] = cfg->server.root;
	coap_startup();
	coap_set_log_handler(on_coap_log);
	coap_set_log_level(estgw_log_level() >= LOG_DEBUG ? LOG_INFO : LOG_WARNING);
	coap_dtls_set_log_level(LOG_WARNING);
	srv->dtls = load_dtls(cfg);
	srv->ctx = coap_new_context(NULL);
	if (cfg->server.rate_limit)
		srv->rate = estgw_rate_new(cfg->server.rate_limit, RATE_CLIENTS);
	if (!srv->dtls || !srv->ctx || (cfg->server.rate_limit && !srv->rate))
		goto fail;
	coap_set_app_data(srv->ctx, srv);
	coap_context_set_block_mode(srv->ctx, COAP_BLOCK_USE_LIBCOAP);
	coap_context_set_max_idle_sessions(srv->ctx, cfg->server.max_sessions);
	coap_context_set_session_timeout(srv->ctx, cfg->server.idle_timeout);
	coap_context_set_max_handshake_sessions(srv->ctx, cfg->server.max_handshakes);
	coap_register_event_handler(srv->ctx, on_event);
	if (setup_pki(srv) != 0 || add_resources(srv) != 0)
		goto fail;
	for (size_t i = 0; i < cfg->server.nlisten; i++)
		if (add_endpoint(srv, &cfg->server.listen[i]) != 0)
			goto fail;
	srv->ev = event_new(base, coap_context_get_coap_fd(srv->ctx),
			    EV_READ | EV_PERSIST, on_coap_io, srv);
	if (!srv->ev || event_add(srv->ev, NULL) != 0)
		goto fail;
	return srv;
fail:
	coap_server_free(srv);
	return NULL;
}

void coap_server_free(struct coap_server *srv)
{
	if (!srv)
		return;
	if (srv->ev)
		event_free(srv->ev);
	while (srv->pendings) {
		struct pending *p = srv->pendings;
		proxy_cancel(p->wait);
		brski_cancel(p->bwait);
		if (p->done)
			est_coap_resp_free(&p->out.resp);
		pending_unlink(p);
		free(p);
	}
	while (srv->sessions)
		sess_free(srv->sessions);
	if (srv->ctx)
		coap_free_context(srv->ctx);
	coap_cleanup();
	estgw_dtls_free(srv->dtls);
	estgw_rate_free(srv->rate);
	free(srv);
}

void coap_server_set_brski(struct coap_server *srv, struct brski *b)
{
	srv->brski = b;
}

const char *coap_server_lib_version(void)
{
	static char buf[160];
	char tls[100];

	snprintf(buf, sizeof(buf), "%s, %s", coap_package_version(),
		 coap_string_tls_version(tls, sizeof(tls)));
	return buf;
}

/* [server] rate_limit on reload. A changed rate applies at once to the
 * buckets in use (what a client has spent stays spent, up to the new burst);
 * 0 drops the limiter, and a limit set again starts from full buckets.
 * @p fresh: the limiter made beforehand when there was none. */
static void reload_rate(struct coap_server *srv, uint32_t per_minute,
			struct estgw_rate *fresh)
{
	if (!per_minute) {
		estgw_rate_free(srv->rate);
		srv->rate = NULL;
	} else if (fresh) {
		srv->rate = fresh;
	} else {
		estgw_rate_set(srv->rate, per_minute);
	}
}

int coap_server_reload(struct coap_server *srv, const struct estgw_config *cfg)
{
	struct estgw_rate *fresh = NULL;
	struct estgw_dtls *d, *old = srv->dtls;

	if (cfg->server.rate_limit && !srv->rate) {
		fresh = estgw_rate_new(cfg->server.rate_limit, RATE_CLIENTS);
		if (!fresh)
			return -ENOMEM;
	}
	d = load_dtls(cfg);
	if (!d) {
		estgw_rate_free(fresh);
		return -EINVAL;
	}
	/* New handshakes use the new credentials; sessions already set up keep
	 * their own references (SSL objects) to the old ones. libcoap's copy
	 * of coap_dtls_pki_t points at the config's strings: replace it. */
	srv->cfg = cfg;
	srv->dtls = d;
	srv->nroots = 1;
	if (cfg->server.root)
		srv->roots[srv->nroots++] = cfg->server.root;
	coap_context_set_max_idle_sessions(srv->ctx, cfg->server.max_sessions);
	coap_context_set_session_timeout(srv->ctx, cfg->server.idle_timeout);
	/* libcoap 4.3.1 compares the count of sessions in handshake with this
	 * value each time a new one arrives: setting it again is enough. */
	coap_context_set_max_handshake_sessions(srv->ctx, cfg->server.max_handshakes);
	reload_rate(srv, cfg->server.rate_limit, fresh);
	if (setup_pki(srv) != 0)
		log_err("coap", "reload: libcoap refused the new credentials");
	estgw_dtls_free(old);
	return 0;
}

void coap_server_quiesce(struct coap_server *srv)
{
	srv->draining = 1;
}

size_t coap_server_busy(const struct coap_server *srv)
{
	size_t n = 0;

	for (const struct pending *p = srv->pendings; p; p = p->next)
		n++;
	return n ? n : (size_t)!coap_can_exit(srv->ctx);
}
