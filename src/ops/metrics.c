/* metrics.c - the counter registry and its Prometheus text (see metrics.h).
 *
 * Labelled counters are "families" of at most MAX_SERIES series, each keyed
 * by its rendered label set; a series past the cap is counted in
 * estgw_metrics_dropped_series_total instead of growing memory.
 */
#include "ops/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/translate.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_SERIES 128
#define LABELS_MAX 160
#define VALUE_MAX 48 /* bytes of one escaped label value */
#define MAX_OPS 8
#define MAX_CACHE_LABELS 16

struct series {
	char labels[LABELS_MAX]; /* rendered: a="x",b="y" */
	uint64_t value;
};

struct family {
	const char *name, *help;
	size_t n;
	struct series s[MAX_SERIES];
};

/* Upper bounds of the upstream latency histogram, in seconds. */
static const double buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
				  0.5,   1,    2.5,   5,    10,  30 };
#define NBUCKETS ARRAY_SIZE(buckets)

struct histogram {
	char op[32];
	uint64_t count[NBUCKETS]; /* not cumulative; summed when rendered */
	uint64_t total;
	double sum;
};

struct cache_age {
	char label[EST_LABEL_MAX + 1];
	time_t fetched;
};

static struct registry {
	struct family requests, exchanges, up_errors, hs_fail, reloads;
	struct family brski_requests, masa_answers;
	struct family store_ops;   /* [cluster] (K1) */
	int store_state;           /* 0: no store, 1: up, 2: down */
	uint64_t store_outages;
	uint64_t store_rated;      /* requests the shared bucket counted */
	metrics_load_fn load;      /* the EST engine's running and queued */
	void *load_arg;
	struct family jpy_datagrams, jpy_dropped, jpy_sessions_total; /* H6 */
	int64_t jpy_sessions;
	struct histogram hist[MAX_OPS];
	size_t nhist;
	int64_t dtls_sessions, block1;
	struct cache_age cache[MAX_CACHE_LABELS];
	uint64_t dropped;
} reg;

static void init_names(void)
{
	reg.requests.name = "estgw_requests_total";
	reg.requests.help = "CoAP requests answered, by EST path and CoAP response code.";
	reg.exchanges.name = "estgw_upstream_exchanges_total";
	reg.exchanges.help = "Upstream EST exchanges, by operation and HTTP status (error: no HTTP answer).";
	reg.up_errors.name = "estgw_upstream_errors_total";
	reg.up_errors.help = "Upstream exchanges without an HTTP answer, by kind.";
	reg.hs_fail.name = "estgw_dtls_handshake_failures_total";
	reg.hs_fail.help = "Failed DTLS handshakes, by the TLS alert sent (or peer_ALERT when received).";
	reg.reloads.name = "estgw_config_reloads_total";
	reg.reloads.help = "Configuration reloads (SIGHUP), by result.";
	reg.brski_requests.name = "estgw_brski_requests_total";
	reg.brski_requests.help = "cBRSKI pledge requests, by resource (rv, vs, es) and how they were handled.";
	reg.masa_answers.name = "estgw_brski_masa_answers_total";
	reg.masa_answers.help = "MASA answers to voucher requests, by result (voucher, pending, refused, error).";
	reg.store_ops.name = "estgw_cluster_store_ops_total";
	reg.store_ops.help = "Shared-store verdicts on request keys, by result (answer, claimed, busy, down, timeout).";
	reg.jpy_datagrams.name = "estgw_jpy_datagrams_total";
	reg.jpy_datagrams.help = "JPY datagrams relayed, by direction (in: from join proxies, out: answers to them).";
	reg.jpy_dropped.name = "estgw_jpy_dropped_total";
	reg.jpy_dropped.help = "Datagrams on the JPY port dropped, by reason (untrusted, malformed, header, limit, error).";
	reg.jpy_sessions_total.name = "estgw_jpy_pledge_sessions_total";
	reg.jpy_sessions_total.help = "Pledge sessions behind join proxies, by event (opened, expired, closed).";
}

void metrics_reset(void)
{
	memset(&reg, 0, sizeof(reg));
	init_names();
}

/* ---- label helpers ----------------------------------------------------- */

/** Append name="value" to @p out, escaping as the text format wants; the
 *  value is cut at VALUE_MAX bytes so that every label set fits. */
static void add_label(char *out, size_t outlen, const char *name, const char *value)
{
	size_t n = strlen(out), start;

	if (n + strlen(name) + VALUE_MAX + 5 > outlen)
		return; /* cannot happen with the label sets used here */
	if (n)
		out[n++] = ',';
	n += (size_t)sprintf(out + n, "%s=\"", name);
	start = n;
	for (; *value && n - start + 2 <= VALUE_MAX; value++) {
		if (*value == '\\' || *value == '"') {
			out[n++] = '\\';
			out[n++] = *value;
		} else if (*value == '\n') {
			out[n++] = '\\';
			out[n++] = 'n';
		} else {
			out[n++] = *value;
		}
	}
	out[n++] = '"';
	out[n] = '\0';
}

static void family_add(struct family *f, const char *labels)
{
	if (!f->name)
		init_names();
	for (size_t i = 0; i < f->n; i++) {
		if (strcmp(f->s[i].labels, labels) == 0) {
			f->s[i].value++;
			return;
		}
	}
	if (f->n >= MAX_SERIES) {
		reg.dropped++;
		return;
	}
	snprintf(f->s[f->n].labels, LABELS_MAX, "%s", labels);
	f->s[f->n].value = 1;
	f->n++;
}

/** "/.well-known/est/lbl/sen" -> "sen"; discovery -> "core";
 *  "/.well-known/brski/rv" -> "rv" (also vs, es); else "other". */
static const char *path_kind(const char *path)
{
	static const char *const shorts[] = { "crts", "sen", "sren", "att", "skg", "skc" };
	static const char *const brski[] = { "rv", "vs", "es" };
	static const char brski_root[] = "/.well-known/brski/";
	const char *last = strrchr(path ? path : "", '/');

	if (!path || !last)
		return "other";
	if (strcmp(path, "/.well-known/core") == 0)
		return "core";
	for (size_t i = 0; i < ARRAY_SIZE(brski); i++)
		if (strncmp(path, brski_root, sizeof(brski_root) - 1) == 0 &&
		    strcmp(path + sizeof(brski_root) - 1, brski[i]) == 0)
			return brski[i];
	for (size_t i = 0; i < ARRAY_SIZE(shorts); i++)
		if (strcmp(last + 1, shorts[i]) == 0)
			return shorts[i];
	return "other";
}

static const char *err_kind(int err)
{
	static const char *const kinds[] = {
		[EST_UP_OK] = "none",         [EST_UP_CONNECT] = "connect",
		[EST_UP_DNS] = "dns",         [EST_UP_TLS] = "tls",
		[EST_UP_TIMEOUT] = "timeout", [EST_UP_TOO_LARGE] = "too_large",
		[EST_UP_PROTOCOL] = "protocol",
	};
	return err >= 0 && (size_t)err < ARRAY_SIZE(kinds) && kinds[err] ? kinds[err]
									 : "other";
}

/* ---- hooks ------------------------------------------------------------- */

void metrics_request(const char *path, uint8_t code)
{
	char labels[LABELS_MAX] = "", c[8];

	snprintf(c, sizeof(c), "%d.%02d", code >> 5, code & 31);
	add_label(labels, sizeof(labels), "path", path_kind(path));
	add_label(labels, sizeof(labels), "code", c);
	family_add(&reg.requests, labels);
}

static struct histogram *hist_for(const char *op)
{
	for (size_t i = 0; i < reg.nhist; i++)
		if (strcmp(reg.hist[i].op, op) == 0)
			return &reg.hist[i];
	if (reg.nhist >= MAX_OPS)
		return NULL;
	struct histogram *h = &reg.hist[reg.nhist++];
	snprintf(h->op, sizeof(h->op), "%s", op);
	return h;
}

void metrics_upstream(const char *op, int err, long status, double seconds)
{
	char labels[LABELS_MAX] = "", st[24];
	struct histogram *h = hist_for(op);

	if (err == EST_UP_OK)
		snprintf(st, sizeof(st), "%ld", status);
	else
		snprintf(st, sizeof(st), "error");
	add_label(labels, sizeof(labels), "op", op);
	add_label(labels, sizeof(labels), "status", st);
	family_add(&reg.exchanges, labels);
	if (err != EST_UP_OK) {
		labels[0] = '\0';
		add_label(labels, sizeof(labels), "kind", err_kind(err));
		family_add(&reg.up_errors, labels);
	}
	if (!h) {
		reg.dropped++;
		return;
	}
	size_t b = 0;
	while (b < NBUCKETS && seconds > buckets[b])
		b++;
	if (b < NBUCKETS)
		h->count[b]++;
	h->total++;
	h->sum += seconds;
}

void metrics_dtls_sessions(int delta)
{
	reg.dtls_sessions += delta;
}

void metrics_handshake_failure(const char *reason)
{
	char labels[LABELS_MAX] = "";

	add_label(labels, sizeof(labels), "reason", reason && *reason ? reason : "other");
	family_add(&reg.hs_fail, labels);
}

void metrics_block1(int delta)
{
	reg.block1 += delta;
}

void metrics_brski_request(const char *resource, const char *result)
{
	char labels[LABELS_MAX] = "";

	add_label(labels, sizeof(labels), "resource", resource);
	add_label(labels, sizeof(labels), "result", result);
	family_add(&reg.brski_requests, labels);
}

void metrics_brski_masa(const char *result)
{
	char labels[LABELS_MAX] = "";

	add_label(labels, sizeof(labels), "result", result);
	family_add(&reg.masa_answers, labels);
}

void metrics_jpy_datagram(int out)
{
	family_add(&reg.jpy_datagrams, out ? "dir=\"out\"" : "dir=\"in\"");
}

void metrics_jpy_drop(const char *reason)
{
	char labels[LABELS_MAX] = "";

	add_label(labels, sizeof(labels), "reason", reason);
	family_add(&reg.jpy_dropped, labels);
}

void metrics_jpy_session(int delta, const char *event)
{
	char labels[LABELS_MAX] = "";

	reg.jpy_sessions += delta;
	add_label(labels, sizeof(labels), "event", event);
	family_add(&reg.jpy_sessions_total, labels);
}

void metrics_reload(int ok)
{
	family_add(&reg.reloads, ok ? "result=\"ok\"" : "result=\"failed\"");
}

void metrics_crts_fetched(const char *label, time_t when)
{
	struct cache_age *free_slot = NULL;

	for (size_t i = 0; i < MAX_CACHE_LABELS; i++) {
		struct cache_age *c = &reg.cache[i];
		if (c->fetched && strcmp(c->label, label) == 0) {
			c->fetched = when;
			return;
		}
		if (!c->fetched && !free_slot)
			free_slot = c;
	}
	if (!free_slot)
		return;
	snprintf(free_slot->label, sizeof(free_slot->label), "%s", label);
	free_slot->fetched = when;
}

int metrics_crts_fresh(time_t now, uint32_t max_age)
{
	for (size_t i = 0; i < MAX_CACHE_LABELS; i++) {
		const struct cache_age *c = &reg.cache[i];
		if (c->fetched && c->label[0] == '\0')
			return now - c->fetched <= (time_t)max_age;
	}
	return 0;
}

void metrics_store_op(const char *result)
{
	char labels[LABELS_MAX] = "";

	add_label(labels, sizeof(labels), "result", result);
	family_add(&reg.store_ops, labels);
}

void metrics_upstream_load(metrics_load_fn fn, void *arg)
{
	if (!fn && arg != reg.load_arg)
		return; /* another source registered since */
	reg.load = fn;
	reg.load_arg = fn ? arg : NULL;
}

void metrics_store_rate(unsigned n)
{
	reg.store_rated += n;
}

void metrics_store_state(int up)
{
	if (reg.store_state == 1 && !up)
		reg.store_outages++;
	reg.store_state = up ? 1 : 2;
}

int metrics_store_health(void)
{
	return reg.store_state == 0 ? -1 : reg.store_state == 1;
}

/* ---- rendering --------------------------------------------------------- */

static void render_family(FILE *f, const struct family *fam)
{
	if (!fam->name)
		return;
	fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", fam->name, fam->help, fam->name);
	for (size_t i = 0; i < fam->n; i++)
		fprintf(f, "%s{%s} %llu\n", fam->name, fam->s[i].labels,
			(unsigned long long)fam->s[i].value);
}

static void render_gauge(FILE *f, const char *name, const char *help, long long v)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

static void render_histogram(FILE *f)
{
	static const char name[] = "estgw_upstream_duration_seconds";

	fprintf(f, "# HELP %s Duration of upstream EST exchanges.\n# TYPE %s histogram\n",
		name, name);
	for (size_t i = 0; i < reg.nhist; i++) {
		const struct histogram *h = &reg.hist[i];
		char op[LABELS_MAX] = "";
		uint64_t cum = 0;

		add_label(op, sizeof(op), "op", h->op);
		for (size_t b = 0; b < NBUCKETS; b++) {
			cum += h->count[b];
			fprintf(f, "%s_bucket{%s,le=\"%g\"} %llu\n", name, op, buckets[b],
				(unsigned long long)cum);
		}
		fprintf(f, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, op,
			(unsigned long long)h->total);
		fprintf(f, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, op, h->sum, name,
			op, (unsigned long long)h->total);
	}
}

static void render_cache_age(FILE *f, time_t now)
{
	static const char name[] = "estgw_ca_certs_age_seconds";

	fprintf(f, "# HELP %s Age of the cached /cacerts answer, by label (\"\" default).\n"
		   "# TYPE %s gauge\n", name, name);
	for (size_t i = 0; i < MAX_CACHE_LABELS; i++) {
		const struct cache_age *c = &reg.cache[i];
		char label[LABELS_MAX] = "";

		if (!c->fetched)
			continue;
		add_label(label, sizeof(label), "label", c->label);
		fprintf(f, "%s{%s} %lld\n", name, label, (long long)(now - c->fetched));
	}
}

int metrics_render(time_t now, char **text, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);

	if (!f)
		return -ENOMEM;
	if (!reg.requests.name)
		init_names();
	render_family(f, &reg.requests);
	render_family(f, &reg.exchanges);
	render_histogram(f);
	render_family(f, &reg.up_errors);
	render_gauge(f, "estgw_dtls_sessions", "Open DTLS sessions (handshake done).",
		     (long long)reg.dtls_sessions);
	render_family(f, &reg.hs_fail);
	render_gauge(f, "estgw_block1_reassemblies", "Block1 request bodies being reassembled.",
		     (long long)reg.block1);
	if (reg.load) {
		size_t running = 0, queued = 0;

		reg.load(reg.load_arg, &running, &queued);
		render_gauge(f, "estgw_upstream_running", "EST exchanges with the EST server now ([upstream] max_concurrent).",
			     (long long)running);
		render_gauge(f, "estgw_upstream_queued", "EST exchanges queued behind them ([upstream] queue).",
			     (long long)queued);
	}
	render_family(f, &reg.reloads);
	render_cache_age(f, now);
	render_family(f, &reg.brski_requests);
	render_family(f, &reg.masa_answers);
	if (reg.store_state) {
		render_gauge(f, "estgw_cluster_store_up", "1 while the shared store ([cluster] redis) answers.",
			     reg.store_state == 1);
		fprintf(f, "# HELP estgw_cluster_store_outages_total Times the shared store went away.\n"
			   "# TYPE estgw_cluster_store_outages_total counter\n"
			   "estgw_cluster_store_outages_total %llu\n",
			(unsigned long long)reg.store_outages);
		fprintf(f, "# HELP estgw_cluster_rate_shared_total Requests the shared rate-limit bucket counted and answered.\n"
			   "# TYPE estgw_cluster_rate_shared_total counter\n"
			   "estgw_cluster_rate_shared_total %llu\n",
			(unsigned long long)reg.store_rated);
		render_family(f, &reg.store_ops);
	}
	render_family(f, &reg.jpy_datagrams);
	render_family(f, &reg.jpy_dropped);
	render_family(f, &reg.jpy_sessions_total);
	render_gauge(f, "estgw_jpy_pledge_sessions", "Pledge sessions relayed from join proxies now.",
		     (long long)reg.jpy_sessions);
	fprintf(f, "# HELP estgw_metrics_dropped_series_total Updates dropped: too many label sets.\n"
		   "# TYPE estgw_metrics_dropped_series_total counter\n"
		   "estgw_metrics_dropped_series_total %llu\n",
		(unsigned long long)reg.dropped);
	if (fclose(f) != 0 || !buf) {
		free(buf);
		return -ENOMEM;
	}
	*text = buf;
	*len = n;
	return 0;
}
