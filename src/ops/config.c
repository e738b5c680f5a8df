/* config.c - estgw's configuration: INI file -> struct estgw_config.
 *
 * Owns: the key schema (one table row per key: section, name, setter,
 * default, bounds, offsets, applied on reload or only at a restart), parsing
 * with libinih, value checks, listen addresses parsed into socket addresses
 * (the only parser of them), resolving relative paths against the file's
 * directory, the file checks that need no crypto (the file exists, is a
 * regular file, can be opened for reading; for the key log: can be appended
 * to or created, and only by its owner), and on reload the walk that keeps
 * the running value of every restart-only key.
 * Must not: parse certificates (pki.c does), open sockets, resolve names, or
 * log: the caller logs the one error line this file writes.
 *
 * Lines are read by our own reader (read_line), so we know the physical line
 * number of every key, can name a [section] line, and can refuse indented
 * lines (libinih would silently glue them to the previous value) and lines
 * longer than libinih's buffer (it would split or drop them).
 */
#include "estgw/config.h"
#include "estgw/rfc8295.h"
#include "estgw/translate.h"
#include "estgw/voucher.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define NO_SRC SIZE_MAX

enum key_flags {
	K_REQUIRED = 1, /* the file must set it */
	K_MULTI = 2,    /* may repeat (listen) */
};

/** When a new value takes effect (the last column of the schema). */
enum key_apply {
	LIVE,    /* on SIGHUP: what reads it is given the new config */
	RESTART, /* only at start-up: a reload names it and keeps the old value */
};

struct load;
struct cfg_key;

/** Checks @p val and stores it; on error calls fail() and returns its rc. */
typedef int (*cfg_setter)(struct load *ld, const struct cfg_key *k,
			  const char *val, unsigned line);

/** One configuration key: a row of the schema (Knot DNS style). */
struct cfg_key {
	const char *section;
	const char *name;
	cfg_setter set;
	const char *def;   /**< default, spelled as in the file; NULL: none */
	uint32_t min, max; /**< bounds of numbers */
	size_t off;        /**< the value inside struct estgw_config */
	size_t src;        /**< its struct estgw_cfg_src, or NO_SRC */
	unsigned flags;    /**< enum key_flags */
	enum key_apply apply;
};

static int set_listen(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_file(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_outfile(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_root(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_url(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_u32(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_bool(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_level(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_pop(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_ops(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_bool_src(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_skg(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_masa_url(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_manufacturer(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_format(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_addr(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_redis(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_name(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_prefixes(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_x_enable(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_x_cf(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_x_enc(struct load *, const struct cfg_key *, const char *, unsigned);
static int set_x_authority(struct load *, const struct cfg_key *, const char *, unsigned);

#define SRV(f) offsetof(struct estgw_config, server.f)
#define UP(f) offsetof(struct estgw_config, upstream.f)
#define LG(f) offsetof(struct estgw_config, log.f)
#define POL(f) offsetof(struct estgw_config, policy.f)
#define ALL_OPS "crts att sen sren skg skc"
#define BR(f) offsetof(struct estgw_config, brski.f)
#define MT(f) offsetof(struct estgw_config, metrics.f)
#define CL(f) offsetof(struct estgw_config, cluster.f)
#define X8(f) offsetof(struct estgw_config, rfc8295.f)
#define REQ K_REQUIRED
#define MULTI K_MULTI

/* Columns as in struct cfg_key; the last one says whether a reload applies
 * the key (LIVE: what reads it gets the new config in coap_server_reload,
 * upstream_reload, proxy_reload or main.c) or only a restart (RESTART: the
 * sockets, and [brski], whose state is made once from the start-up config).
 * Keep docs/configuration.md, docs/man/estgw.conf.5 and config/estgw.conf in
 * step with this table (tests/unit/test_config_docs.c checks them). */
static const struct cfg_key schema[] = {
	{ "server",   "listen",          set_listen, NULL,      0,    0,          SRV(listen),         NO_SRC,                REQ | MULTI, RESTART },
	{ "server",   "certificate",     set_file,   NULL,      0,    0,          SRV(certificate),    SRV(certificate_src),  REQ, LIVE },
	{ "server",   "private_key",     set_file,   NULL,      0,    0,          SRV(private_key),    SRV(private_key_src),  REQ, LIVE },
	{ "server",   "client_trust",    set_file,   NULL,      0,    0,          SRV(client_trust),   SRV(client_trust_src), REQ, LIVE },
	{ "server",   "root",            set_root,   NULL,      0,    0,          SRV(root),           SRV(root_src),         0, LIVE },
	{ "server",   "max_body",        set_u32,    "16384",   1024, 1048576,    SRV(max_body),       NO_SRC,                0, LIVE },
	{ "server",   "idle_timeout",    set_u32,    "300",     1,    86400,      SRV(idle_timeout),   NO_SRC,                0, LIVE },
	{ "server",   "max_sessions",    set_u32,    "1000",    1,    1000000,    SRV(max_sessions),   NO_SRC,                0, LIVE },
	{ "server",   "trim_handshake_buffers", set_bool, "yes", 0,   0,          SRV(trim_handshake_buffers), NO_SRC,        0, RESTART },
	{ "server",   "max_handshakes",  set_u32,    "100",     1,    100000,     SRV(max_handshakes), NO_SRC,                0, LIVE },
	{ "server",   "reasm_per_session", set_u32,  "4",       1,    64,         SRV(reasm_per_session), NO_SRC,             0, LIVE },
	{ "server",   "reasm_total",     set_u32,    "256",     1,    100000,     SRV(reasm_total),    NO_SRC,                0, LIVE },
	{ "server",   "reasm_total_bytes", set_u32,  "67108864", 1024, 1073741824, SRV(reasm_total_bytes), NO_SRC,            0, LIVE },
	{ "server",   "rate_limit",      set_u32,    "600",     0,    1000000,    SRV(rate_limit),     NO_SRC,                0, LIVE },
	{ "server",   "serverkeygen",    set_skg,    "upstream", 0,   0,          SRV(serverkeygen),   NO_SRC,                0, LIVE },
	{ "server",   "shutdown_grace",  set_u32,    "10",      0,    3600,       SRV(shutdown_grace), NO_SRC,                0, LIVE },
	{ "upstream", "url",             set_url,    NULL,      0,    0,          UP(url),             UP(url_src),           REQ, LIVE },
	{ "upstream", "trust",           set_file,   NULL,      0,    0,          UP(trust),           UP(trust_src),         REQ, LIVE },
	{ "upstream", "certificate",     set_file,   NULL,      0,    0,          UP(certificate),     UP(certificate_src),   REQ, LIVE },
	{ "upstream", "private_key",     set_file,   NULL,      0,    0,          UP(private_key),     UP(private_key_src),   REQ, LIVE },
	{ "upstream", "timeout",         set_u32,    "30",      1,    3600,       UP(timeout),         NO_SRC,                0, LIVE },
	{ "upstream", "connect_timeout", set_u32,    "10",      1,    3600,       UP(connect_timeout), NO_SRC,                0, LIVE },
	{ "upstream", "answer_within",   set_u32,    "5",       1,    3600,       UP(answer_within),   NO_SRC,                0, LIVE },
	{ "upstream", "max_response",    set_u32,    "1048576", 1024, 67108864,   UP(max_response),    NO_SRC,                0, LIVE },
	{ "upstream", "crts_refresh",    set_u32,    "300",     1,    604800,     UP(crts_refresh),    NO_SRC,                0, LIVE },
	{ "upstream", "retry_default",   set_u32,    "60",      0,    UINT32_MAX, UP(retry_default),   NO_SRC,                0, LIVE },
	{ "upstream", "max_age_min",     set_u32,    "1",       0,    UINT32_MAX, UP(max_age_min),     NO_SRC,                0, LIVE },
	{ "upstream", "max_age_max",     set_u32,    "86400",   0,    UINT32_MAX, UP(max_age_max),     NO_SRC,                0, LIVE },
	{ "upstream", "send_cte",        set_bool,   "yes",     0,    0,          UP(send_cte),        NO_SRC,                0, LIVE },
	{ "upstream", "max_concurrent",  set_u32,    "32",      1,    4096,       UP(max_concurrent),  NO_SRC,                0, LIVE },
	{ "upstream", "queue",           set_u32,    "256",     0,    65536,      UP(queue),           NO_SRC,                0, LIVE },
	{ "upstream", "keep_issued",     set_u32,    "600",     0,    86400,      UP(keep_issued),     NO_SRC,                0, LIVE },
	{ "upstream", "max_kept",        set_u32,    "1024",    1,    1048576,    UP(max_kept),        NO_SRC,                0, LIVE },
	{ "policy",   "pop",             set_pop,    "if-present", 0, 0,          POL(pop),            NO_SRC,                0, LIVE },
	{ "policy",   "match_serial",    set_bool,   "no",      0,    0,          POL(match_serial),   NO_SRC,                0, LIVE },
	{ "policy",   "allow_expired_idevid", set_bool_src, "no", 0,  0,          POL(allow_expired_idevid), POL(allow_expired_idevid_src), 0, LIVE },
	{ "policy",   "idevid_trust",    set_file,   NULL,      0,    0,          POL(idevid_trust),   POL(idevid_trust_src), 0, LIVE },
	{ "policy",   "ldevid_trust",    set_file,   NULL,      0,    0,          POL(ldevid_trust),   POL(ldevid_trust_src), 0, LIVE },
	{ "policy",   "idevid_ops",      set_ops,    "crts att sen skg skc", 0, 0, POL(idevid_ops),    NO_SRC,                0, LIVE },
	{ "policy",   "ldevid_ops",      set_ops,    ALL_OPS,   0,    0,          POL(ldevid_ops),     NO_SRC,                0, LIVE },
	{ "policy",   "other_ops",       set_ops,    ALL_OPS,   0,    0,          POL(other_ops),      NO_SRC,                0, LIVE },
	{ "log",      "level",           set_level,  "info",    0,    0,          LG(level),           NO_SRC,                0, LIVE },
	{ "brski",    "enabled",         set_bool,   "no",      0,    0,          BR(enabled),         BR(enabled_src),       0, RESTART },
	{ "brski",    "manufacturer_trust", set_file, NULL,     0,    0,          BR(manufacturer_trust), BR(manufacturer_trust_src), 0, RESTART },
	{ "brski",    "masa_trust",      set_file,   NULL,      0,    0,          BR(masa_trust),      BR(masa_trust_src),    0, RESTART },
	{ "brski",    "masa_url",        set_masa_url, NULL,    0,    0,          BR(masa_url),        BR(masa_url_src),      0, RESTART },
	{ "brski",    "masa_certificate", set_file,  NULL,      0,    0,          BR(masa_certificate), BR(masa_certificate_src), 0, RESTART },
	{ "brski",    "masa_private_key", set_file,  NULL,      0,    0,          BR(masa_private_key), BR(masa_private_key_src), 0, RESTART },
	{ "brski",    "masa_timeout",    set_u32,    "30",      1,    3600,       BR(masa_timeout),    NO_SRC,                0, RESTART },
	{ "brski",    "max_pending",     set_u32,    "64",      1,    4096,       BR(max_pending),     NO_SRC,                0, RESTART },
	{ "brski",    "legacy_media_type", set_bool, "no",      0,    0,          BR(legacy_media_type), NO_SRC,              0, RESTART },
	{ "brski",    "manufacturer",    set_manufacturer, NULL, 0,   0,          BR(mfr),             NO_SRC,                MULTI, RESTART },
	{ "brski",    "jpy_listen",      set_addr,   NULL,      0,    0,          BR(jpy_listen),      BR(jpy_listen_src),    0, RESTART },
	{ "brski",    "jpy_proxies",     set_prefixes, NULL,    0,    0,          BR(jpy_proxies),     NO_SRC,                0, RESTART },
	{ "brski",    "jpy_max_sessions", set_u32,   "256",     1,    65536,      BR(jpy_max_sessions), NO_SRC,               0, RESTART },
	{ "brski",    "jpy_sessions_per_proxy", set_u32, "64",  1,    65536,      BR(jpy_sessions_per_proxy), NO_SRC,         0, RESTART },
	{ "brski",    "jpy_max_header",  set_u32,    "32",      1,    255,        BR(jpy_max_header),  NO_SRC,                0, RESTART },
	{ "brski",    "jpy_idle_timeout", set_u32,   "360",     1,    86400,      BR(jpy_idle_timeout), NO_SRC,               0, RESTART },
	{ "brski",    "jpy_mtu",         set_u32,    "1152",    576,  65507,      BR(jpy_mtu),         NO_SRC,                0, RESTART },
	{ "log",      "format",          set_format, "text",    0,    0,          LG(format),          NO_SRC,                0, LIVE },
	{ "log",      "keylog_file",     set_outfile, NULL,     0,    0,          LG(keylog_file),     LG(keylog_file_src),   0, RESTART },
	{ "metrics",  "listen",          set_addr,   NULL,      0,    0,          MT(listen),          MT(listen_src),        0, RESTART },
	{ "metrics",  "crts_max_age",    set_u32,    "900",     1,    2592000,    MT(crts_max_age),    NO_SRC,                0, LIVE },
	{ "cluster",  "redis",           set_redis,  NULL,      0,    0,          CL(redis),           CL(redis_src),         0, RESTART },
	{ "cluster",  "password_file",   set_file,   NULL,      0,    0,          CL(password_file),   NO_SRC,                0, RESTART },
	{ "cluster",  "tls",             set_bool_src, "no",    0,    0,          CL(tls),             CL(tls_src),           0, RESTART },
	{ "cluster",  "node",            set_name,   NULL,      0,    0,          CL(node),            NO_SRC,                0, RESTART },
	{ "cluster",  "seal_key",        set_file,   NULL,      0,    0,          CL(seal_key),        NO_SRC,                0, RESTART },
	{ "cluster",  "prefix",          set_name,   "estgw:",  0,    0,          CL(prefix),          NO_SRC,                0, RESTART },
	{ "cluster",  "claim_ttl",       set_u32,    "10",      2,    3600,       CL(claim_ttl),       NO_SRC,                0, RESTART },
	{ "cluster",  "store_timeout",   set_u32,    "200",     10,   5000,       CL(store_timeout),   NO_SRC,                0, RESTART },
	{ "cluster",  "stream_max",      set_u32,    "100000",  100,  100000000,  CL(stream_max),      NO_SRC,                0, RESTART },
	/* RFC 8295 extensions (I1-I3, docs/rfc8295.md) */
	{ "rfc8295",  "enable",          set_x_enable, "none",  0,    0,          X8(enable),          NO_SRC,                0, LIVE },
	{ "rfc8295",  "cf",              set_x_cf,   "default", 0,    0,          X8(cf),              NO_SRC,                0, LIVE },
	{ "rfc8295",  "pal_rewrite",     set_bool,   "yes",     0,    0,          X8(pal_rewrite),     NO_SRC,                0, LIVE },
	{ "rfc8295",  "pal_authority",   set_x_authority, NULL, 0,    0,          X8(pal_authority),   NO_SRC,                0, LIVE },
	{ "rfc8295",  "cms_post_encoding", set_x_enc, "base64", 0,    0,          X8(post_binary),     NO_SRC,                0, LIVE },
	{ "rfc8295",  "max_pal",         set_u32,    "65536",   1024, 16777216,   X8(max_pal),         NO_SRC,                0, LIVE },
	{ "rfc8295",  "max_eecerts",     set_u32,    "65536",   1024, 16777216,   X8(max_eecerts),     NO_SRC,                0, LIVE },
	{ "rfc8295",  "max_crls",        set_u32,    "1048576", 1024, 67108864,   X8(max_crls),        NO_SRC,                0, LIVE },
	{ "rfc8295",  "max_symmetrickeys", set_u32,  "65536",   1024, 16777216,   X8(max_symmetrickeys), NO_SRC,              0, LIVE },
	{ "rfc8295",  "max_firmware",    set_u32,    "8388608", 1024, 67108864,   X8(max_firmware),    NO_SRC,                0, LIVE },
	{ "rfc8295",  "max_tamp",        set_u32,    "65536",   1024, 16777216,   X8(max_tamp),        NO_SRC,                0, LIVE },
	{ "rfc8295",  "max_return",      set_u32,    "65536",   1024, 1048576,    X8(max_return),      NO_SRC,                0, LIVE },
	{ "rfc8295",  "max_serverkeygen", set_u32,   "65536",   1024, 1048576,    X8(max_serverkeygen), NO_SRC,               0, LIVE },
	{ "rfc8295",  "keep",            set_u32,    "60",      1,    86400,      X8(keep),            NO_SRC,                0, LIVE },
	{ "rfc8295",  "keep_total_bytes", set_u32,   "33554432", 1048576, 1073741824, X8(keep_total_bytes), NO_SRC,           0, LIVE },
	{ "rfc8295",  "separate_max",    set_u32,    "64",      16,   67108864,   X8(separate_max),    NO_SRC,                0, LIVE },
};

#define N_KEYS ARRAY_SIZE(schema)
_Static_assert(N_KEYS <= ESTGW_CFG_MAX_KEYS, "raise ESTGW_CFG_MAX_KEYS");

/** Pairs of keys in one section where the first must not exceed the second. */
static const struct {
	const char *section, *small, *big;
} relations[] = {
	{ "upstream", "connect_timeout", "timeout" },
	{ "upstream", "max_age_min", "max_age_max" },
};

static const char *const sections[] = { "server", "upstream", "policy", "log", "brski", "metrics",
					"cluster", "rfc8295" };

/** State of one estgw_config_load() call. */
struct load {
	struct estgw_config *cfg;
	const char *file;     /**< the path as given, for messages */
	char *dir;            /**< absolute directory of the file */
	FILE *fp;
	char *buf;            /**< getline() buffer */
	size_t bufsz;
	unsigned line;        /**< physical line the reader is on */
	int read_errno;       /**< errno of a failed read, 0: none */
	unsigned seen[N_KEYS]; /**< line where each key was first set, 0: not */
	int rc;               /**< first error (negative errno), 0: none */
	unsigned err_line;
	char *err;
	size_t errlen;
};

/* ---- errors ------------------------------------------------------------ */

/** Record the first error as "file:line: [section] key: reason" and return
 *  the first error's rc (this one's unless an earlier line already failed).
 *  @p section NULL: no "[...]" part; @p key NULL: no key part. */
__attribute__((format(printf, 6, 7)))
static int fail(struct load *ld, unsigned line, const char *section,
		const char *key, int rc, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (ld->rc)
		return ld->rc;
	ld->rc = rc;
	ld->err_line = line;
	if (!ld->err || !ld->errlen)
		return rc;
	if (section && key)
		n = snprintf(ld->err, ld->errlen, "%s:%u: [%s] %s: ", ld->file, line, section, key);
	else if (section)
		n = snprintf(ld->err, ld->errlen, "%s:%u: [%s]: ", ld->file, line, section);
	else
		n = snprintf(ld->err, ld->errlen, "%s:%u: ", ld->file, line);
	if (n < 0 || (size_t)n >= ld->errlen)
		return rc;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return rc;
}

/** fail() for a schema key. */
#define fail_key(ld, k, line, rc, ...) \
	fail(ld, line, (k)->section, (k)->name, rc, __VA_ARGS__)

static void *field(struct load *ld, size_t off)
{
	return (char *)ld->cfg + off;
}

static void set_src(struct load *ld, const struct cfg_key *k, unsigned line)
{
	if (k->src != NO_SRC)
		((struct estgw_cfg_src *)field(ld, k->src))->line = line;
}

/** Replace the string at @p k's offset with @p val (copied @p len bytes). */
static int store_str(struct load *ld, const struct cfg_key *k, const char *val,
		     size_t len, unsigned line)
{
	char **slot = field(ld, k->off);
	char *copy = strndup(val, len);

	if (!copy)
		return fail_key(ld, k, line, -ENOMEM, "out of memory");
	free(*slot);
	*slot = copy;
	set_src(ld, k, line);
	return 0;
}

/* ---- listen addresses -------------------------------------------------- */

/* "IPv4:port" or "[IPv6]:port" into a socket address, here and only here:
 * coap_server.c and metrics_http.c bind what this made. A host name is
 * refused rather than resolved: a reload reads the file on the event loop,
 * where a getaddrinfo() could wait for DNS, a name may stand for several
 * addresses (only one could be bound), and a numeric address means --check
 * and start-up cannot disagree. */

static int parse_port(const char *s)
{
	unsigned long v = 0;

	if (!*s || strlen(s) > 5)
		return -1;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	return v >= 1 && v <= 65535 ? (int)v : -1;
}

/** Host part without brackets: an IPv4 address. */
static const char *v4_host(const char *h, size_t len, struct sockaddr_in *sin)
{
	char ip[INET_ADDRSTRLEN];

	if (len == 0)
		return "the host is empty";
	if (strspn(h, "0123456789.") < len) {
		for (size_t i = 0; i < len; i++)
			if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.')
				return "not an IP address";
		return "a host name; names are not resolved: write an IP address "
		       "(127.0.0.1:5684, [::1]:5684, [::]:5684)";
	}
	if (len >= sizeof(ip))
		return "not an IPv4 address";
	memcpy(ip, h, len);
	ip[len] = '\0';
	if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1)
		return "not an IPv4 address";
	sin->sin_family = AF_INET;
	return NULL;
}

/** "[v6]:port": the address, and where the port starts. */
static const char *v6_host(const char *v, const char **port, struct sockaddr_in6 *sin6)
{
	char ip[INET6_ADDRSTRLEN];
	const char *close = strchr(v, ']');
	size_t len;

	if (!close || close[1] != ':')
		return "expected [IPv6-address]:port";
	len = (size_t)(close - v - 1);
	if (len == 0 || len >= sizeof(ip))
		return "not an IPv6 address between [ and ]";
	memcpy(ip, v + 1, len);
	ip[len] = '\0';
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) != 1)
		return "not an IPv6 address between [ and ]";
	sin6->sin6_family = AF_INET6;
	*port = close + 2;
	return NULL;
}

/** "::1:5684": the host part, or all of @p v, is an IPv6 address. */
static int v6_unbracketed(const char *v, size_t hostlen)
{
	char ip[INET6_ADDRSTRLEN];
	struct in6_addr a;
	size_t len = strlen(v);

	if (hostlen < sizeof(ip)) {
		memcpy(ip, v, hostlen);
		ip[hostlen] = '\0';
		if (inet_pton(AF_INET6, ip, &a) == 1)
			return 1;
	}
	return len < sizeof(ip) && inet_pton(AF_INET6, v, &a) == 1;
}

/** @p v into @p a (zeroed first); NULL, or the reason it is not an address. */
static const char *parse_addr(const char *v, struct estgw_addr *a)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
	const char *port, *colon, *why;
	int p = 0;

	memset(a, 0, sizeof(*a));
	if (v[0] == '[') {
		why = v6_host(v, &port, sin6);
	} else {
		colon = strrchr(v, ':');
		if (!colon)
			return "expected IPv4-address:port or [IPv6-address]:port";
		if (memchr(v, ':', (size_t)(colon - v)))
			return v6_unbracketed(v, (size_t)(colon - v)) ?
				       "an IPv6 address needs brackets: [address]:port" :
				       "expected IPv4-address:port or [IPv6-address]:port";
		why = v4_host(v, (size_t)(colon - v), sin);
		port = colon + 1;
	}
	if (!why && (p = parse_port(port)) < 0)
		why = "the port must be a number from 1 to 65535";
	if (!why && strlen(v) >= sizeof(a->text))
		why = "too long"; /* cannot happen: the longest form has 53 characters */
	if (why) {
		memset(a, 0, sizeof(*a));
		return why;
	}
	if (a->sa.ss_family == AF_INET6) {
		sin6->sin6_port = htons((uint16_t)p);
		a->salen = sizeof(*sin6);
	} else {
		sin->sin_port = htons((uint16_t)p);
		a->salen = sizeof(*sin);
	}
	strcpy(a->text, v);
	return NULL;
}

static int addr_equal(const struct estgw_addr *a, const struct estgw_addr *b)
{
	return a->salen == b->salen && memcmp(&a->sa, &b->sa, a->salen) == 0;
}

/** [server] listen: one more address (the key repeats). */
static int set_listen(struct load *ld, const struct cfg_key *k, const char *val,
		      unsigned line)
{
	struct estgw_config *cfg = ld->cfg;
	size_t n = cfg->server.nlisten;
	struct estgw_addr a;
	const char *why = parse_addr(val, &a);

	if (why)
		return fail_key(ld, k, line, -EINVAL, "bad address '%s': %s", val, why);
	for (size_t i = 0; i < n; i++)
		if (addr_equal(&cfg->server.listen[i], &a))
			return fail_key(ld, k, line, -EINVAL, "'%s' is already listed on line %u",
					val, cfg->server.listen_src[i].line);
	if (n >= ESTGW_MAX_LISTEN)
		return fail_key(ld, k, line, -E2BIG, "too many listen addresses (at most %d)",
				ESTGW_MAX_LISTEN);
	cfg->server.listen[n] = a;
	cfg->server.listen_src[n].line = line;
	cfg->server.nlisten = n + 1;
	return 0;
}

/** One address (the metrics listener): same forms as [server] listen. */
static int set_addr(struct load *ld, const struct cfg_key *k, const char *val,
		    unsigned line)
{
	const char *why = parse_addr(val, field(ld, k->off));

	if (why)
		return fail_key(ld, k, line, -EINVAL, "bad address '%s': %s", val, why);
	set_src(ld, k, line);
	return 0;
}

/* ---- [brski] jpy_proxies (H6) ------------------------------------------ */

/** One "address" or "address/bits" into @p p; NULL or the reason. */
static const char *parse_prefix(const char *v, size_t len, struct estgw_prefix *p)
{
	char ip[INET6_ADDRSTRLEN + 8];
	const char *slash = memchr(v, '/', len);
	size_t alen = slash ? (size_t)(slash - v) : len;
	unsigned long bits;
	char *end;

	memset(p, 0, sizeof(*p));
	if (alen == 0 || alen >= INET6_ADDRSTRLEN)
		return "not an IPv4 or IPv6 address";
	memcpy(ip, v, alen);
	ip[alen] = '\0';
	if (inet_pton(AF_INET, ip, p->addr) == 1)
		p->family = AF_INET;
	else if (inet_pton(AF_INET6, ip, p->addr) == 1)
		p->family = AF_INET6;
	else
		return "not an IPv4 or IPv6 address";
	p->bits = p->family == AF_INET ? 32 : 128;
	if (!slash)
		return NULL;
	if (len - alen < 2 || len - alen > 4)
		return "the prefix length must be a number after '/'";
	memcpy(ip, slash + 1, len - alen - 1);
	ip[len - alen - 1] = '\0';
	bits = strtoul(ip, &end, 10);
	if (*end || ip[0] < '0' || ip[0] > '9' || bits > p->bits)
		return p->family == AF_INET ? "the prefix length must be 0 to 32" :
					      "the prefix length must be 0 to 128";
	p->bits = (unsigned)bits;
	return NULL;
}

/** [brski] jpy_proxies: addresses or prefixes, separated by spaces or
 *  commas; the join proxies whose JPY messages are taken (H6). */
static int set_prefixes(struct load *ld, const struct cfg_key *k, const char *val,
			unsigned line)
{
	struct estgw_config *cfg = ld->cfg;
	const char *v = val;
	size_t n = 0;

	while (*(v += strspn(v, " \t,"))) {
		size_t len = strcspn(v, " \t,");
		const char *why;

		if (n >= ESTGW_MAX_JPY_PROXIES)
			return fail_key(ld, k, line, -E2BIG, "too many entries (at most %d)",
					ESTGW_MAX_JPY_PROXIES);
		why = parse_prefix(v, len, &cfg->brski.jpy_proxies[n]);
		if (why)
			return fail_key(ld, k, line, -EINVAL, "bad entry '%.*s': %s",
					(int)len, v, why);
		n++;
		v += len;
	}
	if (n == 0)
		return fail_key(ld, k, line, -EINVAL, "empty value, expected addresses or prefixes");
	cfg->brski.njpy_proxies = n;
	return 0;
}

/* ---- files ------------------------------------------------------------- */

/** The file must exist, be a regular file and open for reading. */
static int check_file(struct load *ld, const struct cfg_key *k, const char *path,
		      unsigned line)
{
	struct stat st;
	int fd;

	if (stat(path, &st) != 0)
		return fail_key(ld, k, line, -errno, "cannot stat %s: %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return fail_key(ld, k, line, -EISDIR, "%s is a directory, not a file", path);
	if (!S_ISREG(st.st_mode))
		return fail_key(ld, k, line, -EINVAL, "%s is not a regular file", path);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return fail_key(ld, k, line, -errno, "cannot read %s: %s", path, strerror(errno));
	close(fd);
	return 0;
}

/** Relative paths are taken from the config file's directory; the
 *  resolved name is stored (and returned) in @p k's slot. */
static int store_path(struct load *ld, const struct cfg_key *k, const char *val,
		      unsigned line, char **out)
{
	char **slot = field(ld, k->off);
	char *path;

	if (!*val)
		return fail_key(ld, k, line, -EINVAL, "empty value, expected a file name");
	if (val[0] == '/')
		path = strdup(val);
	else if (asprintf(&path, "%s%s%s", ld->dir, strcmp(ld->dir, "/") ? "/" : "", val) < 0)
		path = NULL;
	if (!path)
		return fail_key(ld, k, line, -ENOMEM, "out of memory");
	free(*slot);
	*slot = path;
	set_src(ld, k, line);
	*out = path;
	return 0;
}

static int set_file(struct load *ld, const struct cfg_key *k, const char *val,
		    unsigned line)
{
	char *path;
	int rc = store_path(ld, k, val, line, &path);

	return rc ? rc : check_file(ld, k, path, line);
}

/** A file estgw writes secrets to: if it exists, a regular file (not a
 *  symbolic link) only its owner may read and write, that we can append
 *  to; if not, a directory we can create it in. Nothing is created here. */
static int check_outfile(struct load *ld, const struct cfg_key *k, const char *path,
			 unsigned line)
{
	struct stat st;
	char *copy;
	int fd, rc = 0;

	if (lstat(path, &st) == 0) {
		if (S_ISLNK(st.st_mode))
			return fail_key(ld, k, line, -ELOOP, "%s is a symbolic link; name the "
					"file itself", path);
		if (!S_ISREG(st.st_mode))
			return fail_key(ld, k, line, -EINVAL, "%s is not a regular file", path);
		if (st.st_mode & 077)
			return fail_key(ld, k, line, -EACCES, "%s is accessible to others "
					"(mode %04o); it will hold session keys: chmod 0600 it "
					"or remove it", path, (unsigned)(st.st_mode & 07777));
		fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (fd < 0)
			return fail_key(ld, k, line, -errno, "cannot append to %s: %s", path,
					strerror(errno));
		close(fd);
		return 0;
	}
	if (errno != ENOENT)
		return fail_key(ld, k, line, -errno, "cannot stat %s: %s", path, strerror(errno));
	copy = strdup(path);
	if (!copy)
		return fail_key(ld, k, line, -ENOMEM, "out of memory");
	if (access(dirname(copy), W_OK | X_OK) != 0)
		rc = fail_key(ld, k, line, -errno, "cannot create %s: %s", path, strerror(errno));
	free(copy);
	return rc;
}

static int set_outfile(struct load *ld, const struct cfg_key *k, const char *val,
		       unsigned line)
{
	char *path;
	int rc = store_path(ld, k, val, line, &path);

	return rc ? rc : check_outfile(ld, k, path, line);
}

/* ---- root and url ------------------------------------------------------ */

static const char *segment_problem(const char *seg, size_t len)
{
	if (len == 0)
		return "has an empty path segment";
	if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
		return "has a '.' or '..' segment";
	return NULL;
}

static const char *root_problem(const char *v)
{
	const char *p = v, *why;
	size_t len;

	if (v[0] != '/')
		return "must start with '/'";
	if (strpbrk(v, "?#"))
		return "must not contain '?' or '#'";
	for (p = v; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return "must not contain spaces or control characters";
	for (p = v; *p == '/'; p += 1 + len) {
		len = strcspn(p + 1, "/");
		why = segment_problem(p + 1, len);
		if (why)
			return why;
	}
	if (strcmp(v, "/.well-known/est") == 0)
		return "is always served; root names an extra path";
	return NULL;
}

static int set_root(struct load *ld, const struct cfg_key *k, const char *val,
		    unsigned line)
{
	const char *why = root_problem(val);

	if (why)
		return fail_key(ld, k, line, -EINVAL, "'%s' %s", val, why);
	return store_str(ld, k, val, strlen(val), line);
}

/** [cluster] redis: "unix:/absolute/path" or "host:port" (a name or an
 *  address; IPv6 in brackets), port 1-65535. Not resolved here. */
static int set_redis(struct load *ld, const struct cfg_key *k, const char *val,
		     unsigned line)
{
	const char *colon = strrchr(val, ':');
	char *end;
	long port;

	if (strncmp(val, "unix:", 5) == 0) {
		if (val[5] != '/' || strlen(val) > 5 + 107)
			return fail_key(ld, k, line, -EINVAL, "'%s': expected unix:/absolute/path "
					"(at most 107 characters)", val);
		return store_str(ld, k, val, strlen(val), line);
	}
	if (!colon || colon == val || strchr(val, ' '))
		return fail_key(ld, k, line, -EINVAL, "'%s': expected host:port or unix:/path", val);
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535 || end == colon + 1)
		return fail_key(ld, k, line, -EINVAL, "'%s': port must be 1-65535", val);
	if (val[0] == '[' && colon[-1] != ']')
		return fail_key(ld, k, line, -EINVAL, "'%s': IPv6 addresses go in brackets", val);
	return store_str(ld, k, val, strlen(val), line);
}

/** A name in store keys and records: 1-64 of [A-Za-z0-9._:-]. */
static int set_name(struct load *ld, const struct cfg_key *k, const char *val,
		    unsigned line)
{
	size_t n = strlen(val);

	if (n < 1 || n > 64 || strspn(val, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				     "0123456789._:-") != n)
		return fail_key(ld, k, line, -EINVAL, "'%s': expected 1-64 characters of "
				"A-Z a-z 0-9 . _ : -", val);
	return store_str(ld, k, val, n, line);
}

/** Stored without trailing '/', so "url + /cacerts" works. */
static int set_url(struct load *ld, const struct cfg_key *k, const char *val,
		   unsigned line)
{
	static const char scheme[] = "https://";
	const size_t slen = sizeof(scheme) - 1;
	size_t len = strlen(val);

	if (strncasecmp(val, scheme, slen) != 0)
		return fail_key(ld, k, line, -EINVAL, "'%s' must start with https://", val);
	if (val[slen] == '\0' || val[slen] == '/')
		return fail_key(ld, k, line, -EINVAL, "'%s' has no host", val);
	if (strpbrk(val, "?# \t"))
		return fail_key(ld, k, line, -EINVAL,
				"'%s' must not contain a query, a fragment or spaces", val);
	while (len > slen + 1 && val[len - 1] == '/')
		len--;
	return store_str(ld, k, val, len, line);
}

/* ---- [brski] (H) ------------------------------------------------------ */

/** Any form masa_request_url() takes; stored as given. */
static int set_masa_url(struct load *ld, const struct cfg_key *k, const char *val,
			unsigned line)
{
	char url[512];

	if (masa_request_url(val, strlen(val), url, sizeof(url)) != 0)
		return fail_key(ld, k, line, -EINVAL,
				"'%s' is not a MASA URL (host[:port][/path] or https://...)", val);
	return store_str(ld, k, val, strlen(val), line);
}

/** A file named inside a manufacturer line: resolved and checked like set_file. */
static int mfr_file(struct load *ld, const struct cfg_key *k, const char *val,
		    size_t len, unsigned line, char **slot)
{
	char *path;

	if (len == 0)
		return fail_key(ld, k, line, -EINVAL, "empty file name");
	if (val[0] == '/')
		path = strndup(val, len);
	else if (asprintf(&path, "%s%s%.*s", ld->dir, strcmp(ld->dir, "/") ? "/" : "",
			  (int)len, val) < 0)
		path = NULL;
	if (!path)
		return fail_key(ld, k, line, -ENOMEM, "out of memory");
	free(*slot);
	*slot = path;
	return check_file(ld, k, path, line);
}

/** "ca=FILE [url=URL] [trust=FILE] [cert=FILE key=FILE] [legacy]" */
static int set_manufacturer(struct load *ld, const struct cfg_key *k,
			    const char *val, unsigned line)
{
	struct estgw_config *cfg = ld->cfg;
	struct estgw_brski_mfr *m;
	const char *p = val;
	int rc = 0;

	if (cfg->brski.nmfr >= ESTGW_MAX_MFR)
		return fail_key(ld, k, line, -E2BIG, "too many manufacturer lines (at most %d)",
				ESTGW_MAX_MFR);
	m = &cfg->brski.mfr[cfg->brski.nmfr++];
	m->line = line;
	while (rc == 0 && *p) {
		size_t n = strcspn(p, " \t");
		const char *eq = memchr(p, '=', n);
		size_t kl = eq ? (size_t)(eq - p) : n;
		const char *v = eq ? eq + 1 : p + n;
		size_t vl = eq ? n - kl - 1 : 0;
		char tmp[512];

		if (kl == 6 && !eq && strncmp(p, "legacy", 6) == 0)
			m->legacy = 1;
		else if (eq && kl == 2 && strncmp(p, "ca", 2) == 0)
			rc = mfr_file(ld, k, v, vl, line, &m->ca);
		else if (eq && kl == 5 && strncmp(p, "trust", 5) == 0)
			rc = mfr_file(ld, k, v, vl, line, &m->trust);
		else if (eq && kl == 4 && strncmp(p, "cert", 4) == 0)
			rc = mfr_file(ld, k, v, vl, line, &m->certificate);
		else if (eq && kl == 3 && strncmp(p, "key", 3) == 0)
			rc = mfr_file(ld, k, v, vl, line, &m->private_key);
		else if (eq && kl == 3 && strncmp(p, "url", 3) == 0) {
			if (masa_request_url(v, vl, tmp, sizeof(tmp)) != 0)
				return fail_key(ld, k, line, -EINVAL, "bad url '%.*s'", (int)vl, v);
			free(m->masa_url);
			m->masa_url = strndup(v, vl);
			if (!m->masa_url)
				return fail_key(ld, k, line, -ENOMEM, "out of memory");
		} else
			return fail_key(ld, k, line, -EINVAL,
					"unknown item '%.*s' (ca=, url=, trust=, cert=, key=, legacy)",
					(int)n, p);
		p += n;
		while (*p == ' ' || *p == '\t')
			p++;
	}
	if (rc)
		return rc;
	if (!m->ca)
		return fail_key(ld, k, line, -EINVAL, "ca=FILE is required");
	if (!m->certificate != !m->private_key)
		return fail_key(ld, k, line, -EINVAL, "cert= and key= go together");
	return 0;
}

/* ---- numbers, booleans, log level -------------------------------------- */

static int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

static int set_u32(struct load *ld, const struct cfg_key *k, const char *val,
		   unsigned line)
{
	uint32_t v;

	if (parse_u32(val, &v) != 0)
		return fail_key(ld, k, line, -EINVAL,
				"'%s' is not a number from %u to %u", val, k->min, k->max);
	if (v < k->min || v > k->max)
		return fail_key(ld, k, line, -ERANGE, "%u is out of range %u..%u", v,
				k->min, k->max);
	*(uint32_t *)field(ld, k->off) = v;
	return 0;
}

static const struct {
	const char *word;
	int value;
} bool_words[] = {
	{ "yes", 1 }, { "no", 0 }, { "true", 1 }, { "false", 0 },
	{ "on", 1 },  { "off", 0 }, { "1", 1 },   { "0", 0 },
};

static int set_bool(struct load *ld, const struct cfg_key *k, const char *val,
		    unsigned line)
{
	for (size_t i = 0; i < ARRAY_SIZE(bool_words); i++) {
		if (strcasecmp(val, bool_words[i].word) == 0) {
			*(int *)field(ld, k->off) = bool_words[i].value;
			return 0;
		}
	}
	return fail_key(ld, k, line, -EINVAL,
			"'%s' is not a boolean (yes/no/true/false/on/off/1/0)", val);
}

static const struct {
	const char *word;
	int prio;
} log_levels[] = {
	{ "error", LOG_ERR }, { "warning", LOG_WARNING },
	{ "info", LOG_INFO }, { "debug", LOG_DEBUG },
};

static int set_level(struct load *ld, const struct cfg_key *k, const char *val,
		     unsigned line)
{
	for (size_t i = 0; i < ARRAY_SIZE(log_levels); i++) {
		if (strcasecmp(val, log_levels[i].word) == 0) {
			*(int *)field(ld, k->off) = log_levels[i].prio;
			return 0;
		}
	}
	return fail_key(ld, k, line, -EINVAL,
			"'%s' is not a log level (error/warning/info/debug)", val);
}

/** A boolean that remembers its line (for checks across keys). */
static int set_bool_src(struct load *ld, const struct cfg_key *k, const char *val,
			unsigned line)
{
	int rc = set_bool(ld, k, val, line);

	if (rc == 0)
		set_src(ld, k, line);
	return rc;
}

static const struct {
	const char *word;
	int mode;
} pop_words[] = {
	{ "off", ESTGW_POP_OFF },
	{ "if-present", ESTGW_POP_IF_PRESENT },
	{ "required", ESTGW_POP_REQUIRED },
};

static int set_pop(struct load *ld, const struct cfg_key *k, const char *val,
		   unsigned line)
{
	for (size_t i = 0; i < ARRAY_SIZE(pop_words); i++) {
		if (strcasecmp(val, pop_words[i].word) == 0) {
			*(int *)field(ld, k->off) = pop_words[i].mode;
			return 0;
		}
	}
	return fail_key(ld, k, line, -EINVAL,
			"'%s' is not a POP mode (off/if-present/required)", val);
}

/** A list of EST short names ("crts att sen sren skg skc", spaces or
 *  commas), "all" or "none" -> a bit mask of 1 << enum est_op. */
static int set_ops(struct load *ld, const struct cfg_key *k, const char *val,
		   unsigned line)
{
	static const char sep[] = " ,\t";
	uint32_t mask = 0;
	const char *p = val + strspn(val, sep);
	size_t n;

	if (strcasecmp(val, "all") == 0 || strcasecmp(val, "none") == 0) {
		*(uint32_t *)field(ld, k->off) =
			tolower((unsigned char)val[0]) == 'a' ? (1u << EST_OP_COUNT) - 1 : 0;
		return 0;
	}
	if (!*p)
		return fail_key(ld, k, line, -EINVAL, "empty list (write none)");
	for (; *p; p += n, p += strspn(p, sep)) {
		const struct est_op_desc *op;

		n = strcspn(p, sep);
		op = est_op_lookup(p, n);
		if (!op)
			return fail_key(ld, k, line, -EINVAL,
					"'%.*s' is not an operation (crts att sen sren skg skc, "
					"all or none)", (int)n, p);
		mask |= 1u << op->op;
	}
	*(uint32_t *)field(ld, k->off) = mask;
	return 0;
}

/* ---- [rfc8295] (I1) ----------------------------------------------------- */

static const struct {
	const char *word;
	uint32_t bits;
} x_words[] = {
	{ "pal", EST_X_EN_PAL }, { "eecerts", EST_X_EN_EECERTS },
	{ "crls", EST_X_EN_CRLS }, { "symmetrickeys", EST_X_EN_SYMKEYS },
	{ "firmware", EST_X_EN_FIRMWARE }, { "tamp", EST_X_EN_TAMP },
	{ "serverkeygen", EST_X_EN_SKG },
};

/** "pal eecerts crls symmetrickeys firmware tamp serverkeygen" (any
 *  subset, spaces or commas), "all" or "none" -> EST_X_EN_* bits. */
static int set_x_enable(struct load *ld, const struct cfg_key *k, const char *val,
			unsigned line)
{
	static const char sep[] = " ,\t";
	uint32_t mask = 0;
	const char *p = val + strspn(val, sep);
	size_t n;

	if (strcasecmp(val, "none") == 0 || strcasecmp(val, "all") == 0) {
		for (size_t i = 0; tolower((unsigned char)val[0]) == 'a' && i < ARRAY_SIZE(x_words); i++)
			mask |= x_words[i].bits;
		*(uint32_t *)field(ld, k->off) = mask;
		return 0;
	}
	if (!*p)
		return fail_key(ld, k, line, -EINVAL, "empty list (write none)");
	for (; *p; p += n, p += strspn(p, sep)) {
		size_t i = 0;

		n = strcspn(p, sep);
		while (i < ARRAY_SIZE(x_words) &&
		       !(strlen(x_words[i].word) == n && memcmp(x_words[i].word, p, n) == 0))
			i++;
		if (i == ARRAY_SIZE(x_words))
			return fail_key(ld, k, line, -EINVAL,
					"'%.*s' is not an RFC 8295 operation (pal eecerts crls "
					"symmetrickeys firmware tamp serverkeygen, all or none)",
					(int)n, p);
		mask |= x_words[i].bits;
	}
	*(uint32_t *)field(ld, k->off) = mask;
	return 0;
}

/* Content-Formats estgw answers with already: not for an RFC 8295 type. */
static int cf_taken(uint32_t v)
{
	return v == 0 || v == 40 || v == 41 || v == 42 || v == 50 || v == 60 ||
	       v == 62 || (v >= 280 && v <= 287) || v == 836;
}

/** "default", or "token=number ..." over the defaults (RFC 7252 §12.3:
 *  65000-65535 is for experiments); numbers distinct, 0..65535, none that
 *  estgw uses for another type. */
static int set_x_cf(struct load *ld, const struct cfg_key *k, const char *val,
		    unsigned line)
{
	static const char sep[] = " ,\t";
	uint32_t *cf = field(ld, k->off);
	const char *p = val + strspn(val, sep);
	size_t n;

	for (int i = 0; i < EST_X_MT_COUNT; i++)
		cf[i] = est_x_mt_default_cf((enum est_x_mt)i);
	if (strcasecmp(val, "default") == 0)
		return 0;
	for (; *p; p += n, p += strspn(p, sep)) {
		const char *eq;
		char num[16];
		uint32_t v;
		int mt;

		n = strcspn(p, sep);
		eq = memchr(p, '=', n);
		if (!eq)
			return fail_key(ld, k, line, -EINVAL, "'%.*s' is not type=number", (int)n, p);
		mt = est_x_mt_lookup(p, (size_t)(eq - p));
		if (mt < 0)
			return fail_key(ld, k, line, -EINVAL, "'%.*s' is not a media type name "
					"(cms crls pkcs12 tamp-...)", (int)(eq - p), p);
		snprintf(num, sizeof(num), "%.*s", (int)(p + n - eq - 1), eq + 1);
		if (parse_u32(num, &v) != 0 || v > 65535 || cf_taken(v))
			return fail_key(ld, k, line, -EINVAL, "'%s' is not a free Content-Format "
					"(0..65535, not one estgw uses already)", num);
		cf[mt] = v;
	}
	for (int i = 0; i < EST_X_MT_COUNT; i++)
		for (int j = i + 1; j < EST_X_MT_COUNT; j++)
			if (cf[i] == cf[j])
				return fail_key(ld, k, line, -EINVAL, "%s and %s have the same "
						"Content-Format %u", est_x_mt_token((enum est_x_mt)i),
						est_x_mt_token((enum est_x_mt)j), cf[i]);
	return 0;
}

static int set_x_enc(struct load *ld, const struct cfg_key *k, const char *val,
		     unsigned line)
{
	if (strcasecmp(val, "base64") == 0 || strcasecmp(val, "binary") == 0) {
		*(int *)field(ld, k->off) = tolower((unsigned char)val[1]) == 'i';
		return 0;
	}
	return fail_key(ld, k, line, -EINVAL, "'%s' is not base64 or binary", val);
}

/** host[:port] or [IPv6]:port as written into coaps:// PAL URIs. */
static int set_x_authority(struct load *ld, const struct cfg_key *k, const char *val,
			   unsigned line)
{
	size_t n = strlen(val);

	if (n == 0 || n > 255 || strspn(val, "abcdefghijklmnopqrstuvwxyz"
					"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != n)
		return fail_key(ld, k, line, -EINVAL, "'%s' is not host[:port]", val);
	return store_str(ld, k, val, n, line);
}

static const struct {
	const char *word;
	int mode;
} skg_modes[] = {
	{ "upstream", ESTGW_SKG_UPSTREAM },
	{ "registrar", ESTGW_SKG_REGISTRAR },
	{ "off", ESTGW_SKG_OFF },
};

static int set_skg(struct load *ld, const struct cfg_key *k, const char *val,
		   unsigned line)
{
	for (size_t i = 0; i < ARRAY_SIZE(skg_modes); i++) {
		if (strcasecmp(val, skg_modes[i].word) == 0) {
			*(int *)field(ld, k->off) = skg_modes[i].mode;
			return 0;
		}
	}
	return fail_key(ld, k, line, -EINVAL,
			"'%s' is not a serverkeygen mode (upstream/registrar/off)", val);
}

static const char *const log_formats[] = { "text", "json" };

static int set_format(struct load *ld, const struct cfg_key *k, const char *val,
		      unsigned line)
{
	for (size_t i = 0; i < ARRAY_SIZE(log_formats); i++) {
		if (strcasecmp(val, log_formats[i]) == 0) {
			*(int *)field(ld, k->off) = (int)i;
			return 0;
		}
	}
	return fail_key(ld, k, line, -EINVAL, "'%s' is not a log format (text/json)", val);
}

/* ---- reading lines ----------------------------------------------------- */

static int section_known(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
		if (strlen(sections[i]) == len && memcmp(sections[i], name, len) == 0)
			return 1;
	return 0;
}

/** Checks libinih would not make; returns nonzero to hide the line from it. */
static int check_line(struct load *ld, const char *s, size_t n, size_t max)
{
	const char *close, *p;

	if (strlen(s) != n)
		return fail(ld, ld->line, NULL, NULL, -EINVAL, "NUL byte in line");
	if (n + 1 > max)
		return fail(ld, ld->line, NULL, NULL, -EINVAL,
			    "line longer than %zu characters", max - 2);
	if (ld->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3; /* UTF-8 byte order mark; libinih skips it too */
	p = s + strspn(s, " \t\r\n");
	if (p != s && *p && !strchr(";#", *p))
		return fail(ld, ld->line, NULL, NULL, -EINVAL,
			    "indented line (it would continue the previous value); "
			    "remove the leading whitespace");
	close = strchr(s, ']');
	if (*s == '[' && close && !section_known(s + 1, (size_t)(close - s - 1)))
		return fail(ld, ld->line, NULL, NULL, -EINVAL,
			    "[%.*s]: unknown section (expected [server], [upstream], [policy], [log], [brski], [metrics] or [cluster])",
			    (int)(close - s - 1), s + 1);
	return 0;
}

/** ini_reader: one physical line per call, so our line count is libinih's. */
static char *read_line(char *str, int num, void *stream)
{
	struct load *ld = stream;
	ssize_t n = getline(&ld->buf, &ld->bufsz, ld->fp);

	if (n < 0 || num < 2) {
		if (n < 0 && ferror(ld->fp))
			ld->read_errno = errno ? errno : EIO;
		return NULL;
	}
	ld->line++;
	if (check_line(ld, ld->buf, (size_t)n, (size_t)num) != 0) {
		strcpy(str, "\n"); /* libinih sees a blank line */
		return str;
	}
	memcpy(str, ld->buf, (size_t)n + 1);
	return str;
}

/* ---- keys -------------------------------------------------------------- */

static const struct cfg_key *find_key(const char *section, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(schema[i].section, section) == 0 &&
		    strcmp(schema[i].name, name) == 0)
			return &schema[i];
	return NULL;
}

static int handle_key(struct load *ld, const char *section, const char *name,
		      const char *value)
{
	const struct cfg_key *k = find_key(section, name);
	unsigned line = ld->line, *seen;

	if (!*section)
		return fail(ld, line, NULL, NULL, -EINVAL, "%s: key before any [section]", name);
	if (!section_known(section, strlen(section)))
		return fail(ld, line, section, NULL, -EINVAL, "unknown section");
	if (!k)
		return fail(ld, line, section, name, -EINVAL, "unknown key");
	seen = &ld->seen[k - schema];
	if (*seen && !(k->flags & K_MULTI))
		return fail_key(ld, k, line, -EINVAL, "duplicate key (first set on line %u)", *seen);
	if (!*seen)
		*seen = line;
	return k->set(ld, k, value, line);
}

/** ini_handler: nonzero means success to libinih. */
static int on_key(void *user, const char *section, const char *name,
		  const char *value)
{
	struct load *ld = user;

	if (ld->rc)
		return 1; /* only the first error is reported */
	return handle_key(ld, section, name, value) == 0;
}

/* ---- whole-file steps -------------------------------------------------- */

static int apply_defaults(struct load *ld)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		int rc = schema[i].def ? schema[i].set(ld, &schema[i], schema[i].def, 0) : 0;

		if (rc)
			return rc;
	}
	return 0;
}

static int check_required(struct load *ld)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if ((schema[i].flags & K_REQUIRED) && !ld->seen[i])
			return fail_key(ld, &schema[i], 0, -EINVAL, "missing required key");
	return 0;
}

static uint32_t u32_of(struct load *ld, const struct cfg_key *k)
{
	return *(uint32_t *)field(ld, k->off);
}

/** Blame the smaller key if the file set it, else the larger one. */
static int check_relations(struct load *ld)
{
	for (size_t i = 0; i < ARRAY_SIZE(relations); i++) {
		const struct cfg_key *s = find_key(relations[i].section, relations[i].small);
		const struct cfg_key *b = find_key(relations[i].section, relations[i].big);
		unsigned sl = ld->seen[s - schema], bl = ld->seen[b - schema];

		if (u32_of(ld, s) <= u32_of(ld, b))
			continue;
		return fail_key(ld, sl || !bl ? s : b, sl ? sl : bl, -EINVAL,
				"%s (%u) must not be greater than %s (%u)", s->name,
				u32_of(ld, s), b->name, u32_of(ld, b));
	}
	return 0;
}

/** Absolute directory of the config file, for relative paths. */
static int find_dir(struct load *ld)
{
	char *copy = strdup(ld->file);

	if (!copy)
		return fail(ld, 0, NULL, NULL, -ENOMEM, "out of memory");
	ld->dir = realpath(dirname(copy), NULL);
	free(copy);
	if (!ld->dir)
		return fail(ld, 0, NULL, NULL, -errno, "cannot resolve the directory: %s",
			    strerror(errno));
	return 0;
}

static int open_file(struct load *ld)
{
	ld->fp = fopen(ld->file, "re");
	if (!ld->fp)
		return fail(ld, 0, NULL, NULL, -errno, "cannot open: %s", strerror(errno));
	ld->cfg->path = strdup(ld->file);
	if (!ld->cfg->path)
		return fail(ld, 0, NULL, NULL, -ENOMEM, "out of memory");
	return find_dir(ld);
}

/** Runs libinih; its return value is the first line it found wrong. */
static int parse(struct load *ld)
{
	int bad = ini_parse_stream(read_line, ld, on_key, ld);

	if (ld->read_errno) {
		ld->rc = 0; /* the file was not read to its end */
		return fail(ld, ld->line, NULL, NULL, -ld->read_errno, "cannot read: %s",
			    strerror(ld->read_errno));
	}
	if (bad > 0 && (!ld->rc || (unsigned)bad < ld->err_line)) {
		ld->rc = 0; /* libinih's error comes first in the file */
		return fail(ld, (unsigned)bad, NULL, NULL, -EINVAL,
			    "syntax error: expected [section], key = value or a comment");
	}
	if (bad < 0)
		return fail(ld, 0, NULL, NULL, -ENOMEM, "libinih failed (%d)", bad);
	return ld->rc;
}

/** allow_expired_idevid needs to know which CAs are the manufacturers'. */
static int check_policy(struct load *ld)
{
	const struct estgw_config *cfg = ld->cfg;

	if (cfg->policy.allow_expired_idevid && !cfg->policy.idevid_trust)
		return fail(ld, cfg->policy.allow_expired_idevid_src.line, "policy",
			    "allow_expired_idevid", -EINVAL,
			    "needs [policy] idevid_trust (the manufacturer CAs whose "
			    "expired IDevIDs are accepted)");
	return 0;
}

/** [cluster]: node, password_file, seal_key need redis; redis needs seal_key (stored answers
 *  are always sealed, K1); hiredis 0.14 (Debian 12) has no TLS. */
static int check_cluster(struct load *ld)
{
	const struct estgw_config *cfg = ld->cfg;
	const struct cfg_key *redis = find_key("cluster", "redis");

	if (cfg->cluster.tls)
		return fail(ld, cfg->cluster.tls_src.line, "cluster", "tls", -ENOTSUP,
			    "hiredis 0.14 (Debian 12) has no TLS: reach Redis over a unix "
			    "socket or a private network, or a local TLS tunnel");
	/* the keys without a default (the example file spells the others out) */
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(schema[i].section, "cluster") == 0 && !schema[i].def &&
		    ld->seen[i] && !cfg->cluster.redis)
			return fail_key(ld, &schema[i], ld->seen[i], -EINVAL,
					"needs [cluster] redis");
	if (cfg->cluster.redis && !cfg->cluster.seal_key)
		return fail_key(ld, redis, cfg->cluster.redis_src.line, -EINVAL,
				"needs [cluster] seal_key (a file of 32 random bytes the "
				"instances share: stored answers are sealed)");
	return 0;
}

static int load_steps(struct load *ld)
{
	int rc = open_file(ld);

	if (!rc)
		rc = apply_defaults(ld);
	if (!rc)
		rc = parse(ld);
	if (!rc)
		rc = check_required(ld);
	if (!rc)
		rc = check_relations(ld);
	if (!rc)
		rc = check_policy(ld);
	if (!rc)
		rc = check_cluster(ld);
	return rc;
}

int estgw_config_load(const char *path, struct estgw_config *cfg, char *err,
		      size_t errlen)
{
	struct load ld = { .cfg = cfg, .file = path, .err = err, .errlen = errlen };
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	if (err && errlen)
		err[0] = '\0';
	rc = load_steps(&ld);
	if (ld.fp)
		fclose(ld.fp);
	free(ld.buf);
	free(ld.dir);
	if (rc)
		estgw_config_free(cfg);
	else
		memcpy(cfg->key_line, ld.seen, sizeof(ld.seen));
	return rc;
}

static void mfr_free(struct estgw_brski_mfr *m)
{
	free(m->ca);
	free(m->masa_url);
	free(m->trust);
	free(m->certificate);
	free(m->private_key);
	memset(m, 0, sizeof(*m));
}

void estgw_config_free(struct estgw_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->server.certificate);
	free(cfg->server.private_key);
	free(cfg->server.client_trust);
	free(cfg->server.root);
	free(cfg->upstream.url);
	free(cfg->upstream.trust);
	free(cfg->upstream.certificate);
	free(cfg->upstream.private_key);
	free(cfg->policy.idevid_trust);
	free(cfg->policy.ldevid_trust);
	free(cfg->brski.manufacturer_trust);
	free(cfg->brski.masa_trust);
	free(cfg->brski.masa_url);
	free(cfg->brski.masa_certificate);
	free(cfg->brski.masa_private_key);
	for (size_t i = 0; i < cfg->brski.nmfr; i++)
		mfr_free(&cfg->brski.mfr[i]);
	free(cfg->log.keylog_file);
	free(cfg->cluster.redis);
	free(cfg->cluster.password_file);
	free(cfg->cluster.node);
	free(cfg->cluster.seal_key);
	free(cfg->cluster.prefix);
	free(cfg->rfc8295.pal_authority);
	memset(cfg, 0, sizeof(*cfg));
}

/* ---- value kinds: the type name, comparing and copying a value ---------- */

/** How a setter stores its value at the key's offset. */
enum value_kind {
	V_STR,    /* char *, NULL: unset */
	V_U32,    /* uint32_t */
	V_INT,    /* int: booleans and enums */
	V_LISTEN, /* [server] listen: the address array and its count */
	V_ADDR,   /* one struct estgw_addr */
	V_MFR,    /* [brski] manufacturer lines */
	V_PREFIXES, /* [brski] jpy_proxies */
};

static const struct {
	cfg_setter set;
	const char *type; /* for docs: estgw.conf(5) "Type:" */
	enum value_kind kind;
} setter_types[] = {
	{ set_listen, "address", V_LISTEN },  { set_file, "file", V_STR },
	{ set_root, "path", V_STR },          { set_url, "url", V_STR },
	{ set_u32, "integer", V_U32 },        { set_bool, "boolean", V_INT },
	{ set_level, "enum", V_INT },         { set_format, "enum", V_INT },
	{ set_addr, "address", V_ADDR },      { set_pop, "enum", V_INT },
	{ set_skg, "enum", V_INT },           { set_bool_src, "boolean", V_INT },
	{ set_ops, "operations", V_U32 },     { set_masa_url, "MASA URL", V_STR },
	{ set_manufacturer, "line", V_MFR }, { set_outfile, "output file", V_STR },
	{ set_redis, "store address", V_STR }, { set_name, "name", V_STR },
	{ set_prefixes, "prefixes", V_PREFIXES },
	{ set_x_enable, "operations", V_U32 }, { set_x_cf, "list", V_U32 },
	{ set_x_enc, "enum", V_INT },         { set_x_authority, "authority", V_STR },
};

static int kind_of(const struct cfg_key *k, enum value_kind *kind)
{
	for (size_t t = 0; t < ARRAY_SIZE(setter_types); t++) {
		if (setter_types[t].set == k->set) {
			*kind = setter_types[t].kind;
			return 0;
		}
	}
	return -ENOENT;
}

static const void *cfield(const struct estgw_config *cfg, size_t off)
{
	return (const char *)cfg + off;
}

static int str_equal(const char *a, const char *b)
{
	return a && b ? strcmp(a, b) == 0 : a == b;
}

/** The same set of addresses, in any order (each is listed once). */
static int listen_equal(const struct estgw_config *a, const struct estgw_config *b)
{
	if (a->server.nlisten != b->server.nlisten)
		return 0;
	for (size_t i = 0; i < a->server.nlisten; i++) {
		size_t j = 0;

		while (j < b->server.nlisten && !addr_equal(&a->server.listen[i], &b->server.listen[j]))
			j++;
		if (j == b->server.nlisten)
			return 0;
	}
	return 1;
}

static int mfr_equal(const struct estgw_brski_mfr *a, const struct estgw_brski_mfr *b)
{
	return str_equal(a->ca, b->ca) && str_equal(a->masa_url, b->masa_url) &&
	       str_equal(a->trust, b->trust) && str_equal(a->certificate, b->certificate) &&
	       str_equal(a->private_key, b->private_key) && a->legacy == b->legacy;
}

/** Manufacturer lines in order (an IDevID's first matching line counts). */
static int mfrs_equal(const struct estgw_config *a, const struct estgw_config *b)
{
	if (a->brski.nmfr != b->brski.nmfr)
		return 0;
	for (size_t i = 0; i < a->brski.nmfr; i++)
		if (!mfr_equal(&a->brski.mfr[i], &b->brski.mfr[i]))
			return 0;
	return 1;
}

static int value_equal(enum value_kind kind, const struct estgw_config *a,
		       const struct estgw_config *b, size_t off)
{
	switch (kind) {
	case V_STR:
		return str_equal(*(char *const *)cfield(a, off), *(char *const *)cfield(b, off));
	case V_U32:
		return *(const uint32_t *)cfield(a, off) == *(const uint32_t *)cfield(b, off);
	case V_INT:
		return *(const int *)cfield(a, off) == *(const int *)cfield(b, off);
	case V_ADDR:
		return addr_equal(cfield(a, off), cfield(b, off));
	case V_LISTEN:
		return listen_equal(a, b);
	case V_MFR:
		return mfrs_equal(a, b);
	case V_PREFIXES:
		return a->brski.njpy_proxies == b->brski.njpy_proxies &&
		       memcmp(a->brski.jpy_proxies, b->brski.jpy_proxies,
			      sizeof(a->brski.jpy_proxies)) == 0;
	}
	return 0;
}

static int dup_str(char **dst, const char *src)
{
	char *copy = src ? strdup(src) : NULL;

	if (src && !copy)
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

static int mfr_copy(struct estgw_brski_mfr *dst, const struct estgw_brski_mfr *src)
{
	int rc = dup_str(&dst->ca, src->ca);

	if (!rc)
		rc = dup_str(&dst->masa_url, src->masa_url);
	if (!rc)
		rc = dup_str(&dst->trust, src->trust);
	if (!rc)
		rc = dup_str(&dst->certificate, src->certificate);
	if (!rc)
		rc = dup_str(&dst->private_key, src->private_key);
	dst->legacy = src->legacy;
	dst->line = src->line;
	return rc;
}

static int mfrs_copy(struct estgw_config *dst, const struct estgw_config *src)
{
	for (size_t i = 0; i < dst->brski.nmfr; i++)
		mfr_free(&dst->brski.mfr[i]);
	dst->brski.nmfr = 0;
	for (size_t i = 0; i < src->brski.nmfr; i++) {
		dst->brski.nmfr = i + 1; /* freed with @p dst whatever happens */
		if (mfr_copy(&dst->brski.mfr[i], &src->brski.mfr[i]) != 0)
			return -ENOMEM;
	}
	return 0;
}

/** @p src's value of the key at @p off into @p dst. */
static int value_copy(enum value_kind kind, struct estgw_config *dst,
		      const struct estgw_config *src, size_t off)
{
	switch (kind) {
	case V_STR:
		return dup_str((char **)((char *)dst + off), *(char *const *)cfield(src, off));
	case V_U32:
		*(uint32_t *)((char *)dst + off) = *(const uint32_t *)cfield(src, off);
		return 0;
	case V_INT:
		*(int *)((char *)dst + off) = *(const int *)cfield(src, off);
		return 0;
	case V_ADDR:
		memcpy((char *)dst + off, cfield(src, off), sizeof(struct estgw_addr));
		return 0;
	case V_LISTEN:
		memcpy(dst->server.listen, src->server.listen, sizeof(dst->server.listen));
		memcpy(dst->server.listen_src, src->server.listen_src,
		       sizeof(dst->server.listen_src));
		dst->server.nlisten = src->server.nlisten;
		return 0;
	case V_MFR:
		return mfrs_copy(dst, src);
	case V_PREFIXES:
		memcpy(dst->brski.jpy_proxies, src->brski.jpy_proxies,
		       sizeof(dst->brski.jpy_proxies));
		dst->brski.njpy_proxies = src->brski.njpy_proxies;
		return 0;
	}
	return -EINVAL;
}

/* ---- reload: the schema's RESTART column --------------------------------- */

int estgw_config_keep_restart(const struct estgw_config *cur, struct estgw_config *next,
			      estgw_cfg_kept_fn kept, void *arg)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct cfg_key *k = &schema[i];
		enum value_kind kind;

		if (k->apply != RESTART || kind_of(k, &kind) != 0 ||
		    value_equal(kind, cur, next, k->off))
			continue;
		if (kept)
			kept(arg, k->section, k->name, next->key_line[i]);
		if (value_copy(kind, next, cur, k->off) != 0)
			return -ENOMEM;
	}
	return 0;
}

/* ---- the schema for docs and drift tests -------------------------------- */

int estgw_config_key_info(size_t i, struct estgw_cfg_keyinfo *out)
{
	if (i >= N_KEYS)
		return -ENOENT;
	const struct cfg_key *k = &schema[i];
	memset(out, 0, sizeof(*out));
	out->section = k->section;
	out->name = k->name;
	out->def = k->def;
	out->min = k->min;
	out->max = k->max;
	out->required = !!(k->flags & K_REQUIRED);
	out->multi = !!(k->flags & K_MULTI);
	out->live = k->apply == LIVE;
	out->type = "?";
	for (size_t t = 0; t < ARRAY_SIZE(setter_types); t++)
		if (setter_types[t].set == k->set)
			out->type = setter_types[t].type;
	return 0;
}
