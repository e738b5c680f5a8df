/* base64.c - RFC 4648 Base64 for EST bodies (docs/conformance.md B1, B5).
 *
 * Owns: encoding (padded; one line, or MIME lines for request bodies) and a
 * strict-but-tolerant decoder.
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

/** Encode @p inlen bytes as padded Base64 at @p out (no NUL); returns the
 *  number of characters written, est_b64_encoded_len(inlen). */
static size_t b64_encode_run(const uint8_t *in, size_t inlen, char *out)
{
	size_t i, o = 0;

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
	return o;
}

int est_b64_encode(const uint8_t *in, size_t inlen, char *out, size_t outsize,
		   size_t *outlen)
{
	size_t need = est_b64_encoded_len(inlen);

	if (need == SIZE_MAX || outsize <= need)
		return -ENOSPC;
	*outlen = b64_encode_run(in, inlen, out);
	out[*outlen] = '\0';
	return 0;
}

/* MIME lines (RFC 2045 §6.8; B5). Some EST servers cannot read one long
 * line: libest decodes with OpenSSL's base64 BIO, which does not start
 * decoding before it has seen a line end, so a CSR on one line reads as
 * nothing ("Problem reading DER encoded certificate request"). RFC 2045
 * allows at most 76 characters a line; we write 64, the PEM line (RFC 7468
 * §2) and what OpenSSL's own encoder writes, so an OpenSSL-based server gets
 * the layout it produces itself. Every line ends in CRLF, the last one too:
 * then even a one-line text has the line end such a decoder waits for. */
#define B64_LINE_BYTES (EST_B64_LINE / 4 * 3) /* input bytes per full line */

size_t est_b64_mime_len(size_t n)
{
	size_t full = n / B64_LINE_BYTES, rest = n % B64_LINE_BYTES;
	size_t line = EST_B64_LINE + 2;

	if (full > (SIZE_MAX - line) / line)
		return SIZE_MAX; /* saturate, as est_b64_encoded_len */
	return full * line + (rest ? est_b64_encoded_len(rest) + 2 : 0);
}

int est_b64_encode_mime(const uint8_t *in, size_t inlen, char *out,
			size_t outsize, size_t *outlen)
{
	size_t need = est_b64_mime_len(inlen);
	size_t i, o = 0, n;

	if (need == SIZE_MAX || outsize <= need)
		return -ENOSPC;
	for (i = 0; i < inlen; i += n) {
		n = inlen - i < B64_LINE_BYTES ? inlen - i : B64_LINE_BYTES;
		o += b64_encode_run(in + i, n, out + o);
		out[o++] = '\r';
		out[o++] = '\n';
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
