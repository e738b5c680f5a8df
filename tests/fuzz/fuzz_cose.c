/* fuzz_cose.c - libFuzzer: COSE_Sign1 from the network (docs/conformance.md
 * H2, G6). Every slice stays inside the input; a parsed object strips and
 * re-parses to the same protected header, payload and signature, with no
 * x5bag/x5chain left but one the protected header itself carries. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/cose.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const struct est_slice *s, const uint8_t *d, size_t n)
{
	if (s->len && (s->ptr < d || s->len > n || (size_t)(s->ptr - d) > n - s->len))
		abort();
}

static int same(const struct est_slice *a, const struct est_slice *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cose_sign1 s, t;
	uint8_t *out, *tbs, raw[64], der[80];
	size_t len, tlen, dlen;

	if (cose_sign1_parse(data, size, &s) != 0)
		return 0;
	inside(&s.prot, data, size);
	inside(&s.payload, data, size);
	inside(&s.sig, data, size);
	for (size_t i = 0; i < s.nx5bag; i++)
		inside(&s.x5bag[i], data, size);
	if (cose_sign1_strip(data, size, &out, &len) != 0)
		abort();
	if (cose_sign1_parse(out, len, &t) != 0 || !same(&s.prot, &t.prot) ||
	    !same(&s.payload, &t.payload) || !same(&s.sig, &t.sig))
		abort();
	for (size_t i = 0; i < t.nx5bag; i++)
		inside(&t.x5bag[i], t.prot.ptr, t.prot.len);
	free(out);
	if (cose_tbs(&s.prot, &s.payload, &tbs, &tlen) == 0)
		free(tbs);
	if (s.sig.len == 64 &&
	    cose_sig_raw_to_der(s.sig.ptr, 32, der, sizeof(der), &dlen) == 0 &&
	    (cose_sig_der_to_raw(der, dlen, raw, 32) != 0 || memcmp(raw, s.sig.ptr, 64) != 0))
		abort();
	return 0;
}
