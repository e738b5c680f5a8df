/* jpy.c - JPY messages of the stateless join proxy (H6;
 * draft-ietf-anima-constrained-join-proxy-20, "JPY protocol").
 *
 * Owns: the bounded decoder of [bstr jpy_header, bstr jpy_content] and the
 * encoder of the answer. Hand-written on RFC 8949 §3 (major type, argument)
 * instead of libcbor: only two heads are read, and no allocation happens
 * for a datagram that is dropped anyway.
 * Must not: allocate, log, do I/O.
 */
#include "estgw/jpy.h"

#include <errno.h>
#include <string.h>

#define MT_BSTR 2
#define MT_ARRAY 4

/* One CBOR head at *p (RFC 8949 §3): major type and argument. Definite
 * lengths only (additional information 31 is refused, 28-30 are reserved).
 * Returns 0 and advances *p, or -EBADMSG. */
static int read_head(const uint8_t **p, const uint8_t *end, int *mt,
		     uint64_t *arg)
{
	unsigned ai, n;
	uint64_t v = 0;

	if (*p >= end)
		return -EBADMSG;
	*mt = (*p)[0] >> 5;
	ai = (*p)[0] & 0x1f;
	(*p)++;
	if (ai < 24) {
		*arg = ai;
		return 0;
	}
	if (ai > 27)
		return -EBADMSG;
	n = 1u << (ai - 24);
	if ((size_t)(end - *p) < n)
		return -EBADMSG;
	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | (*p)[i];
	*p += n;
	*arg = v;
	return 0;
}

/* A byte string at *p: its bytes stay in the buffer. */
static int read_bstr(const uint8_t **p, const uint8_t *end,
		     const uint8_t **val, size_t *len)
{
	int mt;
	uint64_t n;

	if (read_head(p, end, &mt, &n) != 0 || mt != MT_BSTR ||
	    n > (uint64_t)(end - *p))
		return -EBADMSG;
	*val = *p;
	*len = (size_t)n;
	*p += n;
	return 0;
}

int jpy_decode(const uint8_t *buf, size_t len, size_t max_hdr,
	       struct jpy_msg *m)
{
	const uint8_t *p = buf, *end = buf + len;
	int mt;
	uint64_t n;

	if (!buf || !m)
		return -EBADMSG;
	memset(m, 0, sizeof(*m));
	if (read_head(&p, end, &mt, &n) != 0 || mt != MT_ARRAY || n != 2)
		return -EBADMSG;
	if (read_bstr(&p, end, &m->hdr, &m->hdr_len) != 0)
		return -EBADMSG;
	if (read_bstr(&p, end, &m->content, &m->content_len) != 0 ||
	    m->content_len == 0 || p != end) {
		memset(m, 0, sizeof(*m));
		return -EBADMSG;
	}
	if (m->hdr_len > max_hdr) {
		memset(m, 0, sizeof(*m));
		return -EMSGSIZE;
	}
	return 0;
}

/* Length of the shortest head for argument @p n. */
static size_t head_len(uint64_t n)
{
	return n < 24 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : n <= 0xffffffffu ? 5 : 9;
}

static uint8_t *put_head(uint8_t *o, int mt, uint64_t n)
{
	size_t hl = head_len(n);
	static const uint8_t ai[] = { 0, 0, 24, 25, 0, 26, 0, 0, 0, 27 };

	if (hl == 1) {
		*o++ = (uint8_t)((mt << 5) | n);
		return o;
	}
	*o++ = (uint8_t)((mt << 5) | ai[hl]);
	for (size_t i = hl - 1; i > 0; i--)
		*o++ = (uint8_t)(n >> (8 * (i - 1)));
	return o;
}

size_t jpy_overhead(size_t hdr_len, size_t content_len)
{
	return 1 + head_len(hdr_len) + hdr_len + head_len(content_len);
}

long jpy_encode(const uint8_t *hdr, size_t hdr_len, const uint8_t *content,
		size_t content_len, uint8_t *out, size_t cap)
{
	size_t need = jpy_overhead(hdr_len, content_len) + content_len;
	uint8_t *o = out;

	if (need < content_len || need > cap || need > (size_t)0x7fffffff)
		return -ENOSPC;
	o = put_head(o, MT_ARRAY, 2);
	o = put_head(o, MT_BSTR, hdr_len);
	if (hdr_len)
		memcpy(o, hdr, hdr_len);
	o += hdr_len;
	o = put_head(o, MT_BSTR, content_len);
	memcpy(o, content, content_len);
	o += content_len;
	return (long)(o - out);
}
