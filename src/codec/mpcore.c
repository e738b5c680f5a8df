/* mpcore.c - application/multipart-core writer (RFC 8710; RFC 9148 4.3,
 * Figure 2; docs/conformance.md F3).
 *
 * Owns: the CBOR array [cf, bstr, cf, bstr, ...] of a /skg or /skc answer,
 * written with libcbor's encoders straight into one buffer of the exact
 * size (no intermediate items: the byte strings may hold a private key, and
 * only the caller's buffer ever holds a copy).
 * Must not: log or keep state.
 */
#include "estgw/skg.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

/** Bytes of a CBOR head for argument @p v (RFC 8949 3, preferred form). */
static size_t head_len(uint64_t v)
{
	if (v < 24)
		return 1;
	if (v <= UINT8_MAX)
		return 2;
	if (v <= UINT16_MAX)
		return 3;
	if (v <= UINT32_MAX)
		return 5;
	return 9;
}

static int encoded_size(const struct est_mpcore_item *items, size_t n,
			size_t *total)
{
	size_t sz = head_len(2 * (uint64_t)n);

	for (size_t i = 0; i < n; i++) {
		size_t add = head_len(items[i].cf) + head_len(items[i].data.len);

		if (items[i].cf > UINT16_MAX || (items[i].data.len && !items[i].data.ptr))
			return -EINVAL;
		if (items[i].data.len > SIZE_MAX - add || sz > SIZE_MAX - add -
								  items[i].data.len)
			return -EINVAL;
		sz += add + items[i].data.len;
	}
	*total = sz;
	return 0;
}

int est_mpcore_encode(const struct est_mpcore_item *items, size_t n,
		      uint8_t **out, size_t *outlen)
{
	size_t total, pos, w;
	uint8_t *buf;

	if (!out || !outlen || (n && !items) || n > SIZE_MAX / 2 ||
	    encoded_size(items, n, &total) != 0)
		return -EINVAL;
	buf = malloc(total ? total : 1);
	if (!buf)
		return -ENOMEM;
	pos = cbor_encode_array_start(2 * n, buf, total);
	for (size_t i = 0; i < n && pos; i++) {
		w = cbor_encode_uint(items[i].cf, buf + pos, total - pos);
		pos = w ? pos + w : 0;
		if (!pos)
			break;
		w = cbor_encode_bytestring_start(items[i].data.len, buf + pos,
						 total - pos);
		pos = w ? pos + w : 0;
		if (!pos || total - pos < items[i].data.len) {
			pos = 0;
			break;
		}
		if (items[i].data.len)
			memcpy(buf + pos, items[i].data.ptr, items[i].data.len);
		pos += items[i].data.len;
	}
	if (pos != total) { /* cannot happen: the size was computed above */
		explicit_bzero(buf, total);
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	*outlen = total;
	return 0;
}
