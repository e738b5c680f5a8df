/* coap_server.h - the downstream side: libcoap DTLS server on the loop.
 *
 * Owns: the coap_context, endpoints and DTLS set-up, the two resources
 * (/.well-known/core and libcoap's "unknown resource" for every other path,
 * both handed to the request pipeline, pipeline.c, which it owns), the glue
 * to the block-wise state of blockwise.c (Block1 bodies per session + path
 * + Request-Tag, answers kept for Block2 follow-ups), separate responses
 * (libcoap async), per-session client identity, and the one log line per
 * request.
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

/** Serve /.well-known/brski/{rv,vs,es} with @p b (H; before the loop
 *  runs): the pipeline routes them, under the same limits as EST. */
void coap_server_set_brski(struct coap_server *srv, struct brski *b);

/** Switch to @p cfg (SIGHUP): new DTLS handshakes use its certificate, key
 *  and client trust; the session, idle and handshake caps and the rate
 *  limit apply at once; open sessions and pending requests are left alone.
 *  Listen addresses are not changed (restart-only: main.c put the running
 *  ones into @p cfg). On error (-EINVAL: the credentials do not load,
 *  -ENOMEM) nothing changed. @p cfg must outlive the server or the next
 *  reload. */
int coap_server_reload(struct coap_server *srv, const struct estgw_config *cfg);

/** Shutting down: answer new requests 5.03, let pending ones finish. */
void coap_server_quiesce(struct coap_server *srv);

/** Requests still waiting for an answer (or 1 while libcoap still has
 *  responses to deliver); 0 when it is safe to exit. */
size_t coap_server_busy(const struct coap_server *srv);

/** libcoap's version line, for --version. */
const char *coap_server_lib_version(void);

#endif
