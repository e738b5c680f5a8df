/* fuzz_translate.c - libFuzzer driver for the translation core
 * (docs/conformance.md A-D).
 *
 * Input: 6 header bytes (op, Accept choice, status choice, transport error,
 * method, flags), then length-prefixed chunks (2 bytes big-endian each):
 * Content-Type, Retry-After, CSR, Uri-Query list ('&'-separated), Uri-Path
 * ('/'-separated); whatever is left is the upstream body. Every string is
 * copied into its own exact-size buffer so ASan sees any over-read.
 * Seeds in tests/fuzz/corpus/translate/, remade with
 * tests/unit/fixtures/mk_translate_fixtures.sh X.h DER and
 * tests/fuzz/mk_translate_seeds.py DER tests/fuzz/corpus/translate.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/translate.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_PARTS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct reader {
	const uint8_t *p;
	size_t n;
};

static struct est_slice take(struct reader *r)
{
	struct est_slice s = { r->p, 0 };
	size_t len;

	if (r->n < 2) {
		r->p += r->n;
		r->n = 0;
		return s;
	}
	len = (size_t)r->p[0] << 8 | r->p[1];
	r->p += 2;
	r->n -= 2;
	if (len > r->n)
		len = r->n;
	s.ptr = r->p;
	s.len = len;
	r->p += len;
	r->n -= len;
	return s;
}

/** A NUL-terminated copy, or NULL for an empty chunk (header absent). */
static char *cstr(struct est_slice s)
{
	char *c;

	if (s.len == 0)
		return NULL;
	c = malloc(s.len + 1);
	if (!c)
		abort();
	memcpy(c, s.ptr, s.len);
	c[s.len] = '\0';
	return c;
}

static uint8_t *dup_bytes(struct est_slice s)
{
	uint8_t *c = malloc(s.len ? s.len : 1);

	if (!c)
		abort();
	if (s.len)
		memcpy(c, s.ptr, s.len);
	return c;
}

static size_t split(const uint8_t *p, size_t len, uint8_t sep,
		    struct est_slice *parts)
{
	size_t n = 0, start = 0, i;

	for (i = 0; i <= len && n < MAX_PARTS; i++) {
		if (i == len || p[i] == sep) {
			parts[n].ptr = p + start;
			parts[n++].len = i - start;
			start = i + 1;
		}
	}
	return n;
}

static const int cfs[] = { EST_CF_PKCS7_CERTS, EST_CF_PKIX_CERT,
			   EST_CF_CSRATTRS, EST_CF_MULTIPART_CORE,
			   EST_CF_NONE, EST_CF_PKCS10, 0 };
static const long statuses[] = { 200, 202, 204, 503, 404, 302, 100, 500,
				 401, 413, 599, -1 };

static long pick_status(uint8_t sel)
{
	return sel < 128 ? 200 : statuses[sel % N(statuses)];
}

static void check_answer(const struct est_coap_resp *r)
{
	if (EST_CODE_CLASS(r->code) < 2 || EST_CODE_CLASS(r->code) > 5)
		abort();
	if (r->len && !r->payload)
		abort();
	if (EST_CODE_CLASS(r->code) == 2 && r->len && r->cf == EST_CF_NONE)
		abort();
	if (r->len)
		(void)((volatile const uint8_t *)r->payload)[r->len - 1];
}

static void run_translate(const uint8_t *hdr, const char *ct, const char *ra,
			  struct est_slice csr, struct est_slice body)
{
	static const struct est_xlate_limits lim = { 30, 5, 3600 };
	struct est_http_resp in = { 0 };
	struct est_coap_resp out;
	uint8_t *b = dup_bytes(body), *c = dup_bytes(csr);
	uint32_t secs;

	in.err = (enum est_upstream_err)(hdr[3] % 8);
	if (hdr[3] >= 8)
		in.err = EST_UP_OK;
	in.status = pick_status(hdr[2]);
	in.content_type = ct;
	in.retry_after = ra;
	in.body = body.len ? b : NULL;
	in.body_len = body.len;
	in.now = (time_t)784111777 + (time_t)hdr[5] * 1000000;
	if (est_translate_response(est_op_desc(hdr[0] % EST_OP_COUNT),
				   cfs[hdr[1] % N(cfs)], csr.len ? c : NULL,
				   csr.len, &in, &lim, &out) == 0)
		check_answer(&out);
	est_coap_resp_free(&out);
	(void)est_retry_after_seconds(ra, in.now, &secs);
	free(b);
	free(c);
}

static void run_links(const uint8_t *hdr, struct est_slice qs)
{
	static const char *const link_roots[] = { "/est", "/.well-known/est",
						  "/", "" };
	struct est_slice q[MAX_PARTS];
	struct est_link_opts o = { 0 };
	uint8_t *copy = dup_bytes(qs);
	size_t nq = split(copy, qs.len, '&', q), len;
	char *text;

	o.root = link_roots[hdr[5] % N(link_roots)];
	o.ops_enabled = hdr[4];
	o.with_root_link = hdr[5] & 1;
	o.jpy_uri = hdr[5] & 2 ? "jpy://[2001:db8::1]:5685" : NULL; /* H6 */
	if (est_link_format(&o, q, nq, &text, &len) == 0) {
		if (strlen(text) != len)
			abort();
		free(text);
	}
	free(copy);
}

static void run_route(const uint8_t *hdr, struct est_slice path,
		      struct est_slice csr)
{
	static const char *const roots[] = { "/.well-known/est", "/est" };
	struct est_slice segs[MAX_PARTS];
	struct est_coap_req req;
	struct est_verdict v;
	struct est_http_req hr;
	struct est_route r;
	uint8_t *copy = dup_bytes(path);
	size_t n = split(copy, path.len, '/', segs);

	if (est_route_path(segs, n, roots, N(roots), &r) == 0) {
		req.method = (enum est_method)(hdr[4] % 5);
		req.cf = cfs[hdr[1] % N(cfs)];
		req.accept = cfs[(hdr[1] >> 4) % N(cfs)];
		(void)est_check_request(r.op, &req, &v);
		if (est_build_http_request(r.op, "https://ca/.well-known/est/",
					   r.label, csr.ptr, csr.len, &hr) == 0)
			est_http_req_free(&hr);
	}
	(void)est_status_to_code(pick_status(hdr[2]), (enum est_method)hdr[4]);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reader rd;
	struct est_slice ct, ra, csr, qs, path, body;
	char *cts, *ras;

	if (size < 6)
		return 0;
	rd.p = data + 6;
	rd.n = size - 6;
	ct = take(&rd);
	ra = take(&rd);
	csr = take(&rd);
	qs = take(&rd);
	path = take(&rd);
	body.ptr = rd.p;
	body.len = rd.n;
	cts = cstr(ct);
	ras = cstr(ra);
	run_translate(data, cts, ras, csr, body);
	run_links(data, qs);
	run_route(data, path, csr);
	free(cts);
	free(ras);
	return 0;
}
