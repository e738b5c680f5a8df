/* upstream.c - libcurl multi driven by libevent (the only file that includes curl).
 *
 * One curl multi handle shares connections (and TLS sessions) across requests.
 * Sockets are watched with one EV_PERSIST event each; curl's timer is one
 * libevent timer. No call here blocks: name resolution is curl's asynchronous
 * resolver, and every transfer has connect and total timeouts.
 */
#include "upstream/upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "tls/keylog.h"
#include "estgw/log.h"

#define HDR_MAX 256
#define FD_RESERVE 64 /* descriptors besides upstream connections */

struct upstream {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	const struct estgw_config *cfg;
	size_t in_flight;
	int running;
	struct timespec reloaded; /* CLOCK_MONOTONIC of the last reload, 0: none */
};

struct upstream_xfer {
	struct upstream *up;
	CURL *easy;
	struct curl_slist *headers;
	upstream_cb cb;
	void *arg;
	uint8_t *body;
	size_t len, cap;
	size_t max_response; /* from the config in force when it started */
	int too_large;
	int in_callback;     /* finish() is calling cb: it frees the transfer */
	char content_type[HDR_MAX];
	char retry_after[HDR_MAX];
	char errbuf[CURL_ERROR_SIZE];
};

/* One per socket curl asks us to watch. */
struct sock_watch {
	struct event *ev;
};

static void xfer_free(struct upstream_xfer *x)
{
	if (!x)
		return;
	if (x->easy) {
		curl_multi_remove_handle(x->up->multi, x->easy);
		curl_easy_cleanup(x->easy);
		x->up->in_flight--;
	}
	curl_slist_free_all(x->headers);
	free(x->body);
	free(x);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct upstream_xfer *x = userdata;
	size_t n = size * nmemb;

	if (x->len + n > x->max_response) {
		x->too_large = 1;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (x->len + n > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;
		while (cap < x->len + n)
			cap *= 2;
		uint8_t *p = realloc(x->body, cap);
		if (!p)
			return 0;
		x->body = p;
		x->cap = cap;
	}
	memcpy(x->body + x->len, ptr, n);
	x->len += n;
	return n;
}

/* Keep one header value, trimmed, when its name matches. */
static void take_header(const char *line, size_t n, const char *name,
			char *dst)
{
	size_t nl = strlen(name);
	if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	const char *v = line + nl + 1;
	const char *end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' ||
			   end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t vl = (size_t)(end - v);
	if (vl >= HDR_MAX)
		vl = HDR_MAX - 1;
	memcpy(dst, v, vl);
	dst[vl] = '\0';
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userdata)
{
	struct upstream_xfer *x = userdata;
	size_t n = size * nmemb;

	/* A new status line (e.g. after 100 Continue) starts a new header set. */
	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		x->content_type[0] = '\0';
		x->retry_after[0] = '\0';
	}
	take_header(line, n, "Content-Type", x->content_type);
	take_header(line, n, "Retry-After", x->retry_after);
	return n;
}

static enum est_upstream_err classify(CURLcode rc, const struct upstream_xfer *x)
{
	if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED)
		return EST_UP_TOO_LARGE;
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return EST_UP_DNS;
	case CURLE_COULDNT_CONNECT:
		return EST_UP_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return EST_UP_TIMEOUT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_USE_SSL_FAILED:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_SHUTDOWN_FAILED:
		return EST_UP_TLS;
	default:
		return EST_UP_PROTOCOL;
	}
}

static void finish(CURL *easy, CURLcode rc)
{
	struct upstream_xfer *x = NULL;
	struct upstream_result r = { 0 };
	long nconn = 0;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
	curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &r.seconds);
	curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &nconn);
	r.reused = (rc == CURLE_OK && nconn == 0);
	if (rc == CURLE_OK) {
		r.err = EST_UP_OK;
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
		r.content_type = x->content_type[0] ? x->content_type : NULL;
		r.retry_after = x->retry_after[0] ? x->retry_after : NULL;
		r.body = x->body;
		r.body_len = x->len;
	} else {
		r.err = classify(rc, x);
		r.errmsg = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
	}
	/* The callback may cancel this transfer (or others, or start new
	 * ones): while it runs, upstream_cancel(x) only leaves it to us. */
	x->in_callback = 1;
	x->cb(x->arg, &r);
	xfer_free(x);
}

static void check_done(struct upstream *up)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(up->multi, &left))) {
		if (m->msg == CURLMSG_DONE)
			finish(m->easy_handle, m->data.result);
	}
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *up = arg;
	int flags = 0;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(up->multi, fd, flags, &up->running);
	check_done(up);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *up = arg;

	curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &up->running);
	check_done(up);
}

/* CURLMOPT_TIMERFUNCTION: schedule, never act from inside curl. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct upstream *up = userp;

	if (timeout_ms < 0) {
		evtimer_del(up->timer);
		return 0;
	}
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	evtimer_add(up->timer, &tv);
	return 0;
}

/* CURLMOPT_SOCKETFUNCTION: one EV_PERSIST event per socket. */
static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp,
			  void *socketp)
{
	struct upstream *up = userp;
	struct sock_watch *w = socketp;

	if (what == CURL_POLL_REMOVE) {
		if (w) {
			event_free(w->ev);
			free(w);
			curl_multi_assign(up->multi, s, NULL);
		}
		return 0;
	}
	short kind = EV_PERSIST;
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	if (!w) {
		w = calloc(1, sizeof(*w));
		if (!w)
			return -1;
		curl_multi_assign(up->multi, s, w);
	} else {
		event_free(w->ev);
	}
	w->ev = event_new(up->base, s, kind, on_sock_event, up);
	if (!w->ev)
		return -1;
	event_add(w->ev, NULL);
	return 0;
}

/* Connections in flight at once: every exchange proxy.c lets run
 * ([upstream] max_concurrent) plus the MASA exchanges brski.c lets run
 * ([brski] max_pending), maybe to the same host. */
static long conn_limit(const struct estgw_config *cfg)
{
	long n = (long)cfg->upstream.max_concurrent;

	if (cfg->brski.enabled)
		n += (long)cfg->brski.max_pending;
	return n;
}

/* Each connection is a descriptor: raise the soft RLIMIT_NOFILE to what
 * the limit needs (systemd starts services with 1024 soft, far more hard). */
static void ensure_fds(long conns)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)conns + FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur >= need)
		return;
	rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) ?
			      need : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur >= need)
		return;
	log_warn("upstream", "%ld upstream connections need %llu file descriptors, "
		 "RLIMIT_NOFILE allows %llu", conns, (unsigned long long)need,
		 (unsigned long long)rl.rlim_max);
}

/* curl's own connection limits are those of the callers: a transfer curl
 * held back behind a lower limit would spend its timeout waiting (16 used
 * to make 200 devices wait in waves of 16). */
static void set_conn_limits(struct upstream *up, const struct estgw_config *cfg)
{
	long n = conn_limit(cfg);

	curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS, n);
	curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, n);
	ensure_fds(n);
}

struct upstream *upstream_new(struct event_base *base,
			      const struct estgw_config *cfg)
{
	struct upstream *up = calloc(1, sizeof(*up));

	if (!up)
		return NULL;
	up->base = base;
	up->cfg = cfg;
	up->multi = curl_multi_init();
	up->timer = evtimer_new(base, on_timer, up);
	if (!up->multi || !up->timer) {
		upstream_free(up);
		return NULL;
	}
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
	set_conn_limits(up, cfg);
	return up;
}

void upstream_free(struct upstream *up)
{
	if (!up)
		return;
	if (up->multi)
		curl_multi_cleanup(up->multi);
	if (up->timer)
		event_free(up->timer);
	free(up);
}

/* After a reload, connections opened before it (with the old TLS client
 * certificate and trust) are not reused, and neither is curl's cached copy
 * of the trust bundle (since 7.87 kept per file name for a day): new
 * exchanges use the new material even when the file names stayed. */
static int set_reload_limits(CURL *e, const struct upstream *up)
{
	struct timespec now;
	long age;
	int bad = 0;

	if (!up->reloaded.tv_sec && !up->reloaded.tv_nsec)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	age = (long)(now.tv_sec - up->reloaded.tv_sec) - 1; /* whole seconds, rounded down */
	if (age < 1)
		bad |= curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L) != CURLE_OK;
	else
		bad |= curl_easy_setopt(e, CURLOPT_MAXLIFETIME_CONN, age) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075700
	bad |= curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, age < 1 ? 0L : age) != CURLE_OK;
#endif
	return bad;
}

/* CURLOPT_SSL_CTX_FUNCTION: curl (OpenSSL backend) hands over the SSL_CTX
 * of each new connection before its handshake; the OpenSSL glue attaches
 * the key log to it. curl's own SSLKEYLOGFILE is read only at start. */
static CURLcode on_ssl_ctx(CURL *e, void *ssl_ctx, void *arg)
{
	estgw_keylog_attach(ssl_ctx);
	return CURLE_OK;
}

/* [log] keylog_file (restart-only, so every pooled connection was made
 * the same way). A curl without the OpenSSL backend refuses the option. */
static void set_keylog(CURL *e, const struct estgw_config *cfg)
{
	static int said;

	if (!cfg->log.keylog_file)
		return;
	if (curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx) != CURLE_OK && !said) {
		said = 1;
		log_warn("keylog", "this libcurl cannot hand over its TLS context: no upstream "
			 "keys are logged");
	}
}

static int set_tls(CURL *e, const struct estgw_config *cfg,
		   const struct upstream_opts *o)
{
	int bad = 0;
	const char *trust = o && o->trust ? o->trust : cfg->upstream.trust;
	const char *cert = o && o->certificate ? o->certificate : cfg->upstream.certificate;
	const char *key = o && o->private_key ? o->private_key : cfg->upstream.private_key;
	bad |= curl_easy_setopt(e, CURLOPT_CAINFO, trust);
	bad |= curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	bad |= curl_easy_setopt(e, CURLOPT_SSLCERT, cert);
	bad |= curl_easy_setopt(e, CURLOPT_SSLKEY, key);
	bad |= curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	set_keylog(e, cfg);
	return bad ? -EINVAL : 0;
}

static int set_request(struct upstream_xfer *x, const struct est_http_req *req,
		       const struct upstream_opts *o)
{
	const struct estgw_config *cfg = x->up->cfg;
	CURL *e = x->easy;
	int bad = 0;

	bad |= curl_easy_setopt(e, CURLOPT_URL, req->url);
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)(o && o->timeout ?
				o->timeout : cfg->upstream.timeout));
	bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT,
				(long)cfg->upstream.connect_timeout);
	bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE,
				(long)(o && o->max_response ? o->max_response :
				       cfg->upstream.max_response));
	bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "estgw");
	if (req->method == EST_POST) {
		char ct[128];
		snprintf(ct, sizeof(ct), "Content-Type: %s", req->content_type);
		x->headers = curl_slist_append(x->headers, ct);
		if (req->transfer_encoding) {
			char te[96];
			snprintf(te, sizeof(te), "Content-Transfer-Encoding: %s",
				 req->transfer_encoding);
			x->headers = curl_slist_append(x->headers, te);
		}
		x->headers = curl_slist_append(x->headers, "Expect:");
		bad |= curl_easy_setopt(e, CURLOPT_POST, 1L);
		bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
		bad |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body);
	}
	if (o && o->accept) {
		char acc[128];
		snprintf(acc, sizeof(acc), "Accept: %s", o->accept);
		x->headers = curl_slist_append(x->headers, acc);
	}
	bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
	bad |= set_reload_limits(e, x->up);
	return bad ? -EINVAL : set_tls(e, cfg, o);
}

struct upstream_xfer *upstream_send(struct upstream *up,
				    const struct est_http_req *req,
				    upstream_cb cb, void *arg)
{
	return upstream_send_opts(up, req, NULL, cb, arg);
}

struct upstream_xfer *upstream_send_opts(struct upstream *up,
					 const struct est_http_req *req,
					 const struct upstream_opts *o,
					 upstream_cb cb, void *arg)
{
	struct upstream_xfer *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->up = up;
	x->cb = cb;
	x->arg = arg;
	x->max_response = o && o->max_response ? o->max_response :
			  up->cfg->upstream.max_response;
	x->easy = curl_easy_init();
	if (!x->easy) {
		free(x);
		return NULL;
	}
	if (set_request(x, req, o) != 0 ||
	    curl_multi_add_handle(up->multi, x->easy) != CURLM_OK) {
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
		xfer_free(x);
		return NULL;
	}
	up->in_flight++;
	return x;
}

void upstream_cancel(struct upstream_xfer *x)
{
	if (x && x->in_callback)
		return; /* finish() frees it when the callback returns */
	xfer_free(x);
}

size_t upstream_in_flight(const struct upstream *up)
{
	return up->in_flight;
}

void upstream_reload(struct upstream *up, const struct estgw_config *cfg)
{
	up->cfg = cfg;
	set_conn_limits(up, cfg);
	clock_gettime(CLOCK_MONOTONIC, &up->reloaded);
}

int upstream_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void upstream_global_cleanup(void)
{
	curl_global_cleanup();
}

const char *upstream_lib_version(void)
{
	return curl_version_info(CURLVERSION_NOW)->version;
}
