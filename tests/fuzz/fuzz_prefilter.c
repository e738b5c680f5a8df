/* fuzz_prefilter.c - libFuzzer: the DTLS datagram pre-filter
 * (src/downstream/dtls_prefilter.c; L1, L2) fed datagrams from a few peer
 * addresses with session events in between. Checks that a HelloVerifyRequest
 * is well formed and fits, that counters stay within the bounds, and that
 * nothing is left when every peer is gone.
 *
 * Each record: op (low 2 bits: datagram, session new, up, gone; then the
 * peer 0..7 and a clock step), length, bytes.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "downstream/dtls_prefilter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sessions[8];

static int on_evict(void *arg, void *s, const struct pf_addr *a, int ifindex)
{
	(void)arg; (void)a;
	if ((int *)s < sessions || (int *)s >= sessions + 8 || ifindex != 1)
		abort();
	return ((int *)s - sessions) & 1; /* odd ones: libcoap had freed it */
}

static struct pf_addr peer(unsigned i)
{
	struct sockaddr_in s = { .sin_family = AF_INET, .sin_port = htons((uint16_t)(1000 + i)) };
	struct pf_addr a;

	s.sin_addr.s_addr = htonl(0xc0000200u | (i & 3)); /* 4 hosts, 2 ports each */
	pf_addr_of((struct sockaddr *)&s, sizeof(s), &a);
	return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pf_limits lim = { .half_open = 4, .per_address = 2, .timeout = 5 };
	struct prefilter *pf = pf_new(&lim, 100, on_evict, NULL);
	time_t now = 100;
	uint8_t out[300];
	size_t n, foreign = 0; /* sessions libcoap made without the filter */

	if (!pf)
		return 0;
	while (size >= 2) {
		unsigned op = data[0] & 3, who = (data[0] >> 2) & 7;
		size_t len = data[1] < size - 2 ? data[1] : size - 2;
		struct pf_addr a = peer(who);

		now += data[0] >> 5;
		if (op == 0) {
			enum pf_verdict v = pf_decide(pf, &a, data + 2, len, now, out, &n);
			if (v == PF_HVR && (n < 28 || n > sizeof(out) || out[13] != 3 ||
					    (size_t)out[27] + 28 != n))
				abort();
		} else if (op == 1) {
			size_t before = pf_peers(pf);
			pf_session_new(pf, &a, &sessions[who], 1, now);
			foreign += pf_peers(pf) - before;
		} else if (op == 2) {
			pf_session_up(pf, &a);
		} else {
			pf_session_gone(pf, &a);
		}
		pf_expire(pf, now);
		if (pf_half_open(pf) > lim.half_open + foreign || pf_half_open(pf) > pf_peers(pf))
			abort();
		data += 2 + len;
		size -= 2 + len;
	}
	for (unsigned i = 0; i < 8; i++) {
		struct pf_addr a = peer(i);
		pf_session_gone(pf, &a);
	}
	if (pf_peers(pf) || pf_half_open(pf))
		abort();
	pf_free(pf);
	return 0;
}
