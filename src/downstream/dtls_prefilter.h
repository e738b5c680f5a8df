/* dtls_prefilter.h - every datagram on a DTLS endpoint, before libcoap reads
 * it (L1, L2).
 *
 * Owns: the DTLS ClientHello parse (record and handshake headers up to the
 * compression methods, RFC 6347 §4.1, §4.2.1), the HelloVerifyRequest sent
 * statelessly with the cookie of tls/dtls_cookie.c, the table of peer
 * addresses libcoap holds a session for, and the bounds on half-open
 * handshakes (per address, in total, by age). A datagram from an address
 * without a session is a ClientHello with a valid cookie (passed to libcoap)
 * or costs nothing but its answer: a HelloVerifyRequest (no cookie, or not
 * a valid one) or nothing (anything else).
 * Must not: include libcoap (coap_server.c finds the socket, reports the
 * session events and disconnects what this file evicts), log per datagram.
 */
#ifndef ESTGW_DTLS_PREFILTER_H
#define ESTGW_DTLS_PREFILTER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

/** A peer: family, port, address bytes (also the cookie's input). */
struct pf_addr {
	uint8_t b[1 + 2 + 16];
	uint8_t len;
};

/** @p sa as a pf_addr; -EAFNOSUPPORT for anything but IPv4/IPv6. */
int pf_addr_of(const struct sockaddr *sa, socklen_t salen, struct pf_addr *a);

/** A ClientHello, as far as the cookie exchange needs it. */
struct pf_hello {
	uint8_t rec_seq[6];      /**< record sequence number (echoed, §4.2.1) */
	uint16_t msg_seq;        /**< handshake message_seq (echoed) */
	const uint8_t *head;     /**< client_version .. session_id */
	size_t head_len;
	const uint8_t *cookie;
	size_t cookie_len;
	const uint8_t *tail;     /**< cipher_suites .. compression_methods */
	size_t tail_len;
};

/** Parse the first record of @p d as an unfragmented DTLS ClientHello in
 *  epoch 0. 0, or -EINVAL (not one, truncated, fragmented). */
int pf_parse_hello(const uint8_t *d, size_t n, struct pf_hello *h);

/** The HelloVerifyRequest for @p h carrying @p cookie into @p out (room
 *  for 25 + cookie_len bytes); returns its length, 0 when it does not fit. */
size_t pf_build_hvr(const struct pf_hello *h, const uint8_t *cookie,
		    size_t cookie_len, uint8_t *out, size_t room);

struct pf_limits {
	unsigned half_open;      /**< half-open handshakes in total */
	unsigned per_address;    /**< half-open handshakes per IP address */
	unsigned timeout;        /**< seconds a handshake may stay half-open */
};

struct pf_stats {
	unsigned long hvr;       /**< HelloVerifyRequests sent */
	unsigned long dropped;   /**< datagrams dropped (unknown peer, not a ClientHello) */
	unsigned long admitted;  /**< ClientHellos with a valid cookie passed on */
	unsigned long evicted;   /**< half-open handshakes evicted by a bound */
	unsigned long timed_out; /**< half-open handshakes past the timeout */
	unsigned long unfiltered; /**< libcoap sessions for peers never admitted (0) */
	unsigned long deferred;  /**< valid-cookie ClientHellos dropped to come again:
				  *  all slots taken, the address at its share,
				  *  its handshakes going on */
};

struct prefilter;

/** Called for each half-open handshake to end, with what pf_session_new
 *  reported for it: the session handle (which libcoap may have freed
 *  without an event: look it up by @p a and @p ifindex before use), the
 *  peer, the interface. Returns 1 when it ended the session (its datagrams
 *  are dropped until pf_session_gone), 0 when there was none. */
typedef int (*pf_evict_fn)(void *arg, void *session, const struct pf_addr *a,
			   int ifindex);

/** Sets *@p host to the address whose per-address bound @p a counts in and
 *  returns 1, or returns 0 for @p a's own (a pledge behind a join proxy
 *  counts in its proxy's, not in the relay's loopback address). */
typedef int (*pf_host_fn)(void *arg, const struct pf_addr *a,
			  struct pf_addr *host);

/** @p a back as a socket address; its length, 0 when @p room is short. */
socklen_t pf_addr_to_sockaddr(const struct pf_addr *a, struct sockaddr *sa,
			      socklen_t room);

struct prefilter *pf_new(const struct pf_limits *lim, time_t now,
			 pf_evict_fn evict, void *arg);
void pf_free(struct prefilter *pf);
void pf_set_host_fn(struct prefilter *pf, pf_host_fn fn, void *arg);
void pf_set_limits(struct prefilter *pf, const struct pf_limits *lim);
const struct pf_stats *pf_stats(const struct prefilter *pf);
/** Half-open handshakes now, and peers with a session. */
size_t pf_half_open(const struct prefilter *pf);
size_t pf_peers(const struct prefilter *pf);

enum pf_verdict {
	PF_PASS,  /**< to libcoap: a peer with a session, or a valid cookie */
	PF_HVR,   /**< send *out (a HelloVerifyRequest) and drop the datagram */
	PF_DROP,  /**< drop the datagram */
};

/** Decide on one datagram @p d from @p a at @p now (seconds, monotonic).
 *  With PF_HVR, *out_len bytes of @p out (room: 300) go back to @p a. A
 *  ClientHello with a valid cookie makes @p a a half-open peer; the bounds
 *  may evict older half-open ones first (through the evict callback). */
enum pf_verdict pf_decide(struct prefilter *pf, const struct pf_addr *a,
			  const uint8_t *d, size_t n, time_t now,
			  uint8_t *out, size_t *out_len);

/** libcoap made a session for @p a (its handle @p session, on interface
 *  @p ifindex). */
void pf_session_new(struct prefilter *pf, const struct pf_addr *a,
		    void *session, int ifindex, time_t now);
/** The handshake of @p a's session finished: no longer half-open. */
void pf_session_up(struct prefilter *pf, const struct pf_addr *a);
/** libcoap freed @p a's session. */
void pf_session_gone(struct prefilter *pf, const struct pf_addr *a);
/** End the half-open handshakes older than the timeout. */
void pf_expire(struct prefilter *pf, time_t now);

/** The UDP socket bound to @p sa (a libcoap endpoint), or -ENOENT. */
int pf_endpoint_socket(const struct sockaddr *sa, socklen_t salen);

/** pf_endpoint_socket, its receive queue enlarged for a flood (L1). */
int pf_find_socket(const struct sockaddr *sa, socklen_t salen);

/** Filter the datagrams waiting on @p fd until one is for libcoap (left
 *  in the queue), the queue is empty, or @p max datagrams were handled.
 *  Returns 1 when a datagram for libcoap waits at the head, 0 when none
 *  waits, 2 when @p max were dropped or answered and more may wait (do not
 *  let libcoap read then: the head is undecided). */
int pf_run(struct prefilter *pf, int fd, time_t now, unsigned max);

/** An endpoint socket's registration in libcoap's epoll set. "None waits"
 *  (pf_run 0) is no promise about the next instant: a datagram arriving
 *  between the peek and libcoap's own epoll_wait() and recvmsg() would
 *  reach libcoap unfiltered (a hello session, and OpenSSL's own
 *  HelloVerifyRequest for a cookie it never approved). So whenever pf_run
 *  has not left a decided datagram at the head, the socket is held (its
 *  epoll events set to none) while libcoap runs, and released after. */
struct pf_gate {
	int epfd, fd;
	uint64_t data;     /* libcoap's epoll_data, kept as it is */
	uint32_t events;   /* libcoap's events for it */
};

/** Find @p fd's registration in epoll set @p epfd (from
 *  /proc/self/fdinfo). 0, or -ENOENT. */
int pf_gate_find(int epfd, int fd, struct pf_gate *g);
/** Hold (@p hold 1: no events) or release (0: libcoap's events again). */
int pf_gate_hold(const struct pf_gate *g, int hold);

#endif
