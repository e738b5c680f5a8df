/* hs_trim.c - the handshake buffer of idle DTLS connections (see hs_trim.h).
 *
 * OpenSSL 3.0 grows every connection's handshake buffer (a BUF_MEM) to
 * 16 KiB when the handshake starts (4/3 of that allocated, all of it
 * zeroed), and for DTLS over UDP keeps it after the handshake for
 * retransmissions it may still have to read; no public call frees it. It is
 * more than half of what an idle DTLS session costs. Its contents are dead
 * once the handshake is over (a handshake message that comes later is
 * written into it before anything reads it), so the whole pages inside it
 * can be given back to the kernel (MADV_DONTNEED: they read as zeros if
 * OpenSSL touches them again, and cost memory only then).
 *
 * Finding the buffer: OpenSSL's allocations go through hooks
 * (CRYPTO_set_mem_functions, before OpenSSL allocates anything) that note
 * the BUF_MEMs made lately in crypto/buffer/buffer.c and the last data
 * block of 16 KiB or more grown in one. When estgw first sees a connection
 * (its ClientHello, in the same SSL_accept that made that buffer), the
 * connection object is searched for a pointer to the BUF_MEM holding that
 * block: its offset is where the SSL keeps its handshake buffer. Trimming
 * starts only after LEARN connections agree on one offset; any later
 * connection found to keep it elsewhere turns it off for the life of the
 * process, as does an OpenSSL that is not 3.x or hooks that could not be
 * set. A connection where the search finds nothing, or two places, tells
 * nothing and is passed over.
 */
#include "tls/hs_trim.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/buffer.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "estgw/log.h"

#define RECENT 8       /* BUF_MEMs remembered */
#define BIG 16384      /* the handshake buffer's size (SSL3_RT_MAX_PLAIN_LENGTH) */
#define LEARN 3        /* connections that agree before trimming starts */
#define FILES 64       /* the cache of allocation call sites */

enum trim_state { T_OFF, T_LEARNING, T_ON };

static struct {
	enum trim_state state;
	BUF_MEM *recent[RECENT]; /* newest at next - 1 */
	unsigned next;
	void *big;               /* the last block of >= BIG grown in a BUF_MEM */
	size_t off;              /* SSL's handshake BUF_MEM pointer, when learnt */
	unsigned agreed;
	uint64_t trimmed;        /* bytes given back, for the log */
	struct {
		const char *file;
		int buffer;
	} files[FILES];
} t;

/* 1 when @p file (a call site OpenSSL names) is crypto/buffer/buffer.c.
 * The names are string constants, so their addresses are cached. */
static int from_buffer(const char *file)
{
	unsigned i;
	const char *end;

	if (!file)
		return 0;
	i = (unsigned)(((uintptr_t)file >> 3) % FILES);
	if (t.files[i].file == file)
		return t.files[i].buffer;
	end = file + strlen(file);
	t.files[i].file = file;
	t.files[i].buffer = end - file >= 15 && strcmp(end - 15, "buffer/buffer.c") == 0;
	return t.files[i].buffer;
}

static void forget(void *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < RECENT; i++)
		if ((void *)t.recent[i] == p)
			t.recent[i] = NULL;
	if (t.big == p)
		t.big = NULL;
}

static void *hook_malloc(size_t n, const char *file, int line)
{
	void *p;

	(void)line;
	if (n == 0)
		return NULL; /* as CRYPTO_malloc does without hooks */
	p = malloc(n);
	if (p && n == sizeof(BUF_MEM) && from_buffer(file)) {
		t.recent[t.next % RECENT] = p;
		t.next++;
	}
	return p;
}

static void *hook_realloc(void *p, size_t n, const char *file, int line)
{
	void *q;

	(void)line;
	if (n == 0) { /* CRYPTO_realloc's contract: free, NULL */
		forget(p);
		free(p);
		return NULL;
	}
	q = realloc(p, n);
	if (!q)
		return NULL;
	if (q != p)
		forget(p);
	if (n >= BIG && from_buffer(file))
		t.big = q;
	return q;
}

static void hook_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	forget(p);
	free(p);
}

int estgw_hs_trim_init(void)
{
	if (OPENSSL_VERSION_MAJOR != 3 || OpenSSL_version_num() >> 28 != 3)
		return 0;
	if (CRYPTO_set_mem_functions(hook_malloc, hook_realloc, hook_free))
		t.state = T_LEARNING;
	return t.state == T_LEARNING;
}

/* The offset in @p ssl of a pointer to the BUF_MEM holding t.big, or
 * (size_t)-1. */
static size_t find_offset(const SSL *ssl)
{
	const BUF_MEM *m = NULL;
	size_t size = malloc_usable_size((void *)ssl), found = (size_t)-1;

	for (unsigned i = 0; i < RECENT; i++)
		if (t.recent[i] && t.big && t.recent[i]->data == t.big)
			m = t.recent[i];
	if (!m)
		return (size_t)-1;
	for (size_t off = 0; off + sizeof(m) <= size; off += sizeof(m)) {
		const BUF_MEM *v;
		memcpy(&v, (const char *)ssl + off, sizeof(v));
		if (v != m)
			continue;
		if (found != (size_t)-1)
			return (size_t)-1; /* two: not sure which */
		found = off;
	}
	return found;
}

static void turn_off(const char *why)
{
	t.state = T_OFF;
	log_warn("dtls", "idle sessions keep their handshake buffer from now on: %s", why);
}

void estgw_hs_trim_learn(const void *ssl)
{
	size_t off;

	if (t.state == T_OFF || !ssl)
		return;
	off = find_offset(ssl);
	if (off == (size_t)-1)
		return; /* this one does not tell (its buffer was made earlier) */
	if (t.agreed && off != t.off) {
		turn_off("connections keep their handshake buffer at different places");
		return;
	}
	t.off = off;
	if (t.state == T_LEARNING && ++t.agreed >= LEARN) {
		t.state = T_ON;
		log_debug("dtls", "idle sessions give back their handshake buffer (offset %zu)", off);
	}
}

int estgw_hs_trim(const void *ssl)
{
	const BUF_MEM *m;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), from, to;

	if (t.state != T_ON || !ssl || SSL_in_init(ssl))
		return 0;
	memcpy(&m, (const char *)ssl + t.off, sizeof(m));
	if (!m || !m->data || m->max < BIG || m->length > m->max)
		return 0;
	from = ((uintptr_t)m->data + page - 1) & ~(page - 1);
	to = ((uintptr_t)m->data + m->max) & ~(page - 1);
	if (to <= from || madvise((void *)from, to - from, MADV_DONTNEED) != 0)
		return 0;
	t.trimmed += to - from;
	return (int)(to - from);
}

int estgw_hs_trim_on(void)
{
	return t.state == T_ON;
}
