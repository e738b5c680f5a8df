/* voucher.h - pure cBRSKI data: voucher(-request) CBOR, status telemetry,
 * IDevID certificate facts and MASA URLs (docs/conformance.md H1-H3).
 *
 * Owns: decoding voucher and voucher-request data (RFC 8366bis YANG in CBOR,
 * RFC 9254: SID keys as deltas, absolute SIDs with tag 47, or names; mixed),
 * encoding the Registrar voucher request with SIDs, decoding the vs/es
 * status CBOR, reading the IDevID's serialNumber, AKI and id-pe-masa-url, and
 * turning a MASA URL (any RFC 8995 2.3.2 form) into the request URL.
 * Pure: no crypto, I/O, logging or globals. 0 or a negative errno.
 */
#ifndef ESTGW_VOUCHER_H
#define ESTGW_VOUCHER_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/codec.h"

/** SIDs (draft-ietf-anima-rfc8366bis ietf-voucher(-request)-sid). */
#define VR_SID_VOUCHER_REQUEST 2501
#define VR_SID_VOUCHER 2451
/** CBOR tag 47: an absolute SID (RFC 9254 3.2). */
#define VR_TAG_SID 47

enum vr_kind {
	VR_REQUEST, /**< ietf-voucher-request:voucher (2501) */
	VR_VOUCHER, /**< ietf-voucher:voucher (2451) */
};

enum vr_assertion {
	VR_ASSERT_NONE = -1,
	VR_ASSERT_VERIFIED = 0,
	VR_ASSERT_LOGGED = 1,
	VR_ASSERT_PROXIMITY = 2,
};

/** The leaves we read; absent ones have ptr == NULL. Slices point into the
 *  decoded payload. Unknown leaves are skipped. */
struct vr_fields {
	int assertion; /**< enum vr_assertion */
	int rev_checks; /**< domain-cert-revocation-checks: -1 absent, 0, 1 */
	struct est_slice created_on, expires_on, nonce, serial, idevid_issuer,
		prior_signed, prox_cert, prox_pubk, prox_sha256, pinned_cert,
		pinned_pubk, pinned_sha256;
};

/** Decode voucher(-request) CBOR (@p kind tells the top node). The top key
 *  may be the SID (plain or tag 47) or the module-qualified name. -EINVAL
 *  malformed, a leaf of the wrong type or repeated; -ENOENT no top node. */
int vr_decode(const uint8_t *p, size_t len, enum vr_kind kind,
	      struct vr_fields *out);

/** What the Registrar voucher request carries (RFC 8995 5.5; docs/brski.md). */
struct rvr_in {
	int assertion;               /**< copied from the PVR, -1: leave out */
	const char *created_on;      /**< RFC 3339 */
	struct est_slice idevid_issuer; /**< OCTET STRING TLV of the AKI */
	struct est_slice nonce;
	struct est_slice prior_signed; /**< the PVR exactly as received */
	struct est_slice serial;
};

/** Encode {2501: {1, 2, 5, 7, 9, 13}} with SID deltas, keys ascending. */
int vr_encode_rvr(const struct rvr_in *in, uint8_t **out, size_t *len);

/** vs / es telemetry (RFC 8995 5.7, 5.9.4): {"version", "status",
 *  ?"reason", ?"reason-context"}. */
struct brski_status {
	uint64_t version;
	int status;             /**< 0 or 1 */
	struct est_slice reason; /**< ptr NULL when absent */
	int has_context;
};

/** Decode the CBOR status map. -EINVAL: not a map, version/status missing
 *  or of the wrong type, reason not text, reason-context not a map, a key
 *  repeated; or status false without a reason (RFC 8995 5.7 SHOULD, taken
 *  as MUST as peers do). Unknown keys are skipped. */
int brski_status_decode(const uint8_t *p, size_t len, struct brski_status *out);

/** The same status as JSON (CF 50, RFC 8995 5.7 is JSON): same rules; the
 *  reason slice is the raw text between the quotes (escapes not undone). */
int brski_status_decode_json(const uint8_t *p, size_t len,
			     struct brski_status *out);

/** The subject serialNumber (2.5.4.5) of a certificate (DER). -ENOENT when
 *  absent. */
int idevid_serial(const uint8_t *cert, size_t len, struct est_slice *serial);

/** One extension's extnValue (the whole OCTET STRING TLV) by OID (content
 *  bytes of the OID, e.g. 55 1D 23 for AKI). -ENOENT when absent. */
int idevid_ext(const uint8_t *cert, size_t len, const uint8_t *oid,
	       size_t oidlen, struct est_slice *extn_value);

/** idevid-issuer (RFC 8366bis): the IDevID's AKI extnValue TLV
 *  (04 len 30 ...). -ENOENT when the certificate has no AKI. */
int idevid_issuer(const uint8_t *cert, size_t len, struct est_slice *out);

/** idevid-issuer made from a key identifier (when there is no AKI):
 *  04 len 30 len 80 len keyid. @p out needs keyidlen + 6 bytes. */
int idevid_issuer_from_keyid(const uint8_t *keyid, size_t keyidlen,
			     uint8_t *out, size_t outsize, size_t *outlen);

/** The id-pe-masa-url (1.3.6.1.5.5.7.1.32) IA5String. -ENOENT if absent. */
int idevid_masa_url(const uint8_t *cert, size_t len, struct est_slice *url);

/** The voucher request URL from a MASA URL in any of these forms:
 *  "host[:port]", "host[:port]/path", "https://host[:port]" or
 *  "https://host[:port]/path". Without a path the BRSKI base
 *  "/.well-known/brski" is used; then "/requestvoucher" is appended.
 *  Another scheme, an empty host, spaces or control characters, or a result
 *  longer than @p outsize - 1 -> -EINVAL. */
int masa_request_url(const char *in, size_t len, char *out, size_t outsize);

#endif
