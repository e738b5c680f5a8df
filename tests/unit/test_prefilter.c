/* test_prefilter.c - the DTLS datagram pre-filter (L1, L2): ClientHello
 * parse per malformed case, the stateless HelloVerifyRequest and cookie,
 * the half-open bounds per address, in total and by age. The records are
 * built here byte by byte (RFC 6347 §4.1, §4.2.1, §4.3.2). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "downstream/dtls_prefilter.h"

#define T0 5000

static uint8_t ch[512];
static size_t ch_len;
static void *evicted[16];
static int nevicted;

/* A ClientHello: record seq 0x0102..., message_seq @p mseq, the cookie. */
static size_t build_hello(uint8_t *out, const uint8_t *cookie, size_t clen, uint16_t mseq)
{
	uint8_t *b = out + 25;
	size_t n = 0;

	b[n++] = 0xfe; b[n++] = 0xfd;
	for (int i = 0; i < 32; i++)
		b[n++] = (uint8_t)(i + 1);
	b[n++] = 0;
	b[n++] = (uint8_t)clen;
	if (clen)
		memcpy(b + n, cookie, clen);
	n += clen;
	b[n++] = 0; b[n++] = 2; b[n++] = 0xc0; b[n++] = 0xae;
	b[n++] = 1; b[n++] = 0;
	b[n++] = 0; b[n++] = 0;                  /* empty extensions */
	uint8_t hdr[25] = { 22, 0xfe, 0xfd, 0, 0, 1, 2, 3, 4, 5, 6,
			    (uint8_t)((12 + n) >> 8), (uint8_t)(12 + n),
			    1, 0, (uint8_t)(n >> 8), (uint8_t)n,
			    (uint8_t)(mseq >> 8), (uint8_t)mseq, 0, 0, 0,
			    0, (uint8_t)(n >> 8), (uint8_t)n };
	memcpy(out, hdr, 25);
	return 25 + n;
}

static struct pf_addr addr(const char *ip, uint16_t port)
{
	struct sockaddr_in s = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct pf_addr a;

	inet_pton(AF_INET, ip, &s.sin_addr);
	assert_int_equal(pf_addr_of((struct sockaddr *)&s, sizeof(s), &a), 0);
	return a;
}

static int on_evict(void *arg, void *session, const struct pf_addr *a, int ifindex)
{
	(void)arg; (void)a;
	assert_int_equal(ifindex, 1);
	if (nevicted < 16)
		evicted[nevicted++] = session;
	return 1;
}

static struct prefilter *new_pf(unsigned total, unsigned per, unsigned timeout)
{
	struct pf_limits lim = { .half_open = total, .per_address = per, .timeout = timeout };

	nevicted = 0;
	return pf_new(&lim, T0, on_evict, NULL);
}

/* The cookie estgw sends @p a (from its HelloVerifyRequest). */
static void cookie_for(struct prefilter *pf, const struct pf_addr *a, time_t now,
		       uint8_t cookie[20])
{
	uint8_t out[300];
	size_t n;

	ch_len = build_hello(ch, NULL, 0, 0);
	assert_int_equal(pf_decide(pf, a, ch, ch_len, now, out, &n), PF_HVR);
	assert_int_equal(n, 13 + 12 + 3 + 20);
	memcpy(cookie, out + 28, 20);
}

/* A valid-cookie hello from @p a, admitted; libcoap's session @p sess. */
static void admit(struct prefilter *pf, const struct pf_addr *a, time_t now, void *sess)
{
	uint8_t cookie[20], out[300];
	size_t n;

	cookie_for(pf, a, now, cookie);
	ch_len = build_hello(ch, cookie, 20, 1);
	assert_int_equal(pf_decide(pf, a, ch, ch_len, now, out, &n), PF_PASS);
	pf_session_new(pf, a, sess, 1, now);
}

static void test_parse_valid_hello(void **state)
{
	struct pf_hello h;
	uint8_t c[5] = { 9, 8, 7, 6, 5 };

	(void)state;
	ch_len = build_hello(ch, c, 5, 1);
	assert_int_equal(pf_parse_hello(ch, ch_len, &h), 0);
	assert_int_equal(h.cookie_len, 5);
	assert_memory_equal(h.cookie, c, 5);
	assert_int_equal(h.msg_seq, 1);
	assert_int_equal(h.rec_seq[5], 6);
	assert_int_equal(h.head_len, 2 + 32 + 1);
	assert_int_equal(h.tail_len, 2 + 2 + 1 + 1);
}

/* One malformed case each: all -EINVAL, nothing read beyond the datagram. */
static void test_L1_parse_malformed(void **state)
{
	struct pf_hello h;
	uint8_t b[512];
	size_t n = build_hello(ch, NULL, 0, 0);

	(void)state;
	assert_int_equal(pf_parse_hello(NULL, 0, &h), -EINVAL);
	for (size_t cut = 0; cut < n; cut++) /* every truncation */
		assert_int_equal(pf_parse_hello(ch, cut, &h), -EINVAL);
#define BAD(off, val) do { memcpy(b, ch, n); b[off] = (val); \
	assert_int_equal(pf_parse_hello(b, n, &h), -EINVAL); } while (0)
	BAD(0, 23);           /* application data, not handshake */
	BAD(1, 0x03);         /* TLS, not DTLS */
	BAD(4, 1);            /* epoch 1 */
	BAD(11, 0xff);        /* record longer than the datagram */
	BAD(13, 2);           /* ServerHello, not ClientHello */
	BAD(21, 1);           /* fragment offset 1 */
	BAD(24, (uint8_t)(ch[24] - 1)); /* fragment shorter than the message */
	BAD(25 + 34, 33);     /* session_id longer than 32 */
	BAD(25 + 35, 200);    /* cookie past the end */
	BAD(25 + 37, 3);      /* odd cipher_suites length */
	BAD(25 + 40, 0);      /* no compression method */
#undef BAD
}

static void test_L1_cookieless_hello_gets_hvr_and_no_state(void **state)
{
	struct prefilter *pf = new_pf(8, 4, 10);
	struct pf_addr a = addr("192.0.2.1", 4000);
	uint8_t out[300];
	size_t n;

	(void)state;
	ch_len = build_hello(ch, NULL, 0, 0);
	assert_int_equal(pf_decide(pf, &a, ch, ch_len, T0, out, &n), PF_HVR);
	/* RFC 6347 §4.2.1: record seq and message_seq echoed, DTLS 1.0 version */
	assert_int_equal(out[0], 22);
	assert_memory_equal(out + 1, "\xfe\xff", 2);
	assert_memory_equal(out + 5, ch + 5, 6);
	assert_int_equal(out[13], 3);
	assert_memory_equal(out + 17, ch + 17, 2);
	assert_memory_equal(out + 25, "\xfe\xff", 2);
	assert_int_equal(out[27], 20);
	assert_int_equal(pf_peers(pf), 0);
	assert_int_equal(pf_half_open(pf), 0);
	assert_int_equal(pf_stats(pf)->hvr, 1);
	pf_free(pf);
}

static void test_L1_cookie_admits_its_own_address_only(void **state)
{
	struct prefilter *pf = new_pf(8, 4, 10);
	struct pf_addr a = addr("192.0.2.1", 4000), other = addr("192.0.2.1", 4001);
	uint8_t cookie[20], out[300], bad[20];
	size_t n;

	(void)state;
	cookie_for(pf, &a, T0, cookie);
	ch_len = build_hello(ch, cookie, 20, 1);
	/* another port with the same cookie: a fresh HVR, no state */
	assert_int_equal(pf_decide(pf, &other, ch, ch_len, T0, out, &n), PF_HVR);
	/* a forged cookie */
	memcpy(bad, cookie, 20);
	bad[0] ^= 1;
	ch_len = build_hello(ch, bad, 20, 1);
	assert_int_equal(pf_decide(pf, &a, ch, ch_len, T0, out, &n), PF_HVR);
	assert_int_equal(pf_peers(pf), 0);
	/* the right one: passed, and a half-open peer now */
	ch_len = build_hello(ch, cookie, 20, 1);
	assert_int_equal(pf_decide(pf, &a, ch, ch_len, T0, out, &n), PF_PASS);
	assert_int_equal(pf_half_open(pf), 1);
	/* anything from a known peer goes to libcoap */
	assert_int_equal(pf_decide(pf, &a, (const uint8_t *)"xx", 2, T0, out, &n), PF_PASS);
	/* garbage from an unknown one is dropped */
	assert_int_equal(pf_decide(pf, &other, (const uint8_t *)"xx", 2, T0, out, &n), PF_DROP);
	pf_session_up(pf, &a);
	assert_int_equal(pf_half_open(pf), 0);
	assert_int_equal(pf_peers(pf), 1);
	pf_session_gone(pf, &a);
	assert_int_equal(pf_peers(pf), 0);
	pf_free(pf);
}

static void test_L1_cookie_survives_one_rotation(void **state)
{
	struct prefilter *pf = new_pf(8, 4, 1000);
	struct pf_addr a = addr("192.0.2.9", 5000);
	uint8_t cookie[20], out[300];
	size_t n;

	(void)state;
	cookie_for(pf, &a, T0, cookie);
	ch_len = build_hello(ch, cookie, 20, 1);
	/* a minute later the secret rotated: the previous one still counts */
	assert_int_equal(pf_decide(pf, &a, ch, ch_len, T0 + 61, out, &n), PF_PASS);
	pf_session_gone(pf, &a);
	/* two rotations later it does not */
	assert_int_equal(pf_decide(pf, &a, ch, ch_len, T0 + 200, out, &n), PF_HVR);
	pf_free(pf);
}

static void test_L2_per_address_bound_evicts_its_oldest(void **state)
{
	struct prefilter *pf = new_pf(4, 2, 10);
	struct pf_addr a1 = addr("198.51.100.7", 1), a2 = addr("198.51.100.7", 2),
		       a3 = addr("198.51.100.7", 3), a4 = addr("198.51.100.7", 4),
		       b = addr("198.51.100.8", 1);
	int s1, s2, s3, s4, sb;

	(void)state;
	admit(pf, &b, T0, &sb);
	admit(pf, &a1, T0, &s1);
	admit(pf, &a2, T0 + 1, &s2);
	admit(pf, &a3, T0 + 2, &s3); /* over its share, but there is room: a NAT's burst */
	assert_int_equal(nevicted, 0);
	assert_int_equal(pf_half_open(pf), 4);
	admit(pf, &a4, T0 + 3, &s4); /* full, the address is over 2: its oldest goes, not b */
	assert_int_equal(nevicted, 1);
	assert_ptr_equal(evicted[0], &s1);
	assert_int_equal(pf_half_open(pf), 4);
	assert_int_equal(pf_stats(pf)->evicted, 1);
	/* the evicted peer's datagrams are dropped until libcoap frees it */
	uint8_t out[300];
	size_t n;
	assert_int_equal(pf_decide(pf, &a1, (const uint8_t *)"x", 1, T0, out, &n), PF_DROP);
	pf_session_gone(pf, &a1);
	pf_free(pf);
}

/* All slots taken, the new device's address at its share and its
 * handshakes fresh: the new ClientHello waits (dropped, no state) rather
 * than ending a handshake that is going on; once that address's oldest has
 * stalled, or a slot frees, it gets in. */
static void test_L2_fresh_handshakes_of_an_address_not_evicted(void **state)
{
	struct prefilter *pf = new_pf(3, 1, 10);
	struct pf_addr a1 = addr("198.51.100.7", 1), a2 = addr("198.51.100.7", 2),
		       a3 = addr("198.51.100.7", 3), a4 = addr("198.51.100.7", 4);
	int s1, s2, s3, s4;
	uint8_t cookie[20], out[300];
	size_t n;

	(void)state;
	admit(pf, &a1, T0, &s1);
	admit(pf, &a2, T0, &s2);
	admit(pf, &a3, T0 + 1, &s3); /* full, all from one address */
	cookie_for(pf, &a4, T0 + 1, cookie);
	ch_len = build_hello(ch, cookie, 20, 1);
	assert_int_equal(pf_decide(pf, &a4, ch, ch_len, T0 + 1, out, &n), PF_DROP);
	assert_int_equal(nevicted, 0);
	assert_int_equal(pf_stats(pf)->deferred, 1);
	assert_int_equal(pf_peers(pf), 3); /* no state for a4 */
	/* a2 finishes: a slot is free, a4's ClientHello again gets in */
	pf_session_up(pf, &a2);
	assert_int_equal(pf_decide(pf, &a4, ch, ch_len, T0 + 1, out, &n), PF_PASS);
	pf_session_new(pf, &a4, &s4, 1, T0 + 1);
	assert_int_equal(nevicted, 0);
	/* full again; a1 is two clock seconds in its handshake: stalled, it goes */
	struct pf_addr a5 = addr("198.51.100.7", 5);
	int s5;
	admit(pf, &a5, T0 + 2, &s5);
	assert_int_equal(nevicted, 1);
	assert_ptr_equal(evicted[0], &s1);
	pf_session_gone(pf, &a1);
	pf_free(pf);
}

/* Relayed pledges (H6): all come from the relay's loopback address, each
 * counts in its proxy's bound, as the host hook maps it (port 1xx: proxy
 * 203.0.113.1, port 2xx: proxy 203.0.113.2). */
static int by_proxy(void *arg, const struct pf_addr *a, struct pf_addr *host)
{
	struct sockaddr_in s;

	(void)arg;
	pf_addr_to_sockaddr(a, (struct sockaddr *)&s, sizeof(s));
	*host = addr(ntohs(s.sin_port) < 200 ? "203.0.113.1" : "203.0.113.2", 1);
	return 1;
}

static void test_L2_relayed_pledges_count_per_proxy(void **state)
{
	struct prefilter *pf = new_pf(4, 2, 10);
	struct pf_addr p1 = addr("127.0.0.1", 101), p2 = addr("127.0.0.1", 102),
		       q1 = addr("127.0.0.1", 201), q2 = addr("127.0.0.1", 202),
		       p3 = addr("127.0.0.1", 103);
	int s1, s2, t1, t2, s3;

	(void)state;
	pf_set_host_fn(pf, by_proxy, NULL);
	admit(pf, &q1, T0, &t1);
	admit(pf, &p1, T0, &s1);
	admit(pf, &q2, T0 + 1, &t2);
	admit(pf, &p2, T0 + 1, &s2); /* full: four from 127.0.0.1, two per proxy */
	assert_int_equal(nevicted, 0);
	admit(pf, &p3, T0 + 2, &s3); /* proxy 1 at 2: its oldest goes (not q1, the oldest of 127.0.0.1) */
	assert_int_equal(nevicted, 1);
	assert_ptr_equal(evicted[0], &s1);
	pf_session_gone(pf, &p1);
	pf_free(pf);
}

static void test_L2_total_bound_evicts_the_oldest(void **state)
{
	struct prefilter *pf = new_pf(3, 3, 10);
	struct pf_addr a = addr("203.0.113.1", 1), b = addr("203.0.113.2", 1),
		       c = addr("203.0.113.3", 1), d = addr("203.0.113.4", 1);
	int sa, sb, sc, sd;

	(void)state;
	admit(pf, &a, T0, &sa);
	admit(pf, &b, T0, &sb);
	pf_session_up(pf, &b);       /* finished: not half-open, never evicted */
	admit(pf, &c, T0, &sc);
	admit(pf, &d, T0, &sd);
	assert_int_equal(nevicted, 0);
	assert_int_equal(pf_half_open(pf), 3);
	struct pf_addr e = addr("203.0.113.5", 1);
	int se;
	admit(pf, &e, T0, &se);
	assert_int_equal(nevicted, 1);
	assert_ptr_equal(evicted[0], &sa);
	assert_int_equal(pf_half_open(pf), 3);
	pf_free(pf);
}

static void test_L2_half_open_timeout(void **state)
{
	struct prefilter *pf = new_pf(8, 8, 10);
	struct pf_addr a = addr("192.0.2.50", 1), b = addr("192.0.2.51", 1);
	int sa, sb;

	(void)state;
	admit(pf, &a, T0, &sa);
	admit(pf, &b, T0 + 5, &sb);
	pf_expire(pf, T0 + 9);
	assert_int_equal(nevicted, 0);
	pf_expire(pf, T0 + 10);
	assert_int_equal(nevicted, 1);
	assert_ptr_equal(evicted[0], &sa);
	assert_int_equal(pf_stats(pf)->timed_out, 1);
	/* a peer libcoap never reported a session for goes at once */
	uint8_t cookie[20], out[300];
	size_t n;
	struct pf_addr c = addr("192.0.2.52", 1);
	cookie_for(pf, &c, T0 + 20, cookie);
	ch_len = build_hello(ch, cookie, 20, 1);
	assert_int_equal(pf_decide(pf, &c, ch, ch_len, T0 + 20, out, &n), PF_PASS);
	pf_expire(pf, T0 + 40);
	assert_int_equal(pf_peers(pf), 2); /* a and b wait for libcoap's DEL; c is gone */
	pf_free(pf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid_hello),
		cmocka_unit_test(test_L1_parse_malformed),
		cmocka_unit_test(test_L1_cookieless_hello_gets_hvr_and_no_state),
		cmocka_unit_test(test_L1_cookie_admits_its_own_address_only),
		cmocka_unit_test(test_L1_cookie_survives_one_rotation),
		cmocka_unit_test(test_L2_per_address_bound_evicts_its_oldest),
		cmocka_unit_test(test_L2_fresh_handshakes_of_an_address_not_evicted),
		cmocka_unit_test(test_L2_total_bound_evicts_the_oldest),
		cmocka_unit_test(test_L2_relayed_pledges_count_per_proxy),
		cmocka_unit_test(test_L2_half_open_timeout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
