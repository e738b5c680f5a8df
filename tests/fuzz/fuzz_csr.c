/* fuzz_csr.c - libFuzzer: a device's CSR (docs/conformance.md B2, G6): the
 * check and the SPKI extraction must agree and stay inside the input. */
#include <stdint.h>
#include <stdlib.h>

#include "estgw/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct est_slice spki;
	int ok = est_csr_check(data, size) == 0;

	if (est_csr_spki(data, size, &spki) == 0) {
		if (!ok || spki.ptr < data || spki.len > size ||
		    (size_t)(spki.ptr - data) > size - spki.len)
			abort();
	} else if (ok) {
		abort();
	}
	return 0;
}
