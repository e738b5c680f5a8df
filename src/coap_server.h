/* coap_server.h - the downstream side: libcoap DTLS server on the loop.
 *
 * Owns: the coap_context, endpoints, resources (/.well-known/core and every
 * EST path under each root, with or without a label), Block1 reassembly
 * (bounded, per session + path + Request-Tag), separate responses (libcoap
 * async), per-session client identity, and the one log line per request.
 */
#ifndef ESTGW_COAP_SERVER_H
#define ESTGW_COAP_SERVER_H

#include "estgw/config.h"

struct event_base;
struct proxy;
struct coap_server;

struct coap_server *coap_server_new(struct event_base *base,
				    const struct estgw_config *cfg,
				    struct proxy *px);
void coap_server_free(struct coap_server *srv);

struct brski;

/** Serve /.well-known/brski/{rv,vs,es} with @p b (SPEC H; before the loop
 *  runs). */
void coap_server_set_brski(struct coap_server *srv, struct brski *b);

/** libcoap's version line, for --version. */
const char *coap_server_lib_version(void);

#endif
