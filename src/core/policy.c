/* policy.c - the per-request security decisions (see policy.h).
 *
 * The order of the checks is the order of the verdicts a device sees:
 * certificate kind and expiry first (they do not depend on the body), then
 * the CSR: well-formed, POP link, serialNumber, re-enroll subject.
 */
#include "core/policy.h"

#include <errno.h>
#include <string.h>

#include "estgw/codec.h"

#define TLS_UNIQUE_MAX 64 /* 12 bytes for (D)TLS 1.2; room for other PRFs */

static int deny(struct estgw_policy_verdict *v, uint8_t code, const char *diag)
{
	v->code = code;
	v->diag = diag;
	v->note = NULL;
	return -EACCES;
}

const char *estgw_client_kind_name(enum estgw_client_kind k)
{
	switch (k) {
	case ESTGW_CLIENT_IDEVID: return "idevid";
	case ESTGW_CLIENT_LDEVID: return "ldevid";
	default: return "other";
	}
}

static uint32_t ops_of(const struct estgw_config *cfg, enum estgw_client_kind k)
{
	switch (k) {
	case ESTGW_CLIENT_IDEVID: return cfg->policy.idevid_ops;
	case ESTGW_CLIENT_LDEVID: return cfg->policy.ldevid_ops;
	default: return cfg->policy.other_ops;
	}
}

/** RFC 9148 3, 9.1 (G3): an expired certificate passes only as a
 *  manufacturer's IDevID, only for /sen, only when configured. */
static int check_expiry(const struct estgw_config *cfg,
			const struct estgw_policy_req *req,
			struct estgw_policy_verdict *v)
{
	if (!req->cert_expired)
		return 0;
	if (!cfg->policy.allow_expired_idevid || req->kind != ESTGW_CLIENT_IDEVID)
		return deny(v, EST_CODE(4, 3), "client certificate expired");
	if (req->op != EST_OP_SEN)
		return deny(v, EST_CODE(4, 3), "an expired IDevID may only enroll (sen)");
	v->note = "expired IDevID accepted for sen";
	return 0;
}

/** Constant-time comparison of two equal-length buffers. */
static int same_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

/** RFC 7030 3.5 (G4): challengePassword = Base64(tls-unique). */
static int check_pop(const struct estgw_config *cfg,
		     const struct estgw_policy_req *req,
		     const struct est_csr_info *ci, struct estgw_policy_verdict *v)
{
	uint8_t got[TLS_UNIQUE_MAX + 3];
	size_t n = 0;

	if (cfg->policy.pop == ESTGW_POP_OFF)
		return 0;
	if (!ci->has_challenge) {
		if (cfg->policy.pop == ESTGW_POP_REQUIRED)
			return deny(v, EST_CODE(4, 1),
				    "CSR lacks the tls-unique challengePassword (POP linking)");
		return 0;
	}
	if (!req->tls_unique || req->tls_unique_len == 0 ||
	    req->tls_unique_len > TLS_UNIQUE_MAX)
		return deny(v, EST_CODE(4, 1), "no tls-unique for this session");
	if (ci->challenge.len > (TLS_UNIQUE_MAX / 3 + 1) * 4 + 8 ||
	    est_b64_decode((const char *)ci->challenge.ptr, ci->challenge.len, got,
			   sizeof(got), &n) != 0 ||
	    n != req->tls_unique_len || !same_bytes(got, req->tls_unique, n))
		return deny(v, EST_CODE(4, 1),
			    "challengePassword does not match the DTLS tls-unique (POP linking)");
	return 0;
}

static int slices_equal(struct est_slice a, struct est_slice b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/** serialNumber match and, for sren, the whole subject (RFC 7030 4.2.2). */
static int check_subject(const struct estgw_config *cfg,
			 const struct estgw_policy_req *req,
			 const struct est_csr_info *ci, struct estgw_policy_verdict *v)
{
	struct est_slice issuer, subject, serial = { NULL, 0 };
	int ret;

	if (!cfg->policy.match_serial && req->op != EST_OP_SREN)
		return 0;
	if (!req->cert || est_cert_names(req->cert, req->cert_len, &issuer, &subject) != 0)
		return deny(v, EST_CODE(4, 3), "client certificate unreadable");
	if (req->op == EST_OP_SREN && !slices_equal(subject, ci->subject))
		return deny(v, EST_CODE(4, 3),
			    "re-enroll CSR subject differs from the client certificate's");
	if (!cfg->policy.match_serial)
		return 0;
	ret = est_name_serial(subject, &serial);
	if (ret == -EINVAL)
		return deny(v, EST_CODE(4, 3), "client certificate subject unreadable");
	if ((ret == -ENOENT) != (ci->serial.ptr == NULL) ||
	    (ret == 0 && !slices_equal(serial, ci->serial)))
		return deny(v, EST_CODE(4, 3),
			    "CSR serialNumber differs from the client certificate's");
	return 0;
}

static int has_csr(enum est_op op)
{
	return op == EST_OP_SEN || op == EST_OP_SREN || op == EST_OP_SKG ||
	       op == EST_OP_SKC;
}

int estgw_policy_check(const struct estgw_config *cfg,
		       const struct estgw_policy_req *req,
		       struct estgw_policy_verdict *v)
{
	struct est_csr_info ci;
	int ret;

	memset(v, 0, sizeof(*v));
	if ((unsigned)req->op >= EST_OP_COUNT ||
	    !(ops_of(cfg, req->kind) & (1u << req->op)))
		return deny(v, EST_CODE(4, 3),
			    "operation not allowed for this client certificate");
	ret = check_expiry(cfg, req, v);
	if (ret || !has_csr(req->op))
		return ret;
	if (!req->csr || est_csr_info(req->csr, req->csr_len, &ci) != 0)
		return deny(v, EST_CODE(4, 0), "malformed CSR");
	const char *note = v->note;
	ret = check_pop(cfg, req, &ci, v);
	if (!ret)
		ret = check_subject(cfg, req, &ci, v);
	if (!ret)
		v->note = note;
	return ret;
}
