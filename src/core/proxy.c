/* proxy.c - EST on the exchange engine: request keys, the upstream
 * request, answer mapping, the /cacerts cache, the /csrattrs probe.
 *
 * Each device request becomes a key (client identity, operation, label,
 * body) on the exchange engine (exchange.c), which coalesces identical
 * requests onto the exchange in flight (J1), bounds concurrent exchanges
 * ([upstream] max_concurrent) and the queue behind them ([upstream] queue;
 * past that the device gets 5.03 + Max-Age), answers 5.03 + Max-Age after
 * [upstream] answer_within while the exchange goes on (RFC 9148 §4.7, D2)
 * and keeps a successful sen/sren answer for [upstream] keep_issued
 * seconds, so that a device that was told to come back (or gave up) and
 * resends the identical CSR gets the same certificate without a second
 * enrollment. This file builds the key and the HTTP request and maps each
 * answer through translate.c's table for each waiter. /crts is served from
 * a per-label cache of the last good /cacerts answer, refreshed in the
 * background. The EST server's 404/501 for /csrattrs or /serverkeygen
 * takes att or skg/skc out of discovery (A3, avail.c); /csrattrs is probed.
 */
#include "core/proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "core/avail.h"
#include "estgw/log.h"
#include "estgw/skg.h"
#include "pki/keygen.h"
#include "pki/pki.h"
#include "ops/metrics.h"
#include "upstream/upstream.h"

#define CACHE_SLOTS 16

struct crts_cache {
	char label[EST_LABEL_MAX + 1];
	int used;
	char *content_type;
	uint8_t *body;
	size_t len;
	time_t fetched;
	int refreshing; /* a background refresh is in flight */
};

/* Why an exchange runs. */
enum job_kind {
	JOB_DEVICE,  /* a device request (or several, coalesced) */
	JOB_REFRESH, /* the /cacerts cache of one label */
	JOB_PROBE,   /* GET /csrattrs without a device (A3) */
};

/* proxy.c's part of one exchange (the engine's data). */
struct est_job {
	struct proxy *px;
	enum job_kind kind;
	const struct est_op_desc *op;
	char label[EST_LABEL_MAX + 1];
	uint8_t *csr;
	size_t csr_len;
	const struct est_op_desc *kg_op; /* skg/skc when estgw made the key (F4) */
	uint8_t *kg_key;                 /* that key, PKCS#8 (secret) */
	size_t kg_key_len;
	const struct est_x_op_desc *xop; /* an RFC 8295 operation (I1) */
	char *x_gw_base;                 /* where its PAL URIs point (I3) */
	int x_kept;                      /* its answer was kept for the retry */
	int x_resp_cf;                   /* the answer's CF (part of the key) */
};

#define X_KEPT_SLOTS 256 /* RFC 8295 GET answers kept at once, at most */

/* What the kept RFC 8295 GET answers weigh ([rfc8295] keep_total_bytes):
 * an entry per kept answer until it expires (the engine may drop one
 * earlier: then this over-counts, never under). */
struct x_kept_budget {
	time_t expires[X_KEPT_SLOTS];
	size_t len[X_KEPT_SLOTS];
};

struct proxy {
	struct event_base *base;
	const struct estgw_config *cfg;
	struct est_xlate_limits lim;
	struct xchg_engine *xe;
	struct crts_cache cache[CACHE_SLOTS];
	struct event *refresh_timer;
	int warming; /* the first /cacerts fetch is in flight */
	struct estgw_avail avail;  /* what discovery leaves out (A3) */
	int probe_running;         /* GET /csrattrs without a device */
	int probing;               /* the start-up probe is in flight */
	const struct store_if *store; /* [cluster] (K1), NULL: none */
	struct x_kept_budget xkept; /* RFC 8295 GET answers kept */
};

/* ---- jobs --------------------------------------------------------------- */

static void job_free(void *data)
{
	struct est_job *j = data;

	if (j->csr && j->xop)
		explicit_bzero(j->csr, j->csr_len);
	free(j->csr);
	free(j->x_gw_base);
	if (j->kg_key)
		explicit_bzero(j->kg_key, j->kg_key_len);
	free(j->kg_key);
	free(j);
}

static void request_key(const struct est_op_desc *op, const char *label,
			const char *client, const uint8_t *body, size_t len,
			uint8_t key[XCHG_KEY_LEN])
{
	struct estgw_buf parts[] = {
		{ client ? client : "", client ? strlen(client) : 0 },
		{ op->short_name, strlen(op->short_name) },
		{ label, strlen(label) },
		{ body, len },
	};
	estgw_pki_sha256(parts, sizeof(parts) / sizeof(parts[0]), key);
}

/* ---- /cacerts cache ----------------------------------------------------- */

static struct crts_cache *cache_find(struct proxy *px, const char *label,
				     int create)
{
	struct crts_cache *free_slot = NULL;

	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		struct crts_cache *c = &px->cache[i];
		if (c->used && strcmp(c->label, label) == 0)
			return c;
		if (!c->used && !free_slot)
			free_slot = c;
	}
	if (!create || !free_slot)
		return NULL;
	free_slot->used = 1;
	snprintf(free_slot->label, sizeof(free_slot->label), "%s", label);
	return free_slot;
}

static int copy_answer(const struct upstream_result *r, char **ct,
		       uint8_t **body)
{
	*body = malloc(r->body_len ? r->body_len : 1);
	*ct = r->content_type ? strdup(r->content_type) : NULL;
	if (!*body || (r->content_type && !*ct)) {
		free(*body);
		free(*ct);
		return -ENOMEM;
	}
	memcpy(*body, r->body, r->body_len);
	return 0;
}

static void cache_store(struct proxy *px, const char *label,
			const struct upstream_result *r)
{
	struct crts_cache *c = cache_find(px, label, 1);
	char *ct;
	uint8_t *body;

	if (!c || copy_answer(r, &ct, &body) != 0)
		return;
	free(c->body);
	free(c->content_type);
	c->body = body;
	c->len = r->body_len;
	c->content_type = ct;
	c->fetched = time(NULL);
	metrics_crts_fetched(label, c->fetched);
	log_debug("cache", "/cacerts%s%s cached (%zu bytes)", *label ? " label " : "",
		  label, r->body_len);
}

/* ---- translation -------------------------------------------------------- */

static void http_resp(const struct upstream_result *r, struct est_http_resp *in)
{
	memset(in, 0, sizeof(*in));
	in->err = r->err;
	in->status = r->status;
	in->content_type = r->content_type;
	in->retry_after = r->retry_after;
	in->body = r->body;
	in->body_len = r->body_len;
	in->now = time(NULL);
}

static void outcome_note(const struct upstream_result *r, struct proxy_outcome *out)
{
	const char *note = r->errmsg ? r->errmsg : out->resp.note;

	snprintf(out->note, sizeof(out->note), "%s", note ? note : "");
}

static void translate(struct proxy *px, const struct est_op_desc *op,
		      int resp_cf, const uint8_t *csr, size_t csr_len,
		      const struct upstream_result *r, struct proxy_outcome *out)
{
	struct est_http_resp in;

	http_resp(r, &in);
	memset(out, 0, sizeof(*out));
	out->upstream_status = r->err == EST_UP_OK ? r->status : 0;
	if (est_translate_response(op, resp_cf, csr, csr_len, &in, &px->lim,
				   &out->resp) != 0)
		est_coap_resp_error(&out->resp, EST_CODE(5, 0), "out of memory");
	outcome_note(r, out);
}

/** The key estgw made for a /skg or /skc, taken off its job (F4). */
struct kg_answer {
	const struct est_op_desc *op;
	uint8_t *key;
	size_t len;
};

/* Registrar-side keygen: the /simpleenroll answer plus the key (F4). */
static void translate_keygen(struct proxy *px, const struct kg_answer *kg,
			     int resp_cf, const uint8_t *csr, size_t csr_len,
			     const struct upstream_result *r,
			     struct proxy_outcome *out)
{
	struct est_http_resp in;

	http_resp(r, &in);
	memset(out, 0, sizeof(*out));
	out->upstream_status = r->err == EST_UP_OK ? r->status : 0;
	if (est_translate_keygen_enroll(kg->op, resp_cf, kg->key, kg->len, csr,
					csr_len, &in, &px->lim, &out->resp) != 0)
		est_coap_resp_error(&out->resp, EST_CODE(5, 0), "out of memory");
	if (!r->errmsg && !out->resp.note)
		out->resp.note = "key made by estgw";
	outcome_note(r, out);
}

/* A /cacerts answer worth caching: 200 that translates to a valid PKCS#7. */
static int good_answer(struct proxy *px, const struct est_job *j,
		       const struct upstream_result *r, int resp_cf)
{
	struct proxy_outcome o;
	int good;

	if (r->err != EST_UP_OK || r->status != 200)
		return 0;
	translate(px, j->op, resp_cf, j->csr, j->csr_len, r, &o);
	good = EST_CODE_CLASS(o.resp.code) == 2;
	est_coap_resp_free(&o.resp);
	return good;
}

static void log_exchange(const struct est_job *j, const struct upstream_result *r)
{
	const char *lbl = *j->label ? " label " : "";

	if (r->err != EST_UP_OK)
		log_warn("upstream", "%s%s%s failed: %s", j->op->http_name, lbl,
			 j->label, r->errmsg ? r->errmsg : "transport error");
	else if (r->status >= 300)
		log_warn("upstream", "%s%s%s answered HTTP %ld", j->op->http_name,
			 lbl, j->label, r->status);
	else
		log_debug("upstream", "%s%s%s -> HTTP %ld, %zu bytes, %.1f ms%s",
			  j->op->http_name, lbl, j->label, r->status, r->body_len,
			  r->seconds * 1000, r->reused ? ", reused connection" : "");
}

/* A kept registrar-keygen answer's extra data: the key's length (4 bytes,
 * big-endian), the key (PKCS#8), then the CSR estgw signed with it. */
static void kg_keep(struct proxy *px, struct xchg *ex, const struct est_job *j,
		    const struct upstream_result *r)
{
	size_t n = 4 + j->kg_key_len + j->csr_len;
	uint8_t *x = malloc(n);

	if (!x)
		return; /* not kept: a retry makes a new key */
	x[0] = (uint8_t)(j->kg_key_len >> 24);
	x[1] = (uint8_t)(j->kg_key_len >> 16);
	x[2] = (uint8_t)(j->kg_key_len >> 8);
	x[3] = (uint8_t)j->kg_key_len;
	memcpy(x + 4, j->kg_key, j->kg_key_len);
	memcpy(x + 4 + j->kg_key_len, j->csr, j->csr_len);
	xchg_keep_extra(px->xe, xchg_key(ex), r, px->cfg->upstream.keep_issued,
			x, n);
	explicit_bzero(x, n);
	free(x);
}

/* The device's answer from a kept registrar-keygen answer (0), or -EINVAL
 * when @p k holds none. */
static int kg_answer_kept(struct proxy *px, const struct proxy_request *rq,
			  const struct xchg_kept *k, struct proxy_outcome *out)
{
	struct upstream_result r = {
		.err = EST_UP_OK,
		.status = k->status,
		.content_type = k->content_type,
		.body = k->body,
		.body_len = k->len,
	};
	struct kg_answer kg;
	size_t klen;

	if (!k->extra || k->extra_len < 4)
		return -EINVAL;
	klen = (size_t)k->extra[0] << 24 | (size_t)k->extra[1] << 16 |
	       (size_t)k->extra[2] << 8 | k->extra[3];
	if (klen == 0 || klen > k->extra_len - 4)
		return -EINVAL;
	kg.op = rq->route->op;
	kg.key = k->extra + 4;
	kg.len = klen;
	translate_keygen(px, &kg, rq->resp_cf, k->extra + 4 + klen,
			 k->extra_len - 4 - klen, &r, out);
	out->upstream_status = 0;
	snprintf(out->note, sizeof(out->note), "%s", "kept, key made by estgw");
	return 0;
}

/* A3: what the EST server answers for /csrattrs or /serverkeygen
 * decides whether discovery lists att or skg/skc. Discovery lists the
 * unlabeled paths only, so a label's answers (maybe another CA profile)
 * change nothing. Registrar keygen jobs are /simpleenroll: not counted. */
static void note_avail(struct proxy *px, const struct est_job *j,
		       const struct upstream_result *r)
{
	long status = r->err == EST_UP_OK ? r->status : 0;
	enum est_op op = j->op->op;
	const char *how = op == EST_OP_ATT ?
		"asked again every crts_refresh seconds" :
		"asked again by the next device request";

	if (*j->label)
		return;
	switch (estgw_avail_note(&px->avail, op, status)) {
	case ESTGW_AVAIL_LOST:
		log_warn("discovery", "/%s answered HTTP %ld: %s taken out of "
			 "/.well-known/core until it answers again (%s)",
			 j->op->http_name, status, estgw_avail_names(op), how);
		break;
	case ESTGW_AVAIL_BACK:
		log_info("discovery", "/%s answered HTTP %ld: %s listed in "
			 "/.well-known/core again", j->op->http_name, status,
			 estgw_avail_names(op));
		break;
	case ESTGW_AVAIL_SAME:
		break;
	}
}

/* The engine's answered hook: once per exchange, before its waiters. */
static void x_answered(struct xchg *ex, const struct upstream_result *r);
static void x_outcome(struct xchg *ex, int resp_cf, const struct upstream_result *r,
		      struct proxy_outcome *out);

static void on_answered(struct xchg *ex, const struct upstream_result *r)
{
	struct est_job *j = xchg_data(ex);
	struct proxy *px = j->px;

	if (j->xop) {
		x_answered(ex, r);
		return;
	}
	metrics_upstream(j->op->http_name, r->err, r->status, r->seconds);
	log_exchange(j, r);
	note_avail(px, j, r);
	if (j->kind == JOB_PROBE) {
		px->probe_running = 0;
		px->probing = 0;
	}
	if (j->op->op == EST_OP_CRTS) {
		struct crts_cache *c = cache_find(px, j->label, 0);
		if (c && j->kind == JOB_REFRESH)
			c->refreshing = 0;
		if (!*j->label)
			px->warming = 0;
		if (good_answer(px, j, r, EST_CF_PKCS7_CERTS))
			cache_store(px, j->label, r);
	} else if ((j->op->op == EST_OP_SEN || j->op->op == EST_OP_SREN) &&
		   !j->kg_op && good_answer(px, j, r, EST_CF_PKCS7_CERTS)) {
		/* for a device told to come back (D2) */
		xchg_keep(px->xe, xchg_key(ex), r, px->cfg->upstream.keep_issued);
	} else if (j->kg_op && good_answer(px, j, r, EST_CF_PKCS7_CERTS)) {
		/* Registrar keygen (F4): the certificate with the key estgw
		 * made and the CSR it signed, so that the device told 5.03
		 * (or whose answer was lost) gets this key again (D2). */
		kg_keep(px, ex, j, r);
	} else if ((j->op->op == EST_OP_SKG || j->op->op == EST_OP_SKC) &&
		   !j->kg_op && good_answer(px, j, r, EST_CF_MULTIPART_CORE)) {
		/* The CA's key and certificate, for the device that was told
		 * 5.03 and comes back, or resends after a lost answer: the
		 * same key again, never a second one (D2). Only that client
		 * identity's identical request finds it; zeroed when dropped. */
		xchg_keep(px->xe, xchg_key(ex), r, px->cfg->upstream.keep_issued);
	}
}

/* The engine's outcome hook: the answer for one waiter (its Accept). */
static void on_outcome(struct xchg *ex, int resp_cf, const struct upstream_result *r,
		       struct proxy_outcome *out)
{
	struct est_job *j = xchg_data(ex);

	if (j->xop) {
		x_outcome(ex, resp_cf, r, out);
		return;
	}
	if (j->kg_op) {
		struct kg_answer kg = { j->kg_op, j->kg_key, j->kg_key_len };
		translate_keygen(j->px, &kg, resp_cf, j->csr, j->csr_len, r, out);
	} else {
		translate(j->px, j->op, resp_cf, j->csr, j->csr_len, r, out);
	}
}

static const struct xchg_hooks est_hooks = { on_answered, on_outcome, job_free };

/* A new exchange in RECEIVING with its request built; NULL with *err
 * (-EINVAL: the body is not a CSR, -ENOMEM). @p kg: the key estgw made. */
static struct xchg *job_new(struct proxy *px, enum job_kind kind,
			    const struct est_op_desc *op, const char *label,
			    const uint8_t *key, const uint8_t *body, size_t len,
			    const struct kg_answer *kg, int *err)
{
	struct est_job *j = calloc(1, sizeof(*j));
	char what[EST_LABEL_MAX + 48];
	struct xchg *ex;

	if (!j || (len && !(j->csr = malloc(len)))) {
		free(j);
		*err = -ENOMEM;
		return NULL;
	}
	j->px = px;
	j->kind = kind;
	j->op = op;
	snprintf(j->label, sizeof(j->label), "%s", label);
	if (len)
		memcpy(j->csr, body, len);
	j->csr_len = len;
	snprintf(what, sizeof(what), "%s%s%s", op->http_name, *label ? " label " : "",
		 label);
	ex = xchg_new(px->xe, key, j, what);
	if (!ex) {
		job_free(j);
		*err = -ENOMEM;
		return NULL;
	}
	*err = est_build_http_request(op, px->cfg->upstream.url, label, body, len,
				      xchg_request(ex));
	if (*err) {
		xchg_abort(ex);
		return NULL;
	}
	if (!px->cfg->upstream.send_cte)
		xchg_request(ex)->transfer_encoding = NULL;
	if (kg) { /* the job owns the key from now on */
		j->kg_op = kg->op;
		j->kg_key = kg->key;
		j->kg_key_len = kg->len;
	}
	return ex;
}

/* ---- the API ------------------------------------------------------------ */

static enum proxy_rc answer_stored(struct proxy *px, const struct proxy_request *rq,
				   const char *ct, const uint8_t *body, size_t len,
				   const char *note, struct proxy_outcome *now)
{
	struct upstream_result r = {
		.err = EST_UP_OK,
		.status = 200,
		.content_type = ct,
		.body = body,
		.body_len = len,
	};
	translate(px, rq->route->op, rq->resp_cf, rq->body, rq->len, &r, now);
	now->upstream_status = 0;
	snprintf(now->note, sizeof(now->note), "%s", note);
	return PROXY_ANSWERED;
}

static enum proxy_rc answer_now(struct proxy_outcome *now, uint8_t code,
				const char *diag, uint32_t max_age)
{
	memset(now, 0, sizeof(*now));
	est_coap_resp_error(&now->resp, code, diag);
	if (max_age) {
		now->resp.has_max_age = 1;
		now->resp.max_age = max_age;
	}
	snprintf(now->note, sizeof(now->note), "%s", diag);
	return PROXY_ANSWERED;
}

/* Run or queue a new exchange; the answer in *now (and the exchange gone)
 * when it cannot be. */
static enum proxy_rc place_or_answer(struct proxy *px, struct xchg *ex,
				     struct proxy_outcome *now)
{
	int err = xchg_place(ex);

	if (err == -EBUSY)
		return answer_now(now, EST_CODE(5, 3), "upstream busy",
				  px->cfg->upstream.retry_default);
	if (err)
		return answer_now(now, EST_CODE(5, 2), "upstream request failed", 0);
	return PROXY_PENDING;
}

/* The device request waits on @p ex: its answer, or 5.03 after
 * answer_within (D2). */
static enum proxy_rc wait_on(struct xchg *ex, const struct proxy_request *rq,
			     proxy_done_fn fn, void *arg, struct xchg_wait **wait,
			     struct proxy_outcome *now)
{
	struct xchg_wait *w = xchg_wait(ex, rq->resp_cf, fn, arg);

	if (!w) /* the exchange goes on; its certificate is kept */
		return answer_now(now, EST_CODE(5, 0), "out of memory", 0);
	*wait = w;
	return PROXY_PENDING;
}

/* /skg and /skc when the EST server does not make the key (F, F4):
 * off -> 4.04; registrar -> a new key and a CSR signed by it, enrolled with
 * /simpleenroll as the RA. An identical resent request joins the job in
 * flight and gets the same key. estgw cannot encrypt the key for the
 * device (RFC 9148 4.8 leaves the key establishment out of scope), so a
 * CSR asking for that is 5.01. */
static enum proxy_rc keygen_submit(struct proxy *px, const struct proxy_request *rq,
				   proxy_done_fn fn, void *arg,
				   struct xchg_wait **wait, struct proxy_outcome *now)
{
	const struct est_op_desc *op = rq->route->op;
	uint8_t key[XCHG_KEY_LEN];
	const struct xchg_kept *k;
	struct estgw_keygen kg;
	struct xchg *ex;
	int err;

	if (px->cfg->server.serverkeygen == ESTGW_SKG_OFF)
		return answer_now(now, EST_CODE(4, 4), "serverkeygen not enabled", 0);
	if (!rq->body || est_csr_check(rq->body, rq->len) != 0)
		return answer_now(now, EST_CODE(4, 0), "malformed request payload", 0);
	if (est_csr_wants_encrypted_key(rq->body, rq->len) == 1)
		return answer_now(now, EST_CODE(5, 1),
				  "encrypted keys need the CA's serverkeygen", 0);
	request_key(op, rq->route->label, rq->client, rq->body, rq->len, key);
	k = xchg_kept_find(px->xe, key);
	if (k && kg_answer_kept(px, rq, k, now) == 0)
		return PROXY_ANSWERED;
	ex = xchg_find(px->xe, key);
	if (ex)
		return wait_on(ex, rq, fn, arg, wait, now);
	err = estgw_keygen_make(rq->body, rq->len, &kg);
	if (err)
		return answer_now(now, EST_CODE(5, 0), "key generation failed", 0);
	struct kg_answer made = { op, kg.pkcs8, kg.pkcs8_len };
	ex = job_new(px, JOB_DEVICE, est_op_desc(EST_OP_SEN), rq->route->label, key,
		     kg.csr, kg.csr_len, &made, &err);
	if (ex)
		kg.pkcs8 = NULL; /* the job has it */
	estgw_keygen_free(&kg);
	if (!ex)
		return answer_now(now, EST_CODE(5, 0), err == -ENOMEM ? "out of memory"
					: "cannot build the enrollment", 0);
	log_debug("proxy", "%s: key made for %s, enrolling it", op->short_name,
		  rq->client);
	if (place_or_answer(px, ex, now) == PROXY_ANSWERED)
		return PROXY_ANSWERED;
	return wait_on(ex, rq, fn, arg, wait, now);
}

/* The operations whose answers are kept, so shared through the store
 * ([cluster], K1): a certificate, or the CA's key and certificate. GETs
 * and registrar keygen (the key estgw made is kept beside the certificate,
 * on this instance only) stay local. */
static int shared_op(const struct est_op_desc *op)
{
	return op->op == EST_OP_SEN || op->op == EST_OP_SREN ||
	       op->op == EST_OP_SKG || op->op == EST_OP_SKC;
}

void proxy_set_store(struct proxy *px, const struct store_if *st)
{
	px->store = st;
	xchg_set_store(px->xe, st);
}

const struct store_if *proxy_store(const struct proxy *px)
{
	return px->store;
}

enum proxy_rc proxy_submit(struct proxy *px, const struct proxy_request *rq,
			   proxy_done_fn fn, void *arg, struct xchg_wait **wait,
			   struct proxy_outcome *now)
{
	const struct est_op_desc *op = rq->route->op;
	const char *label = rq->route->label;
	uint8_t key[XCHG_KEY_LEN];
	const struct xchg_kept *k;
	struct xchg *ex;
	int err;

	*wait = NULL;
	if ((op->op == EST_OP_SKG || op->op == EST_OP_SKC) &&
	    px->cfg->server.serverkeygen != ESTGW_SKG_UPSTREAM)
		return keygen_submit(px, rq, fn, arg, wait, now);
	if (op->op == EST_OP_CRTS) {
		struct crts_cache *c = cache_find(px, label, 0);
		if (c && c->body)
			return answer_stored(px, rq, c->content_type, c->body,
					     c->len, "cache", now);
	}
	request_key(op, label, rq->client, rq->body, rq->len, key);
	if ((k = xchg_kept_find(px->xe, key)))
		return answer_stored(px, rq, k->content_type, k->body, k->len,
				     "kept", now);
	ex = xchg_find(px->xe, key);
	if (!ex) {
		ex = job_new(px, JOB_DEVICE, op, label, key, rq->body, rq->len,
			     NULL, &err);
		if (!ex) {
			if (err == -EINVAL)
				return answer_now(now, EST_CODE(4, 0),
						  "malformed request payload", 0);
			return answer_now(now, EST_CODE(5, 0), "out of memory", 0);
		}
		if (shared_op(op))
			xchg_share(ex); /* one upstream call across instances (K1) */
		if (place_or_answer(px, ex, now) == PROXY_ANSWERED)
			return PROXY_ANSWERED;
	} else {
		log_debug("proxy", "%s joins an identical %s in flight",
			  rq->client, op->short_name);
	}
	return wait_on(ex, rq, fn, arg, wait, now);
}

/* ---- RFC 8295 (I1-I3) ----------------------------------------------------- */

/* The operations a PAL may point at (I3): [rfc8295] enable, and RFC 9148
 * skg/skc unless [server] serverkeygen = off. */
static unsigned x_served(const struct estgw_config *cfg)
{
	return cfg->rfc8295.enable |
	       (cfg->server.serverkeygen != ESTGW_SKG_OFF ? EST_X_EN_RFC9148_SKG : 0);
}

static void x_http_resp(const struct upstream_result *r, struct est_http_resp *in)
{
	http_resp(r, in);
}

static void x_translate(struct proxy *px, struct est_job *j, int resp_cf,
			const struct upstream_result *r, struct proxy_outcome *out, int quiet)
{
	struct est_x_pal_ctx pal = {
		.up_base = px->cfg->upstream.url,
		.gw_base = j->x_gw_base ? j->x_gw_base : "",
		.enabled = x_served(px->cfg),
	};
	struct est_http_resp in;

	x_http_resp(r, &in);
	memset(out, 0, sizeof(*out));
	out->upstream_status = r->err == EST_UP_OK ? r->status : 0;
	if (est_x_translate_response(&px->cfg->rfc8295, j->xop, resp_cf, &in, &px->lim,
				     &pal, &out->resp) != 0)
		est_coap_resp_error(&out->resp, EST_CODE(5, 0), "out of memory");
	if (pal.stats.dropped && !quiet)
		log_info("rfc8295", "PAL: %u of %u entries dropped (first: package type "
			 "%.4s), their operations are not served here", pal.stats.dropped,
			 pal.stats.entries, pal.stats.first_dropped);
	if (pal.stats.foreign && !quiet)
		log_info("rfc8295", "PAL: %u URIs not under [upstream] url left as they are",
			 pal.stats.foreign);
	outcome_note(r, out);
}

/* Room in [rfc8295] keep_total_bytes for @p len more bytes: a slot. */
static int x_budget_take(struct proxy *px, size_t len, uint32_t ttl)
{
	struct x_kept_budget *b = &px->xkept;
	time_t now = xchg_now(px->xe);
	size_t total = 0;
	int free_slot = -1;

	for (int i = 0; i < X_KEPT_SLOTS; i++) {
		if (b->len[i] && b->expires[i] <= now)
			b->len[i] = 0;
		total += b->len[i];
		if (!b->len[i] && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0 || total + len > px->cfg->rfc8295.keep_total_bytes)
		return -ENOSPC;
	b->len[free_slot] = len ? len : 1;
	b->expires[free_slot] = now + ttl;
	return 0;
}

static void x_answered(struct xchg *ex, const struct upstream_result *r)
{
	struct est_job *j = xchg_data(ex);
	struct proxy *px = j->px;
	const struct est_x_op_desc *op = j->xop;
	uint32_t ttl = op->method == EST_GET ? px->cfg->rfc8295.keep :
		       px->cfg->upstream.keep_issued;
	struct proxy_outcome o;

	metrics_upstream(op->http_name, r->err, r->status, r->seconds);
	if (r->err != EST_UP_OK)
		log_warn("upstream", "%s failed: %s", op->http_name,
			 r->errmsg ? r->errmsg : "transport error");
	else if (r->status >= 300)
		log_warn("upstream", "%s answered HTTP %ld", op->http_name, r->status);
	else
		log_debug("upstream", "%s -> HTTP %ld, %zu bytes, %.1f ms", op->http_name,
			  r->status, r->body_len, r->seconds * 1000);
	/* a good GET or skg answer is kept for the device told to come back
	 * (D2); /return answers are not (a receipt sent again goes again) */
	if (r->err != EST_UP_OK || r->status != 200 ||
	    (op->method == EST_POST && op->op != EST_X_SKG_P12 && op->op != EST_X_SKG_EKP))
		return;
	x_translate(px, j, j->x_resp_cf, r, &o, 1);
	if (EST_CODE_CLASS(o.resp.code) == 2 &&
	    (op->method == EST_POST || x_budget_take(px, r->body_len, ttl) == 0) &&
	    xchg_keep(px->xe, xchg_key(ex), r, ttl) == 0)
		j->x_kept = 1;
	else if (EST_CODE_CLASS(o.resp.code) == 2 && op->method == EST_GET)
		log_warn("rfc8295", "%s answer (%zu bytes) not kept: [rfc8295] "
			 "keep_total_bytes reached", op->http_name, r->body_len);
	est_coap_resp_free(&o.resp);
}

static void x_outcome(struct xchg *ex, int resp_cf, const struct upstream_result *r,
		      struct proxy_outcome *out)
{
	struct est_job *j = xchg_data(ex);
	struct proxy *px = j->px;

	x_translate(px, j, resp_cf, r, out, 0);
	/* a separate answer in several blocks is lost by libcoap clients
	 * before 4.3.5: the kept one is given to the retry, in its ACK */
	if (j->xop->method == EST_GET && j->x_kept &&
	    EST_CODE_CLASS(out->resp.code) == 2 &&
	    out->resp.len > px->cfg->rfc8295.separate_max) {
		est_coap_resp_free(&out->resp);
		est_coap_resp_error(&out->resp, EST_CODE(5, 3), "answer ready, ask again");
		out->resp.has_max_age = 1;
		out->resp.max_age = 1;
		snprintf(out->note, sizeof(out->note), "kept for the retry (separate_max)");
	}
}

/* The request key: client, operation, label, tail, query, the answer's CF
 * (PAL XML and JSON are different upstream requests), body. */
static void x_request_key(const struct proxy_x_request *rq, uint8_t key[XCHG_KEY_LEN])
{
	struct estgw_buf parts[4 + 2 * 16 + 1];
	char cf[16];
	size_t n = 0;

	snprintf(cf, sizeof(cf), "%d", rq->resp_cf);
	parts[n++] = (struct estgw_buf){ rq->client ? rq->client : "",
					 rq->client ? strlen(rq->client) : 0 };
	parts[n++] = (struct estgw_buf){ rq->route->op->name, strlen(rq->route->op->name) + 1 };
	parts[n++] = (struct estgw_buf){ rq->route->label, strlen(rq->route->label) + 1 };
	parts[n++] = (struct estgw_buf){ cf, strlen(cf) + 1 };
	for (size_t i = 0; i < rq->ntail && n < sizeof(parts) / sizeof(parts[0]) - 1; i++)
		parts[n++] = (struct estgw_buf){ rq->tail[i].ptr, rq->tail[i].len + 1 };
	for (size_t i = 0; i < rq->nquery && n < sizeof(parts) / sizeof(parts[0]) - 1; i++)
		parts[n++] = (struct estgw_buf){ rq->query[i].ptr, rq->query[i].len };
	parts[n++] = (struct estgw_buf){ rq->body, rq->len };
	estgw_pki_sha256(parts, n, key);
}

/* "coaps://authority/root[/label]" or "/root[/label]" (I3). */
static char *x_gw_base(const struct estgw_config *cfg, const struct proxy_x_request *rq)
{
	const char *auth = cfg->rfc8295.pal_authority, *root = rq->root ? rq->root : "";
	size_t rlen = strlen(root), cap;
	char *b;

	while (rlen && root[rlen - 1] == '/')
		rlen--;
	cap = (auth ? strlen(auth) + 8 : 0) + rlen + strlen(rq->route->label) + 4;
	if (!(b = malloc(cap)))
		return NULL;
	snprintf(b, cap, "%s%s%s%.*s%s%s", auth ? "coaps://" : "", auth ? auth : "",
		 rlen && root[0] != '/' ? "/" : "", (int)rlen, root,
		 *rq->route->label ? "/" : "", rq->route->label);
	return b;
}

static struct xchg *x_job_new(struct proxy *px, const struct proxy_x_request *rq,
			      const uint8_t *key, int *err)
{
	const struct est_x_op_desc *op = rq->route->op;
	struct est_job *j = calloc(1, sizeof(*j));
	struct est_x_ask a = {
		.label = rq->route->label, .tail = rq->tail, .ntail = rq->ntail,
		.query = rq->query, .nquery = rq->nquery, .req_cf = rq->req_cf,
		.resp_cf = rq->resp_cf, .body = rq->body, .len = rq->len,
	};
	struct upstream_opts o = { 0 };
	char what[EST_LABEL_MAX + 48];
	size_t cap = est_x_body_cap(&px->cfg->rfc8295, op);
	struct xchg *ex;

	*err = -ENOMEM;
	if (!j)
		return NULL;
	j->px = px;
	j->kind = JOB_DEVICE;
	j->op = est_op_desc(op->method == EST_POST ? EST_OP_SKG : EST_OP_CRTS);
	j->xop = op;
	j->x_resp_cf = rq->resp_cf;
	snprintf(j->label, sizeof(j->label), "%s", rq->route->label);
	if (!(j->x_gw_base = x_gw_base(px->cfg, rq))) {
		job_free(j);
		return NULL;
	}
	snprintf(what, sizeof(what), "%s%s%s", op->http_name, *j->label ? " label " : "",
		 j->label);
	if (!(ex = xchg_new(px->xe, key, j, what))) {
		job_free(j);
		return NULL;
	}
	*err = est_x_build_http_request(&px->cfg->rfc8295, op, px->cfg->upstream.url, &a,
					xchg_request(ex), &o.accept);
	if (*err) {
		xchg_abort(ex);
		return NULL;
	}
	if (!px->cfg->upstream.send_cte)
		xchg_request(ex)->transfer_encoding = NULL;
	/* the cap is on DER: Base64 takes 4/3 of it, plus line ends */
	o.max_response = cap > (UINT32_MAX - 65536) / 3 * 2 ? UINT32_MAX :
			 (uint32_t)(cap / 2 * 3 + 65536);
	xchg_set_opts(ex, &o);
	return ex;
}

enum proxy_rc proxy_submit_8295(struct proxy *px, const struct proxy_x_request *rq,
				proxy_done_fn fn, void *arg, struct xchg_wait **wait,
				struct proxy_outcome *now)
{
	const struct est_x_op_desc *op = rq->route->op;
	uint8_t key[XCHG_KEY_LEN];
	const struct xchg_kept *k;
	struct xchg *ex;
	int err;

	*wait = NULL;
	if ((op->op == EST_X_SKG_P12 || op->op == EST_X_SKG_EKP) &&
	    px->cfg->server.serverkeygen != ESTGW_SKG_UPSTREAM)
		return answer_now(now, EST_CODE(5, 1), "PKCS#12 and encrypted key packages "
				  "need the CA's serverkeygen", 0);
	x_request_key(rq, key);
	if ((k = xchg_kept_find(px->xe, key))) {
		struct est_job tmp = { .px = px, .xop = op };
		struct upstream_result r = {
			.err = EST_UP_OK, .status = k->status, .content_type = k->content_type,
			.body = k->body, .body_len = k->len,
		};
		tmp.x_gw_base = x_gw_base(px->cfg, rq);
		x_translate(px, &tmp, rq->resp_cf, &r, now, 0);
		free(tmp.x_gw_base);
		now->upstream_status = 0;
		snprintf(now->note, sizeof(now->note), "kept");
		return PROXY_ANSWERED;
	}
	ex = xchg_find(px->xe, key);
	if (!ex) {
		ex = x_job_new(px, rq, key, &err);
		if (!ex)
			return answer_now(now, err == -EINVAL ? EST_CODE(4, 0) : EST_CODE(5, 0),
					  err == -EINVAL ? "malformed request payload" :
					  "out of memory", 0);
		if (place_or_answer(px, ex, now) == PROXY_ANSWERED)
			return PROXY_ANSWERED;
	}
	struct proxy_request prq = { .resp_cf = rq->resp_cf };
	return wait_on(ex, &prq, fn, arg, wait, now);
}

void proxy_cancel(struct xchg_wait *w)
{
	xchg_cancel(w);
}

/* An exchange no device waits for (the cache refresh, the probe); 0 when
 * it runs or is queued. */
static int background(struct proxy *px, enum job_kind kind,
		      const struct est_op_desc *op, const char *label,
		      const char *who)
{
	uint8_t key[XCHG_KEY_LEN];
	struct xchg *ex;
	int err;

	request_key(op, label, who, NULL, 0, key);
	ex = job_new(px, kind, op, label, key, NULL, 0, NULL, &err);
	if (!ex)
		return err;
	return xchg_place(ex);
}

static void refresh_one(struct proxy *px, const char *label)
{
	struct crts_cache *c = cache_find(px, label, 1);

	if (!c || c->refreshing)
		return;
	if (background(px, JOB_REFRESH, est_op_desc(EST_OP_CRTS), label,
		       "(refresh)") == 0)
		c->refreshing = 1;
}

/* GET /csrattrs with no device waiting (A3): at start-up, after
 * SIGHUP, and on each refresh tick while att is left out of discovery.
 * /serverkeygen has no such probe: it needs a CSR and makes a key. */
static void probe_csrattrs(struct proxy *px)
{
	if (px->probe_running)
		return;
	if (background(px, JOB_PROBE, est_op_desc(EST_OP_ATT), "", "(probe)") == 0)
		px->probe_running = 1;
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;

	for (size_t i = 0; i < CACHE_SLOTS; i++)
		if (px->cache[i].used)
			refresh_one(px, px->cache[i].label);
	if (px->avail.missing & estgw_avail_ops(EST_OP_ATT))
		probe_csrattrs(px);
}

/* The engine's limits from [upstream]. */
static void engine_limits(const struct proxy *px, struct xchg_limits *l)
{
	const struct estgw_config *c = px->cfg;

	memset(l, 0, sizeof(*l));
	l->max_running = c->upstream.max_concurrent;
	l->max_queued = c->upstream.queue;
	l->answer_within_ms = c->upstream.answer_within * 1000;
	l->timeout = c->upstream.timeout;
	l->age = px->lim;
	l->max_kept = c->upstream.max_kept;
}

static void take_config(struct proxy *px, const struct estgw_config *cfg)
{
	struct xchg_limits l;

	px->cfg = cfg;
	px->lim.max_age_default = cfg->upstream.retry_default;
	px->lim.max_age_min = cfg->upstream.max_age_min;
	px->lim.max_age_max = cfg->upstream.max_age_max;
	if (px->xe) {
		engine_limits(px, &l);
		xchg_set_limits(px->xe, &l);
	}
}

/* The upstream load gauges of /metrics. */
static void load_now(void *arg, size_t *running, size_t *queued)
{
	const struct proxy *px = arg;

	*running = xchg_running(px->xe);
	*queued = xchg_queued(px->xe);
}

struct proxy *proxy_new(struct event_base *base, struct upstream *up,
			const struct estgw_config *cfg)
{
	struct proxy *px = calloc(1, sizeof(*px));
	struct timeval tv = { cfg->upstream.crts_refresh, 0 };
	struct xchg_transport t = { upstream_send_opts, upstream_cancel, up };
	struct xchg_limits l;

	if (!px)
		return NULL;
	px->base = base;
	take_config(px, cfg);
	engine_limits(px, &l);
	px->xe = xchg_engine_new(base, &t, &est_hooks, &l);
	px->refresh_timer = event_new(base, -1, EV_PERSIST, on_refresh, px);
	if (!px->xe || !px->refresh_timer) {
		proxy_free(px);
		return NULL;
	}
	event_add(px->refresh_timer, &tv);
	refresh_one(px, ""); /* warm the default /crts cache at start-up */
	px->warming = cache_find(px, "", 0) && cache_find(px, "", 0)->refreshing;
	probe_csrattrs(px);
	px->probing = px->probe_running;
	metrics_upstream_load(load_now, px);
	return px;
}

int proxy_warming(const struct proxy *px)
{
	return px->warming || px->probing;
}

unsigned proxy_ops_missing(const struct proxy *px)
{
	return px->avail.missing;
}

void proxy_reload(struct proxy *px, const struct estgw_config *cfg)
{
	struct timeval tv = { cfg->upstream.crts_refresh, 0 };

	if (cfg->upstream.crts_refresh != px->cfg->upstream.crts_refresh)
		event_add(px->refresh_timer, &tv);
	take_config(px, cfg);
	/* The upstream may be another one now: learn again (A3). */
	if (px->avail.missing)
		log_info("discovery", "configuration reloaded: att, skg and "
			 "skc listed again until the EST server answers 404/501");
	px->avail.missing = 0;
	probe_csrattrs(px);
}

void proxy_free(struct proxy *px)
{
	if (!px)
		return;
	metrics_upstream_load(NULL, px);
	xchg_engine_free(px->xe); /* cancels its upstream transfers */
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		free(px->cache[i].body);
		free(px->cache[i].content_type);
	}
	if (px->refresh_timer)
		event_free(px->refresh_timer);
	free(px);
}
