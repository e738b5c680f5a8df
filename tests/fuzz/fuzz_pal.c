/* fuzz_pal.c - libFuzzer: the PAL rewriter (I3) over both forms with each
 * option set; the output of a rewrite must itself be a PAL it accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/pal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct est_pal_opts o = {
		"https://ca.example/.well-known/est", "coaps://gw:5684/.well-known/est", 0, 1,
	};
	struct est_pal_stats st;
	char *out = NULL, *again = NULL;
	size_t n = 0, m = 0;
	int json;

	if (size < 1)
		return 0;
	json = data[0] & 1;
	o.enabled = data[0] >> 1;
	o.rewrite = (data[0] >> 7) & 1;
	if (est_pal_rewrite((const char *)data + 1, size - 1, json, &o, &out, &n, &st) == 0) {
		if (st.dropped > st.entries || st.rewritten + st.dropped > st.entries)
			abort();
		/* what came out is a PAL again (rewriting an already rewritten
		 * one changes nothing more but what it drops) */
		if (est_pal_rewrite(out, n, json, &o, &again, &m, &st) != 0)
			abort();
		free(again);
	}
	free(out);
	return 0;
}
