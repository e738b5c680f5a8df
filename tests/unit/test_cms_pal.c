/* test_cms_pal.c - the RFC 8295 parsers (I2, I3): CMS ContentInfo,
 * PKCS#12 and TAMP shape checks (src/codec/cms.c) and the PAL rewriter
 * (src/codec/pal.c), one test per malformed case. DER is built here by a
 * small TLV writer of the test's own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/cms.h"
#include "estgw/pal.h"

/* ---- a DER writer ------------------------------------------------------- */

struct b {
	uint8_t p[4096];
	size_t n;
};

static struct b tlv(uint8_t tag, struct b cv)
{
	const struct b *c = &cv;
	struct b o = { .n = 0 };

	o.p[o.n++] = tag;
	if (c->n < 128) {
		o.p[o.n++] = (uint8_t)c->n;
	} else {
		o.p[o.n++] = 0x82;
		o.p[o.n++] = (uint8_t)(c->n >> 8);
		o.p[o.n++] = (uint8_t)c->n;
	}
	memcpy(o.p + o.n, c->p, c->n);
	o.n += c->n;
	return o;
}

static struct b raw(const void *p, size_t n)
{
	struct b o = { .n = n };

	memcpy(o.p, p, n);
	return o;
}

static struct b cat(struct b a, struct b c)
{
	memcpy(a.p + a.n, c.p, c.n);
	a.n += c.n;
	return a;
}

static const struct b empty = { .n = 0 };

#define OID(...) tlv(0x06, (struct b){ { __VA_ARGS__ }, sizeof((uint8_t[]){ __VA_ARGS__ }) })
#define P7(x) OID(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, x)
#define TAMPOID(x) OID(0x60, 0x86, 0x48, 0x01, 0x65, 0x02, 0x01, 0x02, 0x4d, x)

static struct b content_info(struct b oid, struct b inner)
{
	struct b x = tlv(0xa0, inner);
	struct b s = cat(oid, x);

	return tlv(0x30, s);
}

/* SignedData: version 1, no digest algorithms, encapContentInfo(@etype,
 * @econtent as [0] OCTET STRING unless empty), [1] crls with @ncrls
 * elements, no signers. */
static struct b signed_data(struct b etype, int with_econtent, int ncrls)
{
	struct b v = raw("\x02\x01\x01", 3), set = tlv(0x31, empty), enc = etype, crls = empty;

	if (with_econtent) {
		struct b oct = tlv(0x04, raw("\x30\x00", 2));
		enc = cat(enc, tlv(0xa0, oct));
	}
	struct b sd = cat(cat(v, set), tlv(0x30, enc));
	for (int i = 0; i < ncrls; i++) {
		struct b crl = tlv(0x30, empty);
		crls = cat(crls, crl);
	}
	if (ncrls)
		sd = cat(sd, tlv(0xa1, crls));
	sd = cat(sd, tlv(0x31, empty));
	return tlv(0x30, sd);
}

/* ---- CMS ---------------------------------------------------------------- */

static void test_I2_cms_signed_crls_only(void **state)
{
	struct b ci = content_info(P7(2), signed_data(P7(1), 0, 2));
	struct est_cms_info info;

	assert_int_equal(est_cms_check(ci.p, ci.n, &info), 0);
	assert_int_equal(info.outer, EST_CMS_SIGNED);
	assert_int_equal(info.econtent, EST_CMS_DATA);
	assert_true(info.has_crls);
	assert_int_equal(info.ncrls, 2);
	assert_false(info.has_certs);
	assert_int_equal(info.nsigners, 0);
	assert_string_equal(est_cms_token(EST_CMS_SIGNED), "signedData");
}

static void test_I2_cms_enveloped_any_content(void **state)
{
	struct b ci = content_info(P7(3), tlv(0x30, empty));
	struct est_cms_info info;

	assert_int_equal(est_cms_check(ci.p, ci.n, &info), 0);
	assert_int_equal(info.outer, EST_CMS_ENVELOPED);
}

static void test_I2_cms_malformed_cases(void **state)
{
	struct est_cms_info info;
	struct b ok = content_info(P7(2), signed_data(P7(1), 1, 0));
	struct b trailing = cat(ok, raw("\x00", 1));
	struct b no_ctx = tlv(0x30, P7(1));
	struct b two = cat(tlv(0x30, empty), tlv(0x30, empty));
	struct b two_in_ctx = tlv(0x30, (struct b){ 0 });
	struct b bad_oid = content_info(tlv(0x06, raw("\x2a\x86", 2)), tlv(0x30, empty));
	struct b empty_oid = content_info(tlv(0x06, empty), tlv(0x30, empty));
	struct b sd_not_seq = content_info(P7(2), tlv(0x31, empty));
	struct b sd_noversion = content_info(P7(2), tlv(0x30, tlv(0x31, empty)));
	uint8_t indefinite[] = { 0x30, 0x80, 0x06, 0x01, 0x01, 0x00, 0x00 };

	assert_int_equal(est_cms_check(ok.p, ok.n, &info), 0);
	assert_true(info.has_econtent);
	assert_int_equal(est_cms_check(trailing.p, trailing.n, &info), -EINVAL);
	assert_int_equal(est_cms_check(no_ctx.p, no_ctx.n, &info), -EINVAL);
	{
		struct b s = cat(P7(1), tlv(0xa0, two));
		two_in_ctx = tlv(0x30, s);
	}
	assert_int_equal(est_cms_check(two_in_ctx.p, two_in_ctx.n, &info), -EINVAL);
	assert_int_equal(est_cms_check(bad_oid.p, bad_oid.n, &info), -EINVAL);
	assert_int_equal(est_cms_check(empty_oid.p, empty_oid.n, &info), -EINVAL);
	assert_int_equal(est_cms_check(sd_not_seq.p, sd_not_seq.n, &info), -EINVAL);
	assert_int_equal(est_cms_check(sd_noversion.p, sd_noversion.n, &info), -EINVAL);
	assert_int_equal(est_cms_check(indefinite, sizeof(indefinite), &info), -EINVAL);
	assert_int_equal(est_cms_check(ok.p, ok.n - 1, &info), -EINVAL); /* truncated */
	assert_int_equal(est_cms_check(NULL, 0, &info), -EINVAL);
	/* econtent [0] holding something other than an OCTET STRING */
	{
		struct b enc = cat(P7(1), tlv(0xa0, tlv(0x30, empty)));
		struct b sd = cat(cat(raw("\x02\x01\x01", 3), tlv(0x31, empty)), tlv(0x30, enc));
		sd = cat(sd, tlv(0x31, empty));
		struct b ci = content_info(P7(2), tlv(0x30, sd));
		assert_int_equal(est_cms_check(ci.p, ci.n, &info), -EINVAL);
	}
	/* something after signerInfos */
	{
		struct b enc = P7(1);
		struct b sd = cat(cat(raw("\x02\x01\x01", 3), tlv(0x31, empty)), tlv(0x30, enc));
		sd = cat(cat(sd, tlv(0x31, empty)), raw("\x05\x00", 2));
		struct b ci = content_info(P7(2), tlv(0x30, sd));
		assert_int_equal(est_cms_check(ci.p, ci.n, &info), -EINVAL);
	}
}

static struct b pfx(uint8_t version, struct b auth, int mac)
{
	uint8_t v[] = { 0x02, 0x01, version };
	struct b s = cat(raw(v, 3), auth);

	if (mac)
		s = cat(s, tlv(0x30, empty));
	return tlv(0x30, s);
}

static void test_I2_pkcs12_shape(void **state)
{
	struct b data = content_info(P7(1), tlv(0x04, empty));
	struct b ok = pfx(3, data, 1);
	struct b nomac = pfx(3, data, 0);
	struct b v2 = pfx(2, data, 1);
	struct b env = pfx(3, content_info(P7(3), tlv(0x30, empty)), 1);
	struct b extra = cat(ok, empty);

	assert_int_equal(est_pkcs12_check(ok.p, ok.n), 0);
	assert_int_equal(est_pkcs12_check(nomac.p, nomac.n), 0);
	assert_int_equal(est_pkcs12_check(extra.p, extra.n), 0);
	assert_int_equal(est_pkcs12_check(v2.p, v2.n), -EINVAL);
	assert_int_equal(est_pkcs12_check(env.p, env.n), -EINVAL);
	{
		struct b s = cat(cat(cat(raw("\x02\x01\x03", 3), data), tlv(0x30, empty)),
				 tlv(0x30, empty));
		struct b two_macs = tlv(0x30, s);
		assert_int_equal(est_pkcs12_check(two_macs.p, two_macs.n), -EINVAL);
	}
	assert_int_equal(est_pkcs12_check(ok.p, ok.n - 1), -EINVAL);
	assert_int_equal(est_pkcs12_check(data.p, data.n), -EINVAL); /* no version */
}

static void test_I2_tamp_types(void **state)
{
	struct b signed_q = content_info(P7(2), signed_data(TAMPOID(1), 1, 0));
	struct b bare_err = content_info(TAMPOID(9), tlv(0x30, empty));
	struct b signed_data_only = content_info(P7(2), signed_data(P7(1), 1, 0));
	struct b seq_adj = content_info(TAMPOID(10), tlv(0x30, empty));
	enum est_cms_type t;

	assert_int_equal(est_tamp_type(signed_q.p, signed_q.n, &t), 0);
	assert_int_equal(t, EST_CMS_TAMP_STATUS_QUERY);
	assert_int_equal(est_tamp_type(bare_err.p, bare_err.n, &t), 0);
	assert_int_equal(t, EST_CMS_TAMP_ERROR);
	assert_int_equal(est_tamp_type(seq_adj.p, seq_adj.n, &t), 0);
	assert_int_equal(t, EST_CMS_TAMP_SEQ_ADJUST);
	assert_int_equal(est_tamp_type(signed_data_only.p, signed_data_only.n, &t), -ENOENT);
	assert_int_equal(est_tamp_type((const uint8_t *)"\x30\x00", 2, &t), -EINVAL);
}

/* ---- PAL ---------------------------------------------------------------- */

#define UP "https://ca.example:8443/.well-known/est"

static const struct est_pal_opts all_on = {
	UP, "coaps://gw/.well-known/est",
	EST_X_EN_PAL | EST_X_EN_EECERTS | EST_X_EN_CRLS | EST_X_EN_SYMKEYS |
		EST_X_EN_FIRMWARE | EST_X_EN_TAMP | EST_X_EN_SKG | EST_X_EN_RFC9148_SKG,
	1,
};

static char *rewrite(const char *in, int json, const struct est_pal_opts *o, int *rc,
		     struct est_pal_stats *st)
{
	char *out = NULL;
	size_t n = 0;

	*rc = est_pal_rewrite(in, strlen(in), json, o, &out, &n, st);
	if (*rc)
		return NULL;
	out = realloc(out, n + 1);
	out[n] = '\0';
	return out;
}

static void test_I3_pal_xml_rewrite(void **state)
{
	const char *in =
		"<?xml version=\"1.0\"?>\n<!-- a comment with <message> -->\n"
		"<pal:pal xmlns:pal=\"urn:ietf:params:xml:ns:pal\">"
		"<pal:message><pal:type>0003</pal:type><pal:size>1</pal:size>"
		"<pal:info><pal:uri> " UP "/lbl/eecerts/1234?a=1&amp;b=2 </pal:uri></pal:info></pal:message>"
		"<pal:message attr='x>y'><pal:type>0002</pal:type><pal:info><pal:uri>" UP
		"/cacerts</pal:uri></pal:info></pal:message>"
		"<pal:message><pal:type>0003</pal:type><pal:info><pal:uri>https://elsewhere/x"
		"</pal:uri></pal:info></pal:message>"
		"<pal:message><pal:type>0023</pal:type><pal:info><pal:uri>" UP
		"/serverkeygen/return</pal:uri></pal:info></pal:message>"
		"</pal:pal>";
	struct est_pal_stats st;
	int rc;
	char *out = rewrite(in, 0, &all_on, &rc, &st);

	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "<pal:uri> coaps://gw/.well-known/est/lbl/eecerts/1234?a=1&amp;b=2 </pal:uri>"));
	assert_non_null(strstr(out, "<pal:uri>coaps://gw/.well-known/est/crts</pal:uri>"));
	assert_non_null(strstr(out, "<pal:uri>https://elsewhere/x</pal:uri>"));
	assert_non_null(strstr(out, "/.well-known/est/skg/return</pal:uri>"));
	assert_non_null(strstr(out, "<!-- a comment with <message> -->"));
	assert_int_equal(st.entries, 4);
	assert_int_equal(st.rewritten, 3);
	assert_int_equal(st.foreign, 1);
	assert_int_equal(st.dropped, 0);
	free(out);
}

static void test_I3_pal_xml_drops_off_operations(void **state)
{
	struct est_pal_opts o = all_on;
	const char *in =
		"<pal><message><type>0026</type><info><uri>" UP "/firmware</uri></info></message>"
		"<message><type>0002</type><info><uri>" UP "/cacerts</uri></info></message>"
		"<message><type>0002</type><info><uri>" UP "/fullcmc</uri></info></message>"
		"<message><type>0005</type><info><dn>CN=x</dn></info></message></pal>";
	struct est_pal_stats st;
	int rc;
	char *out;

	o.enabled &= ~(EST_X_EN_FIRMWARE | EST_X_EN_CRLS);
	out = rewrite(in, 0, &o, &rc, &st);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "<pal><message><type>0002</type><info><uri>coaps://gw/"
			    ".well-known/est/crts</uri></info></message></pal>");
	assert_int_equal(st.dropped, 3);
	assert_memory_equal(st.first_dropped, "0026", 4);
	free(out);
	o.rewrite = 0; /* drops still apply, URIs stay */
	out = rewrite(in, 0, &o, &rc, &st);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, UP "/cacerts"));
	free(out);
}

static void test_I3_pal_xml_malformed_cases(void **state)
{
	static const char *const bad[] = {
		"<pal><message><type>0002</type>",                        /* unclosed */
		"<pal><message><type>0002</type></message",               /* tag unterminated */
		"<!DOCTYPE pal [<!ENTITY x \"y\">]><pal></pal>",          /* DTD */
		"<pal><message><type>0002</type><info><uri><![CDATA[x]]></uri></info></message></pal>",
		"<pal><message><type>0002</type><message><type>0002</type></message></message></pal>",
		"<pal><message><size>0</size></message></pal>",             /* no type */
		"<pal><message><type>02</type></message></pal>",            /* not 4 digits */
		"<pal><message><type>00a2</type></message></pal>",
		"<pal><message><type>0002</type><type>0003</type></message></pal>",
		"<pal><message><type>0002</type><info><uri>a<b/>c</uri></info></message></pal>",
		"<pal></message></pal>",                                  /* close without open */
		"<pal><message/></pal>",                                  /* empty entry */
		"<pal><message><type>0002</type></message><!-- open",     /* comment unterminated */
		"<pal><?pi open",
		"<pal><message><type>0002</type></message>< ></pal>",      /* empty name */
		"<pal><mes<sage></pal>",
	};
	struct est_pal_stats st;
	int rc;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *out = rewrite(bad[i], 0, &all_on, &rc, &st);
		if (out)
			fail_msg("case %zu accepted: %s", i, out);
		assert_int_equal(rc, -EINVAL);
	}
}

static void test_I3_pal_bounds(void **state)
{
	char *in = malloc(70 * 64 + 2048), *p = in;
	struct est_pal_stats st;
	int rc;

	p += sprintf(p, "<pal>");
	for (int i = 0; i < EST_PAL_MAX_ENTRIES + 1; i++)
		p += sprintf(p, "<message><type>0002</type></message>");
	sprintf(p, "</pal>");
	assert_null(rewrite(in, 0, &all_on, &rc, &st));
	assert_int_equal(rc, -EINVAL);
	/* a URI over 1024 bytes */
	p = in + sprintf(in, "<pal><message><type>0002</type><info><uri>" UP "/");
	memset(p, 'a', 1100);
	sprintf(p + 1100, "</uri></info></message></pal>");
	assert_null(rewrite(in, 0, &all_on, &rc, &st));
	assert_int_equal(rc, -EINVAL);
	free(in);
}

static void test_I3_pal_json_rewrite_and_drop(void **state)
{
	struct est_pal_opts o = all_on;
	const char *in =
		"[\n {\"type\": \"0026\", \"size\": 5, \"info\": {\"uri\": \"https:\\/\\/ca.example:8443"
		"\\/.well-known\\/est\\/firmware\"}},\n"
		" {\"type\": \"0002\", \"size\": 0, \"info\": {\"uri\": \"" UP "/cacerts\"}, "
		"\"x\": [1, true, null, -2.5e3, {\"k\": \"v\"}]},\n"
		" {\"type\": \"0001\", \"info\": {\"uri\": \"" UP "/pal?page=2\"}}\n]\n";
	struct est_pal_stats st;
	int rc;
	char *out;

	o.enabled &= ~EST_X_EN_FIRMWARE;
	out = rewrite(in, 1, &o, &rc, &st);
	assert_int_equal(rc, 0);
	assert_string_equal(out,
		"[{\"type\": \"0002\", \"size\": 0, \"info\": {\"uri\": \"coaps://gw/.well-known/"
		"est/crts\"}, \"x\": [1, true, null, -2.5e3, {\"k\": \"v\"}]},{\"type\": \"0001\", "
		"\"info\": {\"uri\": \"coaps://gw/.well-known/est/pal?page=2\"}}]\n");
	assert_int_equal(st.dropped, 1);
	assert_int_equal(st.rewritten, 2);
	free(out);
	out = rewrite("[]", 1, &o, &rc, &st);
	assert_string_equal(out, "[]");
	free(out);
}

static void test_I3_pal_json_malformed_cases(void **state)
{
	static const char *const bad[] = {
		"{\"type\": \"0002\"}",                       /* not an array */
		"[{\"type\": \"0002\"}] x",                   /* trailing text */
		"[{\"type\": \"0002}]",                       /* unterminated string */
		"[{\"type\": \"0002\", \"info\": {\"uri\": \"a\\q\"}}]", /* bad escape */
		"[{\"type\": \"0002\", \"info\": {\"uri\": \"a\\u12\"}}]",
		"[{\"size\": 1}]",                            /* no type */
		"[{\"type\": 2}]",                            /* type not a string */
		"[{\"type\": \"0002\", \"uri\": \"a\", \"info\": {\"uri\": \"b\"}}]", /* two URIs */
		"[{\"type\": \"0002\",}]",
		"[{\"type\" \"0002\"}]",
		"[{\"type\": \"0002\"},]",
		"[1]",
		"[{\"type\": \"0002\", \"x\": [[[[[[[[[[1]]]]]]]]]]}]", /* too deep */
		"[{\"type\": \"0002\"}",
		"[{\"type\": \"0002\", \"x\": \"\x01\"}]",    /* control character */
		"",
	};
	struct est_pal_stats st;
	int rc;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *out = rewrite(bad[i], 1, &all_on, &rc, &st);
		if (out)
			fail_msg("case %zu accepted: %s", i, out);
		assert_int_equal(rc, -EINVAL);
	}
}

static void test_I3_pal_json_non_ascii_uri_left_alone(void **state)
{
	const char *in = "[{\"type\": \"0002\", \"info\": {\"uri\": \"" UP "/cacerts\\u00e9\"}}]";
	struct est_pal_stats st;
	int rc;
	char *out = rewrite(in, 1, &all_on, &rc, &st);

	assert_int_equal(rc, 0);
	assert_string_equal(out, in);
	assert_int_equal(st.foreign, 1);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_I2_cms_signed_crls_only),
		cmocka_unit_test(test_I2_cms_enveloped_any_content),
		cmocka_unit_test(test_I2_cms_malformed_cases),
		cmocka_unit_test(test_I2_pkcs12_shape),
		cmocka_unit_test(test_I2_tamp_types),
		cmocka_unit_test(test_I3_pal_xml_rewrite),
		cmocka_unit_test(test_I3_pal_xml_drops_off_operations),
		cmocka_unit_test(test_I3_pal_xml_malformed_cases),
		cmocka_unit_test(test_I3_pal_bounds),
		cmocka_unit_test(test_I3_pal_json_rewrite_and_drop),
		cmocka_unit_test(test_I3_pal_json_malformed_cases),
		cmocka_unit_test(test_I3_pal_json_non_ascii_uri_left_alone),
	};
	return cmocka_run_group_tests_name("cms_pal", tests, NULL, NULL);
}
