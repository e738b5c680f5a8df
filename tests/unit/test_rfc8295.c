/* test_rfc8295.c - the RFC 8295 tables (src/core/rfc8295.c; I1, I2):
 * routing, option checks, the upstream request and the CoAP answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/cms.h"
#include "estgw/rfc8295.h"

static struct estgw_rfc8295 cfg(unsigned enable)
{
	struct estgw_rfc8295 c = { .enable = enable, .pal_rewrite = 1 };

	for (int i = 0; i < EST_X_MT_COUNT; i++)
		c.cf[i] = est_x_mt_default_cf((enum est_x_mt)i);
	c.max_pal = c.max_eecerts = c.max_symmetrickeys = c.max_tamp = 65536;
	c.max_crls = c.max_firmware = 1 << 20;
	c.max_return = c.max_serverkeygen = 65536;
	return c;
}

#define ALL (EST_X_EN_PAL | EST_X_EN_EECERTS | EST_X_EN_CRLS | EST_X_EN_SYMKEYS | \
	     EST_X_EN_FIRMWARE | EST_X_EN_TAMP | EST_X_EN_SKG)

static int route(const char *path, struct est_x_route *r)
{
	static char buf[256];
	struct est_slice segs[12];
	size_t n = 0;
	const char *roots[] = { "/.well-known/est", "/est" };

	strcpy(buf, path);
	for (char *p = strtok(buf, "/"); p && n < 12; p = strtok(NULL, "/")) {
		segs[n].ptr = (const uint8_t *)p;
		segs[n++].len = strlen(p);
	}
	return est_x_route_path(segs, n, roots, 2, r);
}

static void test_I1_routes(void **state)
{
	struct est_x_route r;

	assert_int_equal(route("/.well-known/est/pal", &r), 0);
	assert_int_equal(r.op->op, EST_X_PAL);
	assert_string_equal(r.label, "");
	assert_int_equal(route("/est/lbl/eecerts/1234/x", &r), 0);
	assert_int_equal(r.op->op, EST_X_EECERTS);
	assert_string_equal(r.label, "lbl");
	assert_int_equal(r.root_index, 1);
	assert_int_equal(r.tail_first, 3);
	assert_int_equal(r.ntail, 2);
	assert_int_equal(route("/.well-known/est/symmetrickeys/return", &r), 0);
	assert_int_equal(r.op->op, EST_X_SYMKEYS_RET);
	assert_int_equal(route("/.well-known/est/l/skc/return", &r), 0);
	assert_int_equal(r.op->op, EST_X_SKG_RET);
	assert_string_equal(r.op->http_name, "serverkeygen/return");
	assert_int_equal(route("/.well-known/est/tamp/return", &r), 0);
	assert_int_equal(r.op->op, EST_X_TAMP_RET);
	assert_int_equal(route("/.well-known/est/pal/sen", &r), 0); /* pal with a tail */
	assert_int_equal(r.ntail, 1);
	/* not RFC 8295 paths */
	assert_int_equal(route("/.well-known/est/skg", &r), -ENOENT);
	assert_int_equal(route("/.well-known/est/sen", &r), -ENOENT);
	assert_int_equal(route("/.well-known/est/firmware/x", &r), -ENOENT);
	assert_int_equal(route("/.well-known/est/firmware/return/x", &r), -ENOENT);
	assert_int_equal(route("/.well-known/est/sen/firmware", &r), -ENOENT); /* label = op */
	assert_int_equal(route("/.well-known/est/a/b/firmware", &r), -ENOENT);
	assert_int_equal(route("/.well-known/est/l%/firmware", &r), -ENOENT);
	assert_int_equal(route("/.well-known/est/crls/..", &r), -ENOENT);
	assert_int_equal(route("/.well-known/est/crls/a*b", &r), -ENOENT);
	assert_int_equal(route("/other/firmware", &r), -ENOENT);
	assert_int_equal(route("/.well-known/est", &r), -ENOENT);
}

static int check(const struct estgw_rfc8295 *c, enum est_x_op op, int method, int cf,
		 int accept, struct est_verdict *v)
{
	struct est_coap_req rq = { (enum est_method)method, cf, accept };

	return est_x_check_request(c, est_x_op_desc(op), &rq, v);
}

static void test_I1_checks(void **state)
{
	struct estgw_rfc8295 c = cfg(ALL), off = cfg(EST_X_EN_PAL);
	struct est_verdict v;

	assert_int_equal(check(&off, EST_X_FIRMWARE, EST_GET, -1, -1, &v), -EINVAL);
	assert_int_equal(v.code, EST_CODE(4, 4));
	assert_int_equal(check(&c, EST_X_FIRMWARE, EST_POST, 65000, -1, &v), -EINVAL);
	assert_int_equal(v.code, EST_CODE(4, 5));
	assert_int_equal(check(&c, EST_X_FIRMWARE_RET, EST_POST, -1, -1, &v), -EINVAL);
	assert_int_equal(v.code, EST_CODE(4, 15));
	assert_int_equal(check(&c, EST_X_TAMP_RET, EST_POST, 65000, -1, &v), -EINVAL);
	assert_int_equal(v.code, EST_CODE(4, 15));
	assert_int_equal(check(&c, EST_X_TAMP_RET, EST_POST, 65013, -1, &v), 0);
	assert_int_equal(check(&c, EST_X_PAL, EST_GET, -1, -1, &v), 0);
	assert_int_equal(v.resp_cf, 41);
	assert_int_equal(check(&c, EST_X_PAL, EST_GET, -1, 50, &v), 0);
	assert_int_equal(v.resp_cf, 50);
	assert_int_equal(check(&c, EST_X_PAL, EST_GET, -1, 60, &v), -EINVAL);
	assert_int_equal(v.code, EST_CODE(4, 6));
	assert_int_equal(check(&c, EST_X_CRLS, EST_GET, -1, 281, &v), -EINVAL);
	assert_int_equal(check(&c, EST_X_CRLS, EST_GET, -1, -1, &v), 0);
	assert_int_equal(v.resp_cf, 65001);
	assert_int_equal(check(&c, EST_X_TAMP, EST_GET, -1, -1, &v), 0);
	assert_int_equal(v.resp_cf, EST_CF_NONE);
	assert_int_equal(check(&c, EST_X_TAMP, EST_GET, -1, 65008, &v), -EINVAL);
	assert_int_equal(est_x_skg_variant(&c, 65002), EST_X_SKG_P12);
	assert_int_equal(est_x_skg_variant(&c, 65000), EST_X_SKG_EKP);
	assert_int_equal(est_x_skg_variant(&c, 62), -1);
	assert_int_equal(est_x_skg_variant(&off, 65002), -1);
}

/* SignedData of a TAMP status response (id-tamp 2), no signers. */
static const uint8_t tamp_response[] = {
	0x30, 0x24, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
	0xa0, 0x17, 0x30, 0x15, 0x02, 0x01, 0x01, 0x31, 0x00, 0x30, 0x0c, 0x06, 0x0a,
	0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x02, 0x4d, 0x02, 0x31, 0x00,
};

static void test_I2_build_requests(void **state)
{
	struct estgw_rfc8295 c = cfg(ALL);
	struct est_slice tail[] = { { (const uint8_t *)"1234", 4 } };
	struct est_slice q[] = { { (const uint8_t *)"v=2", 3 }, { (const uint8_t *)"a b&", 4 } };
	struct est_x_ask a = { .label = "lbl", .tail = tail, .ntail = 1, .query = q, .nquery = 2,
			       .resp_cf = 50 };
	struct est_http_req r;
	const char *acc;

	assert_int_equal(est_x_build_http_request(&c, est_x_op_desc(EST_X_PAL),
						  "https://ca/.well-known/est/", &a, &r, &acc), 0);
	assert_string_equal(r.url, "https://ca/.well-known/est/lbl/pal/1234?v=2&a%20b%26");
	assert_string_equal(acc, "application/json");
	assert_int_equal(r.method, EST_GET);
	est_http_req_free(&r);
	/* a TAMP return: its CF's type must be the body's */
	struct est_x_ask ret = { .label = "", .body = tamp_response, .len = sizeof(tamp_response),
				 .req_cf = 65008 };
	assert_int_equal(est_x_build_http_request(&c, est_x_op_desc(EST_X_TAMP_RET),
						  "https://ca/est", &ret, &r, &acc), 0);
	assert_string_equal(r.url, "https://ca/est/tamp/return");
	assert_string_equal(r.content_type, "application/tamp-status-response");
	assert_string_equal(r.transfer_encoding, "base64");
	assert_int_equal(r.body[r.body_len - 1], '\n');
	est_http_req_free(&r);
	ret.req_cf = 65013; /* tamp-error: not what the body is */
	assert_int_equal(est_x_build_http_request(&c, est_x_op_desc(EST_X_TAMP_RET),
						  "https://ca/est", &ret, &r, &acc), -EINVAL);
	/* binary switch; application/cms with encapsulatingContent */
	c.post_binary = 1;
	ret.req_cf = 65000;
	assert_int_equal(est_x_build_http_request(&c, est_x_op_desc(EST_X_FIRMWARE_RET),
						  "https://ca/est", &ret, &r, &acc), 0);
	assert_string_equal(r.content_type, "application/cms; encapsulatingContent=signedData");
	assert_null(r.transfer_encoding);
	assert_memory_equal(r.body, tamp_response, sizeof(tamp_response));
	est_http_req_free(&r);
	ret.body = (const uint8_t *)"\x30\x01\x00";
	ret.len = 3;
	assert_int_equal(est_x_build_http_request(&c, est_x_op_desc(EST_X_FIRMWARE_RET),
						  "https://ca/est", &ret, &r, &acc), -EINVAL);
}

static int xlate(const struct estgw_rfc8295 *c, enum est_x_op op, int resp_cf, long status,
		 const char *ct, const void *body, size_t len, struct est_coap_resp *out)
{
	struct est_http_resp in = { .err = EST_UP_OK, .status = status, .content_type = ct,
				    .body = body, .body_len = len, .retry_after = "7" };
	struct est_xlate_limits lim = { 60, 1, 3600 };
	struct est_x_pal_ctx pal = { .up_base = "https://ca/.well-known/est",
				     .gw_base = "/.well-known/est", .enabled = ALL };

	return est_x_translate_response(c, est_x_op_desc(op), resp_cf, &in, &lim, &pal, out);
}

static void test_I2_answers(void **state)
{
	struct estgw_rfc8295 c = cfg(ALL);
	struct est_coap_resp r;

	xlate(&c, EST_X_SYMKEYS_RET, -1, 204, NULL, NULL, 0, &r);
	assert_int_equal(r.code, EST_CODE(2, 4));
	assert_int_equal(r.len, 0);
	est_coap_resp_free(&r);
	xlate(&c, EST_X_TAMP_RET, -1, 200, "text/plain", "x", 1, &r);
	assert_int_equal(r.code, EST_CODE(2, 4));
	assert_int_equal(r.len, 0);
	est_coap_resp_free(&r);
	xlate(&c, EST_X_FIRMWARE_RET, -1, 400, "text/plain", "bad", 3, &r);
	assert_int_equal(r.code, EST_CODE(4, 0));
	est_coap_resp_free(&r);
	xlate(&c, EST_X_FIRMWARE, 65000, 202, NULL, NULL, 0, &r);
	assert_int_equal(r.code, EST_CODE(5, 3));
	assert_true(r.has_max_age);
	assert_int_equal(r.max_age, 7);
	est_coap_resp_free(&r);
	xlate(&c, EST_X_PAL, 41, 404, NULL, NULL, 0, &r);
	assert_int_equal(r.code, EST_CODE(4, 4));
	est_coap_resp_free(&r);
	xlate(&c, EST_X_PAL, 41, 204, NULL, NULL, 0, &r);
	assert_int_equal(r.code, EST_CODE(4, 4));
	est_coap_resp_free(&r);
	/* binary DER from the CA, checked */
	xlate(&c, EST_X_TAMP, EST_CF_NONE, 200, "application/tamp-status-query", tamp_response,
	      sizeof(tamp_response), &r);
	assert_int_equal(r.code, EST_CODE(5, 2)); /* the body is a status response */
	est_coap_resp_free(&r);
	xlate(&c, EST_X_SYMKEYS, 65000, 200, "application/cms; innerContent=x", tamp_response,
	      sizeof(tamp_response), &r);
	assert_int_equal(r.code, EST_CODE(2, 5));
	assert_int_equal(r.cf, 65000);
	assert_memory_equal(r.payload, tamp_response, sizeof(tamp_response));
	est_coap_resp_free(&r);
	xlate(&c, EST_X_SYMKEYS, 65000, 200, "application/pkcs7-mime", tamp_response,
	      sizeof(tamp_response), &r);
	assert_int_equal(r.code, EST_CODE(5, 2));
	est_coap_resp_free(&r);
	xlate(&c, EST_X_CRLS, 65001, 200, "application/pkcs7-mime", tamp_response,
	      sizeof(tamp_response), &r);
	assert_int_equal(r.code, EST_CODE(5, 2)); /* no CRL in it */
	est_coap_resp_free(&r);
	xlate(&c, EST_X_SKG_P12, 65002, 200, "application/pkcs12", "MAA=", 4, &r);
	assert_int_equal(r.code, EST_CODE(5, 2)); /* SEQUENCE {} is no PFX */
	est_coap_resp_free(&r);
	xlate(&c, EST_X_FIRMWARE, 65000, 200, "application/cms", "", 0, &r);
	assert_int_equal(r.code, EST_CODE(5, 2));
	est_coap_resp_free(&r);
	c.max_firmware = 16;
	xlate(&c, EST_X_FIRMWARE, 65000, 200, "application/cms", tamp_response,
	      sizeof(tamp_response), &r);
	assert_int_equal(r.code, EST_CODE(5, 2)); /* over the cap */
	est_coap_resp_free(&r);
	/* PAL: rewritten, type checked */
	const char *pal = "<pal><message><type>0002</type><info><uri>https://ca/.well-known/est/"
			  "cacerts</uri></info></message></pal>";
	xlate(&c, EST_X_PAL, 41, 200, "application/xml; charset=utf-8", pal, strlen(pal), &r);
	assert_int_equal(r.code, EST_CODE(2, 5));
	assert_int_equal(r.cf, 41);
	assert_non_null(memmem(r.payload, r.len, "<uri>/.well-known/est/crts</uri>", 32));
	est_coap_resp_free(&r);
	xlate(&c, EST_X_PAL, 50, 200, "application/xml", pal, strlen(pal), &r);
	assert_int_equal(r.code, EST_CODE(5, 2));
	est_coap_resp_free(&r);
}

static void test_I1_links(void **state)
{
	struct estgw_rfc8295 c = cfg(EST_X_EN_PAL | EST_X_EN_TAMP);
	struct est_slice q = { (const uint8_t *)"rt=ace.est*", 11 };
	char *t = NULL;
	size_t n = 0;

	assert_int_equal(est_x_link_format(&c, "/est", NULL, 0, &t, &n), 0);
	assert_string_equal(t, "</est/pal>;rt=\"estgw.8295.pal\";ct=\"41 50\","
			    "</est/tamp>;rt=\"estgw.8295.tamp\";ct=\"65003 65004 65005 65006 65007\","
			    "</est/tamp/return>;rt=\"estgw.8295.tamp.return\";"
			    "ct=\"65008 65009 65010 65011 65012 65013\"");
	free(t);
	t = NULL;
	n = 0;
	assert_int_equal(est_x_link_format(&c, "/est", &q, 1, &t, &n), 0);
	assert_int_equal(n, 0);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_I1_routes),
		cmocka_unit_test(test_I1_checks),
		cmocka_unit_test(test_I2_build_requests),
		cmocka_unit_test(test_I2_answers),
		cmocka_unit_test(test_I1_links),
	};
	return cmocka_run_group_tests_name("rfc8295", tests, NULL, NULL);
}
