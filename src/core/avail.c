/* avail.c - marks for the EST operations the EST server lacks (A3).
 * See avail.h.
 */
#include "core/avail.h"

#include <stddef.h>

#define OP(x) (1u << (x))

/* Optional resources per upstream operation: skg and skc are both
 * /serverkeygen, so an answer for either decides for both. */
static const struct {
	enum est_op op;
	unsigned ops;
	const char *names;
} rows[] = {
	{ EST_OP_ATT, OP(EST_OP_ATT), "att" },
	{ EST_OP_SKG, OP(EST_OP_SKG) | OP(EST_OP_SKC), "skg, skc" },
	{ EST_OP_SKC, OP(EST_OP_SKG) | OP(EST_OP_SKC), "skg, skc" },
};

static size_t row_of(enum est_op op)
{
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (rows[i].op == op)
			return i;
	return i;
}

unsigned estgw_avail_ops(enum est_op op)
{
	size_t i = row_of(op);

	return i < sizeof(rows) / sizeof(rows[0]) ? rows[i].ops : 0;
}

const char *estgw_avail_names(enum est_op op)
{
	size_t i = row_of(op);

	return i < sizeof(rows) / sizeof(rows[0]) ? rows[i].names : "";
}

enum estgw_avail_change estgw_avail_note(struct estgw_avail *a, enum est_op op,
					 long status)
{
	unsigned ops = estgw_avail_ops(op);
	int was_missing;

	if (!a || !ops || status <= 0)
		return ESTGW_AVAIL_SAME;
	was_missing = (a->missing & ops) != 0;
	if (status == 404 || status == 501) { /* Not Found / Not Implemented (RFC 9110 15.5.5, 15.6.2) */
		a->missing |= ops;
		return was_missing ? ESTGW_AVAIL_SAME : ESTGW_AVAIL_LOST;
	}
	a->missing &= ~ops;
	return was_missing ? ESTGW_AVAIL_BACK : ESTGW_AVAIL_SAME;
}
