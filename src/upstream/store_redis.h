/* store_redis.h - the shared store on Redis ([cluster], K1): hiredis's
 * asynchronous client with its libevent adapter on estgw's one loop.
 *
 * Owns: the connection (TCP or a unix socket, AUTH, a PING before it is
 * called up), reconnecting with backoff, the one log line per outage and the
 * store metrics; the key names under [cluster] prefix; the Lua scripts that
 * make lookup-or-claim, publish-and-release and the shared token bucket
 * atomic; the claims this instance holds and their refresh; sealing the
 * answers (tls/seal.c); the telemetry stream (XADD ... MAXLEN ~).
 * Must not: block (connect, name lookup and AUTH are asynchronous), make a
 * request wait longer than [cluster] store_timeout, know CoAP or EST.
 */
#ifndef ESTGW_STORE_REDIS_H
#define ESTGW_STORE_REDIS_H

#include <stddef.h>

#include "estgw/config.h"
#include "upstream/store.h"

struct event_base;

/** The store of @p cfg ([cluster] redis set), connecting in the
 *  background; NULL with the reason in @p err (the seal key or password
 *  file cannot be read, out of memory). */
struct estgw_store *store_redis_new(struct event_base *base,
				    const struct estgw_config *cfg, char *err,
				    size_t errlen);
/** What core holds (ops + the store). */
const struct store_if *store_redis_if(struct estgw_store *s);
/** Drop the connection for good: pending callbacks are not called, later
 *  operations do nothing. First step of shutdown. */
void store_redis_close(struct estgw_store *s);
void store_redis_free(struct estgw_store *s);

#endif
