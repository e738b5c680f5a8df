/* metrics_http.c - GET /metrics and /healthz with libevent's HTTP server.
 *
 * Runs on the gateway's event_base: answering at all shows the loop runs.
 * evhttp parses the requests; we bound header size, body size and time.
 * The socket is bound to the address config.c parsed ([metrics] listen):
 * no text is parsed here.
 */
#include "ops/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "estgw/config.h"
#include "estgw/log.h"

struct metrics_server {
	struct evhttp *http;
	uint32_t crts_max_age;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason,
		       const char *ctype, const char *text, size_t len)
{
	struct evbuffer *b = evbuffer_new();

	if (!b) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(b, text, len);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
}

static void on_metrics(struct evhttp_request *req)
{
	char *text = NULL;
	size_t len = 0;

	if (metrics_render(time(NULL), &text, &len) != 0) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	reply_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

static void on_healthz(struct metrics_server *ms, struct evhttp_request *req)
{
	static const char ok[] = "ok\n", stale[] = "CA certificate cache is stale\n";
	/* K1: a store outage is said but stays 200: the instance serves from
	 * its own state, and a balancer that dropped every instance while
	 * Redis is away would turn a degraded cluster into an outage. */
	static const char ok_down[] = "ok\nstore: down, serving from local state\n";
	static const char ok_up[] = "ok\nstore: up\n";
	int store = metrics_store_health();

	if (metrics_crts_fresh(time(NULL), ms->crts_max_age)) {
		if (store < 0)
			reply_text(req, 200, "OK", "text/plain", ok, sizeof(ok) - 1);
		else if (store)
			reply_text(req, 200, "OK", "text/plain", ok_up, sizeof(ok_up) - 1);
		else
			reply_text(req, 200, "OK", "text/plain", ok_down, sizeof(ok_down) - 1);
	} else
		reply_text(req, 503, "Service Unavailable", "text/plain", stale,
			   sizeof(stale) - 1);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *path = u ? evhttp_uri_get_path(u) : NULL;

	if (!path) {
		evhttp_send_error(req, 400, "bad request");
		return;
	}
	if (strcmp(path, "/metrics") == 0)
		on_metrics(req);
	else if (strcmp(path, "/healthz") == 0)
		on_healthz(arg, req);
	else
		evhttp_send_error(req, 404, "not found");
	log_debug("metrics", "GET %.80s", uri ? uri : "?");
}

/** A TCP listener on the address config.c parsed; evhttp serves on it. */
static int bind_addr(struct metrics_server *ms, struct event_base *base,
		     const struct estgw_addr *addr)
{
	struct evconnlistener *lev;

	lev = evconnlistener_new_bind(base, NULL, NULL,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
				      LEV_OPT_REUSEABLE, -1,
				      (const struct sockaddr *)&addr->sa, (int)addr->salen);
	if (!lev) {
		int e = errno ? errno : EINVAL;

		log_err("metrics", "cannot listen on %s (HTTP): %s", addr->text, strerror(e));
		return -e;
	}
	if (!evhttp_bind_listener(ms->http, lev)) {
		evconnlistener_free(lev);
		log_err("metrics", "cannot serve HTTP on %s", addr->text);
		return -ENOMEM;
	}
	return 0;
}

struct metrics_server *metrics_server_new(struct event_base *base,
					  const struct estgw_addr *addr,
					  uint32_t crts_max_age)
{
	struct metrics_server *ms = calloc(1, sizeof(*ms));

	if (!ms)
		return NULL;
	ms->crts_max_age = crts_max_age;
	ms->http = evhttp_new(base);
	if (!ms->http)
		goto fail;
	evhttp_set_allowed_methods(ms->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(ms->http, 8192);
	evhttp_set_max_body_size(ms->http, 1024);
	evhttp_set_timeout(ms->http, 10);
	evhttp_set_gencb(ms->http, on_request, ms);
	if (bind_addr(ms, base, addr) != 0)
		goto fail;
	log_info("metrics", "serving /metrics and /healthz on http://%s", addr->text);
	return ms;
fail:
	metrics_server_free(ms);
	return NULL;
}

void metrics_server_set_max_age(struct metrics_server *ms, uint32_t crts_max_age)
{
	if (ms)
		ms->crts_max_age = crts_max_age;
}

void metrics_server_free(struct metrics_server *ms)
{
	if (!ms)
		return;
	if (ms->http)
		evhttp_free(ms->http);
	free(ms);
}
