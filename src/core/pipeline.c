/* pipeline.c - the steps every request goes through (see pipeline.h).
 *
 * One order for EST and cBRSKI: a pledge's rv, vs and es meet the same
 * shutdown answer, identity, route, option checks and rate limit as a
 * device's sen, and the limit counts them in the client's one bucket (G9).
 * The EST option rules are translate.c's table; the other paths' rules are
 * the table below. Knows neither libcoap nor curl: the transport hands in
 * a plain request and sends the answer it gets back.
 */
#include "core/pipeline.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/log.h"
#include "core/ratelimit.h"

#define RATE_CLIENTS 4096 /* clients the rate limit tracks at once */
#define CF_ANY (-2)       /* in a service row: any Content-Format (or Accept) */

struct pipeline {
	const struct estgw_config *cfg;
	struct proxy *px;
	struct brski *brski;     /* NULL unless [brski] enabled */
	const char *roots[2];
	size_t nroots;
	struct estgw_rate *rate; /* NULL: no rate limit */
	int draining;
};

/* The paths outside the EST roots (H1, H3, A3) with their option rules:
 * the Content-Formats taken and the Accept values answered (absent is
 * always fine for Accept), as EST's come from translate.c (A6, B2, B3). */
struct service {
	const char *segs[3];
	size_t nseg;
	enum pl_target target;
	enum brski_res res;
	int method;
	const char *method_diag;
	int cf[2];
	const char *cf_diag;
	int accept[2];
	const char *accept_diag;
};

static const struct service services[] = {
	{ { ".well-known", "core" }, 2, PL_DISCOVERY, BRSKI_NONE,
	  EST_GET, "only GET", { CF_ANY, CF_ANY }, NULL,
	  { EST_CF_LINK, EST_CF_LINK }, "discovery answers only Content-Format 40" },
	{ { ".well-known", "brski", "rv" }, 3, PL_BRSKI, BRSKI_RV,
	  EST_POST, "only POST", { BRSKI_CF_VOUCHER_COSE, BRSKI_CF_VOUCHER_COSE },
	  "rv takes Content-Format 836 (application/voucher+cose)",
	  { BRSKI_CF_VOUCHER_COSE, BRSKI_CF_VOUCHER_COSE },
	  "rv answers only Content-Format 836" },
	{ { ".well-known", "brski", "vs" }, 3, PL_BRSKI, BRSKI_VS,
	  EST_POST, "only POST", { BRSKI_CF_CBOR, BRSKI_CF_JSON },
	  "vs takes Content-Format 60 (application/cbor) or 50 (JSON)",
	  { CF_ANY, CF_ANY }, NULL },
	{ { ".well-known", "brski", "es" }, 3, PL_BRSKI, BRSKI_ES,
	  EST_POST, "only POST", { BRSKI_CF_CBOR, BRSKI_CF_JSON },
	  "es takes Content-Format 60 (application/cbor) or 50 (JSON)",
	  { CF_ANY, CF_ANY }, NULL },
};

/* ---- answers ------------------------------------------------------------ */

/* A refusal: @p code with @p diag as payload, @p note for the log line. */
static int refuse(struct proxy_outcome *out, uint8_t code, const char *diag,
		  const char *note)
{
	if (est_coap_resp_error(&out->resp, code, diag) != 0)
		return -ENOMEM;
	snprintf(out->note, sizeof(out->note), "%s", note ? note : "");
	return 1;
}

/* 4.29 or 5.03 with Max-Age (RFC 8516, D1): the device learns when to
 * come back. */
static int refuse_for(struct proxy_outcome *out, uint8_t code, uint32_t secs,
		      const char *diag, const char *note)
{
	int rc = refuse(out, code, diag, note);

	out->resp.has_max_age = 1;
	out->resp.max_age = secs;
	return rc;
}

/* ---- steps 3-6: route and options ---------------------------------------- */

static int seg_is(const struct est_slice *s, const char *name)
{
	size_t n = strlen(name);

	return s->len == n && memcmp(s->ptr, name, n) == 0;
}

static const struct service *find_service(const struct pipeline *pl,
					  const struct pl_request *rq)
{
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		const struct service *sv = &services[i];
		size_t k = 0;

		if (sv->target == PL_BRSKI && !pl->brski)
			continue;
		if (rq->nseg != sv->nseg)
			continue;
		while (k < sv->nseg && seg_is(&rq->segs[k], sv->segs[k]))
			k++;
		if (k == sv->nseg)
			return sv;
	}
	return NULL;
}

static int in_set(const int set[2], int v)
{
	return set[0] == CF_ANY || v == set[0] || v == set[1];
}

/* Method, Content-Format, Accept of a service row; 0 or the error code. */
static uint8_t check_service(const struct service *sv,
			     const struct pl_request *rq, const char **diag)
{
	if (rq->method != sv->method) {
		*diag = sv->method_diag;
		return EST_CODE(4, 5);
	}
	if (!in_set(sv->cf, rq->cf)) { /* EST_CF_NONE is in no set */
		*diag = sv->cf_diag;
		return EST_CODE(4, 15);
	}
	if (rq->accept != EST_CF_NONE && !in_set(sv->accept, rq->accept)) {
		*diag = sv->accept_diag;
		return EST_CODE(4, 6);
	}
	return 0;
}

/* RFC 8295 (I1): 4.04 when off, 4.05, 4.15, 4.06 from rfc8295.c's rules. */
static int check_x8295(const struct pipeline *pl, const struct pl_request *rq,
		       struct pl_route *rt, struct proxy_outcome *out)
{
	struct est_coap_req opts = {
		.method = (enum est_method)rq->method, .cf = rq->cf,
		.accept = rq->accept,
	};
	struct est_verdict v;

	if (est_x_check_request(&pl->cfg->rfc8295, rt->x.op, &opts, &v) != 0)
		return refuse(out, v.code, v.diag, v.diag);
	rt->target = PL_X8295;
	rt->resp_cf = v.resp_cf;
	return 0;
}

/* skg/skc asking for PKCS#12 or an encrypted key package (RFC 8295 §8.1,
 * §8.3): 1 and rt->x set, 0 for plain RFC 9148 skg/skc. */
static int skg_variant(const struct pipeline *pl, const struct pl_request *rq,
		       struct pl_route *rt)
{
	enum est_op op = rt->est.op->op;
	int x;

	if ((op != EST_OP_SKG && op != EST_OP_SKC) ||
	    (x = est_x_skg_variant(&pl->cfg->rfc8295, rq->accept)) < 0)
		return 0;
	rt->x.op = est_x_op_desc((enum est_x_op)x);
	snprintf(rt->x.label, sizeof(rt->x.label), "%s", rt->est.label);
	rt->x.root_index = rt->est.root_index;
	return 1;
}

/* Steps 3-6: 0 and *rt, or 1 with the refusal in *out. */
static int route_and_check(const struct pipeline *pl,
			   const struct pl_request *rq, struct pl_route *rt,
			   struct proxy_outcome *out)
{
	const struct service *sv = find_service(pl, rq);
	const char *diag = NULL;
	struct est_verdict v;
	uint8_t code;

	if (sv) {
		rt->target = sv->target;
		rt->res = sv->res;
		code = check_service(sv, rq, &diag);
		return code ? refuse(out, code, diag, diag) : 0;
	}
	if (rq->nseg <= PL_MAX_SEGS &&
	    est_x_route_path(rq->segs, rq->nseg, pl->roots, pl->nroots, &rt->x) == 0)
		return check_x8295(pl, rq, rt, out);
	if (rq->nseg > PL_MAX_SEGS ||
	    est_route_path(rq->segs, rq->nseg, pl->roots, pl->nroots, &rt->est) != 0)
		return refuse(out, EST_CODE(4, 4), "no such resource", NULL);
	if (skg_variant(pl, rq, rt))
		return check_x8295(pl, rq, rt, out);
	struct est_coap_req opts = {
		.method = (enum est_method)rq->method, .cf = rq->cf,
		.accept = rq->accept,
	};
	if (est_check_request(rt->est.op, &opts, &v) != 0)
		return refuse(out, v.code, v.diag, v.diag);
	rt->target = PL_EST;
	rt->resp_cf = v.resp_cf;
	return 0;
}

/* ---- step 7: the rate limit --------------------------------------------- */

/* The shared bucket's answer ([cluster], K1). The store is closed before
 * the pipeline is freed, so @p arg is alive. */
static void on_shared_rate(void *arg, const char *client, uint64_t units, uint64_t seq)
{
	struct pipeline *pl = arg;

	if (pl->rate)
		estgw_rate_sync(pl->rate, client, units, seq);
}

/* One token per request from the client's bucket, whatever the path; a
 * later Block1 block belongs to a request already counted. */
static int over_limit(struct pipeline *pl, const struct pl_request *rq,
		      uint32_t *retry)
{
	const struct store_if *st;
	uint64_t seq;

	if (!pl->rate || rq->continuation)
		return 0;
	st = pl->px ? proxy_store(pl->px) : NULL;
	if (!st)
		return estgw_rate_take(pl->rate, rq->client->name, rq->now_ms, retry) != 0;
	if (estgw_rate_take_shared(pl->rate, rq->client->name, rq->now_ms, retry, &seq) != 0)
		return 1;
	/* K1: the cluster's bucket counts it too; its answer sets this
	 * instance's bucket for the client's next request (never waited for) */
	st->ops->rate(st->s, rq->client->name, pl->cfg->server.rate_limit, seq,
		      on_shared_rate, pl);
	return 0;
}

int pipeline_admit(struct pipeline *pl, const struct pl_request *rq,
		   struct pl_route *route, struct proxy_outcome *out)
{
	uint32_t retry = 0;
	int rc;

	memset(route, 0, sizeof(*route));
	memset(out, 0, sizeof(*out));
	route->res = BRSKI_NONE;
	if (pl->draining)
		return refuse_for(out, EST_CODE(5, 3), pl->cfg->upstream.retry_default,
				  "shutting down", "shutting down");
	if (!rq->client || !rq->client->authenticated)
		return refuse(out, EST_CODE(4, 1), "no client certificate",
			      "no client certificate");
	if ((rc = route_and_check(pl, rq, route, out)) != 0)
		return rc;
	if (over_limit(pl, rq, &retry))
		return refuse_for(out, EST_CODE(4, 29), retry, "too many requests",
				  "rate limit");
	return 0;
}

/* ---- steps 8-9: policy and dispatch ---------------------------------- */

/* The path as log lines write it. */
static void path_text(const struct pl_request *rq, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < rq->nseg && i < PL_MAX_SEGS && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "/%.*s",
				      (int)rq->segs[i].len, (const char *)rq->segs[i].ptr);
}

/* G2-G4: the policy decides before anything goes upstream; a refusal is
 * logged here with the client's kind and answered. */
static int policy_refused(struct pipeline *pl, const struct pl_request *rq,
			  const struct pl_route *rt, const uint8_t *body,
			  size_t len, struct proxy_outcome *now)
{
	const struct pl_client *c = rq->client;
	struct estgw_policy_verdict v;
	struct estgw_policy_req pr = {
		.op = rt->est.op->op,
		.kind = c->kind,
		.cert_expired = c->cert_expired,
		.cert = c->cert,
		.cert_len = c->cert_len,
		.csr = rt->est.op->method == EST_POST ? body : NULL,
		.csr_len = len,
		.tls_unique = c->tls_unique,
		.tls_unique_len = c->tls_unique_len,
	};
	char path[96];
	int refused = estgw_policy_check(pl->cfg, &pr, &v) != 0;

	if (!refused && !v.note)
		return 0;
	path_text(rq, path, sizeof(path));
	if (!refused) {
		log_info("policy", "client=\"%s\" (%s) %s: %s", c->name,
			 estgw_client_kind_name(pr.kind), path, v.note);
		return 0;
	}
	log_warn("policy", "client=\"%s\" (%s) %s refused: %s", c->name,
		 estgw_client_kind_name(pr.kind), path, v.diag);
	return refuse(now, v.code, v.diag, v.diag);
}

/* What a target's answer means to another target: a certificate issued to
 * a device is how brski.c tells an enrolled LDevID on es (RFC 8995 5.9.4). */
static void note_answer(const struct pl_job *job, const struct est_coap_resp *r)
{
	if (job->enroll && job->pl->brski && r->code == EST_CODE(2, 4))
		brski_note_enrolled(job->pl->brski, r->cf, r->payload, r->len);
}

static void on_target_done(void *arg, struct proxy_outcome *out)
{
	struct pl_job *job = arg;

	job->wait = NULL;
	job->bwait = NULL;
	note_answer(job, &out->resp);
	job->fn(job->arg, out);
}

static int to_est(struct pipeline *pl, const struct pl_request *rq,
		  const struct pl_route *rt, const uint8_t *body, size_t len,
		  struct pl_job *job, struct proxy_outcome *now)
{
	enum est_op op = rt->est.op->op;
	int rc;

	if (rt->est.op->method == EST_GET)
		len = 0; /* a GET carries no body upstream */
	if ((rc = policy_refused(pl, rq, rt, body, len, now)) != 0)
		return rc;
	struct proxy_request prq = {
		.route = &rt->est, .resp_cf = rt->resp_cf,
		.client = rq->client->name, .body = body, .len = len,
	};
	job->enroll = op == EST_OP_SEN || op == EST_OP_SREN;
	rc = (int)proxy_submit(pl->px, &prq, on_target_done, job, &job->wait, now);
	if (rc == 1)
		note_answer(job, &now->resp);
	return rc;
}

/* RFC 8295 (I1-I3): the skg/skc variants pass the policy as skg/skc do;
 * the other operations are for any authenticated client ([rfc8295]
 * enable decides); a /return body over [rfc8295] max_return is 4.13. */
static int to_x8295(struct pipeline *pl, const struct pl_request *rq,
		    const struct pl_route *rt, const uint8_t *body, size_t len,
		    struct pl_job *job, struct proxy_outcome *now)
{
	const struct est_x_op_desc *op = rt->x.op;
	size_t ntail = rt->x.ntail, first = rt->x.tail_first;
	int rc;

	if (op->method == EST_GET)
		len = 0;
	if (rt->est.op && (rc = policy_refused(pl, rq, rt, body, len, now)) != 0)
		return rc;
	if (op->method == EST_POST && !rt->est.op &&
	    len > est_x_body_cap(&pl->cfg->rfc8295, op))
		return refuse(now, EST_CODE(4, 13), "body over [rfc8295] max_return",
			      "body over [rfc8295] max_return");
	if (first + ntail > PL_MAX_SEGS)
		ntail = first < PL_MAX_SEGS ? PL_MAX_SEGS - first : 0;
	struct proxy_x_request prq = {
		.route = &rt->x, .req_cf = rq->cf, .resp_cf = rt->resp_cf,
		.client = rq->client->name,
		.tail = ntail ? &rq->segs[first] : NULL, .ntail = ntail,
		.query = rq->queries,
		.nquery = rq->nquery < PL_MAX_QUERIES ? rq->nquery : PL_MAX_QUERIES,
		.root = pl->roots[rt->x.root_index < pl->nroots ? rt->x.root_index : 0],
		.body = body, .len = len,
	};
	return (int)proxy_submit_8295(pl->px, &prq, on_target_done, job, &job->wait, now);
}

static int to_brski(struct pipeline *pl, const struct pl_request *rq,
		    const struct pl_route *rt, const uint8_t *body, size_t len,
		    struct pl_job *job, struct proxy_outcome *now)
{
	const struct pl_client *c = rq->client;
	struct brski_request brq = {
		.res = rt->res, .method = rq->method, .cf = rq->cf,
		.accept = rq->accept, .body = body, .len = len,
		.peer = c->cert, .peer_len = c->cert_len, .mfr = c->mfr,
		.cert_expired = c->cert_expired, .session = c->session,
	};

	return (int)brski_submit(pl->brski, &brq, on_target_done, job, &job->bwait, now);
}

/* "jpy://[addr]:port" of [brski] jpy_listen (H6); a wildcard address is
 * replaced by @p local, where the request came to. -ENOENT: no JPY. */
static int jpy_uri(const struct estgw_config *cfg, const char *local,
		   char *out, size_t len)
{
	const struct estgw_addr *a = &cfg->brski.jpy_listen;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->sa;
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->sa;
	int wild, v6 = a->sa.ss_family == AF_INET6;
	unsigned port;

	if (!a->salen)
		return -ENOENT;
	wild = v6 ? IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) : s4->sin_addr.s_addr == 0;
	port = ntohs(v6 ? s6->sin6_port : s4->sin_port);
	if (!wild)
		snprintf(out, len, "jpy://%s", a->text);
	else if (local && *local)
		snprintf(out, len, strchr(local, ':') ? "jpy://[%s]:%u" : "jpy://%s:%u",
			 local, port);
	else
		return -ENOENT;
	return 0;
}

/* GET /.well-known/core (A3, A4): what is served, less what the EST
 * server said it lacks, filtered by the queries. */
static int to_discovery(struct pipeline *pl, const struct pl_request *rq,
			struct proxy_outcome *now)
{
	struct est_link_opts lo = {
		.root = pl->roots[pl->nroots - 1],
		.ops_enabled = (1u << EST_OP_CRTS) | (1u << EST_OP_SEN) |
			       (1u << EST_OP_SREN) | (1u << EST_OP_ATT),
		.with_root_link = 1,
	};
	size_t nq = rq->nquery < PL_MAX_QUERIES ? rq->nquery : PL_MAX_QUERIES;
	char *text = NULL, jpy[ESTGW_ADDR_TEXT + 64];
	size_t n = 0;

	if (jpy_uri(pl->cfg, rq->local_ip, jpy, sizeof(jpy)) == 0) /* H6 */
		lo.jpy_uri = jpy;
	if (pl->cfg->server.serverkeygen != ESTGW_SKG_OFF) /* F */
		lo.ops_enabled |= (1u << EST_OP_SKG) | (1u << EST_OP_SKC);
	lo.ops_enabled &= ~proxy_ops_missing(pl->px); /* 404/501 upstream */
	if (pl->brski)
		lo.ops_enabled |= EST_LINKS_BRSKI;
	if (est_link_format(&lo, rq->queries, nq, &text, &n) != 0)
		return -ENOMEM;
	if (est_x_link_format(&pl->cfg->rfc8295, lo.root, rq->queries, nq, &text,
			      &n) != 0) { /* I1: the enabled RFC 8295 operations */
		free(text);
		return -ENOMEM;
	}
	now->resp.code = EST_CODE(2, 5);
	now->resp.cf = EST_CF_LINK;
	now->resp.payload = (uint8_t *)text;
	now->resp.len = n;
	return 1;
}

int pipeline_dispatch(struct pipeline *pl, const struct pl_request *rq,
		      const struct pl_route *route, const uint8_t *body,
		      size_t len, struct pl_job *job, proxy_done_fn fn,
		      void *arg, struct proxy_outcome *now)
{
	memset(job, 0, sizeof(*job));
	memset(now, 0, sizeof(*now));
	job->pl = pl;
	job->target = route->target;
	job->fn = fn;
	job->arg = arg;
	switch (route->target) {
	case PL_EST:
		return to_est(pl, rq, route, body, len, job, now);
	case PL_BRSKI:
		return pl->brski ? to_brski(pl, rq, route, body, len, job, now) :
				   refuse(now, EST_CODE(4, 4), "no such resource", NULL);
	case PL_DISCOVERY:
		return to_discovery(pl, rq, now);
	case PL_X8295:
		return to_x8295(pl, rq, route, body, len, job, now);
	}
	return -EINVAL;
}

void pipeline_cancel(struct pl_job *job)
{
	if (job->wait)
		proxy_cancel(job->wait);
	if (job->bwait)
		brski_cancel(job->bwait);
	job->wait = NULL;
	job->bwait = NULL;
}

/* ---- life cycle --------------------------------------------------------- */

static void set_roots(struct pipeline *pl, const struct estgw_config *cfg)
{
	pl->nroots = 0;
	pl->roots[pl->nroots++] = "/.well-known/est";
	if (cfg->server.root)
		pl->roots[pl->nroots++] = cfg->server.root;
}

struct pipeline *pipeline_new(const struct estgw_config *cfg, struct proxy *px)
{
	struct pipeline *pl = calloc(1, sizeof(*pl));

	if (!pl)
		return NULL;
	pl->cfg = cfg;
	pl->px = px;
	set_roots(pl, cfg);
	if (cfg->server.rate_limit) {
		pl->rate = estgw_rate_new(cfg->server.rate_limit, RATE_CLIENTS);
		if (!pl->rate) {
			free(pl);
			return NULL;
		}
	}
	return pl;
}

void pipeline_free(struct pipeline *pl)
{
	if (!pl)
		return;
	estgw_rate_free(pl->rate);
	free(pl);
}

void pipeline_set_brski(struct pipeline *pl, struct brski *b)
{
	pl->brski = b;
}

int pipeline_reload(struct pipeline *pl, const struct estgw_config *cfg)
{
	uint32_t per_minute = cfg->server.rate_limit;

	if (per_minute && !pl->rate) {
		pl->rate = estgw_rate_new(per_minute, RATE_CLIENTS);
		if (!pl->rate)
			return -ENOMEM;
	} else if (per_minute) {
		estgw_rate_set(pl->rate, per_minute);
	} else {
		estgw_rate_free(pl->rate);
		pl->rate = NULL;
	}
	pl->cfg = cfg;
	set_roots(pl, cfg);
	return 0;
}

void pipeline_quiesce(struct pipeline *pl)
{
	pl->draining = 1;
}
