/* pal.h - the RFC 8295 Package Availability List rewriter (I3).
 *
 * Owns: a bounded scanner over the two PAL forms (XML, RFC 8295 §2.1.2;
 * JSON, §2.1.3) that finds each entry's <type> and <uri>, rewrites a URI
 * that points under the CA's EST base to the CoAP path a device must use
 * (RFC 7030 path components to their RFC 9148 short names, RFC 8295 ones
 * to themselves) and drops entries for operations the gateway does not
 * serve. No XML or JSON library: only the fixed PAL schema is understood;
 * DTDs, CDATA and entities other than the five predefined ones passing
 * through text are refused or left alone. Must not: log, keep globals.
 */
#ifndef ESTGW_PAL_H
#define ESTGW_PAL_H

#include <stddef.h>
#include <stdint.h>

/** RFC 8295 operations, as bits of [rfc8295] enable. */
enum {
	EST_X_EN_PAL = 1u << 0,
	EST_X_EN_EECERTS = 1u << 1,
	EST_X_EN_CRLS = 1u << 2,
	EST_X_EN_SYMKEYS = 1u << 3,
	EST_X_EN_FIRMWARE = 1u << 4,
	EST_X_EN_TAMP = 1u << 5,
	EST_X_EN_SKG = 1u << 6, /**< serverkeygen/return, PKCS#12, EKP */
	EST_X_EN_RFC9148_SKG = 1u << 7, /**< RFC 9148 skg/skc are served */
};

#define EST_PAL_MAX_ENTRIES 64 /**< RFC 9152 §3.6.1 caps a PAL at 32 */
#define EST_PAL_MAX_URI 1024   /**< RFC 8295 §2.1.1: anyURI up to 1024 */

struct est_pal_opts {
	const char *up_base; /**< the CA's EST base URL (trailing '/' ignored) */
	const char *gw_base; /**< what it becomes, e.g. "coaps://gw/.well-known/est" */
	unsigned enabled;    /**< EST_X_EN_* the gateway serves */
	int rewrite;         /**< 0: URIs are left as they are (drops still apply) */
};

struct est_pal_stats {
	unsigned entries;   /**< entries read */
	unsigned rewritten; /**< URIs rewritten */
	unsigned dropped;   /**< entries left out (operation not served) */
	unsigned foreign;   /**< URIs not under up_base, left alone */
	char first_dropped[8]; /**< package type of the first one dropped */
};

/** Rewrite the PAL @p in (@p len bytes; @p json: the JSON form, else XML)
 *  into the malloc'd @p out. 0; -EINVAL: not a PAL this scanner accepts
 *  (malformed, nested entries, over EST_PAL_MAX_ENTRIES, a URI over
 *  EST_PAL_MAX_URI, an entry without a 4-digit type); -ENOMEM. */
int est_pal_rewrite(const char *in, size_t len, int json,
		    const struct est_pal_opts *o, char **out, size_t *outlen,
		    struct est_pal_stats *st);

#endif
