/* cms.h - shape checks of the CMS-family bodies RFC 8295 carries.
 *
 * Owns: bounded DER walks (no decryption, no signature check) that tell
 * whether a body is one ContentInfo (RFC 5652 §3) and of which content
 * type, the SignedData fields RFC 8295 answers are told apart by
 * (certificates, CRLs, eContentType), a PKCS#12 PFX (RFC 7292 §4), and
 * the TAMP message type of a body (RFC 5934 §4). Used before any 2.xx is
 * sent for such a body (I2). Must not: allocate, log, keep globals.
 */
#ifndef ESTGW_CMS_H
#define ESTGW_CMS_H

#include <stddef.h>
#include <stdint.h>

#include "estgw/codec.h"

/** Content types estgw tells apart (RFC 5652, RFC 6032, RFC 5083,
 *  RFC 4108, RFC 6031, RFC 7191, RFC 5934). */
enum est_cms_type {
	EST_CMS_OTHER = 0,       /**< a well-formed OID not in this list */
	EST_CMS_DATA,            /**< id-data */
	EST_CMS_SIGNED,          /**< id-signedData */
	EST_CMS_ENVELOPED,       /**< id-envelopedData */
	EST_CMS_ENCRYPTED,       /**< id-encryptedData */
	EST_CMS_AUTH_ENVELOPED,  /**< id-ct-authEnvelopedData (RFC 5083) */
	EST_CMS_COMPRESSED,      /**< id-ct-compressedData (RFC 3274) */
	EST_CMS_ENC_KEY_PKG,     /**< id-ct-KP-encryptedKeyPkg (RFC 6032) */
	EST_CMS_SYM_KEY_PKG,     /**< id-ct-KP-sKeyPackage (RFC 6031) */
	EST_CMS_ASYM_KEY_PKG,    /**< id-ct-KP-aKeyPackage (RFC 5958) */
	EST_CMS_FW_PKG,          /**< id-ct-firmwarePackage (RFC 4108) */
	EST_CMS_FW_RECEIPT,      /**< id-ct-firmwareLoadReceipt */
	EST_CMS_FW_ERROR,        /**< id-ct-firmwareLoadError */
	EST_CMS_KP_RECEIPT,      /**< id-ct-KP-keyPackageReceipt (RFC 7191) */
	EST_CMS_KP_ERROR,        /**< id-ct-KP-keyPackageError (RFC 7191) */
	EST_CMS_TAMP_FIRST,      /**< the eleven TAMP types follow in RFC 5934 order */
	EST_CMS_TAMP_STATUS_QUERY = EST_CMS_TAMP_FIRST,
	EST_CMS_TAMP_STATUS_RESPONSE,
	EST_CMS_TAMP_UPDATE,
	EST_CMS_TAMP_UPDATE_CONFIRM,
	EST_CMS_TAMP_APEX_UPDATE,
	EST_CMS_TAMP_APEX_UPDATE_CONFIRM,
	EST_CMS_TAMP_COMMUNITY_UPDATE,
	EST_CMS_TAMP_COMMUNITY_UPDATE_CONFIRM,
	EST_CMS_TAMP_SEQ_ADJUST,
	EST_CMS_TAMP_SEQ_ADJUST_CONFIRM,
	EST_CMS_TAMP_ERROR,
	EST_CMS_TYPE_COUNT
};

/** The content type an OID (content bytes of the OID TLV) names. */
enum est_cms_type est_cms_type_of_oid(const uint8_t *oid, size_t len);

/** The RFC 7193 parameter token of a type ("signedData", "sKeyPackage",
 *  ...), or NULL when RFC 7193 §2 names none. */
const char *est_cms_token(enum est_cms_type t);

/** What a ContentInfo holds. */
struct est_cms_info {
	enum est_cms_type outer;   /**< the ContentInfo's contentType */
	struct est_slice content;  /**< the [0] EXPLICIT content (its TLV) */
	/* SignedData only (outer == EST_CMS_SIGNED): */
	enum est_cms_type econtent; /**< encapContentInfo eContentType */
	int has_econtent;          /**< eContent present (not detached) */
	size_t ncerts, ncrls;      /**< elements of [0] certificates, [1] crls */
	int has_certs, has_crls;   /**< the fields are present */
	size_t nsigners;           /**< SignerInfos */
};

/** Check that @p der (@p len bytes) is exactly one ContentInfo ::=
 *  SEQUENCE { OID, [0] EXPLICIT ANY } in DER, and for SignedData that its
 *  fields are in RFC 5652 §5.1 order with the right tags. 0 and @p info
 *  filled, or -EINVAL. */
int est_cms_check(const uint8_t *der, size_t len, struct est_cms_info *info);

/** A PKCS#12 PFX (RFC 7292 §4): SEQUENCE { version INTEGER 3, authSafe
 *  ContentInfo (data or signedData), macData SEQUENCE OPTIONAL }, exactly
 *  @p len bytes. 0 or -EINVAL. */
int est_pkcs12_check(const uint8_t *der, size_t len);

/** The TAMP message type (EST_CMS_TAMP_*) of @p der: the ContentInfo's own
 *  type, or the eContentType of the SignedData it is (RFC 5934 §2: TAMP
 *  messages are usually signed). -EINVAL when @p der is no ContentInfo,
 *  -ENOENT when it carries no TAMP type. */
int est_tamp_type(const uint8_t *der, size_t len, enum est_cms_type *type);

#endif
