/* dtls_cookie.c - the stateless DTLS cookie (RFC 6347 §4.2.1, L1): the
 * HMAC, its rotating secret, and the cookie callbacks of libcoap's DTLS
 * SSL_CTX (OpenSSL; see dtls_cookie.h). The pre-filter checks a cookie
 * against the datagram's source; OpenSSL, which sees the same datagram
 * next through libcoap, only needs to accept the cookies approved lately.
 */
#include "tls/dtls_cookie.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#define CTX_MAX 4

/* What OpenSSL's callbacks need: no argument reaches them but the SSL. */
static struct {
	int idx;                       /* ex_data index of the watch, -1 */
	int watching;
	SSL_CTX *ctx[CTX_MAX];         /* seen while watching */
	int nctx;
	uint8_t approved[ESTGW_COOKIE_APPROVED][ESTGW_COOKIE_LEN]; /* a ring */
	unsigned napproved, next;
	unsigned long accepted, refused;
} g = { .idx = -1 };

static void rotate(struct estgw_cookie *c, time_t now)
{
	if (now >= c->born && now - c->born < (time_t)c->rotate)
		return;
	memcpy(c->prev, c->cur, sizeof(c->prev));
	if (RAND_bytes(c->cur, sizeof(c->cur)) != 1)
		memcpy(c->cur, c->prev, sizeof(c->cur)); /* keep the old one */
	c->born = now;
}

int estgw_cookie_init(struct estgw_cookie *c, unsigned rotate_s, time_t now)
{
	memset(c, 0, sizeof(*c));
	c->rotate = rotate_s ? rotate_s : 1;
	c->born = now;
	if (RAND_bytes(c->cur, sizeof(c->cur)) != 1 ||
	    RAND_bytes(c->prev, sizeof(c->prev)) != 1)
		return -EIO;
	return 0;
}

static void mac(const uint8_t key[32], const uint8_t *peer, size_t peer_len,
		const uint8_t *params, size_t params_len,
		uint8_t out[ESTGW_COOKIE_LEN])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	uint8_t buf[64 + 1024];
	size_t n = 0;

	/* one buffer for the one-shot HMAC: peer (bounded by the caller),
	 * then the parameters, cut at the buffer's end (they are bounded by
	 * the ClientHello's own fields; more would not add to the binding) */
	if (peer_len > 64)
		peer_len = 64;
	memcpy(buf, peer, peer_len);
	n = peer_len;
	if (params_len > sizeof(buf) - n)
		params_len = sizeof(buf) - n;
	if (params_len)
		memcpy(buf + n, params, params_len);
	n += params_len;
	if (!HMAC(EVP_sha256(), key, 32, buf, n, md, &mdlen))
		memset(md, 0, sizeof(md));
	memcpy(out, md, ESTGW_COOKIE_LEN);
}

void estgw_cookie_make(struct estgw_cookie *c, time_t now,
		       const uint8_t *peer, size_t peer_len,
		       const uint8_t *params, size_t params_len,
		       uint8_t out[ESTGW_COOKIE_LEN])
{
	rotate(c, now);
	mac(c->cur, peer, peer_len, params, params_len, out);
}

int estgw_cookie_check(struct estgw_cookie *c, time_t now,
		       const uint8_t *peer, size_t peer_len,
		       const uint8_t *params, size_t params_len,
		       const uint8_t *cookie, size_t cookie_len)
{
	uint8_t want[ESTGW_COOKIE_LEN];
	int ok;

	if (cookie_len != ESTGW_COOKIE_LEN)
		return 0;
	rotate(c, now);
	mac(c->cur, peer, peer_len, params, params_len, want);
	ok = CRYPTO_memcmp(want, cookie, ESTGW_COOKIE_LEN) == 0;
	mac(c->prev, peer, peer_len, params, params_len, want);
	ok |= CRYPTO_memcmp(want, cookie, ESTGW_COOKIE_LEN) == 0;
	return ok;
}

/* ---- libcoap's SSL_CTX -------------------------------------------------- */

/* Runs inside every SSL_CTX_new() while registered; records the new
 * context only between capture_begin and capture_end. */
static void on_new_ctx(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
		       long argl, void *argp)
{
	(void)ptr; (void)ad; (void)idx; (void)argl; (void)argp;
	if (g.watching && g.nctx < CTX_MAX)
		g.ctx[g.nctx++] = parent;
}

int estgw_cookie_capture_begin(void)
{
	if (g.idx < 0)
		g.idx = SSL_CTX_get_ex_new_index(0, NULL, on_new_ctx, NULL, NULL);
	if (g.idx < 0)
		return -ENOMEM;
	g.nctx = 0;
	g.watching = 1;
	return 0;
}

static int is_dtls(const SSL_CTX *ctx)
{
	const SSL_METHOD *m = SSL_CTX_get_ssl_method(ctx);

	return m == DTLS_method() || m == DTLS_server_method();
}

int estgw_cookie_capture_end(void)
{
	int n = 0, keep = 0;

	g.watching = 0;
	for (int i = 0; i < g.nctx; i++)
		if (is_dtls(g.ctx[i]))
			g.ctx[keep++] = g.ctx[i];
	g.nctx = keep;
	n = keep;
	return n;
}

/* Never a cookie the verify side accepts: RFC 6347 cookies are the
 * pre-filter's; this one only keeps OpenSSL's state machine whole. */
static int gen_cookie(SSL *ssl, unsigned char *cookie, unsigned int *len)
{
	(void)ssl;
	if (RAND_bytes(cookie, ESTGW_COOKIE_LEN) != 1)
		memset(cookie, 0, ESTGW_COOKIE_LEN);
	*len = ESTGW_COOKIE_LEN;
	return 1;
}

static int verify_cookie(SSL *ssl, const unsigned char *cookie,
			 unsigned int len)
{
	int ok = 0;

	/* Asked twice per handshake (DTLSv1_listen, then the ClientHello in
	 * SSL_accept), with other approvals possibly in between. */
	(void)ssl;
	for (unsigned i = 0; len == ESTGW_COOKIE_LEN && !ok && i < g.napproved; i++)
		ok = CRYPTO_memcmp(cookie, g.approved[i], ESTGW_COOKIE_LEN) == 0;
	if (ok)
		g.accepted++;
	else
		g.refused++;
	return ok;
}

int estgw_cookie_install(void)
{
	for (int i = 0; i < g.nctx; i++) {
		SSL_CTX_set_cookie_generate_cb(g.ctx[i], gen_cookie);
		SSL_CTX_set_cookie_verify_cb(g.ctx[i], verify_cookie);
	}
	return g.nctx ? 0 : -ENOENT;
}

void estgw_cookie_approve(const uint8_t *cookie, size_t len)
{
	if (len != ESTGW_COOKIE_LEN)
		return;
	memcpy(g.approved[g.next], cookie, ESTGW_COOKIE_LEN);
	g.next = (g.next + 1) % ESTGW_COOKIE_APPROVED;
	if (g.napproved < ESTGW_COOKIE_APPROVED)
		g.napproved++;
}

void estgw_cookie_counts(unsigned long *accepted, unsigned long *refused)
{
	*accepted = g.accepted;
	*refused = g.refused;
}
