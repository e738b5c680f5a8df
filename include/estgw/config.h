/* config.h - estgw's configuration: INI file -> one immutable struct.
 *
 * Owns: the key schema (a table: section, key, type, default, bounds,
 * applied on reload or only at a restart), typed listen addresses,
 * parsing with libinih, and the checks that need no crypto (files exist and
 * are readable). Every error names "file:line: [section] key: reason".
 * Must not: open sockets or parse certificates: estgw_config_verify_pki()
 * in pki.c checks certificates, keys and the RA EKU afterwards.
 */
#ifndef ESTGW_CONFIG_H
#define ESTGW_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ESTGW_MAX_LISTEN 8
#define ESTGW_MAX_MFR 8 /**< [brski] manufacturer lines */
#define ESTGW_CFG_MAX_KEYS 160 /**< rows the schema table may have */
#define ESTGW_ADDR_TEXT 64    /**< "[IPv6]:port" fits (at most 53) */
#define ESTGW_MAX_JPY_PROXIES 16 /**< [brski] jpy_proxies entries */

/** [policy] pop: POP linking of the CSR to the DTLS session (G4). */
enum estgw_pop {
	ESTGW_POP_OFF,        /**< challengePassword not looked at */
	ESTGW_POP_IF_PRESENT, /**< checked when the CSR carries one */
	ESTGW_POP_REQUIRED,   /**< every CSR must carry the tls-unique */
};

/** Where a value came from, for error messages (line 0: the default). */
struct estgw_cfg_src {
	unsigned line;
};

/** A listen address, parsed once by config.c (at load and --check) and
 *  bound as is by coap_server.c and metrics_http.c: nothing parses the text
 *  again. Numeric only ("IPv4:port", "[IPv6]:port"): no name is resolved,
 *  so --check and start-up agree and a reload never waits on DNS. */
struct estgw_addr {
	struct sockaddr_storage sa; /**< family, address, port; zero-padded */
	socklen_t salen;            /**< 0: not set */
	char text[ESTGW_ADDR_TEXT]; /**< as written in the file, for logs */
};

/** An address prefix ("fd00::/8", "192.0.2.7"): [brski] jpy_proxies (H6). */
struct estgw_prefix {
	int family;         /**< AF_INET or AF_INET6 */
	uint8_t addr[16];   /**< network byte order; 4 bytes used for AF_INET */
	unsigned bits;      /**< prefix length; 32 or 128 for one address */
};

/** Who makes the key for /skg and /skc (F, F4). */
enum estgw_skg_mode {
	ESTGW_SKG_UPSTREAM = 0, /**< the EST server's /serverkeygen */
	ESTGW_SKG_REGISTRAR,    /**< estgw generates it and uses /simpleenroll */
	ESTGW_SKG_OFF,          /**< not served, not advertised */
};

/** Media types of RFC 8295 bodies without an IANA CoAP Content-Format
 *  (the [rfc8295] cf key; the order of enum est_x_mt in rfc8295.h). */
#define ESTGW_X_MT_COUNT 14

/** [rfc8295]: the RFC 8295 EST extensions over CoAP (I1-I3). */
struct estgw_rfc8295 {
	uint32_t enable;             /**< EST_X_EN_* bits (pal.h); 0: all off */
	uint32_t cf[ESTGW_X_MT_COUNT]; /**< Content-Format of each media type */
	int pal_rewrite;             /**< rewrite PAL URIs of the CA (I3) */
	char *pal_authority;         /**< "host[:port]" for coaps:// PAL URIs, NULL: path only */
	int post_binary;             /**< /return bodies go up as binary DER, not Base64 */
	uint32_t max_pal, max_eecerts, max_crls, max_symmetrickeys,
		max_firmware, max_tamp, max_return, max_serverkeygen; /**< body caps */
	uint32_t keep;               /**< seconds a GET answer is kept for the retry */
	uint32_t keep_total_bytes;   /**< bytes of kept GET answers at most */
	uint32_t separate_max;       /**< largest GET answer sent as a separate response */
};

/** One [brski] manufacturer line: MASA settings for the IDevIDs one CA
 *  issued (RFC 8995 2.8, 5.4). NULL fields fall back to the [brski] ones. */
struct estgw_brski_mfr {
	char *ca;          /**< PEM: the manufacturer CA(s) this line is for */
	char *masa_url;    /**< NULL: the IDevID's id-pe-masa-url */
	char *trust;       /**< CAs of the MASA's TLS certificate */
	char *certificate; /**< TLS client certificate for this MASA */
	char *private_key;
	int legacy;        /**< send application/voucher-cose+cbor (H1) */
	unsigned line;
};

struct estgw_config {
	char *path; /**< the file that was read */
	struct {
		struct estgw_addr listen[ESTGW_MAX_LISTEN];
		struct estgw_cfg_src listen_src[ESTGW_MAX_LISTEN];
		size_t nlisten;
		char *certificate;  /**< PEM chain of the DTLS server cert */
		char *private_key;
		char *client_trust; /**< PEM bundle of accepted device CAs */
		char *root;         /**< optional extra root, e.g. "/est", or NULL */
		uint32_t max_body;     /**< largest reassembled request body (4.13) */
		uint32_t idle_timeout; /**< seconds before an idle DTLS session is closed */
		uint32_t max_sessions; /**< cap on concurrent DTLS sessions */
		int trim_handshake_buffers; /**< idle sessions give back OpenSSL's handshake buffer (J2) */
		uint32_t max_handshakes;    /**< DTLS sessions in handshake at once */
		uint32_t reasm_per_session; /**< Block1 bodies in progress per session (E4) */
		uint32_t reasm_total;       /**< Block1 bodies in progress in all */
		uint32_t reasm_total_bytes; /**< bytes of all bodies in progress */
		uint32_t rate_limit;        /**< requests per minute per client cert, 0: off */
		int serverkeygen;      /**< enum estgw_skg_mode: /skg and /skc (F) */
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
		uint32_t answer_within;    /**< seconds a device waits before 5.03 + Max-Age (D2) */
		uint32_t max_response;     /**< bytes accepted from upstream */
		uint32_t crts_refresh;     /**< seconds between /cacerts refreshes */
		uint32_t retry_default;    /**< Max-Age for 202/503 without Retry-After */
		uint32_t max_age_min;      /**< clamp for Max-Age from Retry-After */
		uint32_t max_age_max;
		int send_cte;              /**< send Content-Transfer-Encoding: base64 */
		uint32_t max_concurrent;   /**< upstream exchanges at once */
		uint32_t queue;            /**< requests waiting for a free exchange */
		uint32_t keep_issued;      /**< seconds an issued certificate is kept for a resent CSR */
		uint32_t max_kept;         /**< bound on kept answers */
		struct estgw_cfg_src url_src, trust_src, certificate_src,
			private_key_src;
	} upstream;
	struct {
		int pop;                  /**< enum estgw_pop (G4) */
		int match_serial;         /**< CSR subject serialNumber == client cert's */
		int allow_expired_idevid; /**< expired IDevIDs may /sen (G3) */
		char *idevid_trust;       /**< manufacturer CAs (IDevID issuers), or NULL */
		char *ldevid_trust;       /**< CAs of the EST CA (LDevID issuers), or NULL */
		uint32_t idevid_ops;      /**< operations an IDevID may use: 1 << enum est_op */
		uint32_t ldevid_ops;      /**< ... an LDevID */
		uint32_t other_ops;       /**< ... a certificate of neither kind */
		struct estgw_cfg_src idevid_trust_src, ldevid_trust_src,
			allow_expired_idevid_src;
	} policy;
	struct {
		int level; /**< syslog priority: LOG_ERR..LOG_DEBUG */
		int format; /**< 0: text lines, 1: JSON lines */
		char *keylog_file; /**< NSS key log of every (D)TLS session, or NULL */
		struct estgw_cfg_src keylog_file_src;
	} log;
	struct { /* constrained BRSKI registrar (H) */
		int enabled;
		char *manufacturer_trust; /**< CAs whose IDevIDs may ask for vouchers */
		char *masa_trust;         /**< CAs that sign MASA TLS certificates */
		char *masa_url;           /**< overrides every IDevID's MASA URL */
		char *masa_certificate;   /**< MASA TLS client cert; NULL: [server] certificate */
		char *masa_private_key;
		uint32_t masa_timeout;    /**< seconds for one MASA exchange */
		uint32_t max_pending;     /**< MASA exchanges in flight at once */
		int legacy_media_type;    /**< send application/voucher-cose+cbor */
		struct estgw_brski_mfr mfr[ESTGW_MAX_MFR];
		size_t nmfr;
		/* stateless join proxies (H6): off while jpy_listen.salen is 0 */
		struct estgw_addr jpy_listen;  /**< the JPY UDP port */
		struct estgw_prefix jpy_proxies[ESTGW_MAX_JPY_PROXIES];
		size_t njpy_proxies;           /**< join proxies JPY is taken from */
		uint32_t jpy_max_sessions;     /**< pledge sessions in all */
		uint32_t jpy_sessions_per_proxy; /**< pledge sessions per proxy address */
		uint32_t jpy_max_header;       /**< longest jpy_header accepted */
		uint32_t jpy_idle_timeout;     /**< seconds before an idle pledge session ends */
		uint32_t jpy_mtu;              /**< largest JPY datagram sent to a proxy */
		struct estgw_cfg_src jpy_listen_src;
		struct estgw_cfg_src enabled_src, manufacturer_trust_src, masa_trust_src,
			masa_url_src, masa_certificate_src, masa_private_key_src;
	} brski;
	struct {
		struct estgw_addr listen; /**< of /metrics and /healthz; salen 0: none */
		uint32_t crts_max_age; /**< /healthz: 503 when the CA cache is older */
		struct estgw_cfg_src listen_src;
	} metrics;
	struct { /* several instances sharing state through Redis (K1) */
		char *redis;          /**< "host:port" or "unix:/path"; NULL: no cluster (K2) */
		char *password_file;  /**< AUTH password (first line), or NULL */
		char *node;           /**< this instance's name; NULL: hostname-pid */
		char *seal_key;       /**< AES-256-GCM key file for stored answers */
		char *prefix;         /**< of every key estgw writes */
		uint32_t claim_ttl;     /**< s a dead instance's claim blocks a key */
		uint32_t store_timeout; /**< ms a request may wait on the store */
		uint32_t stream_max;    /**< telemetry stream length (MAXLEN ~) */
		int tls;                /**< refused: hiredis 0.14 has no TLS */
		struct estgw_cfg_src redis_src, tls_src;
	} cluster;
	struct estgw_rfc8295 rfc8295;
	/** Line of each schema row's (first) setting, 0: not in the file. */
	unsigned key_line[ESTGW_CFG_MAX_KEYS];
};

/** Parse and check @p path into @p cfg (zeroed first). On error returns a
 *  negative errno and writes one line "file:line: [section] key: reason"
 *  into @p err. @p cfg is freed on error. */
int estgw_config_load(const char *path, struct estgw_config *cfg, char *err,
		      size_t errlen);

/** Release everything estgw_config_load allocated. */
void estgw_config_free(struct estgw_config *cfg);

/** A restart-only key whose new value is not taken: its section, name and
 *  line in the new file (0: the key was removed, its default differs). */
typedef void (*estgw_cfg_kept_fn)(void *arg, const char *section, const char *key,
				  unsigned line);

/** SIGHUP: for every key the schema marks restart-only whose value in
 *  @p next differs from the one in @p cur, call @p kept and put @p cur's
 *  value into @p next, so that @p next describes what is in force. Live
 *  keys are left as @p next has them. Returns 0 or -ENOMEM (then free
 *  @p next: it may hold a mix). */
int estgw_config_keep_restart(const struct estgw_config *cur, struct estgw_config *next,
			      estgw_cfg_kept_fn kept, void *arg);

/** One row of the key schema, for documentation and drift tests. */
struct estgw_cfg_keyinfo {
	const char *section, *name;
	const char *type; /**< address, file, path, url, integer, boolean, enum */
	const char *def;  /**< default as spelled in the file, NULL: none */
	uint32_t min, max; /**< bounds of integers */
	int required, multi;
	int live;         /**< 1: a reload (SIGHUP) applies it; 0: needs a restart */
};

/** Row @p i of the schema into @p out; -ENOENT past the last row. */
int estgw_config_key_info(size_t i, struct estgw_cfg_keyinfo *out);

#endif
