/* fuzz_masa.c - libFuzzer driver for the MASA answer mapping (src/core/masa.c,
 * H5): whatever a MASA sends back.
 *
 * Input: 3 header bytes (status choice, transport error, flags), then
 * length-prefixed chunks (2 bytes big-endian each): Content-Type,
 * Retry-After, the expected nonce, the expected serial-number; whatever is
 * left is the body. Each piece is copied into its own exact-size buffer so
 * ASan sees any over-read. Seeds in tests/fuzz/corpus/masa/ (made by
 * tests/fuzz/mk_masa_seeds.py from the constrained-voucher example).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/masa.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct reader {
	const uint8_t *p;
	size_t n;
};

static uint8_t *take(struct reader *r, size_t *len, int cstr)
{
	size_t l = 0;
	uint8_t *c;

	if (r->n >= 2) {
		l = (size_t)r->p[0] << 8 | r->p[1];
		r->p += 2;
		r->n -= 2;
		if (l > r->n)
			l = r->n;
	}
	c = malloc(l + (cstr ? 1 : 0) + 1);
	if (!c)
		abort();
	memcpy(c, r->p, l);
	if (cstr)
		c[l] = '\0';
	r->p += l;
	r->n -= l;
	*len = l;
	return c;
}

static const long statuses[] = { 200, 202, 404, 403, 429, 400, 500, 503, 302, 100, 204, 0, -1, 999 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct est_xlate_limits lim = { 30, 5, 3600 };
	struct reader r = { data, size };
	struct est_http_resp in = { 0 };
	struct est_coap_resp out;
	struct masa_expect x;
	size_t ctl, ral, nl, sl;
	uint8_t *ct, *ra, *nonce, *serial, *body;

	if (size < 3)
		return 0;
	in.status = data[0] < 128 ? 200 : statuses[data[0] % N(statuses)];
	in.err = data[1] < 200 ? EST_UP_OK : (enum est_upstream_err)(data[1] % 7);
	in.now = (time_t)784111777 + (time_t)data[2] * 1000000;
	r.p += 3;
	r.n -= 3;
	ct = take(&r, &ctl, 1);
	ra = take(&r, &ral, 1);
	nonce = take(&r, &nl, 0);
	serial = take(&r, &sl, 1);
	body = malloc(r.n ? r.n : 1);
	if (!body)
		abort();
	memcpy(body, r.p, r.n);
	in.content_type = ctl ? (const char *)ct : NULL;
	in.retry_after = ral ? (const char *)ra : NULL;
	in.body = body;
	in.body_len = r.n;
	x = (struct masa_expect){ nonce, nl, (const char *)serial };
	enum masa_kind k = masa_translate(&in, (data[2] & 1) ? "curl says no" : NULL, &x,
					  &lim, &out);
	if (EST_CODE_CLASS(out.code) < 2 || EST_CODE_CLASS(out.code) > 5 ||
	    (k == MASA_VOUCHER) != (out.code == EST_CODE(2, 4)) ||
	    (out.len && !out.payload))
		abort();
	if (out.len)
		(void)((volatile const uint8_t *)out.payload)[out.len - 1];
	est_coap_resp_free(&out);
	free(ct);
	free(ra);
	free(nonce);
	free(serial);
	free(body);
	return 0;
}
