/* fuzz_pipeline.c - libFuzzer: the request pipeline (src/core/pipeline.c; G9)
 * fed a stream of requests as a transport would decode them: Uri-Path
 * segments and Uri-Query values of any bytes, any method, Content-Format
 * and Accept, three clients, a rate limit, a clock that moves. Checks that
 * every refusal is one of the step codes with a diagnostic, that an
 * admitted request has a route its target knows, and that dispatching it
 * (fake proxy and brski entry points answering at once or later, or
 * cancelled) leaves nothing behind.
 *
 * Each record: flags, method, CF and Accept (0xff: absent), clock step,
 * segment count, query count, then per segment/query a length byte and its
 * bytes, then a body length byte and the body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct proxy {
	proxy_done_fn fn;
	void *arg;
};
struct xchg_wait { /* the engine's waiter, opaque to its users */
	int dummy;
};
struct brski {
	proxy_done_fn fn;
	void *arg;
};
static struct xchg_wait a_wait;
static struct xchg_wait a_bwait;
static int later; /* the fake targets answer later (flags bit) */
static int live;  /* pending jobs not yet answered or cancelled */

static enum proxy_rc answer(struct proxy_outcome *now, uint8_t code)
{
	if (est_coap_resp_error(&now->resp, code, "fake") != 0)
		memset(&now->resp, 0, sizeof(now->resp)); /* answered, empty */
	return PROXY_ANSWERED;
}

enum proxy_rc proxy_submit(struct proxy *px, const struct proxy_request *rq,
			   proxy_done_fn fn, void *arg, struct xchg_wait **wait,
		 struct proxy_outcome *now)
{
	if (!rq->route || !rq->route->op || !rq->client)
		abort();
	if (rq->route->op->method == EST_GET && rq->len)
		abort(); /* a GET carries no body upstream */
	if (!later)
		return answer(now, EST_CODE(2, 4));
	px->fn = fn;
	px->arg = arg;
	*wait = &a_wait;
	live++;
	return PROXY_PENDING;
}

enum proxy_rc proxy_submit_8295(struct proxy *px, const struct proxy_x_request *rq,
				proxy_done_fn fn, void *arg, struct xchg_wait **wait,
				struct proxy_outcome *now)
{
	if (!rq->route || !rq->route->op || !rq->client || !rq->root)
		abort();
	if (rq->route->op->method == EST_GET && rq->len)
		abort(); /* a GET carries no body upstream */
	if (!later)
		return answer(now, EST_CODE(2, 5));
	px->fn = fn;
	px->arg = arg;
	*wait = &a_wait;
	live++;
	return PROXY_PENDING;
}

void proxy_cancel(struct xchg_wait *w)
{
	if (w != &a_wait)
		abort();
	live--;
}

unsigned proxy_ops_missing(const struct proxy *px)
{
	return 1u << EST_OP_ATT;
}

const struct store_if *proxy_store(const struct proxy *px)
{
	return NULL; /* no [cluster]: the shared rate limit is not fuzzed here */
}

enum proxy_rc brski_submit(struct brski *b, const struct brski_request *rq,
			   proxy_done_fn fn, void *arg, struct xchg_wait **wait,
		 struct proxy_outcome *now)
{
	if (rq->res < BRSKI_RV || rq->res > BRSKI_ES || rq->method != EST_POST)
		abort();
	if (!later)
		return answer(now, EST_CODE(2, 4));
	b->fn = fn;
	b->arg = arg;
	*wait = &a_bwait;
	live++;
	return PROXY_PENDING;
}

void brski_cancel(struct xchg_wait *w)
{
	if (w != &a_bwait)
		abort();
	live--;
}

void brski_note_enrolled(struct brski *b, int cf, const uint8_t *payload,
			 size_t len)
{
}

struct cursor {
	const uint8_t *p;
	size_t n;
};

static uint8_t byte(struct cursor *c)
{
	if (!c->n)
		return 0;
	c->n--;
	return *c->p++;
}

static struct est_slice bytes(struct cursor *c)
{
	size_t n = byte(c) % 24;
	struct est_slice s = { c->p, n < c->n ? n : c->n };

	c->p += s.len;
	c->n -= s.len;
	return s;
}

static int opt(uint8_t v)
{
	static const int cfs[] = { 0, 40, 50, 60, 281, 286, 287, 836, 62, 284 };

	return v == 0xff ? EST_CF_NONE : cfs[v % (sizeof(cfs) / sizeof(cfs[0]))];
}

static int is_step_code(uint8_t c)
{
	static const uint8_t codes[] = {
		EST_CODE(5, 3), EST_CODE(4, 1), EST_CODE(4, 4), EST_CODE(4, 5),
		EST_CODE(4, 15), EST_CODE(4, 6), EST_CODE(4, 29),
	};

	for (size_t i = 0; i < sizeof(codes); i++)
		if (c == codes[i])
			return 1;
	return 0;
}

static void on_done(void *arg, struct proxy_outcome *out)
{
	live--;
	est_coap_resp_free(&out->resp);
}

/* Dispatch an admitted request; answer or cancel what is left pending. */
static void dispatch(struct pipeline *pl, struct proxy *px, struct brski *b,
		     const struct pl_request *rq, const struct pl_route *rt,
		     struct est_slice body, int cancel)
{
	struct pl_job job;
	struct proxy_outcome now;
	int rc = pipeline_dispatch(pl, rq, rt, body.ptr, body.len, &job, on_done,
				   NULL, &now);

	if (rc == 1) {
		if (!now.resp.code)
			abort();
		est_coap_resp_free(&now.resp);
		return;
	}
	if (rc != 0)
		return;
	if (cancel) {
		pipeline_cancel(&job);
		return;
	}
	struct proxy_outcome out = { 0 };
	if (answer(&out, EST_CODE(2, 4)) != 1)
		abort();
	if (rt->target == PL_BRSKI)
		b->fn(b->arg, &out);
	else /* EST and RFC 8295 both wait on the proxy */
		px->fn(px->arg, &out);
}

static void one(struct pipeline *pl, struct proxy *px, struct brski *b,
		struct cursor *c, uint64_t *now_ms)
{
	static const char *const names[] = { "CN=a", "CN=b", "CN=pledge" };
	uint8_t flags = byte(c);
	struct pl_client cl = {
		.name = names[(flags >> 4) % 3], .authenticated = !(flags & 0x40),
		.kind = (enum estgw_client_kind)((flags >> 1) % 3), .session = "s",
	};
	struct pl_request rq = {
		.method = byte(c) % 9, .cf = opt(byte(c)), .accept = opt(byte(c)),
		.continuation = flags & 1, .client = &cl,
	};
	size_t nseg = byte(c) % 12, nq = byte(c) % 10;
	struct pl_route rt;
	struct proxy_outcome out;

	*now_ms += (uint64_t)byte(c) * 500;
	rq.now_ms = *now_ms;
	for (size_t i = 0; i < nseg; i++) {
		struct est_slice s = bytes(c);

		if (i < PL_MAX_SEGS)
			rq.segs[i] = s;
		rq.nseg++;
	}
	for (size_t i = 0; i < nq; i++) {
		struct est_slice s = bytes(c);

		if (i < PL_MAX_QUERIES)
			rq.queries[rq.nquery++] = s;
	}
	struct est_slice body = bytes(c);
	int rc = pipeline_admit(pl, &rq, &rt, &out);

	if (rc == 1) {
		if (!is_step_code(out.resp.code) || !out.resp.payload)
			abort();
		if ((out.resp.code == EST_CODE(4, 29) || out.resp.code == EST_CODE(5, 3)) &&
		    !out.resp.has_max_age)
			abort();
		est_coap_resp_free(&out.resp);
		return;
	}
	if (rc != 0)
		return;
	if (rt.target == PL_EST && !rt.est.op)
		abort();
	if (rt.target == PL_BRSKI && (rt.res < BRSKI_RV || rt.res > BRSKI_ES))
		abort();
	later = (flags >> 3) & 1;
	dispatch(pl, px, b, &rq, &rt, body, flags & 0x80);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct estgw_config cfg;
	struct proxy px = { 0 };
	struct brski b = { 0 };
	struct cursor c = { data, size };
	struct pipeline *pl;
	uint64_t now_ms = 1000;
	uint8_t head = byte(&c);

	memset(&cfg, 0, sizeof(cfg));
	cfg.server.rate_limit = head & 7;
	cfg.server.root = head & 8 ? "/est" : NULL;
	cfg.server.serverkeygen = head & 16 ? ESTGW_SKG_OFF : ESTGW_SKG_UPSTREAM;
	cfg.upstream.retry_default = 5;
	cfg.policy.pop = (head >> 5) % 3;
	cfg.policy.idevid_ops = 0x1b;
	cfg.policy.ldevid_ops = 0x3f;
	cfg.policy.other_ops = 0x3f;
	/* RFC 8295 (I1): every operation served unless the rate-limit bits are 7 */
	cfg.rfc8295.enable = (head & 7) == 7 ? 0 : 0x7f;
	for (int i = 0; i < ESTGW_X_MT_COUNT; i++)
		cfg.rfc8295.cf[i] = 65000u + (uint32_t)i;
	cfg.rfc8295.max_return = 65536;
	pl = pipeline_new(&cfg, &px);
	if (!pl)
		return 0;
	if (head & 0x80)
		pipeline_set_brski(pl, &b);
	live = 0;
	for (int i = 0; c.n && i < 64; i++) {
		if (i == 48)
			pipeline_quiesce(pl);
		one(pl, &px, &b, &c, &now_ms);
	}
	if (live != 0)
		abort(); /* every pending job answered or cancelled */
	pipeline_free(pl);
	return 0;
}
