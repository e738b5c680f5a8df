/* cbor_rd.c - bounded CBOR item reader on libcbor's streaming decoder. */
#include "cbor_rd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

struct head_ctx {
	struct cbr_item *it;
	int bad; /* indefinite or unsupported */
};

static void on_u8(void *c, uint8_t v) { struct head_ctx *h = c; h->it->type = CBR_UINT; h->it->val = v; }
static void on_u16(void *c, uint16_t v) { struct head_ctx *h = c; h->it->type = CBR_UINT; h->it->val = v; }
static void on_u32(void *c, uint32_t v) { struct head_ctx *h = c; h->it->type = CBR_UINT; h->it->val = v; }
static void on_u64(void *c, uint64_t v) { struct head_ctx *h = c; h->it->type = CBR_UINT; h->it->val = v; }
static void on_n8(void *c, uint8_t v) { struct head_ctx *h = c; h->it->type = CBR_NEGINT; h->it->val = v; }
static void on_n16(void *c, uint16_t v) { struct head_ctx *h = c; h->it->type = CBR_NEGINT; h->it->val = v; }
static void on_n32(void *c, uint32_t v) { struct head_ctx *h = c; h->it->type = CBR_NEGINT; h->it->val = v; }
static void on_n64(void *c, uint64_t v) { struct head_ctx *h = c; h->it->type = CBR_NEGINT; h->it->val = v; }

static void on_bytes(void *c, cbor_data p, size_t n)
{
	struct head_ctx *h = c;
	h->it->type = CBR_BYTES;
	h->it->ptr = p;
	h->it->len = n;
}

static void on_text(void *c, cbor_data p, size_t n)
{
	struct head_ctx *h = c;
	h->it->type = CBR_TEXT;
	h->it->ptr = p;
	h->it->len = n;
}

static void on_array(void *c, size_t n) { struct head_ctx *h = c; h->it->type = CBR_ARRAY; h->it->val = n; }
static void on_map(void *c, size_t n) { struct head_ctx *h = c; h->it->type = CBR_MAP; h->it->val = n; }
static void on_tag(void *c, uint64_t v) { struct head_ctx *h = c; h->it->type = CBR_TAG; h->it->val = v; }
static void on_indef(void *c) { ((struct head_ctx *)c)->bad = 1; }
static void on_null(void *c) { ((struct head_ctx *)c)->it->type = CBR_NULL; }
static void on_other(void *c) { ((struct head_ctx *)c)->it->type = CBR_OTHER; }
static void on_f(void *c, float f) { ((struct head_ctx *)c)->it->type = CBR_OTHER; }
static void on_d(void *c, double f) { ((struct head_ctx *)c)->it->type = CBR_OTHER; }

static void on_bool(void *c, bool b)
{
	((struct head_ctx *)c)->it->type = b ? CBR_TRUE : CBR_FALSE;
}

static const struct cbor_callbacks head_cbs = {
	.uint8 = on_u8, .uint16 = on_u16, .uint32 = on_u32, .uint64 = on_u64,
	.negint8 = on_n8, .negint16 = on_n16, .negint32 = on_n32, .negint64 = on_n64,
	.byte_string_start = on_indef, .byte_string = on_bytes,
	.string = on_text, .string_start = on_indef,
	.indef_array_start = on_indef, .array_start = on_array,
	.indef_map_start = on_indef, .map_start = on_map,
	.tag = on_tag,
	.float2 = on_f, .float4 = on_f, .float8 = on_d,
	.undefined = on_other, .null = on_null, .boolean = on_bool,
	.indef_break = on_indef,
};

/* Major type 6 decoded here: libcbor 0.8's streaming decoder answers
 * CBOR_DECODER_ERROR for one-byte tag heads such as 0xd2 (COSE_Sign1). */
static int tag_head(struct cbr *r, struct cbr_item *it)
{
	uint8_t ai = r->p[0] & 0x1f;
	size_t n = ai < 24 ? 0 : ai == 24 ? 1 : ai == 25 ? 2 : ai == 26 ? 4 :
		   ai == 27 ? 8 : SIZE_MAX;
	uint64_t v = ai;

	if (n == SIZE_MAX)
		return ai == 31 ? -ENOTSUP : -EINVAL;
	if (cbr_left(r) < n + 1)
		return -EINVAL;
	if (n) {
		v = 0;
		for (size_t i = 1; i <= n; i++)
			v = v << 8 | r->p[i];
	}
	it->type = CBR_TAG;
	it->val = v;
	r->p += n + 1;
	return 0;
}

int cbr_next(struct cbr *r, struct cbr_item *it)
{
	struct head_ctx h = { .it = it, .bad = 0 };
	struct cbor_decoder_result res;
	size_t left = cbr_left(r);

	memset(it, 0, sizeof(*it));
	it->type = CBR_OTHER;
	if (left == 0)
		return -ENODATA;
	it->start = r->p;
	if ((r->p[0] >> 5) == 6) /* libcbor 0.8 rejects some tag heads */
		return tag_head(r, it);
	res = cbor_stream_decode(r->p, left, &head_cbs, &h);
	if (res.status != CBOR_DECODER_FINISHED || res.read == 0 || res.read > left)
		return -EINVAL;
	if (h.bad)
		return -ENOTSUP;
	if ((it->type == CBR_BYTES || it->type == CBR_TEXT) &&
	    (it->ptr < r->p || it->len > left ||
	     (size_t)(it->ptr - r->p) > left - it->len))
		return -EINVAL;
	r->p += res.read;
	if ((it->type == CBR_ARRAY && it->val > cbr_left(r)) ||
	    (it->type == CBR_MAP && it->val > cbr_left(r) / 2))
		return -EINVAL;
	return 0;
}

int cbr_skip(struct cbr *r)
{
	uint64_t owed = 1;
	struct cbr_item it;
	int rc;

	while (owed) {
		rc = cbr_next(r, &it);
		if (rc)
			return rc == -ENODATA ? -EINVAL : rc;
		owed--;
		if (it.type == CBR_ARRAY)
			owed += it.val;
		else if (it.type == CBR_MAP)
			owed += 2 * it.val;
		else if (it.type == CBR_TAG)
			owed += 1;
		if (owed > cbr_left(r))
			return -EINVAL; /* more items owed than bytes left */
	}
	return 0;
}

int cbr_int(const struct cbr_item *it, int64_t *v)
{
	if (it->type != CBR_UINT && it->type != CBR_NEGINT)
		return -EINVAL;
	if (it->val > (uint64_t)INT64_MAX)
		return -ERANGE;
	*v = it->type == CBR_UINT ? (int64_t)it->val : -1 - (int64_t)it->val;
	return 0;
}

/* ---- writer --------------------------------------------------------------- */

#define CBW_MAX (1u << 20) /* nothing we build is larger */

static uint8_t *cbw_reserve(struct cbw *w, size_t n)
{
	if (w->err)
		return NULL;
	if (n > CBW_MAX || w->len > CBW_MAX - n) {
		w->err = -E2BIG;
		return NULL;
	}
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *p = realloc(w->buf, cap);
		if (!p) {
			w->err = -ENOMEM;
			return NULL;
		}
		w->buf = p;
		w->cap = cap;
	}
	return w->buf + w->len;
}

/* Every head fits in 9 bytes. */
#define CBW_HEAD(w, call)                                         \
	do {                                                      \
		uint8_t *dst_ = cbw_reserve((w), 9);              \
		if (dst_) {                                       \
			size_t n_ = call;                         \
			if (n_ == 0)                              \
				(w)->err = -EINVAL;               \
			(w)->len += n_;                           \
		}                                                 \
	} while (0)

void cbw_uint(struct cbw *w, uint64_t v) { CBW_HEAD(w, cbor_encode_uint(v, dst_, 9)); }
void cbw_array(struct cbw *w, size_t n) { CBW_HEAD(w, cbor_encode_array_start(n, dst_, 9)); }
void cbw_map(struct cbw *w, size_t n) { CBW_HEAD(w, cbor_encode_map_start(n, dst_, 9)); }
void cbw_tag(struct cbw *w, uint64_t t) { CBW_HEAD(w, cbor_encode_tag(t, dst_, 9)); }
void cbw_bool(struct cbw *w, int b) { CBW_HEAD(w, cbor_encode_bool(b != 0, dst_, 9)); }

void cbw_int(struct cbw *w, int64_t v)
{
	if (v >= 0)
		cbw_uint(w, (uint64_t)v);
	else
		CBW_HEAD(w, cbor_encode_negint((uint64_t)(-1 - v), dst_, 9));
}

void cbw_raw(struct cbw *w, const uint8_t *p, size_t n)
{
	uint8_t *dst = cbw_reserve(w, n);

	if (dst && n) {
		memcpy(dst, p, n);
		w->len += n;
	}
}

void cbw_bytes(struct cbw *w, const uint8_t *p, size_t n)
{
	CBW_HEAD(w, cbor_encode_bytestring_start(n, dst_, 9));
	cbw_raw(w, p, n);
}

void cbw_text(struct cbw *w, const char *p, size_t n)
{
	CBW_HEAD(w, cbor_encode_string_start(n, dst_, 9));
	cbw_raw(w, (const uint8_t *)p, n);
}

int cbw_finish(struct cbw *w, uint8_t **out, size_t *len)
{
	if (w->err) {
		free(w->buf);
		*out = NULL;
		*len = 0;
		return w->err;
	}
	*out = w->buf;
	*len = w->len;
	return 0;
}
