/* hello_flood.c - raw DTLS/UDP attack traffic for the attack suite and the
 * bench (L1, L2): ClientHellos from many source ports, with or without
 * answering the HelloVerifyRequest, or random datagrams. Test-side code
 * only: it builds its own records and shares nothing with estgw.
 *
 * usage: hello_flood -t HOST -p PORT [-s SRC_IP] [-n PORTS] [-r RATE]
 *                    [-d SECONDS] [-c COUNT] [-m cookieless|stall|garbage]
 *   cookieless  a ClientHello without a cookie per send, HVRs read and
 *               counted but never answered (what a spoofed source does)
 *   stall       each port answers its HVR with the cookie once, then stays
 *               silent: a half-open handshake per port; a port that got
 *               its ServerHello opens a new port (up to PORTS at once)
 *   garbage     random bytes (1..200) per datagram
 *   refused     as stall, but offering only a cipher suite estgw refuses
 *               (TLS_RSA_WITH_AES_128_CBC_SHA): the handshake fails at once
 * RATE: datagrams per second in total (0: as fast as possible). Stops after
 * SECONDS (default 10) or COUNT datagrams, whichever first. Prints one JSON
 * line "started" when it begins, and at the end one JSON line: sent, hvr,
 * server_hello (datagrams after a cookie), other.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 4096

enum mode { COOKIELESS, STALL, GARBAGE, REFUSED };

struct port {
	int fd;
	int state;          /* stall: 0 sent hello, 1 sent cookie, 2 got answer */
	uint8_t random[32];
	uint64_t seq;
};

static struct sockaddr_in dst;
static const char *src_ip;
static unsigned long n_sent, n_hvr, n_sh, n_other;

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int open_port(int ep, struct port *p, int idx)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)idx };

	p->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (p->fd < 0)
		return -1;
	if (src_ip) {
		inet_pton(AF_INET, src_ip, &a.sin_addr);
		if (bind(p->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
			return -1;
	}
	p->state = 0;
	p->seq = 0;
	for (int i = 0; i < 32; i++)
		p->random[i] = (uint8_t)rand();
	return ep >= 0 ? epoll_ctl(ep, EPOLL_CTL_ADD, p->fd, &ev) : 0;
}

static void put16(uint8_t *b, size_t v) { b[0] = (uint8_t)(v >> 8); b[1] = (uint8_t)v; }
static void put24(uint8_t *b, size_t v) { b[0] = (uint8_t)(v >> 16); put16(b + 1, v); }

/* A DTLS 1.2 ClientHello an OpenSSL server accepts: CCM_8 and GCM with
 * ECDSA, P-256, the signature algorithm for it, extended master secret. */
static int refused_suite;

static size_t client_hello(struct port *p, const uint8_t *cookie, size_t clen,
			   uint8_t *out)
{
	static const uint8_t good[] = { 0xc0, 0xae, 0xc0, 0x2b }, bad[] = { 0x00, 0x2f, 0x00, 0x2f };
	const uint8_t *suites = refused_suite ? bad : good;
	static const uint8_t ext[] = {
		0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, /* groups: P-256 */
		0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,             /* point formats */
		0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03, /* ecdsa_secp256r1_sha256 */
		0x00, 0x17, 0x00, 0x00,                         /* extended master secret */
	};
	uint8_t *b = out + 25;
	size_t n = 0, body;

	b[n++] = 0xfe; b[n++] = 0xfd;
	memcpy(b + n, p->random, 32); n += 32;
	b[n++] = 0;                              /* session_id */
	b[n++] = (uint8_t)clen;
	memcpy(b + n, cookie, clen); n += clen;
	put16(b + n, sizeof(good)); n += 2;
	memcpy(b + n, suites, sizeof(good)); n += sizeof(good);
	b[n++] = 1; b[n++] = 0;                  /* compression: null */
	put16(b + n, sizeof(ext)); n += 2;
	memcpy(b + n, ext, sizeof(ext)); n += sizeof(ext);
	body = n;
	out[0] = 22; out[1] = 0xfe; out[2] = 0xfd; out[3] = 0; out[4] = 0;
	for (int i = 0; i < 6; i++)
		out[5 + i] = (uint8_t)(p->seq >> (8 * (5 - i)));
	put16(out + 11, 12 + body);
	out[13] = 1;
	put24(out + 14, body);
	put16(out + 17, clen ? 1 : 0);           /* message_seq */
	put24(out + 19, 0);
	put24(out + 22, body);
	p->seq++;
	return 25 + body;
}

static void send_dgram(struct port *p, const uint8_t *b, size_t n)
{
	if (sendto(p->fd, b, n, 0, (struct sockaddr *)&dst, sizeof(dst)) >= 0)
		n_sent++;
}

/* Take what arrived on @p p; in stall mode answer an HVR once. */
static void drain(struct port *p, enum mode m)
{
	uint8_t buf[2048], out[512];
	ssize_t n;

	while ((n = recv(p->fd, buf, sizeof(buf), 0)) > 0) {
		if (n >= 28 && buf[0] == 22 && buf[13] == 3) {
			n_hvr++;
			size_t clen = buf[27];
			if ((m == STALL || m == REFUSED) && p->state == 0 && 28 + clen <= (size_t)n) {
				send_dgram(p, out, client_hello(p, buf + 28, clen, out));
				p->state = 1;
			}
		} else if (p->state == 1 || p->state == 2) {
			n_sh++;
			p->state = 2;
		} else {
			n_other++;
		}
	}
}

int main(int argc, char **argv)
{
	int nports = 100, opt, ep = -1;
	double rate = 0, secs = 10;
	unsigned long count = 0;
	enum mode m = COOKIELESS;
	static struct port ports[MAX_PORTS];
	uint8_t out[512];

	dst.sin_family = AF_INET;
	while ((opt = getopt(argc, argv, "t:p:s:n:r:d:c:m:")) != -1) {
		switch (opt) {
		case 't': inet_pton(AF_INET, optarg, &dst.sin_addr); break;
		case 'p': dst.sin_port = htons((uint16_t)atoi(optarg)); break;
		case 's': src_ip = optarg; break;
		case 'n': nports = atoi(optarg); break;
		case 'r': rate = atof(optarg); break;
		case 'd': secs = atof(optarg); break;
		case 'c': count = strtoul(optarg, NULL, 10); break;
		case 'm': m = strcmp(optarg, "stall") == 0 ? STALL :
			      strcmp(optarg, "refused") == 0 ? REFUSED :
			      strcmp(optarg, "garbage") == 0 ? GARBAGE : COOKIELESS; break;
		default: return 2;
		}
	}
	if (nports < 1 || nports > MAX_PORTS || !dst.sin_port)
		return 2;
	refused_suite = m == REFUSED;
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	ep = epoll_create1(0);
	for (int i = 0; i < nports; i++)
		if (open_port(ep, &ports[i], i) != 0) {
			perror("socket");
			return 2;
		}
	printf("started\n"); /* the test waits for this line */
	fflush(stdout);
	double t0 = now_s(), end = t0 + secs;
	unsigned long planned = 0;
	int next = 0;
	while (now_s() < end && (!count || n_sent < count)) {
		struct epoll_event evs[64];
		int k = epoll_wait(ep, evs, 64, 0);
		for (int i = 0; i < k; i++)
			drain(&ports[evs[i].data.u32], m);
		double t = now_s();
		/* paced: send what is due by now, then wait a little */
		unsigned long due = rate > 0 ? (unsigned long)((t - t0) * rate) + 1 : planned + 64;
		while (planned < due && (!count || n_sent < count)) {
			struct port *p = &ports[next];
			next = (next + 1) % nports;
			planned++;
			if (m == GARBAGE) {
				size_t n = 1 + (size_t)rand() % 200;
				for (size_t j = 0; j < n; j++)
					out[j] = (uint8_t)rand();
				send_dgram(p, out, n);
			} else if (m == COOKIELESS || p->state == 0) {
				send_dgram(p, out, client_hello(p, NULL, 0, out));
			} else if (p->state == 2 || p->state == 1) {
				/* this port holds (or tried) a half-open handshake:
				 * a fresh port takes its place */
				epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
				close(p->fd);
				if (open_port(ep, p, (int)(p - ports)) != 0)
					return 2;
				send_dgram(p, out, client_hello(p, NULL, 0, out));
			}
		}
		if (rate > 0) {
			struct timespec ts = { 0, 500000 };
			nanosleep(&ts, NULL);
		}
	}
	for (int i = 0; i < nports; i++)
		drain(&ports[i], m);
	printf("{\"mode\": \"%s\", \"seconds\": %.2f, \"sent\": %lu, \"hvr\": %lu, "
	       "\"server_hello\": %lu, \"other\": %lu}\n",
	       m == STALL ? "stall" : m == REFUSED ? "refused" : m == GARBAGE ? "garbage" : "cookieless",
	       now_s() - t0, n_sent, n_hvr, n_sh, n_other);
	return 0;
}
