/* ratelimit.h - per-client request rate limit (a token bucket per client).
 *
 * Owns: a bounded table of buckets keyed by a client name (estgw uses the
 * client certificate's subject, so a device cannot escape the limit by
 * opening new DTLS sessions). When the table is full the least recently
 * used bucket is reused.
 * Must not: read the clock, do I/O or log: the caller passes the time and
 * answers 4.29 (RFC 8516) itself. Pure apart from the table it owns.
 */
#ifndef ESTGW_RATELIMIT_H
#define ESTGW_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

struct estgw_rate;

/** A limiter allowing @p per_minute requests per client (burst of the same
 *  size), for at most @p max_clients clients tracked at once. NULL on
 *  allocation failure or when either argument is 0. */
struct estgw_rate *estgw_rate_new(uint32_t per_minute, size_t max_clients);
void estgw_rate_free(struct estgw_rate *r);

/** A new limit of @p per_minute (> 0) for the buckets in use (reload): a
 *  bucket keeps what its client has spent, cut down to the new burst, and
 *  refills at the new rate from now on. */
void estgw_rate_set(struct estgw_rate *r, uint32_t per_minute);

/** Take one request for @p client at @p now_ms (any monotonic clock).
 *  0: allowed. -EBUSY: over the limit, *retry_s = whole seconds until the
 *  next request will be allowed (at least 1). */
int estgw_rate_take(struct estgw_rate *r, const char *client, uint64_t now_ms,
		    uint32_t *retry_s);

/** Units of one request (a bucket holds per_minute of them). */
#define ESTGW_RATE_COST 60000u

/** estgw_rate_take for a request that also goes to the cluster's shared
 *  bucket ([cluster], K1): when allowed, *seq gets its number among this
 *  client's shared requests (from 1), for estgw_rate_sync. */
int estgw_rate_take_shared(struct estgw_rate *r, const char *client, uint64_t now_ms,
			   uint32_t *retry_s, uint64_t *seq);

/** What the shared bucket of the cluster says is left for @p client
 *  once it counted the shared requests up to number @p seq
 *  (estgw_rate_take_shared): this
 *  instance's bucket is set to @p units (at most full) less the requests
 *  taken here after @p seq, which the shared bucket has not seen yet. So
 *  requests other instances took count here from now on, and an answer
 *  that arrives after this client's next request does not give that
 *  request's token back. A client not tracked here is ignored. */
void estgw_rate_sync(struct estgw_rate *r, const char *client, uint64_t units,
		     uint64_t seq);

#endif
