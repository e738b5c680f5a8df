/* codec.h - pure encoders/decoders for EST payloads (B, B1, B5, G6 of
 * docs/conformance.md).
 *
 * Owns: Base64 both ways, bounded DER walking, the PKCS#7 certs-only walker
 * and SubjectPublicKeyInfo extraction from certificates and CSRs.
 * Must not: allocate global state, log, or touch the network. Every length
 * read from input is checked before use; nesting depth is fixed by the code,
 * never taken from the input. All functions return 0 or a negative errno
 * (-EINVAL malformed input, -ENOSPC output too small, -ENOMEM, -ENOENT none).
 */
#ifndef ESTGW_CODEC_H
#define ESTGW_CODEC_H

#include <stddef.h>
#include <stdint.h>

/** A read-only byte slice pointing into a caller's buffer. */
struct est_slice {
	const uint8_t *ptr;
	size_t len;
};

/** Length of the Base64 text (with padding, no line breaks) for @p n bytes.
 *  Saturates at SIZE_MAX when the length would not fit in a size_t. */
size_t est_b64_encoded_len(size_t n);

/** Encode @p in as Base64 with '=' padding and no line breaks into @p out
 *  (needs est_b64_encoded_len(inlen) + 1 bytes; NUL-terminated).
 *  *outlen is set to the text length without the NUL. */
int est_b64_encode(const uint8_t *in, size_t inlen, char *out, size_t outsize,
		   size_t *outlen);

/** Characters per line of est_b64_encode_mime (RFC 2045 §6.8 allows up to
 *  76; 64 is the PEM line, see base64.c for why). A multiple of 4. */
#define EST_B64_LINE 64

/** Length of est_b64_encode_mime's text for @p n bytes: every EST_B64_LINE
 *  characters of Base64 and the last, shorter run each followed by CRLF; 0
 *  for n == 0. Saturates at SIZE_MAX like est_b64_encoded_len. */
size_t est_b64_mime_len(size_t n);

/** Encode @p in as MIME Base64 (B5; RFC 2045 §6.8): padded, lines of
 *  EST_B64_LINE characters (the last one shorter unless inlen is a multiple
 *  of EST_B64_LINE / 4 * 3), each ending in CRLF; no empty line, nothing for
 *  empty input. @p out needs est_b64_mime_len(inlen) + 1 bytes (NUL added);
 *  *outlen is the text length without the NUL. What estgw POSTs upstream. */
int est_b64_encode_mime(const uint8_t *in, size_t inlen, char *out,
			size_t outsize, size_t *outlen);

/** Strict-but-tolerant Base64 decode (B5, RFC 8951): whitespace (SP, TAB,
 *  CR, LF) anywhere is skipped; '=' padding is optional but if present must be
 *  correct; any other character, a dangling single symbol, or non-zero pad bits
 *  -> -EINVAL. @p out needs at least (inlen / 4 + 1) * 3 bytes. */
int est_b64_decode(const char *in, size_t inlen, uint8_t *out, size_t outsize,
		   size_t *outlen);

/** Read one DER TLV header at @p p (within @p len bytes): tag byte, and the
 *  content slice. Only single-byte tags and definite lengths below 2^31 are
 *  accepted, in minimal DER form (short form under 128, no leading zero
 *  octets); the content must fit in @p len. *total is header + content. */
int est_der_tlv(const uint8_t *p, size_t len, uint8_t *tag,
		struct est_slice *content, size_t *total);

/** A read cursor over a run of DER elements (e.g. one element's content). */
struct est_der_cur {
	const uint8_t *p;
	size_t len;
};

/** Take the next element, whatever its tag; @p whole (optional) covers the
 *  whole TLV. The cursor moves past it. */
int est_der_next(struct est_der_cur *c, uint8_t *tag, struct est_slice *content,
		 struct est_slice *whole);

/** Take the next element, which must carry tag @p want (-EINVAL and the
 *  cursor unmoved otherwise). */
int est_der_expect(struct est_der_cur *c, uint8_t want,
		   struct est_slice *content, struct est_slice *whole);

/** True (1) when @p buf is exactly one complete DER element starting with
 *  SEQUENCE (0x30), i.e. plausibly binary DER rather than Base64 (B5);
 *  0 otherwise. Only the outer header is checked. */
int est_der_is_single_sequence(const uint8_t *buf, size_t len);

/** Decode an upstream EST body that should be DER: Base64 (any line breaks)
 *  or, from a non-conforming CA, raw DER (B5). On success @p out holds
 *  the DER (malloc'd, caller frees), *was_binary tells which form came in.
 *  The result is checked to be one complete DER SEQUENCE (outer header
 *  only); otherwise -EINVAL, or -ENOMEM. */
int est_body_to_der(const uint8_t *body, size_t len, uint8_t **out,
		    size_t *outlen, int *was_binary);

/** Maximum number of certificates the PKCS#7 walker returns. */
#define EST_PKCS7_MAX_CERTS 32

/** Walk a certs-only PKCS#7 SignedData (ContentInfo with id-signedData,
 *  RFC 5652 / RFC 7030 4.1.3) and return a slice for each certificate in
 *  SignedData.certificates ([0] IMPLICIT SET OF Certificate). Slices point
 *  into @p der and cover each whole Certificate TLV. *n gets the count
 *  (0 is valid, also for an absent certificates field: -ENOENT is not
 *  returned). Every entry must be a SEQUENCE (no other CertificateChoices);
 *  more than @p maxcerts entries is -E2BIG. Nothing may trail. */
int est_pkcs7_certs(const uint8_t *der, size_t len, struct est_slice *certs,
		    size_t maxcerts, size_t *n);

/** The SubjectPublicKeyInfo TLV (whole element) of an X.509 Certificate.
 *  The Certificate must fill @p len exactly and have the RFC 5280 shape down
 *  to the TBSCertificate fields; signature and contents are not checked. */
int est_cert_spki(const uint8_t *cert, size_t len, struct est_slice *spki);

/** The raw subject and issuer Name TLVs of an X.509 Certificate. */
int est_cert_names(const uint8_t *cert, size_t len, struct est_slice *issuer,
		   struct est_slice *subject);

/** The SubjectPublicKeyInfo TLV of a PKCS#10 CertificationRequest
 *  (after the same checks as est_csr_check). */
int est_csr_spki(const uint8_t *csr, size_t len, struct est_slice *spki);

/** The subject Name TLV and the content of the [0] attributes field of a
 *  CSR (after the same checks as est_csr_check); each attribute in it is
 *  a SEQUENCE. */
int est_csr_parts(const uint8_t *csr, size_t len, struct est_slice *subject,
		  struct est_slice *attrs);

/** Check that @p csr is one well-formed PKCS#10 CertificationRequest
 *  (SEQUENCE { CertificationRequestInfo, AlgorithmIdentifier, BIT STRING }),
 *  with nothing trailing. The CertificationRequestInfo needs version 0 and
 *  the [0] attributes field (not OPTIONAL in RFC 2986; mbedTLS requires it
 *  too), each attribute a SEQUENCE. Signature is not verified here. */
int est_csr_check(const uint8_t *csr, size_t len);

/** What estgw's policy needs from a CSR (F3, G4). Slices point into
 *  the CSR; a string slice is the content of the DER string (no header). */
struct est_csr_info {
	struct est_slice subject;   /**< the whole subject Name TLV */
	struct est_slice serial;    /**< subject serialNumber value; ptr NULL if absent */
	int has_challenge;          /**< challengePassword present */
	struct est_slice challenge; /**< its PrintableString/UTF8String text */
	int has_smime_caps;         /**< SMIMECapabilities attribute present */
	int has_decrypt_key_id;     /**< DecryptKeyIdentifier present */
	int has_asym_decrypt_key_id; /**< AsymmetricDecryptKeyIdentifier present */
};

/** Walk the attributes of a PKCS#10 CSR (after est_csr_check) into @p out.
 *  challengePassword must hold exactly one PrintableString or UTF8String
 *  and appear at most once; the subject must hold at most one serialNumber
 *  (either ambiguity is -EINVAL). Other attributes are skipped but must be
 *  SEQUENCE { OID, non-empty SET }. */
int est_csr_info(const uint8_t *csr, size_t len, struct est_csr_info *out);

/** The value (content, any string type) of the single serialNumber
 *  attribute (2.5.4.5) in the Name TLV @p name: 0, -ENOENT when there is
 *  none, -EINVAL when malformed or present more than once. */
int est_name_serial(struct est_slice name, struct est_slice *serial);

#endif
