/* cbor_rd.h - a bounded, non-allocating CBOR reader for the COSE and voucher
 * codecs (private to src/codec).
 *
 * Built on libcbor's streaming decoder (cbor_stream_decode), which decodes one
 * item head at a time and hands out byte and text strings as pointers into
 * the input. Only definite lengths are accepted (RFC 8949 4.2.1 deterministic
 * encoding, which COSE objects use): indefinite-length items are -ENOTSUP.
 * Skipping a nested item needs no recursion: a counter of items still owed.
 */
#ifndef ESTGW_CBOR_RD_H
#define ESTGW_CBOR_RD_H

#include <stddef.h>
#include <stdint.h>

enum cbr_type {
	CBR_UINT,   /**< val = the number */
	CBR_NEGINT, /**< val = n, the number is -1 - n */
	CBR_BYTES,  /**< ptr/len */
	CBR_TEXT,   /**< ptr/len (UTF-8 not checked) */
	CBR_ARRAY,  /**< val = count */
	CBR_MAP,    /**< val = pairs */
	CBR_TAG,    /**< val = tag number; the tagged item follows */
	CBR_FALSE,
	CBR_TRUE,
	CBR_NULL,
	CBR_OTHER,  /**< undefined, floats */
};

struct cbr_item {
	enum cbr_type type;
	uint64_t val;
	const uint8_t *ptr;
	size_t len;
	const uint8_t *start; /**< first byte of the head */
};

struct cbr {
	const uint8_t *p, *end;
};

static inline void cbr_init(struct cbr *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->end = p + len;
}

static inline size_t cbr_left(const struct cbr *r)
{
	return (size_t)(r->end - r->p);
}

/** Read one item head (and a string's bytes). -EINVAL malformed/truncated,
 *  -ENOTSUP indefinite length, -ENODATA at the end of input. A collection
 *  count larger than the bytes left is -EINVAL (each item needs one byte). */
int cbr_next(struct cbr *r, struct cbr_item *it);

/** Skip one whole data item (with everything nested in it). */
int cbr_skip(struct cbr *r);

/** A growable output buffer for deterministic CBOR (libcbor's encoders
 *  write the heads). Errors stick: check w.err once at the end. */
struct cbw {
	uint8_t *buf;
	size_t len, cap;
	int err; /**< 0 or -ENOMEM / -E2BIG */
};

void cbw_uint(struct cbw *w, uint64_t v);
void cbw_int(struct cbw *w, int64_t v);
void cbw_bytes(struct cbw *w, const uint8_t *p, size_t n);
void cbw_text(struct cbw *w, const char *p, size_t n);
void cbw_array(struct cbw *w, size_t n);
void cbw_map(struct cbw *w, size_t n);
void cbw_tag(struct cbw *w, uint64_t tag);
void cbw_bool(struct cbw *w, int b);
/** Append already-encoded CBOR. */
void cbw_raw(struct cbw *w, const uint8_t *p, size_t n);
/** Hand the buffer over (NULL on error: then it is freed). */
int cbw_finish(struct cbw *w, uint8_t **out, size_t *len);

/** Read an integer (uint or negint) into @p v; -ERANGE when it does not fit
 *  an int64_t, -EINVAL for another type. */
int cbr_int(const struct cbr_item *it, int64_t *v);

#endif
