/* exchange.c - the exchange engine (see exchange.h for the states).
 *
 * Exchanges not yet answered are found by key in a small hash index; the
 * queue is a doubly linked FIFO. A slot that frees up arms one
 * zero-timeout event (on_drain), which starts queued exchanges in a loop:
 * an exchange that cannot be started is answered there, and its callbacks
 * never start the next one themselves, so a queue of any length drains at
 * one stack depth. Every callback into the owner runs inside a guard
 * (e->depth, ex->finishing, w->state): xchg_cancel, xchg_abort and
 * xchg_engine_free called from inside it only mark, and the frame that
 * made the call frees once the callback has returned.
 */
#include "core/exchange.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "estgw/log.h"

#define BUCKETS 256

enum wait_state {
	WAIT_PENDING, /* on its exchange's list */
	WAIT_CALLING, /* its callback is running: cancel is a no-op */
};

struct xchg_wait {
	struct xchg *ex;
	enum wait_state state;
	int param;
	proxy_done_fn fn;
	void *arg;
	struct event *deadline; /* answer_within, NULL: none */
	struct xchg_wait *prev, *next;
};

struct xchg {
	struct xchg_engine *e;
	uint8_t key[XCHG_KEY_LEN];
	enum xchg_state state;
	char what[80];
	void *data;
	struct est_http_req req;
	struct upstream_opts opts;
	int has_opts;
	int shared;           /* asks the store first (K1) */
	int claimed;          /* this instance holds the store's claim */
	struct store_op *sop; /* the store's answer pending (STORE) */
	struct event *poll;   /* REMOTE: ask again */
	int finishing;        /* inside finish(): freed by it */
	struct upstream_xfer *xfer;
	uint64_t deadline_ms; /* monotonic: the transport's timeout, once started */
	struct xchg_wait *waiters;
	struct xchg *iprev, *inext; /* index bucket, while findable */
	struct xchg *qprev, *qnext; /* the queue, while QUEUED */
};

struct kept_node {
	struct kept_node *next;
	uint8_t key[XCHG_KEY_LEN];
	struct xchg_kept k;
};

struct xchg_engine {
	struct event_base *base;
	struct xchg_transport t;
	struct xchg_hooks h;
	struct xchg_limits lim;
	struct xchg_clock clock;
	struct xchg *index[BUCKETS];
	struct xchg *qhead, *qtail;
	size_t running, queued;
	size_t asking;          /* in STORE or REMOTE */
	const struct store_if *store; /* NULL: no [cluster] (K2) */
	struct event *drain;
	struct kept_node *kept; /* newest first */
	size_t nkept;
	int depth;  /* callback frames on the stack */
	int dying;  /* xchg_engine_free from inside a callback */
};

static uint64_t real_mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static time_t real_wall(void)
{
	return time(NULL);
}

/* ---- index and queue ---------------------------------------------------- */

static struct xchg **bucket(struct xchg_engine *e, const uint8_t *key)
{
	return &e->index[key[0] % BUCKETS];
}

static void index_add(struct xchg *ex)
{
	struct xchg **b = bucket(ex->e, ex->key);

	ex->iprev = NULL;
	ex->inext = *b;
	if (*b)
		(*b)->iprev = ex;
	*b = ex;
}

static void index_del(struct xchg *ex)
{
	if (ex->iprev)
		ex->iprev->inext = ex->inext;
	else
		*bucket(ex->e, ex->key) = ex->inext;
	if (ex->inext)
		ex->inext->iprev = ex->iprev;
	ex->iprev = ex->inext = NULL;
}

static void queue_push(struct xchg *ex)
{
	struct xchg_engine *e = ex->e;

	ex->state = XCHG_QUEUED;
	ex->qnext = NULL;
	ex->qprev = e->qtail;
	if (e->qtail)
		e->qtail->qnext = ex;
	else
		e->qhead = ex;
	e->qtail = ex;
	e->queued++;
}

static void queue_del(struct xchg *ex)
{
	struct xchg_engine *e = ex->e;

	if (ex->qprev)
		ex->qprev->qnext = ex->qnext;
	else
		e->qhead = ex->qnext;
	if (ex->qnext)
		ex->qnext->qprev = ex->qprev;
	else
		e->qtail = ex->qprev;
	ex->qprev = ex->qnext = NULL;
	e->queued--;
}

static void schedule_drain(struct xchg_engine *e)
{
	if (e->qhead && e->running < e->lim.max_running && !e->dying)
		event_active(e->drain, EV_TIMEOUT, 0);
}

/* ---- waiters ------------------------------------------------------------ */

static void wait_unlink(struct xchg_wait *w)
{
	struct xchg *ex = w->ex;

	if (w->prev)
		w->prev->next = w->next;
	else
		ex->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
}

static void wait_free(struct xchg_wait *w)
{
	if (w->deadline)
		event_free(w->deadline);
	free(w);
}

static void drop_waiters(struct xchg *ex)
{
	while (ex->waiters) {
		struct xchg_wait *w = ex->waiters;
		wait_unlink(w);
		wait_free(w);
	}
}

/* ---- the engine's guard ------------------------------------------------- */

static void engine_destroy(struct xchg_engine *e);

static void enter(struct xchg_engine *e)
{
	e->depth++;
}

/* Leave a callback frame; 1 when the engine is gone (freed from inside). */
static int leave(struct xchg_engine *e)
{
	if (--e->depth == 0 && e->dying) {
		engine_destroy(e);
		return 1;
	}
	return 0;
}

/* ---- exchanges ---------------------------------------------------------- */

static void xchg_free(struct xchg *ex)
{
	struct xchg_engine *e = ex->e;

	if (ex->poll)
		event_free(ex->poll);
	drop_waiters(ex);
	est_http_req_free(&ex->req);
	if (e->h.data_free && ex->data)
		e->h.data_free(ex->data);
	free(ex);
}

/* Call one waiter with @p out (owned by the callee from now on). */
static void call_waiter(struct xchg_engine *e, struct xchg_wait *w,
			struct proxy_outcome *out)
{
	w->state = WAIT_CALLING;
	if (w->deadline) {
		event_free(w->deadline);
		w->deadline = NULL;
	}
	w->fn(w->arg, out);
	wait_free(w);
}

static void publish_kept(struct xchg_engine *e, struct xchg *ex);

/* The one completion path: the answer (or a start failure) for @p ex,
 * already out of the index and the running count. Frees @p ex. */
static void finish(struct xchg *ex, const struct upstream_result *r)
{
	struct xchg_engine *e = ex->e;

	ex->state = XCHG_ANSWERED;
	ex->finishing = 1;
	enter(e);
	if (e->h.answered)
		e->h.answered(ex, r);
	if (ex->shared && e->store && !e->dying)
		publish_kept(e, ex);
	while (ex->waiters && ex->state == XCHG_ANSWERED && !e->dying) {
		struct xchg_wait *w = ex->waiters;
		struct proxy_outcome out;

		wait_unlink(w);
		memset(&out, 0, sizeof(out));
		e->h.outcome(ex, w->param, r, &out);
		call_waiter(e, w, &out);
	}
	xchg_free(ex); /* waiters left (aborted, engine dying): no call */
	leave(e);
}

static void on_transport_done(void *arg, const struct upstream_result *r)
{
	struct xchg *ex = arg;
	struct xchg_engine *e = ex->e;

	ex->xfer = NULL;
	e->running--;
	index_del(ex);
	schedule_drain(e);
	finish(ex, r);
}

/* RECEIVING or QUEUED -> UPSTREAM; -EIO when the transport refuses. */
static int start(struct xchg *ex)
{
	struct xchg_engine *e = ex->e;

	ex->state = XCHG_UPSTREAM;
	ex->deadline_ms = e->clock.mono_ms() + (uint64_t)e->lim.timeout * 1000;
	ex->xfer = e->t.start(e->t.up, &ex->req, ex->has_opts ? &ex->opts : NULL,
			      on_transport_done, ex);
	if (!ex->xfer)
		return -EIO;
	e->running++;
	est_http_req_free(&ex->req); /* the transport has its copy */
	return 0;
}

static void on_poll_event(evutil_socket_t fd, short what, void *arg);

static const struct upstream_result start_failed = {
	.err = EST_UP_PROTOCOL,
	.errmsg = "upstream request failed",
};

/* The zero-timeout event: start queued exchanges while there is room. */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
	struct xchg_engine *e = arg;

	enter(e);
	while (e->qhead && e->running < e->lim.max_running && !e->dying) {
		struct xchg *ex = e->qhead;

		queue_del(ex);
		if (start(ex) != 0) {
			index_del(ex);
			finish(ex, &start_failed);
		}
	}
	leave(e);
}

/* ---- the deadline (D2) -------------------------------------------------- */

/* Max-Age for a device whose answer is not ready (RFC 9148 §4.7, D2):
 * the time the exchange may still take, plus a second, so that the retry
 * finds the kept answer or, after an upstream timeout, starts a new
 * exchange. At most max_age_default; within max_age_min..max_age_max. */
static uint32_t come_back_in(const struct xchg_engine *e, const struct xchg *ex)
{
	const struct est_xlate_limits *a = &e->lim.age;
	uint64_t now = e->clock.mono_ms();
	uint32_t s = e->lim.timeout + 1; /* queued: all of it is ahead */

	if (ex->state == XCHG_UPSTREAM)
		s = ex->deadline_ms > now ?
			    (uint32_t)((ex->deadline_ms - now + 999) / 1000) + 1 : 1;
	if (s > a->max_age_default)
		s = a->max_age_default;
	if (s < a->max_age_min)
		s = a->max_age_min;
	if (s > a->max_age_max)
		s = a->max_age_max;
	return s;
}

/* answer_within is over: 5.03 + Max-Age now, the exchange goes on (D2).
 * A retry joins it while in flight, or finds what the owner kept. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	static const char diag[] = "upstream still working, retry later";
	struct xchg_wait *w = arg;
	struct xchg *ex = w->ex;
	struct xchg_engine *e = ex->e;
	struct proxy_outcome out;
	uint32_t age = come_back_in(e, ex);

	wait_unlink(w);
	memset(&out, 0, sizeof(out));
	est_coap_resp_error(&out.resp, EST_CODE(5, 3), diag);
	out.resp.has_max_age = 1;
	out.resp.max_age = age;
	snprintf(out.note, sizeof(out.note), "%s", diag);
	log_debug("proxy", "%s %s after %u ms: 5.03, Max-Age %u; the exchange goes on",
		  ex->what, ex->state == XCHG_UPSTREAM ? "unanswered" : "still queued",
		  e->lim.answer_within_ms, age);
	enter(e);
	call_waiter(e, w, &out);
	leave(e);
}

/* ---- kept answers ------------------------------------------------------- */

static void kept_free(struct kept_node *k)
{
	free(k->k.content_type);
	if (k->k.body) /* a serverkeygen answer holds a private key (G7) */
		explicit_bzero(k->k.body, k->k.len);
	free(k->k.body);
	if (k->k.extra)
		explicit_bzero(k->k.extra, k->k.extra_len);
	free(k->k.extra);
	free(k);
}

/* Drop expired entries; with @p room, also the oldest beyond max_kept - 1. */
static void kept_trim(struct xchg_engine *e, time_t now, int room)
{
	struct kept_node **pp = &e->kept;
	size_t n = 0;
	size_t limit = e->lim.max_kept - (room && e->lim.max_kept ? 1 : 0);

	while (*pp) {
		struct kept_node *k = *pp;
		if (k->k.expires <= now || n >= limit) {
			*pp = k->next;
			kept_free(k);
			e->nkept--;
			continue;
		}
		n++;
		pp = &k->next;
	}
}

const struct xchg_kept *xchg_kept_find(struct xchg_engine *e,
				       const uint8_t key[XCHG_KEY_LEN])
{
	kept_trim(e, e->clock.wall(), 0);
	for (struct kept_node *k = e->kept; k; k = k->next)
		if (memcmp(k->key, key, XCHG_KEY_LEN) == 0)
			return &k->k;
	return NULL;
}

int xchg_keep(struct xchg_engine *e, const uint8_t key[XCHG_KEY_LEN],
	      const struct upstream_result *r, uint32_t ttl)
{
	return xchg_keep_extra(e, key, r, ttl, NULL, 0);
}

int xchg_keep_extra(struct xchg_engine *e, const uint8_t key[XCHG_KEY_LEN],
		    const struct upstream_result *r, uint32_t ttl,
		    const uint8_t *extra, size_t extra_len)
{
	struct kept_node *k;

	if (ttl == 0 || xchg_kept_find(e, key))
		return 0;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->k.body = malloc(r->body_len ? r->body_len : 1);
	k->k.content_type = r->content_type ? strdup(r->content_type) : NULL;
	if (extra && !(k->k.extra = malloc(extra_len ? extra_len : 1))) {
		kept_free(k);
		return -ENOMEM;
	}
	if (!k->k.body || (r->content_type && !k->k.content_type)) {
		kept_free(k);
		return -ENOMEM;
	}
	if (extra && extra_len)
		memcpy(k->k.extra, extra, extra_len);
	k->k.extra_len = extra ? extra_len : 0;
	if (r->body_len)
		memcpy(k->k.body, r->body, r->body_len);
	kept_trim(e, e->clock.wall(), 1);
	memcpy(k->key, key, XCHG_KEY_LEN);
	k->k.status = r->status;
	k->k.len = r->body_len;
	k->k.expires = e->clock.wall() + ttl;
	k->next = e->kept; /* newest first: trimming drops from the tail */
	e->kept = k;
	e->nkept++;
	return 0;
}

time_t xchg_now(const struct xchg_engine *e)
{
	return e->clock.wall();
}

/* ---- the shared store (K1) ---------------------------------------------- */

/* What the owner kept for @p ex goes to the store, and the claim goes. */
static void publish_kept(struct xchg_engine *e, struct xchg *ex)
{
	const struct xchg_kept *k = xchg_kept_find(e, ex->key);
	time_t now = e->clock.wall();

	if (k) {
		struct store_answer a = {
			.status = k->status, .content_type = k->content_type,
			.body = k->body, .len = k->len,
			.ttl = k->expires > now ? (uint32_t)(k->expires - now) : 1,
		};
		e->store->ops->publish(e->store->s, ex->key, &a);
	} else if (ex->claimed) {
		e->store->ops->publish(e->store->s, ex->key, NULL);
	}
	ex->claimed = 0;
}

/* Another instance's answer for @p ex (already out of the index): kept
 * here as well, then each waiter's outcome, as if it had come upstream. */
static void finish_stored(struct xchg *ex, const struct store_answer *a)
{
	struct xchg_engine *e = ex->e;
	struct upstream_result r = {
		.err = EST_UP_OK, .status = a->status, .content_type = a->content_type,
		.body = a->body, .body_len = a->len,
	};

	xchg_keep(e, ex->key, &r, a->ttl);
	ex->state = XCHG_ANSWERED;
	ex->finishing = 1;
	enter(e);
	log_debug("proxy", "%s answered from the store", ex->what);
	while (ex->waiters && ex->state == XCHG_ANSWERED && !e->dying) {
		struct xchg_wait *w = ex->waiters;
		struct proxy_outcome out;

		wait_unlink(w);
		memset(&out, 0, sizeof(out));
		e->h.outcome(ex, w->param, &r, &out);
		out.upstream_status = 0;
		snprintf(out.note, sizeof(out.note), "from the store");
		call_waiter(e, w, &out);
	}
	xchg_free(ex);
	leave(e);
}

/* Claimed, or the store had no verdict: run or queue it here. */
static void go_local(struct xchg *ex)
{
	struct xchg_engine *e = ex->e;

	if (e->running < e->lim.max_running && !e->qhead && !e->dying) {
		if (start(ex) != 0) {
			index_del(ex);
			finish(ex, &start_failed);
		}
		return;
	}
	queue_push(ex);
	schedule_drain(e);
}

static void on_store(void *arg, enum store_verdict v, const struct store_answer *a)
{
	struct xchg *ex = arg;
	struct xchg_engine *e = ex->e;
	struct timeval tv = { 0, XCHG_POLL_MS * 1000 };

	ex->sop = NULL;
	switch (v) {
	case STORE_ANSWER:
		e->asking--;
		index_del(ex);
		finish_stored(ex, a);
		break;
	case STORE_CLAIMED:
		ex->claimed = 1;
		/* fall through */
	case STORE_DOWN:
		e->asking--;
		go_local(ex);
		break;
	case STORE_BUSY:
		ex->state = XCHG_REMOTE;
		log_debug("proxy", "%s: another instance holds the claim, asking again "
			  "every %d ms", ex->what, XCHG_POLL_MS);
		if (!ex->poll)
			ex->poll = evtimer_new(e->base, on_poll_event, ex);
		if (!ex->poll || evtimer_add(ex->poll, &tv) != 0) {
			e->asking--;
			go_local(ex);
		}
		break;
	}
}

/* REMOTE: ask again, unless nobody waits any more. */
static void on_poll(struct xchg *ex)
{
	struct xchg_engine *e = ex->e;

	if (!ex->waiters) {
		xchg_abort(ex);
		return;
	}
	ex->state = XCHG_STORE;
	ex->sop = e->store ? e->store->ops->claim(e->store->s, ex->key, on_store, ex) : NULL;
	if (!ex->sop) { /* the store went away: local state (K1) */
		e->asking--;
		go_local(ex);
	}
}

static void on_poll_event(evutil_socket_t fd, short what, void *arg)
{
	struct xchg *ex = arg;
	struct xchg_engine *e = ex->e;

	(void)fd;
	(void)what;
	enter(e);
	on_poll(ex);
	leave(e);
}

void xchg_set_store(struct xchg_engine *e, const struct store_if *st)
{
	e->store = st;
}

void xchg_share(struct xchg *ex)
{
	ex->shared = 1;
}

/* ---- the API ------------------------------------------------------------ */

struct xchg_engine *xchg_engine_new(struct event_base *base,
				    const struct xchg_transport *t,
				    const struct xchg_hooks *h,
				    const struct xchg_limits *lim)
{
	struct xchg_engine *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->base = base;
	e->t = *t;
	e->h = *h;
	e->lim = *lim;
	e->clock.mono_ms = real_mono_ms;
	e->clock.wall = real_wall;
	e->drain = event_new(base, -1, 0, on_drain, e);
	if (!e->drain) {
		free(e);
		return NULL;
	}
	return e;
}

void xchg_set_limits(struct xchg_engine *e, const struct xchg_limits *lim)
{
	e->lim = *lim;
	schedule_drain(e); /* max_running may have grown */
}

void xchg_set_clock(struct xchg_engine *e, const struct xchg_clock *c)
{
	e->clock = *c;
}

static void abort_all(struct xchg_engine *e)
{
	for (size_t i = 0; i < BUCKETS; i++)
		while (e->index[i])
			xchg_abort(e->index[i]);
}

static void engine_destroy(struct xchg_engine *e)
{
	abort_all(e);
	while (e->kept) {
		struct kept_node *k = e->kept;
		e->kept = k->next;
		kept_free(k);
	}
	event_free(e->drain);
	free(e);
}

void xchg_engine_free(struct xchg_engine *e)
{
	if (!e)
		return;
	if (e->depth > 0) {
		e->dying = 1;
		abort_all(e);
		return;
	}
	engine_destroy(e);
}

int xchg_room(const struct xchg_engine *e)
{
	return e->running + e->queued + e->asking < e->lim.max_running + e->lim.max_queued;
}

size_t xchg_running(const struct xchg_engine *e)
{
	return e->running;
}

size_t xchg_queued(const struct xchg_engine *e)
{
	return e->queued;
}

struct xchg *xchg_find(struct xchg_engine *e, const uint8_t key[XCHG_KEY_LEN])
{
	for (struct xchg *ex = *bucket(e, key); ex; ex = ex->inext)
		if (memcmp(ex->key, key, XCHG_KEY_LEN) == 0)
			return ex;
	return NULL;
}

struct xchg *xchg_new(struct xchg_engine *e, const uint8_t key[XCHG_KEY_LEN],
		      void *data, const char *what)
{
	struct xchg *ex = calloc(1, sizeof(*ex));

	if (!ex)
		return NULL;
	ex->e = e;
	memcpy(ex->key, key, XCHG_KEY_LEN);
	ex->state = XCHG_RECEIVING;
	ex->data = data;
	snprintf(ex->what, sizeof(ex->what), "%s", what ? what : "exchange");
	index_add(ex);
	return ex;
}

struct est_http_req *xchg_request(struct xchg *ex)
{
	return &ex->req;
}

void xchg_set_opts(struct xchg *ex, const struct upstream_opts *o)
{
	ex->opts = *o;
	ex->has_opts = 1;
}

void *xchg_data(const struct xchg *ex)
{
	return ex->data;
}

enum xchg_state xchg_state(const struct xchg *ex)
{
	return ex->state;
}

const uint8_t *xchg_key(const struct xchg *ex)
{
	return ex->key;
}

int xchg_place(struct xchg *ex)
{
	struct xchg_engine *e = ex->e;

	if (ex->state != XCHG_RECEIVING)
		return -EINVAL;
	if (!xchg_room(e)) {
		xchg_abort(ex);
		return -EBUSY;
	}
	if (ex->shared && e->store) {
		ex->state = XCHG_STORE;
		ex->sop = e->store->ops->claim(e->store->s, ex->key, on_store, ex);
		if (ex->sop) {
			e->asking++;
			return 0;
		}
		ex->state = XCHG_RECEIVING; /* store down: on local state */
	}
	if (e->running < e->lim.max_running && !e->qhead) {
		if (start(ex) != 0) {
			xchg_abort(ex);
			return -EIO;
		}
		return 0;
	}
	queue_push(ex);
	schedule_drain(e);
	return 0;
}

struct xchg_wait *xchg_wait(struct xchg *ex, int param, proxy_done_fn fn,
			    void *arg)
{
	struct xchg_engine *e = ex->e;
	struct xchg_wait *w;
	uint32_t ms = e->lim.answer_within_ms;

	if (ex->state > XCHG_UPSTREAM)
		return NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	if (ms) {
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		w->deadline = evtimer_new(e->base, on_deadline, w);
		/* counted from now: libevent counts a timer from when its loop
		 * last woke, older by whatever ran before in this pass */
		event_base_update_cache_time(e->base);
		if (!w->deadline || evtimer_add(w->deadline, &tv) != 0) {
			wait_free(w);
			return NULL;
		}
	}
	w->ex = ex;
	w->state = WAIT_PENDING;
	w->param = param;
	w->fn = fn;
	w->arg = arg;
	w->next = ex->waiters;
	if (ex->waiters)
		ex->waiters->prev = w;
	ex->waiters = w;
	return w;
}

void xchg_cancel(struct xchg_wait *w)
{
	if (!w || w->state == WAIT_CALLING)
		return;
	wait_unlink(w);
	wait_free(w);
}

void xchg_abort(struct xchg *ex)
{
	struct xchg_engine *e = ex->e;

	if (ex->finishing) { /* inside finish(): it stops and frees */
		ex->state = XCHG_CANCELLED;
		drop_waiters(ex);
		return;
	}
	if (ex->claimed && e->store) { /* let the key go for the next asker */
		e->store->ops->publish(e->store->s, ex->key, NULL);
		ex->claimed = 0;
	}
	switch (ex->state) {
	case XCHG_STORE:
		if (ex->sop)
			e->store->ops->cancel(ex->sop);
		ex->sop = NULL;
		e->asking--;
		break;
	case XCHG_REMOTE:
		e->asking--;
		break;
	case XCHG_QUEUED:
		queue_del(ex);
		break;
	case XCHG_UPSTREAM:
		if (ex->xfer) {
			e->t.cancel(ex->xfer);
			ex->xfer = NULL;
			e->running--;
			schedule_drain(e);
		}
		break;
	default:
		break;
	}
	ex->state = XCHG_CANCELLED;
	index_del(ex);
	xchg_free(ex);
}
