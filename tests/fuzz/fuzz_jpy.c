/* fuzz_jpy.c - libFuzzer target for the JPY decoder (H6): any datagram
 * a join proxy (or anyone) sends; a decoded message must re-encode to the
 * same bytes when its heads were shortest, and slices stay in the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/jpy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jpy_msg m;
	uint8_t *out;
	long n;

	if (jpy_decode(data, size, size > 0 ? data[0] : 0, &m) != 0 &&
	    jpy_decode(data, size, 255, &m) != 0)
		return 0;
	if (m.hdr < data || m.hdr + m.hdr_len > data + size ||
	    m.content < data || m.content + m.content_len > data + size)
		abort();
	out = malloc(size + 16);
	if (!out)
		return 0;
	n = jpy_encode(m.hdr, m.hdr_len, m.content, m.content_len, out, size + 16);
	if (n < 0 || (size_t)n > size)
		abort();
	if ((size_t)n == size && memcmp(out, data, size) != 0)
		abort();
	free(out);
	return 0;
}
