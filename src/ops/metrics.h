/* metrics.h - operational counters and their Prometheus text form.
 *
 * Owns: one process-wide registry of counters, gauges and a histogram
 * (plain C structs: the loop is single-threaded), the Prometheus text
 * exposition (format 0.0.4, names prefixed estgw_), the /healthz verdict,
 * and (metrics_http.c) the evhttp listener that serves both.
 * The hooks are one-line calls from where things happen: coap_server.c
 * (request answered, DTLS session, Block1), dtls_openssl.c (handshake
 * alerts), proxy.c (upstream exchange, /cacerts cache), brski.c (pledge
 * requests, MASA exchanges and answers), main.c (reloads).
 * Label values come from small fixed sets (paths are reduced to the EST
 * short name), and every family holds a bounded number of series.
 * Must not: log, or include libcoap, curl or OpenSSL.
 */
#ifndef ESTGW_METRICS_H
#define ESTGW_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct event_base;
struct metrics_server;

/** A request answered: @p path as the device sent it (reduced to crts,
 *  sen, sren, att, skg, skc, core, rv, vs, es or other), @p code the CoAP
 *  code byte. */
void metrics_request(const char *path, uint8_t code);

/** An upstream exchange ended: @p op is the EST operation ("cacerts"),
 *  @p err an enum est_upstream_err (0: an HTTP @p status came back),
 *  @p seconds its duration. */
void metrics_upstream(const char *op, int err, long status, double seconds);

/** A DTLS session finished its handshake (+1) or went away (-1). */
void metrics_dtls_sessions(int delta);

/** A DTLS handshake failed; @p reason is a short token ("unknown_ca"). */
void metrics_handshake_failure(const char *reason);

/** A Block1 reassembly started (+1) or ended (-1). */
void metrics_block1(int delta);

/** A cBRSKI pledge request was handled: @p resource "rv", "vs" or "es";
 *  @p result from brski.c's fixed set: rv "sent" (a new MASA exchange),
 *  "joined" (one in flight), "kept" (a kept voucher or 202), "refused"
 *  (the checks said no), "busy", "error"; vs and es "success",
 *  "failure", "refused" (not a status report). */
void metrics_brski_request(const char *resource, const char *result);

/** A MASA exchange ended: @p result "voucher", "pending" (202),
 *  "refused" (a 4xx), "error" (anything else, no answer included). */
void metrics_brski_masa(const char *result);

/** JPY relay (H6): a datagram relayed from a join proxy (@p out 0) or an
 *  answer sent to one (1). */
void metrics_jpy_datagram(int out);

/** A datagram on the JPY port dropped; @p reason from jpy_relay.c's fixed
 *  set: "untrusted", "malformed", "header", "limit", "error". */
void metrics_jpy_drop(const char *reason);

/** A pledge session opened (+1, "opened") or ended (-1, "expired" when
 *  idle, "closed" when its DTLS session went away). */
void metrics_jpy_session(int delta, const char *event);

/** A configuration reload: @p ok 1 applied, 0 refused. */
void metrics_reload(int ok);

/** The /cacerts cache of @p label ("" default) was filled at @p when. */
void metrics_crts_fetched(const char *label, time_t when);

/** 1 when the default label's /cacerts cache is at most @p max_age
 *  seconds old at @p now, else 0 (also when it was never filled). */
int metrics_crts_fresh(time_t now, uint32_t max_age);

/** [cluster]: one verdict of the shared store on a request key:
 *  "answer", "claimed", "busy", "down" (not asked: store down) or
 *  "timeout" (no answer within store_timeout). */
void metrics_store_op(const char *result);
/** What the EST exchange engine has now: exchanges upstream and queued
 *  behind [upstream] max_concurrent. Asked when /metrics is rendered. */
typedef void (*metrics_load_fn)(void *arg, size_t *running, size_t *queued);
/** Register the source of the upstream load gauges; @p fn NULL removes
 *  the one registered with @p arg. */
void metrics_upstream_load(metrics_load_fn fn, void *arg);
/** [cluster]: the shared rate-limit bucket answered for @p n requests. */
void metrics_store_rate(unsigned n);
/** [cluster]: the shared store is up (1) or down (0); an up -> down
 *  change counts one outage. */
void metrics_store_state(int up);
/** -1: no store configured; 1: up; 0: down (/healthz says which). */
int metrics_store_health(void);

/** The whole registry as Prometheus text (malloc'd, NUL-terminated).
 *  Returns 0 or -ENOMEM. */
int metrics_render(time_t now, char **text, size_t *len);

/** Forget everything (unit tests). */
void metrics_reset(void);

struct estgw_addr;

/** Serve GET /metrics and /healthz on @p addr ([metrics] listen, parsed by
 *  config.c) with libevent's HTTP server on @p base. /healthz is 200
 *  while the CA certificate cache is at most @p crts_max_age seconds old. */
struct metrics_server *metrics_server_new(struct event_base *base,
					  const struct estgw_addr *addr,
					  uint32_t crts_max_age);
/** A reload changed [metrics] crts_max_age. */
void metrics_server_set_max_age(struct metrics_server *ms, uint32_t crts_max_age);
void metrics_server_free(struct metrics_server *ms);

#endif
