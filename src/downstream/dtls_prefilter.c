/* dtls_prefilter.c - the DTLS endpoint's datagrams before libcoap reads
 * them: stateless cookie exchange and half-open bounds (L1, L2; see
 * dtls_prefilter.h).
 *
 * libcoap 4.3.1 makes a "hello" session for every ClientHello from a new
 * address before any cookie is checked and counts it against its handshake
 * limit; so no datagram from an address without a session reaches it
 * unless it is a ClientHello whose cookie this file made for that address
 * (RFC 6347 §4.2.1: the server keeps no state before that).
 */
#include "downstream/dtls_prefilter.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls/dtls_cookie.h"

#define BUCKETS 4096u
#define COOKIE_ROTATE 60       /* seconds a cookie secret is current */
#define RCVBUF (4 << 20)       /* receive queue asked for on the endpoint */
#define PEEK_MAX 2048          /* a ClientHello's fields we need come first */
#define STALLED_S 2            /* clock seconds in its handshake: stalled
				* (1-2 s at least; a device's takes well
				* under one on a working link) */

enum peer_state { P_HALF, P_OPEN, P_DEAD };

struct peer {
	struct peer *hnext;            /* bucket chain */
	struct peer *prev, *next;      /* the half-open FIFO, oldest first */
	struct pf_addr a;
	struct pf_addr host;           /* whose per-address bound it counts in */
	enum peer_state st;
	void *session;                 /* libcoap's, NULL until reported */
	int ifindex;
	time_t since;
};

struct prefilter {
	struct pf_limits lim;
	struct estgw_cookie ck;
	pf_evict_fn evict;
	void *arg;
	pf_host_fn host_of;            /* NULL: each peer's own address */
	void *host_arg;
	struct peer *bucket[BUCKETS];
	struct peer *half_head, *half_tail;
	size_t nhalf, npeers;
	struct pf_stats st;
};

/* ---- addresses ---------------------------------------------------------- */

int pf_addr_of(const struct sockaddr *sa, socklen_t salen, struct pf_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *s4 = (const void *)sa;
		a->b[0] = 4;
		memcpy(a->b + 1, &s4->sin_port, 2);
		memcpy(a->b + 3, &s4->sin_addr, 4);
		a->len = 7;
		return 0;
	}
	if (sa->sa_family == AF_INET6 && salen >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		a->b[0] = 6;
		memcpy(a->b + 1, &s6->sin6_port, 2);
		memcpy(a->b + 3, &s6->sin6_addr, 16);
		a->len = 19;
		return 0;
	}
	return -EAFNOSUPPORT;
}

socklen_t pf_addr_to_sockaddr(const struct pf_addr *a, struct sockaddr *sa,
			      socklen_t room)
{
	if (a->b[0] == 4 && room >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in *s4 = (void *)sa;
		memset(s4, 0, sizeof(*s4));
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_port, a->b + 1, 2);
		memcpy(&s4->sin_addr, a->b + 3, 4);
		return sizeof(*s4);
	}
	if (a->b[0] == 6 && room >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 *s6 = (void *)sa;
		memset(s6, 0, sizeof(*s6));
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_port, a->b + 1, 2);
		memcpy(&s6->sin6_addr, a->b + 3, 16);
		return sizeof(*s6);
	}
	return 0;
}

static int same_peer(const struct pf_addr *x, const struct pf_addr *y)
{
	return x->len == y->len && memcmp(x->b, y->b, x->len) == 0;
}

/* Same IP address, any port. */
static int same_host(const struct pf_addr *x, const struct pf_addr *y)
{
	return x->len == y->len && x->b[0] == y->b[0] &&
	       memcmp(x->b + 3, y->b + 3, (size_t)x->len - 3) == 0;
}

static unsigned hash(const struct pf_addr *a)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < a->len; i++)
		h = (h ^ a->b[i]) * 16777619u;
	return h & (BUCKETS - 1);
}

/* ---- the ClientHello (RFC 6347 §4.1, §4.2.1, §4.3.2) ------------------- */

static uint32_t be(const uint8_t *p, size_t n)
{
	uint32_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

int pf_parse_hello(const uint8_t *d, size_t n, struct pf_hello *h)
{
	size_t rec_len, hs_len, frag_off, frag_len, off, l;
	const uint8_t *b;

	memset(h, 0, sizeof(*h));
	if (!d || n < 13 + 12 || d[0] != 22 || d[1] != 0xfe || be(d + 3, 2) != 0)
		return -EINVAL; /* handshake record, a DTLS version, epoch 0 */
	rec_len = be(d + 11, 2);
	if (rec_len > n - 13 || rec_len < 12)
		return -EINVAL;
	b = d + 13;
	hs_len = be(b + 1, 3);
	frag_off = be(b + 6, 3);
	frag_len = be(b + 9, 3);
	if (b[0] != 1 || frag_off != 0 || frag_len != hs_len || hs_len > rec_len - 12)
		return -EINVAL; /* a ClientHello, whole in this record */
	memcpy(h->rec_seq, d + 5, 6);
	h->msg_seq = (uint16_t)be(b + 4, 2);
	b += 12;
	off = 2 + 32;                       /* client_version, random */
	if (hs_len < off + 1 || (l = b[off]) > 32 || hs_len < off + 1 + l + 1)
		return -EINVAL;
	off += 1 + l;                       /* session_id */
	h->head = b;
	h->head_len = off;
	l = b[off];
	if (hs_len < off + 1 + l + 2)
		return -EINVAL;
	h->cookie = b + off + 1;
	h->cookie_len = l;
	off += 1 + l;                       /* cookie */
	h->tail = b + off;
	l = be(b + off, 2);
	if (l < 2 || (l & 1) || hs_len < off + 2 + l + 1)
		return -EINVAL;
	off += 2 + l;                       /* cipher_suites */
	l = b[off];
	if (l < 1 || hs_len < off + 1 + l)
		return -EINVAL;
	off += 1 + l;                       /* compression_methods */
	h->tail_len = (size_t)(b + off - h->tail);
	return 0;
}

size_t pf_build_hvr(const struct pf_hello *h, const uint8_t *cookie,
		    size_t cookie_len, uint8_t *out, size_t room)
{
	size_t body = 2 + 1 + cookie_len, n = 13 + 12 + body;
	uint8_t *p = out;

	if (cookie_len > 255 || n > room)
		return 0;
	/* record: handshake, DTLS 1.0 (RFC 6347 §4.2.1 for HelloVerifyRequest),
	 * epoch 0, the ClientHello's sequence number */
	*p++ = 22; *p++ = 0xfe; *p++ = 0xff; *p++ = 0; *p++ = 0;
	memcpy(p, h->rec_seq, 6); p += 6;
	*p++ = (uint8_t)((12 + body) >> 8); *p++ = (uint8_t)(12 + body);
	/* handshake: hello_verify_request (3), unfragmented */
	*p++ = 3; *p++ = 0; *p++ = (uint8_t)(body >> 8); *p++ = (uint8_t)body;
	*p++ = (uint8_t)(h->msg_seq >> 8); *p++ = (uint8_t)h->msg_seq;
	*p++ = 0; *p++ = 0; *p++ = 0;
	*p++ = 0; *p++ = (uint8_t)(body >> 8); *p++ = (uint8_t)body;
	*p++ = 0xfe; *p++ = 0xff;
	*p++ = (uint8_t)cookie_len;
	memcpy(p, cookie, cookie_len);
	return n;
}

/* The cookie's input beyond the peer: the parameters a client repeats
 * (RFC 6347 §4.2.1): version, random, session_id, cipher_suites,
 * compression_methods. */
static size_t hello_params(const struct pf_hello *h, uint8_t *buf, size_t room)
{
	size_t n = h->head_len < room ? h->head_len : room;
	size_t t;

	memcpy(buf, h->head, n);
	t = h->tail_len < room - n ? h->tail_len : room - n;
	memcpy(buf + n, h->tail, t);
	return n + t;
}

/* ---- peers -------------------------------------------------------------- */

struct prefilter *pf_new(const struct pf_limits *lim, time_t now,
			 pf_evict_fn evict, void *arg)
{
	struct prefilter *pf = calloc(1, sizeof(*pf));

	if (!pf)
		return NULL;
	if (estgw_cookie_init(&pf->ck, COOKIE_ROTATE, now) != 0) {
		free(pf);
		return NULL;
	}
	pf->lim = *lim;
	pf->evict = evict;
	pf->arg = arg;
	return pf;
}

void pf_free(struct prefilter *pf)
{
	if (!pf)
		return;
	for (unsigned i = 0; i < BUCKETS; i++)
		while (pf->bucket[i]) {
			struct peer *p = pf->bucket[i];
			pf->bucket[i] = p->hnext;
			free(p);
		}
	memset(&pf->ck, 0, sizeof(pf->ck));
	free(pf);
}

void pf_set_limits(struct prefilter *pf, const struct pf_limits *lim)
{
	pf->lim = *lim;
}

const struct pf_stats *pf_stats(const struct prefilter *pf)
{
	return &pf->st;
}

size_t pf_half_open(const struct prefilter *pf)
{
	return pf->nhalf;
}

size_t pf_peers(const struct prefilter *pf)
{
	return pf->npeers;
}

static struct peer *find(struct prefilter *pf, const struct pf_addr *a)
{
	for (struct peer *p = pf->bucket[hash(a)]; p; p = p->hnext)
		if (same_peer(&p->a, a))
			return p;
	return NULL;
}

static void half_unlink(struct prefilter *pf, struct peer *p)
{
	if (p->st != P_HALF)
		return;
	if (p->prev)
		p->prev->next = p->next;
	else
		pf->half_head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		pf->half_tail = p->prev;
	p->prev = p->next = NULL;
	pf->nhalf--;
}

static void half_append(struct prefilter *pf, struct peer *p)
{
	p->st = P_HALF;
	p->prev = pf->half_tail;
	p->next = NULL;
	if (pf->half_tail)
		pf->half_tail->next = p;
	else
		pf->half_head = p;
	pf->half_tail = p;
	pf->nhalf++;
}

/* The address whose per-address bound @p a counts in: its own, or what
 * the host hook says (a pledge behind a join proxy: the proxy's, H6). */
static void host_of(const struct prefilter *pf, const struct pf_addr *a,
		    struct pf_addr *host)
{
	if (!pf->host_of || pf->host_of(pf->host_arg, a, host) != 1)
		*host = *a;
}

void pf_set_host_fn(struct prefilter *pf, pf_host_fn fn, void *arg)
{
	pf->host_of = fn;
	pf->host_arg = arg;
}

static struct peer *peer_add(struct prefilter *pf, const struct pf_addr *a,
			     const struct pf_addr *host, time_t now)
{
	struct peer *p = calloc(1, sizeof(*p));
	unsigned h = hash(a);

	if (!p)
		return NULL;
	p->a = *a;
	p->host = *host;
	p->since = now;
	p->hnext = pf->bucket[h];
	pf->bucket[h] = p;
	pf->npeers++;
	half_append(pf, p);
	return p;
}

/* End @p p's half-open handshake: libcoap disconnects the session (freed
 * later, reported by pf_session_gone); until then its datagrams are
 * dropped. A peer libcoap never reported a session for goes at once. */
static void end_half_open(struct prefilter *pf, struct peer *p)
{
	half_unlink(pf, p);
	p->st = P_DEAD;
	if (!p->session || !pf->evict(pf->arg, p->session, &p->a, p->ifindex))
		pf_session_gone(pf, &p->a);
}

/* Room for one more half-open handshake from @p host's address when the
 * total is at its bound (L2). Below the total nothing goes: many devices
 * behind one address (a NAT, a stateful join proxy) may all be in their
 * handshakes at once while there is room (40 held devices from one address
 * lost 6 handshakes to the per-address bound applied without pressure).
 * At the total, an address under its per-address bound takes the oldest
 * slot of all (an attacker holding the slots from elsewhere cannot keep it
 * out). An address at its bound takes its own oldest slot if that one has
 * stalled (STALLED_S in its handshake); while its handshakes are all
 * fresh, the new one waits (-EBUSY: no state, the device's DTLS timer sends
 * the ClientHello again): taking a handshake that is going on would only
 * trade one device of that address for another (a burst of 256 devices
 * behind one address lost 156 handshakes that way). */
static int make_room(struct prefilter *pf, const struct pf_addr *host, time_t now)
{
	struct peer *oldest_own = NULL;
	unsigned own = 0;

	if (pf->nhalf < pf->lim.half_open)
		return 0;
	for (struct peer *p = pf->half_head; p; p = p->next)
		if (same_host(&p->host, host)) {
			if (!oldest_own)
				oldest_own = p;
			own++;
		}
	if (oldest_own && own >= pf->lim.per_address) {
		if (now - oldest_own->since < STALLED_S)
			return -EBUSY;
		end_half_open(pf, oldest_own);
		pf->st.evicted++;
	} else if (pf->half_head) {
		end_half_open(pf, pf->half_head);
		pf->st.evicted++;
	}
	return 0;
}

void pf_expire(struct prefilter *pf, time_t now)
{
	while (pf->half_head && now - pf->half_head->since >= (time_t)pf->lim.timeout) {
		end_half_open(pf, pf->half_head);
		pf->st.timed_out++;
	}
}

enum pf_verdict pf_decide(struct prefilter *pf, const struct pf_addr *a,
			  const uint8_t *d, size_t n, time_t now,
			  uint8_t *out, size_t *out_len)
{
	struct peer *p = find(pf, a);
	uint8_t params[PEEK_MAX], cookie[ESTGW_COOKIE_LEN];
	struct pf_hello h;
	size_t np;

	*out_len = 0;
	if (p) {
		if (p->st == P_DEAD) {
			pf->st.dropped++;
			return PF_DROP;
		}
		/* a retransmitted ClientHello with its cookie: OpenSSL may see it
		 * in a new hello session (libcoap had none yet), so approve it */
		if (n > 13 && d[0] == 22 && d[13] == 1 && pf_parse_hello(d, n, &h) == 0 &&
		    h.cookie_len) {
			np = hello_params(&h, params, sizeof(params));
			if (estgw_cookie_check(&pf->ck, now, a->b, a->len, params, np,
					       h.cookie, h.cookie_len))
				estgw_cookie_approve(h.cookie, h.cookie_len);
		}
		return PF_PASS;
	}
	if (pf_parse_hello(d, n, &h) != 0) {
		pf->st.dropped++;
		return PF_DROP;
	}
	np = hello_params(&h, params, sizeof(params));
	if (h.cookie_len && estgw_cookie_check(&pf->ck, now, a->b, a->len, params,
					       np, h.cookie, h.cookie_len)) {
		struct pf_addr host;
		host_of(pf, a, &host);
		if (make_room(pf, &host, now) != 0) {
			pf->st.deferred++;
			return PF_DROP;
		}
		if (!peer_add(pf, a, &host, now)) {
			pf->st.dropped++;
			return PF_DROP;
		}
		estgw_cookie_approve(h.cookie, h.cookie_len);
		pf->st.admitted++;
		return PF_PASS;
	}
	/* no cookie, or not one of ours (stale, or forged): a fresh one */
	estgw_cookie_make(&pf->ck, now, a->b, a->len, params, np, cookie);
	*out_len = pf_build_hvr(&h, cookie, sizeof(cookie), out, 300);
	if (!*out_len) {
		pf->st.dropped++;
		return PF_DROP;
	}
	pf->st.hvr++;
	return PF_HVR;
}

void pf_session_new(struct prefilter *pf, const struct pf_addr *a,
		    void *session, int ifindex, time_t now)
{
	struct peer *p = find(pf, a);
	struct pf_addr host;

	if (!p) { /* not through us: bound it all the same */
		pf->st.unfiltered++;
		host_of(pf, a, &host);
		p = peer_add(pf, a, &host, now);
	}
	if (p) {
		p->session = session;
		p->ifindex = ifindex;
	}
}

void pf_session_up(struct prefilter *pf, const struct pf_addr *a)
{
	struct peer *p = find(pf, a);

	if (p && p->st == P_HALF) {
		half_unlink(pf, p);
		p->st = P_OPEN;
	}
}

void pf_session_gone(struct prefilter *pf, const struct pf_addr *a)
{
	struct peer **pp = &pf->bucket[hash(a)];

	while (*pp && !same_peer(&(*pp)->a, a))
		pp = &(*pp)->hnext;
	if (!*pp)
		return;
	struct peer *p = *pp;
	*pp = p->hnext;
	half_unlink(pf, p);
	pf->npeers--;
	free(p);
}

/* ---- the socket --------------------------------------------------------- */

int pf_endpoint_socket(const struct sockaddr *sa, socklen_t salen)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	int found = -ENOENT;

	if (!dir)
		return -errno;
	while (found < 0 && (e = readdir(dir))) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = atoi(e->d_name), type = 0;
		socklen_t tl = sizeof(type);

		if (fd <= 2 || fd == dirfd(dir) ||
		    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
		    type != SOCK_DGRAM ||
		    getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
		    sl != salen || memcmp(&ss, sa, salen) != 0)
			continue;
		found = fd;
	}
	closedir(dir);
	return found;
}

int pf_find_socket(const struct sockaddr *sa, socklen_t salen)
{
	int fd = pf_endpoint_socket(sa, salen);
	int want = RCVBUF;

	/* a flood fills the queue before the loop wakes: ask for room (the
	 * kernel caps it at net.core.rmem_max; docs/performance.md) */
	if (fd >= 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
	return fd;
}

int pf_run(struct prefilter *pf, int fd, time_t now, unsigned max)
{
	uint8_t buf[PEEK_MAX], hvr[300];

	for (unsigned i = 0; i < max; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct pf_addr a;
		size_t hl;
		ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT,
				     (struct sockaddr *)&ss, &sl);
		if (n < 0)
			return 0; /* EAGAIN: nothing waits (or an error libcoap sees too) */
		enum pf_verdict v = pf_addr_of((struct sockaddr *)&ss, sl, &a) != 0 ? PF_PASS :
				    pf_decide(pf, &a, buf, (size_t)n, now, hvr, &hl);
		if (v == PF_PASS)
			return 1;
		(void)recv(fd, buf, 1, MSG_DONTWAIT); /* consume it */
		if (v == PF_HVR)
			(void)sendto(fd, hvr, hl, MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
	}
	return 2;
}

int pf_gate_find(int epfd, int fd, struct pf_gate *g)
{
	char path[64], line[256];
	FILE *f;
	int found = -ENOENT;

	/* one line per registered fd: "tfd: FD events: HEX data: HEX ..." */
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", epfd);
	if (!(f = fopen(path, "r")))
		return -errno;
	while (found < 0 && fgets(line, sizeof(line), f)) {
		int tfd;
		unsigned events;
		unsigned long long data;

		if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events,
			   &data) == 3 && tfd == fd) {
			*g = (struct pf_gate){ .epfd = epfd, .fd = fd, .data = data,
					       .events = events };
			found = 0;
		}
	}
	fclose(f);
	return found;
}

int pf_gate_hold(const struct pf_gate *g, int hold)
{
	struct epoll_event ev = { .events = hold ? 0 : g->events, .data.u64 = g->data };

	return epoll_ctl(g->epfd, EPOLL_CTL_MOD, g->fd, &ev) == 0 ? 0 : -errno;
}
