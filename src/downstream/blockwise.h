/* blockwise.h - block-wise transfers (RFC 7959) without libcoap.
 *
 * Owns: the Block option value (RFC 7959 §2.2), the Block1 bodies being
 * reassembled in one DTLS session (keyed by the caller: path, Request-Tag,
 * Content-Format), the finished answers a session keeps for its Block2
 * follow-up requests and for a repeated last Block1 block (E5-E8),
 * the Block2 slice of an answer, and the counters that bound all of it
 * over every session (E1, E4).
 * Must not: include libcoap, do I/O, read the clock, log or keep globals:
 * the caller passes the time, owns the pool and sends what it is told.
 */
#ifndef ESTGW_BLOCKWISE_H
#define ESTGW_BLOCKWISE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/** A Block1 or Block2 option value: NUM (20 bits), M, SZX (0..7). */
struct bw_block {
	uint32_t num;
	uint8_t m;
	uint8_t szx;
};

#define BW_SZX_MAX 6 /* 1024 bytes; 7 is reserved (BERT, reliable transports) */

static inline size_t bw_size(uint8_t szx) { return (size_t)16 << szx; }

/** Decode an option value of @p len bytes. -EINVAL when longer than 3
 *  bytes (RFC 7959 §2.2: 0-3). SZX 7 is decoded; the caller decides. */
int bw_block_parse(const uint8_t *v, size_t len, struct bw_block *b);
/** Encode @p b into @p out in its shortest form; returns the length 0..3. */
size_t bw_block_encode(const struct bw_block *b, uint8_t out[3]);

struct bw_limits {
	size_t max_body;         /**< largest body; beyond: 4.13 + Size1 */
	size_t per_session;      /**< bodies in progress per session; a new one drops the oldest */
	size_t per_client;       /**< bodies in progress per client identity (all its
				  *  sessions); a new one drops its oldest (E4) */
	size_t reserve;          /**< of `total`, the last ones only for an identity
				  *  that holds none (E4) */
	size_t total;            /**< bodies in progress in all sessions; beyond: 5.03 */
	size_t total_bytes;      /**< bytes of all bodies in progress; beyond: 5.03 */
	unsigned lifetime;       /**< seconds a body in progress or a kept answer lives
				  *  untouched; bodies expire in every session (E4) */
	size_t keep_per_session; /**< answers kept per session; a new one drops the oldest */
	size_t keep_total_bytes; /**< bytes of all kept answers; beyond: not kept */
};

struct bw_xfer;
struct bw_kept;
struct bw_owner;

/** Counters over all sessions; the caller owns one (zero-initialised but
 *  for lim). */
struct bw_pool {
	struct bw_limits lim;
	size_t count, bytes;     /**< bodies in progress */
	size_t kept, kept_bytes; /**< answers kept */
	struct bw_xfer *lru_old, *lru_new; /**< every body in progress, least
					    *  recently fed first */
	struct bw_owner *owners; /**< identities holding bodies, with counts */
};

/** One DTLS session's state; zero-initialised, emptied by bw_session_clear.
 *  @p owner: the client identity (set by the caller before the first feed,
 *  valid until the clear; NULL or "" counts as one identity, "-"). */
struct bw_session {
	const char *owner;
	struct bw_xfer *xfers;
	size_t nxfers;
	struct bw_kept *kept;
	size_t nkept;
};

/** One request PDU as far as block-wise transfer is concerned. */
struct bw_req {
	const char *key;        /**< the body: path, Request-Tag, Content-Format */
	const char *answer_key; /**< its answer: method, path, Accept, query, Request-Tag */
	const uint8_t *block1;  /**< Block1 option value, NULL: none */
	size_t block1_len;
	const uint8_t *block2;  /**< Block2 option value, NULL: none */
	size_t block2_len;
	int has_size1;
	uint32_t size1;
	const uint8_t *data;    /**< payload */
	size_t len;
	time_t now;
};

/** A finished answer as it goes out (and is kept for Block2 follow-ups). */
struct bw_answer {
	uint8_t code;
	int cf;                 /**< -1: no Content-Format option */
	int has_max_age;
	uint32_t max_age;
	uint8_t *payload;       /**< malloc'd; zeroed when freed (may hold a key, G7) */
	size_t len;
	uint8_t etag[8];        /**< set by bw_keep / bw_etag */
	int szx;                /**< Block2 SZX its first block went out with, -1: whole */
};

enum bw_verdict {
	BW_READY,  /**< body complete: body/len (owned: free it), block2_szx */
	BW_MORE,   /**< answer 2.31 Continue with Block1 echo */
	BW_REPEAT, /**< a repeat of a finished body's last block: send *answer again (E8) */
	BW_ERROR,  /**< answer code/diag (Size1 = size1 with 4.13) */
};

struct bw_out {
	enum bw_verdict verdict;
	uint8_t code;            /**< MORE: 2.31; ERROR: 4.00 4.02 4.08 4.13 5.00 5.03 */
	const char *diag;
	uint32_t size1;          /**< with 4.13: the largest body accepted */
	int echo;                /**< put Block1 = echo_b1 into the answer (RFC 7959 §2.3) */
	struct bw_block echo_b1;
	int block2_szx;          /**< READY: Block2 SZX asked for in any block (RFC 9148
				  *  App. B.2, RFC 7959 Figure 14), -1: none */
	const uint8_t *body;     /**< READY */
	size_t len;
	uint8_t *owned;          /**< READY: buffer to free (NULL: body points into the request) */
	const struct bw_answer *answer; /**< REPEAT: valid until the session changes */
};

/** Feed one request. A request without Block1, or Block1 0 with M=0, is a
 *  whole body (READY pointing at rq->data). 2.31/4.08/4.13/5.03 as RFC
 *  7959 §2.3, §2.9; SZX 7 is 4.00 (§2.2); a non-final block that is not
 *  exactly its size, or a last one larger than it, is 4.00. */
void bw_feed(struct bw_pool *pool, struct bw_session *s,
	     const struct bw_req *rq, struct bw_out *out);

/** Keep @p a (its payload is taken over, a->payload set to NULL; a->etag
 *  set) under @p answer_key for Block2 follow-ups; with @p last (the
 *  request carrying the final Block1 block) also for a repeat of that
 *  block. A kept answer with the same key is replaced. 0, or -ENOSPC
 *  (over keep_total_bytes) / -ENOMEM, then @p a is left to the caller. */
int bw_keep(struct bw_pool *pool, struct bw_session *s, const char *answer_key,
	    const struct bw_req *last, struct bw_answer *a, time_t now);

/** The answer kept under @p answer_key, or NULL. Valid until the session
 *  changes. */
const struct bw_answer *bw_find(struct bw_pool *pool, struct bw_session *s,
				const char *answer_key, time_t now);

/** Drop the bodies in progress untouched for the lifetime, in every
 *  session (bw_feed does it first). */
void bw_expire(struct bw_pool *pool, time_t now);

/** Bodies in progress held by @p owner (all its sessions). */
size_t bw_owner_count(const struct bw_pool *pool, const char *owner);

/** Drop what of @p s is past the lifetime (bodies in progress, kept
 *  answers), as every call above does first: for a session that sends no
 *  more requests (coap_server.c's idle sweep; J2). */
void bw_expire_session(struct bw_pool *pool, struct bw_session *s, time_t now);

/** Free everything of @p s (session closed). */
void bw_session_clear(struct bw_pool *pool, struct bw_session *s);

/** Zero and free @p a's payload. */
void bw_answer_clear(struct bw_answer *a);

/** An 8-byte ETag for the answer @p a (FNV-1a 64 of code, CF and bytes):
 *  each body its own, so a client sees when blocks are not of one body. */
void bw_etag(const struct bw_answer *a, uint8_t out[8]);

/** Which part of a @p len byte answer goes into one message. */
struct bw_slice {
	int block;             /**< 0: the whole answer, no Block2 option */
	struct bw_block b2;    /**< with block: the Block2 option of the answer */
	size_t off, n;
};

/** The slice for a request with Block2 @p req (NULL: none) or an earlier
 *  SZX preference @p pref_szx (-1: none), when one message has room for
 *  @p room payload bytes. -EINVAL: SZX 7 (4.00); -ERANGE: NUM past the
 *  end (4.00); -ENOSPC: not even 16 bytes fit. */
int bw_block2(size_t len, const struct bw_block *req, int pref_szx,
	      size_t room, struct bw_slice *out);

#endif
