/* fuzz_voucher.c - libFuzzer: voucher(-request) CBOR, vs/es status CBOR and
 * the IDevID walkers (docs/conformance.md H2, H3, G6). First byte picks the
 * parser. */
#include <stdint.h>
#include <stdlib.h>

#include "estgw/voucher.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const struct est_slice *s, const uint8_t *d, size_t n)
{
	if (s->ptr && s->len &&
	    (s->ptr < d || s->len > n || (size_t)(s->ptr - d) > n - s->len))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vr_fields f;
	struct brski_status st;
	struct est_slice v;
	char url[256];

	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	switch (data[0] % 5) {
	case 4:
		if (brski_status_decode_json(p, n, &st) == 0)
			inside(&st.reason, p, n);
		break;
	case 0:
	case 1:
		if (vr_decode(p, n, data[0] % 2 ? VR_VOUCHER : VR_REQUEST, &f) == 0) {
			inside(&f.nonce, p, n);
			inside(&f.serial, p, n);
			inside(&f.prior_signed, p, n);
			inside(&f.prox_pubk, p, n);
			inside(&f.pinned_cert, p, n);
		}
		break;
	case 2:
		if (brski_status_decode(p, n, &st) == 0)
			inside(&st.reason, p, n);
		break;
	case 3:
		if (idevid_serial(p, n, &v) == 0)
			inside(&v, p, n);
		if (idevid_issuer(p, n, &v) == 0)
			inside(&v, p, n);
		if (idevid_masa_url(p, n, &v) == 0) {
			inside(&v, p, n);
			masa_request_url((const char *)v.ptr, v.len, url, sizeof(url));
		}
		break;
	}
	return 0;
}
