/* proxy.c - EST request jobs, coalescing, limits, kept answers, /cacerts cache.
 *
 * A job is one upstream exchange. Device requests wait on it (struct
 * proxy_wait); an identical request (same client identity, operation,
 * label and body) joins the job already in flight instead of starting a
 * second enrollment (J1). At most [upstream] max_concurrent jobs run;
 * [upstream] queue more wait; past that the device gets 5.03 + Max-Age.
 * A device request that has no answer after [upstream] answer_within
 * seconds gets 5.03 + Max-Age while its job goes on (RFC 9148 §4.7,
 * D2): only the upstream timeout ends a job early. A successful sen/sren
 * answer is kept for [upstream] keep_issued seconds, so a device that was
 * told to come back (or gave up) and resends the identical CSR gets the same
 * certificate without a second enrollment. /crts is served from a per-label
 * cache of the last good /cacerts answer, refreshed in the background.
 * The EST server's 404/501 for /csrattrs or /serverkeygen takes att or
 * skg/skc out of discovery (A3, avail.c); /csrattrs is probed.
 */
#include "proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "avail.h"
#include "estgw/log.h"
#include "estgw/skg.h"
#include "keygen.h"
#include "pki.h"
#include "metrics.h"
#include "upstream.h"

#define CACHE_SLOTS 16
#define KEY_LEN 32

struct crts_cache {
	char label[EST_LABEL_MAX + 1];
	int used;
	char *content_type;
	uint8_t *body;
	size_t len;
	time_t fetched;
	struct proxy_job *refresh; /* background refresh in flight */
};

/* A stored upstream answer (sen/sren 200) for identical resent CSRs. */
struct kept {
	struct kept *next;
	unsigned char key[KEY_LEN];
	time_t expires;
	char *content_type;
	uint8_t *body;
	size_t len;
};

struct proxy_wait {
	struct proxy_wait *next;
	struct proxy_job *job;
	int resp_cf;
	proxy_done_fn fn;
	void *arg;
	struct event *deadline; /* answer_within: 5.03 + Max-Age when it fires */
};

enum job_state { JOB_QUEUED, JOB_RUNNING };

struct proxy_job {
	struct proxy *px;
	const struct est_op_desc *op;
	char label[EST_LABEL_MAX + 1];
	unsigned char key[KEY_LEN];
	uint8_t *csr;
	size_t csr_len;
	struct est_http_req req;
	enum job_state state;
	uint64_t deadline_ms;          /* CLOCK_MONOTONIC: upstream timeout, once sent */
	struct proxy_wait *waiters;
	struct upstream_xfer *xfer;
	struct proxy_job *prev, *next; /* all jobs */
	struct proxy_job *qnext;       /* the queue, when JOB_QUEUED */
	const struct est_op_desc *kg_op; /* skg/skc when estgw made the key (F4) */
	uint8_t *kg_key;                 /* that key, PKCS#8 (secret) */
	size_t kg_key_len;
};

struct proxy {
	struct event_base *base;
	struct upstream *up;
	const struct estgw_config *cfg;
	struct est_xlate_limits lim;
	struct crts_cache cache[CACHE_SLOTS];
	struct event *refresh_timer;
	struct proxy_job *jobs;
	struct proxy_job *qhead, *qtail;
	size_t running, queued;
	struct kept *kept;
	size_t nkept;
	int warming; /* the first /cacerts fetch is in flight */
	struct estgw_avail avail;  /* what discovery leaves out (A3) */
	struct proxy_job *probe;   /* GET /csrattrs without a device */
	int probing;               /* the start-up probe is in flight */
};

static void start_queued(struct proxy *px);

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* ---- waiters ------------------------------------------------------------ */

static void wait_free(struct proxy_wait *w)
{
	if (w->deadline)
		event_free(w->deadline);
	free(w);
}

static void wait_unlink(struct proxy_wait *w)
{
	for (struct proxy_wait **pp = &w->job->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			return;
		}
	}
}

/* ---- jobs --------------------------------------------------------------- */

static void job_unlink(struct proxy_job *j)
{
	struct proxy *px = j->px;

	if (j->prev)
		j->prev->next = j->next;
	else
		px->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	if (j->state == JOB_QUEUED) {
		struct proxy_job **pp = &px->qhead, *last = NULL;
		while (*pp && *pp != j) {
			last = *pp;
			pp = &(*pp)->qnext;
		}
		if (*pp) {
			*pp = j->qnext;
			if (px->qtail == j)
				px->qtail = last;
			px->queued--;
		}
	} else {
		px->running--;
	}
}

static void job_free(struct proxy_job *j)
{
	struct proxy_wait *w, *next;

	job_unlink(j);
	if (j->xfer)
		upstream_cancel(j->xfer);
	for (w = j->waiters; w; w = next) {
		next = w->next;
		wait_free(w);
	}
	est_http_req_free(&j->req);
	free(j->csr);
	if (j->kg_key)
		explicit_bzero(j->kg_key, j->kg_key_len);
	free(j->kg_key);
	free(j);
}

static struct proxy_job *job_find(struct proxy *px, const unsigned char *key)
{
	for (struct proxy_job *j = px->jobs; j; j = j->next)
		if (memcmp(j->key, key, KEY_LEN) == 0)
			return j;
	return NULL;
}

static void request_key(const struct est_op_desc *op, const char *label,
			const char *client, const uint8_t *body, size_t len,
			unsigned char key[KEY_LEN])
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

/* ---- kept answers ------------------------------------------------------- */

static void kept_free(struct kept *k)
{
	free(k->content_type);
	free(k->body);
	free(k);
}

/* Drop expired entries; with @p room, also the oldest beyond max_kept - 1. */
static void kept_trim(struct proxy *px, time_t now, int room)
{
	struct kept **pp = &px->kept;
	size_t n = 0;
	size_t limit = px->cfg->upstream.max_kept - (room ? 1 : 0);

	while (*pp) {
		struct kept *k = *pp;
		if (k->expires <= now || n >= limit) {
			*pp = k->next;
			kept_free(k);
			px->nkept--;
			continue;
		}
		n++;
		pp = &k->next;
	}
}

static struct kept *kept_find(struct proxy *px, const unsigned char *key)
{
	kept_trim(px, time(NULL), 0);
	for (struct kept *k = px->kept; k; k = k->next)
		if (memcmp(k->key, key, KEY_LEN) == 0)
			return k;
	return NULL;
}

static void kept_store(struct proxy *px, const unsigned char *key,
		       const struct upstream_result *r)
{
	struct kept *k;

	if (px->cfg->upstream.keep_issued == 0 || kept_find(px, key))
		return;
	k = calloc(1, sizeof(*k));
	if (!k || copy_answer(r, &k->content_type, &k->body) != 0) {
		free(k);
		return;
	}
	kept_trim(px, time(NULL), 1);
	memcpy(k->key, key, KEY_LEN);
	k->len = r->body_len;
	k->expires = time(NULL) + px->cfg->upstream.keep_issued;
	k->next = px->kept; /* newest first: trimming drops from the tail */
	px->kept = k;
	px->nkept++;
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
static int good_answer(struct proxy *px, const struct proxy_job *j,
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

static void log_exchange(const struct proxy_job *j, const struct upstream_result *r)
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

/* A3: what the EST server answers for /csrattrs or /serverkeygen
 * decides whether discovery lists att or skg/skc. Discovery lists the
 * unlabeled paths only, so a label's answers (maybe another CA profile)
 * change nothing. Registrar keygen jobs are /simpleenroll: not counted. */
static void note_avail(struct proxy *px, const struct proxy_job *j,
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

static void on_upstream(void *arg, const struct upstream_result *r)
{
	struct proxy_job *j = arg;
	struct proxy *px = j->px;
	struct proxy_wait *w, *next;

	j->xfer = NULL;
	metrics_upstream(j->op->http_name, r->err, r->status, r->seconds);
	log_exchange(j, r);
	note_avail(px, j, r);
	if (px->probe == j) {
		px->probe = NULL;
		px->probing = 0;
	}
	if (j->op->op == EST_OP_CRTS) {
		struct crts_cache *c = cache_find(px, j->label, 0);
		if (c && c->refresh == j)
			c->refresh = NULL;
		if (!*j->label)
			px->warming = 0;
		if (good_answer(px, j, r, EST_CF_PKCS7_CERTS))
			cache_store(px, j->label, r);
	} else if ((j->op->op == EST_OP_SEN || j->op->op == EST_OP_SREN) &&
		   !j->kg_op && good_answer(px, j, r, EST_CF_PKCS7_CERTS)) {
		kept_store(px, j->key, r); /* for a device told to come back (D2) */
	}
	/* Take the waiters, drop the job, then answer: callbacks may re-enter. */
	w = j->waiters;
	j->waiters = NULL;
	const struct est_op_desc *op = j->op;
	uint8_t *csr = j->csr;
	size_t csr_len = j->csr_len;
	struct kg_answer kg = { j->kg_op, j->kg_key, j->kg_key_len };
	j->csr = NULL;
	j->kg_key = NULL;
	job_free(j);
	for (; w; w = next) {
		struct proxy_outcome out;
		next = w->next;
		if (kg.op)
			translate_keygen(px, &kg, w->resp_cf, csr, csr_len, r, &out);
		else
			translate(px, op, w->resp_cf, csr, csr_len, r, &out);
		w->fn(w->arg, &out);
		wait_free(w);
	}
	free(csr);
	if (kg.key)
		explicit_bzero(kg.key, kg.len);
	free(kg.key);
	start_queued(px);
}

static int job_send(struct proxy_job *j)
{
	j->deadline_ms = now_ms() + (uint64_t)j->px->cfg->upstream.timeout * 1000;
	j->state = JOB_RUNNING;
	j->px->running++;
	j->xfer = upstream_send(j->px->up, &j->req, on_upstream, j);
	return j->xfer ? 0 : -EIO;
}

/* A queued job that cannot be sent is answered 5.02 by its waiters. */
static void fail_job(struct proxy_job *j)
{
	struct upstream_result r = { .err = EST_UP_PROTOCOL,
				     .errmsg = "upstream request failed" };
	j->xfer = NULL;
	on_upstream(j, &r);
}

static void start_queued(struct proxy *px)
{
	while (px->qhead && px->running < px->cfg->upstream.max_concurrent) {
		struct proxy_job *j = px->qhead;
		px->qhead = j->qnext;
		if (!px->qhead)
			px->qtail = NULL;
		px->queued--;
		j->qnext = NULL;
		if (job_send(j) != 0)
			fail_job(j);
	}
}

static struct proxy_job *job_new(struct proxy *px, const struct est_op_desc *op,
				 const char *label, const unsigned char *key,
				 const uint8_t *body, size_t len, int *err)
{
	struct proxy_job *j = calloc(1, sizeof(*j));

	if (!j) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = est_build_http_request(op, px->cfg->upstream.url, label, body,
				      len, &j->req);
	if (*err || (len && !(j->csr = malloc(len)))) {
		if (!*err)
			*err = -ENOMEM;
		est_http_req_free(&j->req);
		free(j);
		return NULL;
	}
	j->px = px;
	j->op = op;
	j->state = JOB_QUEUED; /* not counted anywhere until placed */
	snprintf(j->label, sizeof(j->label), "%s", label);
	memcpy(j->key, key, KEY_LEN);
	if (len)
		memcpy(j->csr, body, len);
	j->csr_len = len;
	j->next = px->jobs;
	if (px->jobs)
		px->jobs->prev = j;
	px->jobs = j;
	return j;
}

/* Run now, or queue; -EBUSY when the queue is full too. */
static int job_place(struct proxy *px, struct proxy_job *j)
{
	if (px->running < px->cfg->upstream.max_concurrent)
		return job_send(j);
	if (px->queued >= px->cfg->upstream.queue)
		return -EBUSY;
	if (px->qtail)
		px->qtail->qnext = j;
	else
		px->qhead = j;
	px->qtail = j;
	px->queued++;
	return 0;
}

/* ---- the API ------------------------------------------------------------ */

static int answer_stored(struct proxy *px, const struct proxy_request *rq,
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
	return 1;
}

static int answer_now(struct proxy_outcome *now, uint8_t code, const char *diag,
		      uint32_t max_age)
{
	memset(now, 0, sizeof(*now));
	est_coap_resp_error(&now->resp, code, diag);
	if (max_age) {
		now->resp.has_max_age = 1;
		now->resp.max_age = max_age;
	}
	snprintf(now->note, sizeof(now->note), "%s", diag);
	return 1;
}

/* Run or queue a new job; 1 with *now filled (and the job gone) when it
 * cannot. */
static int place_or_answer(struct proxy *px, struct proxy_job *j,
			   struct proxy_outcome *now)
{
	int err = job_place(px, j);

	if (err == -EBUSY) {
		job_free(j);
		return answer_now(now, EST_CODE(5, 3), "upstream busy",
				  px->cfg->upstream.retry_default);
	}
	if (err) {
		job_free(j);
		return answer_now(now, EST_CODE(5, 2), "upstream request failed", 0);
	}
	return 0;
}

/* Max-Age for a device whose answer is not ready (RFC 9148 §4.7,
 * D2): the time the exchange may still take, plus a second, so that the
 * retry finds the kept answer or, after an upstream timeout, starts a new
 * exchange. At most retry_default; within max_age_min..max_age_max. */
static uint32_t come_back_in(const struct proxy *px, const struct proxy_job *j)
{
	const struct estgw_config *c = px->cfg;
	uint64_t now = now_ms();
	uint32_t s = c->upstream.timeout + 1; /* queued: all of it is ahead */

	if (j->state == JOB_RUNNING)
		s = j->deadline_ms > now ?
			    (uint32_t)((j->deadline_ms - now + 999) / 1000) + 1 : 1;
	if (s > c->upstream.retry_default)
		s = c->upstream.retry_default;
	if (s < c->upstream.max_age_min)
		s = c->upstream.max_age_min;
	if (s > c->upstream.max_age_max)
		s = c->upstream.max_age_max;
	return s;
}

/* answer_within is over: 5.03 + Max-Age now, the job goes on (D2).
 * A retry joins it while in flight; afterwards a sen/sren certificate is
 * kept for it, /cacerts is in the cache, /csrattrs is asked again. */
static void on_wait_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_wait *w = arg;
	struct proxy_job *j = w->job;
	struct proxy_outcome out;
	uint32_t age = come_back_in(j->px, j);

	wait_unlink(w);
	answer_now(&out, EST_CODE(5, 3), "upstream still working, retry later",
		   age);
	log_debug("proxy", "%s%s%s %s after %us: 5.03, Max-Age %u; the exchange goes on",
		  j->op->http_name, *j->label ? " label " : "", j->label,
		  j->state == JOB_RUNNING ? "unanswered" : "still queued",
		  j->px->cfg->upstream.answer_within, age);
	w->fn(w->arg, &out);
	wait_free(w);
}

/* An answer with a private key (skg, skc): estgw keeps no keys (G7),
 * so a device told to come back would only have a second key made. It
 * waits for the exchange itself, up to [upstream] timeout. */
static int brings_key(const struct proxy_job *j)
{
	return j->kg_op || j->op->op == EST_OP_SKG || j->op->op == EST_OP_SKC;
}

/* The device request waits on @p j, at most answer_within seconds. */
static int wait_on(struct proxy_job *j, const struct proxy_request *rq,
		   proxy_done_fn fn, void *arg, struct proxy_wait **wait,
		   struct proxy_outcome *now)
{
	struct proxy_wait *w = calloc(1, sizeof(*w));
	struct timeval tv = { j->px->cfg->upstream.answer_within, 0 };

	if (w && !brings_key(j)) {
		w->deadline = evtimer_new(j->px->base, on_wait_deadline, w);
		if (!w->deadline || evtimer_add(w->deadline, &tv) != 0) {
			wait_free(w);
			w = NULL;
		}
	}
	if (!w) /* the exchange goes on; its certificate is kept */
		return answer_now(now, EST_CODE(5, 0), "out of memory", 0);
	w->job = j;
	w->resp_cf = rq->resp_cf;
	w->fn = fn;
	w->arg = arg;
	w->next = j->waiters;
	j->waiters = w;
	*wait = w;
	return 0;
}

/* /skg and /skc when the EST server does not make the key (F, F4):
 * off -> 4.04; registrar -> a new key and a CSR signed by it, enrolled with
 * /simpleenroll as the RA. An identical resent request joins the job in
 * flight and gets the same key. estgw cannot encrypt the key for the
 * device (RFC 9148 4.8 leaves the key establishment out of scope), so a
 * CSR asking for that is 5.01. */
static int keygen_submit(struct proxy *px, const struct proxy_request *rq,
			 proxy_done_fn fn, void *arg, struct proxy_wait **wait,
			 struct proxy_outcome *now)
{
	const struct est_op_desc *op = rq->route->op;
	unsigned char key[KEY_LEN];
	struct estgw_keygen kg;
	struct proxy_job *j;
	int err;

	if (px->cfg->server.serverkeygen == ESTGW_SKG_OFF)
		return answer_now(now, EST_CODE(4, 4), "serverkeygen not enabled", 0);
	if (!rq->body || est_csr_check(rq->body, rq->len) != 0)
		return answer_now(now, EST_CODE(4, 0), "malformed request payload", 0);
	if (est_csr_wants_encrypted_key(rq->body, rq->len) == 1)
		return answer_now(now, EST_CODE(5, 1),
				  "encrypted keys need the CA's serverkeygen", 0);
	request_key(op, rq->route->label, rq->client, rq->body, rq->len, key);
	j = job_find(px, key);
	if (j)
		return wait_on(j, rq, fn, arg, wait, now);
	err = estgw_keygen_make(rq->body, rq->len, &kg);
	if (err)
		return answer_now(now, EST_CODE(5, 0), "key generation failed", 0);
	j = job_new(px, est_op_desc(EST_OP_SEN), rq->route->label, key, kg.csr,
		    kg.csr_len, &err);
	if (!j) {
		estgw_keygen_free(&kg);
		return answer_now(now, EST_CODE(5, 0), err == -ENOMEM ? "out of memory"
					: "cannot build the enrollment", 0);
	}
	j->kg_op = op;
	j->kg_key = kg.pkcs8;
	j->kg_key_len = kg.pkcs8_len;
	kg.pkcs8 = NULL;
	estgw_keygen_free(&kg);
	log_debug("proxy", "%s: key made for %s, enrolling it", op->short_name,
		  rq->client);
	if (place_or_answer(px, j, now))
		return 1;
	return wait_on(j, rq, fn, arg, wait, now);
}

int proxy_submit(struct proxy *px, const struct proxy_request *rq,
		 proxy_done_fn fn, void *arg, struct proxy_wait **wait,
		 struct proxy_outcome *now)
{
	const struct est_op_desc *op = rq->route->op;
	const char *label = rq->route->label;
	unsigned char key[KEY_LEN];
	struct proxy_job *j;
	struct kept *k;
	int err;

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
	if ((k = kept_find(px, key)))
		return answer_stored(px, rq, k->content_type, k->body, k->len,
				     "kept", now);
	j = job_find(px, key);
	if (!j) {
		j = job_new(px, op, label, key, rq->body, rq->len, &err);
		if (!j) {
			if (err == -EINVAL)
				return answer_now(now, EST_CODE(4, 0),
						  "malformed request payload", 0);
			return answer_now(now, EST_CODE(5, 0), "out of memory", 0);
		}
		if (place_or_answer(px, j, now))
			return 1;
	} else {
		log_debug("proxy", "%s joins an identical %s in flight",
			  rq->client, op->short_name);
	}
	return wait_on(j, rq, fn, arg, wait, now);
}

void proxy_cancel(struct proxy_wait *w)
{
	if (!w)
		return;
	wait_unlink(w);
	wait_free(w);
}

static void refresh_one(struct proxy *px, const char *label)
{
	struct crts_cache *c = cache_find(px, label, 1);
	const struct est_op_desc *op = est_op_desc(EST_OP_CRTS);
	unsigned char key[KEY_LEN];
	struct proxy_job *j;
	int err;

	if (!c || c->refresh)
		return;
	request_key(op, label, "(refresh)", NULL, 0, key);
	j = job_new(px, op, label, key, NULL, 0, &err);
	if (!j)
		return;
	if (job_place(px, j) != 0) {
		job_free(j);
		return;
	}
	c->refresh = j;
}

/* GET /csrattrs with no device waiting (A3): at start-up, after
 * SIGHUP, and on each refresh tick while att is left out of discovery.
 * /serverkeygen has no such probe: it needs a CSR and makes a key. */
static void probe_csrattrs(struct proxy *px)
{
	const struct est_op_desc *op = est_op_desc(EST_OP_ATT);
	unsigned char key[KEY_LEN];
	struct proxy_job *j;
	int err;

	if (px->probe)
		return;
	request_key(op, "", "(probe)", NULL, 0, key);
	j = job_new(px, op, "", key, NULL, 0, &err);
	if (!j)
		return;
	if (job_place(px, j) != 0) {
		job_free(j);
		return;
	}
	px->probe = j;
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

struct proxy *proxy_new(struct event_base *base, struct upstream *up,
			const struct estgw_config *cfg)
{
	struct proxy *px = calloc(1, sizeof(*px));
	struct timeval tv = { cfg->upstream.crts_refresh, 0 };

	if (!px)
		return NULL;
	px->base = base;
	px->up = up;
	px->cfg = cfg;
	px->lim.max_age_default = cfg->upstream.retry_default;
	px->lim.max_age_min = cfg->upstream.max_age_min;
	px->lim.max_age_max = cfg->upstream.max_age_max;
	px->refresh_timer = event_new(base, -1, EV_PERSIST, on_refresh, px);
	if (!px->refresh_timer) {
		free(px);
		return NULL;
	}
	event_add(px->refresh_timer, &tv);
	refresh_one(px, ""); /* warm the default /crts cache at start-up */
	px->warming = cache_find(px, "", 0) && cache_find(px, "", 0)->refresh;
	probe_csrattrs(px);
	px->probing = px->probe != NULL;
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
	px->cfg = cfg;
	px->lim.max_age_default = cfg->upstream.retry_default;
	px->lim.max_age_min = cfg->upstream.max_age_min;
	px->lim.max_age_max = cfg->upstream.max_age_max;
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
	while (px->jobs)
		job_free(px->jobs);
	while (px->kept) {
		struct kept *k = px->kept;
		px->kept = k->next;
		kept_free(k);
	}
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		free(px->cache[i].body);
		free(px->cache[i].content_type);
	}
	event_free(px->refresh_timer);
	free(px);
}
