/* test_metrics.c - the counter registry and its Prometheus text (metrics.c).
 *
 * Every hook is called with known values and the rendered text is checked
 * line by line; the whole text is also checked against the exposition
 * format's line grammar (comments, then "name{labels} value").
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estgw/translate.h"
#include "ops/metrics.h"

#define CODE(c, d) ((uint8_t)(((c) << 5) | (d)))

static char *render(time_t now)
{
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(metrics_render(now, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	return text;
}

/** @p line must be one whole line of @p text. */
static void expect_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++) {
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return;
	}
	fail_msg("line not found: %s\n--- in ---\n%s", line, text);
}

static void expect_no(const char *text, const char *part)
{
	if (strstr(text, part))
		fail_msg("unexpected: %s\n--- in ---\n%s", part, text);
}

/** Each line is a comment or "name{labels} value" (text format 0.0.4). */
static void expect_valid_format(const char *text)
{
	regex_t re;
	char *copy = strdup(text), *save = NULL;

	assert_int_equal(regcomp(&re,
				 "^(# (HELP|TYPE) [a-z_:][a-z0-9_:]* .+|"
				 "[a-z_:][a-z0-9_:]*(\\{([a-z_]+=\"([^\"\\\\]|\\\\.)*\",?)+\\})? "
				 "-?[0-9.e+-]+)$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (regexec(&re, l, 0, NULL, 0) != 0)
			fail_msg("not exposition format: %s", l);
	regfree(&re);
	free(copy);
}

static int reset(void **state)
{
	metrics_reset();
	return 0;
}

static void test_empty_registry(void **state)
{
	char *t = render(1000);

	expect_line(t, "# TYPE estgw_requests_total counter");
	expect_line(t, "# TYPE estgw_upstream_exchanges_total counter");
	expect_line(t, "# TYPE estgw_upstream_duration_seconds histogram");
	expect_line(t, "# TYPE estgw_upstream_errors_total counter");
	expect_line(t, "# TYPE estgw_dtls_handshake_failures_total counter");
	expect_line(t, "# TYPE estgw_config_reloads_total counter");
	expect_line(t, "# TYPE estgw_ca_certs_age_seconds gauge");
	expect_line(t, "# TYPE estgw_brski_requests_total counter");
	expect_line(t, "# TYPE estgw_brski_masa_answers_total counter");
	expect_line(t, "estgw_dtls_sessions 0");
	expect_line(t, "estgw_block1_reassemblies 0");
	expect_line(t, "estgw_metrics_dropped_series_total 0");
	expect_valid_format(t);
	free(t);
}

/* Paths are reduced to the EST short name: label and root do not matter. */
static void test_requests_by_path_and_code(void **state)
{
	metrics_request("/.well-known/est/sen", CODE(2, 4));
	metrics_request("/est/lbl1/sen", CODE(2, 4));
	metrics_request("/.well-known/est/crts", CODE(2, 5));
	metrics_request("/.well-known/est/sen", CODE(4, 15));
	metrics_request("/.well-known/core", CODE(2, 5));
	metrics_request("/nope", CODE(4, 4));
	metrics_request("/", CODE(4, 4));
	metrics_request("/.well-known/brski/rv", CODE(2, 4));
	metrics_request("/.well-known/brski/es", CODE(2, 4));
	metrics_request("/.well-known/est/rv", CODE(4, 4)); /* not cBRSKI */
	metrics_request(NULL, CODE(5, 3));
	char *t = render(1000);
	expect_line(t, "estgw_requests_total{path=\"sen\",code=\"2.04\"} 2");
	expect_line(t, "estgw_requests_total{path=\"crts\",code=\"2.05\"} 1");
	expect_line(t, "estgw_requests_total{path=\"sen\",code=\"4.15\"} 1");
	expect_line(t, "estgw_requests_total{path=\"core\",code=\"2.05\"} 1");
	expect_line(t, "estgw_requests_total{path=\"other\",code=\"4.04\"} 3");
	expect_line(t, "estgw_requests_total{path=\"rv\",code=\"2.04\"} 1");
	expect_line(t, "estgw_requests_total{path=\"es\",code=\"2.04\"} 1");
	expect_line(t, "estgw_requests_total{path=\"other\",code=\"5.03\"} 1");
	expect_valid_format(t);
	free(t);
}

static void test_upstream_exchanges_errors_histogram(void **state)
{
	metrics_upstream("simpleenroll", EST_UP_OK, 200, 0.003);
	metrics_upstream("simpleenroll", EST_UP_OK, 200, 0.2);
	metrics_upstream("simpleenroll", EST_UP_OK, 503, 40.0);
	metrics_upstream("cacerts", EST_UP_TIMEOUT, 0, 10.0);
	metrics_upstream("cacerts", EST_UP_CONNECT, 0, 0.001);
	metrics_upstream("cacerts", 99, 0, 0.001); /* unknown kind */
	char *t = render(1000);
	expect_line(t, "estgw_upstream_exchanges_total{op=\"simpleenroll\",status=\"200\"} 2");
	expect_line(t, "estgw_upstream_exchanges_total{op=\"simpleenroll\",status=\"503\"} 1");
	expect_line(t, "estgw_upstream_exchanges_total{op=\"cacerts\",status=\"error\"} 3");
	expect_line(t, "estgw_upstream_errors_total{kind=\"timeout\"} 1");
	expect_line(t, "estgw_upstream_errors_total{kind=\"connect\"} 1");
	expect_line(t, "estgw_upstream_errors_total{kind=\"other\"} 1");
	/* cumulative buckets; 40 s is above the last bound: only in +Inf */
	expect_line(t, "estgw_upstream_duration_seconds_bucket{op=\"simpleenroll\",le=\"0.005\"} 1");
	expect_line(t, "estgw_upstream_duration_seconds_bucket{op=\"simpleenroll\",le=\"0.1\"} 1");
	expect_line(t, "estgw_upstream_duration_seconds_bucket{op=\"simpleenroll\",le=\"0.25\"} 2");
	expect_line(t, "estgw_upstream_duration_seconds_bucket{op=\"simpleenroll\",le=\"30\"} 2");
	expect_line(t, "estgw_upstream_duration_seconds_bucket{op=\"simpleenroll\",le=\"+Inf\"} 3");
	expect_line(t, "estgw_upstream_duration_seconds_count{op=\"simpleenroll\"} 3");
	expect_line(t, "estgw_upstream_duration_seconds_sum{op=\"simpleenroll\"} 40.203000");
	/* 10 s is exactly a bound: le is "less or equal" */
	expect_line(t, "estgw_upstream_duration_seconds_bucket{op=\"cacerts\",le=\"5\"} 2");
	expect_line(t, "estgw_upstream_duration_seconds_bucket{op=\"cacerts\",le=\"10\"} 3");
	expect_valid_format(t);
	free(t);
}

static void test_gauges(void **state)
{
	metrics_dtls_sessions(1);
	metrics_dtls_sessions(1);
	metrics_dtls_sessions(-1);
	metrics_block1(1);
	metrics_block1(1);
	metrics_block1(1);
	metrics_block1(-1);
	char *t = render(1000);
	expect_line(t, "estgw_dtls_sessions 1");
	expect_line(t, "estgw_block1_reassemblies 2");
	free(t);
}

static void fake_load(void *arg, size_t *running, size_t *queued)
{
	const size_t *v = arg;

	*running = v[0];
	*queued = v[1];
}

/* The upstream load gauges: asked for at render, absent without a source;
 * removing a source registered by another is a no-op. */
static void test_upstream_load_gauges(void **state)
{
	size_t v[2] = { 3, 7 }, other[2] = { 0, 0 };
	char *t = render(1000);

	assert_null(strstr(t, "estgw_upstream_running"));
	free(t);
	metrics_upstream_load(fake_load, v);
	t = render(1000);
	expect_line(t, "estgw_upstream_running 3");
	expect_line(t, "estgw_upstream_queued 7");
	expect_valid_format(t);
	free(t);
	v[1] = 0;
	metrics_upstream_load(NULL, other);
	t = render(1000);
	expect_line(t, "estgw_upstream_queued 0");
	free(t);
	metrics_upstream_load(NULL, v);
	t = render(1000);
	assert_null(strstr(t, "estgw_upstream_running"));
	free(t);
}

static void test_reloads(void **state)
{
	metrics_reload(1);
	metrics_reload(0);
	metrics_reload(0);
	char *t = render(1000);
	expect_line(t, "estgw_config_reloads_total{result=\"ok\"} 1");
	expect_line(t, "estgw_config_reloads_total{result=\"failed\"} 2");
	free(t);
}

/* J: /metrics has the cBRSKI pledge requests by resource and result, and the MASA's
 * answers (counted once per exchange, however many pledges waited). */
static void test_J_brski_requests_and_masa_answers(void **state)
{
	metrics_brski_request("rv", "sent");
	metrics_brski_request("rv", "joined");
	metrics_brski_request("rv", "kept");
	metrics_brski_request("rv", "kept");
	metrics_brski_request("rv", "refused");
	metrics_brski_request("vs", "success");
	metrics_brski_request("es", "failure");
	metrics_brski_masa("voucher");
	metrics_brski_masa("pending");
	metrics_brski_masa("error");
	metrics_brski_masa("error");
	char *t = render(1000);
	expect_line(t, "estgw_brski_requests_total{resource=\"rv\",result=\"sent\"} 1");
	expect_line(t, "estgw_brski_requests_total{resource=\"rv\",result=\"joined\"} 1");
	expect_line(t, "estgw_brski_requests_total{resource=\"rv\",result=\"kept\"} 2");
	expect_line(t, "estgw_brski_requests_total{resource=\"rv\",result=\"refused\"} 1");
	expect_line(t, "estgw_brski_requests_total{resource=\"vs\",result=\"success\"} 1");
	expect_line(t, "estgw_brski_requests_total{resource=\"es\",result=\"failure\"} 1");
	expect_line(t, "estgw_brski_masa_answers_total{result=\"voucher\"} 1");
	expect_line(t, "estgw_brski_masa_answers_total{result=\"pending\"} 1");
	expect_line(t, "estgw_brski_masa_answers_total{result=\"error\"} 2");
	expect_valid_format(t);
	free(t);
}

/* Label values are escaped: backslash, double quote, newline. */
static void test_label_escaping(void **state)
{
	metrics_handshake_failure("unknown_ca");
	metrics_handshake_failure("a\"b\\c\nd");
	metrics_handshake_failure("");
	metrics_handshake_failure(NULL);
	char *t = render(1000);
	expect_line(t, "estgw_dtls_handshake_failures_total{reason=\"unknown_ca\"} 1");
	expect_line(t, "estgw_dtls_handshake_failures_total{reason=\"a\\\"b\\\\c\\nd\"} 1");
	expect_line(t, "estgw_dtls_handshake_failures_total{reason=\"other\"} 2");
	expect_valid_format(t);
	free(t);
}

/* A long label value is cut, and the label set still closes properly. */
static void test_long_label_value(void **state)
{
	char big[400];

	memset(big, '"', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	metrics_handshake_failure(big);
	metrics_upstream(big, EST_UP_OK, 200, 0.1);
	char *t = render(1000);
	expect_valid_format(t);
	free(t);
}

/* Memory is bounded: past 128 label sets per family, updates are dropped
 * and counted. */
static void test_series_cap(void **state)
{
	char r[32];

	for (int i = 0; i < 200; i++) {
		snprintf(r, sizeof(r), "reason%d", i);
		metrics_handshake_failure(r);
	}
	for (int i = 0; i < 12; i++) {
		snprintf(r, sizeof(r), "op%d", i);
		metrics_upstream(r, EST_UP_OK, 200, 0.1); /* 8 histograms at most */
	}
	metrics_handshake_failure("reason0"); /* an existing series still counts */
	char *t = render(1000);
	expect_line(t, "estgw_dtls_handshake_failures_total{reason=\"reason0\"} 2");
	expect_line(t, "estgw_dtls_handshake_failures_total{reason=\"reason127\"} 1");
	expect_no(t, "reason128");
	expect_line(t, "estgw_metrics_dropped_series_total 76");
	expect_no(t, "estgw_upstream_duration_seconds_count{op=\"op8\"}");
	expect_line(t, "estgw_upstream_exchanges_total{op=\"op11\",status=\"200\"} 1");
	free(t);
}

/* /healthz: the default label's cache must exist and be young enough. */
static void test_crts_freshness_and_age(void **state)
{
	assert_int_equal(metrics_crts_fresh(1000, 900), 0); /* never filled */
	metrics_crts_fetched("lbl1", 1000);
	assert_int_equal(metrics_crts_fresh(1000, 900), 0); /* not the default */
	metrics_crts_fetched("", 1000);
	assert_int_equal(metrics_crts_fresh(1000, 900), 1);
	assert_int_equal(metrics_crts_fresh(1900, 900), 1);
	assert_int_equal(metrics_crts_fresh(1901, 900), 0);
	metrics_crts_fetched("", 1800); /* refreshed */
	assert_int_equal(metrics_crts_fresh(1901, 900), 1);
	char *t = render(2000);
	expect_line(t, "estgw_ca_certs_age_seconds{label=\"\"} 200");
	expect_line(t, "estgw_ca_certs_age_seconds{label=\"lbl1\"} 1000");
	expect_valid_format(t);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_empty_registry, reset),
		cmocka_unit_test_setup(test_requests_by_path_and_code, reset),
		cmocka_unit_test_setup(test_upstream_exchanges_errors_histogram, reset),
		cmocka_unit_test_setup(test_gauges, reset),
		cmocka_unit_test_setup(test_upstream_load_gauges, reset),
		cmocka_unit_test_setup(test_reloads, reset),
		cmocka_unit_test_setup(test_J_brski_requests_and_masa_answers, reset),
		cmocka_unit_test_setup(test_label_escaping, reset),
		cmocka_unit_test_setup(test_long_label_value, reset),
		cmocka_unit_test_setup(test_series_cap, reset),
		cmocka_unit_test_setup(test_crts_freshness_and_age, reset),
	};
	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
