/* test_upstream.c - upstream.c's completion guard over real curl transfers
 * that fail at once: connections to a loopback port with a socket bound
 * but not listening, so each transfer ends with "connection refused"
 * without a server. Checks that a callback may cancel its own transfer or
 * one whose completion is queued behind it, and may start a new one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "tls/keylog.h"
#include "upstream/upstream.h"

/* upstream.c hands curl's TLS context to the OpenSSL glue when [log]
 * keylog_file is set; not here. */
void estgw_keylog_attach(void *ssl_ctx)
{
	fail_msg("no key log in this test");
}

static struct {
	struct event_base *base;
	struct estgw_config cfg;
	struct upstream *up;
	int fd;
	char url[64];
	struct est_http_req req;
} fx;

static int setup(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);

	memset(&fx, 0, sizeof(fx));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fx.fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fx.fd >= 0);
	assert_int_equal(bind(fx.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fx.fd, (struct sockaddr *)&a, &alen), 0);
	snprintf(fx.url, sizeof(fx.url), "https://127.0.0.1:%u/.well-known/est/cacerts",
		 ntohs(a.sin_port));
	fx.req = (struct est_http_req){ .url = fx.url, .method = EST_GET };
	fx.cfg.upstream.timeout = 10;
	fx.cfg.upstream.connect_timeout = 5;
	fx.cfg.upstream.max_response = 65536;
	fx.cfg.upstream.max_concurrent = 8;
	fx.base = event_base_new();
	assert_non_null(fx.base);
	fx.up = upstream_new(fx.base, &fx.cfg);
	assert_non_null(fx.up);
	return 0;
}

static int teardown(void **state)
{
	assert_int_equal(upstream_in_flight(fx.up), 0);
	upstream_free(fx.up);
	event_base_free(fx.base);
	close(fx.fd);
	return 0;
}

struct rec {
	int calls;
	enum est_upstream_err err;
	struct upstream_xfer *self;   /* cancel this one from inside */
	struct upstream_xfer *other;  /* ... and this one */
	int resend;                   /* start a new transfer from inside */
	struct upstream_xfer *started;
	struct rec *next_rec;         /* the new transfer's record */
};

static void on_done(void *arg, const struct upstream_result *r)
{
	struct rec *c = arg;

	c->calls++;
	c->err = r->err;
	if (c->self)
		upstream_cancel(c->self);
	if (c->other)
		upstream_cancel(c->other);
	if (c->resend) {
		c->started = upstream_send(fx.up, &fx.req, on_done, c->next_rec);
		assert_non_null(c->started);
	}
}

static void loop_until(const int *done)
{
	for (int i = 0; i < 2000 && !*done; i++)
		event_base_loop(fx.base, EVLOOP_ONCE);
	assert_true(*done);
}

static void test_callback_cancels_its_own_transfer(void **state)
{
	struct rec a = { 0 };

	a.self = upstream_send(fx.up, &fx.req, on_done, &a);
	assert_non_null(a.self);
	loop_until(&a.calls);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.err, EST_UP_CONNECT);
	assert_int_equal(upstream_in_flight(fx.up), 0); /* freed once, after */
}

static void test_callback_cancels_another_transfer(void **state)
{
	struct rec a = { 0 }, b = { 0 };
	struct upstream_xfer *xa, *xb;
	int either = 0;

	xa = upstream_send(fx.up, &fx.req, on_done, &a);
	xb = upstream_send(fx.up, &fx.req, on_done, &b);
	assert_non_null(xa);
	assert_non_null(xb);
	a.other = xb; /* whichever ends first cancels the other */
	b.other = xa;
	for (int i = 0; i < 2000 && !either; i++) {
		event_base_loop(fx.base, EVLOOP_ONCE);
		either = a.calls + b.calls;
	}
	/* the other one's callback never runs, even if its end was queued */
	for (int i = 0; i < 20; i++)
		event_base_loop(fx.base, EVLOOP_NONBLOCK);
	assert_int_equal(a.calls + b.calls, 1);
	assert_int_equal(upstream_in_flight(fx.up), 0);
}

static void test_callback_starts_a_new_transfer(void **state)
{
	struct rec a = { 0 }, b = { 0 };

	a.resend = 1;
	a.next_rec = &b;
	assert_non_null(upstream_send(fx.up, &fx.req, on_done, &a));
	loop_until(&b.calls);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.err, EST_UP_CONNECT);
}

static void test_cancel_before_the_end_no_callback(void **state)
{
	struct rec a = { 0 }, b = { 0 };

	upstream_cancel(upstream_send(fx.up, &fx.req, on_done, &a));
	upstream_cancel(NULL);
	assert_int_equal(upstream_in_flight(fx.up), 0);
	assert_non_null(upstream_send(fx.up, &fx.req, on_done, &b));
	loop_until(&b.calls);
	assert_int_equal(a.calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_callback_cancels_its_own_transfer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_cancels_another_transfer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_starts_a_new_transfer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_before_the_end_no_callback, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
