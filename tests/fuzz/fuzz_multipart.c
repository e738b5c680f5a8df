/* fuzz_multipart.c - libFuzzer driver for the serverkeygen path
 * (docs/conformance.md B6, F, G6): media type parameters, the multipart/mixed
 * parser, the key-form and CMS checks, the CSR attribute queries, and the
 * whole skg/skc translation.
 *
 * Input: 1 selector byte (bit 0: skg or skc; bit 1: Accept 62 or absent in
 * the registrar path; bit 2: boundary quoted), 1 boundary length byte (taken
 * modulo 72, so 0 and 71 are there to be refused), the boundary, then the
 * upstream body. Everything is copied into exact-size buffers so ASan sees
 * any over-read. Seeds in tests/fuzz/corpus/multipart/, made by
 * tests/fuzz/mk_multipart_seeds.py from the RFC 9148 A.3 example.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/skg.h"
#include "estgw/translate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *dup_bytes(const uint8_t *p, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);

	if (!c)
		abort();
	if (len)
		memcpy(c, p, len);
	return c;
}

static void inside(const struct est_slice *s, const uint8_t *buf, size_t len)
{
	if (s->len && (s->ptr < buf || s->len > len ||
		       (size_t)(s->ptr - buf) > len - s->len))
		abort();
}

static void run_parser(const uint8_t *body, size_t len, const char *b,
		       size_t blen)
{
	struct est_mp_part parts[EST_MP_MAX_PARTS];
	const char *why = NULL;
	char val[64];
	size_t n = 0, vlen, i;
	int rc = est_multipart_parse(body, len, b, blen, parts,
				     EST_MP_MAX_PARTS, &n, &why);

	if (rc != 0) {
		if (!why)
			abort(); /* every failure has a reason */
		return;
	}
	if (n == 0 || n > EST_MP_MAX_PARTS)
		abort();
	for (i = 0; i < n; i++) {
		inside(&parts[i].type, body, len);
		inside(&parts[i].params, body, len);
		inside(&parts[i].cte, body, len);
		inside(&parts[i].body, body, len);
		(void)est_mime_param(&parts[i].params, "smime-type", val,
				     sizeof(val), &vlen);
	}
}

static void run_key_checks(const uint8_t *body, size_t len)
{
	enum est_key_form form;
	uint8_t *out = NULL;
	size_t olen = 0;

	if (est_privkey_to_pkcs8(body, len, &out, &olen, &form) == 0) {
		/* What came out is PKCS#8 and passes through unchanged. */
		uint8_t *again = NULL;
		size_t alen = 0;

		if (est_privkey_to_pkcs8(out, olen, &again, &alen, &form) != 0 ||
		    form != EST_KEY_PKCS8 || alen != olen ||
		    memcmp(again, out, olen) != 0)
			abort();
		free(again);
		free(out);
	}
	(void)est_cms_key_check(body, len);
	(void)est_csr_wants_encrypted_key(body, len);
}

static void check_answer(const struct est_coap_resp *r)
{
	if (EST_CODE_CLASS(r->code) < 2 || EST_CODE_CLASS(r->code) > 5)
		abort();
	if (r->len && !r->payload)
		abort();
	if (r->code == EST_CODE(2, 4) && r->cf != EST_CF_MULTIPART_CORE)
		abort();
	if (r->len)
		(void)((volatile const uint8_t *)r->payload)[r->len - 1];
}

static void run_translate(uint8_t sel, const uint8_t *body, size_t len,
			  const char *b, size_t blen)
{
	const struct est_op_desc *op =
		est_op_desc(sel & 1 ? EST_OP_SKC : EST_OP_SKG);
	struct est_http_resp in = { .err = EST_UP_OK, .status = 200 };
	struct est_coap_resp out;
	char ct[128];

	snprintf(ct, sizeof(ct), sel & 4 ? "multipart/mixed; boundary=\"%.*s\""
					 : "Multipart/Mixed;boundary=%.*s",
		 (int)blen, b);
	in.content_type = ct;
	in.body = body;
	in.body_len = len;
	if (est_translate_response(op, EST_CF_MULTIPART_CORE, body, len, &in,
				   NULL, &out) == 0)
		check_answer(&out);
	est_coap_resp_free(&out);
	/* The registrar path: the body as the /simpleenroll answer. */
	in.content_type = "application/pkcs7-mime";
	if (est_translate_keygen_enroll(op, sel & 2 ? EST_CF_MULTIPART_CORE
						    : EST_CF_PKCS7_CERTS,
					(const uint8_t *)"\x30\x00", 2, body,
					len, &in, NULL, &out) == 0)
		check_answer(&out);
	est_coap_resp_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t blen;
	char *b;
	uint8_t *body;

	if (size < 2)
		return 0;
	blen = data[1] % 72;
	if (blen > size - 2)
		blen = size - 2;
	b = (char *)dup_bytes(data + 2, blen);
	body = dup_bytes(data + 2 + blen, size - 2 - blen);
	run_parser(body, size - 2 - blen, b, blen);
	run_key_checks(body, size - 2 - blen);
	run_translate(data[0], body, size - 2 - blen, b, blen);
	free(body);
	free(b);
	return 0;
}
