/* test_brski_pipeline.c - brski.c's rv pipeline end to end over a fake
 * transport: the PVR checks, the RVR sent, the MASA's answer mapped and
 * handed to every waiting pledge, kept vouchers and 202s, the limit,
 * cancel and shutdown, all without sockets. The fake takes the place of
 * upstream.c's upstream_send_opts / upstream_cancel (this test does not
 * link upstream.c); the test completes each MASA exchange by hand.
 * Objects: fixtures/mk_brski_pipeline.sh (the cBRSKI test PKI, PVRs and a
 * voucher made by the Python test code).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/brski.h"
#include "ops/metrics.h"
#include "upstream/upstream.h"

/* ---- the fake transport ------------------------------------------------- */

struct upstream_xfer {
	upstream_cb cb;
	void *arg;
	struct upstream_xfer *next;
};

struct upstream {
	struct upstream_xfer *live;
	int started, cancelled;
	char url[256], content_type[64], accept[64];
	uint8_t body[8192];
	size_t body_len;
	uint32_t timeout;
	char certificate[256];
};

static struct upstream fake;

struct upstream_xfer *upstream_send_opts(struct upstream *up, const struct est_http_req *req,
					 const struct upstream_opts *o, upstream_cb cb, void *arg)
{
	struct upstream_xfer *x = calloc(1, sizeof(*x));

	assert_non_null(x);
	assert_non_null(o);
	x->cb = cb;
	x->arg = arg;
	x->next = up->live;
	up->live = x;
	up->started++;
	snprintf(up->url, sizeof(up->url), "%s", req->url);
	snprintf(up->content_type, sizeof(up->content_type), "%s", req->content_type);
	snprintf(up->accept, sizeof(up->accept), "%s", o->accept ? o->accept : "");
	snprintf(up->certificate, sizeof(up->certificate), "%s", o->certificate);
	assert_int_equal(req->method, EST_POST);
	assert_true(req->body_len <= sizeof(up->body));
	memcpy(up->body, req->body, req->body_len);
	up->body_len = req->body_len;
	up->timeout = o->timeout;
	return x;
}

static void unlink_xfer(struct upstream_xfer *x)
{
	for (struct upstream_xfer **pp = &fake.live; *pp; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			return;
		}
	fail_msg("not a live transfer");
}

void upstream_cancel(struct upstream_xfer *x)
{
	unlink_xfer(x);
	fake.cancelled++;
	free(x);
}

/* The MASA answers the newest exchange. */
static void masa_answers(long status, const char *ct, const char *retry_after,
			 const void *body, size_t len)
{
	struct upstream_xfer *x = fake.live;
	struct upstream_result r = {
		.err = EST_UP_OK, .status = status, .content_type = ct,
		.retry_after = retry_after, .body = body, .body_len = len,
	};

	assert_non_null(x);
	unlink_xfer(x);
	x->cb(x->arg, &r);
	free(x);
}

/* ---- fixtures ----------------------------------------------------------- */

struct blob {
	uint8_t *p;
	size_t n;
};

static char dir[512];
static struct blob pvr1, pvr2, voucher1, stripped1, pledge;

static void load(const char *name, struct blob *b)
{
	char path[700];
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	b->p = malloc((size_t)n);
	assert_non_null(b->p);
	assert_int_equal(fread(b->p, 1, (size_t)n, f), (size_t)n);
	b->n = (size_t)n;
	fclose(f);
}

static char *path_of(const char *name)
{
	char *p = malloc(strlen(dir) + strlen(name) + 2);

	assert_non_null(p);
	sprintf(p, "%s/%s", dir, name);
	return p;
}

static struct {
	struct event_base *base;
	struct estgw_config cfg;
	struct brski *b;
} fx;

static int group_setup(void **state)
{
	const char *stamp = getenv("BRSKI_PIPELINE_PKI");
	FILE *f;

	assert_non_null(stamp);
	f = fopen(stamp, "r");
	assert_non_null(f);
	assert_non_null(fgets(dir, sizeof(dir), f));
	fclose(f);
	dir[strcspn(dir, "\n")] = '\0';
	load("pvr1.bin", &pvr1);
	load("pvr2.bin", &pvr2);
	load("voucher1.bin", &voucher1);
	load("voucher1_stripped.bin", &stripped1);
	load("pledge.der", &pledge);
	return 0;
}

static int group_teardown(void **state)
{
	free(pvr1.p);
	free(pvr2.p);
	free(voucher1.p);
	free(stripped1.p);
	free(pledge.p);
	return 0;
}

static int setup(void **state)
{
	struct estgw_config *c = &fx.cfg;

	memset(&fx, 0, sizeof(fx));
	memset(&fake, 0, sizeof(fake));
	metrics_reset();
	c->server.certificate = path_of("registrar-chain.crt");
	c->server.private_key = path_of("registrar.key");
	c->brski.enabled = 1;
	c->brski.manufacturer_trust = path_of("bmfg-ca.crt");
	c->brski.masa_trust = path_of("masa-tls-ca.crt");
	c->brski.masa_url = strdup("https://masa.example:8443");
	c->brski.masa_timeout = 30;
	c->brski.max_pending = 1;
	c->upstream.retry_default = 60;
	c->upstream.max_age_min = 1;
	c->upstream.max_age_max = 86400;
	fx.base = event_base_new();
	assert_non_null(fx.base);
	fx.b = brski_new(fx.base, &fake, c);
	assert_non_null(fx.b);
	return 0;
}

static int teardown(void **state)
{
	brski_free(fx.b);
	assert_null(fake.live); /* cancelled what was in flight */
	event_base_free(fx.base);
	free(fx.cfg.server.certificate);
	free(fx.cfg.server.private_key);
	free(fx.cfg.brski.manufacturer_trust);
	free(fx.cfg.brski.masa_trust);
	free(fx.cfg.brski.masa_url);
	for (size_t i = 0; i < fx.cfg.brski.nmfr; i++) {
		free(fx.cfg.brski.mfr[i].ca);
		free(fx.cfg.brski.mfr[i].masa_url);
	}
	memset(&fx.cfg, 0, sizeof(fx.cfg));
	return 0;
}

/* ---- pledges ------------------------------------------------------------ */

struct pledge_rec {
	int calls;
	struct proxy_outcome out;
};

static void on_answer(void *arg, struct proxy_outcome *out)
{
	struct pledge_rec *p = arg;

	p->calls++;
	est_coap_resp_free(&p->out.resp);
	p->out = *out;
}

/* rv from a pledge whose IDevID the DTLS verifier found under manufacturer
 * line @p mfr (brski_request.mfr: the test gives it directly). */
static enum proxy_rc rv_from(int mfr, int expired, const struct blob *pvr,
			     struct pledge_rec *p, struct xchg_wait **w,
			     struct proxy_outcome *now)
{
	struct brski_request rq = {
		.res = BRSKI_RV, .method = EST_POST, .cf = BRSKI_CF_VOUCHER_COSE,
		.accept = BRSKI_CF_VOUCHER_COSE, .body = pvr->p, .len = pvr->n,
		.peer = pledge.p, .peer_len = pledge.n, .mfr = mfr,
		.cert_expired = expired, .session = "test",
	};
	memset(now, 0, sizeof(*now));
	return brski_submit(fx.b, &rq, on_answer, p, w, now);
}

/* rv from a pledge under [brski] manufacturer_trust. */
static enum proxy_rc rv(const struct blob *pvr, struct pledge_rec *p, struct xchg_wait **w,
			struct proxy_outcome *now)
{
	return rv_from(BRSKI_MFR_GENERIC, 0, pvr, p, w, now);
}

static void expect_voucher(const struct proxy_outcome *o)
{
	assert_int_equal(o->resp.code, EST_CODE(2, 4));
	assert_int_equal(o->resp.cf, BRSKI_CF_VOUCHER_COSE);
	assert_int_equal(o->resp.len, stripped1.n);
	assert_memory_equal(o->resp.payload, stripped1.p, stripped1.n);
	assert_int_equal(o->upstream_status, 200);
}

static int contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (memcmp(hay + i, needle, m) == 0)
			return 1;
	return 0;
}

static void expect_metric(const char *line)
{
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(metrics_render(0, &text, &len), 0);
	if (!strstr(text, line))
		fail_msg("not in /metrics: %s\n%s", line, text);
	free(text);
}

/* ---- the cases ---------------------------------------------------------- */

static void test_H2_pipeline_voucher_round_trip_then_kept(void **state)
{
	struct pledge_rec p = { 0 };
	struct proxy_outcome now;
	struct xchg_wait *w;

	assert_int_equal(rv(&pvr1, &p, &w, &now), PROXY_PENDING);
	assert_non_null(w);
	assert_int_equal(fake.started, 1);
	/* the RVR: POSTed to the MASA's requestvoucher, COSE_Sign1 (tag 18),
	 * the PVR inside as prior-signed-voucher-request */
	assert_string_equal(fake.url, "https://masa.example:8443/.well-known/brski/requestvoucher");
	assert_string_equal(fake.content_type, "application/voucher+cose");
	assert_string_equal(fake.accept, "application/voucher+cose");
	assert_string_equal(fake.certificate, fx.cfg.server.certificate);
	assert_int_equal(fake.timeout, 30);
	assert_int_equal(fake.body[0], 0xd2);
	assert_true(contains(fake.body, fake.body_len, pvr1.p, pvr1.n));
	assert_true(contains(fake.body, fake.body_len, pledge.p, pledge.n)); /* x5bag */
	masa_answers(200, "application/voucher+cose", NULL, voucher1.p, voucher1.n);
	assert_int_equal(p.calls, 1);
	expect_voucher(&p.out);
	assert_string_equal(p.out.note, "voucher for TEST0001");
	/* the same PVR again: the kept voucher, at once, no second exchange */
	assert_int_equal(rv(&pvr1, &p, &w, &now), PROXY_ANSWERED);
	assert_null(w);
	expect_voucher(&now);
	assert_string_equal(now.note, "voucher kept for this PVR");
	assert_int_equal(fake.started, 1);
	est_coap_resp_free(&now.resp);
	est_coap_resp_free(&p.out.resp);
	expect_metric("estgw_brski_requests_total{resource=\"rv\",result=\"sent\"} 1");
	expect_metric("estgw_brski_requests_total{resource=\"rv\",result=\"kept\"} 1");
	expect_metric("estgw_brski_masa_answers_total{result=\"voucher\"} 1");
	assert_int_equal(brski_get_stats(fx.b)->rv_voucher, 1);
}

static void test_H2_pipeline_resend_in_flight_joins(void **state)
{
	struct pledge_rec a = { 0 }, b = { 0 };
	struct proxy_outcome now;
	struct xchg_wait *wa, *wb;

	assert_int_equal(rv(&pvr1, &a, &wa, &now), PROXY_PENDING);
	assert_int_equal(rv(&pvr1, &b, &wb, &now), PROXY_PENDING);
	assert_ptr_not_equal(wa, wb);
	assert_int_equal(fake.started, 1);
	masa_answers(200, "application/voucher+cose", NULL, voucher1.p, voucher1.n);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	expect_voucher(&a.out);
	expect_voucher(&b.out); /* each its own copy */
	assert_ptr_not_equal(a.out.resp.payload, b.out.resp.payload);
	est_coap_resp_free(&a.out.resp);
	est_coap_resp_free(&b.out.resp);
	assert_int_equal(brski_get_stats(fx.b)->rv_joined, 1);
}

static void test_H5_pipeline_202_kept_with_the_time_left(void **state)
{
	struct pledge_rec p = { 0 };
	struct proxy_outcome now;
	struct xchg_wait *w;

	assert_int_equal(rv(&pvr1, &p, &w, &now), PROXY_PENDING);
	masa_answers(202, "text/plain", "30", "later", 5);
	assert_int_equal(p.out.resp.code, EST_CODE(5, 3));
	assert_int_equal(p.out.resp.max_age, 30);
	assert_int_equal(p.out.upstream_status, 202);
	est_coap_resp_free(&p.out.resp);
	assert_int_equal(rv(&pvr1, &p, &w, &now), PROXY_ANSWERED);
	assert_int_equal(now.resp.code, EST_CODE(5, 3));
	assert_true(now.resp.has_max_age);
	assert_in_range(now.resp.max_age, 28, 30); /* what is left of the 30 s */
	assert_int_equal(now.upstream_status, 202);
	assert_string_equal(now.note, "waiting for the MASA (202 kept)");
	assert_int_equal(fake.started, 1);
	est_coap_resp_free(&now.resp);
	expect_metric("estgw_brski_masa_answers_total{result=\"pending\"} 1");
}

static void test_H5_pipeline_error_not_kept_resend_asks_again(void **state)
{
	struct pledge_rec p = { 0 };
	struct proxy_outcome now;
	struct xchg_wait *w;

	assert_int_equal(rv(&pvr1, &p, &w, &now), PROXY_PENDING);
	masa_answers(404, "text/plain", NULL, "unknown \"device\"", 16);
	assert_int_equal(p.out.resp.code, EST_CODE(4, 4));
	assert_string_equal((char *)p.out.resp.payload, "MASA: unknown ?device?");
	assert_string_equal(p.out.note, "MASA: unknown ?device?");
	est_coap_resp_free(&p.out.resp);
	assert_int_equal(rv(&pvr1, &p, &w, &now), PROXY_PENDING);
	assert_int_equal(fake.started, 2);
	masa_answers(500, NULL, NULL, NULL, 0);
	assert_int_equal(p.out.resp.code, EST_CODE(5, 2));
	est_coap_resp_free(&p.out.resp);
	expect_metric("estgw_brski_masa_answers_total{result=\"refused\"} 1");
	expect_metric("estgw_brski_masa_answers_total{result=\"error\"} 1");
	expect_metric("estgw_upstream_exchanges_total{op=\"requestvoucher\",status=\"404\"} 1");
}

static void test_H5_pipeline_voucher_for_another_request_5_02(void **state)
{
	struct pledge_rec p = { 0 };
	struct proxy_outcome now;
	struct xchg_wait *w;

	/* pvr2 has another nonce: voucher1 is not its voucher */
	assert_int_equal(rv(&pvr2, &p, &w, &now), PROXY_PENDING);
	masa_answers(200, "application/voucher+cose", NULL, voucher1.p, voucher1.n);
	assert_int_equal(p.out.resp.code, EST_CODE(5, 2));
	assert_string_equal((char *)p.out.resp.payload,
			    "voucher nonce or serial-number does not match the request");
	est_coap_resp_free(&p.out.resp);
}

static void test_H5_pipeline_max_pending_busy(void **state)
{
	struct pledge_rec a = { 0 }, b = { 0 };
	struct proxy_outcome now;
	struct xchg_wait *w;

	assert_int_equal(rv(&pvr1, &a, &w, &now), PROXY_PENDING);
	assert_int_equal(rv(&pvr2, &b, &w, &now), PROXY_ANSWERED); /* max_pending 1 */
	assert_int_equal(now.resp.code, EST_CODE(5, 3));
	assert_int_equal(now.resp.max_age, 60);
	assert_string_equal(now.note, "registrar busy");
	assert_int_equal(fake.started, 1);
	est_coap_resp_free(&now.resp);
	expect_metric("estgw_brski_requests_total{resource=\"rv\",result=\"busy\"} 1");
}

static void test_H5_pipeline_refused_pvr_never_sent(void **state)
{
	struct pledge_rec p = { 0 };
	struct blob junk = { (uint8_t *)"\xd2\x84\x43\xa1", 4 };
	struct proxy_outcome now;
	struct xchg_wait *w;

	assert_int_equal(rv(&junk, &p, &w, &now), PROXY_ANSWERED);
	assert_int_equal(now.resp.code, EST_CODE(4, 0));
	assert_int_equal(fake.started, 0);
	est_coap_resp_free(&now.resp);
	expect_metric("estgw_brski_requests_total{resource=\"rv\",result=\"refused\"} 1");
}

static void test_H2_pipeline_cancelled_pledge_voucher_still_kept(void **state)
{
	struct pledge_rec p = { 0 };
	struct proxy_outcome now;
	struct xchg_wait *w;

	assert_int_equal(rv(&pvr1, &p, &w, &now), PROXY_PENDING);
	brski_cancel(w); /* the pledge's request went away */
	masa_answers(200, "application/voucher+cose", NULL, voucher1.p, voucher1.n);
	assert_int_equal(p.calls, 0);
	assert_int_equal(rv(&pvr1, &p, &w, &now), PROXY_ANSWERED);
	expect_voucher(&now);
	est_coap_resp_free(&now.resp);
}

static void test_H2_pipeline_shutdown_with_an_exchange_in_flight(void **state)
{
	struct pledge_rec p = { 0 };
	struct proxy_outcome now;
	struct xchg_wait *w;

	assert_int_equal(rv(&pvr1, &p, &w, &now), PROXY_PENDING);
	brski_cancel(w);
	brski_free(fx.b);
	fx.b = NULL;
	assert_int_equal(fake.cancelled, 1);
	assert_int_equal(p.calls, 0);
}

/* The DTLS verifier found no manufacturer (an LDevID, another CA): 4.03,
 * nothing sent; an index past the configured lines is no manufacturer. */
static void test_H2_pipeline_no_manufacturer_4_03(void **state)
{
	const int mfrs[] = { BRSKI_MFR_NONE, 0, 7 };
	struct pledge_rec p = { 0 };
	struct proxy_outcome now;
	struct xchg_wait *w;

	for (size_t i = 0; i < sizeof(mfrs) / sizeof(mfrs[0]); i++) {
		assert_int_equal(rv_from(mfrs[i], 0, &pvr1, &p, &w, &now), PROXY_ANSWERED);
		assert_int_equal(now.resp.code, EST_CODE(4, 3));
		assert_string_equal(now.note, "client certificate is not an IDevID of a "
				    "configured manufacturer");
		est_coap_resp_free(&now.resp);
	}
	assert_int_equal(fake.started, 0);
}

/* G3: an expired IDevID the handshake let through may only use sen. */
static void test_G3_pipeline_expired_idevid_rv_4_03(void **state)
{
	struct pledge_rec p = { 0 };
	struct proxy_outcome now;
	struct xchg_wait *w;

	assert_int_equal(rv_from(BRSKI_MFR_GENERIC, 1, &pvr1, &p, &w, &now), PROXY_ANSWERED);
	assert_int_equal(now.resp.code, EST_CODE(4, 3));
	assert_string_equal(now.note, "an expired IDevID may only enroll (sen)");
	assert_int_equal(fake.started, 0);
	est_coap_resp_free(&now.resp);
}

/* The line the DTLS verifier names selects its MASA; the generic bundle
 * keeps [brski]'s. */
static void test_H2_pipeline_manufacturer_line_selects_its_masa(void **state)
{
	struct estgw_brski_mfr *m = &fx.cfg.brski.mfr[1];
	struct pledge_rec p = { 0 }, q = { 0 };
	struct proxy_outcome now;
	struct xchg_wait *w;

	brski_free(fx.b);
	fx.cfg.brski.nmfr = 2;
	fx.cfg.brski.mfr[0].ca = path_of("bmfg-ca.crt");
	m->ca = path_of("bmfg-ca.crt");
	m->masa_url = strdup("https://line.example:9443");
	fx.cfg.brski.max_pending = 2;
	fx.b = brski_new(fx.base, &fake, &fx.cfg);
	assert_non_null(fx.b);
	assert_int_equal(rv_from(1, 0, &pvr1, &p, &w, &now), PROXY_PENDING);
	assert_string_equal(fake.url, "https://line.example:9443/.well-known/brski/requestvoucher");
	assert_int_equal(rv_from(BRSKI_MFR_GENERIC, 0, &pvr2, &q, &w, &now), PROXY_PENDING);
	assert_string_equal(fake.url, "https://masa.example:8443/.well-known/brski/requestvoucher");
	assert_int_equal(fake.started, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_H2_pipeline_voucher_round_trip_then_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_H2_pipeline_resend_in_flight_joins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_H5_pipeline_202_kept_with_the_time_left, setup, teardown),
		cmocka_unit_test_setup_teardown(test_H5_pipeline_error_not_kept_resend_asks_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_H5_pipeline_voucher_for_another_request_5_02, setup, teardown),
		cmocka_unit_test_setup_teardown(test_H5_pipeline_max_pending_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_H5_pipeline_refused_pvr_never_sent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_H2_pipeline_cancelled_pledge_voucher_still_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_H2_pipeline_shutdown_with_an_exchange_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_H2_pipeline_no_manufacturer_4_03, setup, teardown),
		cmocka_unit_test_setup_teardown(test_G3_pipeline_expired_idevid_rv_4_03, setup, teardown),
		cmocka_unit_test_setup_teardown(test_H2_pipeline_manufacturer_line_selects_its_masa, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
