/* skg.h - pure codecs for server-side key generation (B6, F, G6, G7 in
 * docs/conformance.md).
 *
 * Owns: MIME media types and parameters (RFC 9110 8.3), the multipart/mixed
 * parser for upstream /serverkeygen answers (RFC 2046 5.1, RFC 7030 4.4.2),
 * the application/multipart-core writer (RFC 8710, RFC 9148 Figure 2), the
 * private-key format checks and the SEC1/PKCS#1 -> PKCS#8 wrapper, the CMS
 * check of an encrypted key, and the CSR attribute queries keygen needs.
 * Must not: allocate global state, log, or touch the network. Every length
 * read from input is checked before use; no recursion. Functions return 0
 * or a negative errno (-EINVAL malformed, -E2BIG over a fixed bound,
 * -ENOSPC output too small, -ENOENT absent, -ENOMEM).
 */
#ifndef ESTGW_SKG_H
#define ESTGW_SKG_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/codec.h"

/* ---- media types -------------------------------------------------------- */

/** Split a Content-Type value into the media type ("type/subtype", both
 *  RFC 9110 tokens) and the parameter text that follows it (starting at
 *  its first ';', or empty). Whitespace (SP, HTAB, CR, LF) around them is
 *  skipped. -EINVAL when the value is not of that shape. */
int est_mime_type(const char *v, size_t len, struct est_slice *type,
		  struct est_slice *params);

/** True when @p type equals @p want, ignoring ASCII case. */
int est_mime_is(const struct est_slice *type, const char *want);

/** The value of parameter @p name (matched without case) in @p params as
 *  est_mime_type gave them: a token, or a quoted-string with its quotes
 *  and backslash escapes removed. Written NUL-terminated to @p out;
 *  *outlen without the NUL. -ENOENT when absent, -EINVAL when the
 *  parameter text is malformed or names @p name twice, -ENOSPC when the
 *  value does not fit. */
int est_mime_param(const struct est_slice *params, const char *name,
		   char *out, size_t outsize, size_t *outlen);

/* ---- multipart/mixed (RFC 2046 5.1.1) ----------------------------------- */

#define EST_MP_BOUNDARY_MAX 70 /**< RFC 2046: 1..70 characters */
#define EST_MP_MAX_PARTS 8     /**< parts returned; more is -E2BIG */
#define EST_MP_MAX_HEADERS 16  /**< header fields per part; more is -E2BIG */

/** One body part; slices point into the parsed body. */
struct est_mp_part {
	struct est_slice type;   /**< media type of Content-Type; len 0: absent */
	struct est_slice params; /**< its parameter text */
	struct est_slice cte;    /**< Content-Transfer-Encoding value, trimmed */
	struct est_slice body;   /**< the content, without the line break that
				      belongs to the next delimiter */
};

/** Check a boundary (RFC 2046 5.1.1 bchars, 1..70, not ending in SP). */
int est_mp_boundary_ok(const char *b, size_t len);

/** Parse a multipart body with @p boundary (the parameter value, without
 *  the leading "--"). Tolerated: a preamble and an epilogue, CRLF or bare
 *  LF line ends, transport padding (SP/HTAB) after a delimiter, folded
 *  header lines, header names in any case, unknown header fields. Needs:
 *  an opening delimiter, at least one part, a close delimiter, each part's
 *  header block ended by an empty line (or by the next delimiter), at most
 *  one Content-Type and one Content-Transfer-Encoding per part.
 *  On failure *why (when given) is a static English reason for a
 *  diagnostic. */
int est_multipart_parse(const uint8_t *body, size_t len, const char *boundary,
			size_t blen, struct est_mp_part *parts,
			size_t maxparts, size_t *n, const char **why);

/* ---- application/multipart-core (RFC 8710) ------------------------------ */

/** One representation of a multipart-core collection. */
struct est_mpcore_item {
	unsigned cf; /**< Content-Format, 0..65535 */
	struct est_slice data;
};

/** Encode [cf, bstr, cf, bstr, ...] as CBOR with minimal integer and length
 *  forms (RFC 8949 4.2.1), into a malloc'd @p out. */
int est_mpcore_encode(const struct est_mpcore_item *items, size_t n,
		      uint8_t **out, size_t *outlen);

/* ---- private keys and CMS (RFC 5958, RFC 5915, RFC 8017, RFC 5652) ------ */

/** What form a private key came in. */
enum est_key_form {
	EST_KEY_PKCS8 = 0, /**< PrivateKeyInfo / OneAsymmetricKey as is */
	EST_KEY_SEC1,      /**< ECPrivateKey, wrapped */
	EST_KEY_PKCS1,     /**< RSAPrivateKey, wrapped */
};

/** Give @p der (one private key) as PKCS#8 PrivateKeyInfo in a malloc'd
 *  @p out (B6): PKCS#8 is copied after a shape check; a SEC1 EC key
 *  is wrapped with id-ecPublicKey and the curve of its parameters field
 *  (which is then left out of the inner key, as OpenSSL writes it; a SEC1
 *  key without parameters is -EINVAL: the curve is unknown); a PKCS#1 RSA
 *  key is wrapped with rsaEncryption. *form tells which came in. The
 *  caller zeroes @p out before freeing it. */
int est_privkey_to_pkcs8(const uint8_t *der, size_t len, uint8_t **out,
			 size_t *outlen, enum est_key_form *form);

/** Check that @p der is one CMS ContentInfo whose contentType is
 *  id-signedData, id-envelopedData or id-ct-authEnvelopedData (the shapes
 *  of an encrypted server-generated key, RFC 7030 4.4.2). Nothing inside is
 *  decrypted or verified (F3). */
int est_cms_key_check(const uint8_t *der, size_t len);

/** The whole Attribute TLV with type @p oid (content octets) among the
 *  attributes of a well-formed CSR. -ENOENT when absent, -EINVAL when the
 *  CSR is malformed or lists the attribute twice. */
int est_csr_attr(const uint8_t *csr, size_t len, const uint8_t *oid,
		 size_t oidlen, struct est_slice *attr);

/** 1 when the CSR asks for an encrypted server-generated key: it carries
 *  SMIMECapabilities (1.2.840.113549.1.9.15) and DecryptKeyIdentifier
 *  (1.2.840.113549.1.9.16.2.37) or AsymmetricDecryptKeyIdentifier
 *  (1.2.840.113549.1.9.16.2.54) (RFC 7030 4.4.1.1, 4.4.1.2; RFC 9148
 *  4.8); 0 when not; -EINVAL when the CSR is malformed. */
int est_csr_wants_encrypted_key(const uint8_t *csr, size_t len);

/** OID content octets of extensionRequest (1.2.840.113549.1.9.14). */
extern const uint8_t est_oid_extension_request[9];

#endif
