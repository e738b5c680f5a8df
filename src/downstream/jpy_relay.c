/* jpy_relay.c - JPY relay: stateless join proxies in, one loopback DTLS
 * peer per pledge out (H6; draft-ietf-anima-constrained-join-proxy-20).
 *
 * libcoap 4.3.1 keys its DTLS sessions by the peer's UDP address, and every
 * pledge behind a stateless join proxy arrives from the proxy's address. So
 * each (proxy address and port, jpy_header) gets a pledge session with its
 * own UDP socket connected to estgw's own DTLS endpoint: to libcoap it is a
 * peer like any device, with its own DTLS session, cookie and Block state,
 * and the policy sees the pledge's certificate from that handshake. The
 * header is opaque: it is part of the key and echoed, never decoded.
 *
 *   proxy --[hdr, dtls]--> jpy_listen --dtls--> pledge socket --> DTLS endpoint
 *   proxy <--[hdr, dtls]-- jpy_listen <--dtls-- pledge socket <-- DTLS endpoint
 *
 * Everything is non-blocking on the one loop: a datagram that cannot be
 * sent at once is dropped (UDP; DTLS retransmits) and counted.
 */
#include "downstream/jpy_relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "estgw/jpy.h"
#include "estgw/log.h"
#include "ops/metrics.h"

#define DGRAM_MAX 65536   /* bytes of one UDP datagram */
#define BATCH 32          /* datagrams read per readiness event */
#define NAME_MAX_LEN 96
#define HDR_FULL 8        /* headers up to this long are logged whole */
#define HDR_SHOWN 4       /* of a longer one, its first bytes */

struct proxy_count {
	uint8_t ip[16];   /* v4 as ::ffff:a.b.c.d */
	unsigned n;
	struct proxy_count *next;
};

struct jpy_pledge {
	struct jpy_relay *r;
	struct sockaddr_storage proxy; /* where the JPY messages come from */
	socklen_t proxy_len;
	uint8_t pip[16];               /* proxy address, normalised */
	uint16_t pport;
	uint8_t hdr[255];
	size_t hlen;
	int fd;                        /* connected to the DTLS endpoint */
	uint8_t lip[16];               /* its local address, normalised */
	uint16_t lport;
	struct event *ev;
	time_t last;                   /* last datagram either way */
	uint32_t hkey;
	unsigned mtu;
	struct proxy_count *pc;
	char name[NAME_MAX_LEN];
	struct jpy_pledge *next_key, *next_port, *prev, *next;
};

struct jpy_relay {
	struct event_base *base;
	const struct estgw_config *cfg;
	struct sockaddr_storage target;
	socklen_t target_len;
	int fd;
	struct event *ev, *sweep;
	uint8_t *buf;                  /* one datagram in */
	uint8_t *out;                  /* one JPY message out */
	size_t nbuckets;               /* power of two */
	struct jpy_pledge **by_key, **by_port;
	struct jpy_pledge *all;
	size_t count;
	struct proxy_count *proxies;
};

/* ---- addresses ------------------------------------------------------- */

/* @p sa as a 16-byte address (IPv4 mapped into ::ffff:0:0/96) and a port;
 * -1 for another family. */
static int norm(const struct sockaddr *sa, uint8_t ip[16], uint16_t *port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)sa;

		memset(ip, 0, 10);
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, &s->sin_addr, 4);
		*port = ntohs(s->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;

		memcpy(ip, &s->sin6_addr, 16);
		*port = ntohs(s->sin6_port);
		return 0;
	}
	return -1;
}

static int is_mapped(const uint8_t ip[16])
{
	static const uint8_t pfx[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(ip, pfx, sizeof(pfx)) == 0;
}

static int prefix_match(const struct estgw_prefix *p, const uint8_t ip[16])
{
	const uint8_t *a = ip;
	unsigned bits = p->bits, full, rest;

	if (p->family == AF_INET) {
		if (!is_mapped(ip))
			return 0;
		a = ip + 12;
	} else if (is_mapped(ip) && p->bits < 96) {
		return 0; /* an IPv6 prefix is not meant for IPv4 proxies */
	}
	full = bits / 8;
	rest = bits % 8;
	if (memcmp(a, p->addr, full) != 0)
		return 0;
	return rest == 0 ||
	       ((a[full] ^ p->addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* [brski] jpy_proxies: the join proxies this registrar trusts (H6). */
static int trusted(const struct jpy_relay *r, const uint8_t ip[16])
{
	for (size_t i = 0; i < r->cfg->brski.njpy_proxies; i++)
		if (prefix_match(&r->cfg->brski.jpy_proxies[i], ip))
			return 1;
	return 0;
}

static void ip_text(const uint8_t ip[16], uint16_t port, char *out, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (is_mapped(ip)) {
		inet_ntop(AF_INET, ip + 12, a, sizeof(a));
		snprintf(out, len, "%s:%u", a, port);
	} else {
		inet_ntop(AF_INET6, ip, a, sizeof(a));
		snprintf(out, len, "[%s]:%u", a, port);
	}
}

/* ---- the two tables: (proxy, header) and the pledge socket's port ---- */

static uint32_t fnv(uint32_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static uint32_t key_hash(const uint8_t ip[16], uint16_t port,
			 const uint8_t *hdr, size_t hlen)
{
	uint8_t pb[2] = { (uint8_t)(port >> 8), (uint8_t)port };
	uint32_t h = fnv(2166136261u, ip, 16);

	h = fnv(h, pb, 2);
	return fnv(h, hdr, hlen);
}

static struct jpy_pledge *find_key(const struct jpy_relay *r, uint32_t hk,
				   const uint8_t ip[16], uint16_t port,
				   const uint8_t *hdr, size_t hlen)
{
	struct jpy_pledge *p = r->by_key[hk & (r->nbuckets - 1)];

	for (; p; p = p->next_key)
		if (p->hkey == hk && p->pport == port && p->hlen == hlen &&
		    memcmp(p->pip, ip, 16) == 0 && memcmp(p->hdr, hdr, hlen) == 0)
			return p;
	return NULL;
}

static void unlink_from(struct jpy_pledge **head, struct jpy_pledge *p, int by_key)
{
	for (struct jpy_pledge **pp = head; *pp;
	     pp = by_key ? &(*pp)->next_key : &(*pp)->next_port) {
		if (*pp == p) {
			*pp = by_key ? p->next_key : p->next_port;
			return;
		}
	}
}

static struct proxy_count *proxy_slot(struct jpy_relay *r, const uint8_t ip[16])
{
	struct proxy_count *c;

	for (c = r->proxies; c; c = c->next)
		if (memcmp(c->ip, ip, 16) == 0)
			return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	memcpy(c->ip, ip, 16);
	c->next = r->proxies;
	r->proxies = c;
	return c;
}

static void proxy_release(struct jpy_relay *r, struct proxy_count *c)
{
	if (--c->n)
		return;
	for (struct proxy_count **pp = &r->proxies; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			free(c);
			return;
		}
	}
}

/* ---- pledge sessions ------------------------------------------------- */

static void pledge_free(struct jpy_pledge *p, const char *event)
{
	struct jpy_relay *r = p->r;

	log_debug("jpy", "%s: pledge session %s", p->name, event);
	unlink_from(&r->by_key[p->hkey & (r->nbuckets - 1)], p, 1);
	unlink_from(&r->by_port[p->lport & (r->nbuckets - 1)], p, 0);
	if (p->prev)
		p->prev->next = p->next;
	else
		r->all = p->next;
	if (p->next)
		p->next->prev = p->prev;
	proxy_release(r, p->pc);
	r->count--;
	metrics_jpy_session(-1, event);
	event_free(p->ev);
	close(p->fd);
	free(p);
}

static void on_pledge_read(evutil_socket_t fd, short what, void *arg);

/* How log lines name @p p: the proxy, and the header in hex when it is
 * short; a longer one as its first bytes, "~", a 32-bit hash of all of it
 * and its length, so two pledges whose headers share a prefix (the same
 * link-local /64, say) still get two names. */
static void pledge_name(struct jpy_pledge *p)
{
	char addr[INET6_ADDRSTRLEN + 10], hex[2 * HDR_FULL + 24] = "-";
	size_t shown = p->hlen <= HDR_FULL ? p->hlen : HDR_SHOWN, n = 0;

	ip_text(p->pip, p->pport, addr, sizeof(addr));
	for (size_t i = 0; i < shown; i++)
		n += (size_t)snprintf(hex + n, sizeof(hex) - n, "%02x", p->hdr[i]);
	if (p->hlen > shown)
		snprintf(hex + n, sizeof(hex) - n, "~%08x/%zu",
			 (unsigned)fnv(2166136261u, p->hdr, p->hlen), p->hlen);
	snprintf(p->name, sizeof(p->name), "jpy %s hdr=%s", addr, hex);
}

/* A UDP socket connected to the DTLS endpoint: libcoap's peer for @p p. */
static int pledge_socket(struct jpy_relay *r, struct jpy_pledge *p)
{
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);

	p->fd = socket(r->target.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0)
		return -errno;
	if (connect(p->fd, (const struct sockaddr *)&r->target, r->target_len) != 0 ||
	    getsockname(p->fd, (struct sockaddr *)&local, &llen) != 0 ||
	    norm((const struct sockaddr *)&local, p->lip, &p->lport) != 0) {
		int rc = -errno;

		close(p->fd);
		return rc ? rc : -EINVAL;
	}
	p->ev = event_new(r->base, p->fd, EV_READ | EV_PERSIST, on_pledge_read, p);
	if (!p->ev || event_add(p->ev, NULL) != 0) {
		if (p->ev)
			event_free(p->ev);
		close(p->fd);
		return -ENOMEM;
	}
	return 0;
}

/* A new pledge session for (@p src, @p m's header), within the bounds;
 * NULL (counted as "limit" or "error" by the caller) otherwise. */
static struct jpy_pledge *pledge_open(struct jpy_relay *r,
				      const struct sockaddr_storage *src,
				      socklen_t slen, const uint8_t ip[16],
				      uint16_t port, const struct jpy_msg *m,
				      uint32_t hk, const char **why)
{
	const struct estgw_config *cfg = r->cfg;
	struct proxy_count *pc;
	struct jpy_pledge *p;
	int rc;

	*why = "limit";
	if (r->count >= cfg->brski.jpy_max_sessions)
		return NULL;
	pc = proxy_slot(r, ip);
	*why = "error";
	if (!pc)
		return NULL;
	pc->n++; /* released below on failure */
	*why = "limit";
	if (pc->n > cfg->brski.jpy_sessions_per_proxy)
		goto fail;
	*why = "error";
	if (!(p = calloc(1, sizeof(*p))))
		goto fail;
	p->r = r;
	memcpy(&p->proxy, src, slen);
	p->proxy_len = slen;
	memcpy(p->pip, ip, 16);
	p->pport = port;
	memcpy(p->hdr, m->hdr, m->hdr_len);
	p->hlen = m->hdr_len;
	p->hkey = hk;
	p->pc = pc;
	p->mtu = cfg->brski.jpy_mtu - (unsigned)jpy_overhead(p->hlen, 0xffff);
	pledge_name(p);
	if ((rc = pledge_socket(r, p)) != 0) {
		log_warn("jpy", "%s: no socket for the pledge session: %s", p->name,
			 strerror(-rc));
		free(p);
		goto fail;
	}
	p->next_key = r->by_key[hk & (r->nbuckets - 1)];
	r->by_key[hk & (r->nbuckets - 1)] = p;
	p->next_port = r->by_port[p->lport & (r->nbuckets - 1)];
	r->by_port[p->lport & (r->nbuckets - 1)] = p;
	p->next = r->all;
	if (r->all)
		r->all->prev = p;
	r->all = p;
	r->count++;
	metrics_jpy_session(1, "opened");
	log_debug("jpy", "%s: pledge session opened (%zu in all)", p->name, r->count);
	return p;
fail:
	proxy_release(r, pc);
	return NULL;
}

static time_t now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
	return t.tv_sec;
}

/* ---- datagrams ------------------------------------------------------- */

/* One datagram on the JPY port: checked, unwrapped, sent to its pledge's
 * socket. Anything else is dropped silently and counted (H6). */
static void from_proxy(struct jpy_relay *r, const struct sockaddr_storage *src,
		       socklen_t slen, const uint8_t *buf, size_t n)
{
	struct jpy_pledge *p;
	struct jpy_msg m;
	uint8_t ip[16];
	uint16_t port;
	const char *why;
	uint32_t hk;
	int rc;

	if (norm((const struct sockaddr *)src, ip, &port) != 0 || !trusted(r, ip)) {
		metrics_jpy_drop("untrusted");
		return;
	}
	rc = jpy_decode(buf, n, r->cfg->brski.jpy_max_header, &m);
	if (rc != 0) {
		metrics_jpy_drop(rc == -EMSGSIZE ? "header" : "malformed");
		return;
	}
	hk = key_hash(ip, port, m.hdr, m.hdr_len);
	p = find_key(r, hk, ip, port, m.hdr, m.hdr_len);
	if (!p && !(p = pledge_open(r, src, slen, ip, port, &m, hk, &why))) {
		metrics_jpy_drop(why);
		return;
	}
	p->last = now_s();
	if (send(p->fd, m.content, m.content_len, 0) != (ssize_t)m.content_len) {
		metrics_jpy_drop("error");
		return;
	}
	metrics_jpy_datagram(0);
}

static void on_proxy_read(evutil_socket_t fd, short what, void *arg)
{
	struct jpy_relay *r = arg;

	(void)what;
	for (int i = 0; i < BATCH; i++) {
		struct sockaddr_storage src;
		socklen_t slen = sizeof(src);
		ssize_t n = recvfrom(fd, r->buf, DGRAM_MAX, MSG_TRUNC,
				     (struct sockaddr *)&src, &slen);

		if (n < 0)
			return; /* EAGAIN, or an error the next datagram will not have */
		if (n > DGRAM_MAX) {
			metrics_jpy_drop("malformed");
			continue;
		}
		from_proxy(r, &src, slen, r->buf, (size_t)n);
	}
}

/* What the DTLS endpoint sent to a pledge: wrapped with its header and
 * sent to its proxy. */
static void on_pledge_read(evutil_socket_t fd, short what, void *arg)
{
	struct jpy_pledge *p = arg;
	struct jpy_relay *r = p->r;

	(void)what;
	for (int i = 0; i < BATCH; i++) {
		ssize_t n = recv(fd, r->buf, DGRAM_MAX, 0);
		long len;

		if (n <= 0)
			return;
		len = jpy_encode(p->hdr, p->hlen, r->buf, (size_t)n, r->out,
				 DGRAM_MAX + 512);
		if (len < 0 || len > 65507) {
			metrics_jpy_drop("error");
			continue;
		}
		if ((size_t)len > r->cfg->brski.jpy_mtu)
			log_warn("jpy", "%s: answer of %ld bytes exceeds jpy_mtu %u",
				 p->name, len, r->cfg->brski.jpy_mtu);
		p->last = now_s();
		if (sendto(r->fd, r->out, (size_t)len, 0,
			   (const struct sockaddr *)&p->proxy, p->proxy_len) != len) {
			metrics_jpy_drop("error");
			continue;
		}
		metrics_jpy_datagram(1);
	}
}

/* Idle pledge sessions end ([brski] jpy_idle_timeout). */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct jpy_relay *r = arg;
	time_t now = now_s();

	(void)fd;
	(void)what;
	for (struct jpy_pledge *p = r->all, *next; p; p = next) {
		next = p->next;
		if (now - p->last >= (time_t)r->cfg->brski.jpy_idle_timeout)
			pledge_free(p, "expired");
	}
}

/* ---- set-up ---------------------------------------------------------- */

/* The first [server] listen address, its loopback twin for a wildcard. */
static void pick_target(struct jpy_relay *r)
{
	const struct estgw_addr *a = &r->cfg->server.listen[0];
	struct sockaddr_in *s4 = (struct sockaddr_in *)&r->target;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&r->target;

	memcpy(&r->target, &a->sa, a->salen);
	r->target_len = a->salen;
	if (a->sa.ss_family == AF_INET && s4->sin_addr.s_addr == htonl(INADDR_ANY))
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (a->sa.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
		s6->sin6_addr = in6addr_loopback;
}

static int bind_listen(struct jpy_relay *r)
{
	const struct estgw_addr *a = &r->cfg->brski.jpy_listen;

	r->fd = socket(a->sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (r->fd < 0)
		return -errno;
	if (bind(r->fd, (const struct sockaddr *)&a->sa, a->salen) != 0)
		return -errno;
	return 0;
}

struct jpy_relay *jpy_relay_new(struct event_base *base,
				const struct estgw_config *cfg)
{
	struct jpy_relay *r = calloc(1, sizeof(*r));
	uint32_t idle = cfg->brski.jpy_idle_timeout;
	struct timeval tick = { .tv_sec = idle / 4 ? (idle / 4 < 10 ? idle / 4 : 10) : 1 };
	int rc;

	if (!r)
		return NULL;
	r->base = base;
	r->cfg = cfg;
	r->fd = -1;
	for (r->nbuckets = 16; r->nbuckets < 2 * (size_t)cfg->brski.jpy_max_sessions;)
		r->nbuckets *= 2;
	r->by_key = calloc(r->nbuckets, sizeof(*r->by_key));
	r->by_port = calloc(r->nbuckets, sizeof(*r->by_port));
	r->buf = malloc(DGRAM_MAX);
	r->out = malloc(DGRAM_MAX + 512);
	if (!r->by_key || !r->by_port || !r->buf || !r->out)
		goto fail;
	pick_target(r);
	if ((rc = bind_listen(r)) != 0) {
		log_err("jpy", "cannot listen on %s (JPY): %s", cfg->brski.jpy_listen.text,
			strerror(-rc));
		goto fail;
	}
	r->ev = event_new(base, r->fd, EV_READ | EV_PERSIST, on_proxy_read, r);
	r->sweep = event_new(base, -1, EV_PERSIST, on_sweep, r);
	if (!r->ev || !r->sweep || event_add(r->ev, NULL) != 0 ||
	    event_add(r->sweep, &tick) != 0)
		goto fail;
	if (cfg->brski.njpy_proxies == 0)
		log_warn("jpy", "[brski] jpy_proxies is empty: every JPY message is dropped");
	if (idle <= cfg->server.idle_timeout)
		log_warn("jpy", "[brski] jpy_idle_timeout (%u s) is not above [server] "
			 "idle_timeout (%u s): a pledge session may end before its DTLS "
			 "session", idle, cfg->server.idle_timeout);
	log_info("jpy", "listening on %s (JPY, stateless join proxies), %zu proxy "
		 "prefixes, at most %u pledge sessions", cfg->brski.jpy_listen.text,
		 cfg->brski.njpy_proxies, cfg->brski.jpy_max_sessions);
	return r;
fail:
	jpy_relay_free(r);
	return NULL;
}

void jpy_relay_reload(struct jpy_relay *r, const struct estgw_config *cfg)
{
	if (r)
		r->cfg = cfg; /* its [brski] jpy_* keys are the running ones (restart-only) */
}

void jpy_relay_free(struct jpy_relay *r)
{
	if (!r)
		return;
	while (r->all)
		pledge_free(r->all, "closed");
	if (r->ev)
		event_free(r->ev);
	if (r->sweep)
		event_free(r->sweep);
	if (r->fd >= 0)
		close(r->fd);
	free(r->by_key);
	free(r->by_port);
	free(r->buf);
	free(r->out);
	free(r);
}

/* ---- what coap_server.c asks ----------------------------------------- */

static struct jpy_pledge *find_port(const struct jpy_relay *r,
				    const struct sockaddr *sa)
{
	uint8_t ip[16];
	uint16_t port;

	if (!r || !sa || norm(sa, ip, &port) != 0)
		return NULL;
	for (struct jpy_pledge *p = r->by_port[port & (r->nbuckets - 1)]; p;
	     p = p->next_port)
		if (p->lport == port && memcmp(p->lip, ip, 16) == 0)
			return p;
	return NULL;
}

const struct jpy_pledge *jpy_relay_find(const struct jpy_relay *r,
					const struct sockaddr *sa,
					socklen_t len)
{
	(void)len;
	return find_port(r, sa);
}

const struct sockaddr *jpy_pledge_proxy(const struct jpy_pledge *p,
					socklen_t *len)
{
	*len = p->proxy_len;
	return (const struct sockaddr *)&p->proxy;
}

const char *jpy_pledge_name(const struct jpy_pledge *p)
{
	return p->name;
}

unsigned jpy_pledge_mtu(const struct jpy_pledge *p)
{
	return p->mtu;
}

void jpy_relay_peer_gone(struct jpy_relay *r, const struct sockaddr *sa,
			 socklen_t len)
{
	struct jpy_pledge *p = find_port(r, sa);

	(void)len;
	if (p)
		pledge_free(p, "closed");
}

size_t jpy_relay_sessions(const struct jpy_relay *r)
{
	return r ? r->count : 0;
}
