/* main.c - estgw entry point: command line, then named set-up steps.
 *
 * Owns the process: the event_base, signals (as loop events), start-up and
 * shutdown order, the configuration in force (a heap object replaced on
 * SIGHUP), and the service manager's notifications. The only file that may
 * exit().
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/brski.h"
#include "downstream/coap_server.h"
#include "tls/dtls.h"
#include "tls/hs_trim.h"
#include "tls/keylog.h"
#include "estgw/config.h"
#include "estgw/log.h"
#include "estgw_build.h"
#include "ops/memory.h"
#include "ops/metrics.h"
#include "pki/pki.h"
#include "core/proxy.h"
#include "upstream/store_redis.h"
#include "upstream/upstream.h"

#define DEFAULT_CONFIG "/etc/estgw/estgw.conf"
#define DRAIN_TICK_MS 50

static const int stop_signals[3] = { SIGINT, SIGTERM, SIGHUP };

/** Set by a stop signal that comes before the loop's own signal events are
 *  in place (start-up) or after they are gone (teardown). */
static volatile sig_atomic_t stop_before_loop;

struct options {
	const char *config;
	int check;
	int use_syslog;
	int verbose;
};

struct gateway {
	const struct options *opt;
	struct estgw_config *cfg; /**< in force; replaced by reload() */
	struct event_base *base;
	struct upstream *up;
	struct proxy *px;
	struct brski *brski;
	struct estgw_config *brski_cfg; /**< the config brski was made with */
	struct coap_server *srv;
	struct metrics_server *ms;
	struct estgw_store *store; /**< [cluster] (K1), NULL: none (K2) */
	struct event *sigs[3];    /**< SIGINT, SIGTERM, SIGHUP */
	struct event *drain;      /**< shutdown: polls for in-flight work */
	struct timespec deadline; /**< shutdown: end of [server] shutdown_grace */
	int stopping;
};

static void print_version(void)
{
	printf("estgw %s\n", ESTGW_VERSION);
	printf("libcoap %s\n", coap_server_lib_version());
	printf("libcurl %s\n", upstream_lib_version());
	printf("libevent %s\n", event_get_version());
	printf("%s\n", estgw_pki_lib_version());
	printf("%s (DTLS backend)\n", estgw_dtls_backend_version());
#ifdef ESTGW_SD_NOTIFY
	printf("sd_notify: yes\n");
#else
	printf("sd_notify: no\n");
#endif
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: estgw [-c FILE] [--check] [--syslog] [-v]\n"
		"       estgw --version\n"
		"  -c, --config FILE  configuration file (INI), default " DEFAULT_CONFIG "\n"
		"      --check        validate the configuration and exit\n"
		"      --syslog       log to syslog instead of stderr\n"
		"  -v, --verbose      debug logging\n");
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'C' },
		{ "syslog", no_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "c:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': o->config = optarg; break;
		case 'C': o->check = 1; break;
		case 'S': o->use_syslog = 1; break;
		case 'v': o->verbose = 1; break;
		case 'V': print_version(); exit(0);
		case 'h': usage(stdout); exit(0);
		default: return -1;
		}
	}
	if (!o->config)
		o->config = DEFAULT_CONFIG;
	if (optind != argc)
		return -1;
	return 0;
}

/** Tell the service manager (systemd Type=notify; sd_notify(3)'s protocol):
 *  one datagram with the state to the AF_UNIX socket named in NOTIFY_SOCKET,
 *  a path or, with a leading '@', an abstract name; nothing without it. The
 *  protocol is one sendto(), so it is written here instead of linking
 *  libsystemd, which with the compression and crypto libraries it loads costs
 *  about 1 MiB of resident memory (docs/performance.md, "Memory budget").
 *  Never blocks the loop: a full queue drops the message. */
static void notify(const char *state)
{
#ifdef ESTGW_SD_NOTIFY
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = name ? strlen(name) : 0;
	int fd;

	if (n < 2 || (name[0] != '/' && name[0] != '@') || n >= sizeof(sa.sun_path))
		return; /* unset, or a kind (vsock:) this build does not speak */
	memcpy(sa.sun_path, name, n);
	if (name[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, state, strlen(state), MSG_DONTWAIT | MSG_NOSIGNAL,
		   (const struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
		log_warn("main", "sd_notify %s to %s: %s", state, name, strerror(errno));
	close(fd);
#else
	(void)state;
#endif
}

static void free_config(struct estgw_config *cfg)
{
	estgw_config_free(cfg);
	free(cfg);
}

/** The loud line for [log] keylog_file, appended to @p warn. */
static void warn_keylog(const struct estgw_config *cfg, char *warn, size_t warnlen)
{
	size_t used = strlen(warn);

	if (!cfg->log.keylog_file)
		return;
	if (used && used + 2 < warnlen)
		warn[used++] = '\n';
	snprintf(warn + used, warnlen - used, "%s:%u: [log] keylog_file: the session keys "
		 "of every DTLS and upstream TLS connection are written to %s: anyone who "
		 "reads it can decrypt captured traffic, server-generated private keys "
		 "included; for debugging only, remove the key and the file afterwards",
		 cfg->path, cfg->log.keylog_file_src.line, cfg->log.keylog_file);
}

/** Parse and check the file; NULL with one line in @p err on failure. */
static struct estgw_config *read_config(const char *path, char *err, size_t errlen,
					char *warn, size_t warnlen)
{
	struct estgw_config *cfg = calloc(1, sizeof(*cfg));

	warn[0] = '\0';
	if (!cfg) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	if (estgw_config_load(path, cfg, err, errlen) != 0) {
		free(cfg);
		return NULL;
	}
	if (estgw_config_verify_pki(cfg, err, errlen, warn, warnlen) != 0) {
		free_config(cfg);
		return NULL;
	}
	return cfg;
}

/** Each line of @p warn as a log line of @p group, or with NULL on stderr
 *  (--check: logging has not started). */
static void print_warnings(const char *warn, const char *group)
{
	for (const char *p = warn; *p;) {
		int n = (int)strcspn(p, "\n");

		if (group)
			log_warn(group, "%.*s", n, p);
		else
			fprintf(stderr, "estgw: warning: %.*s\n", n, p);
		p += n + (p[n] == '\n');
	}
}

/** The file for main(); its warnings in @p warn (printed now for --check). */
static struct estgw_config *load_config(const struct options *o, char *warn, size_t warnlen)
{
	char err[512] = "";
	struct estgw_config *cfg = read_config(o->config, err, sizeof(err), warn, warnlen);

	if (!cfg) {
		fprintf(stderr, "estgw: %s\n", err);
		return NULL;
	}
	if (o->check) { /* a start says so when it opens the file */
		warn_keylog(cfg, warn, warnlen);
		print_warnings(warn, NULL);
	}
	return cfg;
}

static void apply_log_settings(const struct gateway *gw)
{
	estgw_log_set_format(gw->cfg->log.format);
	estgw_log_set_level(gw->opt->verbose ? LOG_DEBUG : gw->cfg->log.level);
}

/** The restart-only keys (the schema's RESTART column) a reload found
 *  changed: named once the reload is known to go through. */
struct kept_key {
	const char *section, *key; /* the schema's own strings */
	unsigned line;
};

struct kept_keys {
	struct kept_key k[ESTGW_CFG_MAX_KEYS];
	size_t n;
};

static void note_kept(void *arg, const char *section, const char *key, unsigned line)
{
	struct kept_keys *kk = arg;

	if (kk->n < ESTGW_CFG_MAX_KEYS)
		kk->k[kk->n++] = (struct kept_key){ section, key, line };
}

static void log_kept(const struct kept_keys *kk, const char *path)
{
	for (size_t i = 0; i < kk->n; i++)
		log_warn("reload", "%s:%u: [%s] %s changed: needs a restart; the running "
			 "value stays", path, kk->k[i].line, kk->k[i].section, kk->k[i].key);
}

/** The heap's free pages and the clean library pages start-up (or a reload)
 *  touched go back to the system (ops/memory.c). */
static void settle_memory(const char *after)
{
	struct estgw_mem_settled m;

	estgw_mem_settle(&m);
	log_info("main", "memory after %s: %zu kB of heap and %zu kB of library "
		 "pages given back, RSS %zu kB", after, m.heap_kb, m.pages_kb, m.rss_kb);
}

/** SIGHUP: read everything again; on any error keep the running config. */
static void reload(struct gateway *gw)
{
	char err[512] = "", warn[2048] = "";
	struct kept_keys kept = { .n = 0 };
	struct estgw_config *next;
	int rc;

	notify("RELOADING=1");
	next = read_config(gw->opt->config, err, sizeof(err), warn, sizeof(warn));
	if (next && estgw_config_keep_restart(gw->cfg, next, note_kept, &kept) != 0) {
		snprintf(err, sizeof(err), "%s: out of memory", next->path);
		free_config(next);
		next = NULL;
	}
	if (next)
		warn_keylog(next, warn, sizeof(warn)); /* the one in force */
	if (next && (rc = coap_server_reload(gw->srv, next)) != 0) {
		if (rc == -ENOMEM)
			snprintf(err, sizeof(err), "%s: out of memory", next->path);
		else
			snprintf(err, sizeof(err), "%s:%u: [server] certificate: the DTLS "
				 "credentials do not load", next->path,
				 next->server.certificate_src.line);
		free_config(next);
		next = NULL;
	}
	if (!next) {
		log_err("reload", "configuration not reloaded, the running one stays: %s", err);
		metrics_reload(0);
		notify("READY=1");
		return;
	}
	upstream_reload(gw->up, next);
	proxy_reload(gw->px, next);
	metrics_server_set_max_age(gw->ms, next->metrics.crts_max_age);
	log_kept(&kept, next->path);
	/* brski keeps pointers into the config it was made with ([brski] keys
	 * are restart-only, and it signs with the registrar key it loaded):
	 * that one lives until exit. */
	if (gw->cfg != gw->brski_cfg)
		free_config(gw->cfg);
	else if (gw->brski)
		log_warn("reload", "cBRSKI keeps the registrar key and certificate it "
			 "started with ([server] private_key, certificate) until a restart");
	gw->cfg = next;
	apply_log_settings(gw);
	print_warnings(warn, "reload");
	metrics_reload(1);
	log_info("reload", "configuration reloaded from %s", gw->cfg->path);
	settle_memory("reload");
	notify("READY=1");
}

static double secs_left(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(deadline->tv_sec - now.tv_sec) +
	       (double)(deadline->tv_nsec - now.tv_nsec) / 1e9;
}

/** Shutdown tick: exit once nothing is in flight or the grace is over. */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
	struct gateway *gw = arg;
	size_t busy = gw->srv ? coap_server_busy(gw->srv) : 0; /* none before it opens */

	if (busy && secs_left(&gw->deadline) > 0)
		return;
	if (busy)
		log_warn("main", "shutdown grace (%us) over: %zu request(s) still in "
			 "flight are dropped", gw->cfg->server.shutdown_grace, busy);
	event_base_loopexit(gw->base, NULL);
}

/** SIGTERM/SIGINT: stop taking requests, let in-flight ones finish within
 *  [server] shutdown_grace; a second signal exits at once. */
static void begin_shutdown(struct gateway *gw, int sig)
{
	const struct timeval tick = { 0, DRAIN_TICK_MS * 1000 };

	if (gw->stopping) {
		log_info("main", "signal %d again: exiting now", sig);
		event_base_loopexit(gw->base, NULL);
		return;
	}
	gw->stopping = 1;
	notify("STOPPING=1");
	log_info("main", "signal %d: shutting down (%zu request(s) in flight, grace %us)",
		 sig, gw->srv ? coap_server_busy(gw->srv) : 0, gw->cfg->server.shutdown_grace);
	if (gw->srv)
		coap_server_quiesce(gw->srv);
	clock_gettime(CLOCK_MONOTONIC, &gw->deadline);
	gw->deadline.tv_sec += gw->cfg->server.shutdown_grace;
	gw->drain = event_new(gw->base, -1, EV_PERSIST, on_drain, gw);
	if (!gw->drain || event_add(gw->drain, &tick) != 0)
		event_base_loopexit(gw->base, NULL);
	else
		on_drain(-1, 0, gw);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct gateway *gw = arg;

	if (sig == SIGHUP) {
		if (!gw->stopping)
			reload(gw);
		return;
	}
	begin_shutdown(gw, (int)sig);
}

/** The handler outside the loop: before start() adds the loop's signal
 *  events, and again once stop() has freed them (libevent puts back the
 *  handler it found). It only notes a stop request: a signal during start-up
 *  or teardown, even the second SIGTERM of an orchestrator, ends in a clean
 *  exit with status 0 instead of the default action. SIGHUP is ignored
 *  there: there is nothing to reload yet, or any more. */
static void on_signal_outside_loop(int sig)
{
	if (sig != SIGHUP)
		stop_before_loop = sig;
}

static void catch_signals_outside_loop(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal_outside_loop;
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 3; i++)
		sigaction(stop_signals[i], &sa, NULL);
}

/** [log] keylog_file: open before any handshake can happen. */
static int open_keylog(const struct estgw_config *cfg)
{
	char err[512];

	if (!cfg->log.keylog_file)
		return 0;
	if (estgw_keylog_open(cfg->log.keylog_file, err, sizeof(err)) != 0) {
		log_err("keylog", "%s:%u: [log] keylog_file: %s", cfg->path,
			cfg->log.keylog_file_src.line, err);
		return -1;
	}
	log_warn("keylog", "KEY LOG ON: the secrets of every DTLS and upstream TLS "
		 "session are appended to %s (for decrypting captures; turn it off when "
		 "done)", cfg->log.keylog_file);
	return 0;
}

/** 0: running; 1: a stop signal came during start-up; -1: failed. */
static int start(struct gateway *gw)
{
	signal(SIGPIPE, SIG_IGN);
	if (open_keylog(gw->cfg) != 0)
		return -1;
	if (upstream_global_init() != 0)
		return -1;
	/* Precise monotonic time for timers: libevent's default coarse clock
	 * runs up to a tick behind, so answer_within (D2) could fire early. */
	struct event_config *ec = event_config_new();
	if (!ec)
		return -1;
	event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
	gw->base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (!gw->base)
		return -1;
	for (int i = 0; i < 3; i++) {
		gw->sigs[i] = evsignal_new(gw->base, stop_signals[i], on_signal, gw);
		if (!gw->sigs[i] || evsignal_add(gw->sigs[i], NULL) != 0)
			return -1;
	}
	/* From here on signals are loop events; one that came before is not lost. */
	if (stop_before_loop) {
		log_info("main", "signal %d during start-up: exiting", (int)stop_before_loop);
		stop_before_loop = 0;
		return 1;
	}
	gw->up = upstream_new(gw->base, gw->cfg);
	if (!gw->up)
		return -1;
	gw->px = proxy_new(gw->base, gw->up, gw->cfg);
	if (!gw->px)
		return -1;
	if (gw->cfg->cluster.redis) { /* K1; without [cluster] nothing changes (K2) */
		char err[512] = "";
		gw->store = store_redis_new(gw->base, gw->cfg, err, sizeof(err));
		if (!gw->store) {
			log_err("cluster", "%s", err);
			return -1;
		}
		proxy_set_store(gw->px, store_redis_if(gw->store));
	}
	/* Open the CoAP side once /crts can be answered at once: a separate
	 * multi-block answer is lost by libcoap clients before 4.3.5. The
	 * fetch ends within [upstream] timeout whatever the CA does. */
	while (proxy_warming(gw->px) && !event_base_got_exit(gw->base))
		event_base_loop(gw->base, EVLOOP_ONCE);
	if (event_base_got_exit(gw->base))
		return gw->stopping ? 1 : -1;
	gw->srv = coap_server_new(gw->base, gw->cfg, gw->px);
	if (!gw->srv)
		return -1;
	if (gw->cfg->brski.enabled) {
		gw->brski = brski_new(gw->base, gw->up, gw->cfg);
		gw->brski_cfg = gw->cfg;
		if (!gw->brski)
			return -1;
		brski_set_store(gw->brski, store_redis_if(gw->store));
		coap_server_set_brski(gw->srv, gw->brski);
	}
	if (gw->cfg->metrics.listen.salen) {
		gw->ms = metrics_server_new(gw->base, &gw->cfg->metrics.listen,
					    gw->cfg->metrics.crts_max_age);
		if (!gw->ms)
			return -1;
	}
	return 0;
}

static void stop(struct gateway *gw)
{
	store_redis_close(gw->store); /* no store callback runs after this */
	metrics_server_free(gw->ms);
	coap_server_free(gw->srv); /* cancels its pending proxy jobs */
	brski_free(gw->brski);     /* cancels its MASA transfers */
	proxy_free(gw->px);        /* cancels its upstream transfers */
	store_redis_free(gw->store);
	upstream_free(gw->up);
	for (int i = 0; i < 3; i++)
		if (gw->sigs[i])
			event_free(gw->sigs[i]);
	if (gw->drain)
		event_free(gw->drain);
	if (gw->base)
		event_base_free(gw->base);
	upstream_global_cleanup();
	estgw_keylog_close();
	if (gw->brski_cfg && gw->brski_cfg != gw->cfg)
		free_config(gw->brski_cfg);
	free_config(gw->cfg);
}

int main(int argc, char **argv)
{
	struct options opt = { 0 };
	struct gateway gw;
	char warn[2048] = "";
	int rc = 1;

	memset(&gw, 0, sizeof(gw));
	gw.opt = &opt;
	catch_signals_outside_loop();
	if (parse_args(argc, argv, &opt) != 0) {
		usage(stderr);
		return 2;
	}
	gw.cfg = load_config(&opt, warn, sizeof(warn));
	if (!gw.cfg)
		return 1;
	/* before anything makes OpenSSL allocate (read_config does not) */
	int hooked = gw.cfg->server.trim_handshake_buffers && estgw_hs_trim_init();
	if (opt.check) {
		printf("%s: configuration OK\n", opt.config);
		free_config(gw.cfg);
		return 0;
	}
	estgw_log_init(opt.use_syslog, opt.verbose ? LOG_DEBUG : gw.cfg->log.level);
	apply_log_settings(&gw);
	print_warnings(warn, "config");
	if (gw.cfg->server.trim_handshake_buffers && !hooked)
		log_warn("dtls", "[server] trim_handshake_buffers: OpenSSL %s does not take "
			 "estgw's allocation hooks; idle sessions keep their handshake buffer",
			 estgw_dtls_backend_version());
	switch (start(&gw)) {
	case 0:
		settle_memory("start-up");
		log_info("main", "estgw %s ready, upstream %s", ESTGW_VERSION,
			 gw.cfg->upstream.url);
		notify("READY=1");
		event_base_dispatch(gw.base);
		rc = 0;
		break;
	case 1:
		rc = 0; /* a stop signal during start-up */
		break;
	default:
		log_err("main", "start-up failed");
	}
	stop(&gw);
	return rc;
}
