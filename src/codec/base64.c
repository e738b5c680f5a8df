/* base64.c - RFC 4648 Base64 for EST bodies (docs/conformance.md B1, B5).
 *
 * Owns: encoding (padded, no line breaks) and a strict-but-tolerant decoder.
 * Must not: allocate, log, or accept what it cannot decode completely. We do
 * not use mbedtls_base64_decode: it truncates unpadded input silently and
 * rejects spaces and tabs inside lines (docs/libraries.md, mbedTLS 2.28).
 */
#include "estgw/codec.h"

#include <errno.h>
#include <stdint.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Decoder state: up to four pending 6-bit symbols and the output cursor. */
struct b64_dec {
	uint8_t *out;
	size_t outsize;
	size_t outlen;
	uint32_t acc;    /* pending symbols, 6 bits each */
	unsigned nsym;   /* symbols in acc (0..3) */
	unsigned npad;   /* '=' seen so far */
};

/** Value of a Base64 symbol, or -1 for anything else. */
static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

static int b64_is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

size_t est_b64_encoded_len(size_t n)
{
	if (n / 3 > SIZE_MAX / 4 - 1)
		return SIZE_MAX; /* saturate: no buffer can be that large */
	return n / 3 * 4 + (n % 3 ? 4 : 0);
}

/** Encode the last 1 or 2 bytes of input with '=' padding. */
static void b64_encode_tail(const uint8_t *in, size_t rest, char *out)
{
	uint32_t v = (uint32_t)in[0] << 16;

	if (rest == 2)
		v |= (uint32_t)in[1] << 8;
	out[0] = b64_alphabet[(v >> 18) & 0x3f];
	out[1] = b64_alphabet[(v >> 12) & 0x3f];
	out[2] = rest == 2 ? b64_alphabet[(v >> 6) & 0x3f] : '=';
	out[3] = '=';
}

int est_b64_encode(const uint8_t *in, size_t inlen, char *out, size_t outsize,
		   size_t *outlen)
{
	size_t need = est_b64_encoded_len(inlen);
	size_t i, o = 0;

	if (need == SIZE_MAX || outsize <= need)
		return -ENOSPC;
	for (i = 0; inlen - i >= 3; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = b64_alphabet[(v >> 18) & 0x3f];
		out[o++] = b64_alphabet[(v >> 12) & 0x3f];
		out[o++] = b64_alphabet[(v >> 6) & 0x3f];
		out[o++] = b64_alphabet[v & 0x3f];
	}
	if (i < inlen) {
		b64_encode_tail(in + i, inlen - i, out + o);
		o += 4;
	}
	out[o] = '\0';
	*outlen = o;
	return 0;
}

/** Append @p n bytes taken from the top of a 24-bit group. */
static int b64_emit(struct b64_dec *d, uint32_t group, unsigned n)
{
	unsigned k;

	if (d->outsize - d->outlen < n)
		return -ENOSPC;
	for (k = 0; k < n; k++)
		d->out[d->outlen++] = (uint8_t)(group >> (16 - 8 * k));
	return 0;
}

/** Feed one symbol; a full quantum of four becomes three bytes. */
static int b64_symbol(struct b64_dec *d, int v)
{
	if (d->npad)
		return -EINVAL; /* data after '=': padding only at the end */
	d->acc = d->acc << 6 | (uint32_t)v;
	if (++d->nsym < 4)
		return 0;
	d->nsym = 0;
	return b64_emit(d, d->acc & 0xffffff, 3);
}

/** Flush a partial final quantum: 2 symbols -> 1 byte, 3 -> 2 bytes. The
 *  padding, if any, must complete the quantum; unused bits must be zero. */
static int b64_finish(struct b64_dec *d)
{
	uint32_t group;

	if (d->nsym == 0)
		return d->npad ? -EINVAL : 0;
	if (d->nsym == 1)
		return -EINVAL; /* a dangling symbol carries no whole byte */
	if (d->npad && d->nsym + d->npad != 4)
		return -EINVAL;
	group = d->acc << (6 * (4 - d->nsym));
	if (group & (d->nsym == 2 ? 0xffff : 0xff))
		return -EINVAL; /* non-zero pad bits: not canonical */
	return b64_emit(d, group & 0xffffff, d->nsym - 1);
}

int est_b64_decode(const char *in, size_t inlen, uint8_t *out, size_t outsize,
		   size_t *outlen)
{
	struct b64_dec d = { .out = out, .outsize = outsize };
	size_t i;
	int ret;

	for (i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];
		int v = b64_value(c);

		if (v >= 0)
			ret = b64_symbol(&d, v);
		else if (c == '=')
			ret = ++d.npad > 2 ? -EINVAL : 0;
		else
			ret = b64_is_space(c) ? 0 : -EINVAL;
		if (ret)
			return ret;
	}
	ret = b64_finish(&d);
	if (ret)
		return ret;
	*outlen = d.outlen;
	return 0;
}
