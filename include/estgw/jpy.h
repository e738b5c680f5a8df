/* jpy.h - the JPY message of the stateless constrained join proxy
 * (draft-ietf-anima-constrained-join-proxy-20, "JPY protocol"; H6).
 *
 * Owns: decoding one JPY message, the CBOR array of exactly two byte
 * strings [jpy_header, jpy_content] (definite lengths, header at most a
 * caller's bound, nothing after the array), and encoding the registrar's
 * answer with the same header. The header is opaque: it is bounded and
 * copied, never interpreted.
 * Must not: allocate, log, or touch the network (pure; unit-tested and
 * fuzzed by tests/fuzz/fuzz_jpy.c).
 */
#ifndef ESTGW_JPY_H
#define ESTGW_JPY_H

#include <stddef.h>
#include <stdint.h>

/** One decoded JPY message: slices into the caller's buffer. */
struct jpy_msg {
	const uint8_t *hdr;     /**< jpy_header, opaque (may be empty) */
	size_t hdr_len;
	const uint8_t *content; /**< jpy_content: the pledge's UDP payload */
	size_t content_len;     /**< never 0 */
};

/** Decode @p buf as one JPY message with a header of at most @p max_hdr
 *  bytes. Returns 0; -EMSGSIZE when the header is longer than @p max_hdr;
 *  -EBADMSG when @p buf is not exactly one array of two definite-length
 *  byte strings (not CBOR, another shape, a tag, indefinite lengths, an
 *  empty content, bytes after the array). */
int jpy_decode(const uint8_t *buf, size_t len, size_t max_hdr,
	       struct jpy_msg *m);

/** Bytes the JPY framing adds around @p content_len bytes of content with
 *  a header of @p hdr_len bytes: the array head and both byte-string heads,
 *  plus the header itself (3 to 6 bytes of framing for the sizes a UDP
 *  datagram can carry). */
size_t jpy_overhead(size_t hdr_len, size_t content_len);

/** Encode [@p hdr, @p content] into @p out (at most @p cap bytes; shortest
 *  heads). Returns the length written, or -ENOSPC. */
long jpy_encode(const uint8_t *hdr, size_t hdr_len, const uint8_t *content,
		size_t content_len, uint8_t *out, size_t cap);

#endif
