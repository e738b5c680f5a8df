/* config.h - estgw's configuration: INI file -> one immutable struct.
 *
 * Owns: the key schema (a table: section, key, type, default, bounds),
 * parsing with libinih, and the checks that need no crypto (files exist and
 * are readable). Every error names "file:line: [section] key: reason".
 * Must not: open sockets or parse certificates: estgw_config_verify_pki()
 * in pki.c checks certificates, keys and the RA EKU afterwards.
 */
#ifndef ESTGW_CONFIG_H
#define ESTGW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define ESTGW_MAX_LISTEN 8

/** Where a value came from, for error messages (line 0: the default). */
struct estgw_cfg_src {
	unsigned line;
};

struct estgw_config {
	char *path; /**< the file that was read */
	struct {
		char *listen[ESTGW_MAX_LISTEN]; /**< "host:port", "[v6]:port" */
		struct estgw_cfg_src listen_src[ESTGW_MAX_LISTEN];
		size_t nlisten;
		char *certificate;  /**< PEM chain of the DTLS server cert */
		char *private_key;
		char *client_trust; /**< PEM bundle of accepted device CAs */
		char *root;         /**< optional extra root, e.g. "/est", or NULL */
		uint32_t max_body;     /**< largest reassembled request body (4.13) */
		uint32_t idle_timeout; /**< seconds before an idle DTLS session is closed */
		uint32_t max_sessions; /**< cap on concurrent DTLS sessions */
		uint32_t shutdown_grace; /**< seconds in-flight work may take at exit */
		struct estgw_cfg_src certificate_src, private_key_src,
			client_trust_src, root_src;
	} server;
	struct {
		char *url;   /**< base URL, normally ending in /.well-known/est */
		char *trust; /**< CAs that sign the EST server's TLS certificate */
		char *certificate; /**< RA client cert; must carry id-kp-cmcRA */
		char *private_key;
		uint32_t timeout;          /**< seconds for one exchange */
		uint32_t connect_timeout;  /**< seconds to connect (<= timeout) */
		uint32_t max_response;     /**< bytes accepted from upstream */
		uint32_t crts_refresh;     /**< seconds between /cacerts refreshes */
		uint32_t retry_default;    /**< Max-Age for 202/503 without Retry-After */
		uint32_t max_age_min;      /**< clamp for Max-Age from Retry-After */
		uint32_t max_age_max;
		int send_cte;              /**< send Content-Transfer-Encoding: base64 */
		struct estgw_cfg_src url_src, trust_src, certificate_src,
			private_key_src;
	} upstream;
	struct {
		int level; /**< syslog priority: LOG_ERR..LOG_DEBUG */
		int format; /**< 0: text lines, 1: JSON lines */
	} log;
	struct {
		char *listen; /**< "host:port" of /metrics and /healthz, or NULL */
		uint32_t crts_max_age; /**< /healthz: 503 when the CA cache is older */
		struct estgw_cfg_src listen_src;
	} metrics;
};

/** Parse and check @p path into @p cfg (zeroed first). On error returns a
 *  negative errno and writes one line "file:line: [section] key: reason"
 *  into @p err. @p cfg is freed on error. */
int estgw_config_load(const char *path, struct estgw_config *cfg, char *err,
		      size_t errlen);

/** Release everything estgw_config_load allocated. */
void estgw_config_free(struct estgw_config *cfg);

/** One row of the key schema, for documentation and drift tests. */
struct estgw_cfg_keyinfo {
	const char *section, *name;
	const char *type; /**< address, file, path, url, integer, boolean, enum */
	const char *def;  /**< default as spelled in the file, NULL: none */
	uint32_t min, max; /**< bounds of integers */
	int required, multi;
};

/** Row @p i of the schema into @p out; -ENOENT past the last row. */
int estgw_config_key_info(size_t i, struct estgw_cfg_keyinfo *out);

#endif
