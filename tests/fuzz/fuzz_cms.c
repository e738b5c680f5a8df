/* fuzz_cms.c - libFuzzer: the RFC 8295 body checks (I2): ContentInfo,
 * PKCS#12, TAMP types (src/codec/cms.c), and est_x_translate_response for
 * every RFC 8295 operation over the input as the CA's body, with the first
 * byte choosing the operation and the Content-Type. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/cms.h"
#include "estgw/rfc8295.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const types[] = {
	"application/cms", "application/pkcs7-mime", "application/pkcs12",
	"application/tamp-status-query", "application/tamp-update", "application/xml",
	"application/json", "application/pkcs7-smime; smime-type=crls-only",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct est_cms_info info;
	enum est_cms_type t;
	struct estgw_rfc8295 c = { .enable = 0x7f, .pal_rewrite = 1 };
	struct est_xlate_limits lim = { 60, 1, 3600 };
	struct est_x_pal_ctx pal = { .up_base = "https://ca/.well-known/est",
				     .gw_base = "/.well-known/est", .enabled = 0xff };
	struct est_coap_resp out;
	int resp_cf[] = { EST_CF_NONE, 41, 50, 281, 287, 65000, 65001, 65002, 65003 };

	if (est_cms_check(data, size, &info) == 0 && info.content.len > size)
		abort();
	(void)est_pkcs12_check(data, size);
	(void)est_tamp_type(data, size, &t);
	if (size < 2)
		return 0;
	for (int i = 0; i < EST_X_MT_COUNT; i++)
		c.cf[i] = est_x_mt_default_cf((enum est_x_mt)i);
	c.max_pal = c.max_eecerts = c.max_crls = c.max_symmetrickeys = c.max_firmware =
		c.max_tamp = c.max_return = c.max_serverkeygen = 1 << 20;
	struct est_http_resp in = {
		.err = EST_UP_OK, .status = (data[0] & 0x80) ? 204 : 200,
		.content_type = types[data[1] % (sizeof(types) / sizeof(types[0]))],
		.body = data + 2, .body_len = size - 2,
	};
	enum est_x_op op = (enum est_x_op)((data[0] & 0x7f) % EST_X_OP_COUNT);
	int cf = resp_cf[(data[1] >> 4) % (sizeof(resp_cf) / sizeof(resp_cf[0]))];

	if (est_x_translate_response(&c, est_x_op_desc(op), cf, &in, &lim, &pal, &out) != 0)
		abort();
	if (EST_CODE_CLASS(out.code) == 2 && out.len > size + EST_PAL_MAX_ENTRIES * 8192)
		abort();
	est_coap_resp_free(&out);
	return 0;
}
