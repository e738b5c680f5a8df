/* test_pipeline.c - the request pipeline (src/core/pipeline.c) with fake
 * targets: each step's refusal (5.03 shutting down, 4.01 identity, 4.04
 * route, 4.05 method, 4.15 Content-Format, 4.06 Accept, 4.29 rate limit,
 * 4.01/4.03 policy), the order of the steps, that EST and cBRSKI requests
 * (rv, vs, es) meet the same limit in one bucket per client (G9), and what
 * is handed to proxy_submit, brski_submit and the discovery listing.
 *
 * proxy.c and brski.c are not linked: this file defines the entry points
 * pipeline.c calls, recording what they were given. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/pipeline.h"
#include "policy_fixtures.h"

#define ALL_OPS ((1u << EST_OP_COUNT) - 1)
#define NO_SREN (ALL_OPS & ~(1u << EST_OP_SREN))

/* ---- fake targets ---------------------------------------------------------- */

struct proxy {
	int submits, cancels;
	int pending;                /* answer later instead of at once */
	uint8_t code;               /* the answer at once */
	int cf;
	struct proxy_request last;  /* its pointers are the caller's: read at once */
	int last_op;                /* the route's operation, copied at submit */
	size_t last_len;
	char last_client[64];
	proxy_done_fn fn;
	void *arg;
	unsigned missing;           /* proxy_ops_missing */
	int x_submits;              /* proxy_submit_8295 */
	int x_last_op, x_last_resp_cf;
	size_t x_last_ntail, x_last_nquery, x_last_len;
	char x_last_label[EST_LABEL_MAX + 1], x_last_root[128];
};

struct xchg_wait { /* the engine's waiter, opaque to its users */
	int dummy;
};

struct brski {
	int submits, cancels, enrolled;
	int pending;
	struct brski_request last;
	proxy_done_fn fn;
	void *arg;
};

static struct xchg_wait the_wait;
static struct xchg_wait the_bwait;
static struct proxy *cur_px;
static struct brski *cur_b;

static enum proxy_rc answer(struct proxy_outcome *now, uint8_t code, int cf)
{
	memset(now, 0, sizeof(*now));
	now->resp.code = code;
	now->resp.cf = cf;
	now->resp.payload = malloc(3);
	memcpy(now->resp.payload, "abc", 3);
	now->resp.len = 3;
	return PROXY_ANSWERED;
}

enum proxy_rc proxy_submit(struct proxy *px, const struct proxy_request *rq,
			   proxy_done_fn fn, void *arg, struct xchg_wait **wait,
		 struct proxy_outcome *now)
{
	px->submits++;
	px->last = *rq;
	px->last_op = rq->route && rq->route->op ? (int)rq->route->op->op : -1;
	px->last_len = rq->len;
	strncpy(px->last_client, rq->client, sizeof(px->last_client) - 1);
	if (px->pending) {
		px->fn = fn;
		px->arg = arg;
		*wait = &the_wait;
		return PROXY_PENDING;
	}
	return answer(now, px->code, px->cf);
}

enum proxy_rc proxy_submit_8295(struct proxy *px, const struct proxy_x_request *rq,
				proxy_done_fn fn, void *arg, struct xchg_wait **wait,
				struct proxy_outcome *now)
{
	px->x_submits++;
	px->x_last_op = (int)rq->route->op->op;
	px->x_last_resp_cf = rq->resp_cf;
	px->x_last_ntail = rq->ntail;
	px->x_last_nquery = rq->nquery;
	px->x_last_len = rq->len;
	snprintf(px->x_last_label, sizeof(px->x_last_label), "%s", rq->route->label);
	snprintf(px->x_last_root, sizeof(px->x_last_root), "%s", rq->root);
	if (px->pending) {
		px->fn = fn;
		px->arg = arg;
		*wait = &the_wait;
		return PROXY_PENDING;
	}
	return answer(now, px->code, px->cf);
}

void proxy_cancel(struct xchg_wait *w)
{
	assert_ptr_equal(w, &the_wait);
	cur_px->cancels++;
}

unsigned proxy_ops_missing(const struct proxy *px)
{
	return px->missing;
}

const struct store_if *proxy_store(const struct proxy *px)
{
	(void)px;
	return NULL; /* no [cluster] (K2) */
}

enum proxy_rc brski_submit(struct brski *b, const struct brski_request *rq,
			   proxy_done_fn fn, void *arg, struct xchg_wait **wait,
		 struct proxy_outcome *now)
{
	b->submits++;
	b->last = *rq;
	if (b->pending) {
		b->fn = fn;
		b->arg = arg;
		*wait = &the_bwait;
		return PROXY_PENDING;
	}
	return answer(now, EST_CODE(2, 4), EST_CF_NONE);
}

void brski_cancel(struct xchg_wait *w)
{
	assert_ptr_equal(w, &the_bwait);
	cur_b->cancels++;
}

void brski_note_enrolled(struct brski *b, int cf, const uint8_t *payload,
			 size_t len)
{
	b->enrolled++;
}

/* ---- a pipeline to drive --------------------------------------------------- */

struct fix {
	struct estgw_config cfg;
	struct proxy px;
	struct brski b;
	struct pipeline *pl;
	struct pl_client client;
	uint64_t now_ms;
};

static const uint8_t tls_unique[12] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };

static void fix_init(struct fix *f, uint32_t rate, int brski)
{
	memset(f, 0, sizeof(*f));
	f->cfg.server.rate_limit = rate;
	f->cfg.upstream.retry_default = 17;
	f->cfg.policy.pop = ESTGW_POP_OFF;
	f->cfg.policy.idevid_ops = NO_SREN;
	f->cfg.policy.ldevid_ops = ALL_OPS;
	f->cfg.policy.other_ops = ALL_OPS;
	f->px.code = EST_CODE(2, 4);
	f->px.cf = EST_CF_PKCS7_CERTS;
	f->pl = pipeline_new(&f->cfg, &f->px);
	assert_non_null(f->pl);
	if (brski)
		pipeline_set_brski(f->pl, &f->b);
	cur_px = &f->px;
	cur_b = &f->b;
	f->client = (struct pl_client){
		.name = "CN=device-001", .authenticated = 1,
		.cert = fx_cert_dev, .cert_len = sizeof(fx_cert_dev),
		.kind = ESTGW_CLIENT_OTHER, .tls_unique = tls_unique,
		.tls_unique_len = sizeof(tls_unique), .session = "sess-1",
	};
	f->now_ms = 1000000;
}

static void fix_done(struct fix *f)
{
	pipeline_free(f->pl);
}

/* A request for @p path ("/a/b", no query) with the given options. */
static struct pl_request req(struct fix *f, int method, const char *path,
			     int cf, int accept)
{
	struct pl_request rq = {
		.method = method, .cf = cf, .accept = accept,
		.now_ms = f->now_ms, .client = &f->client,
	};
	const char *p = path;

	while (*p == '/') {
		const char *s = ++p;

		while (*p && *p != '/')
			p++;
		if (rq.nseg < PL_MAX_SEGS)
			rq.segs[rq.nseg] = (struct est_slice){ (const uint8_t *)s, (size_t)(p - s) };
		rq.nseg++;
	}
	return rq;
}

#define GET(path) req(f, EST_GET, path, EST_CF_NONE, EST_CF_NONE)
#define POST(path, cf) req(f, EST_POST, path, cf, EST_CF_NONE)
#define SEN "/.well-known/est/sen"
#define SREN "/.well-known/est/sren"
#define CRTS "/.well-known/est/crts"
#define RV "/.well-known/brski/rv"
#define VS "/.well-known/brski/vs"
#define ES "/.well-known/brski/es"
#define CORE "/.well-known/core"

/* Admit @p rq; returns the refusal's code, 0 when admitted. */
static uint8_t admit(struct fix *f, const struct pl_request *rq,
		     struct pl_route *rt, struct proxy_outcome *out)
{
	int rc = pipeline_admit(f->pl, rq, rt, out);

	assert_true(rc == 0 || rc == 1);
	if (rc == 0)
		return 0;
	assert_int_not_equal(out->resp.code, 0);
	assert_non_null(out->resp.payload); /* a diagnostic for the device */
	return out->resp.code;
}

/* Admit and forget the answer; the code. */
static uint8_t code_of(struct fix *f, struct pl_request rq)
{
	struct pl_route rt;
	struct proxy_outcome out;
	uint8_t code = admit(f, &rq, &rt, &out);

	est_coap_resp_free(&out.resp);
	return code;
}

/* Admit and dispatch with @p body; the answer's code, 0 when pending. */
static uint8_t run(struct fix *f, struct pl_request rq, const uint8_t *body,
		   size_t len, struct pl_job *job)
{
	struct pl_route rt;
	struct proxy_outcome out;
	uint8_t code = admit(f, &rq, &rt, &out);
	int rc;

	if (code) {
		est_coap_resp_free(&out.resp);
		return code;
	}
	rc = pipeline_dispatch(f->pl, &rq, &rt, body, len, job, NULL, NULL, &out);
	assert_true(rc == 0 || rc == 1);
	if (rc == 0)
		return 0;
	code = out.resp.code;
	est_coap_resp_free(&out.resp);
	return code;
}

#define CSR(x) fx_##x, sizeof(fx_##x)

/* ---- step 1: shutting down --------------------------------------------- */

static void test_D1_shutting_down_5_03_max_age_before_anything(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	struct pl_route rt;
	struct proxy_outcome out;

	fix_init(f, 1, 1);
	pipeline_quiesce(f->pl);
	f->client.authenticated = 0; /* even before identity and route */
	struct pl_request rq = GET("/nowhere");
	assert_int_equal(admit(f, &rq, &rt, &out), EST_CODE(5, 3));
	assert_true(out.resp.has_max_age);
	assert_int_equal(out.resp.max_age, 17); /* [upstream] retry_default */
	assert_string_equal(out.note, "shutting down");
	est_coap_resp_free(&out.resp);
	fix_done(f);
}

/* ---- step 2: identity ---------------------------------------------------- */

static void test_G2_unauthenticated_4_01_before_route(void **state)
{
	struct fix fx = { 0 }, *f = &fx;

	fix_init(f, 0, 1);
	f->client.authenticated = 0;
	assert_int_equal(code_of(f, GET("/nowhere")), EST_CODE(4, 1));
	assert_int_equal(code_of(f, POST(RV, BRSKI_CF_VOUCHER_COSE)), EST_CODE(4, 1));
	struct pl_request rq = GET(CRTS);
	rq.client = NULL;
	assert_int_equal(code_of(f, rq), EST_CODE(4, 1));
	fix_done(f);
}

/* ---- step 3: route ------------------------------------------------------- */

static void test_A1_route_4_04(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	struct pl_route rt;
	struct proxy_outcome out;

	fix_init(f, 0, 0);
	assert_int_equal(code_of(f, GET("/nowhere")), EST_CODE(4, 4));
	assert_int_equal(code_of(f, GET("/.well-known/est/nope")), EST_CODE(4, 4));
	assert_int_equal(code_of(f, GET("/.well-known/est/a/b/c/d/e/f/g/crts")), EST_CODE(4, 4));
	assert_int_equal(code_of(f, GET("/")), EST_CODE(4, 4));
	/* cBRSKI only with [brski] enabled (H1) */
	assert_int_equal(code_of(f, POST(RV, BRSKI_CF_VOUCHER_COSE)), EST_CODE(4, 4));
	assert_int_equal(code_of(f, POST("/.well-known/brski/xx", BRSKI_CF_CBOR)), EST_CODE(4, 4));
	assert_int_equal(code_of(f, POST("/.well-known/brski/rv/x", BRSKI_CF_VOUCHER_COSE)),
			 EST_CODE(4, 4));
	fix_done(f);

	fix_init(f, 0, 1);
	struct pl_request rq = POST(ES, BRSKI_CF_CBOR);
	assert_int_equal(admit(f, &rq, &rt, &out), 0);
	assert_int_equal(rt.target, PL_BRSKI);
	assert_int_equal(rt.res, BRSKI_ES);
	rq = GET("/.well-known/est/lbl1/crts"); /* A2: a label */
	assert_int_equal(admit(f, &rq, &rt, &out), 0);
	assert_int_equal(rt.target, PL_EST);
	assert_int_equal(rt.est.op->op, EST_OP_CRTS);
	assert_string_equal(rt.est.label, "lbl1");
	assert_int_equal(rt.resp_cf, EST_CF_PKCS7_CERTS);
	rq = GET(CORE);
	assert_int_equal(admit(f, &rq, &rt, &out), 0);
	assert_int_equal(rt.target, PL_DISCOVERY);
	fix_done(f);
}

static void test_A1_extra_root(void **state)
{
	struct fix fx = { 0 }, *f = &fx;

	fix_init(f, 0, 0);
	assert_int_equal(code_of(f, GET("/est/crts")), EST_CODE(4, 4));
	f->cfg.server.root = "/est";
	assert_int_equal(pipeline_reload(f->pl, &f->cfg), 0);
	assert_int_equal(code_of(f, GET("/est/crts")), 0);
	assert_int_equal(code_of(f, GET(CRTS)), 0);
	fix_done(f);
}

/* ---- steps 4-6: method, Content-Format, Accept, in that order ------------ */

static void test_A6_method_4_05(void **state)
{
	struct fix fx = { 0 }, *f = &fx;

	fix_init(f, 0, 1);
	assert_int_equal(code_of(f, GET(SEN)), EST_CODE(4, 5));
	assert_int_equal(code_of(f, POST(CRTS, EST_CF_NONE)), EST_CODE(4, 5));
	assert_int_equal(code_of(f, GET(RV)), EST_CODE(4, 5));
	assert_int_equal(code_of(f, GET(VS)), EST_CODE(4, 5));
	assert_int_equal(code_of(f, req(f, EST_PUT, ES, BRSKI_CF_CBOR, EST_CF_NONE)),
			 EST_CODE(4, 5));
	assert_int_equal(code_of(f, POST(CORE, EST_CF_NONE)), EST_CODE(4, 5));
	assert_int_equal(code_of(f, req(f, EST_DELETE, CORE, EST_CF_NONE, EST_CF_NONE)),
			 EST_CODE(4, 5));
	fix_done(f);
}

static void test_B2_content_format_4_15(void **state)
{
	struct fix fx = { 0 }, *f = &fx;

	fix_init(f, 0, 1);
	assert_int_equal(code_of(f, POST(SEN, EST_CF_NONE)), EST_CODE(4, 15));
	assert_int_equal(code_of(f, POST(SEN, BRSKI_CF_CBOR)), EST_CODE(4, 15));
	assert_int_equal(code_of(f, POST(SEN, EST_CF_PKCS10)), 0);
	assert_int_equal(code_of(f, POST(RV, EST_CF_NONE)), EST_CODE(4, 15));
	assert_int_equal(code_of(f, POST(RV, BRSKI_CF_CBOR)), EST_CODE(4, 15));
	assert_int_equal(code_of(f, POST(RV, BRSKI_CF_VOUCHER_COSE)), 0);
	assert_int_equal(code_of(f, POST(VS, 0)), EST_CODE(4, 15));
	assert_int_equal(code_of(f, POST(ES, BRSKI_CF_VOUCHER_COSE)), EST_CODE(4, 15));
	assert_int_equal(code_of(f, POST(VS, BRSKI_CF_CBOR)), 0);
	assert_int_equal(code_of(f, POST(ES, BRSKI_CF_JSON)), 0);
	/* a GET's Content-Format is not looked at (B2) */
	assert_int_equal(code_of(f, req(f, EST_GET, CRTS, 0, EST_CF_NONE)), 0);
	assert_int_equal(code_of(f, req(f, EST_GET, CORE, 0, EST_CF_NONE)), 0);
	fix_done(f);
}

static void test_B3_accept_4_06(void **state)
{
	struct fix fx = { 0 }, *f = &fx;

	fix_init(f, 0, 1);
	assert_int_equal(code_of(f, req(f, EST_GET, CRTS, EST_CF_NONE, BRSKI_CF_CBOR)),
			 EST_CODE(4, 6));
	assert_int_equal(code_of(f, req(f, EST_GET, CRTS, EST_CF_NONE, EST_CF_PKIX_CERT)), 0);
	assert_int_equal(code_of(f, req(f, EST_POST, RV, BRSKI_CF_VOUCHER_COSE, BRSKI_CF_JSON)),
			 EST_CODE(4, 6));
	assert_int_equal(code_of(f, req(f, EST_POST, RV, BRSKI_CF_VOUCHER_COSE,
					BRSKI_CF_VOUCHER_COSE)), 0);
	assert_int_equal(code_of(f, req(f, EST_GET, CORE, EST_CF_NONE, BRSKI_CF_CBOR)),
			 EST_CODE(4, 6));
	assert_int_equal(code_of(f, req(f, EST_GET, CORE, EST_CF_NONE, EST_CF_LINK)), 0);
	/* vs/es answer with no payload: any Accept will do */
	assert_int_equal(code_of(f, req(f, EST_POST, VS, BRSKI_CF_CBOR, BRSKI_CF_JSON)), 0);
	fix_done(f);
}

static void test_order_method_then_cf_then_accept(void **state)
{
	struct fix fx = { 0 }, *f = &fx;

	fix_init(f, 0, 1);
	/* all three wrong: 4.05; method right: 4.15; both right: 4.06 */
	assert_int_equal(code_of(f, req(f, EST_GET, RV, 0, BRSKI_CF_JSON)), EST_CODE(4, 5));
	assert_int_equal(code_of(f, req(f, EST_POST, RV, 0, BRSKI_CF_JSON)), EST_CODE(4, 15));
	assert_int_equal(code_of(f, req(f, EST_GET, SEN, 0, BRSKI_CF_JSON)), EST_CODE(4, 5));
	assert_int_equal(code_of(f, req(f, EST_POST, SEN, 0, BRSKI_CF_JSON)), EST_CODE(4, 15));
	assert_int_equal(code_of(f, req(f, EST_POST, SEN, EST_CF_PKCS10, BRSKI_CF_JSON)),
			 EST_CODE(4, 6));
	/* the route before the options: an unknown path with bad options is 4.04 */
	assert_int_equal(code_of(f, req(f, EST_PUT, "/x", 0, 1)), EST_CODE(4, 4));
	fix_done(f);
}

/* ---- step 7: the rate limit (G9) ---------------------------------------- */

static void test_G9_every_path_4_29_max_age(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	const struct pl_request kinds[] = {
		POST(RV, BRSKI_CF_VOUCHER_COSE), POST(VS, BRSKI_CF_CBOR),
		POST(ES, BRSKI_CF_JSON), POST(SEN, EST_CF_PKCS10), GET(CRTS), GET(CORE),
	};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct pl_route rt;
		struct proxy_outcome out;

		fix_init(f, 2, 1);
		assert_int_equal(code_of(f, kinds[i]), 0);
		assert_int_equal(code_of(f, kinds[i]), 0);
		assert_int_equal(admit(f, &kinds[i], &rt, &out), EST_CODE(4, 29));
		assert_true(out.resp.has_max_age);
		assert_int_equal(out.resp.max_age, 30); /* 2 per minute: one every 30 s */
		assert_string_equal(out.note, "rate limit");
		est_coap_resp_free(&out.resp);
		fix_done(f);
	}
}

static void test_G9_est_and_brski_share_one_bucket(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	struct pl_client other;

	fix_init(f, 3, 1);
	assert_int_equal(code_of(f, POST(RV, BRSKI_CF_VOUCHER_COSE)), 0);
	assert_int_equal(code_of(f, POST(SEN, EST_CF_PKCS10)), 0);
	assert_int_equal(code_of(f, GET(CORE)), 0);
	assert_int_equal(code_of(f, POST(ES, BRSKI_CF_CBOR)), EST_CODE(4, 29));
	assert_int_equal(code_of(f, GET(CRTS)), EST_CODE(4, 29));
	/* another client certificate subject: its own bucket */
	other = f->client;
	other.name = "CN=pledge,serialNumber=TEST0001";
	f->client = other;
	assert_int_equal(code_of(f, GET(CRTS)), 0);
	assert_int_equal(code_of(f, POST(VS, BRSKI_CF_CBOR)), 0);
	/* a minute later the first client has its burst back */
	f->client.name = "CN=device-001";
	f->now_ms += 60000;
	assert_int_equal(code_of(f, POST(ES, BRSKI_CF_CBOR)), 0);
	fix_done(f);
}

static void test_G9_refusals_before_the_limit_not_counted(void **state)
{
	struct fix fx = { 0 }, *f = &fx;

	fix_init(f, 1, 1);
	assert_int_equal(code_of(f, GET("/nowhere")), EST_CODE(4, 4));
	assert_int_equal(code_of(f, GET(RV)), EST_CODE(4, 5));
	assert_int_equal(code_of(f, POST(SEN, EST_CF_NONE)), EST_CODE(4, 15));
	assert_int_equal(code_of(f, POST(RV, BRSKI_CF_VOUCHER_COSE)), 0);
	/* the limit before the target: over it, a bad path is still 4.04 but
	 * a good one is 4.29 */
	assert_int_equal(code_of(f, GET("/nowhere")), EST_CODE(4, 4));
	assert_int_equal(code_of(f, POST(VS, BRSKI_CF_CBOR)), EST_CODE(4, 29));
	fix_done(f);
}

static void test_G9_block1_continuation_not_counted(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	struct pl_request rq;

	fix_init(f, 1, 1);
	rq = POST(RV, BRSKI_CF_VOUCHER_COSE);
	assert_int_equal(code_of(f, rq), 0);      /* block 0: counted */
	rq.continuation = 1;
	assert_int_equal(code_of(f, rq), 0);      /* blocks 1, 2: part of it */
	assert_int_equal(code_of(f, rq), 0);
	rq.cf = BRSKI_CF_CBOR;                    /* still checked */
	assert_int_equal(code_of(f, rq), EST_CODE(4, 15));
	rq = POST(SEN, EST_CF_PKCS10);            /* a new request */
	assert_int_equal(code_of(f, rq), EST_CODE(4, 29));
	fix_done(f);
}

static void test_G9_reload_rate(void **state)
{
	struct fix fx = { 0 }, *f = &fx;

	fix_init(f, 0, 1);
	for (int i = 0; i < 5; i++)
		assert_int_equal(code_of(f, POST(VS, BRSKI_CF_CBOR)), 0);
	f->cfg.server.rate_limit = 1; /* a limit set: full buckets */
	assert_int_equal(pipeline_reload(f->pl, &f->cfg), 0);
	assert_int_equal(code_of(f, POST(VS, BRSKI_CF_CBOR)), 0);
	assert_int_equal(code_of(f, POST(VS, BRSKI_CF_CBOR)), EST_CODE(4, 29));
	f->cfg.server.rate_limit = 0; /* off again */
	assert_int_equal(pipeline_reload(f->pl, &f->cfg), 0);
	assert_int_equal(code_of(f, POST(VS, BRSKI_CF_CBOR)), 0);
	fix_done(f);
}

/* ---- step 8: policy (after the limit) ------------------------------------ */

static void test_G2_policy_4_03_not_dispatched(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	struct pl_job job;

	fix_init(f, 0, 1);
	f->client.kind = ESTGW_CLIENT_IDEVID; /* idevid_ops without sren */
	assert_int_equal(run(f, POST(SREN, EST_CF_PKCS10), CSR(csr_plain), &job),
			 EST_CODE(4, 3));
	assert_int_equal(f->px.submits, 0);
	assert_int_equal(run(f, POST(SEN, EST_CF_PKCS10), CSR(csr_plain), &job),
			 EST_CODE(2, 4));
	assert_int_equal(f->px.submits, 1);
	fix_done(f);
}

static void test_G4_policy_pop_4_01_not_dispatched(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	struct pl_job job;

	fix_init(f, 0, 1);
	f->cfg.policy.pop = ESTGW_POP_REQUIRED;
	assert_int_equal(run(f, POST(SEN, EST_CF_PKCS10), CSR(csr_wrong_pop), &job),
			 EST_CODE(4, 1));
	assert_int_equal(run(f, POST(SEN, EST_CF_PKCS10), CSR(csr_plain), &job),
			 EST_CODE(4, 1));
	f->client.tls_unique = NULL; /* no tls-unique from the session */
	assert_int_equal(run(f, POST(SEN, EST_CF_PKCS10), CSR(csr_pop), &job),
			 EST_CODE(4, 1));
	assert_int_equal(f->px.submits, 0);
	f->client.tls_unique = tls_unique;
	assert_int_equal(run(f, POST(SEN, EST_CF_PKCS10), CSR(csr_pop), &job),
			 EST_CODE(2, 4));
	assert_int_equal(f->px.submits, 1);
	fix_done(f);
}

static void test_G9_limit_before_policy(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	struct pl_job job;

	fix_init(f, 1, 1);
	f->client.kind = ESTGW_CLIENT_IDEVID;
	/* refused by the policy, yet counted: the limit came first */
	assert_int_equal(run(f, POST(SREN, EST_CF_PKCS10), CSR(csr_plain), &job),
			 EST_CODE(4, 3));
	assert_int_equal(run(f, POST(SEN, EST_CF_PKCS10), CSR(csr_plain), &job),
			 EST_CODE(4, 29));
	assert_int_equal(f->px.submits, 0);
	fix_done(f);
}

/* ---- step 9: dispatch ---------------------------------------------------- */

static int done_calls;
static uint8_t done_code;

static void on_done(void *arg, struct proxy_outcome *out)
{
	assert_ptr_equal(arg, &done_calls);
	done_calls++;
	done_code = out->resp.code;
	est_coap_resp_free(&out->resp);
}

static void finish(proxy_done_fn fn, void *arg, uint8_t code)
{
	struct proxy_outcome out;

	answer(&out, code, EST_CF_PKCS7_CERTS);
	fn(arg, &out);
}

static void test_dispatch_est_what_proxy_gets(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	struct pl_job job;

	fix_init(f, 0, 1);
	assert_int_equal(run(f, POST(SEN, EST_CF_PKCS10), CSR(csr_plain), &job), EST_CODE(2, 4));
	assert_int_equal(f->px.last_op, EST_OP_SEN);
	assert_int_equal(f->px.last.resp_cf, EST_CF_PKCS7_CERTS);
	assert_string_equal(f->px.last_client, "CN=device-001");
	assert_int_equal(f->px.last_len, sizeof(fx_csr_plain));
	/* a GET carries no body upstream */
	assert_int_equal(run(f, GET(CRTS), CSR(csr_plain), &job), EST_CODE(2, 4));
	assert_int_equal(f->px.last_len, 0);
	assert_int_equal(f->b.submits, 0);
	fix_done(f);
}

static void test_dispatch_est_pending_done_and_cancel(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	struct pl_request rq;
	struct pl_route rt;
	struct pl_job job;
	struct proxy_outcome out;

	fix_init(f, 0, 1);
	f->px.pending = 1;
	rq = POST(SEN, EST_CF_PKCS10);
	assert_int_equal(admit(f, &rq, &rt, &out), 0);
	assert_int_equal(pipeline_dispatch(f->pl, &rq, &rt, CSR(csr_plain), &job, on_done,
					   &done_calls, &out), 0);
	assert_ptr_equal(job.wait, &the_wait);
	done_calls = 0;
	finish(f->px.fn, f->px.arg, EST_CODE(2, 4));
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_code, EST_CODE(2, 4));
	assert_null(job.wait);
	assert_int_equal(f->b.enrolled, 1); /* the issued certificate told to brski.c */
	pipeline_cancel(&job);              /* done: nothing to cancel */
	assert_int_equal(f->px.cancels, 0);

	assert_int_equal(pipeline_dispatch(f->pl, &rq, &rt, CSR(csr_plain), &job, on_done,
					   &done_calls, &out), 0);
	pipeline_cancel(&job);
	assert_int_equal(f->px.cancels, 1);
	assert_null(job.wait);
	pipeline_cancel(&job);
	assert_int_equal(f->px.cancels, 1);
	fix_done(f);
}

static void test_dispatch_enrolled_only_for_issued_certificates(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	struct pl_job job;

	fix_init(f, 0, 1);
	assert_int_equal(run(f, POST(SEN, EST_CF_PKCS10), CSR(csr_plain), &job), EST_CODE(2, 4));
	assert_int_equal(run(f, POST(SREN, EST_CF_PKCS10), CSR(csr_plain), &job), EST_CODE(2, 4));
	assert_int_equal(f->b.enrolled, 2);
	assert_int_equal(run(f, GET(CRTS), NULL, 0, &job), EST_CODE(2, 4));
	f->px.code = EST_CODE(5, 3);
	assert_int_equal(run(f, POST(SEN, EST_CF_PKCS10), CSR(csr_plain), &job), EST_CODE(5, 3));
	assert_int_equal(f->b.enrolled, 2);
	fix_done(f);
	fix_init(f, 0, 0); /* no brski: nobody to tell */
	assert_int_equal(run(f, POST(SEN, EST_CF_PKCS10), CSR(csr_plain), &job), EST_CODE(2, 4));
	assert_int_equal(f->b.enrolled, 0);
	fix_done(f);
}

static void test_dispatch_brski_what_brski_gets(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	struct pl_request rq;
	struct pl_route rt;
	struct pl_job job;
	struct proxy_outcome out;
	static const uint8_t pvr[] = { 0xd2, 0x84, 0x43 };

	fix_init(f, 0, 1);
	rq = req(f, EST_POST, RV, BRSKI_CF_VOUCHER_COSE, BRSKI_CF_VOUCHER_COSE);
	assert_int_equal(run(f, rq, pvr, sizeof(pvr), &job), EST_CODE(2, 4));
	assert_int_equal(f->b.submits, 1);
	assert_int_equal(f->b.last.res, BRSKI_RV);
	assert_int_equal(f->b.last.method, EST_POST);
	assert_int_equal(f->b.last.cf, BRSKI_CF_VOUCHER_COSE);
	assert_int_equal(f->b.last.accept, BRSKI_CF_VOUCHER_COSE);
	assert_ptr_equal(f->b.last.body, pvr);
	assert_int_equal(f->b.last.len, sizeof(pvr));
	assert_ptr_equal(f->b.last.peer, fx_cert_dev);
	assert_int_equal(f->b.last.peer_len, sizeof(fx_cert_dev));
	assert_string_equal(f->b.last.session, "sess-1");
	assert_int_equal(f->px.submits, 0);
	/* pending: the MASA exchange; cancelled through brski_cancel */
	f->b.pending = 1;
	assert_int_equal(admit(f, &rq, &rt, &out), 0);
	assert_int_equal(pipeline_dispatch(f->pl, &rq, &rt, pvr, sizeof(pvr), &job, on_done,
					   &done_calls, &out), 0);
	assert_ptr_equal(job.bwait, &the_bwait);
	pipeline_cancel(&job);
	assert_int_equal(f->b.cancels, 1);
	assert_int_equal(pipeline_dispatch(f->pl, &rq, &rt, pvr, sizeof(pvr), &job, on_done,
					   &done_calls, &out), 0);
	done_calls = 0;
	finish(f->b.fn, f->b.arg, EST_CODE(2, 4));
	assert_int_equal(done_calls, 1);
	assert_null(job.bwait);
	assert_int_equal(f->b.enrolled, 0); /* a voucher is no certificate */
	fix_done(f);
}

/* The discovery answer for @p q (NULL: no query). */
static char *listing(struct fix *f, const char *q)
{
	struct pl_request rq = GET(CORE);
	struct pl_route rt;
	struct pl_job job;
	struct proxy_outcome out;
	char *text;

	if (q) {
		rq.queries[0] = (struct est_slice){ (const uint8_t *)q, strlen(q) };
		rq.nquery = 1;
	}
	assert_int_equal(admit(f, &rq, &rt, &out), 0);
	assert_int_equal(pipeline_dispatch(f->pl, &rq, &rt, NULL, 0, &job, NULL, NULL, &out), 1);
	assert_int_equal(out.resp.code, EST_CODE(2, 5));
	assert_int_equal(out.resp.cf, EST_CF_LINK);
	text = calloc(1, out.resp.len + 1);
	memcpy(text, out.resp.payload, out.resp.len);
	est_coap_resp_free(&out.resp);
	return text;
}

static void test_A3_discovery(void **state)
{
	struct fix fx = { 0 }, *f = &fx;
	char *t;

	fix_init(f, 0, 0);
	t = listing(f, NULL);
	assert_non_null(strstr(t, "</.well-known/est>;rt=\"ace.est\""));
	assert_non_null(strstr(t, "ace.est.skg"));
	assert_non_null(strstr(t, "ace.est.att"));
	assert_null(strstr(t, "brski"));
	free(t);
	f->px.missing = 1u << EST_OP_ATT; /* the EST server answered 404 */
	f->cfg.server.serverkeygen = ESTGW_SKG_OFF;
	t = listing(f, NULL);
	assert_null(strstr(t, "ace.est.att"));
	assert_null(strstr(t, "ace.est.skg"));
	assert_non_null(strstr(t, "ace.est.sen"));
	free(t);
	pipeline_set_brski(f->pl, &f->b); /* H1 */
	t = listing(f, "rt=brski*");
	assert_non_null(strstr(t, "</.well-known/brski/rv>"));
	assert_null(strstr(t, "ace.est"));
	free(t);
	assert_int_equal(f->px.submits + f->b.submits, 0);
	fix_done(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_D1_shutting_down_5_03_max_age_before_anything),
		cmocka_unit_test(test_G2_unauthenticated_4_01_before_route),
		cmocka_unit_test(test_A1_route_4_04),
		cmocka_unit_test(test_A1_extra_root),
		cmocka_unit_test(test_A6_method_4_05),
		cmocka_unit_test(test_B2_content_format_4_15),
		cmocka_unit_test(test_B3_accept_4_06),
		cmocka_unit_test(test_order_method_then_cf_then_accept),
		cmocka_unit_test(test_G9_every_path_4_29_max_age),
		cmocka_unit_test(test_G9_est_and_brski_share_one_bucket),
		cmocka_unit_test(test_G9_refusals_before_the_limit_not_counted),
		cmocka_unit_test(test_G9_block1_continuation_not_counted),
		cmocka_unit_test(test_G9_reload_rate),
		cmocka_unit_test(test_G2_policy_4_03_not_dispatched),
		cmocka_unit_test(test_G4_policy_pop_4_01_not_dispatched),
		cmocka_unit_test(test_G9_limit_before_policy),
		cmocka_unit_test(test_dispatch_est_what_proxy_gets),
		cmocka_unit_test(test_dispatch_est_pending_done_and_cancel),
		cmocka_unit_test(test_dispatch_enrolled_only_for_issued_certificates),
		cmocka_unit_test(test_dispatch_brski_what_brski_gets),
		cmocka_unit_test(test_A3_discovery),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
