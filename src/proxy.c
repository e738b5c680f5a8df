/* proxy.c - EST request objects and the /cacerts cache.
 *
 * A job is created per upstream exchange and owns the copy of the request
 * body (the CSR) until the answer is translated. The CoAP side learns the
 * outcome only through its proxy_done_fn, called from the loop. /crts is
 * served from a per-label cache of the last good /cacerts answer, refreshed
 * in the background every [upstream] crts_refresh seconds.
 */
#include "proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "estgw/log.h"
#include "metrics.h"
#include "upstream.h"

#define CACHE_SLOTS 16

struct crts_cache {
	char label[EST_LABEL_MAX + 1];
	int used;
	char *content_type;
	uint8_t *body;
	size_t len;
	time_t fetched;
	struct proxy_job *refresh; /* background refresh in flight */
};

struct proxy_job {
	struct proxy *px;
	const struct est_op_desc *op;
	char label[EST_LABEL_MAX + 1];
	int resp_cf;
	uint8_t *csr;
	size_t csr_len;
	proxy_done_fn fn; /* NULL for a background cache refresh */
	void *arg;
	struct upstream_xfer *xfer;
	struct proxy_job *prev, *next;
};

struct proxy {
	struct event_base *base;
	struct upstream *up;
	const struct estgw_config *cfg;
	struct est_xlate_limits lim;
	struct crts_cache cache[CACHE_SLOTS];
	struct event *refresh_timer;
	struct proxy_job *jobs;
};

static void job_unlink(struct proxy_job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		j->px->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
}

static void job_free(struct proxy_job *j)
{
	job_unlink(j);
	free(j->csr);
	free(j);
}

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

/* Keep a good /cacerts answer: 200 that translates to a valid PKCS#7. */
static void cache_store(struct proxy *px, const char *label,
			const struct upstream_result *r,
			const struct est_coap_resp *as281)
{
	if (r->err != EST_UP_OK || r->status != 200 ||
	    as281->code != EST_CODE(2, 5))
		return;
	struct crts_cache *c = cache_find(px, label, 1);
	if (!c)
		return;
	uint8_t *body = malloc(r->body_len ? r->body_len : 1);
	char *ct = r->content_type ? strdup(r->content_type) : NULL;
	if (!body || (r->content_type && !ct)) {
		free(body);
		free(ct);
		return;
	}
	memcpy(body, r->body, r->body_len);
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

static void translate(struct proxy *px, const struct est_op_desc *op,
		      int resp_cf, const uint8_t *csr, size_t csr_len,
		      const struct upstream_result *r, struct proxy_outcome *out)
{
	struct est_http_resp in = {
		.err = r->err,
		.status = r->status,
		.content_type = r->content_type,
		.retry_after = r->retry_after,
		.body = r->body,
		.body_len = r->body_len,
		.now = time(NULL),
	};

	memset(out, 0, sizeof(*out));
	out->upstream_status = r->err == EST_UP_OK ? r->status : 0;
	if (est_translate_response(op, resp_cf, csr, csr_len, &in, &px->lim,
				   &out->resp) != 0)
		est_coap_resp_error(&out->resp, EST_CODE(5, 0), "out of memory");
	const char *note = r->errmsg ? r->errmsg : out->resp.note;
	snprintf(out->note, sizeof(out->note), "%s", note ? note : "");
}

static void on_upstream(void *arg, const struct upstream_result *r)
{
	struct proxy_job *j = arg;
	struct proxy *px = j->px;
	struct proxy_outcome out;

	j->xfer = NULL;
	metrics_upstream(j->op->http_name, r->err, r->status, r->seconds);
	if (r->err != EST_UP_OK)
		log_warn("upstream", "%s%s%s: %s", j->op->http_name,
			 *j->label ? " label " : "", j->label,
			 r->errmsg ? r->errmsg : "failed");
	else
		log_debug("upstream", "%s -> HTTP %ld, %zu bytes, %.1f ms%s",
			  j->op->http_name, r->status, r->body_len,
			  r->seconds * 1000, r->reused ? ", reused connection" : "");
	if (j->op->op == EST_OP_CRTS) {
		struct proxy_outcome as281;
		translate(px, j->op, EST_CF_PKCS7_CERTS, NULL, 0, r, &as281);
		cache_store(px, j->label, r, &as281.resp);
		est_coap_resp_free(&as281.resp);
		struct crts_cache *c = cache_find(px, j->label, 0);
		if (c && c->refresh == j)
			c->refresh = NULL;
	}
	if (j->fn) {
		translate(px, j->op, j->resp_cf, j->csr, j->csr_len, r, &out);
		proxy_done_fn fn = j->fn;
		void *farg = j->arg;
		job_free(j);
		fn(farg, &out);
		return;
	}
	job_free(j);
}

static struct proxy_job *job_start(struct proxy *px, const struct est_op_desc *op,
				   const char *label, int resp_cf,
				   const uint8_t *body, size_t len, int *err)
{
	struct est_http_req req;
	struct proxy_job *j;

	*err = est_build_http_request(op, px->cfg->upstream.url, label, body,
				      len, &req);
	if (*err)
		return NULL;
	j = calloc(1, sizeof(*j));
	if (!j || (len && !(j->csr = malloc(len)))) {
		free(j);
		est_http_req_free(&req);
		*err = -ENOMEM;
		return NULL;
	}
	j->px = px;
	j->op = op;
	j->resp_cf = resp_cf;
	snprintf(j->label, sizeof(j->label), "%s", label);
	if (len)
		memcpy(j->csr, body, len);
	j->csr_len = len;
	j->next = px->jobs;
	if (px->jobs)
		px->jobs->prev = j;
	px->jobs = j;
	j->xfer = upstream_send(px->up, &req, on_upstream, j);
	est_http_req_free(&req);
	if (!j->xfer) {
		job_free(j);
		*err = -EIO;
		return NULL;
	}
	return j;
}

static int answer_from_cache(struct proxy *px, const struct est_route *route,
			     int resp_cf, struct proxy_outcome *now)
{
	struct crts_cache *c = cache_find(px, route->label, 0);

	if (!c || !c->body)
		return 0;
	struct upstream_result r = {
		.err = EST_UP_OK,
		.status = 200,
		.content_type = c->content_type,
		.body = c->body,
		.body_len = c->len,
	};
	translate(px, route->op, resp_cf, NULL, 0, &r, now);
	now->upstream_status = 0;
	snprintf(now->note, sizeof(now->note), "cache");
	return 1;
}

int proxy_submit(struct proxy *px, const struct est_route *route, int resp_cf,
		 const uint8_t *body, size_t len, proxy_done_fn fn, void *arg,
		 struct proxy_job **job, struct proxy_outcome *now)
{
	int err;

	if (route->op->op == EST_OP_CRTS &&
	    answer_from_cache(px, route, resp_cf, now))
		return 1;
	struct proxy_job *j = job_start(px, route->op, route->label, resp_cf,
					body, len, &err);
	if (!j) {
		memset(now, 0, sizeof(*now));
		if (err == -EINVAL)
			est_coap_resp_error(&now->resp, EST_CODE(4, 0),
					    "malformed request payload");
		else if (err == -ENOMEM)
			est_coap_resp_error(&now->resp, EST_CODE(5, 0),
					    "out of memory");
		else
			est_coap_resp_error(&now->resp, EST_CODE(5, 2),
					    "upstream request failed");
		return 1;
	}
	j->fn = fn;
	j->arg = arg;
	*job = j;
	return 0;
}

void proxy_cancel(struct proxy_job *j)
{
	if (!j)
		return;
	if (j->xfer)
		upstream_cancel(j->xfer);
	for (size_t i = 0; i < CACHE_SLOTS; i++)
		if (j->px->cache[i].refresh == j)
			j->px->cache[i].refresh = NULL;
	job_free(j);
}

static void refresh_one(struct proxy *px, const char *label)
{
	struct crts_cache *c = cache_find(px, label, 1);
	int err;

	if (!c || c->refresh)
		return;
	c->refresh = job_start(px, est_op_desc(EST_OP_CRTS), label,
			       EST_CF_PKCS7_CERTS, NULL, 0, &err);
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;

	for (size_t i = 0; i < CACHE_SLOTS; i++)
		if (px->cache[i].used)
			refresh_one(px, px->cache[i].label);
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
	return px;
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
}

void proxy_free(struct proxy *px)
{
	if (!px)
		return;
	while (px->jobs) {
		struct proxy_job *j = px->jobs;
		if (j->xfer)
			upstream_cancel(j->xfer);
		job_free(j);
	}
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		free(px->cache[i].body);
		free(px->cache[i].content_type);
	}
	event_free(px->refresh_timer);
	free(px);
}
