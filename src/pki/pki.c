/* pki.c - start-up checks of the certificates and keys named in the config.
 *
 * Owns: loading each PEM file once with mbedTLS and checking it can serve its
 * role; the id-kp-cmcRA test (RFC 7030 s3.7, RFC 9148 s5: the Registrar
 * authenticates to the EST server as an RA; a warning when the DTLS server
 * certificate lacks it, RFC 9148 s9.2). Only mbedTLS is used here.
 * Must not: log or keep keys: everything is freed before returning.
 */
#include "pki/pki.h"

#include "pki/brski_pki.h"

#include "estgw/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <mbedtls/version.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

/** id-kp-cmcRA, 1.3.6.1.5.5.7.3.28 (RFC 6402 s2.10) */
#define OID_CMC_RA MBEDTLS_OID_KP "\x1c"

/** One file-valued key of the config, for messages. */
struct pki_item {
	const char *section;
	const char *key;
	const char *path;
	unsigned line;
};

/** Where messages go. */
struct pki_out {
	const char *file; /**< the config file */
	char *err;
	size_t errlen;
	char *warn;
	size_t warnlen;
};

__attribute__((format(printf, 5, 0)))
static void vformat(char *buf, size_t len, const struct pki_out *o,
		    const struct pki_item *it, const char *fmt, va_list ap)
{
	int n = snprintf(buf, len, "%s:%u: [%s] %s: ", o->file, it->line,
			 it->section, it->key);

	if (n >= 0 && (size_t)n < len)
		vsnprintf(buf + n, len - (size_t)n, fmt, ap);
}

__attribute__((format(printf, 4, 5)))
static int pki_fail(const struct pki_out *o, const struct pki_item *it, int rc,
		    const char *fmt, ...)
{
	va_list ap;

	if (!o->err || !o->errlen)
		return rc;
	va_start(ap, fmt);
	vformat(o->err, o->errlen, o, it, fmt, ap);
	va_end(ap);
	return rc;
}

/** Append one warning line to o->warn. */
__attribute__((format(printf, 3, 4)))
static void pki_warn(const struct pki_out *o, const struct pki_item *it,
		     const char *fmt, ...)
{
	va_list ap;
	size_t used;

	if (!o->warn || !o->warnlen)
		return;
	used = strlen(o->warn);
	if (used && used + 2 < o->warnlen)
		o->warn[used++] = '\n';
	if (used + 1 >= o->warnlen)
		return;
	va_start(ap, fmt);
	vformat(o->warn + used, o->warnlen - used, o, it, fmt, ap);
	va_end(ap);
}

/** Negative errno for an mbedTLS error code. */
static int mbed_errno(int ret)
{
	switch (ret) {
	case MBEDTLS_ERR_X509_FILE_IO_ERROR:
	case MBEDTLS_ERR_PK_FILE_IO_ERROR:
		return -EIO;
	case MBEDTLS_ERR_X509_ALLOC_FAILED:
	case MBEDTLS_ERR_PK_ALLOC_FAILED:
		return -ENOMEM;
	default:
		return -EINVAL;
	}
}

/** "mbedtls -0xNNNN: text" for messages. */
static const char *mbed_why(int ret, char *buf, size_t len)
{
	char text[128];
	int code = ret < 0 ? -ret : ret;

	mbedtls_strerror(ret, text, sizeof(text));
	snprintf(buf, len, "mbedtls -0x%04x: %s", (unsigned)code, text);
	return buf;
}

/** Parse a PEM (or DER) file into @p crt; @p strict: every entry must parse. */
static int load_certs(const struct pki_out *o, const struct pki_item *it,
		      mbedtls_x509_crt *crt, int strict)
{
	char why[192];
	int ret;

	if (!it->path)
		return pki_fail(o, it, -EINVAL, "not set");
	ret = mbedtls_x509_crt_parse_file(crt, it->path);
	if (ret < 0)
		return pki_fail(o, it, mbed_errno(ret), "%s: no certificate found (%s)",
				it->path, mbed_why(ret, why, sizeof(why)));
	if (ret > 0 && strict)
		return pki_fail(o, it, -EINVAL, "%s: %d certificate(s) in the file do not parse",
				it->path, ret);
	if (ret > 0)
		pki_warn(o, it, "%s: %d certificate(s) in the bundle do not parse with mbedTLS",
			 it->path, ret);
	return 0;
}

static int load_key(const struct pki_out *o, const struct pki_item *it,
		    mbedtls_pk_context *pk)
{
	char why[192];
	int ret;

	if (!it->path)
		return pki_fail(o, it, -EINVAL, "not set");
	ret = mbedtls_pk_parse_keyfile(pk, it->path, NULL);
	if (ret == MBEDTLS_ERR_PK_PASSWORD_REQUIRED)
		return pki_fail(o, it, -EINVAL,
				"%s is encrypted; estgw needs an unencrypted key (keep it mode 0600)",
				it->path);
	if (ret != 0)
		return pki_fail(o, it, mbed_errno(ret), "%s: not a private key (%s)", it->path,
				mbed_why(ret, why, sizeof(why)));
	return 0;
}

/** The key must belong to the first certificate of the chain (the leaf). */
static int check_pair(const struct pki_out *o, const struct pki_item *cert,
		      const struct pki_item *key, mbedtls_x509_crt *crt,
		      const mbedtls_pk_context *pk)
{
	if (mbedtls_pk_check_pair(&crt->pk, pk) != 0)
		return pki_fail(o, key, -EINVAL,
				"%s does not match the first certificate (the leaf) in %s "
				"(line %u)", key->path, cert->path, cert->line);
	return 0;
}

/* mbedtls_x509_crt_check_extended_key_usage() also says yes when the EKU
 * extension is absent or holds anyExtendedKeyUsage; the RA needs the OID
 * itself, so we walk the list. */
static int crt_has_cmcra(const mbedtls_x509_crt *crt)
{
	const size_t len = sizeof(OID_CMC_RA) - 1;

	if (!(crt->ext_types & MBEDTLS_X509_EXT_EXTENDED_KEY_USAGE))
		return 0;
	for (const mbedtls_x509_sequence *cur = &crt->ext_key_usage; cur; cur = cur->next)
		if (cur->buf.len == len && memcmp(cur->buf.p, OID_CMC_RA, len) == 0)
			return 1;
	return 0;
}

int estgw_pki_cert_has_cmcra(const unsigned char *der, size_t len)
{
	mbedtls_x509_crt crt;
	int rc;

	mbedtls_x509_crt_init(&crt);
	rc = mbedtls_x509_crt_parse_der(&crt, der, len) == 0 ? crt_has_cmcra(&crt) : -EINVAL;
	mbedtls_x509_crt_free(&crt);
	return rc;
}

static int check_cmcra(const struct pki_out *o, const struct pki_item *it,
		       const mbedtls_x509_crt *crt)
{
	if (crt_has_cmcra(crt))
		return 0;
	return pki_fail(o, it, -EINVAL,
			"%s: the first certificate lacks extended key usage "
			"id-kp-cmcRA (1.3.6.1.5.5.7.3.28), which the EST server "
			"needs to accept the gateway as a Registration Authority",
			it->path);
}

/* RFC 7030 s3.6.1, RFC 9148 s9.2 (G8): a device whose trust in the
 * Registrar comes from its Implicit TA database checks that the DTLS server
 * certificate carries id-kp-cmcRA. Devices with Explicit TAs (the /crts
 * answer) do not, so its absence is a warning, not a refusal. */
static void warn_server_cmcra(const struct pki_out *o, const struct pki_item *it,
			      const mbedtls_x509_crt *crt)
{
	if (crt_has_cmcra(crt))
		return;
	pki_warn(o, it, "%s: the first certificate %s id-kp-cmcRA "
		 "(1.3.6.1.5.5.7.3.28); a device that checks the Registrar against its "
		 "Implicit TA database requires it (RFC 7030 3.6.1, RFC 9148 9.2)",
		 it->path,
		 (crt->ext_types & MBEDTLS_X509_EXT_EXTENDED_KEY_USAGE) ?
			 "has extended key usage without" : "has no extended key usage extension, so no");
}

static void warn_validity(const struct pki_out *o, const struct pki_item *it,
			  const mbedtls_x509_crt *crt)
{
	if (mbedtls_x509_time_is_past(&crt->valid_to))
		pki_warn(o, it, "%s: the first certificate has expired", it->path);
	if (mbedtls_x509_time_is_future(&crt->valid_from))
		pki_warn(o, it, "%s: the first certificate is not valid yet", it->path);
}

/** A world-readable key: a warning, or with @p refuse an error (the RA key
 *  lets its holder enroll any subject at the EST CA, G4). */
static int check_key_mode(const struct pki_out *o, const struct pki_item *it,
			  int refuse)
{
	struct stat st;

	if (!it->path || stat(it->path, &st) != 0 || !(st.st_mode & S_IROTH))
		return 0;
	if (refuse)
		return pki_fail(o, it, -EACCES,
				"%s is world-readable (mode %04o); the RA key must not be: "
				"chmod o-r (0600) it", it->path, (unsigned)(st.st_mode & 07777));
	pki_warn(o, it, "%s is world-readable (mode %04o); chmod o-r (0600) it",
		 it->path, (unsigned)(st.st_mode & 07777));
	return 0;
}

/** A certificate chain and its key; @p ra: the leaf must carry id-kp-cmcRA,
 *  else (the DTLS server certificate) a leaf without it is a warning. */
static int verify_identity(const struct pki_out *o, const struct pki_item *cert,
			   const struct pki_item *key, int ra)
{
	mbedtls_x509_crt crt;
	mbedtls_pk_context pk;
	int rc;

	mbedtls_x509_crt_init(&crt);
	mbedtls_pk_init(&pk);
	rc = check_key_mode(o, key, ra);
	if (!rc)
		rc = load_certs(o, cert, &crt, 1);
	if (!rc)
		rc = load_key(o, key, &pk);
	if (!rc)
		rc = check_pair(o, cert, key, &crt, &pk);
	if (!rc && ra)
		rc = check_cmcra(o, cert, &crt);
	else if (!rc)
		warn_server_cmcra(o, cert, &crt);
	if (!rc)
		warn_validity(o, cert, &crt);
	mbedtls_pk_free(&pk);
	mbedtls_x509_crt_free(&crt);
	return rc;
}

/** A trust bundle: at least one certificate. */
static int verify_bundle(const struct pki_out *o, const struct pki_item *it)
{
	mbedtls_x509_crt crt;
	int rc;

	mbedtls_x509_crt_init(&crt);
	rc = load_certs(o, it, &crt, 0);
	mbedtls_x509_crt_free(&crt);
	return rc;
}

int estgw_config_verify_pki(const struct estgw_config *cfg, char *err,
			    size_t errlen, char *warn, size_t warnlen)
{
	const struct pki_out o = { cfg->path ? cfg->path : "?", err, errlen, warn, warnlen };
	const struct pki_item srv_crt = { "server", "certificate", cfg->server.certificate,
					  cfg->server.certificate_src.line };
	const struct pki_item srv_key = { "server", "private_key", cfg->server.private_key,
					  cfg->server.private_key_src.line };
	const struct pki_item clients = { "server", "client_trust", cfg->server.client_trust,
					  cfg->server.client_trust_src.line };
	const struct pki_item up_trust = { "upstream", "trust", cfg->upstream.trust,
					   cfg->upstream.trust_src.line };
	const struct pki_item ra_crt = { "upstream", "certificate", cfg->upstream.certificate,
					 cfg->upstream.certificate_src.line };
	const struct pki_item ra_key = { "upstream", "private_key", cfg->upstream.private_key,
					 cfg->upstream.private_key_src.line };
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (warn && warnlen)
		warn[0] = '\0';
	rc = verify_identity(&o, &srv_crt, &srv_key, 0);
	if (!rc)
		rc = verify_bundle(&o, &clients);
	if (!rc)
		rc = verify_bundle(&o, &up_trust);
	if (!rc)
		rc = verify_identity(&o, &ra_crt, &ra_key, 1);
	if (!rc)
		rc = brski_verify_config(cfg, err, errlen); /* H4 */
	return rc;
}

void estgw_pki_sha256(const struct estgw_buf *parts, size_t n,
		      unsigned char out[32])
{
	mbedtls_sha256_context c;

	mbedtls_sha256_init(&c);
	mbedtls_sha256_starts_ret(&c, 0);
	for (size_t i = 0; i < n; i++) {
		/* length-prefix each part so that boundaries count */
		uint64_t len = parts[i].len;
		mbedtls_sha256_update_ret(&c, (const unsigned char *)&len, sizeof(len));
		mbedtls_sha256_update_ret(&c, parts[i].ptr, parts[i].len);
	}
	mbedtls_sha256_finish_ret(&c, out);
	mbedtls_sha256_free(&c);
}

const char *estgw_pki_lib_version(void)
{
	static char v[64];

	if (!v[0])
		mbedtls_version_get_string_full(v);
	return v;
}
