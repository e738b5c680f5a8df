/* avail.h - which optional EST operations the EST server is known to lack.
 *
 * Owns: one mark per upstream operation behind an optional CoAP resource,
 * /csrattrs (att) and /serverkeygen (skg and skc), so that discovery lists
 * only what works (A3; RFC 9148 §4.1: att, skg and skc are "only
 * included if implemented"). The EST server's answers set them: HTTP 404
 * or 501 marks the operation missing, any other HTTP answer marks it
 * present again, no HTTP answer (a transport error) changes nothing.
 * Must not: do I/O, read the clock or log. The caller logs the changes it
 * is told of and chooses which answers to feed (proxy.c: those for the
 * unlabeled paths, the only ones discovery lists).
 */
#ifndef ESTGW_AVAIL_H
#define ESTGW_AVAIL_H

#include "estgw/translate.h"

/** What one answer changed. */
enum estgw_avail_change {
	ESTGW_AVAIL_SAME,
	ESTGW_AVAIL_LOST, /**< the operation is missing now */
	ESTGW_AVAIL_BACK, /**< the operation answers again */
};

struct estgw_avail {
	unsigned missing; /**< (1u << EST_OP_x) of each resource not to list */
};

/** The resources one upstream operation stands behind, as
 *  (1u << EST_OP_x) bits: att for EST_OP_ATT, skg and skc for EST_OP_SKG
 *  or EST_OP_SKC; 0 for the operations that are always listed. */
unsigned estgw_avail_ops(enum est_op op);

/** Their short names for a log line ("att", "skg, skc"); "" for others. */
const char *estgw_avail_names(enum est_op op);

/** Feed the HTTP status of one answer for @p op (0: no HTTP answer). */
enum estgw_avail_change estgw_avail_note(struct estgw_avail *a, enum est_op op,
					 long status);

#endif
