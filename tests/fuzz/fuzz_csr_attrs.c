/* fuzz_csr_attrs.c - libFuzzer: the CSR attribute walker and the Name
 * serialNumber lookup (docs/conformance.md G4, G6), fed the same bytes as a
 * CSR, as a certificate (its subject) and as a bare Name. Every slice
 * returned must lie inside the input; a CSR the walker accepts must pass
 * est_csr_check. */
#include <stdint.h>
#include <stdlib.h>

#include "estgw/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(struct est_slice s, const uint8_t *data, size_t size)
{
	if (!s.ptr)
		return;
	if (s.ptr < data || s.len > size || (size_t)(s.ptr - data) > size - s.len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct est_csr_info ci;
	struct est_slice issuer, subject, serial = { NULL, 0 };
	struct est_slice whole = { data, size };

	if (est_csr_info(data, size, &ci) == 0) {
		if (est_csr_check(data, size) != 0)
			abort();
		inside(ci.subject, data, size);
		inside(ci.serial, data, size);
		if (ci.has_challenge)
			inside(ci.challenge, data, size);
	}
	if (est_cert_names(data, size, &issuer, &subject) == 0 &&
	    est_name_serial(subject, &serial) == 0)
		inside(serial, data, size);
	if (est_name_serial(whole, &serial) == 0)
		inside(serial, data, size);
	return 0;
}
