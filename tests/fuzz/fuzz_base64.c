/* fuzz_base64.c - libFuzzer: Base64 decode, and encode/decode round trips
 * (one line and MIME lines) of whatever decoded (B5, G6). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/** Decoded bytes must encode to text that decodes to the same bytes. */
static void round_trip(const uint8_t *raw, size_t len)
{
	size_t tlen = est_b64_encoded_len(len) + 1, n;
	char *text = malloc(tlen);
	uint8_t *back = malloc(len + 1);

	if (!text || !back)
		abort();
	if (est_b64_encode(raw, len, text, tlen, &n) != 0 || n + 1 != tlen)
		abort();
	if (est_b64_decode(text, n, back, len + 1, &n) != 0 || n != len ||
	    memcmp(back, raw, len) != 0)
		abort();
	free(text);
	free(back);
}

/** The MIME text: the announced length, lines of at most EST_B64_LINE
 *  characters each ending in CRLF, and it decodes to the same bytes. */
static void mime_round_trip(const uint8_t *raw, size_t len)
{
	size_t tlen = est_b64_mime_len(len) + 1, n, i, col = 0;
	char *text = malloc(tlen);
	uint8_t *back = malloc(len + 1);

	if (!text || !back)
		abort();
	if (est_b64_encode_mime(raw, len, text, tlen, &n) != 0 || n + 1 != tlen)
		abort();
	for (i = 0; i < n; i++) {
		if (text[i] == '\r') {
			if (col == 0 || i + 1 >= n || text[i + 1] != '\n')
				abort();
			i++;
			col = 0;
		} else if (text[i] == '\n' || ++col > EST_B64_LINE) {
			abort();
		}
	}
	if (col != 0) /* the last line ends in CRLF too */
		abort();
	if (est_b64_decode(text, n, back, len + 1, &n) != 0 || n != len ||
	    memcmp(back, raw, len) != 0)
		abort();
	free(text);
	free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t outsize = (size / 4 + 1) * 3, n;
	uint8_t *out = malloc(outsize);

	if (!out)
		return 0;
	if (est_b64_decode((const char *)data, size, out, outsize, &n) == 0) {
		if (n > outsize)
			abort();
		round_trip(out, n);
		mime_round_trip(out, n);
	}
	free(out);
	return 0;
}
