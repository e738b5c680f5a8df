/* test_exchange.c - the exchange engine (src/core/exchange.c) over a fake
 * transport: the test starts nothing on the network and completes each
 * exchange by hand, so every state change and callback order is checked
 * without sockets. A real libevent base runs the engine's own events (the
 * queue drain, the answer_within timers); the clocks are the test's. The
 * shared store ([cluster], K1) is a fake too: the test gives each claim its
 * verdict by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/exchange.h"

/* ---- the fake transport ------------------------------------------------- */

struct upstream_xfer {
	struct upstream *up;
	upstream_cb cb;
	void *arg;
	char url[64];
	struct upstream_xfer *next;
};

struct upstream {
	struct upstream_xfer *live; /* started, oldest first */
	int started, cancelled;
	int refuse;                 /* start returns NULL */
	int refuse_after;           /* > 0: refuse once this many started */
	char order[64][64];         /* URLs in the order they were started */
};

static struct upstream_xfer *fake_start(struct upstream *up,
					const struct est_http_req *req,
					const struct upstream_opts *o,
					upstream_cb cb, void *arg)
{
	struct upstream_xfer *x, **pp;

	if (up->refuse || (up->refuse_after && up->started >= up->refuse_after))
		return NULL;
	x = calloc(1, sizeof(*x));
	assert_non_null(x);
	x->up = up;
	x->cb = cb;
	x->arg = arg;
	snprintf(x->url, sizeof(x->url), "%s", req->url ? req->url : "");
	if (up->started < 64)
		snprintf(up->order[up->started], sizeof(up->order[0]), "%s", x->url);
	up->started++;
	for (pp = &up->live; *pp; pp = &(*pp)->next)
		;
	*pp = x;
	return x;
}

static void unlink_xfer(struct upstream_xfer *x)
{
	for (struct upstream_xfer **pp = &x->up->live; *pp; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			return;
		}
	fail_msg("transfer not live");
}

static void fake_cancel(struct upstream_xfer *x)
{
	unlink_xfer(x);
	x->up->cancelled++;
	free(x);
}

/* Complete the oldest live transfer with HTTP @p status and @p body. */
static void complete(struct upstream *up, long status, const char *body)
{
	struct upstream_xfer *x = up->live;
	struct upstream_result r = {
		.err = EST_UP_OK,
		.status = status,
		.body = (const uint8_t *)body,
		.body_len = body ? strlen(body) : 0,
	};

	assert_non_null(x);
	unlink_xfer(x);
	x->cb(x->arg, &r);
	free(x);
}

/* ---- the fake store (K1) -------------------------------------------------- */

struct store_op {
	store_claim_fn fn;
	void *arg;
	struct store_op *next;
};

struct estgw_store {
	struct store_op *pending; /* claims without a verdict, oldest first */
	int down;                 /* claim returns NULL: the store is down now */
	int claims, cancels, publishes, releases;
	struct store_answer pub;  /* the last answer published */
	char pub_body[64];
	uint8_t pub_key[STORE_KEY_LEN];
};

static struct store_op *fake_claim(struct estgw_store *s, const uint8_t key[STORE_KEY_LEN],
				   store_claim_fn fn, void *arg)
{
	struct store_op *op, **pp;

	(void)key;
	if (s->down)
		return NULL;
	op = calloc(1, sizeof(*op));
	assert_non_null(op);
	op->fn = fn;
	op->arg = arg;
	for (pp = &s->pending; *pp; pp = &(*pp)->next)
		;
	*pp = op;
	s->claims++;
	return op;
}

static void unlink_op(struct estgw_store *s, struct store_op *op)
{
	for (struct store_op **pp = &s->pending; *pp; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			return;
		}
	fail_msg("store op not pending");
}

static struct estgw_store fake_st;

static void fake_store_cancel(struct store_op *op)
{
	unlink_op(&fake_st, op);
	fake_st.cancels++;
	free(op);
}

static void fake_publish(struct estgw_store *s, const uint8_t key[STORE_KEY_LEN],
			 const struct store_answer *a)
{
	memcpy(s->pub_key, key, STORE_KEY_LEN);
	if (!a) {
		s->releases++;
		return;
	}
	s->publishes++;
	s->pub = *a;
	snprintf(s->pub_body, sizeof(s->pub_body), "%.*s", (int)a->len, (const char *)a->body);
	s->pub.body = NULL; /* valid during the call only */
	s->pub.content_type = NULL;
}

static const struct store_ops fake_store_ops = {
	.claim = fake_claim, .cancel = fake_store_cancel, .publish = fake_publish,
};
static const struct store_if fake_store_if = { &fake_store_ops, &fake_st };

/* The verdict for the oldest pending claim (@p body: the stored answer). */
static void store_reply(enum store_verdict v, const char *body)
{
	struct store_op *op = fake_st.pending;
	struct store_answer a = {
		.status = 200, .content_type = "application/pkcs7-mime",
		.body = (const uint8_t *)body, .len = body ? strlen(body) : 0, .ttl = 300,
	};

	assert_non_null(op);
	unlink_op(&fake_st, op);
	op->fn(op->arg, v, v == STORE_ANSWER ? &a : NULL);
	free(op);
}

/* ---- the owner: hooks that record ---------------------------------------- */

static struct fixture {
	struct event_base *base;
	struct upstream up;
	struct xchg_engine *e;
	struct xchg_limits lim;
	uint64_t mono;
	time_t wall;
	int answered, freed;
	int keep_ttl;              /* answered keeps the answer this long */
	enum xchg_state seen_state; /* in the answered hook */
} fx;

static uint64_t fake_mono(void)
{
	return fx.mono;
}

static time_t fake_wall(void)
{
	return fx.wall;
}

static void on_answered(struct xchg *ex, const struct upstream_result *r)
{
	fx.answered++;
	fx.seen_state = xchg_state(ex);
	if (fx.keep_ttl)
		assert_int_equal(xchg_keep(fx.e, xchg_key(ex), r, fx.keep_ttl), 0);
}

/* 2.04 with the body for an HTTP answer, 5.02 with the error text else;
 * the note says which waiter parameter it was made for. */
static void on_outcome(struct xchg *ex, int param, const struct upstream_result *r,
		       struct proxy_outcome *out)
{
	if (r->err == EST_UP_OK) {
		out->resp.code = EST_CODE(2, 4);
		out->resp.len = r->body_len;
		out->resp.payload = malloc(r->body_len + 1);
		assert_non_null(out->resp.payload);
		memcpy(out->resp.payload, r->body, r->body_len);
		out->upstream_status = r->status;
	} else {
		assert_int_equal(est_coap_resp_error(&out->resp, EST_CODE(5, 2),
						     r->errmsg), 0);
	}
	snprintf(out->note, sizeof(out->note), "param=%d", param);
}

static void on_data_free(void *data)
{
	fx.freed++;
	free(data);
}

static const struct xchg_hooks hooks = { on_answered, on_outcome, on_data_free };

static int setup(void **state)
{
	static const struct xchg_clock clock = { fake_mono, fake_wall };
	struct xchg_transport t = { fake_start, fake_cancel, NULL };

	memset(&fx, 0, sizeof(fx));
	memset(&fake_st, 0, sizeof(fake_st));
	fx.base = event_base_new();
	assert_non_null(fx.base);
	t.up = &fx.up;
	fx.lim = (struct xchg_limits){
		.max_running = 2, .max_queued = 4, .answer_within_ms = 0,
		.timeout = 30, .age = { 60, 1, 86400 }, .max_kept = 8,
	};
	fx.e = xchg_engine_new(fx.base, &t, &hooks, &fx.lim);
	assert_non_null(fx.e);
	fx.mono = 1000000;
	fx.wall = 1700000000;
	xchg_set_clock(fx.e, &clock);
	return 0;
}

static int teardown(void **state)
{
	xchg_engine_free(fx.e);
	while (fx.up.live) /* the engine cancelled what it had started */
		fail_msg("transfer left live: %s", fx.up.live->url);
	if (fake_st.pending) /* ... and every claim it was waiting on */
		fail_msg("store claim left pending");
	event_base_free(fx.base);
	return 0;
}

/* Let the engine's events run (the queue drain), without blocking. */
static void run_loop(void)
{
	event_base_loop(fx.base, EVLOOP_NONBLOCK);
}

/* ---- waiters that record ------------------------------------------------- */

struct rec {
	int calls;
	uint8_t code;
	uint32_t max_age;
	char note[128];
	char body[64];
	uintptr_t frame;            /* stack address inside the callback */
	struct xchg_wait *cancel;   /* cancel this waiter from inside */
	struct xchg *abort;         /* abort this exchange from inside */
	int free_engine;            /* free the engine from inside */
	struct rec *order;          /* shared: who was called, in turn */
};

static void on_done(void *arg, struct proxy_outcome *out)
{
	struct rec *r = arg;

	r->calls++;
	r->code = out->resp.code;
	r->max_age = out->resp.has_max_age ? out->resp.max_age : 0;
	r->frame = (uintptr_t)__builtin_frame_address(0);
	snprintf(r->note, sizeof(r->note), "%s", out->note);
	snprintf(r->body, sizeof(r->body), "%.*s", (int)out->resp.len,
		 out->resp.payload ? (const char *)out->resp.payload : "");
	est_coap_resp_free(&out->resp);
	if (r->cancel)
		xchg_cancel(r->cancel);
	if (r->abort)
		xchg_abort(r->abort);
	if (r->free_engine) {
		xchg_engine_free(fx.e);
		fx.e = NULL;
	}
}

static void key_of(int n, uint8_t key[XCHG_KEY_LEN])
{
	memset(key, 0, XCHG_KEY_LEN);
	memcpy(key, &n, sizeof(n));
}

/* A new exchange for key @p n with its URL "u<n>", placed; returns the
 * result of xchg_place and the exchange in *out (NULL when refused). */
static int place(int n, struct xchg **out)
{
	uint8_t key[XCHG_KEY_LEN];
	int *data = malloc(sizeof(*data));
	struct xchg *ex;
	char url[16];
	int rc;

	assert_non_null(data);
	*data = n;
	key_of(n, key);
	ex = xchg_new(fx.e, key, data, "test");
	assert_non_null(ex);
	assert_int_equal(xchg_state(ex), XCHG_RECEIVING);
	snprintf(url, sizeof(url), "u%d", n);
	xchg_request(ex)->url = strdup(url);
	rc = xchg_place(ex);
	*out = rc == 0 ? ex : NULL;
	return rc;
}

static struct xchg_wait *wait_on(struct xchg *ex, int param, struct rec *r)
{
	struct xchg_wait *w = xchg_wait(ex, param, on_done, r);

	assert_non_null(w);
	return w;
}

/* ---- coalescing ---------------------------------------------------------- */

static void test_J1_identical_requests_share_one_exchange(void **state)
{
	struct rec a = { 0 }, b = { 0 };
	uint8_t key[XCHG_KEY_LEN];
	struct xchg *ex;

	assert_int_equal(place(1, &ex), 0);
	assert_int_equal(xchg_state(ex), XCHG_UPSTREAM);
	wait_on(ex, 281, &a);
	key_of(1, key);
	assert_ptr_equal(xchg_find(fx.e, key), ex); /* the second request joins */
	wait_on(ex, 287, &b);
	assert_int_equal(fx.up.started, 1);
	complete(&fx.up, 200, "cert");
	assert_int_equal(fx.answered, 1);
	assert_int_equal(fx.seen_state, XCHG_ANSWERED);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_int_equal(a.code, EST_CODE(2, 4));
	assert_string_equal(a.body, "cert");
	/* each waiter gets the outcome made for its own parameter */
	assert_string_equal(a.note, "param=281");
	assert_string_equal(b.note, "param=287");
	assert_null(xchg_find(fx.e, key)); /* answered: a new request starts anew */
	assert_int_equal(fx.freed, 1);
	assert_int_equal(xchg_running(fx.e), 0);
}

static void test_J1_other_keys_do_not_join(void **state)
{
	uint8_t key[XCHG_KEY_LEN];
	struct xchg *e1, *e2;

	assert_int_equal(place(1, &e1), 0);
	assert_int_equal(place(257, &e2), 0); /* same index bucket, other key */
	key_of(257, key);
	assert_ptr_equal(xchg_find(fx.e, key), e2);
	key_of(1, key);
	assert_ptr_equal(xchg_find(fx.e, key), e1);
	key_of(2, key);
	assert_null(xchg_find(fx.e, key));
	assert_int_equal(fx.up.started, 2);
}

/* ---- the queue and the limits ------------------------------------------- */

static void test_queue_runs_in_order_and_nothing_passes_it(void **state)
{
	struct xchg *ex[6];

	for (int i = 0; i < 5; i++)
		assert_int_equal(place(i + 1, &ex[i]), 0);
	assert_int_equal(xchg_running(fx.e), 2);
	assert_int_equal(xchg_queued(fx.e), 3);
	assert_int_equal(xchg_state(ex[2]), XCHG_QUEUED);
	complete(&fx.up, 200, "1");
	/* a slot is free, but the drain has not run yet: a new exchange
	 * must queue behind the three waiting */
	assert_int_equal(place(6, &ex[5]), 0);
	assert_int_equal(xchg_state(ex[5]), XCHG_QUEUED);
	run_loop();
	assert_int_equal(fx.up.started, 3);
	assert_string_equal(fx.up.order[2], "u3");
	for (int i = 0; i < 4; i++) {
		complete(&fx.up, 200, "x");
		run_loop();
	}
	assert_int_equal(fx.up.started, 6);
	assert_string_equal(fx.up.order[3], "u4");
	assert_string_equal(fx.up.order[4], "u5");
	assert_string_equal(fx.up.order[5], "u6");
	assert_int_equal(xchg_queued(fx.e), 0);
}

static void test_limits_busy_when_running_and_queue_are_full(void **state)
{
	struct xchg *ex;

	for (int i = 0; i < 6; i++) /* 2 running + 4 queued */
		assert_int_equal(place(i + 1, &ex), 0);
	assert_int_equal(xchg_room(fx.e), 0);
	assert_int_equal(place(7, &ex), -EBUSY);
	assert_null(ex);
	assert_int_equal(fx.freed, 1); /* the refused exchange is gone */
	assert_int_equal(fx.up.started, 2);
	xchg_engine_free(fx.e);
	fx.e = NULL;
	assert_int_equal(fx.up.cancelled, 2);
	assert_int_equal(fx.freed, 7);
}

static void test_limits_transport_refuses_the_start(void **state)
{
	struct xchg *ex;

	fx.up.refuse = 1;
	assert_int_equal(place(1, &ex), -EIO);
	assert_null(ex);
	assert_int_equal(fx.freed, 1);
	assert_int_equal(xchg_running(fx.e), 0);
	assert_int_equal(xchg_room(fx.e), 1);
}

static void test_queued_start_failure_answers_its_waiters(void **state)
{
	struct rec a = { 0 };
	struct xchg *ex;

	fx.lim.max_running = 1;
	xchg_set_limits(fx.e, &fx.lim);
	assert_int_equal(place(1, &ex), 0);
	assert_int_equal(place(2, &ex), 0);
	wait_on(ex, 0, &a);
	fx.up.refuse = 1;
	complete(&fx.up, 200, "1");
	run_loop();
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.code, EST_CODE(5, 2));
	assert_string_equal(a.body, "upstream request failed");
	assert_int_equal(fx.answered, 2);
}

static void test_raising_the_limit_drains_the_queue(void **state)
{
	struct xchg *ex;

	for (int i = 0; i < 4; i++)
		assert_int_equal(place(i + 1, &ex), 0);
	assert_int_equal(fx.up.started, 2);
	fx.lim.max_running = 4;
	xchg_set_limits(fx.e, &fx.lim);
	run_loop();
	assert_int_equal(fx.up.started, 4);
}

/* ---- kept answers -------------------------------------------------------- */

static void test_J1_kept_answer_expires_and_first_stays(void **state)
{
	uint8_t key[XCHG_KEY_LEN];
	const struct xchg_kept *k;
	struct upstream_result r = {
		.status = 200, .content_type = "application/pkcs7-mime",
		.body = (const uint8_t *)"first", .body_len = 5,
	};

	key_of(1, key);
	assert_null(xchg_kept_find(fx.e, key));
	assert_int_equal(xchg_keep(fx.e, key, &r, 0), 0); /* ttl 0: not kept */
	assert_null(xchg_kept_find(fx.e, key));
	assert_int_equal(xchg_keep(fx.e, key, &r, 10), 0);
	r.body = (const uint8_t *)"other";
	assert_int_equal(xchg_keep(fx.e, key, &r, 10), 0);
	k = xchg_kept_find(fx.e, key);
	assert_non_null(k);
	assert_int_equal(k->status, 200);
	assert_string_equal(k->content_type, "application/pkcs7-mime");
	assert_memory_equal(k->body, "first", 5);
	assert_int_equal(k->expires, fx.wall + 10);
	fx.wall += 9;
	assert_non_null(xchg_kept_find(fx.e, key));
	fx.wall += 1;
	assert_null(xchg_kept_find(fx.e, key));
}

/* Registrar keygen keeps its key beside the CA's answer (D2, F4). */
static void test_D2_kept_answer_with_extra(void **state)
{
	uint8_t key[XCHG_KEY_LEN];
	const struct xchg_kept *k;
	struct upstream_result r = {
		.status = 200, .content_type = "application/pkcs7-mime",
		.body = (const uint8_t *)"cert", .body_len = 4,
	};
	uint8_t extra[3] = { 1, 2, 3 };

	key_of(7, key);
	assert_int_equal(xchg_keep_extra(fx.e, key, &r, 10, extra, sizeof(extra)), 0);
	extra[0] = 9; /* copied, not referenced */
	k = xchg_kept_find(fx.e, key);
	assert_non_null(k);
	assert_memory_equal(k->body, "cert", 4);
	assert_int_equal(k->extra_len, 3);
	assert_int_equal(k->extra[0], 1);
	key_of(8, key);
	assert_int_equal(xchg_keep(fx.e, key, &r, 10), 0);
	k = xchg_kept_find(fx.e, key);
	assert_null(k->extra);
	assert_int_equal(k->extra_len, 0);
}

static void test_J1_kept_answers_bounded_oldest_dropped(void **state)
{
	uint8_t key[XCHG_KEY_LEN];
	struct upstream_result r = { .status = 200, .body = (const uint8_t *)"b", .body_len = 1 };

	fx.lim.max_kept = 2;
	xchg_set_limits(fx.e, &fx.lim);
	for (int i = 1; i <= 3; i++) {
		key_of(i, key);
		assert_int_equal(xchg_keep(fx.e, key, &r, 100), 0);
	}
	key_of(1, key);
	assert_null(xchg_kept_find(fx.e, key));
	key_of(2, key);
	assert_non_null(xchg_kept_find(fx.e, key));
	key_of(3, key);
	assert_non_null(xchg_kept_find(fx.e, key));
	r.content_type = NULL;
	r.body_len = 0;
	key_of(4, key);
	assert_int_equal(xchg_keep(fx.e, key, &r, 100), 0); /* empty body */
	assert_int_equal(xchg_kept_find(fx.e, key)->len, 0);
}

/* ---- cancel, and completions after it ----------------------------------- */

static void test_J1_completion_after_cancel_is_kept_not_delivered(void **state)
{
	struct rec a = { 0 };
	uint8_t key[XCHG_KEY_LEN];
	struct xchg *ex;

	fx.keep_ttl = 600;
	assert_int_equal(place(1, &ex), 0);
	xchg_cancel(wait_on(ex, 0, &a));
	xchg_cancel(NULL);
	complete(&fx.up, 200, "late");
	assert_int_equal(a.calls, 0);
	assert_int_equal(fx.answered, 1);
	key_of(1, key);
	assert_non_null(xchg_kept_find(fx.e, key)); /* for the device's retry */
}

static void test_cancel_a_sibling_from_inside_a_callback(void **state)
{
	struct rec a = { 0 }, b = { 0 }, c = { 0 };
	struct xchg *ex;

	assert_int_equal(place(1, &ex), 0);
	struct xchg_wait *wc = wait_on(ex, 3, &c);
	struct xchg_wait *wb = wait_on(ex, 2, &b);
	struct xchg_wait *wa = wait_on(ex, 1, &a); /* answered first */
	a.cancel = wb;                             /* a sibling */
	c.cancel = wc;                             /* itself: a no-op */
	(void)wa;
	complete(&fx.up, 200, "x");
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 0);
	assert_int_equal(c.calls, 1);
}

static void test_abort_own_exchange_from_inside_a_callback(void **state)
{
	struct rec a = { 0 }, b = { 0 };
	struct xchg *ex;

	assert_int_equal(place(1, &ex), 0);
	wait_on(ex, 2, &b);
	wait_on(ex, 1, &a);
	a.abort = ex;
	complete(&fx.up, 200, "x");
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 0); /* dropped, not called */
	assert_int_equal(fx.freed, 1);
}

static void test_free_the_engine_from_inside_a_callback(void **state)
{
	struct rec a = { 0 }, b = { 0 }, q = { 0 };
	struct xchg *e1, *e2, *e3;

	assert_int_equal(place(1, &e1), 0);
	assert_int_equal(place(2, &e2), 0);
	assert_int_equal(place(3, &e3), 0); /* queued */
	wait_on(e1, 0, &a);
	wait_on(e2, 0, &b);
	wait_on(e3, 0, &q);
	a.free_engine = 1;
	complete(&fx.up, 200, "x");
	assert_null(fx.e);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 0);
	assert_int_equal(q.calls, 0);
	assert_int_equal(fx.up.cancelled, 1); /* e2's transfer */
	assert_int_equal(fx.freed, 3);
	run_loop(); /* the drain event went with the engine */
	assert_int_equal(fx.up.started, 2);
}

/* A callback that starts a new exchange for the same key: the answered one
 * is out of the index, so the new one is a separate exchange. */
static struct xchg *reentered;

static void on_done_resubmit(void *arg, struct proxy_outcome *out)
{
	est_coap_resp_free(&out->resp);
	assert_int_equal(place(1, &reentered), 0);
}

static void test_callback_may_submit_the_same_key_again(void **state)
{
	uint8_t key[XCHG_KEY_LEN];
	struct xchg *ex;

	assert_int_equal(place(1, &ex), 0);
	assert_non_null(xchg_wait(ex, 0, on_done_resubmit, NULL));
	complete(&fx.up, 200, "x");
	assert_non_null(reentered);
	key_of(1, key);
	assert_ptr_equal(xchg_find(fx.e, key), reentered);
	assert_int_equal(fx.up.started, 2);
}

/* ---- a long queue drains at one stack depth ------------------------------ */

#define DEEP 65536

static void test_queue_of_65536_drains_without_recursion(void **state)
{
	struct rec *recs = calloc(DEEP + 1, sizeof(*recs));
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	struct xchg *ex;

	assert_non_null(recs);
	fx.lim.max_running = 1;
	fx.lim.max_queued = DEEP;
	xchg_set_limits(fx.e, &fx.lim);
	for (int i = 0; i <= DEEP; i++) {
		assert_int_equal(place(i + 1, &ex), 0);
		wait_on(ex, 0, &recs[i]);
	}
	assert_int_equal(xchg_queued(fx.e), DEEP);
	fx.up.refuse = 1; /* every queued start fails: answered in the drain */
	complete(&fx.up, 200, "first");
	run_loop();
	assert_int_equal(recs[0].calls, 1); /* answered from complete() */
	for (int i = 1; i <= DEEP; i++) { /* answered from the drain */
		assert_int_equal(recs[i].calls, 1);
		if (recs[i].frame < lo)
			lo = recs[i].frame;
		if (recs[i].frame > hi)
			hi = recs[i].frame;
	}
	assert_int_equal(recs[DEEP].code, EST_CODE(5, 2));
	/* recursion would put each callback deeper: 65,536 nested frames of
	 * even 16 bytes each are a megabyte apart; one loop keeps them level */
	assert_true(hi - lo < 65536);
	assert_int_equal(xchg_queued(fx.e), 0);
	assert_int_equal(fx.freed, DEEP + 1);
	free(recs);
}

/* ---- answer_within (D2) -------------------------------------------------- */

/* Run the loop until @p r was called (the timer is real: 20 ms). */
static void loop_until_called(const struct rec *r)
{
	for (int i = 0; i < 1000 && !r->calls; i++)
		event_base_loop(fx.base, EVLOOP_ONCE);
	assert_int_equal(r->calls, 1);
}

static void test_D2_deadline_503_max_age_then_answer_kept(void **state)
{
	struct rec a = { 0 }, q = { 0 };
	uint8_t key[XCHG_KEY_LEN];
	struct xchg *ex, *queued;

	fx.lim.answer_within_ms = 20;
	fx.lim.max_running = 1;
	xchg_set_limits(fx.e, &fx.lim);
	fx.keep_ttl = 600;
	assert_int_equal(place(1, &ex), 0);
	wait_on(ex, 0, &a);
	assert_int_equal(place(2, &queued), 0);
	wait_on(queued, 0, &q);
	fx.mono += 12000; /* 18 s of the 30 s timeout left */
	loop_until_called(&a);
	loop_until_called(&q);
	assert_int_equal(a.code, EST_CODE(5, 3));
	assert_int_equal(a.max_age, 19); /* what is left plus a second */
	assert_string_equal(a.note, "upstream still working, retry later");
	assert_int_equal(q.code, EST_CODE(5, 3));
	assert_int_equal(q.max_age, 31); /* queued: all of the timeout */
	assert_int_equal(xchg_state(ex), XCHG_UPSTREAM); /* it goes on */
	complete(&fx.up, 200, "cert");
	assert_int_equal(a.calls, 1); /* answered once only */
	key_of(1, key);
	assert_non_null(xchg_kept_find(fx.e, key));
}

static void test_D2_max_age_clamped(void **state)
{
	struct rec a = { 0 };
	struct xchg *ex;

	fx.lim.answer_within_ms = 20;
	fx.lim.age = (struct est_xlate_limits){ 10, 1, 86400 };
	xchg_set_limits(fx.e, &fx.lim);
	assert_int_equal(place(1, &ex), 0);
	wait_on(ex, 0, &a);
	loop_until_called(&a);
	assert_int_equal(a.max_age, 10); /* at most max_age_default */
	complete(&fx.up, 200, "x");
}

static void test_D2_cancel_before_deadline_no_call(void **state)
{
	struct rec a = { 0 }, b = { 0 };
	struct xchg *ex;

	fx.lim.answer_within_ms = 20;
	xchg_set_limits(fx.e, &fx.lim);
	assert_int_equal(place(1, &ex), 0);
	xchg_cancel(wait_on(ex, 0, &a));
	wait_on(ex, 0, &b);
	loop_until_called(&b);
	assert_int_equal(a.calls, 0);
	complete(&fx.up, 200, "x");
}

/* ---- the shared store ([cluster], K1) ------------------------------------ */

/* A shared exchange for key @p n with the store set, placed. */
static struct xchg *place_shared(int n)
{
	uint8_t key[XCHG_KEY_LEN];
	int *data = malloc(sizeof(*data));
	struct xchg *ex;

	assert_non_null(data);
	*data = n;
	key_of(n, key);
	ex = xchg_new(fx.e, key, data, "shared");
	assert_non_null(ex);
	xchg_share(ex);
	xchg_request(ex)->url = strdup("sen");
	assert_int_equal(xchg_place(ex), 0);
	return ex;
}

/* Run the loop until the engine has asked the store @p claims times (the
 * REMOTE poll timer is real: XCHG_POLL_MS). */
static void loop_until_claims(int claims)
{
	for (int i = 0; i < 1000 && fake_st.claims < claims; i++)
		event_base_loop(fx.base, EVLOOP_ONCE);
	assert_int_equal(fake_st.claims, claims);
}

static void test_K1b_claim_won_runs_locally_then_publishes(void **state)
{
	struct rec a = { 0 };
	struct xchg *ex;
	uint8_t key[XCHG_KEY_LEN];

	xchg_set_store(fx.e, &fake_store_if);
	fx.keep_ttl = 600;
	ex = place_shared(1);
	wait_on(ex, 0, &a);
	assert_int_equal(xchg_state(ex), XCHG_STORE); /* the store first */
	assert_int_equal(fx.up.started, 0);
	assert_int_equal(xchg_room(fx.e), 1);          /* counted: 1 of 2 + 4 */
	store_reply(STORE_CLAIMED, NULL);
	assert_int_equal(xchg_state(ex), XCHG_UPSTREAM);
	assert_int_equal(fx.up.started, 1);
	complete(&fx.up, 200, "cert");
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.code, EST_CODE(2, 4));
	assert_string_equal(a.body, "cert");
	/* what the owner kept goes to the store, under the request key (K1a) */
	assert_int_equal(fake_st.publishes, 1);
	assert_int_equal(fake_st.releases, 0);
	assert_string_equal(fake_st.pub_body, "cert");
	assert_int_equal(fake_st.pub.status, 200);
	assert_int_equal(fake_st.pub.ttl, 600);
	key_of(1, key);
	assert_memory_equal(fake_st.pub_key, key, XCHG_KEY_LEN);
	assert_int_equal(fx.answered, 1);
}

/* An answer that is not kept (an error, keep_issued = 0) only releases the
 * claim, so the next asker anywhere takes the key at once. */
static void test_K1b_claim_won_answer_not_kept_releases_the_claim(void **state)
{
	struct rec a = { 0 };
	struct xchg *ex;

	xchg_set_store(fx.e, &fake_store_if);
	ex = place_shared(1);
	wait_on(ex, 0, &a);
	store_reply(STORE_CLAIMED, NULL);
	complete(&fx.up, 500, "oops");
	assert_int_equal(a.calls, 1);
	assert_int_equal(fake_st.publishes, 0);
	assert_int_equal(fake_st.releases, 1);
}

static void test_K1b_claim_held_elsewhere_polls_then_answered_from_the_store(void **state)
{
	struct rec a = { 0 };
	uint8_t key[XCHG_KEY_LEN];
	const struct xchg_kept *k;
	struct xchg *ex;

	xchg_set_store(fx.e, &fake_store_if);
	ex = place_shared(1);
	wait_on(ex, 0, &a);
	store_reply(STORE_BUSY, NULL);
	assert_int_equal(xchg_state(ex), XCHG_REMOTE);
	loop_until_claims(2); /* asked again after XCHG_POLL_MS */
	assert_int_equal(xchg_state(ex), XCHG_STORE);
	store_reply(STORE_BUSY, NULL);
	loop_until_claims(3);
	store_reply(STORE_ANSWER, "their cert");
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.code, EST_CODE(2, 4));
	assert_string_equal(a.body, "their cert");
	assert_string_equal(a.note, "from the store");
	assert_int_equal(fx.up.started, 0); /* no upstream call here */
	assert_int_equal(fx.answered, 0);   /* nor the owner's answered hook */
	assert_int_equal(fake_st.publishes + fake_st.releases, 0);
	key_of(1, key); /* kept here as well (K1a) */
	k = xchg_kept_find(fx.e, key);
	assert_non_null(k);
	assert_memory_equal(k->body, "their cert", 10);
	assert_int_equal(k->expires, fx.wall + 300);
	assert_null(xchg_find(fx.e, key));
	assert_int_equal(fx.freed, 1);
}

static void test_K1b_claim_held_elsewhere_503_at_answer_within(void **state)
{
	struct rec a = { 0 };
	struct xchg *ex;

	fx.lim.answer_within_ms = 20;
	xchg_set_limits(fx.e, &fx.lim);
	xchg_set_store(fx.e, &fake_store_if);
	ex = place_shared(1);
	wait_on(ex, 0, &a);
	store_reply(STORE_BUSY, NULL);
	loop_until_called(&a); /* 20 ms: before the first poll */
	assert_int_equal(a.code, EST_CODE(5, 3));
	assert_int_equal(a.max_age, 31); /* not started here: all of the timeout */
	assert_int_equal(fake_st.claims, 1);
	/* nobody waits any more: the next poll drops it without asking */
	for (int i = 0; i < 1000 && fx.freed == 0; i++)
		event_base_loop(fx.base, EVLOOP_ONCE);
	assert_int_equal(fx.freed, 1);
	assert_int_equal(fake_st.claims, 1);
	assert_int_equal(fx.up.started, 0);
	assert_int_equal(fake_st.releases, 0); /* it never held the claim */
}

static void test_K1f_store_down_runs_on_local_state(void **state)
{
	struct rec a = { 0 };
	struct xchg *ex;

	xchg_set_store(fx.e, &fake_store_if);
	fake_st.down = 1;
	ex = place_shared(1);
	wait_on(ex, 0, &a);
	assert_int_equal(xchg_state(ex), XCHG_UPSTREAM); /* at once, no wait */
	assert_int_equal(fx.up.started, 1);
	complete(&fx.up, 200, "cert");
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.code, EST_CODE(2, 4));
	assert_int_equal(fake_st.releases, 0); /* no claim to let go */
}

static void test_K1f_store_no_verdict_in_time_runs_locally(void **state)
{
	struct rec a = { 0 };
	struct xchg *ex;

	xchg_set_store(fx.e, &fake_store_if);
	ex = place_shared(1);
	wait_on(ex, 0, &a);
	store_reply(STORE_DOWN, NULL); /* store_timeout passed without an answer */
	assert_int_equal(xchg_state(ex), XCHG_UPSTREAM);
	complete(&fx.up, 200, "cert");
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.body, "cert");
	assert_int_equal(fake_st.releases, 0);
}

/* A poll that finds the store gone runs the exchange locally. */
static void test_K1f_store_gone_while_polling_runs_locally(void **state)
{
	struct rec a = { 0 };
	struct xchg *ex;

	xchg_set_store(fx.e, &fake_store_if);
	ex = place_shared(1);
	wait_on(ex, 0, &a);
	store_reply(STORE_BUSY, NULL);
	fake_st.down = 1;
	for (int i = 0; i < 1000 && fx.up.started == 0; i++)
		event_base_loop(fx.base, EVLOOP_ONCE);
	assert_int_equal(xchg_state(ex), XCHG_UPSTREAM);
	complete(&fx.up, 200, "cert");
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.body, "cert");
}

/* Shutdown: the claim asked is cancelled, the claim held is released, the
 * polling exchange stops; no waiter is called. */
static void test_K1b_cancel_at_shutdown(void **state)
{
	struct rec a = { 0 }, b = { 0 }, c = { 0 };
	struct xchg *asking, *remote, *held;

	xchg_set_store(fx.e, &fake_store_if);
	held = place_shared(1);
	wait_on(held, 0, &a);
	store_reply(STORE_CLAIMED, NULL);
	remote = place_shared(2);
	wait_on(remote, 0, &b);
	store_reply(STORE_BUSY, NULL);
	asking = place_shared(3);
	wait_on(asking, 0, &c);
	assert_int_equal(xchg_state(held), XCHG_UPSTREAM);
	assert_int_equal(xchg_state(remote), XCHG_REMOTE);
	assert_int_equal(xchg_state(asking), XCHG_STORE);
	xchg_engine_free(fx.e);
	fx.e = NULL;
	assert_int_equal(fake_st.cancels, 1);  /* its verdict will not come */
	assert_int_equal(fake_st.releases, 1); /* the claim goes for the next asker */
	assert_int_equal(fx.up.cancelled, 1);
	assert_int_equal(a.calls + b.calls + c.calls, 0);
	assert_int_equal(fx.freed, 3);
	run_loop(); /* the REMOTE poll timer went with its exchange */
	assert_int_equal(fake_st.claims, 3);
}

/* K2: without a store a shared exchange goes upstream at once, as before. */
static void test_K2_no_store_shared_exchange_goes_upstream(void **state)
{
	struct rec a = { 0 };
	struct xchg *ex;

	fx.keep_ttl = 600;
	ex = place_shared(1);
	wait_on(ex, 0, &a);
	assert_int_equal(xchg_state(ex), XCHG_UPSTREAM);
	complete(&fx.up, 200, "cert");
	assert_int_equal(a.calls, 1);
	assert_int_equal(fake_st.claims + fake_st.publishes + fake_st.releases, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_J1_identical_requests_share_one_exchange, setup, teardown),
		cmocka_unit_test_setup_teardown(test_J1_other_keys_do_not_join, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_runs_in_order_and_nothing_passes_it, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits_busy_when_running_and_queue_are_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits_transport_refuses_the_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queued_start_failure_answers_its_waiters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raising_the_limit_drains_the_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_J1_kept_answer_expires_and_first_stays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_J1_kept_answers_bounded_oldest_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_J1_completion_after_cancel_is_kept_not_delivered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_a_sibling_from_inside_a_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_own_exchange_from_inside_a_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_the_engine_from_inside_a_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_may_submit_the_same_key_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_of_65536_drains_without_recursion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_D2_deadline_503_max_age_then_answer_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_D2_max_age_clamped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_D2_kept_answer_with_extra, setup, teardown),
		cmocka_unit_test_setup_teardown(test_D2_cancel_before_deadline_no_call, setup, teardown),
		cmocka_unit_test_setup_teardown(test_K1b_claim_won_runs_locally_then_publishes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_K1b_claim_won_answer_not_kept_releases_the_claim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_K1b_claim_held_elsewhere_polls_then_answered_from_the_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_K1b_claim_held_elsewhere_503_at_answer_within, setup, teardown),
		cmocka_unit_test_setup_teardown(test_K1f_store_down_runs_on_local_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_K1f_store_no_verdict_in_time_runs_locally, setup, teardown),
		cmocka_unit_test_setup_teardown(test_K1f_store_gone_while_polling_runs_locally, setup, teardown),
		cmocka_unit_test_setup_teardown(test_K1b_cancel_at_shutdown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_K2_no_store_shared_exchange_goes_upstream, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
