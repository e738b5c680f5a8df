/* main.c - estgw entry point: command line, then named set-up steps.
 *
 * Owns the process: the event_base, signals (as loop events), start-up and
 * shutdown order. The only file that may exit().
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <mbedtls/version.h>

#include "brski.h"
#include "coap_server.h"
#include "dtls.h"
#include "estgw/config.h"
#include "estgw/log.h"
#include "estgw_build.h"
#include "pki.h"
#include "proxy.h"
#include "upstream.h"

struct options {
	const char *config;
	int check;
	int use_syslog;
	int verbose;
};

struct gateway {
	struct estgw_config cfg;
	struct event_base *base;
	struct upstream *up;
	struct proxy *px;
	struct brski *brski;
	struct coap_server *srv;
	struct event *sigs[2];
};

static void print_version(void)
{
	char mbed[64];

	mbedtls_version_get_string_full(mbed);
	printf("estgw %s\n", ESTGW_VERSION);
	printf("libcoap %s\n", coap_server_lib_version());
	printf("libcurl %s\n", curl_version_info(CURLVERSION_NOW)->version);
	printf("libevent %s\n", event_get_version());
	printf("%s\n", mbed);
	printf("%s (DTLS backend)\n", estgw_dtls_backend_version());
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: estgw -c FILE [--check] [--syslog] [-v]\n"
		"       estgw --version\n"
		"  -c, --config FILE  configuration file (INI)\n"
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
	if (!o->config || optind != argc)
		return -1;
	return 0;
}

static int load_config(const struct options *o, struct estgw_config *cfg)
{
	char err[512] = "", warn[512] = "";

	if (estgw_config_load(o->config, cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "estgw: %s\n", err);
		return -1;
	}
	if (estgw_config_verify_pki(cfg, err, sizeof(err), warn, sizeof(warn)) != 0) {
		fprintf(stderr, "estgw: %s\n", err);
		estgw_config_free(cfg);
		return -1;
	}
	if (warn[0])
		fprintf(stderr, "estgw: warning: %s\n", warn);
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct gateway *gw = arg;

	log_info("main", "signal %d: shutting down", (int)sig);
	event_base_loopexit(gw->base, NULL);
}

static int start(struct gateway *gw)
{
	static const int signals[2] = { SIGINT, SIGTERM };

	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return -1;
	gw->base = event_base_new();
	if (!gw->base)
		return -1;
	for (int i = 0; i < 2; i++) {
		gw->sigs[i] = evsignal_new(gw->base, signals[i], on_signal, gw);
		if (!gw->sigs[i] || evsignal_add(gw->sigs[i], NULL) != 0)
			return -1;
	}
	gw->up = upstream_new(gw->base, &gw->cfg);
	if (!gw->up)
		return -1;
	gw->px = proxy_new(gw->base, gw->up, &gw->cfg);
	if (!gw->px)
		return -1;
	/* Open the CoAP side once /crts can be answered at once: a separate
	 * multi-block answer is lost by libcoap clients before 4.3.5. The
	 * fetch ends within [upstream] timeout whatever the CA does. */
	while (proxy_warming(gw->px) && !event_base_got_exit(gw->base))
		event_base_loop(gw->base, EVLOOP_ONCE);
	if (event_base_got_exit(gw->base))
		return -1;
	gw->srv = coap_server_new(gw->base, &gw->cfg, gw->px);
	if (!gw->srv)
		return -1;
	if (gw->cfg.brski.enabled) {
		gw->brski = brski_new(gw->base, gw->up, &gw->cfg);
		if (!gw->brski)
			return -1;
		coap_server_set_brski(gw->srv, gw->brski);
	}
	return 0;
}

static void stop(struct gateway *gw)
{
	coap_server_free(gw->srv); /* cancels its pending proxy jobs */
	brski_free(gw->brski);     /* cancels its MASA transfers */
	proxy_free(gw->px);        /* cancels its upstream transfers */
	upstream_free(gw->up);
	for (int i = 0; i < 2; i++)
		if (gw->sigs[i])
			event_free(gw->sigs[i]);
	if (gw->base)
		event_base_free(gw->base);
	curl_global_cleanup();
	estgw_config_free(&gw->cfg);
}

int main(int argc, char **argv)
{
	struct options opt = { 0 };
	struct gateway gw;
	int rc = 1;

	memset(&gw, 0, sizeof(gw));
	if (parse_args(argc, argv, &opt) != 0) {
		usage(stderr);
		return 2;
	}
	if (load_config(&opt, &gw.cfg) != 0)
		return 1;
	if (opt.check) {
		printf("%s: configuration OK\n", opt.config);
		estgw_config_free(&gw.cfg);
		return 0;
	}
	estgw_log_init(opt.use_syslog, opt.verbose ? LOG_DEBUG : gw.cfg.log.level);
	if (start(&gw) == 0) {
		log_info("main", "estgw %s ready, upstream %s", ESTGW_VERSION,
			 gw.cfg.upstream.url);
		event_base_dispatch(gw.base);
		rc = 0;
	} else if (gw.base && event_base_got_exit(gw.base)) {
		rc = 0; /* a signal during start-up */
	} else {
		log_err("main", "start-up failed");
	}
	stop(&gw);
	return rc;
}
