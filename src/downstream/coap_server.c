/* coap_server.c - libcoap DTLS server on the libevent loop (the only file
 * that includes libcoap).
 *
 * Owns what only libcoap can do: the endpoints and DTLS set-up, the
 * sessions and their client identity (through the DTLS glue), the request
 * PDU turned into pipeline.c's plain request and the answer turned back
 * into a PDU, block-wise transfer on the wire (blockwise.c decides),
 * separate responses (libcoap async), and the one log line per request,
 * written when its answer is sent. What a request means (route, checks,
 * rate limit, policy, which target answers it) is pipeline.c's: every
 * path, /.well-known/core included, goes through one handler and there.
 *
 * Block-wise transfer (RFC 7959) is not left to libcoap (its block mode is
 * off): blockwise.c reassembles Block1 (bounded: libcoap 4.3.1's own
 * single-body mode allocates whatever Size1 or a far block number asks
 * for) and keeps each finished answer per session under its own key
 * (method, path, Accept, query, Request-Tag), from which Block2 follow-ups
 * and a repeated last Block1 block are answered. libcoap 4.3.1 keys its
 * Block2 state by resource + method + query only, and every EST path is
 * one resource here, so interleaved transfers got each other's blocks (E6).
 */
#include "downstream/coap_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <coap3/coap.h>
#include <event2/event.h>

#include "downstream/blockwise.h"
#include "downstream/jpy_relay.h"
#include "downstream/dtls_prefilter.h"
#include "tls/dtls_cookie.h"
#include "tls/dtls.h"
#include "estgw/log.h"
#include "estgw/translate.h"
#include "ops/metrics.h"
#include "core/pipeline.h"

#define REASM_LIFETIME 247     /* seconds: EXCHANGE_LIFETIME (RFC 7252 4.8.2) */
#define CLIENT_MAX 256
#define KEY_MAX 256            /* block-wise keys: path, options, Request-Tag */
#define KEEP_PER_SESSION 4     /* finished answers kept per session (E6, E8) */
#define KEEP_TOTAL_BYTES (16u << 20) /* bytes of all kept answers */
#define OPT_ROOM 64            /* bytes reserved for the answer's options */
#define TLS_UNIQUE_MAX 64
#define VIA_MAX 96             /* a pledge behind a join proxy, for log lines (H6) */
#define HS_TIMEOUT 10          /* seconds a handshake may stay half-open (L2) */
#define PF_BUDGET 256          /* datagrams filtered per loop callback */
#define PF_LOG_EVERY 10        /* seconds between pre-filter summary lines */
#define SWEEP_MS 1000          /* how often idle sessions are looked at */
#define IDLE_RELEASE_MS 2000   /* no request for this long: record buffers go */
#define TRIM_AFTER 16          /* sessions released before the heap is trimmed */

/* What the answer to a request needs from block-wise transfer (E5-E8). */
struct blk_ctx {
	char akey[KEY_MAX];       /* the answer: method, path, query, Accept, Request-Tag */
	int echo;                 /* put Block1 = echo_b1 into the answer (E5) */
	struct bw_block echo_b1;
	int has_b2;               /* Block2 in this request */
	struct bw_block b2;
	int b2_szx;               /* Block2 SZX from an earlier block (E7), -1 */
	int keep_last;            /* the answer ends a Block1 transfer (E8) */
};

struct sess_data {
	struct coap_server *srv;
	coap_session_t *session;
	char *client;               /* subject, its own length (not CLIENT_MAX) */
	struct pl_client id;        /* who the peer is, for the pipeline */
	struct bw_session bw;       /* Block1 bodies and kept answers */
	char via[VIA_MAX];          /* "" direct; the join proxy and header (H6) */
	int counted; /* in the open-sessions gauge */
	/* Idle sessions give their DTLS record buffers back (sweep()): */
	uint64_t last_ms;     /* last request (or the handshake), monotonic */
	uint64_t quiet_ms;    /* a separate answer may be resent until then */
	unsigned busy;        /* separate answers still to send */
	int released;         /* record buffers given back since last_ms */
	struct sess_data *prev, *next;
};

/* A request waiting for its target's answer (a separate response). */
struct pending {
	struct coap_server *srv;
	coap_async_t *async;
	struct pl_job job;
	int done;
	struct proxy_outcome out;
	struct blk_ctx bc;
	struct timespec start;
	char path[96];
	char client[CLIENT_MAX];
	char via[VIA_MAX];
	struct pending *prev, *next;
};

struct coap_server {
	struct event_base *base;
	const struct estgw_config *cfg;
	struct pipeline *pl;
	struct estgw_dtls *dtls;
	coap_context_t *ctx;
	struct event *ev;
	struct bw_pool bw;  /* block-wise state of all sessions (E1, E4) */
	size_t bw_gauge;    /* Block1 bodies last told to metrics */
	struct sess_data *sessions;
	struct pending *pendings;
	struct jpy_relay *jpy;  /* [brski] jpy_listen: pledges behind join proxies (H6) */
	struct prefilter *pf; /* NULL: libcoap sees every datagram (L1) */
	int pf_fd[ESTGW_MAX_LISTEN];
	struct pf_gate pf_gate[ESTGW_MAX_LISTEN]; /* each in libcoap's epoll set */
	size_t npf;
	time_t pf_logged;
	struct pf_stats pf_last;
	struct event *sweep;   /* releases idle sessions' record buffers (J2) */
	unsigned released;     /* sessions released since the last heap trim */
};

/* One request PDU as the pipeline and the block-wise glue see it. */
struct req_info {
	struct pl_request rq;
	struct pl_client client;   /* the session's, with this request's tls-unique */
	uint8_t tls_unique[TLS_UNIQUE_MAX];
	uint8_t *cert;             /* the client certificate (DER) for this request */
	char path[96];
	char local[48];            /* the session's local address, numeric */
	const char *via;           /* sess_data.via */
	char rkey[KEY_MAX];        /* the Block1 body: path, Request-Tag, Content-Format */
	struct blk_ctx bc;
	struct timespec start;
};

/* ---- small helpers ----------------------------------------------------- */

static struct coap_server *srv_of(coap_session_t *s)
{
	return coap_get_app_data(coap_session_get_context(s));
}

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

/* The value of option @p num, "" when empty, NULL when absent. */
static const uint8_t *opt_raw(const coap_pdu_t *pdu, uint16_t num, size_t *len)
{
	coap_opt_iterator_t it;
	coap_opt_t *o = coap_check_option(pdu, num, &it);

	*len = o ? coap_opt_length(o) : 0;
	if (!o)
		return NULL;
	return *len ? coap_opt_value(o) : (const uint8_t *)"";
}

/* The one line per request: who, what, upstream status, CoAP code, time. */
static void log_request(const char *client, const char *via, int method,
			const char *path, long upstream, const char *note,
			uint8_t code, double ms)
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
	log_info("req", "client=\"%s\"%s%s%s %s %s upstream=%s code=%d.%02d %.1fms%s%s%s",
		 client, via && *via ? " via=\"" : "", via && *via ? via : "",
		 via && *via ? "\"" : "", method_name(method), path, up,
		 EST_CODE_CLASS(code), EST_CODE_DETAIL(code), ms, note ? " (" : "",
		 note ? note : "", note ? ")" : "");
}

static void answer_error(coap_pdu_t *resp, uint8_t code, const char *diag)
{
	coap_pdu_set_code(resp, (coap_pdu_code_t)code);
	if (diag)
		coap_add_data(resp, strlen(diag), (const uint8_t *)diag);
}

/* RFC 7252 §4.2: a request in an ACK (or RST) is rejected by ignoring it:
 * the response stays empty, which libcoap drops for a non-CON. */
static int not_a_request(coap_session_t *s, const coap_pdu_t *req)
{
	coap_pdu_type_t t = coap_pdu_get_type(req);

	if (t != COAP_MESSAGE_ACK && t != COAP_MESSAGE_RST)
		return 0;
	log_info("coap", "%s: request in an %s message ignored (RFC 7252 4.2)",
		 coap_session_str(s), t == COAP_MESSAGE_ACK ? "ACK" : "RST");
	return 1;
}

/* ---- answers out, block-wise (RFC 7959; blockwise.c decides) ----------- */

static void add_uint(coap_pdu_t *pdu, uint16_t num, uint32_t v)
{
	uint8_t buf[4];

	coap_add_option(pdu, num, coap_encode_var_safe(buf, sizeof(buf), v), buf);
}

static void add_block(coap_pdu_t *pdu, uint16_t num, const struct bw_block *b)
{
	uint8_t buf[3];

	coap_add_option(pdu, num, bw_block_encode(b, buf), buf);
}

/* Block1, Block2, Size1 and the payload of @p req, for blockwise.c. */
static void req_blocks(const coap_pdu_t *req, struct bw_req *rq)
{
	unsigned v = 0;

	memset(rq, 0, sizeof(*rq));
	rq->block1 = opt_raw(req, COAP_OPTION_BLOCK1, &rq->block1_len);
	rq->block2 = opt_raw(req, COAP_OPTION_BLOCK2, &rq->block2_len);
	rq->has_size1 = opt_uint(req, COAP_OPTION_SIZE1, &v);
	rq->size1 = v;
	if (!coap_get_data(req, &rq->len, &rq->data))
		rq->len = 0;
	rq->now = time(NULL);
}

/* Payload bytes one message on @p s can carry after token and options. */
static size_t room_for(coap_session_t *s, const coap_pdu_t *req)
{
	size_t max = coap_session_max_pdu_size(s);
	size_t used = coap_pdu_get_token(req).length + OPT_ROOM + 1;

	return max > used ? max - used : 0;
}

/* Put @p a into @p resp: all of it, or the Block2 block asked for by @p b2
 * (or at the SZX @p pref an earlier block asked for), with Block1 = @p echo
 * when not NULL (E5). Options in ascending order, payload last. Returns 1
 * when more blocks follow (keep the answer), 0 when all of it went, -1
 * when an error went instead; *szx: the Block2 SZX used, -1 none. */
static int put_body(coap_session_t *s, const coap_pdu_t *req, coap_pdu_t *resp,
		    const struct bw_answer *a, const struct bw_block *b2,
		    int pref, const struct bw_block *echo, int *szx)
{
	struct bw_slice sl = { .n = a->len };
	int blocks = EST_CODE_CLASS(a->code) == 2 && a->cf != EST_CF_NONE;
	int rc = blocks ? bw_block2(a->len, b2, pref, room_for(s, req), &sl) : 0;

	if (szx)
		*szx = rc == 0 && sl.block ? sl.b2.szx : -1;
	if (rc != 0) {
		answer_error(resp, EST_CODE(4, 0), rc == -ERANGE ?
			     "Block2 beyond the end of the answer" : rc == -EINVAL ?
			     "Block2 SZX 7 is reserved" : "no room for a block");
		return -1;
	}
	coap_pdu_set_code(resp, (coap_pdu_code_t)a->code);
	if (sl.block) /* each body its own ETag: blocks of two never mix unseen */
		coap_add_option(resp, COAP_OPTION_ETAG, sizeof(a->etag), a->etag);
	if (blocks)
		add_uint(resp, COAP_OPTION_CONTENT_FORMAT, (uint32_t)a->cf);
	if (a->has_max_age)
		add_uint(resp, COAP_OPTION_MAXAGE, a->max_age);
	if (sl.block)
		add_block(resp, COAP_OPTION_BLOCK2, &sl.b2);
	if (echo)
		add_block(resp, COAP_OPTION_BLOCK1, echo);
	if (sl.block)
		add_uint(resp, COAP_OPTION_SIZE2, (uint32_t)a->len);
	if (sl.n)
		coap_add_data(resp, sl.n, a->payload + sl.off);
	return sl.block && sl.b2.m;
}

static void gauge_sync(struct coap_server *srv)
{
	if (srv->bw.count != srv->bw_gauge)
		metrics_block1((int)srv->bw.count - (int)srv->bw_gauge);
	srv->bw_gauge = srv->bw.count;
}

/* The answer to a request, at once or as a separate response: put it in,
 * and keep it when Block2 follow-ups may come (E6) or it ends a Block1
 * transfer (E8). Takes the payload out of @p r. */
static void answer_final(struct coap_server *srv, coap_session_t *s,
			 const coap_pdu_t *req, coap_pdu_t *resp,
			 const struct blk_ctx *bc, struct est_coap_resp *r)
{
	struct sess_data *sd = coap_session_get_app_data(s);

	if (r->code == EST_CODE(5, 3) && !r->has_max_age) { /* D1 */
		r->has_max_age = 1;
		r->max_age = srv->cfg->upstream.retry_default;
	}
	struct bw_answer a = {
		.code = r->code, .cf = r->cf, .has_max_age = r->has_max_age,
		.max_age = r->max_age, .payload = r->payload, .len = r->len,
	};
	struct bw_req last;

	r->payload = NULL;
	r->len = 0;
	bw_etag(&a, a.etag);
	int more = put_body(s, req, resp, &a, bc->has_b2 ? &bc->b2 : NULL,
			    bc->b2_szx, bc->echo ? &bc->echo_b1 : NULL, &a.szx);
	req_blocks(req, &last);
	if (sd && (more > 0 || bc->keep_last) &&
	    bw_keep(&srv->bw, &sd->bw, bc->akey, bc->keep_last ? &last : NULL,
		    &a, last.now) == 0)
		return;
	if (more > 0)
		log_warn("coap", "%s: answer not kept (limit): its later blocks "
			 "are made again or refused", coap_session_str(s));
	bw_answer_clear(&a);
}

/* @p out (rc 1), or 5.00 (rc < 0), answered now and logged. */
static void answer_now(struct coap_server *srv, coap_session_t *s,
		       const coap_pdu_t *req, coap_pdu_t *resp,
		       const struct req_info *ri, int rc,
		       struct proxy_outcome *out)
{
	const char *client = ri->client.name;
	uint8_t code;

	if (rc < 0) {
		answer_error(resp, EST_CODE(5, 0), "out of memory");
		log_request(client, ri->via, ri->rq.method, ri->path, 0, NULL,
			    EST_CODE(5, 0), ms_since(&ri->start));
		return;
	}
	code = out->resp.code;
	answer_final(srv, s, req, resp, &ri->bc, &out->resp);
	log_request(client, ri->via, ri->rq.method, ri->path, out->upstream_status,
		    out->note, code, ms_since(&ri->start));
	est_coap_resp_free(&out->resp);
}

/* ---- per-session state -------------------------------------------------- */

static uint64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void sess_free(struct sess_data *sd)
{
	struct coap_server *srv = sd->srv;
	coap_tls_library_t lib;

	/* libcoap writes a close_notify when it frees the session, without a
	 * datagram read first: the record buffers must be back (dtls.h) */
	estgw_dtls_wake(coap_session_get_tls(sd->session, &lib));
	bw_session_clear(&srv->bw, &sd->bw);
	gauge_sync(srv);
	if (sd->counted)
		metrics_dtls_sessions(-1);
	if (sd->prev)
		sd->prev->next = sd->next;
	else
		srv->sessions = sd->next;
	if (sd->next)
		sd->next->prev = sd->prev;
	coap_session_set_app_data(sd->session, NULL);
	free(sd->client);
	free(sd);
}

/* ---- pledges behind a stateless join proxy (H6, jpy_relay.c) ---------- */

/* The relay's pledge session whose socket is @p s's peer, or NULL (a
 * device that talks to the DTLS endpoint itself). */
static const struct jpy_pledge *jpy_of(const struct coap_server *srv,
				       const coap_session_t *s)
{
	const coap_address_t *a = srv->jpy ? coap_session_get_addr_remote(s) : NULL;

	return a ? jpy_relay_find(srv->jpy, &a->addr.sa, a->size) : NULL;
}

/* "jpy [proxy]:port hdr=..." for log lines, "" for a direct peer. */
static void jpy_name(const struct coap_server *srv, const coap_session_t *s,
		     char *out, size_t len)
{
	const struct jpy_pledge *p = jpy_of(srv, s);

	snprintf(out, len, "%s", p ? jpy_pledge_name(p) : "");
}

/* A new peer: a relayed pledge's DTLS records and CoAP blocks must leave
 * room for the JPY framing within [brski] jpy_mtu. Set before its first
 * ClientHello is answered (libcoap 4.3.1 gives the DTLS layer the
 * session's MTU for every ClientHello of a new peer). */
static void jpy_session_new(struct coap_server *srv, coap_session_t *s)
{
	const struct jpy_pledge *p = jpy_of(srv, s);

	if (p)
		coap_session_set_mtu(s, jpy_pledge_mtu(p));
}

/* Who the peer is, once per session: subject, its kind and expiry for the
 * policy (G2, G3) and its cBRSKI manufacturer line (H2), all from the
 * verifier that accepted the handshake. The certificate's DER is taken from
 * OpenSSL's copy per request (read_request), not kept per idle session. */
static int sess_identify(struct coap_server *srv, struct sess_data *sd,
			 void *tls)
{
	enum estgw_dtls_kind kind;
	struct pl_client *id = &sd->id;
	char client[CLIENT_MAX];

	/* G2: a certificate at all means the handshake verified it */
	id->authenticated = estgw_dtls_peer_subject(tls, client, sizeof(client)) == 0;
	sd->client = strdup(client);
	if (!sd->client)
		return -ENOMEM;
	id->name = sd->client;
	if (estgw_dtls_peer_kind(srv->dtls, tls, &kind, &id->cert_expired) == 0)
		id->kind = kind == ESTGW_DTLS_KIND_IDEVID ? ESTGW_CLIENT_IDEVID :
			   kind == ESTGW_DTLS_KIND_LDEVID ? ESTGW_CLIENT_LDEVID :
							    ESTGW_CLIENT_OTHER;
	id->mfr = estgw_dtls_peer_manufacturer(srv->dtls, tls);
	jpy_name(srv, sd->session, sd->via, sizeof(sd->via));
	return 0;
}

static struct sess_data *sess_get(struct coap_server *srv, coap_session_t *s)
{
	struct sess_data *sd = coap_session_get_app_data(s);
	coap_tls_library_t lib;

	if (sd) {
		/* a request: reading it gave the session its buffers back */
		sd->last_ms = mono_ms();
		sd->released = 0;
		return sd;
	}
	sd = calloc(1, sizeof(*sd));
	if (!sd)
		return NULL;
	sd->srv = srv;
	sd->session = s;
	sd->last_ms = mono_ms();
	if (sess_identify(srv, sd, coap_session_get_tls(s, &lib)) != 0) {
		free(sd);
		return NULL;
	}
	sd->bw.owner = sd->client; /* reassembly counted per identity (E4) */
	sd->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = sd;
	srv->sessions = sd;
	coap_session_set_app_data(s, sd);
	return sd;
}

/* ---- the datagram pre-filter (L1, L2; dtls_prefilter.c) ---------------- */

static time_t mono_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec;
}

static int peer_of(coap_session_t *s, struct pf_addr *a)
{
	const coap_address_t *r = coap_session_get_addr_remote(s);

	return r ? pf_addr_of(&r->addr.sa, r->size, a) : -ENOENT;
}

/* The pre-filter's view of libcoap's sessions. */
static void pf_event(struct coap_server *srv, coap_session_t *s, coap_event_t ev)
{
	struct pf_addr a;

	if (!srv || !srv->pf || peer_of(s, &a) != 0)
		return;
	if (ev == COAP_EVENT_SERVER_SESSION_NEW)
		pf_session_new(srv->pf, &a, s, coap_session_get_ifindex(s), mono_now());
	else if (ev == COAP_EVENT_DTLS_CONNECTED)
		pf_session_up(srv->pf, &a);
	else if (ev == COAP_EVENT_SERVER_SESSION_DEL)
		pf_session_gone(srv->pf, &a);
}

/* A half-open handshake over a bound or past HS_TIMEOUT: libcoap's own
 * path for a handshake that timed out (state NONE, freed with
 * COAP_EVENT_SERVER_SESSION_DEL on its next pass). Runs from on_coap_io,
 * never inside libcoap. The handle is only used when libcoap still has it
 * for that peer: a session whose first handshake step failed is freed
 * without an event (coap_session_new_dtls_session in 4.3.1). */
static int pf_evict(void *arg, void *session, const struct pf_addr *a, int ifindex)
{
	struct coap_server *srv = arg;
	coap_address_t addr;
	coap_session_t *s;

	coap_address_init(&addr);
	addr.size = pf_addr_to_sockaddr(a, &addr.addr.sa, sizeof(addr.addr));
	s = addr.size ? coap_session_get_by_peer(srv->ctx, &addr, ifindex) : NULL;
	if (!s || s != session)
		return 0;
	log_debug("dtls", "%s: half-open handshake ended (bound or timeout)",
		  coap_session_str(s));
	coap_session_disconnected(s, COAP_NACK_TLS_FAILED);
	return 1;
}

/* A pledge behind a join proxy reaches the DTLS endpoint from one of the
 * relay's loopback sockets: its half-open handshake counts in its proxy's
 * per-address bound, not in one bound shared by every relayed pledge (L2,
 * H6). */
static int pf_host(void *arg, const struct pf_addr *a, struct pf_addr *host)
{
	struct coap_server *srv = arg;
	struct sockaddr_storage ss;
	const struct jpy_pledge *p;
	const struct sockaddr *proxy;
	socklen_t len;

	if (!srv->jpy)
		return 0;
	len = pf_addr_to_sockaddr(a, (struct sockaddr *)&ss, sizeof(ss));
	p = len ? jpy_relay_find(srv->jpy, (struct sockaddr *)&ss, len) : NULL;
	if (!p)
		return 0;
	proxy = jpy_pledge_proxy(p, &len);
	return pf_addr_of(proxy, len, host) == 0 ? 1 : 0;
}

static struct pf_limits pf_limits_of(const struct estgw_config *cfg)
{
	unsigned total = cfg->server.max_handshakes;

	return (struct pf_limits){
		.half_open = total,
		.per_address = total >= 4 ? total / 4 : 1,
		.timeout = HS_TIMEOUT,
	};
}

/* One summary line when the counters moved (never one per datagram). */
static void pf_log(struct coap_server *srv, time_t now)
{
	const struct pf_stats *st = pf_stats(srv->pf);
	struct pf_stats *l = &srv->pf_last;

	if (now - srv->pf_logged < PF_LOG_EVERY)
		return;
	srv->pf_logged = now;
	if (st->hvr == l->hvr && st->dropped == l->dropped &&
	    st->evicted == l->evicted && st->timed_out == l->timed_out)
		return;
	log_info("dtls", "pre-filter: %lu HelloVerifyRequests, %lu datagrams dropped, "
		 "%lu handshakes admitted, %lu evicted, %lu timed out in %ds; "
		 "%zu half-open", st->hvr - l->hvr, st->dropped - l->dropped,
		 st->admitted - l->admitted, st->evicted - l->evicted,
		 st->timed_out - l->timed_out, PF_LOG_EVERY, pf_half_open(srv->pf));
	*l = *st;
}

/* Filter each endpoint's queue; held[i] when libcoap must not read
 * endpoint i now: no decided datagram waits at its head (none waited when
 * peeked, and one arriving after that would reach libcoap unfiltered; or
 * the budget ran out). The others hold one datagram for libcoap at their
 * head, and libcoap reads one per endpoint per coap_io_process. */
static void pf_filter(struct coap_server *srv, int held[])
{
	time_t now = mono_now();

	pf_expire(srv->pf, now);
	for (size_t i = 0; i < srv->npf; i++)
		held[i] = pf_run(srv->pf, srv->pf_fd[i], now, PF_BUDGET) != 1;
	pf_log(srv, now);
}

/* The pre-filter needs libcoap's DTLS SSL_CTX (captured while
 * coap_new_context made it) to take our cookies, and each endpoint's
 * socket. Without either, libcoap sees every datagram as before. */
static void pf_setup(struct coap_server *srv, int nctx)
{
	const struct estgw_config *cfg = srv->cfg;
	struct pf_limits lim = pf_limits_of(cfg);

	if (nctx != 1 || estgw_cookie_install() != 0) {
		log_warn("dtls", "no stateless cookie exchange: libcoap's DTLS context "
			 "not found (%d)", nctx);
		return;
	}
	for (size_t i = 0; i < cfg->server.nlisten; i++) {
		const struct estgw_addr *a = &cfg->server.listen[i];
		int fd = pf_find_socket((const struct sockaddr *)&a->sa, a->salen);
		if (fd < 0) {
			log_warn("dtls", "no stateless cookie exchange: the socket of %s "
				 "not found", a->text);
			return;
		}
		if (pf_gate_find(coap_context_get_coap_fd(srv->ctx), fd,
				 &srv->pf_gate[srv->npf]) != 0) {
			log_warn("dtls", "no stateless cookie exchange: the socket of %s "
				 "not in libcoap's epoll set", a->text);
			srv->npf = 0;
			return;
		}
		srv->pf_fd[srv->npf++] = fd;
	}
	srv->pf = pf_new(&lim, mono_now(), pf_evict, srv);
	if (srv->pf)
		pf_set_host_fn(srv->pf, pf_host, srv);
	if (srv->pf)
		log_info("dtls", "stateless cookie exchange; at most %u half-open "
			 "handshakes, %u per address, %us each", lim.half_open,
			 lim.per_address, lim.timeout);
}

/* A separate answer is to come on @p s: it is sent without a datagram read
 * first, so the session keeps its record buffers until then. */
static void sess_busy(coap_session_t *s)
{
	struct sess_data *sd = coap_session_get_app_data(s);

	if (sd)
		sd->busy++;
}

static uint64_t fixed_ms(coap_fixed_point_t f)
{
	return (uint64_t)f.integer_part * 1000 + f.fractional_part;
}

/* The separate answer went out (a CON): libcoap may resend it without a
 * read for MAX_TRANSMIT_SPAN (RFC 7252 4.8.2) of the session's parameters. */
static void sess_answered(coap_session_t *s)
{
	struct sess_data *sd = coap_session_get_app_data(s);

	if (!sd)
		return;
	if (sd->busy)
		sd->busy--;
	uint64_t span = fixed_ms(coap_session_get_ack_timeout(s)) *
			((1u << coap_session_get_max_retransmit(s)) - 1) *
			fixed_ms(coap_session_get_ack_random_factor(s)) / 1000;
	sd->last_ms = mono_ms();
	sd->quiet_ms = sd->last_ms + span + SWEEP_MS;
}

/* Every SWEEP_MS: a session without a request for IDLE_RELEASE_MS and with
 * no separate answer to send or resend gives its DTLS record buffers back
 * (two of about 13 KB with OpenSSL 3.0; made again with its next datagram;
 * J2) and its block-wise state past REASM_LIFETIME. Then the heap is
 * trimmed so glibc returns the freed pages. */
static void sweep(evutil_socket_t fd, short what, void *arg)
{
	struct coap_server *srv = arg;
	uint64_t now = mono_ms();
	coap_tls_library_t lib;
	unsigned n = 0;
	size_t trimmed = 0;

	(void)fd;
	(void)what;
	time_t wall = time(NULL);

	for (struct sess_data *sd = srv->sessions; sd; sd = sd->next) {
		if (sd->busy || now < sd->quiet_ms || now - sd->last_ms < IDLE_RELEASE_MS)
			continue;
		/* kept answers and bodies past their lifetime (247 s) go, also
		 * for a session that never asks again */
		bw_expire_session(&srv->bw, &sd->bw, wall);
		/* on every tick, also when released before: a datagram that was
		 * no request for the handler (a CoAP ping, a duplicate libcoap
		 * answered itself) had OpenSSL make the buffers again; when none
		 * came this costs a few field checks */
		void *tls = coap_session_get_tls(sd->session, &lib);
		if (estgw_dtls_idle(tls) == 1 && !sd->released) {
			trimmed += (size_t)estgw_dtls_trim(tls); /* once per quiet spell */
			sd->released = 1;
			n++;
		}
	}
	gauge_sync(srv);
	srv->released += n;
	if (n)
		log_debug("dtls", "record buffers of %u idle sessions released, "
			  "%zu KiB of their handshake buffers given back", n, trimmed / 1024);
	/* trim after a batch, or once releasing stops: not on every tick */
	if (srv->released < TRIM_AFTER && (!srv->released || n))
		return;
#ifdef __GLIBC__
	malloc_trim(0);
	log_debug("dtls", "heap trimmed (%u sessions released before)", srv->released);
#endif
	srv->released = 0;
}

static int on_event(coap_session_t *s, const coap_event_t ev)
{
	struct sess_data *sd;
	coap_tls_library_t lib;

	pf_event(srv_of(s), s, ev);
	switch (ev) {
	case COAP_EVENT_SERVER_SESSION_NEW:
		jpy_session_new(srv_of(s), s);
		break;
	case COAP_EVENT_SERVER_SESSION_DEL:
		sd = coap_session_get_app_data(s);
		if (sd && sd->counted && sd->via[0]) /* its pledge session too */
			jpy_relay_peer_gone(sd->srv->jpy, &coap_session_get_addr_remote(s)->addr.sa,
					    coap_session_get_addr_remote(s)->size);
		if (sd)
			sess_free(sd);
		break;
	case COAP_EVENT_DTLS_CONNECTED:
		sd = sess_get(srv_of(s), s);
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

/* ---- requests in: options -> the pipeline's request --------------------- */

/* Uri-Path segments (and the path for log lines) and Uri-Query values. */
static void read_uri(const coap_pdu_t *req, struct req_info *ri)
{
	struct pl_request *rq = &ri->rq;
	coap_opt_iterator_t it;
	coap_opt_t *o;
	size_t n = 0;

	coap_option_iterator_init(req, &it, COAP_OPT_ALL);
	while ((o = coap_option_next(&it))) {
		struct est_slice v = { coap_opt_value(o), coap_opt_length(o) };

		if (it.number == COAP_OPTION_URI_QUERY && rq->nquery < PL_MAX_QUERIES)
			rq->queries[rq->nquery++] = v;
		if (it.number != COAP_OPTION_URI_PATH)
			continue;
		if (rq->nseg < PL_MAX_SEGS)
			rq->segs[rq->nseg] = v;
		rq->nseg++;
		n += (size_t)snprintf(ri->path + n, n < sizeof(ri->path) ? sizeof(ri->path) - n : 0,
				      "/%.*s", (int)v.len, (const char *)v.ptr);
		if (n >= sizeof(ri->path))
			n = sizeof(ri->path) - 1;
	}
	if (rq->nseg == 0)
		snprintf(ri->path, sizeof(ri->path), "/");
}

/* The keys of @p ri's body (path, Request-Tag, Content-Format) and of its
 * answer (method, path, query, Accept, Request-Tag): two transfers on one
 * session share state only when all of these agree (E6). */
static void make_keys(const coap_pdu_t *req, struct req_info *ri)
{
	coap_opt_iterator_t it;
	coap_opt_t *o;
	char tag[2 * 8 + 1] = "", q[KEY_MAX / 2] = "";
	size_t n = 0, tlen = 0;
	const uint8_t *t = opt_raw(req, COAP_OPTION_RTAG, &tlen);

	for (size_t i = 0; t && i < tlen && i < 8; i++)
		snprintf(tag + 2 * i, sizeof(tag) - 2 * i, "%02x", t[i]);
	coap_option_iterator_init(req, &it, COAP_OPT_ALL);
	while ((o = coap_option_next(&it)) && n < sizeof(q)) {
		if (it.number != COAP_OPTION_URI_QUERY)
			continue;
		n += (size_t)snprintf(q + n, sizeof(q) - n, "%s%.*s", n ? "&" : "",
				      (int)coap_opt_length(o), coap_opt_value(o));
	}
	snprintf(ri->rkey, sizeof(ri->rkey), "%s#%s#%d", ri->path, tag,
		 ri->rq.cf);
	snprintf(ri->bc.akey, sizeof(ri->bc.akey), "%d %s?%s#%d#%s",
		 ri->rq.method, ri->path, q, ri->rq.accept, tag);
}

/* Block2 of @p req into @p bc (a malformed one is left to bw_feed). */
static void read_block2(const coap_pdu_t *req, struct blk_ctx *bc)
{
	size_t len;
	const uint8_t *v = opt_raw(req, COAP_OPTION_BLOCK2, &len);

	bc->has_b2 = v && bw_block_parse(v, len, &bc->b2) == 0;
	bc->b2_szx = -1;
}

/* A later Block1 block (NUM > 0): part of a request the limit counted. */
static int is_continuation(const coap_pdu_t *req)
{
	size_t len;
	const uint8_t *v = opt_raw(req, COAP_OPTION_BLOCK1, &len);
	struct bw_block b1;

	return v && bw_block_parse(v, len, &b1) == 0 && b1.num > 0;
}

/* The numeric local address of @p s (where the peer reached us), for the
 * JPY discovery link when [brski] jpy_listen is a wildcard (H6). */
static void local_text(const coap_session_t *s, char *out, size_t len)
{
	const coap_address_t *a = coap_session_get_addr_local(s);

	out[0] = '\0';
	if (a && a->addr.sa.sa_family == AF_INET6)
		inet_ntop(AF_INET6, &a->addr.sin6.sin6_addr, out, (socklen_t)len);
	else if (a && a->addr.sa.sa_family == AF_INET)
		inet_ntop(AF_INET, &a->addr.sin.sin_addr, out, (socklen_t)len);
}

/* Everything the pipeline and the block-wise glue need from @p req, with
 * the identity of @p sd's peer. */
static void read_request(coap_session_t *s, const struct sess_data *sd,
			 const coap_pdu_t *req, struct req_info *ri)
{
	struct pl_request *rq = &ri->rq;
	coap_tls_library_t lib;
	unsigned v;

	memset(ri, 0, sizeof(*ri));
	clock_gettime(CLOCK_MONOTONIC, &ri->start);
	read_uri(req, ri);
	rq->method = coap_pdu_get_code(req);
	rq->cf = opt_uint(req, COAP_OPTION_CONTENT_FORMAT, &v) ? (int)v : EST_CF_NONE;
	rq->accept = opt_uint(req, COAP_OPTION_ACCEPT, &v) ? (int)v : EST_CF_NONE;
	rq->continuation = is_continuation(req);
	rq->now_ms = (uint64_t)ri->start.tv_sec * 1000 +
		     (uint64_t)ri->start.tv_nsec / 1000000;
	ri->client = sd->id;
	ri->client.session = sd->via[0] ? sd->via : coap_session_str(s);
	ri->via = sd->via;
	local_text(s, ri->local, sizeof(ri->local));
	rq->local_ip = ri->local;
	void *tls = coap_session_get_tls(s, &lib);
	/* used while the request is handled (policy, cBRSKI); freed after */
	if (sd->id.authenticated &&
	    estgw_dtls_peer_cert_der(tls, &ri->cert, &ri->client.cert_len) == 0)
		ri->client.cert = ri->cert;
	else
		ri->client.authenticated = 0;
	if (estgw_dtls_tls_unique(tls, ri->tls_unique, sizeof(ri->tls_unique),
				  &ri->client.tls_unique_len) == 0)
		ri->client.tls_unique = ri->tls_unique;
	rq->client = &ri->client;
	make_keys(req, ri);
	read_block2(req, &ri->bc);
}

/* ---- Block1 reassembly and Block2 follow-ups (E1, E4-E8) ----------- */

/* Outcome of feeding one request PDU to reassembly. */
enum body_state { BODY_READY, BODY_MORE, BODY_ERROR, BODY_REPEATED };

/* Feed @p req to blockwise.c and answer what it says. On BODY_READY body
 * and len are set; *owned is a buffer to free afterwards (NULL when the
 * body points into the PDU), and ri->bc says how to answer (E5, E7). */
static enum body_state feed_body(struct coap_server *srv, coap_session_t *s,
				 struct sess_data *sd, const coap_pdu_t *req,
				 struct req_info *ri, coap_pdu_t *resp,
				 const uint8_t **body, size_t *len,
				 uint8_t **owned)
{
	struct bw_req rq;
	struct bw_out o;

	*owned = NULL;
	req_blocks(req, &rq);
	rq.key = ri->rkey;
	rq.answer_key = ri->bc.akey;
	bw_feed(&srv->bw, &sd->bw, &rq, &o);
	gauge_sync(srv);
	ri->bc.echo = o.echo;
	ri->bc.echo_b1 = o.echo_b1;
	switch (o.verdict) {
	case BW_READY:
		ri->bc.b2_szx = o.block2_szx;
		ri->bc.keep_last = o.echo && o.echo_b1.num > 0;
		*body = o.body;
		*len = o.len;
		*owned = o.owned;
		return BODY_READY;
	case BW_MORE: /* 2.31 Continue, Block1 echo with M=1 */
		coap_pdu_set_code(resp, (coap_pdu_code_t)o.code);
		add_block(resp, COAP_OPTION_BLOCK1, &o.echo_b1);
		return BODY_MORE;
	case BW_REPEAT: /* the last block again after its answer went (E8) */
		put_body(s, req, resp, o.answer, ri->bc.has_b2 ? &ri->bc.b2 : NULL,
			 o.answer->szx, &o.echo_b1, NULL);
		return BODY_REPEATED;
	case BW_ERROR:
		break;
	}
	coap_pdu_set_code(resp, (coap_pdu_code_t)o.code);
	if (o.code == EST_CODE(5, 3)) /* reassembly full (D1) */
		add_uint(resp, COAP_OPTION_MAXAGE, srv->cfg->upstream.retry_default);
	if (o.echo)
		add_block(resp, COAP_OPTION_BLOCK1, &o.echo_b1);
	if (o.code == EST_CODE(4, 13))
		add_uint(resp, COAP_OPTION_SIZE1, o.size1);
	coap_add_data(resp, strlen(o.diag), (const uint8_t *)o.diag);
	return BODY_ERROR;
}

/* feed_body, and the log line when it answered the request itself;
 * 1 when the body is ready. */
static int body_ready(struct coap_server *srv, coap_session_t *s,
		      struct sess_data *sd, const coap_pdu_t *req,
		      struct req_info *ri, coap_pdu_t *resp,
		      const uint8_t **body, size_t *len, uint8_t **owned)
{
	const char *note;

	switch (feed_body(srv, s, sd, req, ri, resp, body, len, owned)) {
	case BODY_READY:
		return 1;
	case BODY_MORE:
		return 0;
	case BODY_REPEATED:
		note = "answer repeated for the last Block1 block";
		break;
	default:
		note = "body rejected";
		break;
	}
	log_request(ri->client.name, ri->via, ri->rq.method, ri->path, 0, note,
		    (uint8_t)coap_pdu_get_code(resp), ms_since(&ri->start));
	return 0;
}

/* A Block2 request for a later block of an answer this session keeps is
 * answered from it (E6), without going through the pipeline again: it is
 * part of a request already admitted. Returns 1 then. A GET with nothing
 * kept is a new request (made afresh, cut the same way); any other method
 * is 4.08: its body is gone. */
static int block2_follow_up(struct coap_server *srv, coap_session_t *s,
			    struct sess_data *sd, const coap_pdu_t *req,
			    const struct req_info *ri, coap_pdu_t *resp)
{
	const struct bw_answer *a;
	size_t len;

	if (!ri->bc.has_b2 || ri->bc.b2.num == 0 ||
	    opt_raw(req, COAP_OPTION_BLOCK1, &len))
		return 0;
	a = bw_find(&srv->bw, &sd->bw, ri->bc.akey, time(NULL));
	if (a) {
		put_body(s, req, resp, a, &ri->bc.b2, -1, NULL, NULL);
		return 1;
	}
	if (ri->rq.method == EST_GET)
		return 0;
	answer_error(resp, EST_CODE(4, 8), "answer no longer kept: send the request again");
	log_request(ri->client.name, ri->via, ri->rq.method, ri->path, 0,
		    "Block2 without a kept answer", EST_CODE(4, 8),
		    ms_since(&ri->start));
	return 1;
}

/* ---- separate responses (libcoap async) ------------------------------ */

static void pending_unlink(struct pending *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		p->srv->pendings = p->next;
	if (p->next)
		p->next->prev = p->prev;
}

static void on_answer(void *arg, struct proxy_outcome *out)
{
	struct pending *p = arg;

	p->out = *out;
	p->done = 1;
	coap_async_trigger(p->async); /* the handler runs again from libcoap */
}

/* Register the async for @p p: empty ACK now, separate response later. */
static int park(struct coap_server *srv, coap_session_t *s,
		const coap_pdu_t *req, const struct req_info *ri,
		struct pending *p)
{
	p->async = coap_register_async(s, req, 0);
	if (!p->async)
		return -ENOMEM;
	coap_async_set_app_data(p->async, p);
	sess_busy(s);
	p->srv = srv;
	p->start = ri->start;
	p->bc = ri->bc;
	snprintf(p->path, sizeof(p->path), "%s", ri->path);
	snprintf(p->client, sizeof(p->client), "%s", ri->client.name);
	snprintf(p->via, sizeof(p->via), "%s", ri->via ? ri->via : "");
	p->next = srv->pendings;
	if (srv->pendings)
		srv->pendings->prev = p;
	srv->pendings = p;
	return 0;
}

/* The handler runs a second time for a separate response. */
static void answer_pending(coap_session_t *s, const coap_pdu_t *req,
			   coap_pdu_t *resp, struct pending *p)
{
	int method = coap_pdu_get_code(req);

	if (!p->done) { /* cannot happen: libcoap re-ACKs until triggered */
		answer_error(resp, COAP_RESPONSE_CODE(500), "internal error");
		return;
	}
	uint8_t code = p->out.resp.code;
	answer_final(srv_of(s), s, req, resp, &p->bc, &p->out.resp);
	sess_answered(s);
	log_request(p->client, p->via, method, p->path, p->out.upstream_status,
		    p->out.note, code, ms_since(&p->start));
	est_coap_resp_free(&p->out.resp);
	pending_unlink(p);
	free(p);
}

/* ---- the handler: every path, /.well-known/core included ---------------- */

/* Steps 8-9 of the pipeline; a pending answer parks the request. */
static void dispatch(struct coap_server *srv, coap_session_t *s,
		     const coap_pdu_t *req, coap_pdu_t *resp,
		     const struct req_info *ri, const struct pl_route *route,
		     const uint8_t *body, size_t len)
{
	struct pending *p = calloc(1, sizeof(*p));
	struct proxy_outcome now;
	int rc = p ? pipeline_dispatch(srv->pl, &ri->rq, route, body, len,
				       &p->job, on_answer, p, &now) : -ENOMEM;

	if (rc == 0) {
		if (park(srv, s, req, ri, p) == 0)
			return; /* empty ACK now, separate response later */
		pipeline_cancel(&p->job);
		rc = est_coap_resp_error(&now.resp, EST_CODE(5, 3), "busy") == 0 ? 1 : -ENOMEM;
		now.upstream_status = 0;
		snprintf(now.note, sizeof(now.note), "async registration failed");
	}
	free(p);
	answer_now(srv, s, req, resp, ri, rc, &now);
}

static void hnd_request(coap_resource_t *r, coap_session_t *s,
			const coap_pdu_t *req, const coap_string_t *q,
			coap_pdu_t *resp)
{
	struct coap_server *srv = srv_of(s);
	coap_async_t *a = coap_find_async(s, coap_pdu_get_token(req));
	struct proxy_outcome out;
	struct pl_route route;
	struct sess_data *sd;
	struct req_info ri;
	const uint8_t *body = NULL;
	size_t len = 0;
	uint8_t *owned = NULL;
	int rc;

	if (not_a_request(s, req))
		return;
	if (a) {
		answer_pending(s, req, resp, coap_async_get_app_data(a));
		return;
	}
	if (!(sd = sess_get(srv, s))) {
		answer_error(resp, EST_CODE(5, 0), "out of memory");
		return;
	}
	read_request(s, sd, req, &ri);
	if (block2_follow_up(srv, s, sd, req, &ri, resp))
		goto done;
	if ((rc = pipeline_admit(srv->pl, &ri.rq, &route, &out)) != 0) {
		answer_now(srv, s, req, resp, &ri, rc, &out);
		goto done;
	}
	if (!body_ready(srv, s, sd, req, &ri, resp, &body, &len, &owned))
		goto done;
	dispatch(srv, s, req, resp, &ri, &route, body, len);
	free(owned);
done:
	free(ri.cert);
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
	int bad = 0;

	_Static_assert(BRSKI_MFR_NONE == ESTGW_DTLS_MFR_NONE, "one 'no manufacturer'");
	if (!d || !cfg->brski.enabled) /* pledges' IDevIDs too (H2) */
		return d;
	/* the lines first, then the generic bundle: a line's MASA settings win */
	for (size_t i = 0; !bad && i < cfg->brski.nmfr; i++)
		bad = estgw_dtls_add_manufacturer(d, cfg->brski.mfr[i].ca, (int)i) != 0;
	if (!bad)
		bad = estgw_dtls_add_manufacturer(d, cfg->brski.manufacturer_trust,
						  BRSKI_MFR_GENERIC) != 0;
	if (bad) {
		estgw_dtls_free(d);
		return NULL;
	}
	return d;
}

/* The block-wise bounds of @p cfg (E1, E4) and of the kept answers. */
static struct bw_limits bw_limits_of(const struct estgw_config *cfg)
{
	size_t per = cfg->server.reasm_per_session, total = cfg->server.reasm_total;

	return (struct bw_limits){
		.max_body = cfg->server.max_body,
		.per_session = per,
		/* one identity's sessions together: 1/16 of all (at least a
		 * session's worth); the last 1/8 only for identities holding
		 * none, so a few clients never shut the others out (E4) */
		.per_client = total / 16 > per ? total / 16 : per,
		.reserve = total >= 8 ? total / 8 : 0,
		.total = total,
		.total_bytes = cfg->server.reasm_total_bytes,
		.lifetime = REASM_LIFETIME,
		.keep_per_session = KEEP_PER_SESSION,
		.keep_total_bytes = KEEP_TOTAL_BYTES,
	};
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

/* Each endpoint's port is estgw's alone once every endpoint is bound.
 * libcoap 4.3.1 binds with SO_REUSEADDR, and on Linux two UDP sockets that
 * both set it may share a port: another process (or a second estgw) binds
 * the same address and takes datagrams meant for the gateway, and a local
 * client whose ephemeral port is chosen with SO_REUSEADDR on (libcoap's
 * clients set it, coap-client among them) may get the endpoint's port as
 * its own, send its ClientHello to itself and give up on the "unexpected
 * message". Without SO_REUSEADDR on the bound socket, the kernel counts the
 * port as taken for both. Cleared after the last bind, so listen addresses
 * that overlap ([::]:P dual-stack and 0.0.0.0:P) still bind as before. */
static void endpoints_exclusive(const struct estgw_config *cfg)
{
	for (size_t i = 0; i < cfg->server.nlisten; i++) {
		const struct estgw_addr *a = &cfg->server.listen[i];
		int fd = pf_endpoint_socket((const struct sockaddr *)&a->sa, a->salen);
		int off = 0;

		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &off, sizeof(off)) != 0)
			log_warn("coap", "%s: port not made exclusive (SO_REUSEADDR stays): %s",
				 a->text, strerror(fd < 0 ? -fd : errno));
	}
}

/* Two libcoap resources, one handler: /.well-known/core must be a
 * resource of its own (libcoap answers it itself otherwise), everything
 * else is the "unknown resource"; pipeline.c routes both. */
static int add_resources(struct coap_server *srv)
{
	static const coap_request_t methods[] = {
		COAP_REQUEST_GET, COAP_REQUEST_POST, COAP_REQUEST_PUT,
		COAP_REQUEST_DELETE, COAP_REQUEST_FETCH, COAP_REQUEST_PATCH,
		COAP_REQUEST_IPATCH,
	};
	coap_resource_t *core, *any;

	core = coap_resource_init(coap_make_str_const(".well-known/core"), 0);
	any = coap_resource_unknown_init2(hnd_request, 0);
	if (!core || !any)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		coap_register_request_handler(core, methods[i], hnd_request);
		coap_register_request_handler(any, methods[i], hnd_request);
	}
	coap_add_resource(srv->ctx, core);
	coap_add_resource(srv->ctx, any);
	return 0;
}

static void on_coap_io(evutil_socket_t fd, short what, void *arg)
{
	struct coap_server *srv = arg;
	int held[ESTGW_MAX_LISTEN] = { 0 };

	if (!srv->pf) {
		coap_io_process(srv->ctx, COAP_IO_NO_WAIT);
		return;
	}
	/* libcoap runs every time (timers, retransmissions, sessions), but
	 * reads only the endpoints whose head the filter decided; a held one
	 * with datagrams left makes libevent call again once released */
	pf_filter(srv, held);
	for (size_t i = 0; i < srv->npf; i++)
		if (held[i] && pf_gate_hold(&srv->pf_gate[i], 1) != 0)
			log_warn("dtls", "pre-filter: cannot hold an endpoint: %s",
				 strerror(errno));
	coap_io_process(srv->ctx, COAP_IO_NO_WAIT);
	for (size_t i = 0; i < srv->npf; i++)
		if (held[i])
			(void)pf_gate_hold(&srv->pf_gate[i], 0);
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
	coap_startup();
	coap_set_log_handler(on_coap_log);
	coap_set_log_level(estgw_log_level() >= LOG_DEBUG ? LOG_INFO : LOG_WARNING);
	coap_dtls_set_log_level(LOG_WARNING);
	srv->dtls = load_dtls(cfg);
	int capturing = estgw_cookie_capture_begin() == 0;
	srv->ctx = coap_new_context(NULL);
	int nctx = capturing ? estgw_cookie_capture_end() : 0;
	srv->pl = pipeline_new(cfg, px);
	if (!srv->dtls || !srv->ctx || !srv->pl)
		goto fail;
	coap_set_app_data(srv->ctx, srv);
	/* libcoap's block mode stays off: blockwise.c does RFC 7959 (E6) */
	srv->bw.lim = bw_limits_of(cfg);
	coap_context_set_max_idle_sessions(srv->ctx, cfg->server.max_sessions);
	coap_context_set_session_timeout(srv->ctx, cfg->server.idle_timeout);
	coap_context_set_max_handshake_sessions(srv->ctx, cfg->server.max_handshakes);
	coap_register_event_handler(srv->ctx, on_event);
	if (setup_pki(srv) != 0 || add_resources(srv) != 0)
		goto fail;
	for (size_t i = 0; i < cfg->server.nlisten; i++)
		if (add_endpoint(srv, &cfg->server.listen[i]) != 0)
			goto fail;
	endpoints_exclusive(cfg);
	pf_setup(srv, nctx);
	srv->ev = event_new(base, coap_context_get_coap_fd(srv->ctx),
			    EV_READ | EV_PERSIST, on_coap_io, srv);
	if (!srv->ev || event_add(srv->ev, NULL) != 0)
		goto fail;
	if (cfg->brski.jpy_listen.salen && !(srv->jpy = jpy_relay_new(base, cfg)))
		goto fail; /* H6 */
	const struct timeval tick = { SWEEP_MS / 1000, (SWEEP_MS % 1000) * 1000 };
	srv->sweep = event_new(base, -1, EV_PERSIST, sweep, srv);
	if (!srv->sweep || event_add(srv->sweep, &tick) != 0)
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
	if (srv->sweep)
		event_free(srv->sweep);
	while (srv->pendings) {
		struct pending *p = srv->pendings;
		pipeline_cancel(&p->job);
		if (p->done)
			est_coap_resp_free(&p->out.resp);
		pending_unlink(p);
		free(p);
	}
	while (srv->sessions)
		sess_free(srv->sessions);
	if (srv->pf) {
		const struct pf_stats *st = pf_stats(srv->pf);
		log_info("dtls", "pre-filter totals: %lu HelloVerifyRequests, %lu "
			 "datagrams dropped, %lu handshakes admitted, %lu evicted, "
			 "%lu timed out, %lu sessions not admitted, %lu deferred", st->hvr,
			 st->dropped, st->admitted, st->evicted, st->timed_out,
			 st->unfiltered, st->deferred);
	}
	pf_free(srv->pf);
	srv->pf = NULL; /* coap_free_context reports no events to it */
	if (srv->ctx)
		coap_free_context(srv->ctx);
	jpy_relay_free(srv->jpy); /* after the context: its sessions are peers of it */
	coap_cleanup();
	estgw_dtls_free(srv->dtls);
	pipeline_free(srv->pl);
	free(srv);
}

void coap_server_set_brski(struct coap_server *srv, struct brski *b)
{
	pipeline_set_brski(srv->pl, b);
}

const char *coap_server_lib_version(void)
{
	static char buf[160];
	char tls[100];

	snprintf(buf, sizeof(buf), "%s, %s", coap_package_version(),
		 coap_string_tls_version(tls, sizeof(tls)));
	return buf;
}

int coap_server_reload(struct coap_server *srv, const struct estgw_config *cfg)
{
	struct estgw_dtls *d, *old = srv->dtls;

	d = load_dtls(cfg);
	if (!d)
		return -EINVAL;
	if (pipeline_reload(srv->pl, cfg) != 0) { /* roots, policy, rate */
		estgw_dtls_free(d);
		return -ENOMEM;
	}
	/* New handshakes use the new credentials; sessions already set up keep
	 * their own references (SSL objects) to the old ones. libcoap's copy
	 * of coap_dtls_pki_t points at the config's strings: replace it. */
	srv->cfg = cfg;
	srv->dtls = d;
	jpy_relay_reload(srv->jpy, cfg); /* H6 */
	coap_context_set_max_idle_sessions(srv->ctx, cfg->server.max_sessions);
	coap_context_set_session_timeout(srv->ctx, cfg->server.idle_timeout);
	srv->bw.lim = bw_limits_of(cfg);
	/* libcoap 4.3.1 compares the count of sessions in handshake with this
	 * value each time a new one arrives: setting it again is enough. */
	coap_context_set_max_handshake_sessions(srv->ctx, cfg->server.max_handshakes);
	if (setup_pki(srv) != 0)
		log_err("coap", "reload: libcoap refused the new credentials");
	if (srv->pf) {
		struct pf_limits lim = pf_limits_of(cfg);
		pf_set_limits(srv->pf, &lim);
		estgw_cookie_install(); /* whatever the new credentials set up */
	}
	estgw_dtls_free(old);
	return 0;
}

void coap_server_quiesce(struct coap_server *srv)
{
	pipeline_quiesce(srv->pl);
}

size_t coap_server_busy(const struct coap_server *srv)
{
	size_t n = 0;

	for (const struct pending *p = srv->pendings; p; p = p->next)
		n++;
	return n ? n : (size_t)!coap_can_exit(srv->ctx);
}
