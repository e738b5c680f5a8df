/* fuzz_pkcs7.c - libFuzzer: an upstream /cacerts or /simpleenroll body as the
 * proxy sees it (docs/conformance.md B4, B5, G6): body -> DER -> certificates
 * -> the SPKI and names of each. */
#include <stdint.h>
#include <stdlib.h>

#include "estgw/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/** Every slice the walkers return must lie inside @p outer. */
static void inside(struct est_slice s, struct est_slice outer)
{
	if (s.ptr < outer.ptr || s.len > outer.len ||
	    (size_t)(s.ptr - outer.ptr) > outer.len - s.len)
		abort();
}

static void each_cert(struct est_slice cert)
{
	struct est_slice spki, issuer, subject;

	if (est_cert_spki(cert.ptr, cert.len, &spki) == 0)
		inside(spki, cert);
	if (est_cert_names(cert.ptr, cert.len, &issuer, &subject) == 0) {
		inside(issuer, cert);
		inside(subject, cert);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct est_slice certs[EST_PKCS7_MAX_CERTS], all;
	uint8_t *der = NULL;
	size_t len, n, i;
	int binary;

	if (est_body_to_der(data, size, &der, &len, &binary) != 0)
		return 0;
	all.ptr = der;
	all.len = len;
	if (est_pkcs7_certs(der, len, certs, EST_PKCS7_MAX_CERTS, &n) == 0) {
		for (i = 0; i < n; i++) {
			inside(certs[i], all);
			each_cert(certs[i]);
		}
	}
	free(der);
	return 0;
}
