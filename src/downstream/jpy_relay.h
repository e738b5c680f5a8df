/* jpy_relay.h - the registrar side of the stateless constrained join proxy
 * (draft-ietf-anima-constrained-join-proxy-20, JPY; H6).
 *
 * Owns: the JPY UDP port ([brski] jpy_listen), which join proxies may use
 * it ([brski] jpy_proxies), and one pledge session per (proxy address and
 * port, jpy_header): its own UDP socket connected to estgw's DTLS endpoint
 * on loopback, so libcoap sees each pledge as a peer of its own and keeps
 * one DTLS session per pledge. Datagrams from a proxy go, unwrapped, to the
 * pledge's socket; what the DTLS endpoint sends to that socket goes back to
 * the proxy wrapped with the pledge's header. Bounds: sessions in all and
 * per proxy address, header size, idle expiry; every drop is counted.
 * Must not: include libcoap or OpenSSL, decode the header, block.
 */
#ifndef ESTGW_JPY_RELAY_H
#define ESTGW_JPY_RELAY_H

#include <stddef.h>
#include <sys/socket.h>

#include "estgw/config.h"

struct event_base;
struct jpy_relay;
struct jpy_pledge;

/** Bind [brski] jpy_listen of @p cfg and relay to the first [server]
 *  listen address (its loopback address when it is a wildcard). NULL on
 *  error (logged). @p cfg must outlive the relay or the next reload. */
struct jpy_relay *jpy_relay_new(struct event_base *base,
				const struct estgw_config *cfg);
void jpy_relay_free(struct jpy_relay *r);

/** SIGHUP: @p cfg replaces the config in force (the jpy keys are
 *  restart-only, so main.c put the running values into it). */
void jpy_relay_reload(struct jpy_relay *r, const struct estgw_config *cfg);

/** The pledge session whose socket is the DTLS peer @p sa, or NULL when
 *  @p sa is not one of the relay's sockets (a direct device). */
const struct jpy_pledge *jpy_relay_find(const struct jpy_relay *r,
					const struct sockaddr *sa,
					socklen_t len);

/** The join proxy @p p's datagrams come from; its length in *@p len. */
const struct sockaddr *jpy_pledge_proxy(const struct jpy_pledge *p,
					socklen_t *len);

/** How log lines name @p p: "jpy [proxy]:port hdr=0a1b2c3d" (a header of
 *  up to 8 bytes in hex; a longer one as "0a1b2c3d~<hash>/<length>"). */
const char *jpy_pledge_name(const struct jpy_pledge *p);

/** The MTU the DTLS session of @p p must use: [brski] jpy_mtu less the
 *  JPY framing of its header, so every answer fits in one datagram. */
unsigned jpy_pledge_mtu(const struct jpy_pledge *p);

/** The DTLS session of peer @p sa went away: end its pledge session (the
 *  next datagram of that pledge opens a new one, and a new handshake). */
void jpy_relay_peer_gone(struct jpy_relay *r, const struct sockaddr *sa,
			 socklen_t len);

/** Pledge sessions open now (tests, bench). */
size_t jpy_relay_sessions(const struct jpy_relay *r);

#endif
