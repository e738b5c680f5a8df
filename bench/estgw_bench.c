/* estgw_bench.c - load generator for estgw and its two references
 * (bench-only, not installed; see bench/README.md and docs/performance.md).
 *
 *   estgw-bench coap  --host H --port P [--root R] ...  DTLS devices: handshake + ops
 *   estgw-bench https --url BASE ...                    the same devices straight to the CA
 *   estgw-bench idle  --host H --port P -n K ...        open K DTLS sessions and hold them
 * Common: --device-ca CRT --device-ca-key KEY (devices are issued in-process),
 *   --server-trust PEM, -n devices, -c concurrency, --block BYTES (16..1024),
 *   --ops crts,sen,sren, --pid NAME=PID (CPU and RSS from /proc; repeatable),
 *   --label TEXT, --json FILE (one object per run appended), --timeout S, --hold S,
 *   --samples (every /sen latency in the JSON too, to pool rounds' percentiles).
 * Exit status: 0 when every device succeeded, 3 when some failed, 2 on usage,
 * 1 on set-up errors.
 */
#include "bench.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <coap3/coap.h>
#include <curl/curl.h>

struct args {
	const char *mode, *host, *root, *url, *ca, *ca_key, *trust, *json;
	unsigned port;
	double hold;
};

static int usage(void)
{
	fprintf(stderr,
		"usage: estgw-bench coap|https|idle --device-ca CRT --device-ca-key KEY\n"
		"         [--host H --port P --root R | --url BASE] [--server-trust PEM]\n"
		"         [-n N] [-c C] [--block B] [--ops crts,sen,sren] [--pid NAME=PID]...\n"
		"         [--label L] [--json FILE] [--timeout S] [--hold S] [--samples]\n");
	return 2;
}

static int parse_ops(struct run *r, const char *ops)
{
	char buf[64], *save = NULL, *tok;

	snprintf(buf, sizeof(buf), "%s", ops);
	r->do_crts = r->do_sen = r->do_sren = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "crts") == 0)
			r->do_crts = 1;
		else if (strcmp(tok, "sen") == 0)
			r->do_sen = 1;
		else if (strcmp(tok, "sren") == 0)
			r->do_sren = 1;
		else
			return -1;
	}
	return r->do_crts || r->do_sen || r->do_sren ? 0 : -1;
}

static int add_pid(struct run *r, const char *spec)
{
	const char *eq = strchr(spec, '=');
	struct proc_watch *w;

	if (!eq || r->nprocs == BENCH_MAX_PROCS || (size_t)(eq - spec) >= sizeof(w->name))
		return -1;
	w = &r->procs[r->nprocs++];
	snprintf(w->name, sizeof(w->name), "%.*s", (int)(eq - spec), spec);
	w->pid = (pid_t)atoi(eq + 1);
	return w->pid > 0 ? 0 : -1;
}

static int parse(int argc, char **argv, struct args *a, struct run *r)
{
	static const struct option opts[] = {
		{ "host", 1, NULL, 'H' }, { "port", 1, NULL, 'P' }, { "root", 1, NULL, 'R' },
		{ "url", 1, NULL, 'U' }, { "device-ca", 1, NULL, 'a' },
		{ "device-ca-key", 1, NULL, 'k' }, { "server-trust", 1, NULL, 't' },
		{ "block", 1, NULL, 'b' }, { "ops", 1, NULL, 'o' }, { "pid", 1, NULL, 'p' },
		{ "label", 1, NULL, 'l' }, { "json", 1, NULL, 'j' }, { "timeout", 1, NULL, 'T' },
		{ "hold", 1, NULL, 'h' }, { "samples", 0, NULL, 's' }, { NULL, 0, NULL, 0 },
	};
	int c;

	if (argc < 2)
		return -1;
	a->mode = r->mode = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "n:c:", opts, NULL)) != -1) {
		switch (c) {
		case 'H': a->host = optarg; break;
		case 'P': a->port = (unsigned)atoi(optarg); break;
		case 'R': a->root = optarg; break;
		case 'U': a->url = optarg; break;
		case 'a': a->ca = optarg; break;
		case 'k': a->ca_key = optarg; break;
		case 't': a->trust = optarg; break;
		case 'b': r->block = (size_t)atoi(optarg); break;
		case 'o': if (parse_ops(r, optarg) != 0) return -1; break;
		case 'p': if (add_pid(r, optarg) != 0) return -1; break;
		case 'l': r->label = optarg; break;
		case 'j': a->json = optarg; break;
		case 'T': r->timeout_s = atof(optarg); break;
		case 'h': a->hold = atof(optarg); break;
		case 's': r->samples = 1; break;
		case 'n': r->n = (size_t)atol(optarg); break;
		case 'c': r->concurrency = (size_t)atol(optarg); break;
		default: return -1;
		}
	}
	if (!a->ca || !a->ca_key || r->n == 0 || r->concurrency == 0 ||
	    r->block < 16 || r->block > 1024)
		return -1;
	if (strcmp(a->mode, "https") == 0)
		return a->url ? 0 : -1;
	if (strcmp(a->mode, "coap") && strcmp(a->mode, "idle"))
		return -1;
	return a->host && a->port ? 0 : -1;
}

/* Idle mode holds one socket per session. */
static void raise_nofile(size_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need + 64) {
		rl.rlim_cur = rl.rlim_max < need + 64 ? rl.rlim_max : need + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct args a = { .root = "/.well-known/est", .hold = 2 };
	struct run r = { .label = "run", .n = 20, .concurrency = 4, .block = 1024,
			 .do_crts = 1, .do_sen = 1, .timeout_s = 60 };
	struct device_set set;
	struct coap_target t;
	int rc;

	if (parse(argc, argv, &a, &r) != 0)
		return usage();
	signal(SIGPIPE, SIG_IGN);
	raise_nofile(r.n);
	coap_startup();
	coap_set_log_level(getenv("BENCH_DEBUG") ? LOG_DEBUG : LOG_EMERG);
	coap_dtls_set_log_level(getenv("BENCH_DEBUG") ? LOG_DEBUG : LOG_EMERG);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fprintf(stderr, "estgw-bench: making %zu devices...\n", r.n);
	if (devices_make(&set, r.n, a.ca, a.ca_key, a.trust) != 0)
		return 1;
	t.host = a.host;
	t.port = a.port;
	t.root = a.root;
	if (strcmp(a.mode, "https") == 0)
		rc = https_load_run(&r, &set, a.url);
	else if (strcmp(a.mode, "idle") == 0)
		rc = coap_idle_run(&r, &set, &t, a.hold);
	else
		rc = coap_load_run(&r, &set, &t);
	if (rc == 0)
		run_report(&r, a.json);
	else
		fprintf(stderr, "estgw-bench: set-up failed\n");
	run_free(&r);
	devices_free(&set);
	curl_global_cleanup();
	coap_cleanup();
	return rc != 0 ? 1 : r.failed ? 3 : 0;
}
