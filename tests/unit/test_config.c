/* test_config.c - estgw_config_load() (config.c) and the start-up PKI checks
 * (pki.c).
 *
 * The group set-up makes a temporary directory and generates the PKI there
 * with the openssl CLI (no key material in the repository). Each test writes
 * t.conf from the base below, replacing some of its lines, so the line
 * numbers in the expected messages can be read off the base.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "estgw/config.h"
#include "estgw/translate.h"
#include "pki/pki.h"

static char tmp[PATH_MAX];  /* the group's directory */
static char conf[PATH_MAX]; /* tmp/t.conf */

static const char *const base[] = {
	"[server]",                                     /* 1 */
	"",                                             /* 2: free */
	"listen = 127.0.0.1:5684",                      /* 3 */
	"certificate = gw.crt",                         /* 4 */
	"private_key = gw.key",                         /* 5 */
	"client_trust = client-trust.crt",              /* 6 */
	"[upstream]",                                   /* 7 */
	"",                                             /* 8: free */
	"url = https://127.0.0.1:8443/.well-known/est", /* 9 */
	"trust = tls-ca.crt",                           /* 10 */
	"certificate = ra.crt",                         /* 11 */
	"private_key = ra.key",                         /* 12 */
	"[log]",                                        /* 13 */
	"",                                             /* 14: free */
	"",                                             /* 15: free */
};

/** Replace base line @c line by @c text (which may hold several lines). */
struct sub {
	unsigned line;
	const char *text;
};

#define MAX_SUBS 8

/* ---- helpers ----------------------------------------------------------- */

static void write_text(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void write_conf(const char *path, const struct sub *subs)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	for (unsigned i = 1; i <= sizeof(base) / sizeof(base[0]); i++) {
		const char *text = base[i - 1];

		for (const struct sub *s = subs; s && s->line; s++)
			if (s->line == i)
				text = s->text;
		fprintf(f, "%s\n", text);
	}
	assert_int_equal(fclose(f), 0);
}

/** Run a shell command in tmp; fails the test if it fails. */
__attribute__((format(printf, 1, 2)))
static void sh(const char *fmt, ...)
{
	char cmd[2048], line[sizeof(cmd) + sizeof(tmp) + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (snprintf(line, sizeof(line), "cd '%s' && { %s ; } >/dev/null 2>&1", tmp, cmd) < 0 ||
	    system(line) != 0)
		fail_msg("command failed: %s", cmd);
}

static const char *openssl(void)
{
	const char *p = getenv("OPENSSL");

	return p && *p ? p : "openssl";
}

/** Self-signed P-256 certificate NAME.crt with key NAME.key (+ extension). */
static void make_cert(const char *name, const char *ext)
{
	sh("%s req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc "
	   "-keyout %s.key -out %s.crt -subj /CN=%s -days 30 %s%s",
	   openssl(), name, name, name, ext ? "-addext " : "", ext ? ext : "");
	sh("chmod 600 %s.key && %s x509 -in %s.crt -outform DER -out %s.der",
	   name, openssl(), name, name);
}

static void path_in_tmp(char *out, size_t len, const char *name)
{
	if ((size_t)snprintf(out, len, "%s/%s", tmp, name) >= len)
		fail_msg("path too long");
}

/** Fails unless @p err starts with "<file>:<where>" and contains @p why. */
static void expect_msg(const char *err, const char *file, const char *where,
		       const char *why)
{
	char want[PATH_MAX + 128];

	snprintf(want, sizeof(want), "%s:%s", file, where);
	if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, why))
		fail_msg("got:  '%s'\nwant: '%s...%s...'", err, want, why);
}

static int load(const struct sub *subs, struct estgw_config *cfg, char *err,
		size_t errlen)
{
	write_conf(conf, subs);
	return estgw_config_load(conf, cfg, err, errlen);
}

static void load_ok(const struct sub *subs, struct estgw_config *cfg)
{
	char err[512];

	if (load(subs, cfg, err, sizeof(err)) != 0)
		fail_msg("load failed: %s", err);
}

/* ---- error rows: one config, one expected message ----------------------- */

struct err_row {
	struct sub subs[MAX_SUBS];
	const char *where; /**< after "file:" */
	const char *why;   /**< somewhere in the message */
	int rc;
};

static void test_error_row(void **state)
{
	const struct err_row *r = *state;
	struct estgw_config cfg;
	char err[512];
	int rc = load(r->subs, &cfg, err, sizeof(err));

	if (rc != r->rc)
		fail_msg("rc %d, want %d; message '%s'", rc, r->rc, err);
	expect_msg(err, conf, r->where, r->why);
	assert_null(strchr(err, '\n'));
	assert_null(cfg.path); /* freed and zeroed on error */
	assert_null(cfg.server.certificate);
	assert_int_equal(cfg.server.nlisten, 0);
}

#define X10 "xxxxxxxxxx"
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10

#define ROW(id, s, w, y, r) static const struct err_row id = { s, w, y, r };
#define S(...) { __VA_ARGS__ }
/* Sections and keys */
ROW(unknown_section, S({ 15, "[foo]" }), "15: [foo]", "unknown section", -EINVAL)
ROW(unknown_section_spaces, S({ 15, "[ log ]" }), "15: [ log ]", "unknown section", -EINVAL)
ROW(unknown_key, S({ 2, "colour = blue" }), "2: [server] colour", "unknown key", -EINVAL)
ROW(key_in_wrong_section, S({ 2, "url = https://a/" }), "2: [server] url", "unknown key", -EINVAL)
ROW(key_before_section, S({ 1, "max_body = 2048\n[server]" }), "1: max_body",
    "key before any [section]", -EINVAL)
ROW(duplicate_key, S({ 2, "certificate = gw.crt" }), "4: [server] certificate",
    "duplicate key (first set on line 2)", -EINVAL)
ROW(duplicate_number, S({ 8, "timeout = 5\ntimeout = 6" }), "9: [upstream] timeout",
    "duplicate key (first set on line 8)", -EINVAL)
ROW(duplicate_level, S({ 14, "level = info" }, { 15, "level = debug" }), "15: [log] level",
    "duplicate key", -EINVAL)
ROW(missing_listen, S({ 3, "" }), "0: [server] listen", "missing required key", -EINVAL)
ROW(missing_certificate, S({ 4, "" }), "0: [server] certificate", "missing required key", -EINVAL)
ROW(missing_client_trust, S({ 6, "" }), "0: [server] client_trust", "missing required key", -EINVAL)
ROW(missing_url, S({ 9, "" }), "0: [upstream] url", "missing required key", -EINVAL)
ROW(missing_trust, S({ 10, "" }), "0: [upstream] trust", "missing required key", -EINVAL)
ROW(missing_ra_certificate, S({ 11, "" }), "0: [upstream] certificate", "missing required key", -EINVAL)
ROW(missing_ra_key, S({ 12, "" }), "0: [upstream] private_key", "missing required key", -EINVAL)
/* listen */
ROW(too_many_listen, S({ 2, "listen = 127.0.0.1:1\nlisten = 127.0.0.1:2\nlisten = 127.0.0.1:3\n"
			    "listen = 127.0.0.1:4\nlisten = 127.0.0.1:5\nlisten = 127.0.0.1:6\n"
			    "listen = 127.0.0.1:7\nlisten = 127.0.0.1:8" }),
    "10: [server] listen", "too many listen addresses (at most 8)", -E2BIG)
ROW(listen_repeated_address, S({ 2, "listen = 127.0.0.1:5684" }), "3: [server] listen",
    "already listed on line 2", -EINVAL)
ROW(listen_no_port, S({ 3, "listen = 127.0.0.1" }), "3: [server] listen",
    "bad address '127.0.0.1': expected IPv4-address:port or [IPv6-address]:port", -EINVAL)
ROW(listen_port_0, S({ 3, "listen = 127.0.0.1:0" }), "3: [server] listen", "port must be", -EINVAL)
ROW(listen_port_65536, S({ 3, "listen = 127.0.0.1:65536" }), "3: [server] listen", "port must be", -EINVAL)
ROW(listen_port_empty, S({ 3, "listen = 127.0.0.1:" }), "3: [server] listen", "port must be", -EINVAL)
ROW(listen_port_sign, S({ 3, "listen = 127.0.0.1:+5" }), "3: [server] listen", "port must be", -EINVAL)
ROW(listen_port_junk, S({ 3, "listen = 127.0.0.1:56x" }), "3: [server] listen", "port must be", -EINVAL)
ROW(listen_port_long, S({ 3, "listen = 127.0.0.1:000005684" }), "3: [server] listen", "port must be", -EINVAL)
ROW(listen_no_host, S({ 3, "listen = :5684" }), "3: [server] listen", "host is empty", -EINVAL)
ROW(listen_bad_v4, S({ 3, "listen = 300.1.1.1:5684" }), "3: [server] listen", "not an IPv4 address", -EINVAL)
ROW(listen_bad_name, S({ 3, "listen = gw_1:5684" }), "3: [server] listen", "not an IP address", -EINVAL)
ROW(listen_host_name, S({ 3, "listen = localhost:5684" }), "3: [server] listen",
    "bad address 'localhost:5684': a host name; names are not resolved", -EINVAL)
ROW(listen_dns_name, S({ 3, "listen = gw.example-1.net:5684" }), "3: [server] listen",
    "a host name", -EINVAL)
ROW(listen_garbage, S({ 3, "listen = !!" }), "3: [server] listen",
    "bad address '!!': expected IPv4-address:port or [IPv6-address]:port", -EINVAL)
ROW(listen_garbage_host, S({ 3, "listen = a b:5684" }), "3: [server] listen", "not an IP address", -EINVAL)
ROW(listen_two_ports, S({ 3, "listen = 127.0.0.1:5684:1" }), "3: [server] listen",
    "expected IPv4-address:port or [IPv6-address]:port", -EINVAL)
ROW(listen_v4_short, S({ 3, "listen = 127.1:5684" }), "3: [server] listen", "not an IPv4 address", -EINVAL)
ROW(listen_v4_leading_zero, S({ 3, "listen = 127.0.0.01:5684" }), "3: [server] listen",
    "not an IPv4 address", -EINVAL)
ROW(listen_empty, S({ 3, "listen =" }), "3: [server] listen", "expected IPv4-address:port", -EINVAL)
ROW(listen_same_address_other_spelling, S({ 2, "listen = [::1]:5684" }, { 3, "listen = [0:0::1]:5684" }),
    "3: [server] listen", "'[0:0::1]:5684' is already listed on line 2", -EINVAL)
ROW(listen_v6_unbracketed, S({ 3, "listen = ::1:5684" }), "3: [server] listen", "needs brackets", -EINVAL)
ROW(listen_v6_no_colon, S({ 3, "listen = [::1]5684" }), "3: [server] listen", "expected [IPv6-address]:port", -EINVAL)
ROW(listen_v6_unclosed, S({ 3, "listen = [::1:5684" }), "3: [server] listen", "expected [IPv6-address]:port", -EINVAL)
ROW(listen_v6_empty, S({ 3, "listen = []:5684" }), "3: [server] listen", "not an IPv6 address", -EINVAL)
ROW(listen_v6_is_v4, S({ 3, "listen = [127.0.0.1]:5684" }), "3: [server] listen", "not an IPv6 address", -EINVAL)
ROW(listen_v6_port_0, S({ 3, "listen = [::]:0" }), "3: [server] listen", "port must be", -EINVAL)
ROW(listen_v6_port_65536, S({ 3, "listen = [::1]:65536" }), "3: [server] listen", "port must be", -EINVAL)
ROW(listen_v6_no_port, S({ 3, "listen = [::1]" }), "3: [server] listen", "expected [IPv6-address]:port", -EINVAL)
ROW(listen_v6_port_empty, S({ 3, "listen = [::1]:" }), "3: [server] listen", "port must be", -EINVAL)
ROW(listen_v6_double_close, S({ 3, "listen = [::1]]:5684" }), "3: [server] listen",
    "expected [IPv6-address]:port", -EINVAL)
ROW(listen_v6_bad, S({ 3, "listen = [::g]:5684" }), "3: [server] listen", "not an IPv6 address", -EINVAL)
ROW(listen_v6_scope, S({ 3, "listen = [fe80::1%eth0]:5684" }), "3: [server] listen",
    "not an IPv6 address", -EINVAL)
ROW(listen_v6_close_only, S({ 3, "listen = ::1]:5684" }), "3: [server] listen",
    "expected IPv4-address:port", -EINVAL)
ROW(listen_v6_long, S({ 3, "listen = [" X10 X10 X10 X10 X10 "]:5684" }), "3: [server] listen",
    "not an IPv6 address", -EINVAL)
ROW(metrics_listen_host_name, S({ 15, "[metrics]\nlisten = localhost:9684" }), "16: [metrics] listen",
    "bad address 'localhost:9684': a host name", -EINVAL)
ROW(metrics_listen_no_port, S({ 15, "[metrics]\nlisten = 127.0.0.1" }), "16: [metrics] listen",
    "expected IPv4-address:port", -EINVAL)
ROW(metrics_listen_port_0, S({ 15, "[metrics]\nlisten = [::1]:0" }), "16: [metrics] listen",
    "port must be", -EINVAL)
/* numbers, booleans, level */
ROW(number_suffix, S({ 2, "max_body = 12k" }), "2: [server] max_body",
    "'12k' is not a number from 1024 to 1048576", -EINVAL)
ROW(number_negative, S({ 2, "max_body = -1" }), "2: [server] max_body", "is not a number", -EINVAL)
ROW(number_empty, S({ 2, "max_sessions =" }), "2: [server] max_sessions", "is not a number", -EINVAL)
ROW(number_overflow, S({ 8, "max_age_max = 4294967296" }), "8: [upstream] max_age_max",
    "is not a number", -EINVAL)
ROW(number_below, S({ 2, "max_body = 1023" }), "2: [server] max_body",
    "1023 is out of range 1024..1048576", -ERANGE)
ROW(number_above, S({ 2, "max_body = 1048577" }), "2: [server] max_body", "out of range", -ERANGE)
ROW(number_zero, S({ 2, "idle_timeout = 0" }), "2: [server] idle_timeout", "out of range 1..86400", -ERANGE)
ROW(number_timeout, S({ 8, "timeout = 3601" }), "8: [upstream] timeout", "out of range", -ERANGE)
ROW(bad_bool, S({ 8, "send_cte = maybe" }), "8: [upstream] send_cte",
    "'maybe' is not a boolean (yes/no/true/false/on/off/1/0)", -EINVAL)
ROW(bad_bool_2, S({ 8, "send_cte = 2" }), "8: [upstream] send_cte", "is not a boolean", -EINVAL)
ROW(bad_level, S({ 14, "level = verbose" }), "14: [log] level",
    "'verbose' is not a log level (error/warning/info/debug)", -EINVAL)
ROW(F_bad_serverkeygen, S({ 2, "serverkeygen = ca" }), "2: [server] serverkeygen",
    "'ca' is not a serverkeygen mode (upstream/registrar/off)", -EINVAL)
ROW(F_empty_serverkeygen, S({ 2, "serverkeygen =" }), "2: [server] serverkeygen",
    "is not a serverkeygen mode", -EINVAL)
/* root */
ROW(root_relative, S({ 2, "root = est" }), "2: [server] root", "'est' must start with '/'", -EINVAL)
ROW(root_trailing_slash, S({ 2, "root = /est/" }), "2: [server] root", "empty path segment", -EINVAL)
ROW(root_double_slash, S({ 2, "root = //est" }), "2: [server] root", "empty path segment", -EINVAL)
ROW(root_slash, S({ 2, "root = /" }), "2: [server] root", "empty path segment", -EINVAL)
ROW(root_query, S({ 2, "root = /est?x=1" }), "2: [server] root", "must not contain '?'", -EINVAL)
ROW(root_fragment, S({ 2, "root = /est#x" }), "2: [server] root", "must not contain '?' or '#'", -EINVAL)
ROW(root_dotdot, S({ 2, "root = /a/../b" }), "2: [server] root", "'..' segment", -EINVAL)
ROW(root_space, S({ 2, "root = /a b" }), "2: [server] root", "spaces", -EINVAL)
ROW(root_well_known, S({ 2, "root = /.well-known/est" }), "2: [server] root", "always served", -EINVAL)
ROW(root_empty, S({ 2, "root =" }), "2: [server] root", "must start with '/'", -EINVAL)
/* url */
ROW(url_http, S({ 9, "url = http://127.0.0.1:8080/.well-known/est" }), "9: [upstream] url",
    "must start with https://", -EINVAL)
ROW(url_no_scheme, S({ 9, "url = ca.example/.well-known/est" }), "9: [upstream] url",
    "must start with https://", -EINVAL)
ROW(url_no_host, S({ 9, "url = https:///est" }), "9: [upstream] url", "has no host", -EINVAL)
ROW(url_query, S({ 9, "url = https://ca/est?x" }), "9: [upstream] url", "query", -EINVAL)
/* relations */
ROW(connect_over_timeout, S({ 8, "connect_timeout = 31" }), "8: [upstream] connect_timeout",
    "connect_timeout (31) must not be greater than timeout (30)", -EINVAL)
ROW(timeout_under_connect, S({ 8, "timeout = 5" }), "8: [upstream] timeout",
    "connect_timeout (10) must not be greater than timeout (5)", -EINVAL)
ROW(max_age_min_over_max, S({ 8, "max_age_min = 100\nmax_age_max = 50" }), "8: [upstream] max_age_min",
    "max_age_min (100) must not be greater than max_age_max (50)", -EINVAL)
/* files */
ROW(file_missing, S({ 4, "certificate = nope.crt" }), "4: [server] certificate",
    "/nope.crt: No such file or directory", -ENOENT)
ROW(file_missing_abs, S({ 12, "private_key = /nonexistent/ra.key" }), "12: [upstream] private_key",
    "cannot stat /nonexistent/ra.key", -ENOENT)
ROW(file_is_directory, S({ 6, "client_trust = ." }), "6: [server] client_trust",
    "is a directory, not a file", -EISDIR)
ROW(file_not_regular, S({ 10, "trust = /dev/null" }), "10: [upstream] trust",
    "/dev/null is not a regular file", -EINVAL)
ROW(file_empty_value, S({ 5, "private_key =" }), "5: [server] private_key", "empty value", -EINVAL)
/* [log] keylog_file: written, not read */
ROW(keylog_dir_missing, S({ 14, "keylog_file = /nonexistent/keys.log" }), "14: [log] keylog_file",
    "cannot create /nonexistent/keys.log: No such file or directory", -ENOENT)
ROW(keylog_not_regular, S({ 14, "keylog_file = /dev/null" }), "14: [log] keylog_file",
    "/dev/null is not a regular file", -EINVAL)
ROW(keylog_empty_value, S({ 14, "keylog_file =" }), "14: [log] keylog_file", "empty value",
    -EINVAL)
/* syntax */
ROW(syntax_no_equals, S({ 15, "this is not ini" }), "15: syntax error", "expected [section]", -EINVAL)
ROW(syntax_unclosed_section, S({ 15, "[log" }), "15: syntax error", "", -EINVAL)
ROW(syntax_before_other_error, S({ 2, "garbage" }, { 15, "[foo]" }), "2: syntax error", "", -EINVAL)
ROW(other_error_before_syntax, S({ 2, "colour = x" }, { 15, "garbage" }), "2: [server] colour",
    "unknown key", -EINVAL)
ROW(indented_line, S({ 2, "  max_body = 2048" }), "2: indented line", "leading whitespace", -EINVAL)
ROW(line_too_long, S({ 8, "url = https://" X100 X100 }), "8: line longer than", "characters", -EINVAL)

/* [policy] and the security limits (G2-G4, E4) */
ROW(G4_bad_pop, S({ 15, "[policy]\npop = maybe" }), "16: [policy] pop",
    "'maybe' is not a POP mode (off/if-present/required)", -EINVAL)
ROW(G2_bad_ops, S({ 15, "[policy]\nidevid_ops = sen enroll" }), "16: [policy] idevid_ops",
    "'enroll' is not an operation", -EINVAL)
ROW(G2_empty_ops, S({ 15, "[policy]\nother_ops = ," }), "16: [policy] other_ops",
    "empty list (write none)", -EINVAL)
ROW(G3_expired_without_idevid_trust, S({ 15, "[policy]\nallow_expired_idevid = yes" }),
    "16: [policy] allow_expired_idevid", "needs [policy] idevid_trust", -EINVAL)
ROW(G2_idevid_trust_missing_file, S({ 15, "[policy]\nidevid_trust = nothing.crt" }),
    "16: [policy] idevid_trust", "cannot stat", -ENOENT)
ROW(E4_reasm_per_session_above, S({ 2, "reasm_per_session = 65" }),
    "2: [server] reasm_per_session", "65 is out of range 1..64", -ERANGE)
ROW(E4_reasm_total_zero, S({ 2, "reasm_total = 0" }), "2: [server] reasm_total",
    "0 is out of range 1..100000", -ERANGE)

#define ERR_TEST(id) { "error_" #id, test_error_row, NULL, NULL, (void *)&id }

/* ---- loading: values --------------------------------------------------- */

static void test_defaults(void **state)
{
	struct estgw_config cfg;
	char want[PATH_MAX + 16];

	load_ok(NULL, &cfg);
	assert_string_equal(cfg.path, conf);
	assert_int_equal(cfg.server.nlisten, 1);
	assert_string_equal(cfg.server.listen[0].text, "127.0.0.1:5684");
	assert_int_equal(cfg.server.listen_src[0].line, 3);
	path_in_tmp(want, sizeof(want), "gw.crt");
	assert_string_equal(cfg.server.certificate, want);
	assert_int_equal(cfg.server.certificate_src.line, 4);
	assert_int_equal(cfg.server.private_key_src.line, 5);
	assert_int_equal(cfg.server.client_trust_src.line, 6);
	assert_null(cfg.server.root);
	assert_int_equal(cfg.server.root_src.line, 0);
	assert_int_equal(cfg.server.max_body, 16384);
	assert_int_equal(cfg.server.idle_timeout, 300);
	assert_int_equal(cfg.server.max_sessions, 1000);
	assert_int_equal(cfg.server.serverkeygen, ESTGW_SKG_UPSTREAM);
	assert_string_equal(cfg.upstream.url, "https://127.0.0.1:8443/.well-known/est");
	assert_int_equal(cfg.upstream.url_src.line, 9);
	assert_int_equal(cfg.upstream.trust_src.line, 10);
	assert_int_equal(cfg.upstream.certificate_src.line, 11);
	assert_int_equal(cfg.upstream.private_key_src.line, 12);
	assert_int_equal(cfg.upstream.timeout, 30);
	assert_int_equal(cfg.upstream.connect_timeout, 10);
	assert_int_equal(cfg.upstream.max_response, 1048576);
	assert_int_equal(cfg.upstream.crts_refresh, 300);
	assert_int_equal(cfg.upstream.retry_default, 60);
	assert_int_equal(cfg.upstream.max_age_min, 1);
	assert_int_equal(cfg.upstream.max_age_max, 86400);
	assert_int_equal(cfg.upstream.send_cte, 1);
	assert_int_equal(cfg.log.level, LOG_INFO);
	estgw_config_free(&cfg);
	assert_null(cfg.path);
	estgw_config_free(&cfg); /* twice is harmless */
}

static void test_every_key_set(void **state)
{
	const struct sub subs[] = {
		{ 2, "listen = [::1]:5684\nlisten = 0.0.0.0:5685\nroot = /est/v1\n"
		     "max_body = 2048\nidle_timeout = 60\nmax_sessions = 10" },
		{ 8, "timeout = 5\nconnect_timeout = 5\nmax_response = 4096\n"
		     "crts_refresh = 60\nretry_default = 0\nmax_age_min = 0\n"
		     "max_age_max = 4294967295\nsend_cte = off" },
		{ 9, "url = https://ca.example:8443/.well-known/est//" },
		{ 14, "level = debug" },
		{ 0, NULL },
	};
	struct estgw_config cfg;

	load_ok(subs, &cfg);
	assert_int_equal(cfg.server.nlisten, 3);
	assert_string_equal(cfg.server.listen[0].text, "[::1]:5684");
	assert_string_equal(cfg.server.listen[1].text, "0.0.0.0:5685");
	assert_string_equal(cfg.server.listen[2].text, "127.0.0.1:5684");
	assert_int_equal(cfg.server.listen_src[0].line, 2);
	assert_int_equal(cfg.server.listen_src[2].line, 8);
	assert_string_equal(cfg.server.root, "/est/v1");
	assert_int_equal(cfg.server.root_src.line, 4);
	assert_int_equal(cfg.server.max_body, 2048);
	assert_int_equal(cfg.server.idle_timeout, 60);
	assert_int_equal(cfg.server.max_sessions, 10);
	assert_int_equal(cfg.upstream.timeout, 5);
	assert_int_equal(cfg.upstream.connect_timeout, 5);
	assert_int_equal(cfg.upstream.max_response, 4096);
	assert_int_equal(cfg.upstream.crts_refresh, 60);
	assert_int_equal(cfg.upstream.retry_default, 0);
	assert_int_equal(cfg.upstream.max_age_min, 0);
	assert_int_equal(cfg.upstream.max_age_max, 4294967295u);
	assert_int_equal(cfg.upstream.send_cte, 0);
	/* trailing slashes are dropped so that url + "/cacerts" works */
	assert_string_equal(cfg.upstream.url, "https://ca.example:8443/.well-known/est");
	assert_int_equal(cfg.log.level, LOG_DEBUG);
	estgw_config_free(&cfg);
}

#define OPS(...) op_mask((const enum est_op[]){ __VA_ARGS__ }, \
			sizeof((const enum est_op[]){ __VA_ARGS__ }) / sizeof(enum est_op))

static uint32_t op_mask(const enum est_op *ops, size_t n)
{
	uint32_t m = 0;

	for (size_t i = 0; i < n; i++)
		m |= 1u << ops[i];
	return m;
}

/** [policy] defaults: POP if present, IDevIDs may not re-enroll (G2, G4). */
static void test_G_policy_defaults(void **state)
{
	struct estgw_config cfg;

	load_ok(NULL, &cfg);
	assert_int_equal(cfg.policy.pop, ESTGW_POP_IF_PRESENT);
	assert_int_equal(cfg.policy.match_serial, 0);
	assert_int_equal(cfg.policy.allow_expired_idevid, 0);
	assert_null(cfg.policy.idevid_trust);
	assert_null(cfg.policy.ldevid_trust);
	assert_int_equal(cfg.policy.idevid_ops,
			 OPS(EST_OP_CRTS, EST_OP_ATT, EST_OP_SEN, EST_OP_SKG, EST_OP_SKC));
	assert_int_equal(cfg.policy.ldevid_ops, (1u << EST_OP_COUNT) - 1);
	assert_int_equal(cfg.policy.other_ops, (1u << EST_OP_COUNT) - 1);
	assert_int_equal(cfg.server.max_handshakes, 100);
	assert_int_equal(cfg.server.reasm_per_session, 4);
	assert_int_equal(cfg.server.reasm_total, 256);
	assert_int_equal(cfg.server.reasm_total_bytes, 64u << 20);
	assert_int_equal(cfg.server.rate_limit, 600);
	estgw_config_free(&cfg);
}

static void test_G_policy_every_key(void **state)
{
	const struct sub subs[] = {
		{ 2, "max_handshakes = 8\nreasm_per_session = 2\nreasm_total = 16\n"
		     "reasm_total_bytes = 65536\nrate_limit = 0" },
		{ 15, "[policy]\npop = REQUIRED\nmatch_serial = yes\n"
		      "idevid_trust = client-trust.crt\nallow_expired_idevid = on\n"
		      "ldevid_trust = tls-ca.crt\nidevid_ops = sen, crts\n"
		      "ldevid_ops = all\nother_ops = none" },
		{ 0, NULL },
	};
	struct estgw_config cfg;
	char want[PATH_MAX + 32];

	load_ok(subs, &cfg);
	assert_int_equal(cfg.server.max_handshakes, 8);
	assert_int_equal(cfg.server.reasm_per_session, 2);
	assert_int_equal(cfg.server.reasm_total, 16);
	assert_int_equal(cfg.server.reasm_total_bytes, 65536);
	assert_int_equal(cfg.server.rate_limit, 0);
	assert_int_equal(cfg.policy.pop, ESTGW_POP_REQUIRED);
	assert_int_equal(cfg.policy.match_serial, 1);
	assert_int_equal(cfg.policy.allow_expired_idevid, 1);
	assert_int_equal(cfg.policy.allow_expired_idevid_src.line, 23);
	path_in_tmp(want, sizeof(want), "client-trust.crt");
	assert_string_equal(cfg.policy.idevid_trust, want);
	assert_int_equal(cfg.policy.idevid_trust_src.line, 22);
	path_in_tmp(want, sizeof(want), "tls-ca.crt");
	assert_string_equal(cfg.policy.ldevid_trust, want);
	assert_int_equal(cfg.policy.idevid_ops, OPS(EST_OP_SEN, EST_OP_CRTS));
	assert_int_equal(cfg.policy.ldevid_ops, (1u << EST_OP_COUNT) - 1);
	assert_int_equal(cfg.policy.other_ops, 0);
	estgw_config_free(&cfg);
}

static void test_booleans(void **state)
{
	static const struct {
		const char *word;
		int value;
	} words[] = {
		{ "yes", 1 }, { "no", 0 }, { "true", 1 }, { "false", 0 }, { "on", 1 },
		{ "off", 0 }, { "1", 1 },  { "0", 0 },    { "YES", 1 },   { "Off", 0 },
	};
	struct estgw_config cfg;
	char line[64];

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		const struct sub subs[] = { { 8, line }, { 0, NULL } };

		snprintf(line, sizeof(line), "send_cte = %s", words[i].word);
		load_ok(subs, &cfg);
		assert_int_equal(cfg.upstream.send_cte, words[i].value);
		estgw_config_free(&cfg);
	}
}

static void test_log_levels(void **state)
{
	static const struct {
		const char *word;
		int prio;
	} levels[] = {
		{ "error", LOG_ERR }, { "warning", LOG_WARNING }, { "info", LOG_INFO },
		{ "debug", LOG_DEBUG }, { "DEBUG", LOG_DEBUG },
	};
	struct estgw_config cfg;
	char line[64];

	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		const struct sub subs[] = { { 14, line }, { 0, NULL } };

		snprintf(line, sizeof(line), "level = %s", levels[i].word);
		load_ok(subs, &cfg);
		assert_int_equal(cfg.log.level, levels[i].prio);
		estgw_config_free(&cfg);
	}
}

/* F, F4: [server] serverkeygen = upstream|registrar|off, any case. */
static void test_F_serverkeygen_modes(void **state)
{
	static const struct {
		const char *word;
		int mode;
	} modes[] = {
		{ "upstream", ESTGW_SKG_UPSTREAM }, { "registrar", ESTGW_SKG_REGISTRAR },
		{ "off", ESTGW_SKG_OFF }, { "Registrar", ESTGW_SKG_REGISTRAR },
		{ "OFF", ESTGW_SKG_OFF },
	};
	struct estgw_config cfg;
	char line[64];

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		const struct sub subs[] = { { 2, line }, { 0, NULL } };

		snprintf(line, sizeof(line), "serverkeygen = %s", modes[i].word);
		load_ok(subs, &cfg);
		assert_int_equal(cfg.server.serverkeygen, modes[i].mode);
		estgw_config_free(&cfg);
	}
}

/* Each accepted form is parsed once, at load, into the socket address that
 * coap_server.c and metrics_http.c bind (checked here with inet_ntop). */
static void expect_addr(const struct estgw_addr *a, const char *text, int family,
			const char *ip, unsigned port)
{
	char got[INET6_ADDRSTRLEN] = "";
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->sa;

	assert_string_equal(a->text, text);
	assert_int_equal(a->sa.ss_family, family);
	if (family == AF_INET) {
		assert_int_equal(a->salen, sizeof(*sin));
		assert_int_equal(ntohs(sin->sin_port), port);
		assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, got, sizeof(got)));
	} else {
		assert_int_equal(a->salen, sizeof(*sin6));
		assert_int_equal(ntohs(sin6->sin6_port), port);
		assert_int_equal(sin6->sin6_scope_id, 0);
		assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, got, sizeof(got)));
	}
	assert_string_equal(got, ip);
}

static void test_listen_forms(void **state)
{
	static const struct {
		const char *value;
		int family;
		const char *ip;
		unsigned port;
	} ok[] = {
		{ "[::]:5684", AF_INET6, "::", 5684 },
		{ "[::1]:5684", AF_INET6, "::1", 5684 },
		{ "[2001:db8::1]:1", AF_INET6, "2001:db8::1", 1 },
		{ "[2001:0DB8:0000::0001]:65535", AF_INET6, "2001:db8::1", 65535 },
		{ "[::ffff:192.0.2.1]:5684", AF_INET6, "::ffff:192.0.2.1", 5684 },
		{ "0.0.0.0:5684", AF_INET, "0.0.0.0", 5684 },
		{ "127.0.0.1:5684", AF_INET, "127.0.0.1", 5684 },
		{ "192.0.2.255:00080", AF_INET, "192.0.2.255", 80 },
	};
	struct estgw_config cfg;
	char err[512], line[128], metrics[160];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		const struct sub subs[] = { { 3, line }, { 15, metrics }, { 0, NULL } };

		snprintf(line, sizeof(line), "listen = %s", ok[i].value);
		snprintf(metrics, sizeof(metrics), "[metrics]\nlisten = %s", ok[i].value);
		if (load(subs, &cfg, err, sizeof(err)) != 0)
			fail_msg("%s: %s", ok[i].value, err);
		assert_int_equal(cfg.server.nlisten, 1);
		expect_addr(&cfg.server.listen[0], ok[i].value, ok[i].family, ok[i].ip, ok[i].port);
		expect_addr(&cfg.metrics.listen, ok[i].value, ok[i].family, ok[i].ip, ok[i].port);
		assert_int_equal(cfg.metrics.listen_src.line, 16);
		estgw_config_free(&cfg);
	}
	load_ok(NULL, &cfg); /* no [metrics] listen: none */
	assert_int_equal(cfg.metrics.listen.salen, 0);
	estgw_config_free(&cfg);
}

/* ---- reload: restart-only keys keep the running value -------------------- */

struct kept_rec {
	char what[8][64];
	unsigned line[8];
	size_t n;
};

static void rec_kept(void *arg, const char *section, const char *key, unsigned line)
{
	struct kept_rec *r = arg;

	if (r->n < 8) {
		snprintf(r->what[r->n], sizeof(r->what[0]), "[%s] %s", section, key);
		r->line[r->n++] = line;
	}
}

static void load_pair(const struct sub *a, const struct sub *b, struct estgw_config *cur,
		      struct estgw_config *next)
{
	load_ok(a, cur);
	load_ok(b, next);
}

/* The schema's RESTART column: listen addresses and [brski] keep the running
 * value, each changed key is named with its line in the new file; live keys
 * take the new value. */
static void test_reload_keeps_restart_keys(void **state)
{
	const struct sub a[] = {
		{ 2, "rate_limit = 7" },
		{ 15, "[metrics]\nlisten = 127.0.0.1:9684\n[brski]\nmax_pending = 3" },
		{ 0, NULL },
	};
	const struct sub b[] = {
		{ 2, "rate_limit = 8\nlisten = [::1]:5684" },
		{ 15, "[metrics]\nlisten = 127.0.0.1:9685\n[brski]\nmax_pending = 4" },
		{ 0, NULL },
	};
	struct estgw_config cur, next;
	struct kept_rec r = { .n = 0 };

	load_pair(a, b, &cur, &next);
	assert_int_equal(estgw_config_keep_restart(&cur, &next, rec_kept, &r), 0);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.what[0], "[server] listen");
	assert_int_equal(r.line[0], 3);
	assert_string_equal(r.what[1], "[brski] max_pending");
	assert_int_equal(r.line[1], 19);
	assert_string_equal(r.what[2], "[metrics] listen");
	assert_int_equal(r.line[2], 17);
	assert_int_equal(next.server.nlisten, 1);
	expect_addr(&next.server.listen[0], "127.0.0.1:5684", AF_INET, "127.0.0.1", 5684);
	expect_addr(&next.metrics.listen, "127.0.0.1:9684", AF_INET, "127.0.0.1", 9684);
	assert_int_equal(next.brski.max_pending, 3);
	assert_int_equal(next.server.rate_limit, 8); /* live */
	/* now the same: nothing to name */
	r.n = 0;
	assert_int_equal(estgw_config_keep_restart(&cur, &next, rec_kept, &r), 0);
	assert_int_equal(r.n, 0);
	estgw_config_free(&cur);
	estgw_config_free(&next);
}

/* Every kind of value: strings set or removed, numbers, booleans, the
 * manufacturer lines; the same addresses in another order are no change. */
static void test_reload_keeps_every_kind(void **state)
{
	const struct sub a[] = {
		{ 2, "listen = [::1]:5684" },
		{ 15, "[brski]\nmasa_url = masa.example\nmasa_timeout = 5\n"
		      "manufacturer = ca=gw.crt" },
		{ 0, NULL },
	};
	const struct sub b[] = {
		{ 2, "" },
		{ 3, "listen = 127.0.0.1:5684\nlisten = [0::1]:5684" },
		{ 15, "[brski]\nenabled = yes\nmanufacturer_trust = gw.crt\n"
		      "manufacturer = ca=gw.crt legacy" },
		{ 0, NULL },
	};
	struct estgw_config cur, next;
	struct kept_rec r = { .n = 0 };
	char want[PATH_MAX + 16];

	load_pair(a, b, &cur, &next);
	assert_int_equal(estgw_config_keep_restart(&cur, &next, rec_kept, &r), 0);
	assert_int_equal(r.n, 5);
	assert_string_equal(r.what[0], "[brski] enabled");
	assert_int_equal(r.line[0], 17);
	assert_string_equal(r.what[1], "[brski] manufacturer_trust");
	assert_string_equal(r.what[2], "[brski] masa_url");
	assert_int_equal(r.line[2], 0); /* removed from the file */
	assert_string_equal(r.what[3], "[brski] masa_timeout");
	assert_string_equal(r.what[4], "[brski] manufacturer");
	assert_int_equal(r.line[4], 19);
	assert_int_equal(next.brski.enabled, 0);
	assert_null(next.brski.manufacturer_trust);
	assert_string_equal(next.brski.masa_url, "masa.example");
	assert_int_equal(next.brski.masa_timeout, 5);
	assert_int_equal(next.brski.nmfr, 1);
	assert_int_equal(next.brski.mfr[0].legacy, 0);
	path_in_tmp(want, sizeof(want), "gw.crt");
	assert_string_equal(next.brski.mfr[0].ca, want);
	assert_ptr_not_equal(next.brski.mfr[0].ca, cur.brski.mfr[0].ca); /* a copy */
	/* the listen set is the same: next keeps its own order */
	assert_int_equal(next.server.nlisten, 2);
	assert_string_equal(next.server.listen[0].text, "127.0.0.1:5684");
	assert_string_equal(next.server.listen[1].text, "[0::1]:5684");
	estgw_config_free(&cur);
	estgw_config_free(&next);
}

/* [brski] jpy_proxies (H6): addresses and prefixes, both families; the
 * reload walk keeps the running list (restart-only). */
static void test_H6_jpy_proxies(void **state)
{
	const struct sub a[] = {
		{ 15, "[brski]\njpy_listen = [::1]:5685\n"
		      "jpy_proxies = 127.0.0.1, fd00::/8 192.0.2.0/24\njpy_max_header = 8" },
		{ 0, NULL },
	};
	const struct sub b[] = {
		{ 15, "[brski]\njpy_listen = [::1]:5685\njpy_proxies = ::1" },
		{ 0, NULL },
	};
	static const char *const bad[] = {
		"jpy_proxies = 10.0.0.0/33", "jpy_proxies = fd00::/129",
		"jpy_proxies = example.com", "jpy_proxies = 10.0.0.1/", "jpy_proxies = ,",
		"jpy_proxies = 10.0.0.1/x", "jpy_proxies = 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17",
	};
	struct estgw_config cur, next;
	struct kept_rec r = { .n = 0 };
	char err[512], line[128];

	(void)state;
	load_ok(a, &cur);
	assert_int_equal(cur.brski.njpy_proxies, 3);
	assert_int_equal(cur.brski.jpy_proxies[0].family, AF_INET);
	assert_int_equal(cur.brski.jpy_proxies[0].bits, 32);
	assert_int_equal(cur.brski.jpy_proxies[1].family, AF_INET6);
	assert_int_equal(cur.brski.jpy_proxies[1].bits, 8);
	assert_int_equal(cur.brski.jpy_proxies[1].addr[0], 0xfd);
	assert_int_equal(cur.brski.jpy_proxies[2].bits, 24);
	assert_int_equal(cur.brski.jpy_max_header, 8);
	assert_int_equal(cur.brski.jpy_mtu, 1152);
	assert_string_equal(cur.brski.jpy_listen.text, "[::1]:5685");
	estgw_config_free(&cur);
	load_pair(a, b, &cur, &next);
	assert_int_equal(estgw_config_keep_restart(&cur, &next, rec_kept, &r), 0);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.what[0], "[brski] jpy_proxies");
	assert_int_equal(next.brski.njpy_proxies, 3);
	assert_int_equal(next.brski.jpy_max_header, 8);
	estgw_config_free(&cur);
	estgw_config_free(&next);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const struct sub s[] = { { 15, line }, { 0, NULL } };

		snprintf(line, sizeof(line), "[brski]\n%s", bad[i]);
		if (load(s, &cur, err, sizeof(err)) == 0)
			fail_msg("accepted: %s", bad[i]);
		assert_non_null(strstr(err, "[brski] jpy_proxies"));
	}
}

/** Relative paths come from the config file's directory. */
static void test_relative_paths(void **state)
{
	const struct sub subs[] = {
		{ 4, "certificate = ../gw.crt" }, { 5, "private_key = ../gw.key" },
		{ 6, "client_trust = ../client-trust.crt" }, { 10, "trust = ../tls-ca.crt" },
		{ 11, "certificate = ../ra.crt" }, { 0, NULL },
	};
	struct estgw_config cfg;
	char dir[PATH_MAX], path[PATH_MAX + 32], want[PATH_MAX + 32], err[512];

	path_in_tmp(dir, sizeof(dir), "sub");
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/t.conf", dir);
	write_conf(path, subs); /* private_key = ra.key stays: not in sub/ */
	assert_int_equal(estgw_config_load(path, &cfg, err, sizeof(err)), -ENOENT);
	expect_msg(err, path, "12: [upstream] private_key", "/sub/ra.key");

	sh("cp ra.key sub/ra.key && chmod 600 sub/ra.key");
	if (estgw_config_load(path, &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	snprintf(want, sizeof(want), "%s/../gw.crt", dir);
	assert_string_equal(cfg.server.certificate, want);
	snprintf(want, sizeof(want), "%s/ra.key", dir);
	assert_string_equal(cfg.upstream.private_key, want);
	estgw_config_free(&cfg);
	sh("rm -r sub");
}

/** A config path given relative to the working directory. */
static void test_relative_config_path(void **state)
{
	struct estgw_config cfg;
	char cwd[PATH_MAX], real[PATH_MAX], want[PATH_MAX + 32], err[512];
	const struct sub subs[] = { { 11, "certificate = /dev/null/x" }, { 0, NULL } };
	int rc;

	write_conf(conf, NULL);
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_non_null(realpath(tmp, real));
	assert_int_equal(chdir(tmp), 0);
	rc = estgw_config_load("t.conf", &cfg, err, sizeof(err));
	assert_int_equal(chdir(cwd), 0);
	if (rc)
		fail_msg("%s", err);
	assert_string_equal(cfg.path, "t.conf");
	snprintf(want, sizeof(want), "%s/client-trust.crt", real);
	assert_string_equal(cfg.server.client_trust, want);
	estgw_config_free(&cfg);

	/* messages name the file as it was given */
	write_conf(conf, subs);
	assert_int_equal(chdir(tmp), 0);
	rc = estgw_config_load("./t.conf", &cfg, err, sizeof(err));
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(rc, -ENOTDIR);
	expect_msg(err, "./t.conf", "11: [upstream] certificate", "cannot stat /dev/null/x");
}

/** [log] keylog_file: off by default; relative to the config; loading
 *  creates nothing; an existing file must be its owner's alone and no
 *  symbolic link (it will hold session keys). */
static void test_keylog_file(void **state)
{
	const struct sub on[] = { { 14, "keylog_file = keys.log" }, { 0, NULL } };
	struct estgw_config cfg;
	char want[PATH_MAX + 16], err[512];
	struct stat st;

	load_ok(NULL, &cfg);
	assert_null(cfg.log.keylog_file);
	estgw_config_free(&cfg);

	sh("rm -f keys.log");
	load_ok(on, &cfg);
	path_in_tmp(want, sizeof(want), "keys.log");
	assert_string_equal(cfg.log.keylog_file, want);
	assert_int_equal(cfg.log.keylog_file_src.line, 14);
	estgw_config_free(&cfg);
	assert_int_equal(stat(want, &st), -1); /* not created */

	sh(": > keys.log && chmod 644 keys.log");
	assert_int_equal(load(on, &cfg, err, sizeof(err)), -EACCES);
	expect_msg(err, conf, "14: [log] keylog_file",
		   "keys.log is accessible to others (mode 0644)");
	sh("chmod 600 keys.log");
	load_ok(on, &cfg);
	estgw_config_free(&cfg);

	sh("rm keys.log && : > real.log && chmod 600 real.log && ln -s real.log keys.log");
	assert_int_equal(load(on, &cfg, err, sizeof(err)), -ELOOP);
	expect_msg(err, conf, "14: [log] keylog_file", "keys.log is a symbolic link");
	sh("rm keys.log real.log");
}

/** Inline comments, CRLF line ends, a byte order mark, comment lines. */
static void test_file_forms(void **state)
{
	static const char text[] =
		"\xEF\xBB\xBF; estgw\r\n"
		"# a comment\r\n"
		"[server]\r\n"
		"  ; an indented comment is fine\r\n"
		"listen=127.0.0.1:5684 ; inline comment\r\n"
		"certificate   =   gw.crt\r\n"
		"private_key = gw.key\r\n"
		"client_trust = client-trust.crt\r\n"
		"\r\n"
		"[upstream]\r\n"
		"url = https://127.0.0.1:8443/.well-known/est ; the CA\r\n"
		"trust = tls-ca.crt\r\n"
		"certificate = ra.crt\r\n"
		"private_key: ra.key\r\n"
		"[log]\r\n"
		"[server]\r\n"
		"max_body = 4096";
	struct estgw_config cfg;
	char err[512], want[PATH_MAX + 16];

	write_text(conf, text, sizeof(text) - 1);
	if (estgw_config_load(conf, &cfg, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(cfg.server.listen[0].text, "127.0.0.1:5684");
	assert_int_equal(cfg.server.listen_src[0].line, 5);
	assert_string_equal(cfg.upstream.url, "https://127.0.0.1:8443/.well-known/est");
	path_in_tmp(want, sizeof(want), "ra.key");
	assert_string_equal(cfg.upstream.private_key, want);
	assert_int_equal(cfg.upstream.private_key_src.line, 14);
	assert_int_equal(cfg.server.max_body, 4096);
	estgw_config_free(&cfg);
}

static void test_nul_byte(void **state)
{
	static const char text[] = "[server]\nlisten = 127.0.0.1:5684\0x\n";
	struct estgw_config cfg;
	char err[512];

	write_text(conf, text, sizeof(text) - 1);
	assert_int_equal(estgw_config_load(conf, &cfg, err, sizeof(err)), -EINVAL);
	expect_msg(err, conf, "2: NUL byte", "");
}

static void test_config_file_missing(void **state)
{
	struct estgw_config cfg;
	char err[512], path[PATH_MAX + 16];

	path_in_tmp(path, sizeof(path), "absent.conf");
	assert_int_equal(estgw_config_load(path, &cfg, err, sizeof(err)), -ENOENT);
	expect_msg(err, path, "0: cannot open", "No such file or directory");
	assert_null(cfg.path);
}

static void test_config_file_is_directory(void **state)
{
	struct estgw_config cfg;
	char err[512];

	assert_int_equal(estgw_config_load(tmp, &cfg, err, sizeof(err)), -EISDIR);
	expect_msg(err, tmp, "0: cannot read", "Is a directory");
}

/** Run the load with the rights of "nobody" when we are root. */
static int load_unprivileged(char *err, size_t errlen)
{
	struct estgw_config cfg;
	int fds[2], status, rc;
	pid_t pid;

	if (geteuid() != 0)
		return estgw_config_load(conf, &cfg, err, errlen);
	memset(err, 0, errlen);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(1);
		rc = estgw_config_load(conf, &cfg, err, errlen);
		if (write(fds[1], &rc, sizeof(rc)) != sizeof(rc) ||
		    write(fds[1], err, errlen) != (ssize_t)errlen)
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &rc, sizeof(rc)), sizeof(rc));
	assert_int_equal(read(fds[0], err, errlen), (ssize_t)errlen);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0); /* also: valgrind clean */
	return rc;
}

/** A file that exists but cannot be opened for reading. */
static void test_file_unreadable(void **state)
{
	const struct sub subs[] = { { 4, "certificate = secret.crt" }, { 0, NULL } };
	char err[512];
	int rc;

	sh("cp gw.crt secret.crt && chmod 000 secret.crt && chmod 711 . && chmod 644 t.conf");
	write_conf(conf, subs);
	sh("chmod 644 t.conf");
	rc = load_unprivileged(err, sizeof(err));
	sh("chmod 700 . && rm -f secret.crt");
	assert_int_equal(rc, -EACCES);
	expect_msg(err, conf, "4: [server] certificate", "cannot read");
	assert_non_null(strstr(err, "Permission denied"));
}

static void test_small_error_buffer(void **state)
{
	const struct sub subs[] = { { 2, "colour = blue" }, { 0, NULL } };
	struct estgw_config cfg;
	char err[16];

	memset(err, 'x', sizeof(err));
	assert_int_equal(load(subs, &cfg, err, sizeof(err)), -EINVAL);
	assert_int_equal(strlen(err), sizeof(err) - 1);
	assert_int_equal(load(subs, &cfg, NULL, 0), -EINVAL);
}

/** config/estgw.conf loads and shows the built-in defaults. */
static void test_example_config(void **state)
{
	const char *src = getenv("ESTGW_SOURCE_ROOT");
	struct estgw_config ex, def;
	char err[512], path[PATH_MAX + 16];

	if (!src)
		skip();
	sh("cp '%s/config/estgw.conf' estgw.conf", src);
	path_in_tmp(path, sizeof(path), "estgw.conf");
	if (estgw_config_load(path, &ex, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	load_ok(NULL, &def);
	assert_int_equal(ex.server.nlisten, 1);
	assert_string_equal(ex.server.listen[0].text, def.server.listen[0].text);
	assert_string_equal(ex.server.certificate, def.server.certificate);
	assert_string_equal(ex.server.private_key, def.server.private_key);
	assert_string_equal(ex.server.client_trust, def.server.client_trust);
	assert_null(ex.server.root);
	assert_string_equal(ex.upstream.url, def.upstream.url);
	assert_string_equal(ex.upstream.trust, def.upstream.trust);
	assert_string_equal(ex.upstream.certificate, def.upstream.certificate);
	assert_string_equal(ex.upstream.private_key, def.upstream.private_key);
	/* every number and flag as the defaults: compare the sections bytewise
	 * after the pointers, which differ */
	assert_memory_equal(&ex.server.max_body, &def.server.max_body,
			    3 * sizeof(uint32_t));
	assert_memory_equal(&ex.upstream.timeout, &def.upstream.timeout,
			    offsetof(struct estgw_config, upstream.url_src) -
				    offsetof(struct estgw_config, upstream.timeout));
	assert_memory_equal(&ex.server.max_handshakes, &def.server.max_handshakes,
			    5 * sizeof(uint32_t));
	assert_int_equal(ex.policy.pop, def.policy.pop);
	assert_int_equal(ex.policy.match_serial, def.policy.match_serial);
	assert_int_equal(ex.policy.allow_expired_idevid, def.policy.allow_expired_idevid);
	assert_null(ex.policy.idevid_trust);
	assert_null(ex.policy.ldevid_trust);
	assert_int_equal(ex.policy.idevid_ops, def.policy.idevid_ops);
	assert_int_equal(ex.policy.ldevid_ops, def.policy.ldevid_ops);
	assert_int_equal(ex.policy.other_ops, def.policy.other_ops);
	assert_int_equal(ex.log.level, def.log.level);
	estgw_config_free(&ex);
	estgw_config_free(&def);
}

/* ---- PKI checks -------------------------------------------------------- */

/** Load @p subs and run the PKI checks; the message goes to err, warn. */
static int verify(const struct sub *subs, char *err, char *warn)
{
	struct estgw_config cfg;
	int rc;

	load_ok(subs, &cfg);
	rc = estgw_config_verify_pki(&cfg, err, 512, warn, 512);
	estgw_config_free(&cfg);
	return rc;
}

struct pki_row {
	struct sub subs[MAX_SUBS];
	const char *where;
	const char *why;
};

static void test_pki_row(void **state)
{
	const struct pki_row *r = *state;
	char err[512], warn[512];

	assert_int_equal(verify(r->subs, err, warn), -EINVAL);
	expect_msg(err, conf, r->where, r->why);
	assert_null(strchr(err, '\n'));
}

#define PKI_ROW(id, s, w, y) static const struct pki_row id = { s, w, y };
PKI_ROW(server_cert_not_a_cert, S({ 4, "certificate = gw.key" }), "4: [server] certificate",
	"no certificate found")
PKI_ROW(server_chain_bad_entry, S({ 4, "certificate = gw-bad.crt" }), "4: [server] certificate",
	"1 certificate(s) in the file do not parse")
PKI_ROW(server_key_mismatch, S({ 5, "private_key = ra.key" }), "5: [server] private_key",
	"does not match the first certificate (the leaf) in")
PKI_ROW(server_chain_reversed, S({ 4, "certificate = chain-rev.crt" }), "5: [server] private_key",
	"does not match the first certificate (the leaf) in")
PKI_ROW(server_key_unparsable, S({ 5, "private_key = bad.key" }), "5: [server] private_key",
	"not a private key")
PKI_ROW(server_key_is_cert, S({ 5, "private_key = gw.crt" }), "5: [server] private_key",
	"not a private key")
PKI_ROW(client_trust_empty, S({ 6, "client_trust = empty.crt" }), "6: [server] client_trust",
	"empty.crt: no certificate found")
PKI_ROW(client_trust_junk, S({ 6, "client_trust = bad.key" }), "6: [server] client_trust",
	"no certificate found")
PKI_ROW(upstream_trust_empty, S({ 10, "trust = empty.crt" }), "10: [upstream] trust",
	"no certificate found")
PKI_ROW(ra_without_cmcra, S({ 11, "certificate = noeku.crt" }, { 12, "private_key = noeku.key" }),
	"11: [upstream] certificate", "id-kp-cmcRA (1.3.6.1.5.5.7.3.28)")
PKI_ROW(ra_any_eku_only, S({ 11, "certificate = anyeku.crt" }, { 12, "private_key = anyeku.key" }),
	"11: [upstream] certificate", "id-kp-cmcRA (1.3.6.1.5.5.7.3.28)")
PKI_ROW(ra_no_eku_at_all, S({ 11, "certificate = bare.crt" }, { 12, "private_key = bare.key" }),
	"11: [upstream] certificate", "lacks extended key usage id-kp-cmcRA")
PKI_ROW(ra_key_mismatch, S({ 12, "private_key = gw.key" }), "12: [upstream] private_key",
	"does not match the first certificate (the leaf) in")
PKI_ROW(ra_key_unparsable, S({ 12, "private_key = bad.key" }), "12: [upstream] private_key",
	"not a private key")
PKI_ROW(ra_key_encrypted, S({ 12, "private_key = enc.key" }), "12: [upstream] private_key",
	"is encrypted")

#define PKI_TEST(id) { "pki_" #id, test_pki_row, NULL, NULL, (void *)&id }

static void test_pki_valid(void **state)
{
	char err[512], warn[512];
	const struct sub chain[] = { { 4, "certificate = gw-chain.crt" }, { 0, NULL } };

	if (verify(NULL, err, warn) != 0)
		fail_msg("%s", err);
	assert_string_equal(err, "");
	assert_string_equal(warn, "");
	if (verify(chain, err, warn) != 0)
		fail_msg("%s", err);
	assert_string_equal(warn, "");
}

static void test_pki_world_readable_key(void **state)
{
	char err[512], warn[512];
	int rc;

	sh("chmod 644 gw.key");
	rc = verify(NULL, err, warn);
	sh("chmod 600 gw.key");
	if (rc != 0)
		fail_msg("%s", err);
	expect_msg(warn, conf, "5: [server] private_key", "gw.key is world-readable (mode 0644)");
	assert_null(strstr(warn, "\n"));
}

/** The RA key is refused when world-readable (G4: it vouches for POP). */
static void test_G4_pki_world_readable_ra_key_refused(void **state)
{
	char err[512], warn[512];
	int rc;

	sh("chmod 644 ra.key");
	rc = verify(NULL, err, warn);
	sh("chmod 600 ra.key");
	assert_int_equal(rc, -EACCES);
	expect_msg(err, conf, "12: [upstream] private_key",
		   "ra.key is world-readable (mode 0644); the RA key must not be");
}

static void test_pki_warnings(void **state)
{
	const struct sub subs[] = {
		{ 6, "client_trust = bundle-bad.crt" },
		{ 11, "certificate = ra-old.crt" },
		{ 0, NULL },
	};
	char err[512], warn[512];

	if (verify(subs, err, warn) != 0)
		fail_msg("%s", err);
	expect_msg(warn, conf, "6: [server] client_trust",
		   "1 certificate(s) in the bundle do not parse with mbedTLS");
	assert_non_null(strstr(warn, ":11: [upstream] certificate: "));
	assert_non_null(strstr(warn, "ra-old.crt: the first certificate has expired"));
}

/** G8 (RFC 7030 3.6.1, RFC 9148 9.2): a DTLS server certificate
 *  without id-kp-cmcRA is a warning, one line naming the key; the gateway
 *  still starts. With it (gw.crt) there is none (test_pki_valid). */
static void test_G8_server_cert_without_cmcra_warns(void **state)
{
	static const struct {
		const char *name, *why;
	} rows[] = {
		{ "srv-nocmc", "srv-nocmc.crt: the first certificate has extended key usage "
			       "without id-kp-cmcRA (1.3.6.1.5.5.7.3.28)" },
		{ "anyeku", "anyeku.crt: the first certificate has extended key usage "
			    "without id-kp-cmcRA" },
		{ "bare", "bare.crt: the first certificate has no extended key usage "
			  "extension, so no id-kp-cmcRA (1.3.6.1.5.5.7.3.28)" },
	};
	char err[512], warn[512], crt[64], key[64];

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		snprintf(crt, sizeof(crt), "certificate = %s.crt", rows[i].name);
		snprintf(key, sizeof(key), "private_key = %s.key", rows[i].name);
		const struct sub subs[] = { { 4, crt }, { 5, key }, { 0, NULL } };

		if (verify(subs, err, warn) != 0)
			fail_msg("%s", err);
		expect_msg(warn, conf, "4: [server] certificate", rows[i].why);
		assert_non_null(strstr(warn, "Implicit TA database"));
		assert_null(strchr(warn, '\n'));
	}
}

static void test_pki_null_buffers(void **state)
{
	const struct sub subs[] = { { 12, "private_key = gw.key" }, { 0, NULL } };
	struct estgw_config cfg;

	load_ok(subs, &cfg);
	assert_int_equal(estgw_config_verify_pki(&cfg, NULL, 0, NULL, 0), -EINVAL);
	estgw_config_free(&cfg);
}

static void read_der(const char *name, unsigned char *buf, size_t *len)
{
	char path[PATH_MAX + 16];
	FILE *f;

	path_in_tmp(path, sizeof(path), name);
	f = fopen(path, "rb");
	assert_non_null(f);
	*len = fread(buf, 1, *len, f);
	fclose(f);
	assert_true(*len > 0);
}

static void test_has_cmcra(void **state)
{
	static const struct {
		const char *file;
		int want;
	} rows[] = {
		{ "ra.der", 1 }, { "noeku.der", 0 }, { "anyeku.der", 0 }, { "gw.der", 1 },
		{ "bare.der", 0 }, { "srv-nocmc.der", 0 },
	};
	unsigned char der[4096];
	size_t len;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		len = sizeof(der);
		read_der(rows[i].file, der, &len);
		assert_int_equal(estgw_pki_cert_has_cmcra(der, len), rows[i].want);
	}
	len = sizeof(der);
	read_der("ra.der", der, &len);
	assert_int_equal(estgw_pki_cert_has_cmcra(der, len - 1), -EINVAL);
	assert_int_equal(estgw_pki_cert_has_cmcra((const unsigned char *)"\x30\x00", 2), -EINVAL);
}

/* ---- group set-up ------------------------------------------------------ */

static int make_pki(void **state)
{
	char *dir;

	snprintf(tmp, sizeof(tmp), "%s/estgw-config-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	dir = mkdtemp(tmp);
	if (!dir)
		return -1;
	path_in_tmp(conf, sizeof(conf), "t.conf");
	make_cert("gw", "extendedKeyUsage=serverAuth,1.3.6.1.5.5.7.3.28");
	make_cert("bare", NULL); /* no extended key usage extension */
	make_cert("srv-nocmc", "extendedKeyUsage=serverAuth");
	make_cert("client-trust", NULL);
	make_cert("tls-ca", NULL);
	make_cert("ra", "extendedKeyUsage=1.3.6.1.5.5.7.3.28,clientAuth");
	make_cert("noeku", "extendedKeyUsage=clientAuth");
	make_cert("anyeku", "extendedKeyUsage=anyExtendedKeyUsage");
	sh("%s x509 -in ra.crt -key ra.key -days -1 -out ra-old.crt", openssl());
	sh("%s pkey -in ra.key -aes256 -passout pass:x -out enc.key", openssl());
	sh("cat gw.crt client-trust.crt > gw-chain.crt && cat client-trust.crt gw.crt > chain-rev.crt");
	sh("printf -- '-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n' > junk.pem");
	sh("cat gw.crt junk.pem > gw-bad.crt && cat tls-ca.crt junk.pem > bundle-bad.crt");
	sh("printf -- '-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n' > bad.key");
	sh(": > empty.crt && chmod 600 *.key");
	return 0;
}

static int remove_pki(void **state)
{
	char cmd[PATH_MAX + 16];

	if (!tmp[0] || !strstr(tmp, "estgw-config-"))
		return 0;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		ERR_TEST(unknown_section), ERR_TEST(unknown_section_spaces),
		ERR_TEST(unknown_key), ERR_TEST(key_in_wrong_section),
		ERR_TEST(key_before_section), ERR_TEST(duplicate_key),
		ERR_TEST(duplicate_number), ERR_TEST(duplicate_level),
		ERR_TEST(missing_listen), ERR_TEST(missing_certificate),
		ERR_TEST(missing_client_trust), ERR_TEST(missing_url),
		ERR_TEST(missing_trust), ERR_TEST(missing_ra_certificate),
		ERR_TEST(missing_ra_key), ERR_TEST(too_many_listen),
		ERR_TEST(listen_repeated_address), ERR_TEST(listen_no_port),
		ERR_TEST(listen_port_0), ERR_TEST(listen_port_65536),
		ERR_TEST(listen_port_empty), ERR_TEST(listen_port_sign),
		ERR_TEST(listen_port_junk), ERR_TEST(listen_port_long),
		ERR_TEST(listen_no_host), ERR_TEST(listen_bad_v4),
		ERR_TEST(listen_bad_name), ERR_TEST(listen_v6_unbracketed),
		ERR_TEST(listen_v6_no_colon), ERR_TEST(listen_v6_unclosed),
		ERR_TEST(listen_v6_empty), ERR_TEST(listen_v6_is_v4),
		ERR_TEST(listen_v6_port_0), ERR_TEST(listen_host_name),
		ERR_TEST(listen_dns_name), ERR_TEST(listen_garbage),
		ERR_TEST(listen_garbage_host), ERR_TEST(listen_two_ports),
		ERR_TEST(listen_v4_short), ERR_TEST(listen_v4_leading_zero),
		ERR_TEST(listen_empty), ERR_TEST(listen_same_address_other_spelling),
		ERR_TEST(listen_v6_port_65536), ERR_TEST(listen_v6_no_port),
		ERR_TEST(listen_v6_port_empty), ERR_TEST(listen_v6_double_close),
		ERR_TEST(listen_v6_bad), ERR_TEST(listen_v6_scope),
		ERR_TEST(listen_v6_close_only), ERR_TEST(listen_v6_long),
		ERR_TEST(metrics_listen_host_name), ERR_TEST(metrics_listen_no_port),
		ERR_TEST(metrics_listen_port_0), ERR_TEST(number_suffix),
		ERR_TEST(number_negative), ERR_TEST(number_empty),
		ERR_TEST(number_overflow), ERR_TEST(number_below),
		ERR_TEST(number_above), ERR_TEST(number_zero),
		ERR_TEST(number_timeout), ERR_TEST(bad_bool), ERR_TEST(bad_bool_2),
		ERR_TEST(bad_level), ERR_TEST(F_bad_serverkeygen),
		ERR_TEST(F_empty_serverkeygen), ERR_TEST(root_relative),
		ERR_TEST(root_trailing_slash), ERR_TEST(root_double_slash),
		ERR_TEST(root_slash), ERR_TEST(root_query), ERR_TEST(root_fragment),
		ERR_TEST(root_dotdot), ERR_TEST(root_space), ERR_TEST(root_well_known),
		ERR_TEST(root_empty), ERR_TEST(url_http), ERR_TEST(url_no_scheme),
		ERR_TEST(url_no_host), ERR_TEST(url_query),
		ERR_TEST(connect_over_timeout), ERR_TEST(timeout_under_connect),
		ERR_TEST(G4_bad_pop), ERR_TEST(G2_bad_ops), ERR_TEST(G2_empty_ops),
		ERR_TEST(G3_expired_without_idevid_trust),
		ERR_TEST(G2_idevid_trust_missing_file),
		ERR_TEST(E4_reasm_per_session_above), ERR_TEST(E4_reasm_total_zero),
		ERR_TEST(max_age_min_over_max), ERR_TEST(file_missing),
		ERR_TEST(file_missing_abs), ERR_TEST(file_is_directory),
		ERR_TEST(file_not_regular), ERR_TEST(file_empty_value),
		ERR_TEST(keylog_dir_missing), ERR_TEST(keylog_not_regular),
		ERR_TEST(keylog_empty_value),
		ERR_TEST(syntax_no_equals), ERR_TEST(syntax_unclosed_section),
		ERR_TEST(syntax_before_other_error), ERR_TEST(other_error_before_syntax),
		ERR_TEST(indented_line), ERR_TEST(line_too_long),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key_set),
		cmocka_unit_test(test_G_policy_defaults),
		cmocka_unit_test(test_G_policy_every_key),
		cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_log_levels),
		cmocka_unit_test(test_F_serverkeygen_modes),
		cmocka_unit_test(test_listen_forms),
		cmocka_unit_test(test_reload_keeps_restart_keys),
		cmocka_unit_test(test_reload_keeps_every_kind),
		cmocka_unit_test(test_H6_jpy_proxies),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_relative_config_path),
		cmocka_unit_test(test_keylog_file),
		cmocka_unit_test(test_file_forms),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_config_file_missing),
		cmocka_unit_test(test_config_file_is_directory),
		cmocka_unit_test(test_file_unreadable),
		cmocka_unit_test(test_small_error_buffer),
		cmocka_unit_test(test_example_config),
		PKI_TEST(server_cert_not_a_cert), PKI_TEST(server_chain_bad_entry),
		PKI_TEST(server_key_mismatch), PKI_TEST(server_chain_reversed),
		PKI_TEST(server_key_unparsable), PKI_TEST(server_key_is_cert),
		PKI_TEST(client_trust_empty), PKI_TEST(client_trust_junk),
		PKI_TEST(upstream_trust_empty), PKI_TEST(ra_without_cmcra),
		PKI_TEST(ra_any_eku_only), PKI_TEST(ra_no_eku_at_all),
		PKI_TEST(ra_key_mismatch), PKI_TEST(ra_key_unparsable),
		PKI_TEST(ra_key_encrypted),
		cmocka_unit_test(test_pki_valid),
		cmocka_unit_test(test_pki_world_readable_key),
		cmocka_unit_test(test_G4_pki_world_readable_ra_key_refused),
		cmocka_unit_test(test_pki_warnings),
		cmocka_unit_test(test_G8_server_cert_without_cmcra_warns),
		cmocka_unit_test(test_pki_null_buffers),
		cmocka_unit_test(test_has_cmcra),
	};

	return cmocka_run_group_tests_name("config", tests, make_pki, remove_pki);
}
