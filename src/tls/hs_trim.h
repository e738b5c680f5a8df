/* hs_trim.h - the handshake buffer of idle DTLS connections given back.
 *
 * Owns: hooks on OpenSSL's allocations (set once, before OpenSSL allocates
 * anything) that find where a connection keeps its 16 KiB handshake buffer,
 * and the call that gives that buffer's pages back to the kernel when the
 * session is idle (the handshake is over; its contents are dead).
 * Must not: free or move anything OpenSSL owns, or trim a connection still
 * in its handshake; it turns itself off when what it learnt does not hold.
 */
#ifndef ESTGW_HS_TRIM_H
#define ESTGW_HS_TRIM_H

/** Sets the allocation hooks (OpenSSL 3.x only): in main() before anything
 *  makes OpenSSL allocate ([server] trim_handshake_buffers). 1 when set. */
int estgw_hs_trim_init(void);

/** A new connection (@p ssl, an SSL *) seen in its first handshake flight,
 *  in the SSL_accept call that made its handshake buffer. */
void estgw_hs_trim_learn(const void *ssl);

/** Give back the whole pages of @p ssl's handshake buffer: the bytes given
 *  back, 0 when nothing was (not learnt, off, or still handshaking). */
int estgw_hs_trim(const void *ssl);

/** 1 once learnt and on. */
int estgw_hs_trim_on(void);

#endif
